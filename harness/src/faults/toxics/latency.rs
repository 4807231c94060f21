//! `latency`: every chunk leaves `latency` ± `jitter` ms after it arrived. Chunks keep
//! their order, so a later chunk never overtakes an earlier one. The jitter of a chunk
//! is drawn for the byte offset it starts at, so it does not depend on how many reads
//! came before; on a link carrying HTTP/1.1 it is drawn once per request instead, and
//! the whole request (or response) takes that delay.

use std::time::Duration;

use rand::Rng;

use super::{ms, Event, Stage, Timed};
use crate::faults::seed::{draw_at, DecisionRng};

/// The latency toxic on one connection.
pub(super) struct Latency {
    latency: u64,
    jitter: u64,
    key: u64,
    offset: u64,
}

impl Latency {
    pub(super) fn new(latency: u64, jitter: u64, mut rng: DecisionRng) -> Self {
        Self { latency, jitter, key: rng.random(), offset: 0 }
    }

    /// The latency of one HTTP exchange: its jitter drawn once, from the request's own
    /// generator.
    pub(super) fn for_request(latency: u64, jitter: u64, mut rng: DecisionRng) -> Self {
        let spread = if jitter == 0 { 0 } else { rng.random_range(0..jitter.saturating_mul(2)) };
        let latency = latency.saturating_add(spread).saturating_sub(jitter);
        Self { latency, jitter: 0, key: 0, offset: 0 }
    }

    fn delay(&mut self, len: usize) -> Duration {
        let at = self.offset;
        self.offset = self.offset.saturating_add(len as u64);
        if self.jitter == 0 {
            return ms(self.latency);
        }
        let spread = draw_at(self.key, at, self.jitter.saturating_mul(2));
        ms(self.latency.saturating_add(spread).saturating_sub(self.jitter))
    }
}

impl Stage for Latency {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        // End of stream is not delayed itself; it follows the delayed data (the chain
        // keeps events in order).
        let by = match input.event {
            Event::Data(ref bytes) => self.delay(bytes.len()),
            _ => Duration::ZERO,
        };
        out.push(input.delayed(by));
    }
}
