//! HTTP/1.1 request framing on a byte stream: where each request's head and body begin
//! and end, for `Content-Length` and `chunked` bodies, over keep-alive connections.
//!
//! Bytes that do not parse as an HTTP/1.1 request, and everything after a `CONNECT` or
//! an `Upgrade`, are handed on as [`Piece::Raw`]: the framer never breaks a stream it
//! does not understand. A framer that starts in the middle of a stream (a toxic added
//! to an open connection) or loses its place passes bytes on as they come until a
//! request line starts within one read, and frames from there.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use rand::Rng;

use crate::faults::model::HttpMatch;
use crate::faults::seed::{request_digest, DecisionRng, Occurrences, RequestKey};

/// The longest request head the framer waits for before giving up on HTTP.
const MAX_HEAD: usize = 64 * 1024;
/// The longest chunk-size or trailer line.
const MAX_LINE: usize = 8 * 1024;
/// How many bytes the framer scans for a request boundary before it gives up on HTTP.
const MAX_RESYNC: u64 = 64 * 1024 * 1024;
/// The methods a resynchronising framer recognises a request line by.
const METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

/// A part of the request stream.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// A whole request head (request line and headers).
    Head {
        /// The method, e.g. `GET`.
        method: String,
        /// The request target, e.g. `/v1/items?x=1`.
        path: String,
        /// The `Idempotency-Key` or `X-Request-Id` header, if the request has one.
        id: Option<String>,
        /// The head's bytes, as received.
        bytes: Bytes,
    },
    /// Bytes of the current request's body (framing included for chunked bodies).
    Body(Bytes),
    /// The current request is complete.
    End,
    /// Bytes that are not HTTP the framer understands; passed on as they are.
    Raw(Bytes),
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        remaining: u64,
    },
    ChunkSize,
    ChunkData {
        remaining: u64,
    },
    ChunkDataEnd {
        remaining: usize,
    },
    Trailer,
    /// At the start of a connection: HTTP only if the first read begins with a request line.
    Sniff,
    /// Looking for the next request line; `scanned` bytes so far.
    Resync {
        scanned: u64,
    },
    Passthrough,
}

/// Splits a client-to-server byte stream into requests.
#[derive(Debug)]
pub struct RequestFramer {
    state: State,
    pending: BytesMut,
    upgrade_after: bool,
}

impl Default for RequestFramer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestFramer {
    /// A framer at the start of a connection.
    pub fn new() -> Self {
        Self { state: State::Head, pending: BytesMut::new(), upgrade_after: false }
    }

    /// A framer joining a connection that may be in the middle of a request: it frames
    /// from the first request line that starts within one read.
    pub fn mid_stream() -> Self {
        Self { state: State::Resync { scanned: 0 }, pending: BytesMut::new(), upgrade_after: false }
    }

    /// A framer at the start of a connection that is HTTP/1.1 only if the first bytes fed
    /// begin with a whole request line; otherwise it passes everything through at once,
    /// never holding bytes of another protocol back.
    pub fn sniffing() -> Self {
        Self { state: State::Sniff, pending: BytesMut::new(), upgrade_after: false }
    }

    /// A framer that passes everything through (a stream known not to be HTTP/1.1).
    pub fn passthrough() -> Self {
        Self { state: State::Passthrough, pending: BytesMut::new(), upgrade_after: false }
    }

    /// Takes the bytes held back waiting for the rest of a head or line (at end of
    /// stream, or when the framer is dropped), so that none are lost.
    pub fn take_pending(&mut self) -> Bytes {
        self.pending.split().freeze()
    }

    /// The framer for a stage joining its connection at `joining`.
    pub(super) fn joining(joining: super::Joining) -> Self {
        match joining {
            super::Joining::AtStart => Self::new(),
            super::Joining::MidStream => Self::mid_stream(),
        }
    }

