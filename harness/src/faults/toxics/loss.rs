//! `loss`: what lost TCP segments do to a stream. A proxy sees a byte stream, not
//! packets, and on loopback nothing is lost, so the toxic models the effect a lost
//! segment has on the receiver: the stream is cut into segments of `segment_size` bytes
//! (by byte offset, so how the bytes were split into reads does not matter); each
//! segment is lost with `probability` (or, with a burst model, with the loss probability
//! of the Gilbert–Elliott state it is first sent in, the state stepping once per
//! segment), and a lost segment is held back until its retransmission arrives: `rto`
//! later, doubling for each retransmission lost too (with `probability`: a burst is
//! taken to be over a timeout later), up to `max_rto`. The bytes after a held segment wait behind
//! it (TCP delivers in order); the bytes before it leave at once.
//!
//! Every draw depends only on the toxic's seed and the segment's index and attempt, so
//! a seed replays the same losses; on a link carrying HTTP/1.1 each request and response
//! draws from its own key (see `by_request`), whatever connection carries it.

use std::time::Duration;

use rand::Rng;

use super::effects::EffectSink;
use super::{ms, Event, Stage, Timed};
use crate::faults::model::{Burst, ToxicKind};
use crate::faults::seed::{draw_at, DecisionRng};

/// The most retransmissions of one segment that can be lost: Linux's `tcp_retries2`.
/// Past it the segment gets through (a real TCP would have reset the connection).
pub const MAX_RETRANSMISSIONS: u32 = 15;

/// Draws per segment: a state step, then a loss draw per transmission.
const DRAWS_PER_SEGMENT: u64 = MAX_RETRANSMISSIONS as u64 + 2;

/// The `loss` attributes.
#[derive(Clone, Debug)]
pub struct LossModel {
    /// Loss probability per transmission (in the good state).
    pub probability: f64,
    /// First retransmission timeout, ms.
    pub rto: u64,
    /// Longest retransmission timeout, ms.
    pub max_rto: u64,
    /// Bytes per segment.
    pub segment_size: u64,
    /// Gilbert–Elliott bursts.
    pub burst: Option<Burst>,
}

impl LossModel {
    /// The model of a `loss` toxic, `None` for another kind.
    pub fn of(kind: &ToxicKind) -> Option<Self> {
        match kind {
            ToxicKind::Loss { probability, rto, max_rto, segment_size, burst } => Some(Self {
                probability: *probability,
                rto: *rto,
                max_rto: *max_rto,
                segment_size: *segment_size,
                burst: burst.clone(),
            }),
            _ => None,
        }
    }

    /// The retransmission timeout after `lost` consecutive losses of a segment (0: the
    /// first timeout).
    pub fn rto_after(&self, lost: u32) -> u64 {
        self.rto.saturating_mul(1u64.checked_shl(lost).unwrap_or(u64::MAX)).min(self.max_rto)
    }
}

/// The losses of a stream, segment after segment: the part of the model that draws.
#[derive(Clone, Debug)]
pub struct LossDraws {
    model: LossModel,
    key: u64,
    /// The Gilbert–Elliott state: in a burst.
    bad: bool,
}

impl LossDraws {
    /// The draws of a stream keyed by `key`.
    pub fn new(model: LossModel, key: u64) -> Self {
        Self { model, key, bad: false }
    }

    /// How long segment `index` is held back, calling `on_lost` with the timeout each
    /// lost transmission waits. Segments must be asked for in order (the burst state
    /// steps with each).
    pub fn hold(&mut self, index: u64, mut on_lost: impl FnMut(u64)) -> Duration {
        let base = index.wrapping_mul(DRAWS_PER_SEGMENT);
        let first = self.step(base);
        let mut held = 0u64;
        for attempt in 0..=MAX_RETRANSMISSIONS {
            let p = if attempt == 0 { first } else { self.model.probability };
            if unit(self.key, base.wrapping_add(1 + u64::from(attempt))) >= p {
                break;
            }
            if attempt == MAX_RETRANSMISSIONS {
                break;
            }
            let rto = self.model.rto_after(attempt);
            on_lost(rto);
            held = held.saturating_add(rto);
        }
        ms(held)
    }

