//! HTTP over the simulated network: a node's server (its real axum router, served by
//! hyper on a turmoil listener) and the client its kit uses to call other nodes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use futures::future::BoxFuture;
use gauntlet::cluster::ClockSkew;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shop_kit::platform::{self, Platform, Transport};
use tower::Service;

/// The wall clock's zero in every simulation: 2026-01-01T00:00:00Z, so a seed gives
/// the same timestamps whenever it runs.
pub const EPOCH_SECS: u64 = 1_767_225_600;

/// The wall clock of the simulation: [`EPOCH_SECS`] plus simulated time.
pub fn wall_clock() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS) + turmoil::sim_elapsed().unwrap_or_default()
}

/// Each node's clock fault in place (by host name): its skew and the simulated time it
/// struck. A node's clock is its machine's, so it survives the node's restarts.
pub type Clocks = Arc<Mutex<BTreeMap<String, (ClockSkew, Duration)>>>;

/// A stable 64-bit digest of a name (FNV-1a), to derive per-node seeds.
pub fn digest(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// One incarnation of a simulated node: its seeded randomness, the simulated clock (as
/// a clock fault skews it), and its HTTP client over the simulated network.
pub struct Node {
    name: String,
    rng: Mutex<ChaCha8Rng>,
    http: Arc<SimHttp>,
    clocks: Clocks,
}

impl Node {
    /// Node `name` in incarnation `life` (0 at start, +1 per restart) of run `seed`, its
    /// clock skewed as `clocks` says.
    pub fn new(seed: u64, name: &str, life: u32, clocks: Clocks) -> Arc<Self> {
        let stream = digest(name) ^ u64::from(life).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Arc::new(Self {
            name: name.to_string(),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ stream)),
            http: Arc::new(SimHttp::default()),
            clocks,
        })
    }
}

impl Platform for Node {
    fn now(&self) -> SystemTime {
        let skew = self.clocks.lock().unwrap_or_else(PoisonError::into_inner).get(&self.name).copied();
        match skew {
            None => wall_clock(),
            Some((skew, struck)) => {
                let elapsed = turmoil::sim_elapsed().unwrap_or_default();
                skew.apply(wall_clock(), elapsed.saturating_sub(struck))
            }
        }
    }

    fn fill_bytes(&self, dest: &mut [u8]) {
        self.rng.lock().unwrap_or_else(PoisonError::into_inner).fill_bytes(dest);
    }

    fn transport(&self) -> Option<Arc<dyn Transport>> {
        Some(self.http.clone())
    }
}

/// Serves `router` on `port` of the current simulated host until the host crashes, or
/// until `stop` turns true: then, as the real server does on SIGTERM, it stops
/// accepting, lets the requests in flight finish (idle keep-alive connections close at
/// once) within `grace`, and returns. Each connection is served by hyper in a task of
/// the node (on its LocalSet, as `platform::spawn` does), and each request carries its peer address as axum's
/// `ConnectInfo`, as the real server's do.
pub async fn serve(
    router: Router,
    port: u16,
    mut stop: tokio::sync::watch::Receiver<bool>,
    grace: Duration,
) -> std::io::Result<()> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
            accepted = listener.accept() => accepted?,
        };
        let router = router.clone();
        let mut stop = stop.clone();
        // On the host's LocalSet, as `platform::spawn` puts a node's tasks: a crash drops
        // them, and closes their sockets, in the order they were spawned.
        connections.spawn_local(platform::scope(platform::current(), async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let mut router = router.clone();
                async move { Ok::<_, Infallible>(router.call(req).await.unwrap_or_else(|never| match never {})) }
            });
            // hyper's own Date would read the host's real clock, which no seed decides;
            // the kit stamps each answer's from the node's clock.
            let connection = hyper::server::conn::http1::Builder::new()
                .auto_date_header(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                biased;
                _ = connection.as_mut() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        }));
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    Ok(())
}

