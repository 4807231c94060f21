//! The HTTP API of the catalog (see `services/README.md`): one small handler per route,
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

use crate::domain::{
    FieldError, IdempotencyKey, NewProduct, OrderRef, Product, Reservation, ReservationRequest, StockLevel,
};
use crate::store::{CatalogStore, Reserved, StoreError};

/// Page size bounds of `GET /v1/products`.
pub const PAGE_LIMIT: std::ops::RangeInclusive<i64> = 1..=100;
/// The page size when the client names none.
pub const DEFAULT_LIMIT: i64 = 20;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: CatalogStore,
    admin_token: String,
}

impl AppState {
    /// The state of the catalog API: its store and the admin token.
    pub fn new(config: &ServiceConfig, store: CatalogStore) -> Self {
        Self { inner: Arc::new(Inner { store, admin_token: config.admin_token.clone() }) }
    }
}

/// The service's routes: the public API and the admin routes.
pub fn router(state: AppState) -> Router {
    shop_kit::contract::with_breakage(public_routes().merge(admin_routes()).with_state(state))
}

fn public_routes() -> Router<AppState> {
    Router::new()
        .route("/v1/products", get(list_products).post(create_product))
        .route("/v1/products/{id}", get(get_product))
        .route("/v1/reservations", post(reserve))
        .route("/v1/reservations/{id}", get(get_reservation))
        .route("/v1/reservations/{id}/commit", post(commit))
        .route("/v1/reservations/{id}/release", post(release))
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
    static HELD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if change.needs_no_setup() {
        return Ok(Json(serde_json::json!({})));
    }
    let reserve = |order: String, product_id: i64, quantity: i64| {
        let s = s.clone();
        async move {
            let key = IdempotencyKey::parse(&format!("{order}:state")).map_err(ApiError::from)?;
            let order = OrderRef::parse(&Value::String(order)).map_err(field_error)?;
            let request =
                ReservationRequest::parse(order, &[(Some(product_id), Some(quantity))]).map_err(field_error)?;
            match s.inner.store.reserve(key, request).await.map_err(store_error)? {
                Reserved::New(r) | Reserved::Existing(r) => Ok::<_, ApiError>(r),
            }
        }
    };
    match change.state.as_str() {
        "products 1 to 100 exist" | "no product 999999 exists" => Ok(Json(serde_json::json!({}))),
        "product 42 has 0 stock" => {
            let available = s.inner.store.product(42).await?.map(|p| p.stock).unwrap_or(0);
            if available > 0 {
                reserve(format!("pact-drain-{available}"), 42, available).await?;
            }
            Ok(Json(serde_json::json!({ "product_id": 42 })))
        }
        "a reservation is held" => {
            let n = HELD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let r = reserve(format!("pact-held-{n}"), 1, 1).await?;
            Ok(Json(serde_json::json!({ "reservation_id": r.id })))
        }
        other => Err(ApiError::bad_request(format!("catalog knows no provider state {other:?}"))),
    }
}

impl AdminToken for AppState {
    fn admin_token(&self) -> &str {
        &self.inner.admin_token
    }
}

#[derive(Debug, Deserialize)]
struct PageParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A page of products.
#[derive(Debug, Serialize)]
struct ProductPage {
    items: Vec<Product>,
    total: i64,
    limit: i64,
    offset: i64,
}

async fn list_products(
    State(s): State<AppState>,
    Query(page): Query<PageParams>,
) -> Result<Json<ProductPage>, ApiError> {
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT);
    if !PAGE_LIMIT.contains(&limit) {
        let detail = format!("must be {} to {}, got {limit}", PAGE_LIMIT.start(), PAGE_LIMIT.end());
        return Err(ApiError::invalid_field("limit", detail));
    }
    let offset = page.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid_field("offset", format!("must not be negative, got {offset}")));
    }
    let found = s.inner.store.list(limit, offset).await?;
    Ok(Json(ProductPage { items: found.items, total: found.total, limit, offset }))
}

