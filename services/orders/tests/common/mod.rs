//! Fakes of the catalog and payments services that keep the `services/README.md`
//! contract, with switches to make them fail, plus helpers to run orders against them
//! and to check that what the three services hold agrees.
//!
//! The fakes let every saga branch be driven deterministically, whatever state the
//! real catalog and payments crates are in.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use shop_kit::config::{Env, ServiceConfig};

/// Charges above this are declined by [`Backends`], so some sagas compensate.
pub const DECLINE_OVER: i64 = 5_000;
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{ApiError, Json, Path, ProblemKind};
use tokio::net::TcpListener;

/// How a fake answers the calls that change state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// As the contract says.
    Normal,
    /// 503 without doing anything.
    Unavailable,
    /// Never answers (within a minute) and does nothing.
    Hang,
    /// Does the work, then waits this long before answering.
    SlowAfterWork(Duration),
    /// Waits this long, then does the work and answers.
    SlowBeforeWork(Duration),
}

struct Switches {
    mode: Mode,
    /// Answer 503 to this many more state-changing calls, then behave per `mode`.
    fail_next: u32,
}

impl Switches {
    fn new() -> Self {
        Self { mode: Mode::Normal, fail_next: 0 }
    }
}

/// Applies the switches before a state-changing call; `Some` is the answer to send instead.
async fn gate(switches: &Mutex<Switches>) -> Option<Response> {
    let mode = {
        let mut s = switches.lock().unwrap();
        if s.fail_next > 0 {
            s.fail_next -= 1;
            return Some(unavailable());
        }
        s.mode
    };
    match mode {
        Mode::Normal | Mode::SlowAfterWork(_) => None,
        Mode::Unavailable => Some(unavailable()),
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Some(unavailable())
        }
        Mode::SlowBeforeWork(d) => {
            tokio::time::sleep(d).await;
            None
        }
    }
}

async fn after_work(switches: &Mutex<Switches>) {
    let mode = switches.lock().unwrap().mode;
    if let Mode::SlowAfterWork(d) = mode {
        tokio::time::sleep(d).await;
    }
}

fn unavailable() -> Response {
    ApiError::new(ProblemKind::UpstreamUnavailable, "switched off by the test").into_response()
}

fn key_of(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| ApiError::invalid_field("Idempotency-Key", "required"))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

// ---------------------------------------------------------------------------------------
// catalog

/// A product's stock in the fake catalog.
#[derive(Clone, Debug)]
pub struct Stock {
    pub price_minor: i64,
    pub initial: i64,
    pub available: i64,
    pub reserved: i64,
    pub sold: i64,
}

/// A reservation in the fake catalog.
#[derive(Clone, Debug)]
pub struct FakeReservation {
    pub id: String,
    pub order_id: String,
    pub status: String,
    pub items: Vec<(u64, i64, i64)>,
    pub total_minor: i64,
}

#[derive(Default)]
struct CatalogData {
    products: BTreeMap<u64, Stock>,
    reservations: BTreeMap<String, FakeReservation>,
    keys: HashMap<String, (Value, String)>,
    next_id: u64,
}

/// The fake catalog: products 1..=n priced as the real seed prices them.
#[derive(Clone)]
pub struct FakeCatalog {
    data: Arc<Mutex<CatalogData>>,
    switches: Arc<Mutex<Switches>>,
    pub calls: Arc<AtomicU32>,
    pub url: String,
}

#[derive(Deserialize)]
struct ReserveBody {
    order_id: String,
    items: Vec<ReserveItem>,
}

#[derive(Deserialize)]
struct ReserveItem {
    product_id: u64,
    quantity: i64,
}

impl FakeCatalog {
    /// Starts a fake catalog with `products` products of `stock` units each.
    pub async fn start(products: u64, stock: i64) -> Self {
        let mut data = CatalogData::default();
        for id in 1..=products {
            let price_minor = ((id as i64 * 137) % 9000) + 100;
            data.products.insert(id, Stock { price_minor, initial: stock, available: stock, reserved: 0, sold: 0 });
        }
        let mut this = Self {
            data: Arc::new(Mutex::new(data)),
            switches: Arc::new(Mutex::new(Switches::new())),
            calls: Arc::new(AtomicU32::new(0)),
            url: String::new(),
        };
        let router = Router::new()
            .route("/v1/reservations", post(reserve))
            .route("/v1/reservations/{id}", get(get_reservation))
            .route("/v1/reservations/{id}/commit", post(commit))
            .route("/v1/reservations/{id}/release", post(release))
            .with_state(this.clone());
        this.url = format!("http://{}", serve(router).await);
        this
    }

