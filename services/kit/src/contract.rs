//! Contract-test mode: what a service offers the Pact provider verification, and only it.
//!
//! With `SHOP_CONTRACT_TEST=1` a service adds `POST /_pact/state` to its admin routes,
//! where the verifier sets up the provider state an interaction names ("product 42 has
//! 0 stock"), and a service that publishes messages adds `POST /_pact/message`, where the
//! verifier asks for the message an asynchronous-message interaction describes ("an
//! order was paid") and compares what it gets with the consumer's pact. Neither is ever
//! routed otherwise: a normal run answers 404.
//!
//! `SHOP_CONTRACT_BREAK=drop-field:<name>` (contract-test mode only) removes a field
//! from every JSON answer, so a test can prove that the contract gate catches a
//! provider change that drops a field a consumer reads.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Turns contract-test mode on when `1`.
pub const TEST_MODE_ENV: &str = "SHOP_CONTRACT_TEST";
/// A deliberate provider break, for the gate's own test.
pub const BREAK_ENV: &str = "SHOP_CONTRACT_BREAK";
/// Where the verifier posts provider state changes.
pub const STATE_PATH: &str = "/_pact/state";
/// Where the verifier asks a message provider for the message an interaction describes.
pub const MESSAGE_PATH: &str = "/_pact/message";
/// The header of a produced message that carries its metadata (base64 of a JSON
/// object), as `pact_verifier` reads it.
pub const MESSAGE_METADATA_HEADER: &str = "pact-message-metadata";
/// The largest answer the break switch rewrites.
const MAX_REWRITTEN_BODY: usize = 4 << 20;

/// Whether this process runs in contract-test mode.
pub fn enabled() -> bool {
    std::env::var(TEST_MODE_ENV).is_ok_and(|v| v == "1")
}

/// A provider state change, as `pact_verifier` posts it.
#[derive(Clone, Debug, Deserialize)]
pub struct StateChange {
    /// The state in plain words, e.g. `product 42 has 0 stock`.
    pub state: String,
    #[serde(default)]
    pub params: Map<String, Value>,
    /// `setup` (the default) or `teardown`.
    #[serde(default)]
    pub action: Option<String>,
}

impl StateChange {
    /// Whether there is nothing to set up: a teardown (services keep no per-state
    /// teardown) or an interaction without a state.
    pub fn needs_no_setup(&self) -> bool {
        self.action.as_deref() == Some("teardown") || self.state.trim().is_empty()
    }
}

/// What `pact_verifier` posts to [`MESSAGE_PATH`]: the interaction's description (and
/// its provider states, which a producer may ignore).
#[derive(Clone, Debug, Deserialize)]
pub struct MessageRequest {
    pub description: String,
    #[serde(default, rename = "providerStates")]
    pub provider_states: Vec<Value>,
}

/// A produced message as the verifier expects it: `payload` (JSON) as the body, and
/// `metadata` (e.g. the subject it is published to) in [`MESSAGE_METADATA_HEADER`].
pub fn message_response(payload: String, metadata: &Map<String, Value>) -> Response {
    let encoded = base64::engine::general_purpose::STANDARD.encode(Value::Object(metadata.clone()).to_string());
    let mut res = Response::new(Body::from(payload));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(value) = HeaderValue::from_str(&encoded) {
        res.headers_mut().insert(MESSAGE_METADATA_HEADER, value);
    }
    res
}

/// Adds `route` (the service's message producer) at [`MESSAGE_PATH`] in contract-test
/// mode, and nothing otherwise.
pub fn with_message_route<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    route: axum::routing::MethodRouter<S>,
) -> Router<S> {
    if enabled() {
        routes.route(MESSAGE_PATH, route)
    } else {
        routes
    }
}

/// Adds `route` (the service's state-change handler) at [`STATE_PATH`] in contract-test
/// mode, and nothing otherwise.
pub fn with_state_route<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    route: axum::routing::MethodRouter<S>,
) -> Router<S> {
    if enabled() {
        routes.route(STATE_PATH, route)
    } else {
        routes
    }
}

/// Applies the [`BREAK_ENV`] switch to a router, in contract-test mode only.
pub fn with_breakage(router: Router) -> Router {
    match breakage() {
        Some(field) => router.layer(middleware::from_fn(move |req: Request, next: Next| {
            let field = field.clone();
            async move { drop_field(next.run(req).await, &field).await }
        })),
        None => router,
    }
}

/// The field [`BREAK_ENV`] asks to drop, when in contract-test mode.
fn breakage() -> Option<String> {
    if !enabled() {
        return None;
    }
    let raw = std::env::var(BREAK_ENV).ok()?;
    raw.strip_prefix("drop-field:").filter(|f| !f.is_empty()).map(str::to_string)
}

async fn drop_field(res: Response, field: &str) -> Response {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REWRITTEN_BODY).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    remove_field(&mut value, field);
    let out = serde_json::to_vec(&value).unwrap_or_else(|_| bytes.to_vec());
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// Removes `field` from an object and from the objects of its `items` list.
fn remove_field(value: &mut Value, field: &str) {
    if let Value::Object(map) = value {
        map.remove(field);
        if let Some(Value::Array(items)) = map.get_mut("items") {
            for item in items {
                if let Value::Object(m) = item {
                    m.remove(field);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_is_removed_at_the_top_and_from_items() {
        let mut v = serde_json::json!({"name": "a", "id": 1, "items": [{"name": "b", "id": 2}]});
        remove_field(&mut v, "name");
        assert_eq!(v, serde_json::json!({"id": 1, "items": [{"id": 2}]}));
    }

    #[test]
    fn a_state_change_reads_the_verifier_body() {
        let c: StateChange =
            serde_json::from_str(r#"{"state": "product 42 has 0 stock", "params": {}, "action": "teardown"}"#).unwrap();
        assert!(c.needs_no_setup());
        let c: StateChange = serde_json::from_str(r#"{"state": "x"}"#).unwrap();
        assert!(!c.needs_no_setup());
    }

    #[test]
    fn a_message_carries_its_metadata_as_the_verifier_reads_it() {
        let r: MessageRequest =
            serde_json::from_str(r#"{"description": "an order was paid", "providerStates": [{"name": "s"}]}"#).unwrap();
        assert_eq!((r.description.as_str(), r.provider_states.len()), ("an order was paid", 1));
        let mut metadata = Map::new();
        metadata.insert("subject".into(), Value::String("orders.paid".into()));
        let res = message_response("{}".into(), &metadata);
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let raw = res.headers()[MESSAGE_METADATA_HEADER].to_str().unwrap();
        let decoded = base64::engine::general_purpose::STANDARD.decode(raw).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&decoded).unwrap(), serde_json::json!({"subject": "orders.paid"}));
    }
}
