//! `slow_close`: the end of stream leaves `delay` ms after it arrived; data passes.

use super::{ms, Event, Stage, Timed};

/// The slow_close toxic on one connection.
pub(super) struct SlowClose {
    delay: u64,
}

impl SlowClose {
    pub(super) fn new(delay: u64) -> Self {
        Self { delay }
    }
}

impl Stage for SlowClose {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        match input.event {
            Event::Eof => out.push(input.delayed(ms(self.delay))),
            _ => out.push(input),
        }
    }
}