    pub fn set_mode(&self, mode: Mode) {
        self.switches.lock().unwrap().mode = mode;
    }

    pub fn fail_next(&self, n: u32) {
        self.switches.lock().unwrap().fail_next = n;
    }

    pub fn price(&self, product_id: u64) -> i64 {
        self.data.lock().unwrap().products[&product_id].price_minor
    }

    pub fn stock(&self, product_id: u64) -> Stock {
        self.data.lock().unwrap().products[&product_id].clone()
    }

    pub fn reservations(&self) -> Vec<FakeReservation> {
        self.data.lock().unwrap().reservations.values().cloned().collect()
    }
}

async fn reserve(State(c): State<FakeCatalog>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    c.calls.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = gate(&c.switches).await {
        return r;
    }
    let key = match key_of(&headers) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let req: ReserveBody = match serde_json::from_value(body.clone()) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(),
    };
    let answer = {
        let mut d = c.data.lock().unwrap();
        if let Some((seen, id)) = d.keys.get(&key) {
            if *seen != body {
                return ApiError::conflict("key reused with another body").into_response();
            }
            (StatusCode::OK, reservation_json(&d.reservations[id]))
        } else {
            // A product may appear on several lines: what counts is its total.
            let mut demand = BTreeMap::<u64, i64>::new();
            for item in &req.items {
                *demand.entry(item.product_id).or_default() += item.quantity;
            }
            for (&product_id, &requested) in &demand {
                let Some(p) = d.products.get(&product_id) else {
                    return ApiError::not_found("no such product").with("product_id", product_id).into_response();
                };
                if p.available < requested {
                    return ApiError::new(ProblemKind::OutOfStock, "not enough stock")
                        .with("product_id", product_id)
                        .with("requested", requested)
                        .with("available", p.available)
                        .into_response();
                }
            }
            let mut lines = Vec::new();
            for item in &req.items {
                let p = d.products.get_mut(&item.product_id).unwrap();
                p.available -= item.quantity;
                p.reserved += item.quantity;
                lines.push((item.product_id, item.quantity, p.price_minor));
            }
            d.next_id += 1;
            let id = format!("res-{}", d.next_id);
            let total_minor = lines.iter().map(|(_, q, p)| q * p).sum();
            let r = FakeReservation {
                id: id.clone(),
                order_id: req.order_id,
                status: "held".into(),
                items: lines,
                total_minor,
            };
            let json = reservation_json(&r);
            d.reservations.insert(id.clone(), r);
            d.keys.insert(key, (body, id));
            (StatusCode::CREATED, json)
        }
    };
    after_work(&c.switches).await;
    (answer.0, Json(answer.1)).into_response()
}

fn reservation_json(r: &FakeReservation) -> Value {
    json!({
        "id": r.id,
        "order_id": r.order_id,
        "status": r.status,
        "items": r.items.iter().map(|(p, q, u)| json!({"product_id": p, "quantity": q, "unit_price_minor": u})).collect::<Vec<_>>(),
        "total_minor": r.total_minor,
        "currency": "EUR",
    })
}

async fn get_reservation(State(c): State<FakeCatalog>, Path(id): Path<String>) -> Response {
    match c.data.lock().unwrap().reservations.get(&id) {
        Some(r) => Json(reservation_json(r)).into_response(),
        None => ApiError::not_found("no such reservation").into_response(),
    }
}

async fn commit(State(c): State<FakeCatalog>, Path(id): Path<String>) -> Response {
    settle(&c, &id, "committed").await
}

async fn release(State(c): State<FakeCatalog>, Path(id): Path<String>) -> Response {
    settle(&c, &id, "released").await
}