    /// Steps the burst state for one segment; the loss probability of its first
    /// transmission.
    fn step(&mut self, at: u64) -> f64 {
        let Some(burst) = &self.model.burst else {
            return self.model.probability;
        };
        let u = unit(self.key, at);
        self.bad = if self.bad { u >= burst.exit } else { u < burst.enter };
        if self.bad {
            burst.loss
        } else {
            self.model.probability
        }
    }
}

/// A draw in `[0, 1)` that depends only on `key` and `at`.
fn unit(key: u64, at: u64) -> f64 {
    const SCALE: u64 = 1 << 53;
    draw_at(key, at, SCALE) as f64 / SCALE as f64
}

/// The loss toxic on one direction of one connection (or one HTTP exchange).
pub(super) struct Loss {
    draws: LossDraws,
    segment_size: u64,
    /// Bytes seen.
    offset: u64,
    /// The segment the last byte seen belongs to, and the instant it is released.
    current: Option<(u64, std::time::Instant)>,
    effects: EffectSink,
}

impl Loss {
    pub(super) fn new(model: LossModel, mut rng: DecisionRng, effects: EffectSink) -> Self {
        let segment_size = model.segment_size.max(1);
        Self { draws: LossDraws::new(model, rng.random()), segment_size, offset: 0, current: None, effects }
    }
}

impl Stage for Loss {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let Event::Data(data) = input.event else {
            out.push(input);
            return;
        };
        // Cut where the release instant changes: the bytes before a held segment leave
        // on time, the rest wait behind it (the chain keeps later events in order).
        let mut start = 0usize;
        let mut piece_at = input.at;
        let mut i = 0usize;
        while i < data.len() {
            let offset = self.offset + i as u64;
            let index = offset / self.segment_size;
            let release = match self.current {
                Some((current, at)) if current == index => at,
                _ => {
                    let effects = &self.effects;
                    let at = input.at + self.draws.hold(index, |rto| effects.segment_lost(rto));
                    self.current = Some((index, at));
                    at
                }
            };
            if release != piece_at && i > start {
                out.push(Timed::new(piece_at, Event::Data(data.slice(start..i))));
                start = i;
            }
            piece_at = release;
            let segment_end = (index + 1).saturating_mul(self.segment_size);
            let step = usize::try_from(segment_end - offset).unwrap_or(usize::MAX);
            i = i.saturating_add(step).min(data.len());
        }
        if start < data.len() {
            out.push(Timed::new(piece_at, Event::Data(data.slice(start..))));
        }
        self.offset = self.offset.saturating_add(data.len() as u64);
    }
}

