//! HTTP/1.1 response framing on a byte stream: where each response ends, so that an
//! answer the proxy makes itself can be written exactly between two responses.
//!
//! A response ends after its `Content-Length` body, after the last chunk of a `chunked`
//! body, right after its head when it has no body (an answer to `HEAD`, 1xx, 204, 304),
//! or when the server closes the connection. Interim (1xx) responses do not end an
//! exchange; after `101 Switching Protocols`, or bytes that are not a response, the
//! framer passes everything through.

use bytes::{Buf, Bytes, BytesMut};

use super::http_framing::{chunk_size, find_head_end, take_len};

/// The longest response head the framer waits for before giving up on HTTP.
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;

/// What the framer hands back, in stream order.
#[derive(Clone, Debug, PartialEq)]
pub enum Framed {
    /// Bytes to pass on.
    Bytes(Bytes),
    /// A final response is complete.
    End,
}

#[derive(Debug, PartialEq)]
enum State {
    Head,
    Body { remaining: u64 },
    ChunkSize,
    ChunkData { remaining: u64 },
    ChunkDataEnd { remaining: usize },
    Trailer,
    UntilClose,
    Passthrough,
}

/// Splits a server-to-client byte stream into responses.
#[derive(Debug)]
pub struct ResponseFramer {
    state: State,
    pending: BytesMut,
    ended: bool,
}

impl Default for ResponseFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseFramer {
    /// A framer at a response boundary.
    pub fn new() -> Self {
        Self { state: State::Head, pending: BytesMut::new(), ended: false }
    }

    /// A framer that has given up on HTTP.
    pub fn new_passthrough() -> Self {
        Self { state: State::Passthrough, pending: BytesMut::new(), ended: false }
    }

    /// Whether the framer stands between two responses.
    pub fn at_boundary(&self) -> bool {
        self.state == State::Head && self.pending.is_empty() && !self.ended
    }

    /// Takes the bytes held back waiting for the rest of a head or line (at end of
    /// stream, or when the framer is dropped), so that none are lost.
    pub fn take_pending(&mut self) -> Bytes {
        self.pending.split().freeze()
    }

    /// Whether the framer gave up on HTTP and passes everything through.
    pub fn is_passthrough(&self) -> bool {
        self.state == State::Passthrough
    }

    /// Takes the next piece from `data`; `answers_head` says whether the response
    /// being framed answers a `HEAD` request. `None` once `data` is used up.
    pub fn next(&mut self, data: &mut Bytes, answers_head: bool) -> Option<Framed> {
        if self.ended {
            self.ended = false;
            return Some(Framed::End);
        }
        if data.is_empty() {
            return None;
        }
        let piece = match self.state {
            State::Passthrough | State::UntilClose => data.split_to(data.len()),
            State::Head => return self.head(data, answers_head).map(Framed::Bytes),
            State::Body { remaining } => {
                let piece = data.split_to(take_len(remaining, data.len()));
                let left = remaining - piece.len() as u64;
                if left == 0 {
                    self.end();
                } else {
                    self.state = State::Body { remaining: left };
                }
                piece
            }
            State::ChunkSize => {
                let line = self.line(data)?;
                match chunk_size(&line) {
                    Some(0) => self.state = State::Trailer,
                    Some(n) => self.state = State::ChunkData { remaining: n },
                    None => self.state = State::Passthrough,
                }
                line
            }
            State::ChunkData { remaining } => {
                let piece = data.split_to(take_len(remaining, data.len()));
                let left = remaining - piece.len() as u64;
                self.state =
                    if left == 0 { State::ChunkDataEnd { remaining: 2 } } else { State::ChunkData { remaining: left } };
                piece
            }
            State::ChunkDataEnd { remaining } => {
                let piece = data.split_to(remaining.min(data.len()));
                self.state = if piece.len() == remaining {
                    State::ChunkSize
                } else {
                    State::ChunkDataEnd { remaining: remaining - piece.len() }
                };
                piece
            }
            State::Trailer => {
                let line = self.line(data)?;
                if line.as_ref() == b"\r\n" || line.as_ref() == b"\n" {
                    self.end();
                }
                line
            }
        };
        Some(Framed::Bytes(piece))
    }

    /// The server closed its side: whether that ended a response read until close.
    pub fn finish(&mut self) -> bool {
        let ended = self.state == State::UntilClose || std::mem::take(&mut self.ended);
        if self.state == State::UntilClose {
            self.state = State::Head;
        }
        ended
    }

    fn end(&mut self) {
        self.ended = true;
        self.state = State::Head;
    }