async fn settle(c: &FakeCatalog, id: &str, to: &str) -> Response {
    c.calls.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = gate(&c.switches).await {
        return r;
    }
    let json = {
        let mut d = c.data.lock().unwrap();
        let Some(r) = d.reservations.get(id).cloned() else {
            return ApiError::not_found("no such reservation").into_response();
        };
        if r.status != "held" && r.status != to {
            return ApiError::conflict(format!("reservation is {}", r.status)).into_response();
        }
        if r.status == "held" {
            for (pid, q, _) in &r.items {
                let p = d.products.get_mut(pid).unwrap();
                p.reserved -= q;
                if to == "committed" {
                    p.sold += q;
                } else {
                    p.available += q;
                }
            }
            d.reservations.get_mut(id).unwrap().status = to.to_string();
        }
        reservation_json(&d.reservations[id])
    };
    after_work(&c.switches).await;
    Json(json).into_response()
}

// ---------------------------------------------------------------------------------------
// payments

/// A charge in the fake payments.
#[derive(Clone, Debug)]
pub struct FakeCharge {
    pub id: String,
    pub order_id: String,
    pub amount_minor: i64,
    pub status: String,
    pub refunded_minor: i64,
}

#[derive(Default)]
struct PaymentsData {
    charges: BTreeMap<String, FakeCharge>,
    keys: HashMap<String, (Value, String)>,
    next_id: u64,
    decline_over: Option<i64>,
}

/// The fake payments service.
#[derive(Clone)]
pub struct FakePayments {
    data: Arc<Mutex<PaymentsData>>,
    switches: Arc<Mutex<Switches>>,
    pub calls: Arc<AtomicU32>,
    pub url: String,
}

#[derive(Deserialize)]
struct ChargeBody {
    order_id: String,
    amount_minor: i64,
}

#[derive(Deserialize)]
struct ByOrder {
    order_id: Option<String>,
}

impl FakePayments {
    /// Starts a fake payments service.
    pub async fn start() -> Self {
        let mut this = Self {
            data: Arc::new(Mutex::new(PaymentsData::default())),
            switches: Arc::new(Mutex::new(Switches::new())),
            calls: Arc::new(AtomicU32::new(0)),
            url: String::new(),
        };
        let router = Router::new()
            .route("/v1/charges", post(charge).get(list_charges))
            .route("/v1/charges/{id}/refund", post(refund))
            .with_state(this.clone());
        this.url = format!("http://{}", serve(router).await);
        this
    }

    pub fn set_mode(&self, mode: Mode) {
        self.switches.lock().unwrap().mode = mode;
    }

    pub fn fail_next(&self, n: u32) {
        self.switches.lock().unwrap().fail_next = n;
    }

    /// Declines charges of more than `minor`.
    pub fn decline_over(&self, minor: i64) {
        self.data.lock().unwrap().decline_over = Some(minor);
    }

    pub fn charges(&self) -> Vec<FakeCharge> {
        self.data.lock().unwrap().charges.values().cloned().collect()
    }
}

fn charge_json(c: &FakeCharge) -> Value {
    json!({
        "id": c.id, "order_id": c.order_id, "amount_minor": c.amount_minor, "currency": "EUR",
        "status": c.status, "refunded_minor": c.refunded_minor, "created_at": "2026-01-01T00:00:00Z",
    })
}

fn charge_answer(c: &FakeCharge, created: bool) -> Response {
    if c.status == "declined" {
        return ApiError::new(ProblemKind::PaymentDeclined, "declined")
            .with("reason", "amount over the test limit")
            .with("charge_id", &c.id)
            .into_response();
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(charge_json(c))).into_response()
}

async fn charge(State(p): State<FakePayments>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    p.calls.fetch_add(1, Ordering::Relaxed);
    if let Some(r) = gate(&p.switches).await {
        return r;
    }
    let key = match key_of(&headers) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let req: ChargeBody = match serde_json::from_value(body.clone()) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(e.to_string()).into_response(),
    };
    let answer = {
        let mut d = p.data.lock().unwrap();
        if let Some((seen, id)) = d.keys.get(&key) {
            if *seen != body {
                return ApiError::conflict("key reused with another body").into_response();
            }
            charge_answer(&d.charges[id], false)
        } else {
            d.next_id += 1;
            let id = format!("ch-{}", d.next_id);
            let declined = d.decline_over.is_some_and(|limit| req.amount_minor > limit);
            let c = FakeCharge {
                id: id.clone(),
                order_id: req.order_id,
                amount_minor: req.amount_minor,
                status: if declined { "declined" } else { "captured" }.into(),
                refunded_minor: 0,
            };
            let answer = charge_answer(&c, true);
            d.charges.insert(id.clone(), c);
            d.keys.insert(key, (body, id));
            answer
        }
    };
    after_work(&p.switches).await;
    answer
}

