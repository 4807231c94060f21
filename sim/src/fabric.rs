//! The fault layer in simulation: one simulated host, `fabric`, holds a proxy per edge
//! slot of the cluster (as the real run holds one Toxiproxy proxy per slot), and every
//! call between nodes goes through it. Toxics act on the bytes each way as Toxiproxy's
//! do, with every random draw (jitter, toxicity) from the run's seed.
//!
//! Simulated: `down`, and the toxics `latency` (with jitter), `bandwidth`, `timeout`,
//! `reset_peer`, `limit_data`, `slow_close`; node kill and restart (the simulation
//! crashes and restarts the host, its files kept) and partition (every slot into and out
//! of the node cut, as the real runtimes cut its proxies). Refused, with the fault named:
//! `slicer` and the HTTP toxics (status aborts, per-request delay), stop and pause; see
//! [`unsupported`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use gauntlet::cluster::NodeOp;
use gauntlet::faults::model::{Stream, Toxic, ToxicKind};
use gauntlet::scenario::{Fault, FaultAction};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// The fabric's host name.
pub const HOST: &str = "fabric";

/// What a scenario fault cannot mean in the simulation yet, if anything.
pub fn unsupported(fault: &Fault) -> Option<String> {
    match &fault.action {
        FaultAction::Down => None,
        FaultAction::Node(NodeOp::Kill | NodeOp::Restart | NodeOp::Partition | NodeOp::Heal) => None,
        FaultAction::Node(op) => Some(format!(
            "node operation `{op:?}` (kill, restart and partition are simulated; stop and pause are not yet: a graceful drain and a frozen process have no faithful meaning here yet)"
        )),
        FaultAction::Toxics(toxics) => toxics.iter().find_map(|t| match t.kind {
            ToxicKind::Latency { .. }
            | ToxicKind::Bandwidth { .. }
            | ToxicKind::Timeout { .. }
            | ToxicKind::ResetPeer { .. }
            | ToxicKind::LimitData { .. }
            | ToxicKind::SlowClose { .. } => None,
            _ => Some(format!("toxic `{}` (not simulated yet)", t.kind.type_name())),
        }),
    }
}

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
    /// Down: connections are refused, and those open are closed.
    pub down: Option<usize>,
    /// Toxics in place, each with the index of the fault that put it there.
    pub toxics: Vec<(usize, Toxic)>,
    /// Per fault index: bytes a toxic acted on, and connections it touched or refused.
    pub touched: Vec<(u64, u64)>,
    /// Draws for jitter and toxicity, seeded per link.
    rng: Option<ChaCha8Rng>,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Bytes carried either way so far.
    pub bytes: u64,
    /// The provider's host crashed: as a dead process's kernel does, its connections
    /// are closed and new ones refused at once (the simulated network would instead
    /// leave them hanging).
    pub upstream_crashed: bool,
}

impl LinkState {
    fn touch(&mut self, fault: usize, bytes: u64, connections: u64) {
        if self.touched.len() <= fault {
            self.touched.resize(fault + 1, (0, 0));
        }
        self.touched[fault].0 += bytes;
        self.touched[fault].1 += connections;
    }