type Sender = SendRequest<Full<Bytes>>;
type Idle = Arc<Mutex<BTreeMap<String, Vec<Sender>>>>;

/// HTTP/1.1 over simulated TCP with a keep-alive pool per authority: what reqwest is in
/// a real process.
#[derive(Default)]
pub struct SimHttp {
    idle: Idle,
}

fn take_idle(idle: &Idle, authority: &str) -> Option<Sender> {
    let mut idle = idle.lock().unwrap_or_else(PoisonError::into_inner);
    let senders = idle.get_mut(authority)?;
    while let Some(s) = senders.pop() {
        if !s.is_closed() {
            return Some(s);
        }
    }
    None
}

fn put_idle(idle: &Idle, authority: String, sender: Sender) {
    if !sender.is_closed() {
        idle.lock().unwrap_or_else(PoisonError::into_inner).entry(authority).or_default().push(sender);
    }
}

/// Opens an HTTP/1.1 connection to `authority` (`host:port`) on the simulated network.
pub async fn connect(authority: &str) -> Result<Sender, std::io::Error> {
    let (host, port) = split_authority(authority)?;
    let stream = turmoil::net::TcpStream::connect((host, port)).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e))?;
    platform::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn split_authority(authority: &str) -> Result<(&str, u16), std::io::Error> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("not host:port: {authority}"));
    let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    Ok((host, port.parse().map_err(|_| bad())?))
}

/// Turns an absolute-URI request into what goes on the wire: origin-form target and a
/// `Host` header.
pub fn origin_form(mut req: http::Request<Bytes>) -> Result<(String, http::Request<Full<Bytes>>), String> {
    let authority = req.uri().authority().map(|a| a.to_string()).ok_or_else(|| format!("no host in {}", req.uri()))?;
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    *req.uri_mut() = target.parse().map_err(|e| format!("bad target {target}: {e}"))?;
    if let Ok(v) = http::HeaderValue::from_str(&authority) {
        req.headers_mut().insert(http::header::HOST, v);
    }
    Ok((authority, req.map(Full::new)))
}

impl Transport for SimHttp {
    fn send(&self, request: http::Request<Bytes>) -> BoxFuture<'static, Result<http::Response<Bytes>, String>> {
        let idle = self.idle.clone();
        Box::pin(async move {
            let (authority, request) = origin_form(request)?;
            let (parts, body) = request.into_parts();
            let copy = || {
                let mut r = http::Request::new(body.clone());
                *r.method_mut() = parts.method.clone();
                *r.uri_mut() = parts.uri.clone();
                *r.headers_mut() = parts.headers.clone();
                r
            };
            // A pooled connection the other side closed before the request went out is
            // replaced, and the request sent on a new one, as reqwest's pool does.
            while let Some(mut sender) = take_idle(&idle, &authority) {
                if sender.ready().await.is_err() {
                    continue;
                }
                match sender.send_request(copy()).await {
                    Ok(response) => return read(response, &authority, &idle, sender).await,
                    Err(e) if e.is_canceled() => continue,
                    Err(e) => return Err(format!("{authority}: {e}")),
                }
            }
            let mut sender = connect(&authority).await.map_err(|e| format!("connecting to {authority}: {e}"))?;
            sender.ready().await.map_err(|e| format!("{authority}: {e}"))?;
            let response = sender.send_request(copy()).await.map_err(|e| format!("{authority}: {e}"))?;
            read(response, &authority, &idle, sender).await
        })
    }
}

/// Reads a whole answer, and gives its connection back to the pool.
async fn read(
    response: http::Response<Incoming>,
    authority: &str,
    idle: &Idle,
    sender: Sender,
) -> Result<http::Response<Bytes>, String> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| format!("{authority}: reading the answer: {e}"))?.to_bytes();
    put_idle(idle, authority.to_string(), sender);
    Ok(http::Response::from_parts(parts, body))
}
