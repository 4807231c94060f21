//! One file per toxic. Each toxic is a [`Stage`]: it takes timed events (data read from
//! a socket, end of stream) and says what leaves it and when, without sleeping itself.
//! The engine's link runs a chain of stages and writes what leaves the last one when
//! its time comes, so a chain can change while a connection is open and nothing in it
//! blocks the others.

mod bandwidth;
mod http_abort;
mod http_delay;
mod http_framing;
mod latency;
mod limit_data;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::model::ToxicKind;
use super::seed::DecisionRng;

pub use http_framing::{Piece, RequestFramer};

/// What travels through a chain of toxics.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Bytes read from the source socket.
    Data(Bytes),
    /// The source half-closed: forward a half-close.
    Eof,
    /// Close the whole connection (both sockets, gracefully).
    Close,
    /// Reset the whole connection (both sockets, TCP RST).
    Reset,
    /// Write these bytes to the client on the other direction (an HTTP answer made by
    /// the proxy itself).
    Reply(Bytes),
}

/// An event with the instant it leaves a stage, and the toxic that made it (0 for data
/// from the socket) so that control events of a removed toxic can be dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Timed {
    /// When the event is due.
    pub at: Instant,
    /// What.
    pub event: Event,
    /// The unique id of the toxic that made a control event, or 0.
    pub origin: u64,
}

impl Timed {
    /// An event due at `at`, made by no toxic.
    pub fn new(at: Instant, event: Event) -> Self {
        Self { at, event, origin: 0 }
    }

    /// The same event, due `by` later.
    pub fn delayed(self, by: Duration) -> Self {
        Self { at: self.at + by, ..self }
    }
}

/// A toxic acting on one direction of one connection.
pub trait Stage: Send {
    /// Takes `Data` or `Eof` arriving at `input.at` and pushes what leaves the stage.
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>);

    /// The instant this stage wants to act on its own, if any.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Called once `deadline` has passed.
    fn on_deadline(&mut self, _now: Instant, _out: &mut Vec<Timed>) {}

    /// Called when the toxic is removed from the open connection.
    fn on_removed(&mut self, _now: Instant, _out: &mut Vec<Timed>) {}
}

/// The stage for `kind` on a connection, starting `now`; `uid` identifies the toxic
/// and `rng` is its seeded generator on this connection.
pub fn stage(kind: &ToxicKind, rng: DecisionRng, now: Instant, uid: u64) -> Box<dyn Stage> {
    match kind {
        ToxicKind::Latency { latency, jitter } => Box::new(latency::Latency::new(*latency, *jitter, rng)),
        ToxicKind::Bandwidth { rate } => Box::new(bandwidth::Bandwidth::new(*rate)),
        ToxicKind::SlowClose { delay } => Box::new(slow_close::SlowClose::new(*delay)),
        ToxicKind::Timeout { timeout } => Box::new(timeout::Timeout::new(*timeout, now, uid)),
        ToxicKind::ResetPeer { timeout } => Box::new(reset_peer::ResetPeer::new(*timeout, uid)),
        ToxicKind::Slicer { average_size, size_variation, delay } => {
            Box::new(slicer::Slicer::new(*average_size, *size_variation, *delay, rng))
        }
        ToxicKind::LimitData { bytes } => Box::new(limit_data::LimitData::new(*bytes, uid)),
        ToxicKind::HttpAbort { status_code, body, matching } => {
            Box::new(http_abort::HttpAbort::new(*status_code, body, matching.clone(), rng, uid))
        }
        ToxicKind::HttpDelay { delay, matching } => Box::new(http_delay::HttpDelay::new(*delay, matching.clone(), rng)),
    }
}

/// Milliseconds as a duration.
fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}
