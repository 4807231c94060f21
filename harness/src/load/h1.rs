//! A lean HTTP/1.1 exchange over one connection, for both load models.
//!
//! A connection carries one request at a time (a closed-loop virtual user owns one; the
//! open model takes one from its pool per request), so it needs no dispatcher, no
//! channels and no body streams: the request is encoded into a reused buffer and
//! written at once, and the response is parsed in place with
//! `httparse` (the parser hyper uses) from a reused read buffer. That is what lets the
//! generator spend less CPU per request than wrk (see `ci/bench-vs-wrk.sh`).
//!
//! Framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; chunked transfer
//! coding (trailers read and dropped); `Content-Length`; otherwise the body runs to the
//! end of the connection. Interim 1xx responses are skipped. `Connection: close` (or an
//! HTTP/1.0 answer without keep-alive) makes the connection single-use. Anything
//! malformed is a protocol error, bytes after a complete response included (a closed
//! loop sends one request at a time: nothing may follow the answer); an end of stream
//! mid-response is a reset.
//!
//! A reused connection is checked before it carries a request ([`H1::peer_closed`]): one
//! the server closed while it was idle is replaced, not counted as an error, as wrk and
//! hyper do. [`H1::answered_nothing`] tells the caller whether a failed exchange got
//! any byte of an answer, so an idempotent request that met a close in the same instant
//! can be retried once.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Request};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::{Keep, MAX_CAPTURE_BODY};
use super::stats::ErrorKind;

/// The longest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most response headers accepted.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size line accepted (size, extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// A complete response.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    /// The final status.
    pub status: u16,
    /// The body, when asked for and not longer than [`MAX_CAPTURE_BODY`].
    pub body: Option<Bytes>,
    /// The headers asked for, as they came.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Whether the connection may carry another request.
    pub reusable: bool,
}

/// One HTTP/1.1 connection with its buffers.
pub(crate) struct H1<S> {
    io: S,
    read: BytesMut,
    write: Vec<u8>,
    /// Whether any byte of an answer came during the current exchange.
    got: bool,
}

impl<S> std::fmt::Debug for H1<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1").field("buffered", &self.read.len()).finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

impl<S: AsyncRead + AsyncWrite + Unpin> H1<S> {
    pub(crate) fn new(io: S) -> Self {
        Self { io, read: BytesMut::with_capacity(16 * 1024), write: Vec::with_capacity(1024), got: false }
    }

    /// Whether the last exchange failed before any byte of its answer came.
    pub(crate) fn answered_nothing(&self) -> bool {
        !self.got
    }

    /// Sends `req` (its `Host` header already set) and reads the whole answer.
    pub(crate) async fn exchange(&mut self, req: &Request<Bytes>, keep: Keep<'_>) -> Result<Answer, ErrorKind> {
        self.got = !self.read.is_empty();
        self.encode(req);
        self.io.write_all(&self.write).await.map_err(io_kind)?;
        loop {
            let mut headers = Vec::new();
            let (status, framing, reusable) = self.head(req.method(), keep.headers, &mut headers).await?;
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let body = self.body(framing, keep.body).await?;
            if !self.read.is_empty() && status != 101 {
                // More than the answer framed: the server and we disagree on where it ends.
                return Err(ErrorKind::Protocol);
            }
            let reusable = reusable && !matches!(framing, Framing::UntilClose) && status != 101;
            return Ok(Answer { status, body, headers, reusable });
        }
    }

