//! The resilient HTTP client every service uses to call another.
//!
//! A call goes down a stack of tower layers, outermost first:
//!
//! ```text
//! Retry (RetryPolicy: safe requests only, full-jitter backoff, retry budget)
//!   └ RoundRobin (replicas in turn, skipping open breakers; fail fast if all are open)
//!       └ Breakered (per replica: rolling-window failure rate → open → half-open probes)
//!           └ ReplicaTransport (reqwest, keep-alive pool, per-attempt timeout)
//! ```
//!
//! Each layer is usable alone; [`UpstreamClient`] assembles the stack for one upstream,
//! adds the trace headers of the current request and exports breaker states and call
//! outcomes as metrics.

pub mod balance;
pub mod breaker;
pub mod retry;
pub mod transport;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

pub use breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use retry::RetryConfig;

use crate::error::Problem;
use crate::metrics::Metrics;

/// The header that makes a non-idempotent request safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Why a call to an upstream failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{upstream} did not answer within {after:?}")]
    Timeout { upstream: String, after: Duration },
    #[error("{upstream} is unavailable: {reason}")]
    Unavailable { upstream: String, reason: String },
    #[error("{upstream} answered {status}{}", problem.as_ref().and_then(|p| p.detail.as_deref()).map(|d| format!(": {d}")).unwrap_or_default())]
    Status { upstream: String, status: StatusCode, problem: Option<Problem> },
    #[error("{upstream} sent a response that could not be read: {reason}")]
    Decode { upstream: String, reason: String },
}

impl ClientError {
    /// The upstream's problem `type` slug, when it answered with problem+json.
    pub fn problem_slug(&self) -> Option<&str> {
        match self {
            Self::Status { problem: Some(p), .. } => p.type_uri.strip_prefix(crate::error::PROBLEM_BASE),
            _ => None,
        }
    }

    /// The status the upstream answered with, if it answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A request to an upstream, independent of which replica serves it (so it can be
/// retried on another).
#[derive(Clone, Debug)]
pub struct UpstreamRequest {
    pub method: Method,
    /// Path and query, e.g. `/v1/products?limit=10`.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Overrides the client's per-attempt timeout.
    pub timeout: Option<Duration>,
}

impl UpstreamRequest {
    /// A request with no body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self { method, path: path.into(), headers: HeaderMap::new(), body: Bytes::new(), timeout: None }
    }

    /// `GET path`.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// `method path` with a JSON body.
    pub fn json(method: Method, path: impl Into<String>, body: &impl Serialize) -> Self {
        let mut r = Self::new(method, path);
        r.body = Bytes::from(serde_json::to_vec(body).expect("request bodies are plain data"));
        r.headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    }

    /// Adds a header; a value that is not a valid header value is skipped.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Marks the request with an idempotency key, which makes it safe to retry.
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header(HeaderName::from_static(IDEMPOTENCY_KEY), key)
    }

    /// Sets the per-attempt timeout of this request.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Safe to send twice: an idempotent method, or an idempotency key.
    pub fn is_retryable(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS)
            || self.headers.contains_key(IDEMPOTENCY_KEY)
    }
}

/// An upstream's answer, body read in full.
#[derive(Clone, Debug)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl UpstreamResponse {
    /// The body as problem details, if it is one.
    pub fn problem(&self) -> Option<Problem> {
        serde_json::from_slice(&self.body).ok()
    }
}

type Stack = BoxCloneSyncService<UpstreamRequest, UpstreamResponse, ClientError>;

/// The resilient client of one upstream service (all its replicas).
#[derive(Clone)]
pub struct UpstreamClient {
    name: Arc<str>,
    stack: Stack,
    budget: Arc<TpsBudget>,
    balancer: balance::RoundRobin,
    metrics: Option<Metrics>,
}

/// Settings of an [`UpstreamClient`]; the defaults suit calls inside the shop.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Per-attempt timeout.
    pub timeout: Duration,
    pub retry: RetryConfig,
    pub breaker: BreakerConfig,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(2), retry: RetryConfig::default(), breaker: BreakerConfig::default() }
    }
}

