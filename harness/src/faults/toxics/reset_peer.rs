//! `reset_peer`: on the first data (or end of stream), waits `timeout` ms and resets the
//! connection with a TCP RST; data is dropped, as an abrupt close would lose it.

use super::{ms, Event, Stage, Timed};

/// The reset_peer toxic on one connection.
pub(super) struct ResetPeer {
    timeout: u64,
    triggered: bool,
    uid: u64,
}

impl ResetPeer {
    pub(super) fn new(timeout: u64, uid: u64) -> Self {
        Self { timeout, triggered: false, uid }
    }
}

impl Stage for ResetPeer {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        if self.triggered {
            return;
        }
        self.triggered = true;
        out.push(Timed { at: input.at + ms(self.timeout), event: Event::Reset, origin: self.uid });
    }
}