    /// Feeds the next bytes of the stream and pushes the pieces they complete.
    pub fn feed(&mut self, data: Bytes, out: &mut Vec<Piece>) {
        let mut data = data;
        while !data.is_empty() {
            match self.state {
                State::Passthrough => {
                    out.push(Piece::Raw(data));
                    return;
                }
                State::Sniff => {
                    self.state = if begins_with_request_line(&data) { State::Head } else { State::Passthrough };
                }
                State::Resync { scanned } => self.resync(scanned, &mut data, out),
                State::Head => self.feed_head(&mut data, out),
                State::Body { remaining } => {
                    let take = take_len(remaining, data.len());
                    out.push(Piece::Body(data.split_to(take)));
                    let left = remaining - take as u64;
                    if left == 0 {
                        self.finish(out);
                    } else {
                        self.state = State::Body { remaining: left };
                    }
                }
                State::ChunkSize => {
                    if let Some(line) = self.line(&mut data, out) {
                        match chunk_size(&line) {
                            Some(0) => self.state = State::Trailer,
                            Some(n) => self.state = State::ChunkData { remaining: n },
                            None => self.state = State::Resync { scanned: 0 },
                        }
                        out.push(Piece::Body(line));
                    }
                }
                State::ChunkData { remaining } => {
                    let take = take_len(remaining, data.len());
                    out.push(Piece::Body(data.split_to(take)));
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::ChunkDataEnd { remaining: 2 }
                    } else {
                        State::ChunkData { remaining: left }
                    };
                }
                State::ChunkDataEnd { remaining } => {
                    let take = remaining.min(data.len());
                    out.push(Piece::Body(data.split_to(take)));
                    self.state = if take == remaining {
                        State::ChunkSize
                    } else {
                        State::ChunkDataEnd { remaining: remaining - take }
                    };
                }
                State::Trailer => {
                    if let Some(line) = self.line(&mut data, out) {
                        let last = line.as_ref() == b"\r\n" || line.as_ref() == b"\n";
                        out.push(Piece::Body(line));
                        if last {
                            self.finish(out);
                        }
                    }
                }
            }
        }
    }

    fn feed_head(&mut self, data: &mut Bytes, out: &mut Vec<Piece>) {
        let before = self.pending.len();
        self.pending.extend_from_slice(data);
        let Some(end) = find_head_end(&self.pending, before.saturating_sub(3)) else {
            data.advance(data.len());
            if self.pending.len() > MAX_HEAD {
                self.give_up(out);
            }
            return;
        };
        // Only the bytes of this head are consumed; the rest stays in `data`.
        data.advance(end - before);
        let head = self.pending.split_to(end).freeze();
        self.pending.clear();
        let mut headers = [httparse::EMPTY_HEADER; 96];
        let mut req = httparse::Request::new(&mut headers);
        let Ok(httparse::Status::Complete(_)) = req.parse(&head) else {
            self.state = State::Resync { scanned: head.len() as u64 };
            out.push(Piece::Raw(head));
            return;
        };
        let method = req.method.unwrap_or_default().to_string();
        let path = req.path.unwrap_or_default().to_string();
        let mut length = 0u64;
        let mut chunked = false;
        let mut bad = false;
        let mut id = None;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("idempotency-key") || h.name.eq_ignore_ascii_case("x-request-id") {
                id = id.or_else(|| std::str::from_utf8(h.value).ok().map(|v| v.trim().to_string()));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                match std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()) {
                    Some(n) => length = n,
                    None => bad = true,
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = std::str::from_utf8(h.value).is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"));
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                self.upgrade_after = true;
            }
        }
        if method.eq_ignore_ascii_case("CONNECT") {
            self.upgrade_after = true;
        }
        out.push(Piece::Head { method, path, id, bytes: head });
        if bad {
            self.state = State::Resync { scanned: 0 };
        } else if chunked {
            self.state = State::ChunkSize;
        } else if length > 0 {
            self.state = State::Body { remaining: length };
        } else {
            self.finish(out);
        }
    }

    /// Passes `data` on up to the first request line that starts in it, and frames from
    /// there; gives up on HTTP after [`MAX_RESYNC`] bytes without one.
    fn resync(&mut self, scanned: u64, data: &mut Bytes, out: &mut Vec<Piece>) {
        match request_line_start(data) {
            Some(start) => {
                if start > 0 {
                    out.push(Piece::Raw(data.split_to(start)));
                }
                self.pending.clear();
                self.state = State::Head;
            }
            None => {
                let scanned = scanned + data.len() as u64;
                out.push(Piece::Raw(data.split_to(data.len())));
                self.state = if scanned > MAX_RESYNC { State::Passthrough } else { State::Resync { scanned } };
            }
        }
    }

    /// Takes one line (through `\n`) from `pending` + `data`, or keeps the partial line.
    fn line(&mut self, data: &mut Bytes, out: &mut Vec<Piece>) -> Option<Bytes> {
        match data.iter().position(|b| *b == b'\n') {
            Some(i) => {
                let part = data.split_to(i + 1);
                self.pending.extend_from_slice(&part);
                Some(self.pending.split().freeze())
            }
            None => {
                self.pending.extend_from_slice(data);
                data.advance(data.len());
                if self.pending.len() > MAX_LINE {
                    self.give_up(out);
                }
                None
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Piece>) {
        out.push(Piece::End);
        self.state = if self.upgrade_after { State::Passthrough } else { State::Head };
    }

    fn give_up(&mut self, out: &mut Vec<Piece>) {
        self.state = State::Resync { scanned: self.pending.len() as u64 };
        out.push(Piece::Raw(self.pending.split().freeze()));
    }
}

/// The seeded decisions of one HTTP toxic, one per request: keyed by the request
/// itself (method, target, request id, and how often it came before on this proxy),
/// not by the connection that carries it, so concurrent clients that interleave
/// differently from run to run still get the same decision for the same request.
#[derive(Clone, Debug)]
pub struct RequestDraws {
    seed: u64,
    proxy: Arc<str>,
    toxic: Arc<str>,
    revision: u64,
    toxicity: f32,
    occurrences: Arc<Occurrences>,
}

impl RequestDraws {
    /// The draws of toxic `toxic` (at `revision`, touching a `toxicity` share of the
    /// requests) on proxy `proxy`, counting repeated requests in `occurrences`.
    pub(crate) fn new(
        seed: u64,
        proxy: Arc<str>,
        toxic: Arc<str>,
        revision: u64,
        toxicity: f32,
        occurrences: Arc<Occurrences>,
    ) -> Self {
        Self { seed, proxy, toxic, revision, toxicity, occurrences }
    }

    /// Whether a request is touched by the fault: it matches, and its seeded draws fall
    /// within the toxicity and the percentage.
    pub(super) fn touched(&self, matching: &HttpMatch, method: &str, path: &str, id: Option<&str>) -> bool {
        if !matching.matches(method, path) {
            return false;
        }
        let mut rng = self.request_rng(request_digest(method, path, id));
        rng.random::<f32>() < self.toxicity && rng.random::<f64>() * 100.0 < matching.percentage
    }

    /// The generator of the request with `digest` (see [`request_digest`]) if its
    /// toxicity draw touches it, for the rest of its draws; `None` if untouched. Counts
    /// the request as an occurrence either way.
    pub(super) fn draw(&self, digest: u64) -> Option<DecisionRng> {
        let mut rng = self.request_rng(digest);
        (rng.random::<f32>() < self.toxicity).then_some(rng)
    }

    /// The toxicity this toxic acts with.
    pub(super) fn toxicity(&self) -> f32 {
        self.toxicity
    }

    fn request_rng(&self, digest: u64) -> DecisionRng {
        let key = RequestKey {
            seed: self.seed,
            proxy: &self.proxy,
            toxic: &self.toxic,
            revision: self.revision,
            digest,
            occurrence: self.occurrences.next(digest),
        };
        key.rng()
    }
}

pub(super) fn take_len(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).unwrap_or(usize::MAX).min(available)
}

