//! `http_abort` (Gauntlet extension): a touched HTTP request is not forwarded; the proxy
//! answers it itself with `status_code`, once the whole request has arrived, and keeps
//! the connection open for the next request. Its answer takes the place of the
//! request's response: the link answering the client writes it after the responses
//! owed to the requests forwarded before it.

use bytes::Bytes;

use super::http_framing::{Piece, RequestDraws, RequestFramer};
use super::{Event, Joining, Stage, Timed};
use crate::faults::model::HttpMatch;
use crate::faults::seed::request_digest;

/// The http_abort toxic on one connection.
pub(super) struct HttpAbort {
    framer: RequestFramer,
    matching: HttpMatch,
    answer: Bytes,
    head_answer: Bytes,
    draws: RequestDraws,
    aborting: Option<bool>,
    is_head: bool,
    uid: u64,
}

impl HttpAbort {
    pub(super) fn new(
        status: u16,
        body: &str,
        matching: HttpMatch,
        draws: RequestDraws,
        joining: Joining,
        uid: u64,
    ) -> Self {
        Self {
            framer: RequestFramer::joining(joining),
            matching,
            answer: answer(status, body, true),
            head_answer: answer(status, body, false),
            draws,
            aborting: None,
            is_head: false,
            uid,
        }
    }
}

/// The response the proxy answers with; a `HEAD` request gets no body.
pub fn answer(status: u16, body: &str, with_body: bool) -> Bytes {
    let reason = http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Fault");
    let mut text = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nx-gauntlet-fault: http_abort\r\n\r\n",
        body.len()
    );
    if with_body {
        text.push_str(body);
    }
    Bytes::from(text)
}

impl Stage for HttpAbort {
    fn answers(&self) -> bool {
        true
    }

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
                    let abort = self.draws.touched(&self.matching, &method, &path, id.as_deref());
                    self.is_head = method.eq_ignore_ascii_case("HEAD");
                    self.aborting = Some(abort);
                    if !abort {
                        let digest = request_digest(&method, &path, id.as_deref());
                        let head = Event::Request { head: self.is_head, digest };
                        out.push(Timed::new(input.at, head));
                        out.push(Timed::new(input.at, Event::Data(bytes)));
                    }
                }
                Piece::Body(bytes) | Piece::Raw(bytes) => {
                    if self.aborting != Some(true) {
                        out.push(Timed::new(input.at, Event::Data(bytes)));
                    }
                }
                Piece::End => {
                    if self.aborting.take() == Some(true) {
                        let reply = if self.is_head { &self.head_answer } else { &self.answer };
                        out.push(Timed { at: input.at, event: Event::Reply(reply.clone()), origin: self.uid });
                    }
                }
            }
        }
    }
}
