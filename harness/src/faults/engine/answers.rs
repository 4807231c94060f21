//! The answers a link owes its client, in request order: the server's responses to the
//! requests the other direction forwarded, and the answers the proxy made itself for
//! the requests it did not forward.
//!
//! Invariant: an injected answer is written only at a response boundary, after the
//! responses to every request forwarded before it, so a client that pipelines (or
//! sends its next request before an answer arrives) pairs every answer with its
//! request.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::faults::toxics::{Framed, ResponseFramer};

/// The most answers one connection may owe; past it the order is no longer kept and
/// injected answers are written as they come.
const MAX_OWED: usize = 4096;

/// What the direction carrying requests tells the direction carrying answers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Exchange {
    /// A request was forwarded to the server; its response is owed.
    Forwarded {
        /// Whether it is a `HEAD` request (its response has no body).
        head: bool,
        /// The request's identity for decisions (`seed::request_digest`).
        digest: u64,
    },
    /// The proxy answered a request itself with these bytes.
    Injected(Bytes),
}

/// The answers still owed on one connection, and the framing of the server's responses
/// while any are owed.
#[derive(Debug, Default)]
pub(crate) struct OwedAnswers {
    owed: VecDeque<Exchange>,
    /// `Some` while responses are being framed.
    framer: Option<ResponseFramer>,
}

impl OwedAnswers {
    /// Whether the server's bytes must go through [`OwedAnswers::frame`].
    pub(crate) fn framing(&self) -> bool {
        self.framer.as_ref().is_some_and(|f| !f.is_passthrough())
    }

    /// Records an exchange; pushes the injected answers that may be written now.
    pub(crate) fn push(&mut self, exchange: Exchange, out: &mut Vec<Bytes>) {
        let framer = self.framer.get_or_insert_with(ResponseFramer::new);
        if framer.is_passthrough() || self.owed.len() >= MAX_OWED {
            self.give_up(out);
            if let Exchange::Injected(bytes) = exchange {
                out.push(bytes);
            }
            return;
        }
        self.owed.push_back(exchange);
        self.release(out);
    }

    /// Splits the server's `data` at response boundaries and pushes what to write, the
    /// injected answers each boundary frees in between.
    pub(crate) fn frame(&mut self, mut data: Bytes, out: &mut Vec<Bytes>) {
        loop {
            let answers_head = matches!(self.owed.front(), Some(Exchange::Forwarded { head: true, .. }));
            let Some(framer) = self.framer.as_mut() else {
                if !data.is_empty() {
                    out.push(data);
                }
                return;
            };
            match framer.next(&mut data, answers_head) {
                Some(Framed::Bytes(bytes)) => out.push(bytes),
                Some(Framed::End) => self.answered(out),
                None => break,
            }
            if self.framer.as_ref().is_some_and(ResponseFramer::is_passthrough) {
                self.give_up(out);
            }
        }
        self.idle_when_done();
    }

    /// The server closed its side: ends a response read until close, and pushes the
    /// answers that frees.
    pub(crate) fn finish(&mut self, out: &mut Vec<Bytes>) {
        if self.framer.as_mut().is_some_and(ResponseFramer::finish) {
            self.answered(out);
        }
    }

    fn answered(&mut self, out: &mut Vec<Bytes>) {
        // A response nobody recorded (a request sent before the toxic came) owes nothing.
        if matches!(self.owed.front(), Some(Exchange::Forwarded { .. })) {
            self.owed.pop_front();
        }
        self.release(out);
    }

    /// Pushes the injected answers at the front, when at a response boundary.
    fn release(&mut self, out: &mut Vec<Bytes>) {
        if !self.framer.as_ref().is_some_and(ResponseFramer::at_boundary) {
            return;
        }
        while let Some(Exchange::Injected(_)) = self.owed.front() {
            if let Some(Exchange::Injected(bytes)) = self.owed.pop_front() {
                out.push(bytes);
            }
        }
        self.idle_when_done();
    }

    /// Stops framing when nothing is owed, so the link may take its fast path again.
    fn idle_when_done(&mut self) {
        if self.owed.is_empty() && self.framer.as_ref().is_some_and(ResponseFramer::at_boundary) {
            self.framer = None;
        }
    }

    /// The responses cannot be framed: the injected answers go out as they are.
    fn give_up(&mut self, out: &mut Vec<Bytes>) {
        for exchange in self.owed.drain(..) {
            if let Exchange::Injected(bytes) = exchange {
                out.push(bytes);
            }
        }
        self.framer = Some(ResponseFramer::new_passthrough());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(out: &[Bytes]) -> String {
        out.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect::<Vec<_>>().join("|")
    }

    #[test]
    fn an_injected_answer_waits_for_the_responses_owed_before_it() {
        let mut owed = OwedAnswers::default();
        let mut out = Vec::new();
        owed.push(Exchange::Forwarded { head: false, digest: 1 }, &mut out);
        owed.push(Exchange::Injected(Bytes::from_static(b"X")), &mut out);
        owed.push(Exchange::Forwarded { head: true, digest: 2 }, &mut out);
        owed.push(Exchange::Injected(Bytes::from_static(b"Y")), &mut out);
        assert!(out.is_empty() && owed.framing());
        owed.frame(Bytes::from_static(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\na"), &mut out);
        assert_eq!(written(&out), "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n|a");
        out.clear();
        owed.frame(Bytes::from_static(b"bHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"), &mut out);
        assert_eq!(written(&out), "b|X|HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n|Y");
        assert!(!owed.framing(), "nothing owed: back to the fast path");
    }

    #[test]
    fn an_injected_answer_with_nothing_owed_goes_at_once() {
        let mut owed = OwedAnswers::default();
        let mut out = Vec::new();
        owed.push(Exchange::Injected(Bytes::from_static(b"X")), &mut out);
        assert_eq!(written(&out), "X");
        assert!(!owed.framing());
    }
}
