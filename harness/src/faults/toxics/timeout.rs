//! `timeout`: no data passes; after `timeout` ms the connection is closed. With 0 the
//! connection is held open, silent, until the toxic is removed. As in Toxiproxy, removing
//! the toxic closes the connections it held, since the data it dropped is lost.

use std::time::Instant;

use super::{ms, Event, Stage, Timed};

/// The timeout toxic on one connection.
pub(super) struct Timeout {
    deadline: Option<Instant>,
    uid: u64,
}

impl Timeout {
    pub(super) fn new(timeout: u64, now: Instant, uid: u64) -> Self {
        let deadline = (timeout > 0).then(|| now + ms(timeout));
        Self { deadline, uid }
    }

    fn close(&mut self, at: Instant, out: &mut Vec<Timed>) {
        self.deadline = None;
        out.push(Timed { at, event: Event::Close, origin: self.uid });
    }
}

impl Stage for Timeout {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        if input.event == Event::Eof {
            out.push(input);
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn on_deadline(&mut self, now: Instant, out: &mut Vec<Timed>) {
        let at = self.deadline.unwrap_or(now);
        self.close(at, out);
    }

    fn on_removed(&mut self, now: Instant, out: &mut Vec<Timed>) {
        self.close(now, out);
    }
}
