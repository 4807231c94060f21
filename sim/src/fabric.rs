//! The fault layer in simulation: one simulated host, `fabric`, holds a proxy per edge
//! slot of the cluster (as the real run holds one Toxiproxy proxy per slot), and every
//! call between nodes goes through it. Toxics act on the bytes each way as Toxiproxy's
//! do, with every random draw (jitter, toxicity) from the run's seed.
//!
//! Simulated: `down`, and the toxics `latency` (with jitter), `bandwidth`, `timeout`,
//! `reset_peer`, `limit_data`, `slow_close`, `slicer`, the HTTP toxics `http_abort` and
//! `http_delay` (requests framed by the real engine's framer, each drawn for from the
//! seed), and the damaging toxics `loss` and `corrupt` (the engine's own draws, per
//! segment and per byte offset of the connection, keyed from the link's seed; a read
//! holding a lost segment waits whole for its retransmission, and `spare_head` finds
//! heads by `Content-Length`, so after a body without one the rest of the connection
//! is body); node kill and restart (the simulation
//! crashes and restarts the host, its files kept) and partition (every slot into and out
//! of the node cut, as the real runtimes cut its proxies). Node stop is graceful as
//! SIGTERM is. Node pause holds every message to and from the host in the network until
//! it is resumed, as a frozen process's peers see it: connections stay open and nothing
//! crosses them. (Its own timers run on during the pause, where a frozen process's fire
//! together at the resume; what they send still leaves only at the resume.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gauntlet::faults::model::{Stream, Toxic, ToxicKind};
use gauntlet::faults::toxics::{abort_answer, FlipDraws, LossDraws, LossModel, Piece, RequestFramer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Mutex as AsyncMutex, Notify};

/// The fabric's host name.
pub const HOST: &str = "fabric";

/// One proxy: where it listens on the fabric, where it forwards, and its live state.
#[derive(Clone)]
pub struct Link {
    /// The slot's proxy name, as the real run names it (`orders-0__payments__0`).
    pub name: String,
    /// The fabric port it listens on.
    pub port: u16,
    /// The provider node's host name and port.
    pub upstream: (String, u16),
    pub state: Arc<Mutex<LinkState>>,
    /// Wakes every connection when the link goes down.
    cut: Arc<Notify>,
    /// Whether it carries HTTP/1.1: then toxicity is drawn per request, as the real
    /// engine draws it on such links; per connection otherwise.
    http: bool,
}

/// A link's live toxics and what went through it.
#[derive(Default)]
pub struct LinkState {
    /// Disabled through the fault API (an edge `down`): connections are refused, and
    /// those open are closed.
    pub disabled: bool,
    /// Cut by a partition of a node it carries calls into or out of: the same.
    pub partitioned: bool,
    /// Toxics in place by name, each with the key it was added under (so a toxic
    /// removed and added again under its name is a new one).
    pub toxics: Vec<(u64, Toxic)>,
    /// The key of the next toxic added.
    next_key: u64,
    /// Draws for jitter and toxicity, seeded per link.
    rng: Option<ChaCha8Rng>,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Bytes carried either way so far.
    pub bytes: u64,
    /// Segments the `loss` toxic lost, by the retransmission timeout (ms) each waited.
    pub lost: std::collections::BTreeMap<u64, u64>,
    /// Bytes the `corrupt` toxic flipped a bit in.
    pub flipped: u64,
    /// The provider's host crashed: as a dead process's kernel does, its connections
    /// are closed and new ones refused at once (the simulated network would instead
    /// leave them hanging).
    pub upstream_crashed: bool,
}

impl LinkState {
    /// Whether connections are refused and cut.
    fn cut(&self) -> bool {
        self.disabled || self.partitioned || self.upstream_crashed
    }

    fn draw(&mut self) -> f64 {
        self.rng.as_mut().map_or(0.0, |r| r.random::<f64>())
    }

    fn draw_key(&mut self) -> u64 {
        self.rng.as_mut().map_or(0, |r| r.random::<u64>())
    }
}

