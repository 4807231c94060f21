//! An in-process target for the load tests: an axum server on 127.0.0.1 whose delays
//! the test controls.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

/// What the target does, shared with the test.
#[derive(Default)]
pub struct Target {
    /// Requests served so far by `/mix`.
    pub mix_count: AtomicU64,
    /// Accounts created by `/users`.
    pub users: AtomicU64,
    /// Requests to `/orders` that carried a valid token.
    pub authorized_orders: AtomicU64,
    /// While `now` is in this window, `/stall` answers only at its end.
    pub stall: Mutex<Option<(Instant, Instant)>>,
}

/// The delay `/mix` applies to its `n`-th request: 60% 200ms, 30% 400ms, 10% 600ms,
/// interleaved so that every 10 consecutive requests hold the exact mix.
pub fn mix_delay(n: u64) -> Duration {
    match n % 10 {
        0..=5 => Duration::from_millis(200),
        6..=8 => Duration::from_millis(400),
        _ => Duration::from_millis(600),
    }
}

async fn fixed() -> &'static str {
    "ok"
}

async fn delay(axum::extract::Path(ms): axum::extract::Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
    "ok"
}

async fn mix(State(t): State<Arc<Target>>) -> &'static str {
    let n = t.mix_count.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(mix_delay(n)).await;
    "ok"
}

async fn stall(State(t): State<Arc<Target>>) -> &'static str {
    let window = *t.stall.lock().unwrap();
    if let Some((from, until)) = window {
        let now = Instant::now();
        if now >= from && now < until {
            tokio::time::sleep_until(until.into()).await;
        }
    }
    "ok"
}

async fn create_user(State(t): State<Arc<Target>>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let id = t.users.fetch_add(1, Ordering::Relaxed);
    (StatusCode::CREATED, Json(json!({"id": id, "email": body["email"]})))
}

async fn login(Json(body): Json<Value>) -> Result<Json<Value>, StatusCode> {
    let email = body["email"].as_str().ok_or(StatusCode::BAD_REQUEST)?;
    Ok(Json(json!({"token": format!("tok-{email}")})))
}

async fn orders(State(t): State<Arc<Target>>, headers: HeaderMap) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    if auth.starts_with("Bearer tok-") {
        t.authorized_orders.fetch_add(1, Ordering::Relaxed);
        StatusCode::CREATED
    } else {
        StatusCode::UNAUTHORIZED
    }
}

/// `{"n": 42}` in two chunks (chunked transfer coding: no content-length).
async fn chunked() -> axum::response::Response {
    let parts = vec![Ok::<_, std::convert::Infallible>("{\"n\":"), Ok("42}")];
    axum::response::Response::new(axum::body::Body::from_stream(futures::stream::iter(parts)))
}

/// Answers and asks the client to close the connection.
async fn close() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONNECTION, "close")], "bye")
}

async fn broken() -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

/// Starts the target on an ephemeral 127.0.0.1 port in the current runtime.
pub async fn start() -> (SocketAddr, Arc<Target>) {
    let target = Arc::new(Target::default());
    let app = Router::new()
        .route("/fixed", get(fixed))
        .route("/delay/{ms}", get(delay))
        .route("/mix", get(mix))
        .route("/stall", get(stall))
        .route("/users", post(create_user))
        .route("/login", post(login))
        .route("/orders", post(orders))
        .route("/broken", get(broken))
        .route("/chunked", get(chunked))
        .route("/close", get(close))
        .with_state(target.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, target)
}