pub(super) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(4).position(|w| w == b"\r\n\r\n").map(|i| from + i + 4)
}

/// Whether `data` begins with a whole HTTP/1.x request line (`GET /a HTTP/1.1`).
pub fn begins_with_request_line(data: &[u8]) -> bool {
    let first_line = data.iter().position(|b| *b == b'\n').and_then(|end| data.get(..end));
    first_line.and_then(method_start) == Some(0)
}

/// Where the first whole request line in `data` starts: a line `METHOD SP target SP
/// HTTP/1.x CRLF` whose method may follow the end of a body on the same line.
fn request_line_start(data: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    while let Some(i) = data.get(line_start..)?.iter().position(|b| *b == b'\n') {
        let end = line_start + i;
        if let Some(start) = data.get(line_start..end).and_then(method_start) {
            return Some(line_start + start);
        }
        line_start = end + 1;
    }
    None
}

/// Where the method begins in `line` (up to its `\n`) if it ends as a request line.
fn method_start(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r")?;
    let version = line.get(line.len().checked_sub(8)?..)?;
    if !(version == b"HTTP/1.1" || version == b"HTTP/1.0") {
        return None;
    }
    let rest = line.get(..line.len() - 8)?.strip_suffix(b" ")?;
    let space = rest.iter().rposition(|b| *b == b' ')?;
    let target = rest.get(space + 1..)?;
    if target.is_empty() || !target.iter().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let before = rest.get(..space)?;
    METHODS.iter().find(|m| before.ends_with(m.as_bytes())).map(|m| before.len() - m.len())
}

