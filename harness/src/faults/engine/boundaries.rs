//! Where each HTTP/1.1 exchange begins on a link, for toxics that decide per request:
//! the link carrying requests frames them ([`RequestFramer`]) and marks each with
//! [`Event::Request`]; the link carrying responses frames them ([`ResponseFramer`]) and
//! marks each with [`Event::Response`], naming the request it answers, in the order the
//! other link forwarded them (HTTP/1.1 answers requests in order).
//!
//! Invariants: no byte is held back except the part of a request or response head still
//! arriving; bytes of another protocol are never held. A connection counts as HTTP/1.1
//! when the first read from its client begins with a whole request line; a link that
//! starts marking mid-stream frames from the next request line, as HTTP toxics do.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::faults::seed::request_digest;
use crate::faults::toxics::{Event, Framed, Piece, RequestFramer, ResponseFramer, Timed};

/// The most requests whose responses one link waits for; past it the link stops
/// matching responses to requests until the next request finds nothing owed.
const MAX_OWED: usize = 4096;

/// Marks where exchanges begin on one direction of a connection.
#[derive(Debug)]
pub(crate) enum Boundaries {
    /// On the link carrying requests.
    Requests(RequestFramer),
    /// On the link carrying responses.
    Responses(ResponseMarks),
}

impl Boundaries {
    /// Marks for the requests of a connection: `at_start` when no byte has passed yet,
    /// else from the next request line if `looks_http` (the client's first read began
    /// with a request line), else none at all.
    pub(crate) fn requests(at_start: bool, looks_http: bool) -> Self {
        let framer = match (at_start, looks_http) {
            (true, _) => RequestFramer::sniffing(),
            (false, true) => RequestFramer::mid_stream(),
            (false, false) => RequestFramer::passthrough(),
        };
        Self::Requests(framer)
    }

    /// Marks for the responses of a connection.
    pub(crate) fn responses() -> Self {
        Self::Responses(ResponseMarks::default())
    }

    /// Splits `input` where exchanges begin and pushes it with the marks.
    pub(crate) fn mark(&mut self, input: Timed, out: &mut Vec<Timed>) {
        match self {
            Self::Requests(framer) => mark_requests(framer, input, out),
            Self::Responses(marks) => marks.mark(input, out),
        }
    }

    /// The forwarded request with `digest` (a `HEAD` request if `head`) is owed a
    /// response on this link.
    pub(crate) fn owe(&mut self, head: bool, digest: u64) {
        if let Self::Responses(marks) = self {
            marks.owe(head, digest);
        }
    }

    /// The bytes held back for a head still arriving, to pass on when marking stops.
    pub(crate) fn take_pending(&mut self) -> Bytes {
        match self {
            Self::Requests(framer) => framer.take_pending(),
            Self::Responses(marks) => marks.framer.take_pending(),
        }
    }
}

fn mark_requests(framer: &mut RequestFramer, input: Timed, out: &mut Vec<Timed>) {
    let at = input.at;
    match input.event {
        Event::Data(data) => {
            let mut pieces = Vec::new();
            framer.feed(data, &mut pieces);
            for piece in pieces {
                match piece {
                    Piece::Head { method, path, id, bytes } => {
                        let digest = request_digest(&method, &path, id.as_deref());
                        let head = method.eq_ignore_ascii_case("HEAD");
                        out.push(Timed::new(at, Event::Request { head, digest }));
                        out.push(Timed::new(at, Event::Data(bytes)));
                    }
                    Piece::Body(bytes) | Piece::Raw(bytes) => out.push(Timed::new(at, Event::Data(bytes))),
                    Piece::End => {}
                }
            }
        }
        Event::Eof => {
            push_pending(framer.take_pending(), at, out);
            out.push(input);
        }
        _ => out.push(input),
    }
}

fn push_pending(pending: Bytes, at: std::time::Instant, out: &mut Vec<Timed>) {
    if !pending.is_empty() {
        out.push(Timed::new(at, Event::Data(pending)));
    }
}

/// The responses of one connection matched to the requests they answer.
#[derive(Debug, Default)]
pub(crate) struct ResponseMarks {
    framer: ResponseFramer,
    /// The forwarded requests not yet answered: whether each is `HEAD`, its digest.
    owed: VecDeque<(bool, u64)>,
    /// A response is being framed (its first bytes were marked).
    in_response: bool,
    /// The response being framed answers a `HEAD` request.
    head: bool,
}