impl Link {
    /// A link `name` on fabric port `port` to `upstream`, drawing from `seed`.
    pub fn new(name: String, port: u16, upstream: (String, u16), http: bool, seed: u64) -> Self {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ crate::net::digest(&name));
        let state = LinkState { rng: Some(rng), ..LinkState::default() };
        Self { name, port, upstream, state: Arc::new(Mutex::new(state)), cut: Arc::new(Notify::new()), http }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes carried and connections accepted so far.
    pub fn totals(&self) -> (u64, u64) {
        let s = self.lock();
        (s.bytes, s.accepted)
    }

    /// Segments lost so far (by retransmission timeout, ms) and bytes flipped.
    pub fn damage(&self) -> (std::collections::BTreeMap<u64, u64>, u64) {
        let s = self.lock();
        (s.lost.clone(), s.flipped)
    }

    /// Adds `toxic`, as Toxiproxy's `POST /proxies/{name}/toxics`: a name already in
    /// place is a conflict.
    pub fn add_toxic(&self, toxic: &Toxic) -> Result<(), String> {
        let mut s = self.lock();
        if s.toxics.iter().any(|(_, t)| t.name == toxic.name) {
            return Err(format!("toxic {} already exists on {}", toxic.name, self.name));
        }
        let key = s.next_key;
        s.next_key += 1;
        s.toxics.push((key, toxic.clone()));
        Ok(())
    }

    /// Removes toxic `name`, if it is there; what it was holding goes on at once.
    pub fn remove_toxic(&self, name: &str) {
        self.lock().toxics.retain(|(_, t)| t.name != name);
        // A `timeout` toxic holding connections ends when it is removed.
        self.cut.notify_waiters();
    }

    /// Enables or disables the link, as Toxiproxy's `enabled` (an edge `down`).
    pub fn set_enabled(&self, enabled: bool) {
        self.lock().disabled = !enabled;
        if !enabled {
            self.cut.notify_waiters();
        }
    }

    /// Cuts the link for a partition, or heals it.
    pub fn set_partitioned(&self, partitioned: bool) {
        self.lock().partitioned = partitioned;
        if partitioned {
            self.cut.notify_waiters();
        }
    }

    /// Marks the provider's host crashed or back; see [`LinkState::upstream_crashed`].
    pub fn set_upstream_crashed(&self, crashed: bool) {
        self.lock().upstream_crashed = crashed;
        if crashed {
            self.cut.notify_waiters();
        }
    }

    /// Serves the link until the fabric stops.
    pub async fn serve(self) -> std::io::Result<()> {
        let listener = turmoil::net::TcpListener::bind(("0.0.0.0", self.port)).await?;
        loop {
            let (client, _) = listener.accept().await?;
            let link = self.clone();
            tokio::spawn(async move { link.carry(client).await });
        }
    }

    async fn carry(self, client: turmoil::net::TcpStream) {
        {
            let mut s = self.lock();
            s.accepted += 1;
            if s.cut() {
                return; // refused: closed at once
            }
        }
        // Which toxics act on this connection: drawn once per toxic (per request on an
        // HTTP link), when the connection first meets it; toxics also act on connections
        // already open, as Toxiproxy's do.
        let conn = Conn::default();
        let Ok(server) = turmoil::net::TcpStream::connect((self.upstream.0.as_str(), self.upstream.1)).await else {
            return;
        };
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let (client_write, server_write) = (AsyncMutex::new(client_write), AsyncMutex::new(server_write));
        let up = self.pump(Stream::Upstream, client_read, &server_write, &client_write, &conn);
        let down = self.pump(Stream::Downstream, server_read, &client_write, &server_write, &conn);
        let cut = self.cut.clone();
        tokio::select! {
            biased;
            // A toxic ended the connection (timeout, reset_peer, limit_data): both ways close.
            _ = conn.end.notified() => {}
            _ = async { tokio::join!(up, down) } => {}
            _ = async {
                loop {
                    cut.notified().await;
                    if self.lock().cut() {
                        break;
                    }
                }
            } => {}
        }
    }

