//! The resilient client against real in-process upstreams whose behaviour tests control.

use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::any;
use axum::Router;
use shop_kit::client::{
    BreakerConfig, BreakerState, ClientConfig, ClientError, RetryConfig, UpstreamClient, UpstreamRequest,
};
use shop_kit::metrics::Metrics;
use shop_kit::{Env, ServiceApp, ServiceConfig};
use tokio::net::TcpListener;

/// What the fake upstream does: 0 answer 200, 1 answer 503, 2 hang for 2 s.
#[derive(Clone, Default)]
struct Upstream {
    mode: Arc<AtomicU8>,
    hits: Arc<AtomicU32>,
}

impl Upstream {
    async fn spawn(&self) -> shop_kit::server::RunningService {
        let me = self.clone();
        let router = Router::new().route(
            "/{*rest}",
            any(move || {
                let me = me.clone();
                async move {
                    me.hits.fetch_add(1, Ordering::SeqCst);
                    match me.mode.load(Ordering::SeqCst) {
                        0 => (StatusCode::OK, "{\"ok\":true}"),
                        1 => (StatusCode::SERVICE_UNAVAILABLE, "{}"),
                        _ => {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                            (StatusCode::OK, "{}")
                        }
                    }
                }
            }),
        );
        let cfg = ServiceConfig::from_env(&Env::from_pairs([("SHOP_DEV_DEFAULTS", "1")]), "up", 0, false).unwrap();
        ServiceApp::new(cfg, Metrics::new("up"), router).spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    fn hits(&self) -> u32 {
        self.hits.swap(0, Ordering::SeqCst)
    }
}

fn fast_retries() -> RetryConfig {
    RetryConfig {
        max_attempts: 3,
        base: Duration::from_millis(1),
        cap: Duration::from_millis(5),
        budget_ratio: 1.0,
        budget_floor_per_sec: 100,
    }
}

fn config() -> ClientConfig {
    ClientConfig {
        timeout: Duration::from_millis(300),
        retry: fast_retries(),
        breaker: BreakerConfig { min_requests: 1000, ..BreakerConfig::default() },
    }
}

#[tokio::test]
async fn only_safe_requests_are_retried() {
    let up = Upstream::default();
    let svc = up.spawn().await;
    let client = UpstreamClient::new("up", &[svc.url()], config(), None);
    up.set(1);

    let res = client.send(UpstreamRequest::get("/x")).await.unwrap();
    assert_eq!(res.status, 503);
    assert_eq!(up.hits(), 3, "GET is retried up to max_attempts");

    let res = client.send(UpstreamRequest::json(http::Method::POST, "/x", &1)).await.unwrap();
    assert_eq!(res.status, 503);
    assert_eq!(up.hits(), 1, "a POST without an idempotency key is never retried");

    let res = client.send(UpstreamRequest::json(http::Method::POST, "/x", &1).idempotency_key("k1")).await.unwrap();
    assert_eq!(res.status, 503);
    assert_eq!(up.hits(), 3, "a keyed POST is retried");

    up.set(0);
    let v: serde_json::Value = client.call(UpstreamRequest::get("/x")).await.unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn the_retry_budget_caps_retries_under_an_outage() {
    let up = Upstream::default();
    let svc = up.spawn().await;
    let cfg = ClientConfig {
        retry: RetryConfig { budget_ratio: 0.1, budget_floor_per_sec: 1, ..fast_retries() },
        ..config()
    };
    let client = UpstreamClient::new("up", &[svc.url()], cfg, None);
    up.set(1);
    for _ in 0..200 {
        let _ = client.send(UpstreamRequest::get("/x")).await;
    }
    let hits = up.hits();
    // 200 originals; without a budget up to 400 retries; with 10% (+ the floor) about 20-40.
    assert!((200..=260).contains(&hits), "hits {hits}");
}

#[tokio::test]
async fn a_timeout_is_reported_as_such() {
    let up = Upstream::default();
    let svc = up.spawn().await;
    let cfg = ClientConfig { retry: RetryConfig { max_attempts: 1, ..fast_retries() }, ..config() };
    let client = UpstreamClient::new("up", &[svc.url()], cfg, None);
    up.set(2);
    let err = client.send(UpstreamRequest::get("/x")).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_and_recovers() {
    let up = Upstream::default();
    let svc = up.spawn().await;
    let metrics = Metrics::new("caller");
    let cfg = ClientConfig {
        timeout: Duration::from_millis(300),
        retry: RetryConfig { max_attempts: 1, ..fast_retries() },
        breaker: BreakerConfig {
            min_requests: 5,
            failure_rate: 0.5,
            open_for: Duration::from_millis(300),
            probes: 1,
            ..BreakerConfig::default()
        },
    };
    let client = UpstreamClient::new("up", &[svc.url()], cfg, Some(metrics.clone()));
    up.set(1);
    for _ in 0..5 {
        let _ = client.send(UpstreamRequest::get("/x")).await;
    }
    assert_eq!(up.hits(), 5);
    assert!(matches!(client.breaker_states()[0].1, BreakerState::Open { .. }));
    let text = metrics.render();
    assert!(
        text.contains(&format!("shop_breaker_state{{replica=\"{}\",upstream=\"up\",service=\"caller\"}} 2", svc.url())),
        "open breaker exported: {text}"
    );
    for _ in 0..20 {
        let err = client.send(UpstreamRequest::get("/x")).await.unwrap_err();
        assert!(matches!(err, ClientError::Unavailable { .. }), "{err}");
    }
    assert_eq!(up.hits(), 0, "an open breaker sends nothing");
    up.set(0);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(client.send(UpstreamRequest::get("/x")).await.unwrap().status, 200);
    assert_eq!(client.breaker_states()[0].1, BreakerState::Closed);
}

#[tokio::test]
async fn round_robin_skips_a_dead_replica() {
    let (a, b) = (Upstream::default(), Upstream::default());
    let (sa, sb) = (a.spawn().await, b.spawn().await);
    let cfg = ClientConfig {
        retry: RetryConfig { max_attempts: 2, ..fast_retries() },
        breaker: BreakerConfig { min_requests: 3, open_for: Duration::from_secs(30), ..BreakerConfig::default() },
        ..config()
    };
    let client = UpstreamClient::new("up", &[sa.url(), sb.url()], cfg, None);
    for _ in 0..10 {
        client.send(UpstreamRequest::get("/x")).await.unwrap();
    }
    assert_eq!((a.hits(), b.hits()), (5, 5), "alternates");
    sb.stop().await;
    let mut ok = 0;
    for _ in 0..40 {
        if client.send(UpstreamRequest::get("/x")).await.map(|r| r.status == 200).unwrap_or(false) {
            ok += 1;
        }
    }
    assert_eq!(ok, 40, "a GET retried onto the live replica always succeeds");
    assert!(matches!(client.breaker_states()[1].1, BreakerState::Open { .. }), "dead replica's breaker opened");
}
