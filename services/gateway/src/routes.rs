//! The gateway's routes.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use shop_kit::auth::Claims;
use shop_kit::client::{UpstreamRequest, IDEMPOTENCY_KEY};
use shop_kit::{ApiError, Path, RawBody};

use crate::forward::{failed, forward, mark_stale, relay, upstream_request};
use crate::ratelimit::{limit, LimitState};
use crate::{Gateway, RateLimit};

/// Every `/api/v1` route, behind the rate limit.
pub fn router(gateway: Gateway, rate: RateLimit) -> Router {
    let limit_state = LimitState { limit: rate, keys: gateway.keys.clone() };
    Router::new()
        .route("/api/v1/users", post(register))
        .route("/api/v1/login", post(login))
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/products", get(products))
        .route("/api/v1/products/{id}", get(product))
        .route("/api/v1/orders", post(place_order).get(my_orders))
        .route("/api/v1/orders/{id}", get(order))
        .route("/api/v1/notifications", get(my_notifications))
        .with_state(gateway)
        .layer(middleware::from_fn_with_state(limit_state, limit))
}

impl Gateway {
    fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        Ok(self.keys.verify_headers(headers)?)
    }
}

/// A path segment from the client, checked before it is put into an upstream URL.
fn segment(id: &str) -> Result<&str, ApiError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(ApiError::invalid_field("id", "ids are 1-64 letters, digits, '-' or '_'"));
    }
    Ok(id)
}

async fn register(State(g): State<Gateway>, headers: HeaderMap, RawBody(body): RawBody) -> Result<Response, ApiError> {
    forward(&g.users, upstream_request(Method::POST, "/v1/users".into(), &headers, body, None)).await
}

async fn login(State(g): State<Gateway>, headers: HeaderMap, RawBody(body): RawBody) -> Result<Response, ApiError> {
    forward(&g.users, upstream_request(Method::POST, "/v1/login".into(), &headers, body, None)).await
}

async fn me(State(g): State<Gateway>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = g.authenticate(&headers)?;
    forward(&g.users, UpstreamRequest::get(format!("/v1/users/{}", segment(&claims.sub)?))).await
}

/// Reads through the catalog, falling back to the last good answer when it fails.
async fn read_catalog(g: &Gateway, path_and_query: String) -> Result<Response, ApiError> {
    let result = g.catalog.send(UpstreamRequest::get(path_and_query.clone())).await;
    if failed(&result) {
        if let Some(body) = g.products.get(&path_and_query) {
            tracing::warn!(path = %path_and_query, "catalog failed; serving the last good answer");
            let res = (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body);
            return Ok(mark_stale(res.into_response()));
        }
    }
    let res = result.map_err(ApiError::from)?;
    if res.status == StatusCode::OK {
        g.products.put(&path_and_query, res.body.clone());
    }
    Ok(relay(res))
}

async fn products(State(g): State<Gateway>, uri: Uri) -> Result<Response, ApiError> {
    let path = match uri.query() {
        Some(q) => format!("/v1/products?{q}"),
        None => "/v1/products".to_string(),
    };
    read_catalog(&g, path).await
}

async fn product(State(g): State<Gateway>, Path(id): Path<String>) -> Result<Response, ApiError> {
    read_catalog(&g, format!("/v1/products/{}", segment(&id)?)).await
}

async fn place_order(
    State(g): State<Gateway>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let claims = g.authenticate(&headers)?;
    let mut order: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("the body must be a JSON object: {e}")))?;
    order.insert("user_id".into(), claims.sub.clone().into());
    let body = Bytes::from(serde_json::to_vec(&order).map_err(ApiError::internal)?);
    let mut headers = headers;
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A key makes the call safe to retry; the orders service dedupes on it. A client's
    // own key is scoped to the client so two users' keys never collide.
    let key = match headers.remove(IDEMPOTENCY_KEY).as_ref().and_then(|v| v.to_str().ok()) {
        Some(k) if !k.is_empty() && k.len() <= 128 => format!("{}:{k}", claims.sub),
        Some(_) => {
            return Err(ApiError::invalid_field("Idempotency-Key", "an idempotency key is 1-128 visible characters"))
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let key = Some(key);
    forward(&g.orders, upstream_request(Method::POST, "/v1/orders".into(), &headers, body, key)).await
}

async fn my_orders(State(g): State<Gateway>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = g.authenticate(&headers)?;
    forward(&g.orders, UpstreamRequest::get(format!("/v1/users/{}/orders", segment(&claims.sub)?))).await
}

async fn order(State(g): State<Gateway>, headers: HeaderMap, Path(id): Path<String>) -> Result<Response, ApiError> {
    let claims = g.authenticate(&headers)?;
    let res = g.orders.send(UpstreamRequest::get(format!("/v1/orders/{}", segment(&id)?))).await?;
    if res.status == StatusCode::OK {
        let owner = serde_json::from_slice::<serde_json::Value>(&res.body)
            .ok()
            .and_then(|v| v.get("user_id").and_then(|u| u.as_str().map(str::to_string)));
        if owner.as_deref() != Some(claims.sub.as_str()) {
            return Err(ApiError::not_found(format!("no order {id}")));
        }
    }
    Ok(relay(res))
}

async fn my_notifications(State(g): State<Gateway>, headers: HeaderMap) -> Result<Response, ApiError> {
    let claims = g.authenticate(&headers)?;
    let Some(notifications) = &g.notifications else {
        return Err(ApiError::not_found(
            "notifications are not part of this deployment (no SHOP_UPSTREAM_NOTIFICATIONS)",
        ));
    };
    forward(notifications, UpstreamRequest::get(format!("/v1/notifications?user_id={}", segment(&claims.sub)?))).await
}