impl ResponseMarks {
    fn owe(&mut self, head: bool, digest: u64) {
        if self.owed.len() >= MAX_OWED {
            self.owed.clear();
            self.framer = ResponseFramer::new_passthrough();
            self.in_response = false;
        }
        // A request sent when nothing is owed follows the answer to the one before it:
        // the next bytes begin its response, so a framer that lost its place (it joined
        // mid-response) starts over.
        if self.owed.is_empty() && self.framer.is_passthrough() {
            self.framer = ResponseFramer::new();
            self.in_response = false;
        }
        self.owed.push_back((head, digest));
    }

    fn mark(&mut self, input: Timed, out: &mut Vec<Timed>) {
        let at = input.at;
        let mut data = match input.event {
            Event::Data(data) => data,
            Event::Eof => {
                push_pending(self.framer.take_pending(), at, out);
                out.push(input);
                return;
            }
            _ => {
                out.push(input);
                return;
            }
        };
        loop {
            let starting = !self.in_response && !self.framer.is_passthrough();
            let answers_head = if starting { self.owed.front().is_some_and(|o| o.0) } else { self.head };
            match self.framer.next(&mut data, answers_head) {
                None => break,
                Some(Framed::End) => self.in_response = false,
                Some(Framed::Bytes(bytes)) => {
                    if starting {
                        let answered = self.owed.pop_front();
                        self.head = answered.is_some_and(|o| o.0);
                        self.in_response = !self.framer.is_passthrough();
                        out.push(Timed::new(at, Event::Response { digest: answered.map(|o| o.1) }));
                    }
                    out.push(Timed::new(at, Event::Data(bytes)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn marks(b: &mut Boundaries, chunks: &[&'static [u8]]) -> String {
        let t0 = Instant::now();
        let mut out = Vec::new();
        for c in chunks {
            b.mark(Timed::new(t0, Event::Data(Bytes::from_static(c))), &mut out);
        }
        out.iter()
            .map(|t| match &t.event {
                Event::Request { digest, .. } => format!("Q{}", digest % 1000),
                Event::Response { digest } => format!("A{}", digest.map_or(-1, |d| (d % 1000) as i64)),
                Event::Data(b) => format!("D{}", b.len()),
                e => format!("{e:?}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn requests_are_marked_on_http_and_other_protocols_pass_untouched() {
        let get = b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n";
        let q = request_digest("GET", "/a", None) % 1000;
        let mut http = Boundaries::requests(true, false);
        assert_eq!(marks(&mut http, &[get, get]), format!("Q{q} D{} Q{q} D{}", get.len(), get.len()));
        // NATS speaks `CONNECT {...}` with no blank line: never held waiting for one.
        let mut nats = Boundaries::requests(true, false);
        assert_eq!(marks(&mut nats, &[b"CONNECT {\"verbose\":false}\r\n", b"PING\r\n"]), "D27 D6");
        // Joining a connection whose first read was not HTTP: nothing is ever marked.
        let mut late = Boundaries::requests(false, false);
        assert_eq!(marks(&mut late, &[get]), format!("D{}", get.len()));
        let mut late_http = Boundaries::requests(false, true);
        assert_eq!(marks(&mut late_http, &[b"dy", get]), format!("D2 Q{q} D{}", get.len()));
    }

    #[test]
    fn responses_are_marked_with_the_request_they_answer() {
        let mut b = Boundaries::responses();
        b.owe(false, 101);
        b.owe(true, 202);
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n";
        assert_eq!(marks(&mut b, &[ok, head, b"HTTP/1.1 204 No Content\r\n\r\n"]), "A101 D38 D2 A202 D38 A-1 D27");
        // A server speaking first in another protocol: one unknown exchange, then through.
        let mut nats = Boundaries::responses();
        assert_eq!(marks(&mut nats, &[b"INFO {}\r\n", b"PONG\r\n"]), "A-1 D9 D6");
        // The next request, once nothing is owed, starts the framing over.
        nats.owe(false, 303);
        assert_eq!(marks(&mut nats, &[ok]), "A303 D38 D2");
    }
}
