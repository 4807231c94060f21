//! What the toxics that damage a stream did, counted per proxy and direction for its
//! `/metrics`: segments the `loss` toxic lost (by the retransmission timeout each waited)
//! and bytes the `corrupt` toxic flipped. A fault's observed effect is read from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::faults::model::Stream;

/// The most distinct (direction, timeout) series one proxy counts losses in; a loss
/// with a timeout beyond them is counted in the longest timeout already there.
const MAX_LOSS_SERIES: usize = 64;

/// The counters of one proxy.
#[derive(Debug, Default)]
pub(crate) struct ToxicEffects {
    /// Segments lost, by direction and by the retransmission timeout (ms) each waited.
    lost: Mutex<BTreeMap<(Stream, u64), u64>>,
    /// Bytes flipped, per direction.
    flipped: [AtomicU64; 2],
}

impl ToxicEffects {
    /// Where the toxics of `stream` count what they did.
    pub(crate) fn sink(self: &Arc<Self>, stream: Stream) -> EffectSink {
        EffectSink { effects: Some(self.clone()), stream }
    }

    /// The segments lost: (direction, retransmission timeout in ms, count), in order.
    pub(crate) fn lost(&self) -> Vec<(Stream, u64, u64)> {
        self.lost.lock().map(|m| m.iter().map(|((s, rto), n)| (*s, *rto, *n)).collect()).unwrap_or_default()
    }

    /// The bytes flipped on `stream`.
    pub(crate) fn flipped(&self, stream: Stream) -> u64 {
        self.flipped[stream.index()].load(Ordering::Relaxed)
    }
}

/// Where one toxic stage counts what it did; a sink without counters (in unit tests)
/// counts nothing.
#[derive(Clone, Debug)]
pub struct EffectSink {
    effects: Option<Arc<ToxicEffects>>,
    stream: Stream,
}

impl EffectSink {
    /// A sink that counts nothing.
    pub fn discard() -> Self {
        Self { effects: None, stream: Stream::Downstream }
    }

    /// A segment was lost and is retransmitted after `rto_ms`.
    pub(crate) fn segment_lost(&self, rto_ms: u64) {
        let Some(effects) = &self.effects else { return };
        let Ok(mut lost) = effects.lost.lock() else { return };
        let mut key = (self.stream, rto_ms);
        if lost.len() >= MAX_LOSS_SERIES && !lost.contains_key(&key) {
            match lost.keys().rev().find(|(s, _)| *s == self.stream) {
                Some(longest) => key = *longest,
                None => return,
            }
        }
        *lost.entry(key).or_insert(0) += 1;
    }

    /// `n` bytes were flipped.
    pub(crate) fn bytes_flipped(&self, n: u64) {
        if let Some(effects) = &self.effects {
            effects.flipped[self.stream.index()].fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_are_counted_per_direction_and_timeout() {
        let effects = Arc::new(ToxicEffects::default());
        let up = effects.sink(Stream::Upstream);
        let down = effects.sink(Stream::Downstream);
        up.segment_lost(200);
        up.segment_lost(400);
        up.segment_lost(200);
        down.segment_lost(200);
        down.bytes_flipped(3);
        assert_eq!(
            effects.lost(),
            [(Stream::Upstream, 200, 2), (Stream::Upstream, 400, 1), (Stream::Downstream, 200, 1)]
        );
        assert_eq!((effects.flipped(Stream::Upstream), effects.flipped(Stream::Downstream)), (0, 3));
    }

    #[test]
    fn loss_series_are_bounded() {
        let effects = Arc::new(ToxicEffects::default());
        let up = effects.sink(Stream::Upstream);
        for rto in 1..=(MAX_LOSS_SERIES as u64 + 10) {
            up.segment_lost(rto);
        }
        let lost = effects.lost();
        assert_eq!(lost.len(), MAX_LOSS_SERIES);
        assert_eq!(lost.iter().map(|(_, _, n)| n).sum::<u64>(), MAX_LOSS_SERIES as u64 + 10, "a loss went uncounted");
    }
}
