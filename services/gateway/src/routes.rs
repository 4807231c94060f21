//! The gateway's routes.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use shop_kit::auth::Claims;
use shop_kit::client::UpstreamRequest;
use shop_kit::idempotency::IdempotencyKey;
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
    let key = order_key(&claims, &headers)?;
    let mut headers = headers;
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    forward(&g.orders, upstream_request(Method::POST, "/v1/orders".into(), &headers, body, Some(&key))).await
}

/// The key an order is placed upstream under, which makes the call safe to retry and
/// the orders service dedupe it: the client's own (the kit's rule), scoped to the client
/// (`<user>:<key>`) so two users' keys never collide; or, when it sent none, a fresh one.
fn order_key(claims: &Claims, headers: &HeaderMap) -> Result<IdempotencyKey, ApiError> {
    match IdempotencyKey::from_headers(headers)? {
        Some(key) => Ok(key.scoped(&claims.sub)?),
        None => Ok(IdempotencyKey::parse(&shop_kit::platform::uuid_v4().to_string()).expect("a UUID is a valid key")),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use shop_kit::ProblemKind;

    fn user(sub: &str) -> Claims {
        Claims { sub: sub.into(), email: "a@b.c".into(), iat: 0, exp: 0, iss: shop_kit::auth::ISSUER.into() }
    }

    fn sent(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("idempotency-key", key.parse().unwrap());
        h
    }

    #[test]
    fn a_clients_key_is_scoped_to_the_client_and_a_missing_one_generated() {
        assert_eq!(order_key(&user("7"), &sent("client-key-1")).unwrap().as_str(), "7:client-key-1");
        let generated = order_key(&user("7"), &HeaderMap::new()).unwrap();
        assert!(uuid::Uuid::parse_str(generated.as_str()).is_ok(), "{generated}");
        assert_ne!(generated, order_key(&user("7"), &HeaderMap::new()).unwrap());
    }

    #[test]
    fn a_bad_key_is_a_400_naming_the_header() {
        let longest_under_user_7 = "k".repeat(shop_kit::idempotency::MAX_KEY_LEN - 2);
        assert!(order_key(&user("7"), &sent(&longest_under_user_7)).is_ok());
        for (sub, bad) in [("7", "has space".to_string()), ("7", "k".repeat(201)), ("42", longest_under_user_7)] {
            let err = order_key(&user(sub), &sent(&bad)).unwrap_err();
            assert_eq!((err.kind, &err.extensions["field"]), (ProblemKind::BadRequest, &"Idempotency-Key".into()));
        }
    }
}