pub(super) fn chunk_size(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?;
    let size = text.trim_end_matches(['\r', '\n']).split(';').next()?.trim();
    u64::from_str_radix(size, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(chunks: &[&[u8]]) -> Vec<Piece> {
        let mut f = RequestFramer::new();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(Bytes::copy_from_slice(c), &mut out);
        }
        out
    }

    fn summary(pieces: &[Piece]) -> String {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Head { method, path, .. } => format!("H({method} {path})"),
                Piece::Body(b) => format!("B{}", b.len()),
                Piece::End => "E".into(),
                Piece::Raw(b) => format!("R{}", b.len()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn keep_alive_requests_with_lengths() {
        let req = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(summary(&frame(&[req])), "H(POST /a) B3 E H(GET /b) E");
        // Byte by byte gives the same requests.
        let bytes: Vec<&[u8]> = req.chunks(1).collect();
        let s = summary(&frame(&bytes));
        assert!(s.starts_with("H(POST /a) B1 B1 B1 E H(GET /b) E"), "{s}");
    }

    #[test]
    fn chunked_bodies_end_at_the_last_chunk() {
        let req =
            b"POST /c HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwiki\r\n0\r\n\r\nGET /d HTTP/1.1\r\n\r\n";
        let pieces = frame(&[req]);
        let s = summary(&pieces);
        assert!(s.starts_with("H(POST /c)"), "{s}");
        assert!(s.ends_with("E H(GET /d) E"), "{s}");
        let body: usize = pieces
            .iter()
            .map(|p| match p {
                Piece::Body(b) => b.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(body, "4\r\nwiki\r\n0\r\n\r\n".len());
    }

    fn request(i: usize, body: &[u8], chunked: bool) -> Vec<u8> {
        let mut out = format!("POST /r{i} HTTP/1.1\r\nhost: x\r\n").into_bytes();
        if chunked {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            for part in body.chunks(5) {
                out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                out.extend_from_slice(part);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
        }
        out
    }

    proptest::proptest! {
        #[test]
        fn any_split_of_any_requests_frames_the_same(
            bodies in proptest::collection::vec((proptest::collection::vec(proptest::num::u8::ANY, 0..40), proptest::bool::ANY), 1..6),
            cuts in proptest::collection::vec(1usize..50, 0..20),
        ) {
            let mut wire = Vec::new();
            for (i, (body, chunked)) in bodies.iter().enumerate() {
                wire.extend(request(i, body, *chunked));
            }
            let mut pieces_in = Vec::new();
            let mut rest: &[u8] = &wire;
            for cut in cuts {
                if rest.is_empty() { break; }
                let (a, b) = rest.split_at(cut.min(rest.len()));
                pieces_in.push(a);
                rest = b;
            }
            pieces_in.push(rest);
            let pieces = frame(&pieces_in);
            let heads: Vec<String> = pieces.iter().filter_map(|p| match p {
                Piece::Head { path, .. } => Some(path.clone()),
                _ => None,
            }).collect();
            let expected: Vec<String> = (0..bodies.len()).map(|i| format!("/r{i}")).collect();
            proptest::prop_assert_eq!(heads, expected);
            let ends = pieces.iter().filter(|p| **p == Piece::End).count();
            proptest::prop_assert_eq!(ends, bodies.len());
            let mut rebuilt = Vec::new();
            for p in &pieces {
                match p {
                    Piece::Head { bytes, .. } | Piece::Body(bytes) | Piece::Raw(bytes) => rebuilt.extend_from_slice(bytes),
                    Piece::End => {}
                }
            }
            proptest::prop_assert_eq!(rebuilt, wire);
        }
    }

    #[test]
    fn non_http_passes_through() {
        assert_eq!(summary(&frame(&[b"\x00\x01binary\r\n\r\n", b"more"])), "R12 R4");
    }

    fn frame_mid_stream(chunks: &[&[u8]]) -> String {
        let mut f = RequestFramer::mid_stream();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(Bytes::copy_from_slice(c), &mut out);
        }
        summary(&out)
    }

    #[test]
    fn a_framer_joining_mid_body_frames_from_the_next_request() {
        // The rest of a sized body, then the next request in the same read.
        assert_eq!(frame_mid_stream(&[b"6789", b"0GET /b HTTP/1.1\r\nhost: x\r\n\r\n"]), "R4 R1 H(GET /b) E");
        // A body that ends in a line of its own, and a head split across reads.
        assert_eq!(
            frame_mid_stream(&[
                b"a: b\r\n\r\nPOST /c HTTP/1.1\r\ncontent",
                b"-length: 2\r\n\r\nokHEAD /d HTTP/1.0\r\n\r\n"
            ]),
            "R8 H(POST /c) B2 E H(HEAD /d) E"
        );
        // Body bytes that only look like a version are passed on.
        assert_eq!(frame_mid_stream(&[b"x HTTP/1.1\r\n", b"GET  HTTP/1.1\r\n"]), "R12 R15");
    }

    #[test]
    fn a_bad_head_does_not_stop_framing_for_good() {
        let s = summary(&frame(&[b"GET /a HTTP/1.1\r\nbad header\r\n\r\n", b"GET /b HTTP/1.1\r\n\r\n"]));
        assert_eq!(s, "R31 H(GET /b) E");
    }
}
