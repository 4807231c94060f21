//! One file per toxic. Each toxic is a [`Stage`]: it takes timed events (data read from
//! a socket, end of stream) and says what leaves it and when, without sleeping itself.
//! The engine's link runs a chain of stages and writes what leaves the last one when
//! its time comes, so a chain can change while a connection is open and nothing in it
//! blocks the others.

mod bandwidth;
mod by_request;
mod corrupt;
mod effects;
mod http_abort;
mod http_delay;
mod http_framing;
mod http_response;
mod latency;
mod limit_data;
mod loss;
mod reset_peer;
mod slicer;
mod slow_close;
mod timeout;

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::model::ToxicKind;
use super::seed::DecisionRng;

pub use corrupt::FlipDraws;
pub use effects::EffectSink;
pub(crate) use effects::ToxicEffects;
pub use http_abort::answer as abort_answer;
pub use http_framing::{begins_with_request_line, Piece, RequestDraws, RequestFramer};
pub use http_response::{Framed, ResponseFramer};
pub use loss::{LossDraws, LossModel, MAX_RETRANSMISSIONS};

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
    /// the proxy itself), after the responses owed to the requests forwarded before.
    Reply(Bytes),
    /// The request whose head follows is forwarded (a `HEAD` request when `head`): the
    /// other direction owes its response before any later [`Event::Reply`], and decides
    /// for that response by `digest`. Toxics that decide per request decide here.
    Request {
        /// Whether the request is a `HEAD` request, whose response has no body.
        head: bool,
        /// The request's identity for decisions (`seed::request_digest`).
        digest: u64,
    },
    /// The response whose bytes follow answers the request with `digest` (`None`: no
    /// forwarded request is known for it). Toxics that decide per request decide here;
    /// the link writes nothing for it.
    Response {
        /// The digest of the request it answers.
        digest: Option<u64>,
    },
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

    /// Whether the stage answers requests itself ([`Event::Reply`]) and marks the ones
    /// it forwards ([`Event::Request`]).
    fn answers(&self) -> bool {
        false
    }

    /// Called, in stream order, where a request (upstream) or its response (downstream)
    /// begins on a link that carries HTTP/1.1: the bytes that follow belong to the
    /// exchange of the request with `digest` (`None`: a response to no known request).
    fn on_exchange(&mut self, _digest: Option<u64>, _at: Instant) {}
}

/// Where on its connection a stage starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Joining {
    /// Before the first byte.
    AtStart,
    /// After bytes have passed: HTTP stages find the next request boundary first.
    MidStream,
}

/// How a stage decides: `connection` is its seeded generator on this connection (TCP
/// toxics), `requests` its per-request draws (HTTP toxics); and where it counts what
/// it did (`effects`).
pub struct Draws {
    /// The generator keyed by the connection.
    pub connection: DecisionRng,
    /// The draws keyed by each request.
    pub requests: RequestDraws,
    /// Where the toxics that damage the stream count the damage.
    pub effects: EffectSink,
}

/// The stage for `kind` on a connection, starting `now` at `joining`; `uid` identifies
/// the toxic.
pub fn stage(kind: &ToxicKind, draws: Draws, now: Instant, joining: Joining, uid: u64) -> Box<dyn Stage> {
    let Draws { connection: rng, requests, effects } = draws;
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
            Box::new(http_abort::HttpAbort::new(*status_code, body, matching.clone(), requests, joining, uid))
        }
        ToxicKind::HttpDelay { delay, matching } => {
            Box::new(http_delay::HttpDelay::new(*delay, matching.clone(), requests, joining))
        }
        ToxicKind::Loss { .. } => match LossModel::of(kind) {
            Some(model) => Box::new(loss::Loss::new(model, rng, effects)),
            None => Box::new(PassThrough),
        },
        // Deciding per connection, the stage cannot know where a head is: only the
        // stage of one HTTP exchange (`by_request`) spares it.
        ToxicKind::Corrupt { rate, .. } => Box::new(corrupt::Corrupt::new(*rate, false, rng, effects)),
    }
}

/// The stage of a toxic that does nothing.
struct PassThrough;

impl Stage for PassThrough {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        out.push(input);
    }
}

/// The stage for a TCP toxic `kind` (its toxicity comes with `draws`) that, on a link carrying
/// HTTP/1.1, decides per request (`ByRequest`): keyed by each request, and by the
/// connection for bytes no request is known for.
pub fn stage_by_request(kind: &ToxicKind, draws: Draws, now: Instant, uid: u64) -> Box<dyn Stage> {
    Box::new(by_request::ByRequest::new(kind.clone(), draws, now, uid))
}

/// Whether a TCP toxic decides per request on a link carrying HTTP/1.1: it acts on a
/// share of the traffic (`toxicity < 1`) or draws at random (latency jitter, slicer
/// sizes). Other toxics act on every connection alike and need no request framing.
pub fn decides_per_request(kind: &ToxicKind, toxicity: f32) -> bool {
    if kind.is_http() {
        return false;
    }
    toxicity < 1.0
        || match kind {
            ToxicKind::Latency { jitter, .. } => *jitter > 0,
            ToxicKind::Slicer { size_variation, .. } => *size_variation > 0,
            ToxicKind::Loss { .. } | ToxicKind::Corrupt { .. } => true,
            _ => false,
        }
}