/// The data of `out` as one buffer, for tests.
#[cfg(test)]
pub(super) fn joined(out: &[Timed]) -> bytes::Bytes {
    let mut all = Vec::new();
    for t in out {
        if let Event::Data(d) = &t.event {
            all.extend_from_slice(d);
        }
    }
    bytes::Bytes::from(all)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::faults::seed::DecisionKey;

    fn model(probability: f64, burst: Option<Burst>) -> LossModel {
        LossModel { probability, rto: 200, max_rto: 1600, segment_size: 100, burst }
    }

    fn rng(seed: u64) -> DecisionRng {
        DecisionKey { seed, proxy: "p", connection: 0, toxic: "loss", revision: 0 }.rng()
    }

    /// Holds of `n` segments, and the timeouts of the transmissions lost.
    fn holds(model: LossModel, seed: u64, n: u64) -> (Vec<Duration>, Vec<u64>) {
        let mut draws = LossDraws::new(model, rng(seed).random());
        let mut lost = Vec::new();
        let holds = (0..n).map(|i| draws.hold(i, |rto| lost.push(rto))).collect();
        (holds, lost)
    }

    #[test]
    fn segments_are_lost_at_the_probability_and_retransmitted_with_backoff() {
        let n = 20_000;
        let (holds, lost) = holds(model(0.1, None), 7, n);
        // Each transmission is lost with 0.1: about n·0.1/(1-0.1) losses in all, and a
        // first loss on 10% of the segments. 4 standard deviations either way.
        let first = lost.iter().filter(|r| **r == 200).count() as f64;
        let sd = (n as f64 * 0.1 * 0.9).sqrt();
        assert!((first - 2000.0).abs() < 4.0 * sd, "{first} segments lost of {n} at 0.1");
        let second = lost.iter().filter(|r| **r == 400).count() as f64;
        assert!((second - 200.0).abs() < 4.0 * (200.0f64).sqrt(), "{second} second losses, expected about 200");
        let held = holds.iter().filter(|h| !h.is_zero()).count() as f64;
        assert_eq!(held, first, "every segment lost once is held back");
        // A hold is a sum of doubling timeouts: 200, 200+400, 200+400+800, ...
        let allowed = [0, 200, 600, 1400, 3000, 4600].map(Duration::from_millis);
        assert!(holds.iter().all(|h| allowed.contains(h)), "a hold off the backoff ladder");
        assert!(holds.contains(&Duration::from_millis(600)), "no consecutive losses over {n} segments");
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let m = model(0.0, None);
        let ladder: Vec<u64> = (0..6).map(|k| m.rto_after(k)).collect();
        assert_eq!(ladder, [200, 400, 800, 1600, 1600, 1600]);
        assert_eq!(m.rto_after(200), 1600, "a huge exponent saturates");
        let (holds, lost) = holds(model(1.0, None), 1, 3);
        assert_eq!(lost.len(), 3 * MAX_RETRANSMISSIONS as usize, "losses per segment are bounded");
        assert!(holds.iter().all(|h| *h == holds[0]));
    }

    #[test]
    fn bursts_cluster_the_losses() {
        let n = 20_000;
        // The same long-run loss rate, alone or in bursts: bursts give runs of losses.
        let burst = Burst { enter: 0.01, exit: 0.25, loss: 1.0 };
        let runs = |holds: &[Duration]| holds.windows(2).filter(|w| !w[0].is_zero() && !w[1].is_zero()).count();
        let (bursty, lost) = holds(model(0.0, Some(burst)), 3, n);
        let (even, _) = holds(model(0.04, None), 3, n);
        let bursty_held = bursty.iter().filter(|h| !h.is_zero()).count();
        assert!(bursty_held > 200, "{bursty_held} held in bursts");
        assert!(runs(&bursty) > 5 * runs(&even).max(1), "bursty {} runs, even {}", runs(&bursty), runs(&even));
        assert_eq!(lost.len(), bursty_held, "a retransmission after a burst is lost with the good state's 0");
    }

    #[test]
    fn the_same_seed_loses_the_same_segments_however_the_reads_are_split() {
        let t0 = Instant::now();
        let data: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        let run = |seed: u64, read: usize| {
            let mut loss = Loss::new(model(0.2, None), rng(seed), EffectSink::discard());
            let mut out = Vec::new();
            for chunk in data.chunks(read) {
                loss.on_event(Timed::new(t0, Event::Data(Bytes::copy_from_slice(chunk))), &mut out);
            }
            assert_eq!(joined(&out), data, "bytes changed or were dropped");
            // The release instant of every byte.
            let mut at = Vec::new();
            for t in &out {
                if let Event::Data(d) = &t.event {
                    at.extend(std::iter::repeat_n(t.at - t0, d.len()));
                }
            }
            at
        };
        let whole = run(11, 4096);
        assert_eq!(whole, run(11, 333), "the split of the reads changed the losses");
        assert_ne!(whole, run(12, 4096), "another seed lost the same segments");
        assert!(whole[..100].iter().all(|d| *d == whole[0]), "a segment was cut");
        assert!(whole.iter().any(|d| d.is_zero()) && whole.iter().any(|d| !d.is_zero()));
    }

    #[test]
    fn bytes_before_a_lost_segment_leave_on_time() {
        let t0 = Instant::now();
        // Find a seed whose first segment goes through and a later one is lost.
        let seed = (0..1000)
            .find(|s| {
                let (h, _) = holds(model(0.3, None), *s, 3);
                h[0].is_zero() && !h[1].is_zero()
            })
            .expect("some seed in 1000 loses the second segment only");
        let mut loss = Loss::new(model(0.3, None), rng(seed), EffectSink::discard());
        let mut out = Vec::new();
        loss.on_event(Timed::new(t0, Event::Data(Bytes::from(vec![1u8; 250]))), &mut out);
        assert_eq!(out[0].at, t0);
        assert_eq!(out[0].event, Event::Data(Bytes::from(vec![1u8; 100])));
        assert!(out[1].at > t0, "the lost segment was not held");
    }
}
