//! `bandwidth`: data leaves at `rate` KB/s (1 KB = 1000 bytes), in slices of 10 ms worth
//! so the rate holds over short windows too.

use std::time::{Duration, Instant};

use super::{Event, Stage, Timed};

/// The bandwidth toxic on one connection.
pub(super) struct Bandwidth {
    bytes_per_sec: u64,
    slice: usize,
    free_at: Option<Instant>,
}

impl Bandwidth {
    pub(super) fn new(rate_kb: u64) -> Self {
        let bytes_per_sec = rate_kb.max(1).saturating_mul(1000);
        let slice = usize::try_from(bytes_per_sec / 100).unwrap_or(usize::MAX).max(1);
        Self { bytes_per_sec, slice, free_at: None }
    }

    fn transmit_time(&self, len: usize) -> Duration {
        let nanos = (len as u128 * 1_000_000_000) / u128::from(self.bytes_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Stage for Bandwidth {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let Event::Data(mut data) = input.event else {
            out.push(input);
            return;
        };
        let mut at = self.free_at.map_or(input.at, |free| free.max(input.at));
        while !data.is_empty() {
            let piece = data.split_to(self.slice.min(data.len()));
            at += self.transmit_time(piece.len());
            out.push(Timed::new(at, Event::Data(piece)));
        }
        self.free_at = Some(at);
    }
}