    fn encode(&mut self, req: &Request<Bytes>) {
        let w = &mut self.write;
        w.clear();
        w.extend_from_slice(req.method().as_str().as_bytes());
        w.push(b' ');
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        w.extend_from_slice(if target.is_empty() { b"/" } else { target.as_bytes() });
        w.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in req.headers() {
            w.extend_from_slice(name.as_str().as_bytes());
            w.extend_from_slice(b": ");
            w.extend_from_slice(value.as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        let body = req.body();
        let needs_length = !body.is_empty() || matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
        if needs_length && !req.headers().contains_key(http::header::CONTENT_LENGTH) {
            w.extend_from_slice(b"content-length: ");
            w.extend_from_slice(body.len().to_string().as_bytes());
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"\r\n");
        w.extend_from_slice(body);
    }

    /// Reads more into the buffer; an end of stream is a reset.
    async fn fill(&mut self) -> Result<(), ErrorKind> {
        if self.read.capacity() - self.read.len() < 4096 {
            self.read.reserve(16 * 1024);
        }
        match self.io.read_buf(&mut self.read).await {
            Ok(0) => Err(ErrorKind::Reset),
            Ok(_) => {
                self.got = true;
                Ok(())
            }
            Err(e) => Err(io_kind(e)),
        }
    }

    /// Parses one response head: (status, framing, keep-alive); the headers named in
    /// `wanted` go into `kept`.
    async fn head(
        &mut self,
        method: &Method,
        wanted: &[HeaderName],
        kept: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(u16, Framing, bool), ErrorKind> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut res = httparse::Response::new(&mut headers);
            match res.parse(&self.read) {
                Ok(httparse::Status::Complete(len)) => {
                    let status = res.code.ok_or(ErrorKind::Protocol)?;
                    let http10 = res.version == Some(0);
                    let (mut length, mut chunked, mut close, mut keep_alive) = (None, false, false, false);
                    for h in res.headers.iter() {
                        if let Some(name) = wanted.iter().find(|n| h.name.eq_ignore_ascii_case(n.as_str())) {
                            let value = HeaderValue::from_bytes(h.value).map_err(|_| ErrorKind::Protocol)?;
                            kept.push((name.clone(), value));
                        }
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value).map_err(|_| ErrorKind::Protocol)?.trim();
                            let n: u64 = v.parse().map_err(|_| ErrorKind::Protocol)?;
                            if length.is_some_and(|l| l != n) {
                                return Err(ErrorKind::Protocol);
                            }
                            length = Some(n);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = last_token(h.value).eq_ignore_ascii_case(b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            for token in h.value.split(|b| *b == b',') {
                                let token = token.trim_ascii();
                                close |= token.eq_ignore_ascii_case(b"close");
                                keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                            }
                        }
                    }
                    let framing =
                        if *method == Method::HEAD || (100..200).contains(&status) || status == 204 || status == 304 {
                            Framing::Empty
                        } else if chunked {
                            Framing::Chunked
                        } else if let Some(n) = length {
                            Framing::Length(n)
                        } else {
                            Framing::UntilClose
                        };
                    self.read.advance(len);
                    let reusable = !close && (!http10 || keep_alive);
                    return Ok((status, framing, reusable));
                }
                Ok(httparse::Status::Partial) if self.read.len() < MAX_HEAD => self.fill().await?,
                Ok(httparse::Status::Partial) | Err(_) => return Err(ErrorKind::Protocol),
            }
        }
    }

    async fn body(&mut self, framing: Framing, keep: bool) -> Result<Option<Bytes>, ErrorKind> {
        let mut kept = keep.then(BytesMut::new);
        match framing {
            Framing::Empty => {}
            Framing::Length(n) => {
                self.take_exactly(n, &mut kept).await?;
            }
            Framing::UntilClose => loop {
                let n = self.read.len();
                take(&mut self.read, n, &mut kept);
                if self.read.capacity() < 4096 {
                    self.read.reserve(16 * 1024);
                }
                match self.io.read_buf(&mut self.read).await {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(io_kind(e)),
                }
            },
            Framing::Chunked => loop {
                let line = self.line().await?;
                let size = chunk_size(&line)?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.take_exactly(size, &mut kept).await?;
                if !self.line().await?.is_empty() {
                    return Err(ErrorKind::Protocol);
                }
            },
        }
        Ok(kept.map(BytesMut::freeze))
    }

    /// Moves the next `left` body bytes out of the buffer, reading as needed.
    async fn take_exactly(&mut self, mut left: u64, kept: &mut Option<BytesMut>) -> Result<(), ErrorKind> {
        while left > 0 {
            if self.read.is_empty() {
                self.fill().await?;
            }
            let n = (left as usize).min(self.read.len());
            take(&mut self.read, n, kept);
            left -= n as u64;
        }
        Ok(())
    }

    /// One CRLF-terminated line, without its CRLF.
    async fn line(&mut self) -> Result<BytesMut, ErrorKind> {
        loop {
            if let Some(at) = self.read.windows(2).position(|w| w == b"\r\n") {
                let mut line = self.read.split_to(at + 2);
                line.truncate(at);
                return Ok(line);
            }
            if self.read.len() > MAX_CHUNK_LINE {
                return Err(ErrorKind::Protocol);
            }
            self.fill().await?;
        }
    }
}

impl H1<tokio::net::TcpStream> {
    /// Whether the server closed this idle connection (or it is broken): checked,
    /// without waiting, before it carries another request. Bytes waiting on an idle
    /// connection are kept, and the next exchange refuses them as a protocol error.
    pub(crate) fn peer_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.io.try_read(&mut byte) {
            Ok(0) => true,
            Ok(_) => {
                self.read.extend_from_slice(&byte);
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(_) => true,
        }
    }
}

/// Moves `n` bytes out of `buf`, into `kept` when the body is kept (and not yet longer
/// than [`MAX_CAPTURE_BODY`]; a longer one is not kept at all).
fn take(buf: &mut BytesMut, n: usize, kept: &mut Option<BytesMut>) {
    match kept {
        Some(k) if k.len() + n <= MAX_CAPTURE_BODY => k.extend_from_slice(&buf.split_to(n)),
        _ => {
            // Too long to keep: read and dropped, like the hyper path does.
            *kept = None;
            buf.advance(n);
        }
    }
}

/// The chunk size of a chunk-size line (extensions ignored).
fn chunk_size(line: &[u8]) -> Result<u64, ErrorKind> {
    let hex = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return Err(ErrorKind::Protocol);
    }
    let text = std::str::from_utf8(hex).map_err(|_| ErrorKind::Protocol)?;
    u64::from_str_radix(text, 16).map_err(|_| ErrorKind::Protocol)
}

