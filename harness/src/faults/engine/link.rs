//! One direction of one proxied connection: reads the source socket, runs the toxic
//! chain, writes the destination socket when each event is due.
//!
//! With no toxic acting on the connection the link copies bytes straight through (the
//! fast path); otherwise events wait in a bounded queue until their time. The fast path
//! reads and writes while messages are small (one system call each way; tokio knows a
//! short read drained the socket), and moves bulk with `splice(2)` once a read fills the
//! whole buffer, until a batch comes back short. The chain is
//! watched while the connection is open, so adding a toxic slows a connection that is
//! already open, and removing one releases what it held back without losing data.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::answers::{Exchange, OwedAnswers};
use super::chain::{Chain, ConnectionId};
use super::{ChainSpec, ProxyMetrics, Signal};
use crate::faults::model::Stream;
use crate::faults::toxics::{Event, Timed};

/// Bytes read per socket read.
const READ_SIZE: usize = 64 * 1024;
/// Bytes a link holds back before it stops reading its source (backpressure).
const MAX_QUEUED: usize = 4 * 1024 * 1024;

/// Everything a link needs besides its two socket halves.
pub(crate) struct LinkParts {
    /// Which direction this link carries.
    pub stream: Stream,
    /// Who the connection is, for seeding.
    pub id: ConnectionId,
    /// The proxy's current toxic list for this direction.
    pub chain: watch::Receiver<Arc<ChainSpec>>,
    /// The connection-wide close/reset signal.
    pub signal: Arc<watch::Sender<Signal>>,
    /// Requests the other direction forwarded or answered, whose answers this link
    /// writes to its destination in order.
    pub inbox: mpsc::Receiver<Exchange>,
    /// Requests this link forwarded or answered, for the other direction.
    pub outbox: mpsc::Sender<Exchange>,
    /// Byte counters of the proxy.
    pub metrics: Arc<ProxyMetrics>,
}

/// Why a link ended.
enum Exit {
    /// The source ended and the end was forwarded.
    Finished,
    /// The connection is closed.
    Closed,
    /// The connection is reset.
    Reset,
}

/// Runs the link until its stream ends or the connection closes.
pub(crate) async fn run(src: OwnedReadHalf, dst: OwnedWriteHalf, parts: LinkParts) {
    let mut link = Link::new(src, dst, parts);
    let exit = link.run().await;
    match exit {
        Exit::Finished => {}
        Exit::Closed => link.raise(Signal::Close),
        Exit::Reset => {
            link.raise(Signal::Reset);
            set_zero_linger(link.src.as_ref());
            set_zero_linger(link.dst.as_ref());
            // Dropping a write half sends FIN first; a reset must not.
            link.dst.forget();
        }
    }
}

