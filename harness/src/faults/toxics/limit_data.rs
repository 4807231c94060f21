//! `limit_data`: lets `bytes` bytes through, then closes the connection.

use super::{Event, Stage, Timed};

/// The limit_data toxic on one connection.
pub(super) struct LimitData {
    limit: u64,
    sent: u64,
    closed: bool,
    uid: u64,
}

impl LimitData {
    pub(super) fn new(limit: u64, uid: u64) -> Self {
        Self { limit, sent: 0, closed: false, uid }
    }
}

impl Stage for LimitData {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        if self.closed {
            return;
        }
        let Event::Data(mut data) = input.event else {
            out.push(input);
            return;
        };
        let remaining = self.limit.saturating_sub(self.sent);
        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(data.len());
        if take > 0 {
            let part = data.split_to(take);
            self.sent += part.len() as u64;
            out.push(Timed::new(input.at, Event::Data(part)));
        }
        if self.sent >= self.limit {
            self.closed = true;
            out.push(Timed { at: input.at, event: Event::Close, origin: self.uid });
        }
    }
}
