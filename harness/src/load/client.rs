//! The HTTP/1.1 client the generator sends through: a bounded keep-alive pool.
//!
//! At most `connections` connections exist at once, each carrying one request at a
//! time (no pipelining). A request waits for a free connection; that wait is part of
//! the corrected latency and not of the service time. Both models speak the lean
//! [`H1`] codec: the open model's pool is a plain stack of idle connections, each
//! checked for a close by the server before it is reused (replaced, not counted as an
//! error); the closed loop's virtual users own a [`DedicatedConnection`] each. No
//! dispatcher task, no channels, buffers reused from request to request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::Request;
use thiserror::Error;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use super::h1::H1;
use super::stats::{ErrorKind, Outcome};

/// The longest response body kept for captures; longer ones are read and dropped.
pub const MAX_CAPTURE_BODY: usize = 4 * 1024 * 1024;

/// The client could not be set up.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The host name did not resolve.
    #[error("cannot resolve `{authority}`: {reason}")]
    Resolve {
        /// `host:port`.
        authority: String,
        /// Why.
        reason: String,
    },
    /// Zero connections.
    #[error("the client needs at least one connection")]
    NoConnections,
}

/// How the pool behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientConfig {
    /// The most connections open at once.
    pub connections: usize,
    /// Each request's limit, from asking for a connection to the end of the answer.
    pub timeout: Duration,
}

/// What of an answer to keep besides its status: the body (for captures and checks)
/// and the headers that answer rules look at.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep<'a> {
    /// Keep the body, up to [`MAX_CAPTURE_BODY`].
    pub body: bool,
    /// Keep these headers.
    pub headers: &'a [HeaderName],
}

/// One request's result.
#[derive(Debug)]
pub struct Exchange {
    /// When a connection was in hand and the request went out.
    pub sent: Instant,
    /// When the answer was complete or the request failed.
    pub done: Instant,
    /// Status or error.
    pub outcome: Outcome,
    /// The body, when asked for and no longer than [`MAX_CAPTURE_BODY`].
    pub body: Option<Bytes>,
    /// The headers asked for, as they came.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A keep-alive pool of HTTP/1.1 connections to one address.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Arc<Pool>,
}

#[derive(Debug)]
struct Pool {
    addr: SocketAddr,
    host: HeaderValue,
    idle: Mutex<Vec<H1<TcpStream>>>,
    permits: Semaphore,
    timeout: Duration,
}

impl HttpClient {
    /// Resolves `authority` (`host:port`) once and prepares an empty pool.
    pub async fn new(authority: &str, config: ClientConfig) -> Result<Self, ClientError> {
        if config.connections == 0 {
            return Err(ClientError::NoConnections);
        }
        let resolve = |reason: String| ClientError::Resolve { authority: authority.into(), reason };
        let addr = tokio::net::lookup_host(authority)
            .await
            .map_err(|e| resolve(e.to_string()))?
            .next()
            .ok_or_else(|| resolve("no address".into()))?;
        let host = HeaderValue::from_str(authority).map_err(|e| resolve(e.to_string()))?;
        Ok(Self {
            inner: Arc::new(Pool {
                addr,
                host,
                idle: Mutex::new(Vec::with_capacity(config.connections)),
                permits: Semaphore::new(config.connections),
                timeout: config.timeout,
            }),
        })
    }

    /// A pool that never connects, for a [`FlowContext`](super::flow::FlowContext)
    /// whose flows go through another [`Transport`] (a simulated network): it holds the
    /// `Host` value and the timeout, and any request sent through it fails to connect.
    pub fn detached(authority: &str, timeout: Duration) -> Result<Self, ClientError> {
        let host = HeaderValue::from_str(authority)
            .map_err(|e| ClientError::Resolve { authority: authority.into(), reason: e.to_string() })?;
        Ok(Self {
            inner: Arc::new(Pool {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                host,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(1),
                timeout,
            }),
        })
    }

    /// Each request's time limit.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The `Host` header value requests carry.
    pub fn host(&self) -> &HeaderValue {
        &self.inner.host
    }

    /// Sends `req` and reads the whole answer, within the timeout.
    pub async fn send(&self, mut req: Request<Bytes>, keep: Keep<'_>) -> Exchange {
        req.headers_mut().insert(HOST, self.inner.host.clone());
        let mut sent = Instant::now();
        let pool = &self.inner;
        let result = tokio::time::timeout(pool.timeout, async {
            let Ok(_permit) = pool.permits.acquire().await else {
                return Err(ErrorKind::Protocol);
            };
            let open = pool.idle.lock().map_or(None, |mut idle| idle.pop());
            let mut link = Link { pool: pool.clone(), open };
            sent = Instant::now();
            let answer = link.attempt(&req, keep, &mut sent).await;
            if let Some(conn) = link.open.take() {
                // Only a connection whose answer was whole and reusable is still open.
                if let Ok(mut idle) = pool.idle.lock() {
                    idle.push(conn);
                }
            }
            answer
        })
        .await;
        let done = Instant::now();
        let (outcome, body, headers) = match result {
            Ok(Ok(answer)) => (Outcome::Status(answer.status), answer.body, answer.headers),
            Ok(Err(kind)) => (Outcome::Error(kind), None, Vec::new()),
            Err(_) => (Outcome::Error(ErrorKind::Timeout), None, Vec::new()),
        };
        Exchange { sent, done, outcome, body, headers }
    }
}