    /// Copies one direction chunk by chunk through the toxics acting on it; `back` is
    /// the writer toward the side `from` reads, where an `http_abort` answer goes.
    async fn pump(
        &self,
        stream: Stream,
        mut from: turmoil::net::tcp::OwnedReadHalf,
        to: &Writer,
        back: &Writer,
        conn: &Conn,
    ) {
        let chosen = &conn.decided;
        let mut buf = vec![0u8; 32 * 1024];
        let mut sent: u64 = 0;
        let mut requests = Requests::default();
        let mut damage = Damage::default();
        'read: loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if self.http {
                // Requests and answers alternate on an HTTP/1.1 connection: the first
                // bytes up after an answer began are a new request, drawn for anew.
                match stream {
                    Stream::Upstream if conn.answering.swap(false, Ordering::Relaxed) => {
                        chosen.lock().unwrap_or_else(PoisonError::into_inner).clear();
                    }
                    Stream::Downstream => conn.answering.store(true, Ordering::Relaxed),
                    _ => {}
                }
            }
            self.lock().bytes += n as u64;
            let chunk = Bytes::copy_from_slice(&buf[..n]);
            let steps = if stream == Stream::Upstream && self.http {
                self.frame_requests(&mut requests, chunk)
            } else {
                vec![Step::Send(chunk)]
            };
            for step in steps {
                match step {
                    Step::Send(bytes) => match self.forward(stream, &bytes, to, &mut sent, conn, &mut damage).await {
                        Flow::Go => {}
                        Flow::Ended => return,
                        Flow::Broken => break 'read,
                    },
                    Step::Wait(fault, d) => self.delay_while_in_place(fault, d).await,
                    Step::Answer(bytes) => {
                        if back.lock().await.write_all(&bytes).await.is_err() {
                            break 'read;
                        }
                    }
                }
            }
        }
        // The end of the stream, delayed by `slow_close`.
        for (_, toxic) in self.acting(stream, chosen) {
            if let ToxicKind::SlowClose { delay } = toxic.kind {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        let _ = to.lock().await.shutdown().await;
    }

    /// Sends `chunk` on through the TCP toxics acting on this connection.
    async fn forward(
        &self,
        stream: Stream,
        chunk: &[u8],
        to: &Writer,
        sent: &mut u64,
        conn: &Conn,
        damage: &mut Damage,
    ) -> Flow {
        let acting = self.acting(stream, &conn.decided);
        let damaged = self.damage_chunk(&acting, chunk, damage);
        let chunk = damaged.as_deref().unwrap_or(chunk);
        let mut slices: Option<(u64, u64, u64, u64)> = None;
        for (fault, toxic) in &acting {
            match toxic.kind {
                ToxicKind::Loss { .. } => {
                    let hold = self.loss_hold(*fault, toxic, chunk.len(), damage);
                    if !hold.is_zero() {
                        self.delay_while_in_place(*fault, hold).await;
                    }
                }
                ToxicKind::Latency { latency, jitter } => {
                    let spread = if jitter == 0 { 0.0 } else { (self.lock().draw() * 2.0 - 1.0) * jitter as f64 };
                    let ms = (latency as f64 + spread).max(0.0);
                    self.delay_while_in_place(*fault, Duration::from_secs_f64(ms / 1000.0)).await;
                }
                ToxicKind::Bandwidth { rate } => {
                    let secs = chunk.len() as f64 / (rate.max(1) as f64 * 1000.0);
                    self.delay_while_in_place(*fault, Duration::from_secs_f64(secs)).await;
                }
                ToxicKind::Timeout { timeout } => {
                    // Data is dropped; the connection closes after `timeout`, or when
                    // the toxic is removed for 0.
                    if timeout > 0 {
                        tokio::time::sleep(Duration::from_millis(timeout)).await;
                    } else {
                        while self.acting(stream, &conn.decided).iter().any(|(f, _)| f == fault) {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    conn.end.notify_one();
                    return Flow::Ended;
                }
                ToxicKind::ResetPeer { timeout } => {
                    tokio::time::sleep(Duration::from_millis(timeout)).await;
                    conn.end.notify_one();
                    return Flow::Ended;
                }
                ToxicKind::LimitData { bytes } => {
                    let room = bytes.saturating_sub(*sent) as usize;
                    if room < chunk.len() {
                        let _ = to.lock().await.write_all(&chunk[..room]).await;
                        conn.end.notify_one();
                        return Flow::Ended;
                    }
                }
                ToxicKind::Slicer { average_size, size_variation, delay } => {
                    slices = Some((*fault, average_size.max(1), size_variation, delay));
                }
                _ => {}
            }
        }
        if let Some((fault, average, variation, delay)) = slices {
            // Slices of average ± variation bytes (drawn from the seed), `delay` µs apart.
            let mut rest = chunk;
            while !rest.is_empty() {
                let spread = if variation == 0 { 0 } else { (self.lock().draw() * (2 * variation + 1) as f64) as u64 };
                let size = ((average + spread).saturating_sub(variation)).max(1) as usize;
                let (slice, tail) = rest.split_at(size.min(rest.len()));
                if to.lock().await.write_all(slice).await.is_err() {
                    return Flow::Broken;
                }
                rest = tail;
                if !rest.is_empty() {
                    self.delay_while_in_place(fault, Duration::from_micros(delay)).await;
                }
            }
            *sent += chunk.len() as u64;
            return Flow::Go;
        }
        if to.lock().await.write_all(chunk).await.is_err() {
            return Flow::Broken;
        }
        *sent += chunk.len() as u64;
        Flow::Go
    }

    /// `chunk` with bits flipped by a `corrupt` toxic acting on it, if any byte is.
    fn damage_chunk(&self, acting: &[(u64, Toxic)], chunk: &[u8], damage: &mut Damage) -> Option<Vec<u8>> {
        let (fault, rate, spare_head) = acting.iter().find_map(|(f, t)| match t.kind {
            ToxicKind::Corrupt { rate, spare_head } => Some((*f, rate, spare_head)),
            _ => None,
        })?;
        if damage.corrupt.as_ref().is_none_or(|c| c.fault != fault) {
            let key = self.lock().draw_key();
            let heads = (spare_head && self.http).then(HeadScan::default);
            damage.corrupt = Some(Corruption { fault, flips: FlipDraws::new(rate, key), offset: 0, heads });
        }
        let c = damage.corrupt.as_mut()?;
        let mut out = chunk.to_vec();
        let mut flipped = 0;
        let mut i = 0;
        // Bounded: each turn consumes at least one byte.
        while i < out.len() {
            let (spared, body) = match c.heads.as_mut() {
                Some(scan) => scan.next(&out[i..]),
                None => (0, out.len() - i),
            };
            let start = i + spared;
            let end = start + body;
            flipped += c.flips.apply(c.offset, &mut out[start..end]);
            c.offset += body as u64;
            i = end.max(i + 1);
        }
        if flipped == 0 {
            return None;
        }
        self.lock().flipped += flipped;
        Some(out)
    }

    /// How long a read of `len` bytes waits for the retransmissions of the segments a
    /// `loss` toxic lost in it: the longest of their holds.
    fn loss_hold(&self, fault: u64, toxic: &Toxic, len: usize, damage: &mut Damage) -> Duration {
        let Some(model) = LossModel::of(&toxic.kind) else {
            return Duration::ZERO;
        };
        if damage.loss.as_ref().is_none_or(|l| l.fault != fault) {
            let key = self.lock().draw_key();
            let segment_size = model.segment_size.max(1);
            damage.loss =
                Some(Losses { fault, draws: LossDraws::new(model, key), segment_size, offset: 0, decided: None });
        }
        let Some(l) = damage.loss.as_mut() else {
            return Duration::ZERO;
        };
        let (first, end) = (l.offset / l.segment_size, (l.offset + len as u64).div_ceil(l.segment_size));
        l.offset += len as u64;
        let mut hold = Duration::ZERO;
        let mut lost = Vec::new();
        for index in first..end {
            if l.decided.is_some_and(|d| d >= index) {
                continue;
            }
            hold = hold.max(l.draws.hold(index, |rto| lost.push(rto)));
            l.decided = Some(index);
        }
        if !lost.is_empty() {
            let mut s = self.lock();
            for rto in lost {
                *s.lost.entry(rto).or_insert(0) += 1;
            }
        }
        hold
    }

    /// The HTTP toxics on requests: frames `chunk` into requests (with the real
    /// engine's framer) while an `http_abort` or `http_delay` is in place, and draws for
    /// each request, from the link's seed, whether each acts on it.
    fn frame_requests(&self, st: &mut Requests, chunk: Bytes) -> Vec<Step> {
        let toxics: Vec<(u64, Toxic)> = self.lock().toxics.iter().filter(|(_, t)| t.kind.is_http()).cloned().collect();
        if toxics.is_empty() && st.aborting.is_none() {
            st.carried = true;
            return match st.framer.take() {
                // The request the framer was in goes on whole.
                Some(mut framer) => vec![Step::Send(framer.take_pending()), Step::Send(chunk)],
                None => vec![Step::Send(chunk)],
            };
        }
        let carried = st.carried;
        let framer =
            st.framer.get_or_insert_with(|| if carried { RequestFramer::mid_stream() } else { RequestFramer::new() });
        st.carried = true;
        let mut pieces = Vec::new();
        framer.feed(chunk, &mut pieces);
        let mut steps = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Head { method, path, bytes, .. } => {
                    let mut delay = Duration::ZERO;
                    let mut delayed_by = 0;
                    for (fault, toxic) in &toxics {
                        let touched = {
                            let mut s = self.lock();
                            let matching = match &toxic.kind {
                                ToxicKind::HttpAbort { matching, .. } | ToxicKind::HttpDelay { matching, .. } => {
                                    matching
                                }
                                _ => continue,
                            };
                            matching.matches(&method, &path)
                                && s.draw() * 100.0 < matching.percentage
                                && (toxic.toxicity >= 1.0 || s.draw() < f64::from(toxic.toxicity))
                        };
                        if !touched || st.aborting.is_some() {
                            continue;
                        }
                        match &toxic.kind {
                            ToxicKind::HttpAbort { status_code, body, .. } => {
                                st.aborting =
                                    Some(abort_answer(*status_code, body, !method.eq_ignore_ascii_case("HEAD")));
                            }
                            ToxicKind::HttpDelay { delay: ms, .. } => {
                                delay = delay.max(Duration::from_millis(*ms));
                                delayed_by = *fault;
                            }
                            _ => {}
                        }
                    }
                    if st.aborting.is_none() {
                        if !delay.is_zero() {
                            steps.push(Step::Wait(delayed_by, delay));
                        }
                        steps.push(Step::Send(bytes));
                    }
                }
                Piece::Body(bytes) if st.aborting.is_none() => steps.push(Step::Send(bytes)),
                Piece::Body(_) => {}
                Piece::End => {
                    if let Some(answer) = st.aborting.take() {
                        steps.push(Step::Answer(answer));
                    }
                }
                Piece::Raw(bytes) => steps.push(Step::Send(bytes)),
            }
        }
        steps
    }

    /// Waits `d`, or less if toxic `fault` (its key) is taken away meanwhile: as
    /// Toxiproxy's toxics do, a removed toxic lets what it was holding go at once.
    async fn delay_while_in_place(&self, fault: u64, d: Duration) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let removed = self.cut.notified();
            tokio::pin!(removed);
            removed.as_mut().enable();
            if !self.lock().toxics.iter().any(|(i, _)| *i == fault) {
                return;
            }
            tokio::select! {
                biased;
                _ = tokio::time::sleep_until(deadline) => return,
                _ = removed => {}
            }
        }
    }

    /// The toxics in place on `stream` that act on this connection.
    fn acting(&self, stream: Stream, chosen: &Decided) -> Vec<(u64, Toxic)> {
        let mut s = self.lock();
        let mut decided = chosen.lock().unwrap_or_else(PoisonError::into_inner);
        let present: Vec<(u64, Toxic)> =
            s.toxics.iter().filter(|(_, t)| t.stream == stream && !t.kind.is_http()).cloned().collect();
        present
            .into_iter()
            .filter(|(key, t)| {
                if let Some((_, acts)) = decided.iter().find(|(k, _)| k == key) {
                    return *acts;
                }
                let acts = t.toxicity >= 1.0 || s.draw() < f64::from(t.toxicity);
                decided.push((*key, acts));
                acts
            })
            .collect()
    }
}

