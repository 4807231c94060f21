//! A TCP toxic that decides per HTTP request: on a link carrying HTTP/1.1 the chain marks
//! where each request (upstream) or its response (downstream) begins
//! ([`Stage::on_exchange`]), and this stage draws the toxic's toxicity, and its other
//! random choices, from a generator keyed by that request (its digest and occurrence,
//! as the HTTP toxics draw), not by the connection's accept ordinal. Pooled clients that
//! interleave differently from run to run so get the same decisions for the same
//! requests.
//!
//! How far a decision reaches depends on what the toxic does:
//!
//! - `latency`, `bandwidth`, `slicer` act on the bytes of one exchange: a touched
//!   request, or the response to a touched request, is delayed, throttled or sliced;
//!   the next one decides afresh.
//! - `timeout`, `reset_peer`, `limit_data` end the connection: each request draws until
//!   one is touched, and from that request on the toxic acts on the rest of the
//!   connection (stalls it, resets it, or lets `bytes` more through then closes it).
//! - `slow_close` acts on the connection's end only: the connection's first request
//!   decides for it.
//!
//! Bytes that belong to no known request (a link that is not HTTP, bytes before the
//! first request, a response to a request sent before the toxic came) take the
//! connection's decision, keyed by its accept ordinal as before.

use std::time::Instant;

use rand::Rng;

use super::corrupt::Corrupt;
use super::effects::EffectSink;
use super::latency::Latency;
use super::{stage, Draws, Joining, Stage, Timed};
use crate::faults::model::ToxicKind;
use crate::faults::seed::DecisionRng;

use super::http_framing::RequestDraws;

/// How far one decision of a toxic reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    /// The bytes of one exchange.
    Exchange,
    /// Once touched, the rest of the connection.
    RestOfConnection,
    /// The connection as a whole, decided by its first exchange.
    Connection,
}

impl Reach {
    fn of(kind: &ToxicKind) -> Self {
        match kind {
            ToxicKind::Timeout { .. } | ToxicKind::ResetPeer { .. } | ToxicKind::LimitData { .. } => {
                Self::RestOfConnection
            }
            ToxicKind::SlowClose { .. } => Self::Connection,
            _ => Self::Exchange,
        }
    }
}

/// A TCP toxic on one direction of one connection, deciding per request.
pub(super) struct ByRequest {
    kind: ToxicKind,
    uid: u64,
    reach: Reach,
    requests: RequestDraws,
    effects: EffectSink,
    /// The connection's generator after its toxicity draw, when that draw touched it.
    by_connection: Option<DecisionRng>,
    /// The stage acting on the current exchange, `None` when it is untouched.
    current: Option<Box<dyn Stage>>,
    /// `current` follows the connection's decision (no request decided yet, or the
    /// last exchange was a response to no known request).
    on_connection: bool,
    /// No later exchange decides again.
    settled: bool,
}

impl ByRequest {
    pub(super) fn new(kind: ToxicKind, draws: Draws, now: Instant, uid: u64) -> Self {
        let Draws { connection: mut rng, requests, effects } = draws;
        // The same first draw as a toxic deciding per connection, so a link that is not
        // HTTP gets exactly the decisions it got before.
        let by_connection = (rng.random::<f32>() < requests.toxicity()).then_some(rng);
        let mut this = Self {
            reach: Reach::of(&kind),
            kind,
            uid,
            requests,
            effects,
            by_connection: None,
            current: None,
            on_connection: true,
            settled: false,
        };
        this.current = by_connection.clone().map(|rng| this.build(rng, now, false));
        this.by_connection = by_connection;
        this
    }

    fn build(&self, rng: DecisionRng, now: Instant, for_request: bool) -> Box<dyn Stage> {
        match self.kind {
            ToxicKind::Latency { latency, jitter } if for_request => {
                Box::new(Latency::for_request(latency, jitter, rng))
            }
            // An exchange starts with its head: the one place a head is known.
            ToxicKind::Corrupt { rate, spare_head } if for_request => {
                Box::new(Corrupt::new(rate, spare_head, rng, self.effects.clone()))
            }
            _ => {
                let draws = Draws { connection: rng, requests: self.requests.clone(), effects: self.effects.clone() };
                stage(&self.kind, draws, now, Joining::AtStart, self.uid)
            }
        }
    }
}

impl Stage for ByRequest {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        match self.current.as_mut() {
            Some(stage) => stage.on_event(input, out),
            None => out.push(input),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.current.as_ref().and_then(|s| s.deadline())
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Timed>) {
        if let Some(stage) = self.current.as_mut() {
            stage.on_deadline(now, out);
        }
    }