fn set_zero_linger(stream: &TcpStream) {
    // A zero linger makes the close send RST; failing to set it only makes it a FIN.
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

struct Link {
    src: OwnedReadHalf,
    dst: OwnedWriteHalf,
    parts: LinkParts,
    signal_rx: watch::Receiver<Signal>,
    chain: Chain,
    queue: VecDeque<Timed>,
    queued_bytes: usize,
    last_at: Option<Instant>,
    src_open: bool,
    inbox_open: bool,
    answers: OwedAnswers,
    #[cfg(target_os = "linux")]
    splicer: Option<super::splice::Splicer>,
    /// The last read filled the whole buffer: the source is streaming, so it is spliced.
    bulk: bool,
}

impl Link {
    fn new(src: OwnedReadHalf, dst: OwnedWriteHalf, parts: LinkParts) -> Self {
        let signal_rx = parts.signal.subscribe();
        let chain = Chain::new(parts.id.clone(), parts.stream, parts.metrics.toxics.sink(parts.stream));
        Self {
            src,
            dst,
            parts,
            signal_rx,
            chain,
            queue: VecDeque::new(),
            queued_bytes: 0,
            last_at: None,
            src_open: true,
            inbox_open: true,
            answers: OwedAnswers::default(),
            #[cfg(target_os = "linux")]
            splicer: super::splice::Splicer::new(),
            bulk: false,
        }
    }

    fn raise(&self, to: Signal) {
        self.parts.signal.send_if_modified(|s| {
            let raise = to > *s;
            if raise {
                *s = to;
            }
            raise
        });
    }

    async fn run(&mut self) -> Exit {
        self.follow_chain();
        let mut buf = vec![0u8; READ_SIZE];
        loop {
            if let Some(exit) = self.signalled() {
                return exit;
            }
            let step = if self.chain.is_idle() && self.queue.is_empty() && !self.answers.framing() {
                if !self.src_open {
                    let _ = self.dst.shutdown().await;
                    return Exit::Finished;
                }
                self.fast_step(&mut buf).await
            } else {
                self.toxic_step().await
            };
            if let Some(exit) = step {
                return exit;
            }
        }
    }

    fn signalled(&mut self) -> Option<Exit> {
        match *self.signal_rx.borrow_and_update() {
            Signal::Open => None,
            Signal::Close => Some(Exit::Closed),
            Signal::Reset => Some(Exit::Reset),
        }
    }

    /// Copies one read straight through.
    async fn fast_step(&mut self, buf: &mut [u8]) -> Option<Exit> {
        #[cfg(target_os = "linux")]
        if self.bulk && self.splicer.is_some() {
            return self.splice_step().await;
        }
        tokio::select! {
            biased;
            _ = self.signal_rx.changed() => None,
            changed = self.parts.chain.changed() => {
                if changed.is_ok() {
                    self.follow_chain();
                }
                None
            }
            exchange = self.parts.inbox.recv(), if self.inbox_open => self.take_exchange(exchange).await,
            read = self.src.read(buf) => match read {
                Ok(0) => {
                    self.src_open = false;
                    None
                }
                Ok(n) => {
                    let slice = buf.get(..n).unwrap_or_default();
                    self.chain.note_traffic(Some(slice));
                    self.count_received(n);
                    self.bulk = n == buf.len();
                    if self.answers.framing() || !self.parts.inbox.is_empty() {
                        return self.write_data(Bytes::copy_from_slice(slice)).await;
                    }
                    if self.dst.write_all(slice).await.is_err() {
                        return Some(Exit::Closed);
                    }
                    self.count_sent(n);
                    None
                }
                Err(e) => Some(read_error(&e)),
            },
        }
    }

    /// Moves one batch straight through without copying it (Linux).
    #[cfg(target_os = "linux")]
    async fn splice_step(&mut self) -> Option<Exit> {
        use super::splice::SpliceError;
        tokio::select! {
            biased;
            _ = self.signal_rx.changed() => return None,
            changed = self.parts.chain.changed() => {
                if changed.is_ok() {
                    self.follow_chain();
                }
                return None;
            }
            exchange = self.parts.inbox.recv(), if self.inbox_open => return self.take_exchange(exchange).await,
            ready = self.src.as_ref().readable() => {
                if let Err(e) = ready {
                    return Some(read_error(&e));
                }
            }
        }
        let splicer = self.splicer.as_mut()?;
        match splicer.forward(self.src.as_ref(), self.dst.as_ref()).await {
            Ok(None) => None,
            Ok(Some(0)) => {
                self.src_open = false;
                None
            }
            Ok(Some(n)) => {
                // A short batch drained the source: back to plain reads, which cost one
                // call where a splice costs two and a failed third to find it empty.
                self.bulk = n >= splicer.batch();
                self.chain.note_traffic(None);
                self.count_received(n);
                self.count_sent(n);
                None
            }
            Err(SpliceError::Read(e)) => Some(read_error(&e)),
            Err(SpliceError::Write) => Some(Exit::Closed),
        }
    }

    /// Reads into the chain, or waits for the next due event, then writes what is due.
    async fn toxic_step(&mut self) -> Option<Exit> {
        let wake = match (self.queue.front().map(|t| t.at), self.chain.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let can_read = self.src_open && self.queued_bytes < MAX_QUEUED;
        let mut rbuf = BytesMut::new();
        if can_read {
            rbuf.reserve(READ_SIZE);
        }
        tokio::select! {
            biased;
            _ = self.signal_rx.changed() => return None,
            changed = self.parts.chain.changed() => {
                if changed.is_ok() {
                    self.follow_chain();
                }
            }
            exchange = self.parts.inbox.recv(), if self.inbox_open => {
                if let Some(exit) = self.take_exchange(exchange).await {
                    return Some(exit);
                }
            }
            _ = sleep_until(wake), if wake.is_some() => {}
            read = self.src.read_buf(&mut rbuf), if can_read => match read {
                Ok(0) => {
                    self.src_open = false;
                    self.through_chain(Timed::new(Instant::now(), Event::Eof));
                }
                Ok(n) => {
                    self.chain.note_traffic(Some(&rbuf));
                    self.count_received(n);
                    // The requests these bytes answer were forwarded before they were
                    // read: the chain matches responses to them.
                    let mut out = Vec::new();
                    self.catch_up_exchanges(&mut out);
                    if let Some(exit) = self.write_all(out).await {
                        return Some(exit);
                    }
                    self.through_chain(Timed::new(Instant::now(), Event::Data(rbuf.freeze())));
                }
                Err(e) => return Some(read_error(&e)),
            },
        }
        self.dispatch_due().await
    }

    /// Records what the other direction did with a request, and writes the injected
    /// answers that are due.
    async fn take_exchange(&mut self, exchange: Option<Exchange>) -> Option<Exit> {
        let Some(exchange) = exchange else {
            self.inbox_open = false;
            return None;
        };
        let mut out = Vec::new();
        self.record_exchange(exchange, &mut out);
        self.write_all(out).await
    }

    /// Records what the other direction did with a request: the chain matches the
    /// responses to requests forwarded; pushes the injected answers due now.
    fn record_exchange(&mut self, exchange: Exchange, out: &mut Vec<Bytes>) {
        if let Exchange::Forwarded { head, digest } = exchange {
            self.chain.owe_response(head, digest);
        }
        self.answers.push(exchange, out);
    }

    /// Takes the exchanges already sent by the other direction: they happened before
    /// the server could answer the bytes about to be written.
    fn catch_up_exchanges(&mut self, out: &mut Vec<Bytes>) {
        while let Ok(exchange) = self.parts.inbox.try_recv() {
            self.record_exchange(exchange, out);
        }
    }

    /// Writes bytes from the source, with the injected answers due between them.
    async fn write_data(&mut self, bytes: Bytes) -> Option<Exit> {
        let mut out = Vec::new();
        self.catch_up_exchanges(&mut out);
        if self.answers.framing() {
            self.answers.frame(bytes, &mut out);
        } else {
            out.push(bytes);
        }
        self.write_all(out).await
    }

    async fn write_all(&mut self, out: Vec<Bytes>) -> Option<Exit> {
        for bytes in out {
            if self.dst.write_all(&bytes).await.is_err() {
                return Some(Exit::Closed);
            }
            self.count_sent(bytes.len());
        }
        None
    }

    /// Rebuilds the chain from the proxy's current toxics.
    fn follow_chain(&mut self) {
        let spec = self.parts.chain.borrow_and_update().clone();
        let now = Instant::now();
        let mut out = Vec::new();
        let removed = self.chain.rebuild(&spec, now, &mut out);
        if removed {
            self.release_held(now);
        }
        for event in out {
            self.enqueue(event);
        }
    }

    /// After a toxic is removed or changed, what it held back leaves now, and control
    /// events it had scheduled are dropped.
    fn release_held(&mut self, now: Instant) {
        let chain = &self.chain;
        self.queue.retain(|t| t.origin == 0 || chain.has(t.origin));
        for t in &mut self.queue {
            t.at = t.at.min(now);
        }
        self.last_at = self.queue.back().map(|t| t.at);
    }

    fn through_chain(&mut self, input: Timed) {
        let mut out = Vec::new();
        self.chain.push(input, &mut out);
        for event in out {
            self.enqueue(event);
        }
    }

    fn enqueue(&mut self, mut event: Timed) {
        if let Some(last) = self.last_at {
            event.at = event.at.max(last);
        }
        self.last_at = Some(event.at);
        if let Event::Data(b) = &event.event {
            self.queued_bytes += b.len();
        }
        self.queue.push_back(event);
    }

    /// Writes every event that is due, in order.
    async fn dispatch_due(&mut self) -> Option<Exit> {
        let mut fired = Vec::new();
        self.chain.fire_deadlines(Instant::now(), &mut fired);
        for event in fired {
            self.enqueue(event);
        }
        while self.queue.front().is_some_and(|t| t.at <= Instant::now()) {
            let Some(due) = self.queue.pop_front() else {
                break;
            };
            match due.event {
                Event::Data(bytes) => {
                    self.queued_bytes = self.queued_bytes.saturating_sub(bytes.len());
                    if let Some(exit) = self.write_data(bytes).await {
                        return Some(exit);
                    }
                }
                Event::Eof => {
                    let mut out = Vec::new();
                    self.catch_up_exchanges(&mut out);
                    self.answers.finish(&mut out);
                    if let Some(exit) = self.write_all(out).await {
                        return Some(exit);
                    }
                    let _ = self.dst.shutdown().await;
                    return Some(Exit::Finished);
                }
                Event::Close => return Some(Exit::Closed),
                Event::Reset => return Some(Exit::Reset),
                // The other direction may be gone; then there is no one to answer.
                Event::Reply(bytes) => {
                    let _ = self.parts.outbox.send(Exchange::Injected(bytes)).await;
                }
                Event::Request { head, digest } => {
                    let _ = self.parts.outbox.send(Exchange::Forwarded { head, digest }).await;
                }
                Event::Response { .. } => {}
            }
        }
        None
    }

    fn count_received(&self, n: usize) {
        self.parts.metrics.received[self.parts.stream.index()].fetch_add(n as u64, Ordering::Relaxed);
    }

    fn count_sent(&self, n: usize) {
        self.parts.metrics.sent[self.parts.stream.index()].fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        super::timer::sleep_until(at).await;
    }
}

fn read_error(e: &std::io::Error) -> Exit {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => Exit::Reset,
        _ => Exit::Closed,
    }
}
