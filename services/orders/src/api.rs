//! The HTTP API of the orders service (see `services/README.md`, "orders").

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use shop_kit::auth::{Admin, AdminToken};
use shop_kit::idempotency::IdempotencyKey;
use shop_kit::{ApiError, Json, Path};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::events::{LineItem, Order, OrderState, Status, Timestamp};
use crate::outbox::{Lag, Outbox};
use crate::saga::{Saga, Start};
use crate::store::{KeyedOrder, Placement, StoreError};

/// The most lines an order may have.
pub const MAX_ITEMS: usize = 50;
/// The most units of one product an order line may ask for.
pub const MAX_QUANTITY: i64 = 1000;
/// The longest user id accepted.
pub const MAX_USER_ID: usize = 128;
/// The most orders `GET /v1/users/{user_id}/orders` returns (newest first).
pub const MAX_LISTED: u32 = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub saga: Saga,
    /// How long `POST /v1/orders` waits for the saga before answering 202.
    pub inline_deadline: Duration,
    pub admin_token: String,
    /// Whether the outbox relay runs (a broker is configured).
    pub relay: bool,
}

/// The service's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/orders", post(place_order))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/users/{user_id}/orders", get(list_user_orders))
        .route("/v1/admin/state", get(admin_state))
        .merge(crate::contract::routes())
        .with_state(state)
}

/// The body of `POST /v1/orders`, as sent. Numbers are wide so that a bad value gets a
/// precise answer naming the field, rather than a generic parse error.
#[derive(Debug, Deserialize)]
pub struct PlaceOrderRequest {
    pub user_id: String,
    pub items: Vec<RequestedItem>,
}

/// One line of a [`PlaceOrderRequest`].
#[derive(Debug, Deserialize)]
pub struct RequestedItem {
    pub product_id: i64,
    pub quantity: i64,
}

/// A valid order request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewOrder {
    pub user_id: String,
    pub items: Vec<LineItem>,
}

impl NewOrder {
    /// The request in a canonical form, to compare a repeated idempotency key's request.
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).expect("plain data")
    }
}

/// Checks a place-order request; a bad one is a 400 naming the `field`.
pub fn parse_order(req: PlaceOrderRequest) -> Result<NewOrder, ApiError> {
    if req.user_id.trim().is_empty() {
        return Err(ApiError::invalid_field("user_id", "user_id must not be empty"));
    }
    if req.user_id.chars().count() > MAX_USER_ID || req.user_id.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            "user_id",
            format!("user_id must be at most {MAX_USER_ID} printable characters"),
        ));
    }
    if req.items.is_empty() || req.items.len() > MAX_ITEMS {
        return Err(ApiError::invalid_field(
            "items",
            format!("an order has 1 to {MAX_ITEMS} items, got {}", req.items.len()),
        ));
    }
    let mut items = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.iter().enumerate() {
        // A product may appear on several lines, as the catalog allows; it sums them.
        let product_id = u64::try_from(item.product_id).ok().filter(|&p| p >= 1).ok_or_else(|| {
            ApiError::invalid_field(&format!("items[{i}].product_id"), "product_id must be 1 or more")
        })?;
        if !(1..=MAX_QUANTITY).contains(&item.quantity) {
            return Err(ApiError::invalid_field(
                &format!("items[{i}].quantity"),
                format!("quantity must be 1 to {MAX_QUANTITY}, got {}", item.quantity),
            ));
        }
        items.push(LineItem { product_id, quantity: item.quantity as u32 });
    }
    Ok(NewOrder { user_id: req.user_id, items })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::internal(e)
    }
}

/// Places an order; a repeated `Idempotency-Key` (the kit's rule) answers the order it
/// placed, if the request is the same in its canonical form.
async fn place_order(
    State(app): State<AppState>,
    key: Option<IdempotencyKey>,
    Json(req): Json<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let new = parse_order(req)?;
    let key = key.map(|k| (String::from(k), new.canonical()));
    let store = app.saga.store();
    let id = shop_kit::platform::uuid_v7().to_string();
    let state = OrderState::placed(&id, &new.user_id, new.items, Timestamp::now());
    match store.place(state, key).await? {
        Placement::Created => {}
        Placement::Repeated(existing) => {
            let order = store.get(&existing).await?.ok_or_else(|| ApiError::internal("keyed order vanished"))?;
            if order.status == Status::Pending {
                // Nudge it along in case nothing drives it now; a no-op if something does.
                drop(spawn_drive(&app.saga, existing, Start::Resumed));
            }
            return Ok(respond(StatusCode::OK, order));
        }
        Placement::KeyReused => {
            return Err(ApiError::conflict(
                "this Idempotency-Key was already used for a different order request; use a new key",
            )
            .with("field", IdempotencyKey::HEADER));
        }
    }
    let drive = spawn_drive(&app.saga, id.clone(), Start::Fresh);
    // The saga goes on in its task after the deadline; only the wait ends.
    let _ = tokio::time::timeout(app.inline_deadline, drive).await;
    let order = store.get(&id).await?.ok_or_else(|| ApiError::internal("new order vanished"))?;
    let status = if order.status == Status::Pending { StatusCode::ACCEPTED } else { StatusCode::CREATED };
    Ok(respond(status, order))
}