async fn get_product(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Product>, ApiError> {
    let id = positive_id(id)?;
    let product = s.inner.store.product(id).await?;
    product.map(Json).ok_or_else(|| ApiError::not_found(format!("no product with id {id}")).with("product_id", id))
}

#[derive(Debug, Deserialize)]
struct CreateProductBody {
    sku: Option<String>,
    name: Option<String>,
    price_minor: Option<i64>,
    currency: Option<String>,
    stock: Option<i64>,
}

impl CreateProductBody {
    fn parse(self) -> Result<NewProduct, FieldError> {
        NewProduct::parse(
            &self.sku.ok_or_else(|| FieldError::missing("sku"))?,
            &self.name.ok_or_else(|| FieldError::missing("name"))?,
            self.price_minor.ok_or_else(|| FieldError::missing("price_minor"))?,
            &self.currency.ok_or_else(|| FieldError::missing("currency"))?,
            self.stock.ok_or_else(|| FieldError::missing("stock"))?,
        )
    }
}

async fn create_product(
    _: Admin,
    State(s): State<AppState>,
    Json(body): Json<CreateProductBody>,
) -> Result<Response, ApiError> {
    let new = body.parse().map_err(field_error)?;
    let product = s.inner.store.create_product(new).await.map_err(store_error)?;
    Ok(created(&format!("/v1/products/{}", product.id), product))
}

#[derive(Debug, Deserialize)]
struct ReserveBody {
    order_id: Option<Value>,
    items: Option<Vec<ItemBody>>,
}

#[derive(Debug, Deserialize)]
struct ItemBody {
    product_id: Option<i64>,
    quantity: Option<i64>,
}

impl ReserveBody {
    fn parse(self) -> Result<ReservationRequest, FieldError> {
        let order_id = OrderRef::parse(self.order_id.as_ref().ok_or_else(|| FieldError::missing("order_id"))?)?;
        let items = self.items.ok_or_else(|| FieldError::missing("items"))?;
        let lines: Vec<_> = items.iter().map(|i| (i.product_id, i.quantity)).collect();
        ReservationRequest::parse(order_id, &lines)
    }
}

async fn reserve(
    key: IdempotencyKey,
    State(s): State<AppState>,
    Json(body): Json<ReserveBody>,
) -> Result<Response, ApiError> {
    let request = body.parse().map_err(field_error)?;
    match s.inner.store.reserve(key, request).await.map_err(store_error)? {
        Reserved::New(r) => Ok(created(&format!("/v1/reservations/{}", r.id), r)),
        Reserved::Existing(r) => Ok(Json(r).into_response()),
    }
}

async fn get_reservation(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Reservation>, ApiError> {
    let id = positive_id(id)?;
    let found = s.inner.store.reservation(id).await?;
    found.map(Json).ok_or_else(|| store_error(StoreError::UnknownReservation(id)))
}

async fn commit(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Reservation>, ApiError> {
    let id = positive_id(id)?;
    s.inner.store.commit(id).await.map(Json).map_err(store_error)
}

async fn release(State(s): State<AppState>, Path(id): Path<i64>) -> Result<Json<Reservation>, ApiError> {
    let id = positive_id(id)?;
    s.inner.store.release(id).await.map(Json).map_err(store_error)
}

/// What the data-integrity checkers read.
#[derive(Debug, Serialize)]
struct AdminState {
    products: Vec<StockLevel>,
    reservations: Vec<Reservation>,
}

async fn admin_state(_: Admin, State(s): State<AppState>) -> Result<Json<AdminState>, ApiError> {
    let (products, reservations) = s.inner.store.state().await?;
    Ok(Json(AdminState { products, reservations }))
}

fn created(location: &str, body: impl Serialize) -> Response {
    let mut res = (StatusCode::CREATED, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
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
        StoreError::UnknownProduct(id) => ApiError::not_found(detail).with("product_id", id),
        StoreError::OutOfStock { product_id, requested, available } => ApiError::new(ProblemKind::OutOfStock, detail)
            .with("product_id", product_id)
            .with("requested", requested)
            .with("available", available),
        StoreError::MixedCurrencies(..) => ApiError::invalid_field("items", detail),
        StoreError::TotalTooLarge => ApiError::invalid_field("items", detail),
        StoreError::KeyReused(id) => {
            ApiError::conflict(detail).with("field", IdempotencyKey::HEADER).with("reservation_id", id)
        }
        StoreError::UnknownReservation(_) => ApiError::not_found(detail),
        StoreError::WrongState { status, .. } => ApiError::conflict(detail).with("status", status),
        StoreError::DuplicateSku(_) => ApiError::conflict(detail).with("field", "sku"),
        StoreError::Db(e) => e.into(),
    }
}
