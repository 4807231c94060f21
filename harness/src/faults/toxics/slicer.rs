//! `slicer`: cuts each chunk into slices of about `average_size` ± `size_variation`
//! bytes, `delay` µs apart, as Toxiproxy does (halving recursively around a random
//! middle, so slices vary evenly along the chunk).

use std::time::Duration;

use bytes::Bytes;
use rand::Rng;

use super::{Event, Stage, Timed};
use crate::faults::seed::DecisionRng;

/// The slicer toxic on one connection.
pub(super) struct Slicer {
    average: usize,
    variation: usize,
    delay: Duration,
    rng: DecisionRng,
}

impl Slicer {
    pub(super) fn new(average: u64, variation: u64, delay_us: u64, rng: DecisionRng) -> Self {
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Self {
            average: size(average).max(1),
            variation: size(variation),
            delay: Duration::from_micros(delay_us).min(super::FOREVER),
            rng,
        }
    }

    /// The cut offsets of a chunk of `len` bytes, `0` and `len` included.
    fn cuts(&mut self, len: usize) -> Vec<usize> {
        let mut cuts = vec![0];
        let mut pending = vec![(0, len)];
        while let Some((start, end)) = pending.pop() {
            if (end - start).saturating_sub(self.average) <= self.variation || end - start < 2 {
                cuts.push(end);
                continue;
            }
            // Here the variation is less than the chunk, so it fits an i64.
            let variation = i64::try_from(self.variation).unwrap_or(i64::MAX);
            let offset = if variation == 0 { 0 } else { self.rng.random_range(-variation..variation) };
            let offset = isize::try_from(offset).unwrap_or(0);
            let mid = (start + (end - start) / 2).saturating_add_signed(offset).clamp(start + 1, end - 1);
            // Right half first so the left half is cut first (a stack).
            pending.push((mid, end));
            pending.push((start, mid));
        }
        cuts
    }
}

impl Stage for Slicer {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let Event::Data(data) = input.event else {
            out.push(input);
            return;
        };
        let cuts = self.cuts(data.len());
        let mut at = input.at;
        for pair in cuts.windows(2) {
            let piece: Bytes = data.slice(pair[0]..pair[1]);
            out.push(Timed::new(at, Event::Data(piece)));
            at += self.delay;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::seed::DecisionKey;

    #[test]
    fn cuts_cover_the_chunk_within_the_size_bounds() {
        let key = DecisionKey { seed: 1, proxy: "p", connection: 0, toxic: "s", revision: 0 };
        let mut s = Slicer::new(100, 20, 0, key.rng());
        let cuts = s.cuts(10_000);
        assert_eq!(cuts.first(), Some(&0));
        assert_eq!(cuts.last(), Some(&10_000));
        for w in cuts.windows(2) {
            let size = w[1] - w[0];
            assert!(size > 0 && size <= 120, "slice of {size}");
        }
        assert!(cuts.len() > 50, "{} slices", cuts.len() - 1);
    }
}