async fn list_charges(State(p): State<FakePayments>, Query(q): Query<ByOrder>) -> Response {
    let d = p.data.lock().unwrap();
    let items: Vec<Value> =
        d.charges.values().filter(|c| q.order_id.as_deref().is_none_or(|o| o == c.order_id)).map(charge_json).collect();
    Json(json!({ "items": items })).into_response()
}

async fn refund(State(p): State<FakePayments>, Path(id): Path<String>) -> Response {
    p.calls.fetch_add(1, Ordering::Relaxed);
    let mut d = p.data.lock().unwrap();
    let Some(c) = d.charges.get_mut(&id) else {
        return ApiError::not_found("no such charge").into_response();
    };
    if c.status == "declined" {
        return ApiError::conflict("a declined charge cannot be refunded").into_response();
    }
    c.status = "refunded".into();
    c.refunded_minor = c.amount_minor;
    Json(charge_json(c)).into_response()
}

// ---------------------------------------------------------------------------------------
// running orders, and checking the three services agree

/// An orders service running in-process against the fakes.
pub struct Orders {
    pub service: RunningService,
    pub url: String,
    pub dir: Arc<tempfile::TempDir>,
}

/// Starts orders in-process with its database in `dir` and the extra settings `vars`.
pub async fn start_orders(
    catalog: &str,
    payments: &str,
    dir: Arc<tempfile::TempDir>,
    vars: &[(&str, &str)],
) -> anyhow::Result<Orders> {
    let mut env = Env::from_pairs([
        ("SHOP_DEV_DEFAULTS", "1"),
        ("SHOP_PORT", "0"),
        ("SHOP_LOG", "warn"),
        ("SHOP_ORDERS_SWEEP_INTERVAL", "300ms"),
    ])
    .with("SHOP_DB", dir.path().join("orders.db").display().to_string());
    // An empty URL leaves the variable unset.
    for (var, url) in [("SHOP_UPSTREAM_CATALOG", catalog), ("SHOP_UPSTREAM_PAYMENTS", payments)] {
        if !url.is_empty() {
            env = env.with(var, url);
        }
    }
    for (k, v) in vars {
        env = env.with(k, *v);
    }
    let config = ServiceConfig::from_env(&env, "orders", 0, true)?;
    let app = shop_orders::build(config, env, Metrics::new("orders")).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let service = app.spawn(listener);
    let url = service.url();
    Ok(Orders { service, url, dir })
}

/// A reservation as the consistency check sees it (fake or real catalog).
#[derive(Clone, Debug)]
pub struct ReservationView {
    pub order_id: String,
    pub status: String,
    pub total_minor: i64,
}

/// A charge as the consistency check sees it (fake or real payments).
#[derive(Clone, Debug)]
pub struct ChargeView {
    pub order_id: String,
    pub status: String,
    pub amount_minor: i64,
    pub refunded_minor: i64,
}

/// An order as the consistency check sees it.
#[derive(Clone, Debug, Deserialize)]
pub struct OrderView {
    pub id: String,
    pub status: String,
    pub total_minor: Option<i64>,
    pub reason: Option<String>,
}

impl FakeCatalog {
    pub fn view(&self) -> Vec<ReservationView> {
        self.reservations()
            .into_iter()
            .map(|r| ReservationView { order_id: r.order_id, status: r.status, total_minor: r.total_minor })
            .collect()
    }

    /// Products whose stock does not add up, went negative, or is still held.
    pub fn stock_problems(&self) -> Vec<String> {
        let d = self.data.lock().unwrap();
        d.products
            .iter()
            .filter(|(_, p)| p.initial != p.available + p.reserved + p.sold || p.available < 0 || p.reserved != 0)
            .map(|(id, p)| format!("product {id}: {p:?}"))
            .collect()
    }

    /// Every product's stock adds up, and nothing is still held.
    pub fn assert_stock_balanced(&self) {
        let bad = self.stock_problems();
        assert!(bad.is_empty(), "stock unbalanced or still held:\n{}", bad.join("\n"));
    }
}

impl FakePayments {
    pub fn view(&self) -> Vec<ChargeView> {
        self.charges()
            .into_iter()
            .map(|c| ChargeView {
                order_id: c.order_id,
                status: c.status,
                amount_minor: c.amount_minor,
                refunded_minor: c.refunded_minor,
            })
            .collect()
    }
}

