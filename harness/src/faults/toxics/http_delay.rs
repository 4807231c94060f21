//! `http_delay` (Gauntlet extension): a touched HTTP request is forwarded `delay` ms
//! after it arrived; requests behind it on the connection wait for it, as on a wire.

use std::time::Duration;

use super::http_framing::{Piece, RequestDraws, RequestFramer};
use super::{ms, Event, Joining, Stage, Timed};
use crate::faults::model::HttpMatch;

/// The http_delay toxic on one connection.
pub(super) struct HttpDelay {
    framer: RequestFramer,
    matching: HttpMatch,
    delay: Duration,
    draws: RequestDraws,
    current: Duration,
}

impl HttpDelay {
    pub(super) fn new(delay: u64, matching: HttpMatch, draws: RequestDraws, joining: Joining) -> Self {
        Self { framer: RequestFramer::joining(joining), matching, delay: ms(delay), draws, current: Duration::ZERO }
    }
}

impl Stage for HttpDelay {
    fn on_event(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let Event::Data(data) = input.event else {
            out.push(input);
            return;
        };
        let mut pieces = Vec::new();
        self.framer.feed(data, &mut pieces);
        for piece in pieces {
            match piece {
                Piece::Head { method, path, id, bytes } => {
                    let delay = self.draws.touched(&self.matching, &method, &path, id.as_deref());
                    self.current = if delay { self.delay } else { Duration::ZERO };
                    out.push(Timed::new(input.at + self.current, Event::Data(bytes)));
                }
                Piece::Body(bytes) => out.push(Timed::new(input.at + self.current, Event::Data(bytes))),
                Piece::Raw(bytes) => out.push(Timed::new(input.at, Event::Data(bytes))),
                Piece::End => self.current = Duration::ZERO,
            }
        }
    }
}