fn last_token(value: &[u8]) -> &[u8] {
    value.rsplit(|b| *b == b',').next().unwrap_or_default().trim_ascii()
}

fn io_kind(e: std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::ConnectionReset | Io::BrokenPipe | Io::ConnectionAborted | Io::UnexpectedEof => ErrorKind::Reset,
        _ => ErrorKind::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one exchange against a peer that answers `response` in pieces of `step`
    /// bytes; returns the answer and the request bytes the peer saw.
    fn exchange(
        req: Request<Bytes>,
        response: &'static [u8],
        step: usize,
        keep: bool,
    ) -> (Result<Answer, ErrorKind>, Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (client, mut server) = tokio::io::duplex(64);
            let peer = tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 256];
                // The request ends with its head (no body in these tests) or its body.
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = server.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                for piece in response.chunks(step) {
                    server.write_all(piece).await.unwrap();
                    tokio::task::yield_now().await;
                }
                drop(server);
                seen
            });
            let mut h1 = H1::new(client);
            let answer = h1.exchange(&req, Keep { body: keep, headers: &[] }).await;
            let seen = peer.await.unwrap();
            (answer, seen)
        })
    }

    fn get(path: &str) -> Request<Bytes> {
        let mut r = Request::new(Bytes::new());
        *r.uri_mut() = path.parse().unwrap();
        r.headers_mut().insert(http::header::HOST, "example:80".parse().unwrap());
        r
    }

    #[test]
    fn content_length_body_in_small_pieces() {
        let res = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        for step in [1, 3, res.len()] {
            let (answer, seen) = exchange(get("/a?b=1"), res, step, true);
            assert_eq!(
                answer.unwrap(),
                Answer { status: 200, body: Some(Bytes::from_static(b"hello")), headers: Vec::new(), reusable: true }
            );
            assert_eq!(seen, b"GET /a?b=1 HTTP/1.1\r\nhost: example:80\r\n\r\n");
        }
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers() {
        let res = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\n0\r\nx-t: 1\r\n\r\n";
        for step in [1, 7, res.len()] {
            let (answer, _) = exchange(get("/"), res, step, true);
            assert_eq!(
                answer.unwrap(),
                Answer {
                    status: 201,
                    body: Some(Bytes::from_static(b"Wikipedia")),
                    headers: Vec::new(),
                    reusable: true
                }
            );
        }
    }

    #[test]
    fn interim_responses_are_skipped_and_close_is_honoured() {
        let res = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 2\r\n\r\nno";
        let (answer, _) = exchange(get("/"), res, 5, false);
        assert_eq!(answer.unwrap(), Answer { status: 503, body: None, headers: Vec::new(), reusable: false });
    }

    #[test]
    fn no_length_reads_to_the_end_and_204_has_no_body() {
        let (answer, _) = exchange(get("/"), b"HTTP/1.0 200 OK\r\n\r\nall of it", 4, true);
        assert_eq!(
            answer.unwrap(),
            Answer { status: 200, body: Some(Bytes::from_static(b"all of it")), headers: Vec::new(), reusable: false }
        );
        let (answer, _) = exchange(get("/"), b"HTTP/1.1 204 No Content\r\n\r\n", 4, true);
        assert_eq!(
            answer.unwrap(),
            Answer { status: 204, body: Some(Bytes::new()), headers: Vec::new(), reusable: true }
        );
    }

    #[test]
    fn the_headers_asked_for_are_kept() {
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Stale: yes\r\nX-Other: no\r\n\r\nok";
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let answer = rt.block_on(async move {
            let (client, mut server) = tokio::io::duplex(256);
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                let _ = server.read(&mut buf).await;
                server.write_all(res).await.unwrap();
                server
            });
            let wanted = [HeaderName::from_static("x-stale")];
            H1::new(client).exchange(&get("/"), Keep { body: false, headers: &wanted }).await
        });
        let headers = answer.unwrap().headers;
        assert_eq!(headers, vec![(HeaderName::from_static("x-stale"), HeaderValue::from_static("yes"))]);
    }

    #[test]
    fn a_post_carries_its_length() {
        let mut req = get("/items");
        *req.method_mut() = Method::POST;
        *req.body_mut() = Bytes::from_static(b"{}");
        let mut h1 = H1::new(tokio::io::empty());
        h1.encode(&req);
        assert_eq!(h1.write, b"POST /items HTTP/1.1\r\nhost: example:80\r\ncontent-length: 2\r\n\r\n{}");
    }

    #[test]
    fn truncated_and_malformed_answers_are_errors_not_panics() {
        let cases: [(&'static [u8], ErrorKind); 5] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", ErrorKind::Reset),
            (b"HTTP/1.1 200 OK\r\ncontent-le", ErrorKind::Reset),
            (b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n", ErrorKind::Protocol),
            (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", ErrorKind::Protocol),
            (b"SMTP ready\r\n\r\n", ErrorKind::Protocol),
        ];
        for (res, kind) in cases {
            let (answer, _) = exchange(get("/"), res, 3, true);
            assert_eq!(answer, Err(kind), "{}", String::from_utf8_lossy(res));
        }
    }
}
