//! The embedded Toxiproxy-compatible server: the API on a listener, over an engine.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::engine::Engine;
use super::error::ApiError;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The API address could not be bound (e.g. `listen tcp 127.0.0.1:8474: bind:
    /// address already in use`).
    #[error("{0}")]
    Listen(ApiError),
}

/// A running embedded Toxiproxy server; dropping it without [`ProxyServer::shutdown`]
/// leaves it running until the runtime ends.
pub struct ProxyServer {
    addr: SocketAddr,
    engine: Arc<Engine>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ProxyServer {
    /// Binds the API on `listen` (e.g. `127.0.0.1:8474`, or port 0 for any free port)
    /// and serves it; every random decision of its proxies derives from `seed`.
    pub async fn start(listen: &str, seed: u64) -> Result<Self, ServerError> {
        let std_listener =
            std::net::TcpListener::bind(listen).map_err(|e| ServerError::Listen(ApiError::listen(listen, &e)))?;
        let to_err = |e: std::io::Error| ServerError::Listen(ApiError::listen(listen, &e));
        std_listener.set_nonblocking(true).map_err(to_err)?;
        let addr = std_listener.local_addr().map_err(to_err)?;
        let listener = tokio::net::TcpListener::from_std(std_listener).map_err(to_err)?;
        let engine = Engine::new(seed);
        let app = super::api::router(engine.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self { addr, engine, stop, task })
    }

    /// The address the API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:8474`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The engine behind the API, for in-process use.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Stops the API and every proxy, closing every proxied connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        self.engine.shutdown().await;
        let _ = self.task.await;
    }
}
