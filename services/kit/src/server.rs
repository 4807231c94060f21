//! Server bootstrap: the operational surface every service shares, and graceful shutdown.
//!
//! [`ServiceApp`] wraps a service's domain router with `/health`, `/ready`, `/metrics`,
//! the request context (request id, W3C trace context, a tracing span), metrics per
//! route, a body size limit, panic catching and problem+json for unknown routes and
//! methods. [`ServiceApp::run`] serves it until SIGTERM or SIGINT, lets in-flight requests
//! finish (within the configured grace), then closes the database cleanly.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::time::Instant;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::config::{ConfigError, Env, ServiceConfig};
use crate::db::Db;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::trace::{self, RequestContext, TraceContext, REQUEST_ID, TRACEPARENT};

/// A service ready to serve: its domain routes plus the shared operational surface.
pub struct ServiceApp {
    config: ServiceConfig,
    metrics: Metrics,
    router: Router,
    db: Option<Db>,
}

#[derive(Clone)]
struct Ops {
    metrics: Metrics,
    db: Option<Db>,
}

impl ServiceApp {
    /// Wraps `router` (the service's domain routes, state already applied).
    pub fn new(config: ServiceConfig, metrics: Metrics, router: Router) -> Self {
        Self { config, metrics, router, db: None }
    }

    /// The database that `/ready` checks and shutdown closes.
    pub fn with_db(mut self, db: Db) -> Self {
        self.db = Some(db);
        self
    }

    /// The full router, as served.
    pub fn into_router(self) -> Router {
        let ops = Ops { metrics: self.metrics.clone(), db: self.db.clone() };
        let operational = Router::new()
            .route("/health", get(health))
            .route("/ready", get(ready))
            .route("/metrics", get(metrics_text))
            .with_state(ops.clone());
        self.router
            .merge(operational)
            .fallback(unknown_route)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(middleware::from_fn(crate::digest::stamp))
            .layer(middleware::from_fn_with_state(ops, observe))
            .layer(DefaultBodyLimit::max(self.config.body_limit))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn(request_context))
            .layer(middleware::from_fn(stamp_date))
    }

    /// Serves on `listener` until `shutdown` completes, then drains and closes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let grace = self.config.shutdown_grace;
        let db = self.db.clone();
        let service = self.config.service.clone();
        let (drain_tx, drain_rx) = oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            tracing::info!(service, "shutting down: finishing in-flight requests");
            let _ = drain_tx.send(());
        };
        let server = axum::serve(listener, self.into_router().into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(signal)
            .into_future();
        let served = async move {
            tokio::pin!(server);
            tokio::select! {
                r = &mut server => r,
                _ = async { let _ = drain_rx.await; tokio::time::sleep(grace).await } => {
                    tracing::warn!(?grace, "in-flight requests did not finish within the grace period");
                    Ok(())
                }
            }
        };
        let result = served.await;
        if let Some(db) = db {
            if let Err(e) = db.close().await {
                tracing::warn!(error = %e, "database checkpoint on shutdown failed");
            }
        }
        result
    }

    /// Binds the configured address and serves until SIGTERM or SIGINT.
    pub async fn run(self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.config.listen).await?;
        tracing::info!(service = %self.config.service, listen = %listener.local_addr()?, "listening");
        self.serve(listener, shutdown_signal()).await
    }

    /// Serves in the background on `listener` (in-process tests and clusters).
    pub fn spawn(self, listener: TcpListener) -> RunningService {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = self
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await;
        });
        RunningService { addr, shutdown: Some(tx), handle: Some(handle) }
    }
}