/// The longest time a toxic waits: longer is as good as forever, and keeps instant
/// arithmetic from overflowing on absurd attribute values.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Milliseconds as a duration, at most [`FOREVER`].
fn ms(v: u64) -> Duration {
    Duration::from_millis(v).min(FOREVER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::model::HttpMatch;
    use crate::faults::seed::DecisionKey;

    fn rng() -> Draws {
        Draws {
            connection: DecisionKey { seed: 3, proxy: "p", connection: 0, toxic: "t", revision: 0 }.rng(),
            requests: RequestDraws::new(3, "p".into(), "t".into(), 0, 1.0, Default::default()),
            effects: EffectSink::discard(),
        }
    }

    fn run(kind: ToxicKind, inputs: Vec<Timed>) -> Vec<Timed> {
        let now = inputs.first().map_or_else(Instant::now, |t| t.at);
        let mut stage = stage(&kind, rng(), now, Joining::AtStart, 9);
        let mut out = Vec::new();
        for input in inputs {
            stage.on_event(input, &mut out);
        }
        out
    }

    fn data(at: Instant, bytes: &'static [u8]) -> Timed {
        Timed::new(at, Event::Data(Bytes::from_static(bytes)))
    }

    #[test]
    fn bandwidth_schedules_slices_at_the_rate() {
        let t0 = Instant::now();
        let big = Timed::new(t0, Event::Data(Bytes::from(vec![0u8; 100_000])));
        let out = run(ToxicKind::Bandwidth { rate: 1000 }, vec![big]);
        assert_eq!(out.len(), 10, "10 ms slices of 10 KB");
        assert_eq!(out.last().map(|t| t.at - t0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn limit_data_truncates_then_closes_once() {
        let t0 = Instant::now();
        let out = run(ToxicKind::LimitData { bytes: 5 }, vec![data(t0, b"abc"), data(t0, b"defg"), data(t0, b"h")]);
        let events: Vec<Event> = out.into_iter().map(|t| t.event).collect();
        assert_eq!(
            events,
            [Event::Data(Bytes::from_static(b"abc")), Event::Data(Bytes::from_static(b"de")), Event::Close]
        );
    }

    #[test]
    fn reset_peer_drops_data_and_resets_after_the_timeout() {
        let t0 = Instant::now();
        let out = run(ToxicKind::ResetPeer { timeout: 30 }, vec![data(t0, b"x"), data(t0, b"y")]);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].event.clone(), out[0].at - t0, out[0].origin), (Event::Reset, ms(30), 9));
    }

    #[test]
    fn slow_close_delays_only_the_end() {
        let t0 = Instant::now();
        let out = run(ToxicKind::SlowClose { delay: 40 }, vec![data(t0, b"x"), Timed::new(t0, Event::Eof)]);
        assert_eq!(out[0].at, t0);
        assert_eq!((out[1].event.clone(), out[1].at - t0), (Event::Eof, ms(40)));
    }

    #[test]
    fn timeout_closes_at_its_deadline_or_on_removal() {
        let t0 = Instant::now();
        let mut s = stage(&ToxicKind::Timeout { timeout: 50 }, rng(), t0, Joining::AtStart, 4);
        let mut out = Vec::new();
        s.on_event(data(t0, b"dropped"), &mut out);
        assert!(out.is_empty());
        assert_eq!(s.deadline(), Some(t0 + ms(50)));
        s.on_deadline(t0 + ms(50), &mut out);
        assert_eq!(out.first().map(|t| (&t.event, t.origin)), Some((&Event::Close, 4)));
        let mut held = stage(&ToxicKind::Timeout { timeout: 0 }, rng(), t0, Joining::AtStart, 5);
        assert_eq!(held.deadline(), None);
        let mut out = Vec::new();
        held.on_removed(t0, &mut out);
        assert_eq!(out.first().map(|t| &t.event), Some(&Event::Close));
    }

    #[test]
    fn jitter_is_drawn_per_byte_offset_not_per_read() {
        let t0 = Instant::now();
        let kind = ToxicKind::Latency { latency: 50, jitter: 40 };
        let delays = |reads: &[&'static [u8]]| -> Vec<(usize, Duration)> {
            let out = run(kind.clone(), reads.iter().map(|r| data(t0, r)).collect());
            let mut offset = 0;
            out.iter()
                .zip(reads)
                .map(|(t, r)| {
                    let at = offset;
                    offset += r.len();
                    (at, t.at - t0)
                })
                .collect()
        };
        let whole = delays(&[b"ab", b"cd", b"ef"]);
        let split = delays(&[b"ab", b"c", b"d", b"ef"]);
        let same_offsets: Vec<_> = split.iter().filter(|(o, _)| *o != 3).copied().collect();
        assert_eq!(whole, same_offsets, "a different split of the reads changed the delays");
        assert!(whole.iter().any(|(_, d)| *d != ms(50)), "no jitter: {whole:?}");
    }

    #[test]
    fn http_delay_delays_touched_requests_only() {
        let t0 = Instant::now();
        let kind = ToxicKind::HttpDelay {
            delay: 25,
            matching: HttpMatch { percentage: 100.0, method: Some("GET".into()), path_prefix: None },
        };
        let out = run(kind, vec![data(t0, b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\n\r\n")]);
        let times: Vec<Duration> = out.iter().map(|t| t.at - t0).collect();
        assert_eq!(times, [ms(25), ms(0)]);
    }
}
