//! The Toxiproxy 2.x HTTP API over an [`Engine`], as an axum router.
//!
//! | endpoint | success |
//! |---|---|
//! | `GET /proxies` | 200, object of proxies by name |
//! | `POST /proxies` | 201, the proxy |
//! | `POST /populate` | 201, `{"proxies": [...]}` |
//! | `GET /proxies/{proxy}` | 200, the proxy |
//! | `POST`/`PATCH /proxies/{proxy}` | 200, the proxy (partial update) |
//! | `DELETE /proxies/{proxy}` | 204 |
//! | `GET /proxies/{proxy}/toxics` | 200, array of toxics |
//! | `POST /proxies/{proxy}/toxics` | 200, the toxic |
//! | `GET /proxies/{proxy}/toxics/{toxic}` | 200, the toxic |
//! | `POST`/`PATCH /proxies/{proxy}/toxics/{toxic}` | 200, the toxic (partial update) |
//! | `DELETE /proxies/{proxy}/toxics/{toxic}` | 204 |
//! | `POST /reset` | 204 |
//! | `GET /version` | 200, `{"version": "..."}` |
//! | `GET /metrics` | 200, Prometheus text |
//!
//! Errors are `{"error": "...", "status": N}` with Toxiproxy's messages ([`ApiError`]).
//! As in Toxiproxy, requests from browsers (`User-Agent: Mozilla/...`) get a 403.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

use super::engine::Engine;
use super::error::ApiError;
use super::model::{ProxyConfig, Toxic};

/// The Toxiproxy version this server speaks, with Gauntlet's as build metadata.
pub const VERSION: &str = concat!("2.12.0+gauntlet.", env!("CARGO_PKG_VERSION"));

type Shared = State<Arc<Engine>>;

/// The router serving the Toxiproxy API over `engine`.
pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/reset", post(reset))
        .route("/proxies", get(list_proxies).post(create_proxy))
        .route("/populate", post(populate))
        .route("/proxies/{proxy}", get(show_proxy).post(update_proxy).patch(update_proxy).delete(delete_proxy))
        .route("/proxies/{proxy}/toxics", get(list_toxics).post(create_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(show_toxic).post(update_toxic).patch(update_toxic).delete(delete_toxic),
        )
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .layer(middleware::from_fn(refuse_browsers))
        .with_state(engine)
}

async fn refuse_browsers(request: Request, next: Next) -> Response {
    let from_browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    if from_browser {
        return (StatusCode::FORBIDDEN, "User agent not allowed\n").into_response();
    }
    next.run(request).await
}

/// An API error as Toxiproxy writes it.
fn error(e: ApiError) -> Response {
    json_response(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &json!(e.body()))
}

fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut body = value.to_string();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

fn reply<T: serde::Serialize>(status: StatusCode, result: Result<T, ApiError>) -> Response {
    match result {
        Ok(v) => json_response(status, &json!(v)),
        Err(e) => error(e),
    }
}

/// Parses a JSON body; Go's decoder reports an empty body as `EOF`.
fn parse(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequestBody("EOF".into()));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequestBody(e.to_string()))
}

async fn list_proxies(State(engine): Shared) -> Response {
    ok(&json!(engine.proxies().await))
}

async fn create_proxy(State(engine): Shared, body: Bytes) -> Response {
    let config = match parse(&body).and_then(|v| ProxyConfig::from_create_json(&v, None)) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    reply(StatusCode::CREATED, engine.create_proxy(config).await)
}

async fn populate(State(engine): Shared, body: Bytes) -> Response {
    let configs = match parse(&body).and_then(|v| populate_input(&v)) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let (proxies, failure) = engine.populate(configs).await;
    match failure {
        None => json_response(StatusCode::CREATED, &json!({ "proxies": proxies })),
        Some(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(status, &json!({ "error": e.to_string(), "status": e.status(), "proxies": proxies }))
        }
    }
}

/// Validates the whole `/populate` body before anything changes, as Toxiproxy does.
fn populate_input(value: &Value) -> Result<Vec<ProxyConfig>, ApiError> {
    let Value::Array(items) = value else {
        return Err(ApiError::BadRequestBody("expected a JSON array of proxies".into()));
    };
    let mut configs: Vec<ProxyConfig> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let config = ProxyConfig::from_create_json(item, Some(i + 1))?;
        if configs.iter().any(|c| c.name == config.name) {
            return Err(ApiError::BadRequestBody(format!("duplicate proxy name \"{}\"", config.name)));
        }
        configs.push(config);
    }
    Ok(configs)
}

async fn show_proxy(State(engine): Shared, Path(proxy): Path<String>) -> Response {
    reply(StatusCode::OK, engine.proxy(&proxy).await)
}

async fn update_proxy(State(engine): Shared, Path(proxy): Path<String>, body: Bytes) -> Response {
    // Toxiproxy looks the proxy up before it reads the body.
    if let Err(e) = engine.proxy(&proxy).await {
        return error(e);
    }
    match parse(&body) {
        Ok(v) => reply(StatusCode::OK, engine.update_proxy(&proxy, &v).await),
        Err(e) => error(e),
    }
}

async fn delete_proxy(State(engine): Shared, Path(proxy): Path<String>) -> Response {
    match engine.delete_proxy(&proxy).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn list_toxics(State(engine): Shared, Path(proxy): Path<String>) -> Response {
    reply(StatusCode::OK, engine.toxics(&proxy).await)
}

async fn create_toxic(State(engine): Shared, Path(proxy): Path<String>, body: Bytes) -> Response {
    if let Err(e) = engine.proxy(&proxy).await {
        return error(e);
    }
    match parse(&body).and_then(|v| Toxic::from_create_json(&v)) {
        Ok(toxic) => reply(StatusCode::OK, engine.add_toxic(&proxy, toxic).await),
        Err(e) => error(e),
    }
}

async fn show_toxic(State(engine): Shared, Path((proxy, toxic)): Path<(String, String)>) -> Response {
    reply(StatusCode::OK, engine.toxic(&proxy, &toxic).await)
}

async fn update_toxic(State(engine): Shared, Path((proxy, toxic)): Path<(String, String)>, body: Bytes) -> Response {
    if let Err(e) = engine.toxic(&proxy, &toxic).await {
        return error(e);
    }
    match parse(&body) {
        Ok(v) => reply(StatusCode::OK, engine.update_toxic(&proxy, &toxic, &v).await),
        Err(e) => error(e),
    }
}

async fn delete_toxic(State(engine): Shared, Path((proxy, toxic)): Path<(String, String)>) -> Response {
    match engine.remove_toxic(&proxy, &toxic).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn reset(State(engine): Shared) -> Response {
    match engine.reset().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

async fn version() -> Response {
    let body = format!("{{\"version\": \"{VERSION}\"}}\n");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json;charset=utf-8")], body).into_response()
}

async fn metrics(State(engine): Shared) -> Response {
    let text = engine.metrics_text().await;
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