/// Checks that terminal orders, reservations and charges agree: a `PAID` order has its
/// reservation committed and exactly one captured charge of its total; a `CANCELLED`
/// order holds no stock and has no money taken. Returns a list of violations.
pub fn consistency_violations(
    orders: &[OrderView],
    reservations: &[ReservationView],
    charges: &[ChargeView],
) -> Vec<String> {
    let mut bad = Vec::new();
    for o in orders {
        let res: Vec<&ReservationView> = reservations.iter().filter(|r| r.order_id == o.id).collect();
        let chs: Vec<&ChargeView> = charges.iter().filter(|c| c.order_id == o.id).collect();
        let net: i64 = chs.iter().filter(|c| c.status != "declined").map(|c| c.amount_minor - c.refunded_minor).sum();
        match o.status.as_str() {
            "PAID" => {
                let total = o.total_minor.unwrap_or(-1);
                if res.len() != 1 || res[0].status != "committed" || res[0].total_minor != total {
                    bad.push(format!("PAID order {} has reservations {res:?}", o.id));
                }
                let captured: Vec<_> = chs.iter().filter(|c| c.status == "captured").collect();
                if captured.len() != 1 || net != total {
                    bad.push(format!("PAID order {} (total {total}) has charges {chs:?}", o.id));
                }
            }
            "CANCELLED" => {
                if res.iter().any(|r| r.status != "released") {
                    bad.push(format!("CANCELLED order {} ({:?}) holds stock: {res:?}", o.id, o.reason));
                }
                if net != 0 {
                    bad.push(format!("CANCELLED order {} ({:?}) has money taken: {chs:?}", o.id, o.reason));
                }
            }
            other => bad.push(format!("order {} is not terminal: {other}", o.id)),
        }
    }
    let known: std::collections::HashSet<&str> = orders.iter().map(|o| o.id.as_str()).collect();
    for r in reservations.iter().filter(|r| !known.contains(r.order_id.as_str())) {
        bad.push(format!("reservation of an unknown order: {r:?}"));
    }
    for c in charges.iter().filter(|c| !known.contains(c.order_id.as_str())) {
        bad.push(format!("charge of an unknown order: {c:?}"));
    }
    bad
}