    fn draw(&mut self) -> f64 {
        self.rng.as_mut().map_or(0.0, |r| r.random::<f64>())
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

    /// Puts fault `index`'s action in place.
    pub fn apply(&self, index: usize, action: &FaultAction) {
        match action {
            FaultAction::Down => {
                self.lock().down = Some(index);
                self.cut.notify_waiters();
            }
            FaultAction::Toxics(toxics) => self.lock().toxics.extend(toxics.iter().map(|t| (index, t.clone()))),
            FaultAction::Node(_) => {}
        }
    }

    /// Marks the provider's host crashed or back; see [`LinkState::upstream_crashed`].
    pub fn set_upstream_crashed(&self, crashed: bool) {
        self.lock().upstream_crashed = crashed;
        if crashed {
            self.cut.notify_waiters();
        }
    }

    /// Takes fault `index`'s action away.
    pub fn remove(&self, index: usize) {
        let mut s = self.lock();
        if s.down == Some(index) {
            s.down = None;
        }
        s.toxics.retain(|(i, _)| *i != index);
        drop(s);
        // A `timeout` toxic holding connections ends when it is removed.
        self.cut.notify_waiters();
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
            if let Some(fault) = s.down {
                s.touch(fault, 0, 1);
                return; // refused: closed at once
            }
            if s.upstream_crashed {
                return;
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
        let up = self.pump(Stream::Upstream, client_read, server_write, &conn);
        let down = self.pump(Stream::Downstream, server_read, client_write, &conn);
        let cut = self.cut.clone();
        tokio::select! {
            biased;
            // A toxic ended the connection (timeout, reset_peer, limit_data): both ways close.
            _ = conn.end.notified() => {}
            _ = async { tokio::join!(up, down) } => {}
            _ = async {
                loop {
                    cut.notified().await;
                    let s = self.lock();
                    if s.down.is_some() || s.upstream_crashed {
                        break;
                    }
                }
            } => {}
        }
    }

    /// Copies one direction chunk by chunk through the toxics acting on it.
    async fn pump(
        &self,
        stream: Stream,
        mut from: turmoil::net::tcp::OwnedReadHalf,
        mut to: turmoil::net::tcp::OwnedWriteHalf,
        conn: &Conn,
    ) {
        let chosen = &conn.decided;
        let mut buf = vec![0u8; 32 * 1024];
        let mut sent: u64 = 0;
        loop {
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
            let acting = self.acting(stream, chosen);
            let chunk = &buf[..n];
            for (fault, toxic) in &acting {
                self.lock().touch(*fault, chunk.len() as u64, 0);
                match toxic.kind {
                    ToxicKind::Latency { latency, jitter } => {
                        let spread = if jitter == 0 { 0.0 } else { (self.lock().draw() * 2.0 - 1.0) * jitter as f64 };
                        let ms = (latency as f64 + spread).max(0.0);
                        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
                    }
                    ToxicKind::Bandwidth { rate } => {
                        let secs = chunk.len() as f64 / (rate.max(1) as f64 * 1000.0);
                        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
                    }
                    ToxicKind::Timeout { timeout } => {
                        // Data is dropped; the connection closes after `timeout`, or when
                        // the toxic is removed for 0.
                        if timeout > 0 {
                            tokio::time::sleep(Duration::from_millis(timeout)).await;
                        } else {
                            while self.acting(stream, chosen).iter().any(|(f, _)| f == fault) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                        conn.end.notify_one();
                        return;
                    }
                    ToxicKind::ResetPeer { timeout } => {
                        tokio::time::sleep(Duration::from_millis(timeout)).await;
                        conn.end.notify_one();
                        return;
                    }
                    ToxicKind::LimitData { bytes } => {
                        let room = bytes.saturating_sub(sent) as usize;
                        if room < chunk.len() {
                            let _ = to.write_all(&chunk[..room]).await;
                            conn.end.notify_one();
                            return;
                        }
                    }
                    _ => {}
                }
            }
            if to.write_all(chunk).await.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        // The end of the stream, delayed by `slow_close`.
        for (_, toxic) in self.acting(stream, chosen) {
            if let ToxicKind::SlowClose { delay } = toxic.kind {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
        }
        let _ = to.shutdown().await;
    }

    /// The toxics in place on `stream` that act on this connection.
    fn acting(&self, stream: Stream, chosen: &Decided) -> Vec<(usize, Toxic)> {
        let mut s = self.lock();
        let mut decided = chosen.lock().unwrap_or_else(PoisonError::into_inner);
        let present: Vec<(usize, Toxic)> = s.toxics.iter().filter(|(_, t)| t.stream == stream).cloned().collect();
        present
            .into_iter()
            .filter(|(i, t)| {
                let key = (*i, t.name.clone());
                if let Some((_, acts)) = decided.iter().find(|(k, _)| *k == key) {
                    return *acts;
                }
                let acts = t.toxicity >= 1.0 || s.draw() < f64::from(t.toxicity);
                if acts {
                    s.touch(*i, 0, 1);
                }
                decided.push((key, acts));
                acts
            })
            .collect()
    }
}

/// Per connection (per request on an HTTP link): whether each toxic it met acts on it.
type Decided = Mutex<Vec<((usize, String), bool)>>;

/// One proxied connection's shared state.
#[derive(Default)]
struct Conn {
    decided: Decided,
    /// Set once answer bytes flowed since the last request began.
    answering: AtomicBool,
    /// Ends the whole connection (both directions).
    end: Notify,
}