/// Drives an order in its own task, carrying the request's trace context and span.
fn spawn_drive(saga: &Saga, order_id: String, start: Start) -> JoinHandle<()> {
    let saga = saga.clone();
    let ctx = shop_kit::trace::current();
    let drive = async move {
        if let Err(e) = saga.drive(&order_id, start).await {
            tracing::error!(order_id, error = %e, "driving the order failed");
        }
    };
    let task = async move {
        match ctx {
            Some(ctx) => shop_kit::trace::scope(ctx, drive).await,
            None => drive.await,
        }
    };
    shop_kit::platform::spawn(task.instrument(tracing::Span::current()))
}

fn respond(status: StatusCode, order: Order) -> Response {
    let location = format!("/v1/orders/{}", order.id);
    (status, [(header::LOCATION, location)], Json(order)).into_response()
}

async fn get_order(State(app): State<AppState>, Path(id): Path<String>) -> Result<Json<Order>, ApiError> {
    let order = app.saga.store().get(&id).await?;
    order.map(Json).ok_or_else(|| ApiError::not_found(format!("order {id} does not exist")))
}

#[derive(Serialize)]
struct OrderList {
    items: Vec<Order>,
}

async fn list_user_orders(
    State(app): State<AppState>,
    Path(user_id): Path<String>,
) -> Result<Json<OrderList>, ApiError> {
    Ok(Json(OrderList { items: app.saga.store().list_by_user(&user_id, MAX_LISTED).await? }))
}

/// What the data-integrity checkers read (`services/README.md`, "Admin state contract").
#[derive(Serialize)]
struct AdminState {
    orders: Vec<KeyedOrder>,
    outbox: OutboxState,
}

/// The outbox's lag, read after the orders.
#[derive(Serialize)]
struct OutboxState {
    /// Whether a relay publishes it (a broker is configured).
    relay: bool,
    #[serde(flatten)]
    lag: Lag,
}

impl AdminToken for AppState {
    fn admin_token(&self) -> &str {
        &self.admin_token
    }
}

async fn admin_state(_: Admin, State(app): State<AppState>) -> Result<Json<AdminState>, ApiError> {
    let store = app.saga.store();
    let orders = store.list_all_keyed().await?;
    let lag = Outbox::new(store.db().clone()).lag(Timestamp::now()).await.map_err(StoreError::from)?;
    Ok(Json(AdminState { orders, outbox: OutboxState { relay: app.relay, lag } }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_kit::ProblemKind;

    fn req(user: &str, items: &[(i64, i64)]) -> PlaceOrderRequest {
        PlaceOrderRequest {
            user_id: user.into(),
            items: items.iter().map(|&(product_id, quantity)| RequestedItem { product_id, quantity }).collect(),
        }
    }

    fn field_of(r: Result<NewOrder, ApiError>) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ProblemKind::BadRequest);
        e.extensions["field"].as_str().unwrap().to_string()
    }

    #[test]
    fn a_valid_request_parses() {
        let o = parse_order(req("u1", &[(1, 1), (2, 1000)])).unwrap();
        assert_eq!(o.items, vec![LineItem { product_id: 1, quantity: 1 }, LineItem { product_id: 2, quantity: 1000 }]);
        let fifty: Vec<(i64, i64)> = (1..=50).map(|p| (p, 1)).collect();
        assert!(parse_order(req("u1", &fifty)).is_ok());
        let twice = parse_order(req("u1", &[(7, 1), (7, 2)])).unwrap();
        assert_eq!(twice.items.len(), 2, "lines are kept as sent");
    }

    #[test]
    fn each_bad_value_names_its_field() {
        assert_eq!(field_of(parse_order(req(" ", &[(1, 1)]))), "user_id");
        assert_eq!(field_of(parse_order(req(&"x".repeat(129), &[(1, 1)]))), "user_id");
        assert_eq!(field_of(parse_order(req("u", &[]))), "items");
        let fifty_one: Vec<(i64, i64)> = (1..=51).map(|p| (p, 1)).collect();
        assert_eq!(field_of(parse_order(req("u", &fifty_one))), "items");
        assert_eq!(field_of(parse_order(req("u", &[(1, 1), (0, 1)]))), "items[1].product_id");
        assert_eq!(field_of(parse_order(req("u", &[(-4, 1)]))), "items[0].product_id");
        assert_eq!(field_of(parse_order(req("u", &[(1, 0)]))), "items[0].quantity");
        assert_eq!(field_of(parse_order(req("u", &[(1, 1001)]))), "items[0].quantity");
    }

    #[test]
    fn the_canonical_form_ignores_nothing_that_matters() {
        let a = parse_order(req("u", &[(1, 2)])).unwrap().canonical();
        assert_eq!(a, parse_order(req("u", &[(1, 2)])).unwrap().canonical());
        assert_ne!(a, parse_order(req("u", &[(1, 3)])).unwrap().canonical());
        assert_ne!(a, parse_order(req("v", &[(1, 2)])).unwrap().canonical());
    }
}