    fn head(&mut self, data: &mut Bytes, answers_head: bool) -> Option<Bytes> {
        let before = self.pending.len();
        self.pending.extend_from_slice(data);
        // Bytes that cannot begin a response (the framer started in the middle of one)
        // are not held back waiting for a head that will not come.
        let start = &self.pending[..self.pending.len().min(5)];
        if !b"HTTP/".starts_with(start) {
            data.advance(data.len());
            self.state = State::Passthrough;
            return Some(self.pending.split().freeze());
        }
        let Some(end) = find_head_end(&self.pending, before.saturating_sub(3)) else {
            data.advance(data.len());
            if self.pending.len() > MAX_HEAD {
                self.state = State::Passthrough;
                return Some(self.pending.split().freeze());
            }
            return None;
        };
        data.advance(end - before);
        let head = self.pending.split_to(end).freeze();
        self.pending.clear();
        let mut headers = [httparse::EMPTY_HEADER; 96];
        let mut resp = httparse::Response::new(&mut headers);
        let (Ok(httparse::Status::Complete(_)), Some(status)) = (resp.parse(&head), resp.code) else {
            self.state = State::Passthrough;
            return Some(head);
        };
        let mut length = None;
        let mut chunked = false;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()) {
                    Some(n) => length = Some(n),
                    None => {
                        self.state = State::Passthrough;
                        return Some(head);
                    }
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = std::str::from_utf8(h.value).is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"));
            }
        }
        match status {
            101 => {
                self.end();
                self.state = State::Passthrough;
            }
            100..=199 => {}
            204 | 304 => self.end(),
            _ if answers_head => self.end(),
            _ if chunked => self.state = State::ChunkSize,
            _ => match length {
                Some(0) => self.end(),
                Some(n) => self.state = State::Body { remaining: n },
                None => self.state = State::UntilClose,
            },
        }
        Some(head)
    }

    /// Takes one line (through `\n`), or keeps the partial line and returns `None`.
    fn line(&mut self, data: &mut Bytes) -> Option<Bytes> {
        match data.iter().position(|b| *b == b'\n') {
            Some(i) => {
                self.pending.extend_from_slice(&data.split_to(i + 1));
                Some(self.pending.split().freeze())
            }
            None => {
                self.pending.extend_from_slice(data);
                data.advance(data.len());
                if self.pending.len() > MAX_LINE {
                    self.state = State::Passthrough;
                    return Some(self.pending.split().freeze());
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `chunks`, the responses answering `heads` (whether each answers `HEAD`);
    /// returns each response's bytes and whether the stream ended at a boundary.
    fn frame(chunks: &[&[u8]], heads: &[bool]) -> (Vec<String>, bool) {
        let mut f = ResponseFramer::new();
        let mut responses = vec![String::new()];
        for c in chunks {
            let mut data = Bytes::copy_from_slice(c);
            while let Some(piece) = f.next(&mut data, heads.get(responses.len() - 1).copied().unwrap_or(false)) {
                match piece {
                    Framed::Bytes(b) => responses.last_mut().unwrap().push_str(&String::from_utf8_lossy(&b)),
                    Framed::End => responses.push(String::new()),
                }
            }
        }
        if f.finish() {
            responses.push(String::new());
        }
        let last = responses.pop().unwrap_or_default();
        (responses, last.is_empty() && f.at_boundary())
    }

    #[test]
    fn sized_chunked_and_bodiless_responses_end_where_they_end() {
        let a = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabc";
        let b = "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n";
        let c = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nt: 1\r\n\r\n";
        let d = "HTTP/1.1 204 No Content\r\n\r\n";
        let wire = format!("{a}{b}{c}{d}");
        let (responses, clean) = frame(&[wire.as_bytes()], &[false, true, false, false]);
        assert_eq!(responses, [a, b, c, d]);
        assert!(clean);
        // Byte by byte gives the same responses.
        let bytes: Vec<&[u8]> = wire.as_bytes().chunks(1).collect();
        assert_eq!(frame(&bytes, &[false, true, false, false]).0, [a, b, c, d]);
    }

    #[test]
    fn a_response_without_length_ends_at_close() {
        let wire = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        let (responses, clean) = frame(&[wire, b" of it"], &[false]);
        assert_eq!(responses, ["HTTP/1.0 200 OK\r\n\r\nuntil the end of it"]);
        assert!(clean);
    }

    #[test]
    fn switching_protocols_and_garbage_pass_through() {
        let mut f = ResponseFramer::new();
        let mut data = Bytes::from_static(b"HTTP/1.1 101 Switching Protocols\r\n\r\nframes");
        assert!(matches!(f.next(&mut data, false), Some(Framed::Bytes(_))));
        assert_eq!(f.next(&mut data, false), Some(Framed::End));
        assert_eq!(f.next(&mut data, false), Some(Framed::Bytes(Bytes::from_static(b"frames"))));
        assert!(f.is_passthrough());
        let mut g = ResponseFramer::new();
        let mut data = Bytes::from_static(b"\x00binary\r\n\r\nmore");
        assert!(matches!(g.next(&mut data, false), Some(Framed::Bytes(_))));
        assert!(g.is_passthrough());
        // The middle of a body is passed on at once, not held as a partial head.
        let mut h = ResponseFramer::new();
        let mut data = Bytes::from_static(b"rest of a body");
        assert_eq!(h.next(&mut data, false), Some(Framed::Bytes(Bytes::from_static(b"rest of a body"))));
        assert!(h.is_passthrough() && data.is_empty());
    }
}
