//! A running proxy: its listener, the accept loop, and each accepted connection's pair
//! of links.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::answers::Exchange;
use super::chain::ConnectionId;
use super::link::{self, LinkParts};
use super::{ProxyShared, Signal};
use crate::faults::error::ApiError;
use crate::faults::model::Stream;

/// How long a proxy waits to connect to its upstream before giving up on a client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests forwarded or answered that one direction may queue for the other.
const EXCHANGE_QUEUE: usize = 64;
/// Send and receive buffer of a proxy socket whose peer is on this host.
const LOOPBACK_BUFFER: usize = 4 * 1024 * 1024;

/// A proxy's accept loop, while the proxy is enabled.
pub(crate) struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// Binds `listen` and starts accepting; returns the address really bound.
    pub(crate) fn start(listen: &str, upstream: String, shared: Arc<ProxyShared>) -> Result<(Self, String), ApiError> {
        let std_listener =
            std::net::TcpListener::bind(with_host(listen).as_ref()).map_err(|e| ApiError::listen(listen, &e))?;
        std_listener.set_nonblocking(true).map_err(|e| ApiError::listen(listen, &e))?;
        let bound = std_listener.local_addr().map_err(|e| ApiError::listen(listen, &e))?.to_string();
        let listener = TcpListener::from_std(std_listener).map_err(|e| ApiError::listen(listen, &e))?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, upstream, shared, stopped));
        Ok((Self { stop, task }, bound))
    }

    /// Stops accepting and releases the listening socket.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: String,
    shared: Arc<ProxyShared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let upstream: Arc<str> = with_host(&upstream).into();
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => return,
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    let ordinal = shared.next_connection.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve(client, upstream.clone(), shared.clone(), ordinal));
                }
                // Out of file descriptors and the like: wait rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// Go's `:port` (no host) as `127.0.0.1:port`: listeners bind loopback unless told
/// otherwise, and a dial of `:port` reaches the local host.
fn with_host(addr: &str) -> std::borrow::Cow<'_, str> {
    if addr.starts_with(':') {
        format!("127.0.0.1{addr}").into()
    } else {
        addr.into()
    }
}

/// Tunes a proxy socket whose peer is on this host, where the proxy's own sockets, not
/// a network, set the pace. A pacing congestion control (BBR, the default on many
/// hosts) paces with a timer per burst even on loopback, which halved a connection's
/// throughput through the proxy; reno, which Linux lets anyone choose, does not pace.
/// Fixed buffers spare each new connection autotuning's ramp from 16 KiB. A failure
/// leaves the socket as it was.
fn tune_loopback(stream: &TcpStream) {
    if !stream.peer_addr().is_ok_and(|a| a.ip().is_loopback()) {
        return;
    }
    let socket = socket2::SockRef::from(stream);
    #[cfg(target_os = "linux")]
    let _ = socket.set_tcp_congestion(b"reno");
    let _ = socket.set_send_buffer_size(LOOPBACK_BUFFER);
    let _ = socket.set_recv_buffer_size(LOOPBACK_BUFFER);
}

/// Removes a connection from its proxy's set when the connection ends.
struct Registered {
    shared: Arc<ProxyShared>,
    ordinal: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut set) = self.shared.connections.lock() {
            set.remove(&self.ordinal);
        }
    }
}

async fn serve(client: TcpStream, upstream: Arc<str>, shared: Arc<ProxyShared>, ordinal: u64) {
    let Ok(Ok(server)) = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&*upstream)).await else {
        // As Toxiproxy does: the client is closed when the upstream cannot be reached.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tune_loopback(&client);
    tune_loopback(&server);
    let signal = Arc::new(watch::Sender::new(Signal::Open));
    if let Ok(mut set) = shared.connections.lock() {
        set.insert(ordinal, signal.clone());
    }
    let _registered = Registered { shared: shared.clone(), ordinal };
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);

    let id = ConnectionId { seed: shared.seed, proxy: shared.name.clone(), ordinal };
    let (to_client, for_client) = mpsc::channel::<Exchange>(EXCHANGE_QUEUE);
    let (to_server, for_server) = mpsc::channel::<Exchange>(EXCHANGE_QUEUE);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let parts = |stream: Stream, inbox, outbox| LinkParts {
        stream,
        id: id.clone(),
        chain: shared.chains[stream.index()].subscribe(),
        signal: signal.clone(),
        inbox,
        outbox,
        metrics: shared.metrics.clone(),
    };
    let upstream_parts = parts(Stream::Upstream, for_server, to_client);
    let downstream_parts = parts(Stream::Downstream, for_client, to_server);
    let upstream_link = tokio::spawn(link::run(client_read, server_write, upstream_parts));
    link::run(server_read, client_write, downstream_parts).await;
    let _ = upstream_link.await;
}
