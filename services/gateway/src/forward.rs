//! Forwarding a client's request to an upstream and its answer back.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use shop_kit::client::{ClientError, UpstreamClient, UpstreamRequest, UpstreamResponse};
use shop_kit::idempotency::IdempotencyKey;
use shop_kit::ApiError;

/// Request headers a client may pass through to an upstream.
const PASSED_REQUEST_HEADERS: &[HeaderName] = &[header::CONTENT_TYPE, header::ACCEPT];
/// Response headers passed back to the client.
const PASSED_RESPONSE_HEADERS: &[HeaderName] = &[header::CONTENT_TYPE, header::RETRY_AFTER, header::LOCATION];

/// Builds the upstream request: method, path, the passed headers, the body, and `key`
/// (a client's `Idempotency-Key` reaches an upstream only as the route decides, checked
/// and scoped: see `routes::order_key`).
pub fn upstream_request(
    method: Method,
    path: String,
    headers: &HeaderMap,
    body: Bytes,
    key: Option<&IdempotencyKey>,
) -> UpstreamRequest {
    let mut req = UpstreamRequest::new(method, path);
    for name in PASSED_REQUEST_HEADERS {
        if let Some(v) = headers.get(name) {
            req.headers.insert(name.clone(), v.clone());
        }
    }
    if let Some(key) = key {
        req = req.idempotency_key(key.as_str());
    }
    req.body = body;
    req
}

/// The client-facing response for an upstream's answer.
pub fn relay(res: UpstreamResponse) -> Response {
    let mut out = (res.status, res.body).into_response();
    for name in PASSED_RESPONSE_HEADERS {
        if let Some(v) = res.headers.get(name) {
            out.headers_mut().insert(name.clone(), v.clone());
        }
    }
    out
}

/// Sends `req` to `client` and relays the answer; no answer becomes a 503/504 problem.
pub async fn forward(client: &UpstreamClient, req: UpstreamRequest) -> Result<Response, ApiError> {
    client.send(req).await.map(relay).map_err(ApiError::from)
}

/// Marks a relayed response as served from the fallback cache.
pub fn mark_stale(mut res: Response) -> Response {
    res.headers_mut().insert(crate::fallback::STALE_HEADER, HeaderValue::from_static("true"));
    res
}

/// Whether an upstream failed (no answer or a 5xx), as opposed to answering.
pub fn failed(result: &Result<UpstreamResponse, ClientError>) -> bool {
    match result {
        Ok(r) => r.status.is_server_error(),
        Err(_) => true,
    }
}