/// A writer shared by the two directions of a connection.
type Writer = AsyncMutex<turmoil::net::tcp::OwnedWriteHalf>;

/// What to do with a read's bytes, in order.
enum Step {
    Send(Bytes),
    /// A delay toxic `.0` (its key) imposes, cut short if it is removed.
    Wait(u64, Duration),
    /// An `http_abort` answer, to the side the request came from.
    Answer(Bytes),
}

/// Whether the pump goes on.
enum Flow {
    Go,
    /// A toxic ended the connection.
    Ended,
    /// The other side is gone.
    Broken,
}

/// The requests of one connection, while HTTP toxics frame them.
#[derive(Default)]
struct Requests {
    framer: Option<RequestFramer>,
    /// The answer owed to the request being aborted.
    aborting: Option<Bytes>,
    /// Bytes already went through (a framer started now starts mid-stream).
    carried: bool,
}

/// The state of the damaging toxics on one direction of one connection.
#[derive(Default)]
struct Damage {
    loss: Option<Losses>,
    corrupt: Option<Corruption>,
}

/// A `loss` toxic's draws on one direction of one connection.
struct Losses {
    /// The toxic's key: another toxic starts afresh.
    fault: u64,
    draws: LossDraws,
    segment_size: u64,
    /// Bytes seen.
    offset: u64,
    /// The last segment decided.
    decided: Option<u64>,
}