    fn on_removed(&mut self, now: Instant, out: &mut Vec<Timed>) {
        if let Some(stage) = self.current.as_mut() {
            stage.on_removed(now, out);
        }
    }

    fn on_exchange(&mut self, digest: Option<u64>, at: Instant) {
        if self.settled {
            // Still counted, so the occurrences of a request do not depend on which
            // connection carried the ones before it.
            if let Some(digest) = digest {
                let _ = self.requests.draw(digest);
            }
            return;
        }
        let (touched, for_request) = match digest {
            Some(digest) => (self.requests.draw(digest), true),
            // Already on the connection's decision: the stage keeps its state (a
            // timeout keeps its clock), exactly as on a link that is not HTTP.
            None if self.on_connection => return,
            None => (self.by_connection.clone(), false),
        };
        self.on_connection = !for_request;
        self.settled = match self.reach {
            Reach::Exchange => false,
            Reach::RestOfConnection => touched.is_some(),
            Reach::Connection => true,
        };
        self.current = touched.map(|rng| self.build(rng, at, for_request));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::faults::seed::DecisionKey;
    use crate::faults::toxics::Event;

    fn by_request(kind: ToxicKind, toxicity: f32, now: Instant) -> ByRequest {
        let draws = Draws {
            connection: DecisionKey { seed: 5, proxy: "p", connection: 0, toxic: "t", revision: 0 }.rng(),
            requests: RequestDraws::new(5, "p".into(), "t".into(), 0, toxicity, Default::default()),
            effects: EffectSink::discard(),
        };
        ByRequest::new(kind, draws, now, 3)
    }

    /// The delay each of `digests` gets, one exchange each, in this order.
    fn delays(stage: &mut ByRequest, t0: Instant, digests: &[u64]) -> Vec<Duration> {
        digests
            .iter()
            .map(|d| {
                stage.on_exchange(Some(*d), t0);
                let mut out = Vec::new();
                stage.on_event(Timed::new(t0, Event::Data(Bytes::from_static(b"x"))), &mut out);
                out[0].at - t0
            })
            .collect()
    }

    #[test]
    fn each_request_decides_by_itself_whatever_came_before() {
        let t0 = Instant::now();
        let kind = ToxicKind::Latency { latency: 40, jitter: 10 };
        let forward: Vec<u64> = (0..64).collect();
        let a = delays(&mut by_request(kind.clone(), 0.5, t0), t0, &forward);
        let mut backward = forward.clone();
        backward.reverse();
        let mut b = delays(&mut by_request(kind, 0.5, t0), t0, &backward);
        b.reverse();
        assert_eq!(a, b, "the order of the requests changed their decisions");
        let touched = a.iter().filter(|d| !d.is_zero()).count();
        assert!((16..=48).contains(&touched), "{touched} of 64 touched at toxicity 0.5");
        assert!(a.iter().all(|d| d.is_zero() || (*d >= ms(30) && *d < ms(50))), "{a:?}");
        assert!(a.iter().filter(|d| !d.is_zero()).any(|d| *d != ms(40)), "no jitter: {a:?}");
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn bytes_of_no_known_request_keep_the_connection_decision_and_its_clock() {
        let t0 = Instant::now();
        let mut stage = by_request(ToxicKind::Timeout { timeout: 50 }, 0.999, t0);
        assert_eq!(stage.deadline(), Some(t0 + ms(50)));
        stage.on_exchange(None, t0 + ms(20));
        assert_eq!(stage.deadline(), Some(t0 + ms(50)), "an unknown response restarted the timeout");
    }

    #[test]
    fn a_toxic_ending_the_connection_acts_from_the_first_touched_request_on() {
        let t0 = Instant::now();
        let mut stage = by_request(ToxicKind::ResetPeer { timeout: 0 }, 0.5, t0);
        let mut resets = 0;
        for digest in 0..64 {
            stage.on_exchange(Some(digest), t0);
            let mut out = Vec::new();
            stage.on_event(Timed::new(t0, Event::Data(Bytes::from_static(b"x"))), &mut out);
            if out.iter().any(|t| t.event == Event::Reset) {
                resets += 1;
            }
            if resets > 0 {
                assert!(out.iter().all(|t| t.event != Event::Data(Bytes::from_static(b"x"))), "data after a reset");
            }
        }
        assert_eq!(resets, 1, "one reset, then the connection is gone");
    }
}
