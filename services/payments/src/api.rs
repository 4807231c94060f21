//! The HTTP API of payments (see `services/README.md`): one small handler per route,
//! each parsing its input into domain values and mapping store outcomes to answers.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use shop_kit::auth::{Admin, AdminToken};
use shop_kit::{ApiError, Json, Path, ProblemKind, Query, ServiceConfig};

use crate::domain::{Charge, ChargeRequest, DeclineRule, FieldError, IdempotencyKey, LedgerSummary, OrderRef};
use crate::store::{Charged, KeyedCharge, LedgerStore, StoreError};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: LedgerStore,
    rule: DeclineRule,
    admin_token: String,
}

impl AppState {
    /// The state of the payments API: its store, the decline rule and the admin token.
    pub fn new(config: &ServiceConfig, store: LedgerStore, rule: DeclineRule) -> Self {
        Self { inner: Arc::new(Inner { store, rule, admin_token: config.admin_token.clone() }) }
    }
}

/// The service's routes: the public API and the admin routes.
pub fn router(state: AppState) -> Router {
    public_routes().merge(admin_routes()).with_state(state)
}

fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/charges", post(charge).get(list_charges))
        .route("/v1/charges/{id}", get(get_charge))
        .route("/v1/charges/{id}/refund", post(refund))
        .route("/v1/ledger/summary", get(summary))
}

/// Routes for operators and the harness, behind the [`Admin`] extractor and never
/// routed by the gateway. The hook point for what the harness will need to drive this
/// service: contract-test provider states, chaos switches.
fn admin_routes() -> Router<AppState> {
    let routes = Router::new().route("/v1/admin/state", get(admin_state));
    shop_kit::contract::with_state_route(routes, post(provider_state))
}

/// Contract-test mode only (see `shop_kit::contract`): sets up the provider state a
/// pact interaction names, and answers the values the interaction may inject.
async fn provider_state(
    State(s): State<AppState>,
    Json(change): Json<shop_kit::contract::StateChange>,
) -> Result<Json<Value>, ApiError> {
    if change.needs_no_setup() {
        return Ok(Json(serde_json::json!({})));
    }
    match change.state.as_str() {
        "payments decline amounts over 5000" => match s.inner.rule.over {
            Some(5000) => Ok(Json(serde_json::json!({ "decline_over": 5000 }))),
            other => Err(ApiError::bad_request(format!(
                "payments declines over {other:?}; start it with SHOP_PAYMENTS_DECLINE_OVER=5000 for this state"
            ))),
        },
        "a captured charge exists for order pact-ord-charged" => {
            let order_id = "pact-ord-charged";
            let key = IdempotencyKey::parse(&format!("{order_id}:state")).map_err(ApiError::from)?;
            let order = OrderRef::parse(&Value::String(order_id.into())).map_err(field_error)?;
            let request = ChargeRequest::parse(order, 1000, "EUR").map_err(field_error)?;
            let rule = DeclineRule { over: None };
            let charged = s.inner.store.charge(key, request, rule).await.map_err(store_error)?;
            Ok(Json(serde_json::json!({ "charge_id": charged.charge().id, "order_id": order_id })))
        }
        other => Err(ApiError::bad_request(format!("payments knows no provider state {other:?}"))),
    }
}

impl AdminToken for AppState {
    fn admin_token(&self) -> &str {
        &self.inner.admin_token
    }
}

#[derive(Debug, Deserialize)]
struct ChargeBody {
    order_id: Option<Value>,
    amount_minor: Option<i64>,
    currency: Option<String>,
}

impl ChargeBody {
    fn parse(self) -> Result<ChargeRequest, FieldError> {
        let order_id = OrderRef::parse(self.order_id.as_ref().ok_or_else(|| FieldError::missing("order_id"))?)?;
        let amount = self.amount_minor.ok_or_else(|| FieldError::missing("amount_minor"))?;
        let currency = self.currency.ok_or_else(|| FieldError::missing("currency"))?;
        ChargeRequest::parse(order_id, amount, &currency)
    }
}

async fn charge(
    key: IdempotencyKey,
    State(s): State<AppState>,
    Json(body): Json<ChargeBody>,
) -> Result<Response, ApiError> {
    let request = body.parse().map_err(field_error)?;
    let charged = s.inner.store.charge(key, request, s.inner.rule).await.map_err(store_error)?;
    if let Some(reason) = &charged.charge().decline_reason {
        let c = charged.charge();
        return Err(ApiError::new(ProblemKind::PaymentDeclined, format!("charge {} was declined: {reason}", c.id))
            .with("reason", reason)
            .with("charge_id", c.id));
    }
    Ok(match charged {
        Charged::New(c) => {
            let mut res = (StatusCode::CREATED, Json(&c)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/v1/charges/{}", c.id)) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
        Charged::Existing(c) => Json(c).into_response(),
    })
}

#[derive(Debug, Deserialize)]
struct ListParams {
    order_id: Option<String>,
}

#[derive(Debug, Serialize)]
struct ChargeList {
    items: Vec<Charge>,
}

async fn list_charges(
    State(s): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<ChargeList>, ApiError> {
    let order_id = params.order_id.ok_or_else(|| FieldError::missing("order_id")).map_err(field_error)?;
    let order_id = OrderRef::parse_text(&order_id).map_err(field_error)?;
    Ok(Json(ChargeList { items: s.inner.store.by_order(order_id).await? }))
}

async fn get_charge(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Charge>, ApiError> {
    let id = positive_id(id)?;
    let found = s.inner.store.get(id).await?;
    found.map(Json).ok_or_else(|| store_error(StoreError::UnknownCharge(id)))
}

async fn refund(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Charge>, ApiError> {
    let id = positive_id(id)?;
    s.inner.store.refund(id).await.map(Json).map_err(store_error)
}

async fn summary(State(s): State<AppState>) -> Result<Json<LedgerSummary>, ApiError> {
    Ok(Json(s.inner.store.summary().await?))
}

/// What the data-integrity checkers read.
#[derive(Debug, Serialize)]
struct AdminState {
    charges: Vec<KeyedCharge>,
    summary: LedgerSummary,
}

async fn admin_state(_: Admin, State(s): State<AppState>) -> Result<Json<AdminState>, ApiError> {
    let (charges, summary) = s.inner.store.state().await?;
    Ok(Json(AdminState { charges, summary }))
}

fn positive_id(id: i64) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(ApiError::invalid_field("id", format!("ids are positive integers, got {id}")))
    }
}

fn field_error(e: FieldError) -> ApiError {
    ApiError::invalid_field(&e.field, e.message)
}

fn store_error(e: StoreError) -> ApiError {
    let detail = e.to_string();
    match e {
        StoreError::KeyReused(id) => {
            ApiError::conflict(detail).with("field", IdempotencyKey::HEADER).with("charge_id", id)
        }
        StoreError::UnknownCharge(_) => ApiError::not_found(detail),
        StoreError::WrongState { status, .. } => ApiError::conflict(detail).with("status", status),
        StoreError::Db(e) => e.into(),
    }
}