/// A service serving in the background; shut down gracefully with [`RunningService::stop`]
/// or, when dropped, by aborting its task.
pub struct RunningService {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl RunningService {
    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Graceful shutdown: in-flight requests finish, the database is closed.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The `main` of a service binary: reads the configuration, starts logging, builds the
/// app with `build` and serves it. A configuration error is printed and exits with 2.
pub fn run_main<F, Fut>(service: &str, default_port: u16, needs_db: bool, build: F) -> ExitCode
where
    F: FnOnce(ServiceConfig, Env, Metrics) -> Fut,
    Fut: Future<Output = anyhow::Result<ServiceApp>>,
{
    let env = Env::from_process();
    let config = match ServiceConfig::from_env(&env, service, default_port, needs_db) {
        Ok(c) => c,
        Err(e) => return config_failure(service, &e),
    };
    crate::logging::init(service, &config.log_level);
    if let Err(e) = crate::breakage::check_at_start_up(&env, service) {
        return config_failure(service, &e);
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::from(3);
        }
    };
    rt.block_on(async move {
        let metrics = Metrics::new(service);
        let app = match build(config, env, metrics).await {
            Ok(app) => app,
            Err(e) => {
                if let Some(ce) = e.downcast_ref::<ConfigError>() {
                    return config_failure(service, ce);
                }
                tracing::error!(error = format!("{e:#}"), "start-up failed");
                eprintln!("{service}: start-up failed: {e:#}");
                return ExitCode::from(3);
            }
        };
        match app.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{service}: server failed: {e}");
                ExitCode::from(3)
            }
        }
    })
}

fn config_failure(service: &str, e: &ConfigError) -> ExitCode {
    eprintln!("{service}: configuration error: {e}");
    ExitCode::from(2)
}

async fn health() -> impl IntoResponse {
    crate::Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(State(ops): State<Ops>) -> Response {
    match &ops.db {
        Some(db) if !db.is_ready().await => (
            StatusCode::SERVICE_UNAVAILABLE,
            crate::Json(serde_json::json!({ "status": "not ready", "reason": "database unavailable" })),
        )
            .into_response(),
        _ => crate::Json(serde_json::json!({ "status": "ready" })).into_response(),
    }
}

async fn metrics_text(State(ops): State<Ops>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], ops.metrics.render())
}

async fn unknown_route(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        crate::ProblemKind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response<Body> {
    ApiError::internal("a request handler panicked").into_response()
}

/// Reads or starts the trace context and request id, runs the request in a span and in
/// [`trace::scope`], and echoes both ids on the response.
async fn request_context(req: Request, next: Next) -> Response {
    let headers = req.headers();
    let trace = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .map(|parent| parent.child())
        .unwrap_or_else(TraceContext::new_root);
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_string)
        .unwrap_or_else(|| crate::platform::uuid_v4().to_string());
    let span = tracing::info_span!(
        "request",
        trace_id = %trace.trace_id_hex(),
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
    );
    let ctx = RequestContext { trace, request_id: request_id.clone() };
    let mut res = trace::scope(ctx, next.run(req)).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&trace.to_string()) {
        res.headers_mut().insert(TRACEPARENT, v);
    }
    res
}

/// Counts and times each request by route template, method and status.
async fn observe(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let route: Arc<str> =
        req.extensions().get::<MatchedPath>().map(|p| Arc::from(p.as_str())).unwrap_or_else(|| Arc::from("unmatched"));
    let method = req.method().clone();
    let started = Instant::now();
    let _in_flight = InFlight::enter(&ops.metrics.in_flight);
    let res = next.run(req).await;
    let status = res.status();
    let labels = [route.as_ref(), method.as_str(), status.as_str()];
    ops.metrics.http_requests.with_label_values(&labels).inc();
    ops.metrics.http_latency.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(status = status.as_u16(), "request served");
    }
    res
}

/// Counts a request in flight until dropped, even when the client goes away mid-request.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Stamps every answer's `Date` from the service's wall clock ([`crate::platform::now`])
/// as it is now. hyper's own stamp is cached until the clock passes the next whole
/// second, so after the clock jumps back it shows the later time it stamped last until
/// the clock catches up; and in a simulation it would read the host's clock, not the
/// node's.
async fn stamp_date(req: axum::extract::Request, next: middleware::Next) -> axum::response::Response {
    let mut res = next.run(req).await;
    if let Ok(date) = http::HeaderValue::from_str(&httpdate::fmt_http_date(crate::platform::now())) {
        res.headers_mut().insert(http::header::DATE, date);
    }
    res
}