impl UpstreamClient {
    /// A client of upstream `name` over replica base URLs `urls` (at least one).
    pub fn new(name: &str, urls: &[String], config: ClientConfig, metrics: Option<Metrics>) -> Self {
        assert!(!urls.is_empty(), "an upstream has at least one replica URL");
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .expect("a plain reqwest client always builds");
        let replicas = urls
            .iter()
            .map(|url| {
                let (m, up, rep) = (metrics.clone(), name.to_string(), url.clone());
                if let Some(m) = &m {
                    m.set_breaker(&up, &rep, crate::metrics::BreakerGauge::Closed);
                }
                let shared = breaker::SharedBreaker::new(config.breaker, move |state| {
                    tracing::warn!(upstream = %up, replica = %rep, state = ?state.gauge(), "circuit breaker changed state");
                    if let Some(m) = &m {
                        m.set_breaker(&up, &rep, state.gauge());
                    }
                });
                breaker::BreakerLayer::new(name, shared).layer(transport::ReplicaTransport::new(
                    http.clone(),
                    name,
                    url,
                    config.timeout,
                ))
            })
            .collect();
        let balancer = balance::RoundRobin::new(name, replicas);
        let budget = config.retry.budget();
        let (m, up) = (metrics.clone(), name.to_string());
        let policy = retry::RetryPolicy::new(config.retry, budget.clone(), move || {
            if let Some(m) = &m {
                m.upstream_calls.with_label_values(&[&up, "retry"]).inc();
            }
        });
        let stack = BoxCloneSyncService::new(tower::retry::RetryLayer::new(policy).layer(balancer.clone()));
        Self { name: name.into(), stack, budget, balancer, metrics }
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The breaker state of each replica, by base URL.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.balancer.replicas().iter().map(|r| (r.get_ref().base().to_string(), r.breaker().state())).collect()
    }

    /// Sends `req` and returns the answer whatever its status; fails only when no answer
    /// came (timeout, connection failure, every breaker open).
    pub async fn send(&self, mut req: UpstreamRequest) -> Result<UpstreamResponse, ClientError> {
        for (name, value) in crate::trace::outgoing_headers() {
            if let Ok(v) = HeaderValue::from_str(&value) {
                req.headers.insert(name, v);
            }
        }
        self.budget.deposit();
        let result = self.stack.clone().oneshot(req).await;
        if let Some(m) = &self.metrics {
            let outcome = match &result {
                Ok(r) if r.status.is_server_error() => "error",
                Ok(_) => "ok",
                Err(ClientError::Timeout { .. }) => "timeout",
                Err(_) => "unavailable",
            };
            m.upstream_calls.with_label_values(&[&self.name, outcome]).inc();
        }
        result
    }

    /// Sends `req` and decodes a 2xx JSON answer; any other status is
    /// [`ClientError::Status`] with the upstream's problem details.
    pub async fn call<T: DeserializeOwned>(&self, req: UpstreamRequest) -> Result<T, ClientError> {
        let res = self.send(req).await?;
        if !res.status.is_success() {
            return Err(ClientError::Status {
                upstream: self.name.to_string(),
                status: res.status,
                problem: res.problem(),
            });
        }
        // A damaged body must not decode into plausible data.
        crate::digest::verify(&res.headers, &res.body)
            .map_err(|reason| ClientError::Decode { upstream: self.name.to_string(), reason })?;
        serde_json::from_slice(&res.body)
            .map_err(|e| ClientError::Decode { upstream: self.name.to_string(), reason: e.to_string() })
    }
}

impl Service<UpstreamRequest> for UpstreamClient {
    type Response = UpstreamResponse;
    type Error = ClientError;
    type Future = futures::future::BoxFuture<'static, Result<UpstreamResponse, ClientError>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: UpstreamRequest) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.send(req).await })
    }
}
