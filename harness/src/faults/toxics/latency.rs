//! `latency`: every chunk leaves `latency` ± `jitter` ms after it arrived. Chunks keep
//! their order, so a later chunk never overtakes an earlier one.

use std::time::Duration;

use rand::Rng;

use super::{ms, Event, Stage, Timed};
use crate::faults::seed::DecisionRng;

/// The latency toxic on one connection.
pub(super) struct Latency {
    latency: u64,
    jitter: u64,
    rng: DecisionRng,
}

impl Latency {
    pub(super) fn new(latency: u64, jitter: u64, rng: DecisionRng) -> Self {
        Self { latency, jitter, rng }
    }

    fn delay(&mut self) -> Duration {
        if self.jitter == 0 {
            return ms(self.latency);
        }
        let spread = self.rng.random_range(0..self.jitter.saturating_mul(2));
        ms(self.latency.saturating_add(spread).saturating_sub(self.jitter))
    }
}

impl Stage for Latency {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        // End of stream is not delayed itself; it follows the delayed data (the chain
        // keeps events in order).
        let by = match input.event {
            Event::Data(_) => self.delay(),
            _ => Duration::ZERO,
        };
        out.push(input.delayed(by));
    }
}