/// Polls `GET {orders}/v1/orders/{id}` until the order is terminal or `within` passes.
pub async fn wait_terminal(http: &reqwest::Client, orders: &str, id: &str, within: Duration) -> Value {
    let started = Instant::now();
    loop {
        let order: Value = http.get(format!("{orders}/v1/orders/{id}")).send().await.unwrap().json().await.unwrap();
        if order["status"] != "PENDING" || started.elapsed() > within {
            return order;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// backends: fakes or the real services

/// The catalog and payments an orders service talks to: the fakes, or the real ones.
pub enum Backends {
    /// The test's fakes.
    Fakes { catalog: FakeCatalog, payments: FakePayments },
    /// The real services in-process, payments behind a proxy that delays charge answers.
    Real { catalog: RunningService, payments: RunningService, proxy: SlowProxy, _dir: tempfile::TempDir },
}

impl Backends {
    pub async fn fakes() -> Self {
        let catalog = FakeCatalog::start(20, 1_000).await;
        let payments = FakePayments::start().await;
        payments.decline_over(DECLINE_OVER);
        Self::Fakes { catalog, payments }
    }

    pub async fn real() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = |service: &str| {
            Env::from_pairs([
                ("SHOP_DEV_DEFAULTS", "1"),
                ("SHOP_LOG", "warn"),
                ("SHOP_CATALOG_SEED_PRODUCTS", "20"),
                ("SHOP_CATALOG_SEED_STOCK", "1000"),
                ("SHOP_PAYMENTS_DECLINE_OVER", "5000"),
            ])
            .with("SHOP_DB", dir.path().join(format!("{service}.db")).display().to_string())
        };
        let listener = || async { TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let (env_c, env_p) = (env("catalog"), env("payments"));
        let catalog = shop_catalog::build(
            ServiceConfig::from_env(&env_c, "catalog", 0, true).unwrap(),
            env_c,
            Metrics::new("catalog"),
        )
        .await
        .unwrap()
        .spawn(listener().await);
        let payments = shop_payments::build(
            ServiceConfig::from_env(&env_p, "payments", 0, true).unwrap(),
            env_p,
            Metrics::new("payments"),
        )
        .await
        .unwrap()
        .spawn(listener().await);
        let proxy = SlowProxy::start(payments.url()).await;
        Self::Real { catalog, payments, proxy, _dir: dir }
    }

    pub fn catalog_url(&self) -> String {
        match self {
            Self::Fakes { catalog, .. } => catalog.url.clone(),
            Self::Real { catalog, .. } => catalog.url(),
        }
    }

    pub fn payments_url(&self) -> String {
        match self {
            Self::Fakes { payments, .. } => payments.url.clone(),
            Self::Real { proxy, .. } => proxy.url.clone(),
        }
    }

    /// Makes payments take the money, then answer only after `delay`.
    pub fn slow_charges(&self, delay: Duration) {
        match self {
            Self::Fakes { payments, .. } => payments.set_mode(Mode::SlowAfterWork(delay)),
            Self::Real { proxy, .. } => proxy.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed),
        }
    }

    /// How many charges payments holds.
    pub async fn charge_count(&self) -> usize {
        match self {
            Self::Fakes { payments, .. } => payments.charges().len(),
            Self::Real { payments, .. } => admin_state(&payments.url()).await["charges"].as_array().map_or(0, Vec::len),
        }
    }

    /// The reservations and charges, and whether every product's stock balances with
    /// nothing left held.
    pub async fn views(&self) -> (Vec<ReservationView>, Vec<ChargeView>, Vec<String>) {
        match self {
            Self::Fakes { catalog, payments } => (catalog.view(), payments.view(), catalog.stock_problems()),
            Self::Real { catalog, payments, .. } => {
                let c = admin_state(&catalog.url()).await;
                let p = admin_state(&payments.url()).await;
                let reservations = c["reservations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| ReservationView {
                        order_id: id_text(&r["order_id"]),
                        status: r["status"].as_str().unwrap().into(),
                        total_minor: r["total_minor"].as_i64().unwrap(),
                    })
                    .collect();
                let charges = p["charges"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| ChargeView {
                        order_id: id_text(&c["order_id"]),
                        status: c["status"].as_str().unwrap().into(),
                        amount_minor: c["amount_minor"].as_i64().unwrap(),
                        refunded_minor: c["refunded_minor"].as_i64().unwrap(),
                    })
                    .collect();
                let stock = c["products"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| {
                        let n = |k: &str| p[k].as_i64().unwrap();
                        n("reserved") != 0 || n("initial_stock") != n("available") + n("reserved") + n("sold")
                    })
                    .map(|p| format!("product stock unbalanced or still held: {p}"))
                    .collect();
                (reservations, charges, stock)
            }
        }
    }
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn admin_state(url: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{url}/v1/admin/state"))
        .bearer_auth(shop_kit::config::DEV_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// An HTTP proxy that forwards to `target` and holds back the answer to
/// `POST /v1/charges` for `delay_ms`, after the upstream has done the work.
pub struct SlowProxy {
    pub url: String,
    pub delay_ms: Arc<AtomicU64>,
}

impl SlowProxy {
    pub async fn start(target: String) -> Self {
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (http, delay) = (reqwest::Client::new(), delay_ms.clone());
        let router = Router::new().fallback(move |req: Request| {
            let (http, delay, target) = (http.clone(), delay.clone(), target.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
                let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
                let mut out = http.request(parts.method.clone(), format!("{target}{path}")).body(body);
                for (name, value) in parts.headers.iter().filter(|(n, _)| *n != "host" && *n != "content-length") {
                    out = out.header(name, value);
                }
                let Ok(res) = out.send().await else {
                    return StatusCode::BAD_GATEWAY.into_response();
                };
                let status = res.status();
                let content_type = res.headers().get("content-type").cloned();
                let bytes = res.bytes().await.unwrap_or_default();
                if parts.method == Method::POST && path == "/v1/charges" {
                    tokio::time::sleep(Duration::from_millis(delay.load(Ordering::Relaxed))).await;
                }
                let mut answer = (status, bytes).into_response();
                if let Some(ct) = content_type {
                    answer.headers_mut().insert("content-type", ct);
                }
                answer
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { url, delay_ms }
    }
}