/// A `corrupt` toxic's draws on one direction of one connection.
struct Corruption {
    /// The toxic's key: another toxic starts afresh.
    fault: u64,
    flips: FlipDraws,
    /// Bytes that may be corrupted, seen so far.
    offset: u64,
    /// Where heads are, with `spare_head` on an HTTP link.
    heads: Option<HeadScan>,
}

/// The longest head the scan keeps for its `Content-Length`: past it, the rest is body.
const MAX_HEAD: usize = 64 * 1024;

/// Where HTTP/1.1 heads and bodies are in a stream, by `Content-Length`.
#[derive(Default)]
struct HeadScan {
    /// In a head: its bytes so far. `None` once in a body.
    head: Option<Vec<u8>>,
    /// Body bytes left; `None` for a body that runs to the end of the connection.
    body_left: Option<u64>,
    /// Past a body without a length: all the rest is body.
    rest_is_body: bool,
}

impl HeadScan {
    /// Of the bytes `data`, how many lead as head, then how many body follow them.
    fn next(&mut self, data: &[u8]) -> (usize, usize) {
        if self.rest_is_body {
            return (0, data.len());
        }
        if let Some(left) = self.body_left.filter(|_| self.head.is_none()) {
            let body = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
            self.body_left = Some(left - body as u64);
            if left == body as u64 {
                self.body_left = None;
            }
            return (0, body);
        }
        let head = self.head.get_or_insert_with(Vec::new);
        for (i, b) in data.iter().enumerate() {
            head.push(*b);
            if head.ends_with(b"\r\n\r\n") || head.len() >= MAX_HEAD {
                let length = content_length(head);
                self.head = None;
                match length {
                    Some(0) => self.body_left = None,
                    Some(n) => self.body_left = Some(n),
                    None => self.rest_is_body = true,
                }
                return (i + 1, 0);
            }
        }
        (data.len(), 0)
    }
}

/// The `Content-Length` of a response head, if it states one.
fn content_length(head: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
    })
}

/// Per connection (per request on an HTTP link): whether each toxic it met acts on it.
type Decided = Mutex<Vec<(u64, bool)>>;

/// One proxied connection's shared state.
#[derive(Default)]
struct Conn {
    decided: Decided,
    /// Set once answer bytes flowed since the last request began.
    answering: AtomicBool,
    /// Ends the whole connection (both directions).
    end: Notify,
}