/// Something a flow sends its requests through: the keep-alive pool and dedicated
/// connections here, or a simulated network (`gauntlet-sim`), which stamps `sent` and
/// `done` on its own clock.
#[allow(async_fn_in_trait)]
pub trait Transport {
    /// Sends `req` and reads the whole answer, within the timeout.
    async fn exchange(&mut self, req: Request<Bytes>, keep: Keep<'_>) -> Exchange;
}

impl Transport for HttpClient {
    async fn exchange(&mut self, req: Request<Bytes>, keep: Keep<'_>) -> Exchange {
        self.send(req, keep).await
    }
}

/// One connection owned by one virtual user (closed loop) and driven inside that
/// user's task with the lean [`H1`] codec: no dispatcher task, no channels, buffers
/// reused from request to request. Reconnects when the server closes it.
pub struct DedicatedConnection {
    link: Link,
    /// One timer for every request: re-armed only when it fires before the current
    /// request's deadline, so a request does not pay for registering a timer.
    timer: Pin<Box<Sleep>>,
}

struct Link {
    pool: Arc<Pool>,
    open: Option<H1<TcpStream>>,
}

impl DedicatedConnection {
    /// A connection to `client`'s address with its timeout; it connects on first use.
    pub fn new(client: &HttpClient) -> Self {
        let timer = Box::pin(tokio::time::sleep(client.inner.timeout));
        Self { link: Link { pool: client.inner.clone(), open: None }, timer }
    }
}

impl Link {
    async fn attempt(
        &mut self,
        req: &Request<Bytes>,
        keep: Keep<'_>,
        sent: &mut Instant,
    ) -> Result<super::h1::Answer, ErrorKind> {
        // An idle connection the server closed is replaced before it is used.
        if self.open.as_mut().is_some_and(H1::peer_closed) {
            self.open = None;
        }
        let reused = self.open.is_some();
        match self.once(req, keep, sent).await {
            Ok(answer) => Ok(answer),
            // Closed by the server in the instant it was reused, before any byte of an
            // answer: retried once on a fresh connection when the request may be
            // repeated (RFC 9110 §9.2.2), as hyper does.
            Err((ErrorKind::Reset, true)) if reused && req.method().is_idempotent() => {
                self.once(req, keep, sent).await.map_err(|(kind, _)| kind)
            }
            Err((kind, _)) => Err(kind),
        }
    }

    /// One exchange; a failure says whether any byte of an answer had come.
    async fn once(
        &mut self,
        req: &Request<Bytes>,
        keep: Keep<'_>,
        sent: &mut Instant,
    ) -> Result<super::h1::Answer, (ErrorKind, bool)> {
        let conn = match &mut self.open {
            Some(conn) => conn,
            None => {
                let tcp = self.pool.tcp().await.map_err(|k| (k, true))?;
                let conn = self.open.insert(H1::new(tcp));
                // The request goes out once the connection is up, not before.
                *sent = Instant::now();
                conn
            }
        };
        match conn.exchange(req, keep).await {
            Ok(answer) => {
                if !answer.reusable {
                    self.open = None;
                }
                Ok(answer)
            }
            Err(kind) => {
                let nothing = conn.answered_nothing();
                self.open = None;
                Err((kind, nothing))
            }
        }
    }
}

impl Transport for DedicatedConnection {
    async fn exchange(&mut self, mut req: Request<Bytes>, keep: Keep<'_>) -> Exchange {
        let Self { link, timer } = self;
        req.headers_mut().insert(HOST, link.pool.host.clone());
        let mut sent = Instant::now();
        let deadline = sent + link.pool.timeout;
        let result = {
            let mut attempt = std::pin::pin!(link.attempt(&req, keep, &mut sent));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = attempt.as_mut().poll(cx) {
                    return Poll::Ready(Some(r));
                }
                // Deadlines only grow, so the timer never fires after this one; when it
                // fires early it is re-armed, at most once per timeout period.
                while timer.as_mut().poll(cx).is_ready() {
                    if Instant::now() >= deadline {
                        return Poll::Ready(None);
                    }
                    timer.as_mut().reset(deadline.into());
                }
                Poll::Pending
            })
            .await
        };
        let done = Instant::now();
        let (outcome, body, headers) = match result {
            Some(Ok(answer)) => (Outcome::Status(answer.status), answer.body, answer.headers),
            Some(Err(kind)) => (Outcome::Error(kind), None, Vec::new()),
            None => {
                link.open = None;
                (Outcome::Error(ErrorKind::Timeout), None, Vec::new())
            }
        };
        Exchange { sent, done, outcome, body, headers }
    }
}

impl Pool {
    async fn tcp(&self) -> Result<TcpStream, ErrorKind> {
        let stream = TcpStream::connect(self.addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
            _ => ErrorKind::Connect,
        })?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}
