//! The orders API and every branch of the saga, in-process on real sockets, against fake
//! catalog and payments services.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{consistency_violations, start_orders, wait_terminal, FakeCatalog, FakePayments, Mode, OrderView, Orders};
use serde_json::{json, Value};

struct Shop {
    catalog: FakeCatalog,
    payments: FakePayments,
    orders: Orders,
    http: reqwest::Client,
}

impl Shop {
    async fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_with_stock(10, vars).await
    }

    async fn start_with_stock(stock: i64, vars: &[(&str, &str)]) -> Self {
        let catalog = FakeCatalog::start(5, stock).await;
        let payments = FakePayments::start().await;
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let orders = start_orders(&catalog.url, &payments.url, dir, vars).await.unwrap();
        Self { catalog, payments, orders, http: reqwest::Client::new() }
    }

    async fn place(&self, body: Value, key: Option<&str>) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/v1/orders", self.orders.url)).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.http.get(format!("{}{path}", self.orders.url)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Asserts every order, reservation and charge agree.
    async fn assert_consistent(&self) {
        let orders = self.admin_orders().await;
        let bad = consistency_violations(&orders, &self.catalog.view(), &self.payments.view());
        assert!(bad.is_empty(), "inconsistent shop:\n{}", bad.join("\n"));
        self.catalog.assert_stock_balanced();
    }

    async fn admin_orders(&self) -> Vec<OrderView> {
        let res = self
            .http
            .get(format!("{}/v1/admin/state", self.orders.url))
            .bearer_auth(shop_kit::config::DEV_SECRET)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        serde_json::from_value(body["orders"].clone()).unwrap()
    }
}

fn order(user: &str, items: &[(u64, u32)]) -> Value {
    json!({
        "user_id": user,
        "items": items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn happy_path_pays_commits_and_charges_once() {
    let shop = Shop::start(&[]).await;
    let (status, o) = shop.place(order("alice", &[(1, 2), (3, 1)]), None).await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "PAID", "{o}");
    let total = 2 * shop.catalog.price(1) + shop.catalog.price(3);
    assert_eq!(o["total_minor"], total);
    assert_eq!(o["currency"], "EUR");
    assert_eq!(o["user_id"], "alice");
    assert_eq!(o["items"], json!([{"product_id": 1, "quantity": 2}, {"product_id": 3, "quantity": 1}]));
    assert_eq!(o["reason"], Value::Null);
    assert_eq!(o["version"], 4, "placed, reserved, captured, paid");
    assert!(o["reservation_id"].is_string() && o["charge_id"].is_string(), "{o}");
    for field in ["created_at", "updated_at"] {
        assert!(o[field].as_str().unwrap().ends_with('Z'), "{o}");
    }

    let id = o["id"].as_str().unwrap();
    let (status, got) = shop.get(&format!("/v1/orders/{id}")).await;
    assert_eq!((status, &got), (200, &o));
    let (status, mine) = shop.get("/v1/users/alice/orders").await;
    assert_eq!(status, 200);
    assert_eq!(mine["items"], json!([o]));
    let (_, none) = shop.get("/v1/users/bob/orders").await;
    assert_eq!(none["items"], json!([]));

    assert_eq!(shop.catalog.stock(1).sold, 2);
    let charges = shop.payments.charges();
    assert_eq!(charges.len(), 1);
    assert_eq!((charges[0].amount_minor, charges[0].status.as_str()), (total, "captured"));
    shop.assert_consistent().await;
}

#[tokio::test]
async fn out_of_stock_cancels_and_charges_nothing() {
    let shop = Shop::start_with_stock(3, &[]).await;
    let (status, o) = shop.place(order("alice", &[(1, 1), (2, 4)]), None).await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "CANCELLED");
    assert_eq!(o["reason"], "out of stock: product 2 (requested 4, available 3)");
    assert!(shop.payments.charges().is_empty());
    assert_eq!(shop.payments.calls.load(std::sync::atomic::Ordering::Relaxed), 0, "payments never asked");
    assert_eq!(shop.catalog.stock(1).available, 3, "nothing held");
    shop.assert_consistent().await;
}

#[tokio::test]
async fn unknown_product_cancels() {
    let shop = Shop::start(&[]).await;
    let (status, o) = shop.place(order("alice", &[(99, 1)]), None).await;
    assert_eq!(status, 201);
    assert_eq!(o["status"], "CANCELLED");
    assert_eq!(o["reason"], "unknown product 99");
    shop.assert_consistent().await;
}

#[tokio::test]
async fn a_declined_payment_releases_the_reservation() {
    let shop = Shop::start(&[]).await;
    shop.payments.decline_over(100);
    let (status, o) = shop.place(order("alice", &[(2, 3)]), None).await;
    assert_eq!(status, 201);
    assert_eq!(o["status"], "CANCELLED", "{o}");
    assert_eq!(o["reason"], "payment declined: amount over the test limit");
    let r = shop.catalog.reservations();
    assert_eq!((r.len(), r[0].status.as_str()), (1, "released"));
    assert_eq!(shop.catalog.stock(2).available, 10);
    let c = shop.payments.charges();
    assert_eq!((c.len(), c[0].status.as_str()), (1, "declined"));
    shop.assert_consistent().await;
}

#[tokio::test]
async fn a_charge_timing_out_past_the_deadline_is_found_and_refunded() {
    let shop = Shop::start(&[
        ("SHOP_ORDERS_SAGA_DEADLINE", "1500ms"),
        ("SHOP_ORDERS_SETTLE", "300ms"),
        ("SHOP_ORDERS_INLINE_DEADLINE", "10s"),
    ])
    .await;
    // Payments takes the money, then answers far too late.
    shop.payments.set_mode(Mode::SlowAfterWork(Duration::from_secs(20)));
    let (status, o) = shop.place(order("alice", &[(1, 1)]), None).await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "CANCELLED", "{o}");
    assert!(o["reason"].as_str().unwrap().starts_with("timeout: "), "{o}");
    let c = shop.payments.charges();
    assert_eq!(c.len(), 1, "one charge for all the retries: {c:?}");
    assert_eq!((c[0].status.as_str(), c[0].refunded_minor), ("refunded", c[0].amount_minor));
    assert_eq!(shop.catalog.reservations()[0].status, "released");
    shop.assert_consistent().await;
}

#[tokio::test]
async fn a_reservation_timing_out_past_the_deadline_is_found_and_released() {
    let shop = Shop::start(&[("SHOP_ORDERS_SAGA_DEADLINE", "1s"), ("SHOP_ORDERS_INLINE_DEADLINE", "200ms")]).await;
    // The catalog reserves, then answers too late; orders cannot know it reserved.
    shop.catalog.set_mode(Mode::SlowAfterWork(Duration::from_secs(20)));
    let (status, o) = shop.place(order("alice", &[(4, 2)]), None).await;
    assert_eq!((status, o["status"].as_str()), (202, Some("PENDING")), "{o}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(shop.catalog.stock(4).reserved, 2, "the lost reservation holds stock until compensated");
    shop.catalog.set_mode(Mode::Normal);
    let o = wait_terminal(&shop.http, &shop.orders.url, o["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(o["status"], "CANCELLED", "{o}");
    assert!(o["reason"].as_str().unwrap().starts_with("timeout: "), "{o}");
    assert_eq!(shop.catalog.stock(4).available, 10, "the lost reservation was released");
    assert!(shop.payments.charges().is_empty());
    shop.assert_consistent().await;
}

#[tokio::test]
async fn transient_failures_within_the_deadline_are_retried() {
    let shop = Shop::start(&[]).await;
    shop.catalog.fail_next(2);
    shop.payments.fail_next(4);
    let (status, o) = shop.place(order("alice", &[(5, 1)]), None).await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "PAID", "{o}");
    assert_eq!(shop.payments.charges().len(), 1);
    shop.assert_consistent().await;
}

#[tokio::test]
async fn a_slow_saga_answers_202_and_finishes_in_the_background() {
    let shop = Shop::start(&[("SHOP_ORDERS_INLINE_DEADLINE", "200ms")]).await;
    shop.payments.set_mode(Mode::SlowBeforeWork(Duration::from_millis(800)));
    let (status, o) = shop.place(order("alice", &[(1, 1)]), None).await;
    assert_eq!(status, 202, "{o}");
    assert_eq!(o["status"], "PENDING");
    assert_eq!(o["reason"], Value::Null);
    let done = wait_terminal(&shop.http, &shop.orders.url, o["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(done["status"], "PAID", "{done}");
    shop.assert_consistent().await;
}

#[tokio::test]
async fn payments_down_past_the_deadline_cancels_and_releases() {
    let shop = Shop::start(&[
        ("SHOP_ORDERS_SAGA_DEADLINE", "800ms"),
        ("SHOP_ORDERS_SETTLE", "100ms"),
        ("SHOP_ORDERS_INLINE_DEADLINE", "200ms"),
    ])
    .await;
    shop.payments.set_mode(Mode::Unavailable);
    let (status, o) = shop.place(order("alice", &[(1, 1)]), None).await;
    assert_eq!(status, 202, "{o}");
    let o = wait_terminal(&shop.http, &shop.orders.url, o["id"].as_str().unwrap(), Duration::from_secs(10)).await;
    assert_eq!(o["status"], "CANCELLED", "{o}");
    assert!(o["reason"].as_str().unwrap().contains("payments"), "{o}");
    assert_eq!(shop.catalog.reservations()[0].status, "released");
    shop.assert_consistent().await;
}

#[tokio::test]
async fn the_idempotency_key_returns_the_same_order() {
    let shop = Shop::start(&[]).await;
    let body = order("alice", &[(1, 1)]);
    let (s1, first) = shop.place(body.clone(), Some("key-1")).await;
    assert_eq!(s1, 201);
    let (s2, again) = shop.place(body.clone(), Some("key-1")).await;
    assert_eq!(s2, 200);
    assert_eq!(again, first);
    let (s3, other) = shop.place(order("alice", &[(1, 2)]), Some("key-1")).await;
    assert_eq!(s3, 409, "{other}");
    assert_eq!(other["type"], "https://gauntlet.dev/problems/conflict");
    let (s4, fresh) = shop.place(body, Some("key-2")).await;
    assert_eq!(s4, 201);
    assert_ne!(fresh["id"], first["id"]);
    assert_eq!(shop.catalog.reservations().len(), 2);
    assert_eq!(shop.payments.charges().len(), 2);
    shop.assert_consistent().await;
}

#[tokio::test]
async fn concurrent_repeats_of_a_key_make_one_order() {
    let shop = Arc::new(Shop::start(&[]).await);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let shop = shop.clone();
        tasks.push(tokio::spawn(async move { shop.place(order("alice", &[(2, 1)]), Some("same")).await }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (status, o) = t.await.unwrap();
        // 202: the saga outran the inline deadline (a loaded machine); still one order.
        assert!((200..=202).contains(&status), "{status} {o}");
        ids.insert(o["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1);
    let id = ids.into_iter().next().unwrap();
    wait_terminal(&shop.http, &shop.orders.url, &id, Duration::from_secs(10)).await;
    assert_eq!(shop.catalog.reservations().len(), 1);
    assert_eq!(shop.payments.charges().len(), 1);
    shop.assert_consistent().await;
}

#[tokio::test]
async fn unknown_orders_and_routes_are_404_problems() {
    let shop = Shop::start(&[]).await;
    let res = shop.http.get(format!("{}/v1/orders/nope", shop.orders.url)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://gauntlet.dev/problems/not-found");
    let (status, _) = shop.get("/v1/nothing-here").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_bad_request_is_a_400_naming_the_field() {
    let shop = Shop::start(&[]).await;
    let many: Vec<(u64, u32)> = (1..=51).map(|p| (p, 1)).collect();
    let cases = [
        (order("", &[(1, 1)]), "user_id"),
        (order("   ", &[(1, 1)]), "user_id"),
        (order("alice", &[]), "items"),
        (order("alice", &many), "items"),
        (json!({"user_id": "a", "items": [{"product_id": 0, "quantity": 1}]}), "items[0].product_id"),
        (json!({"user_id": "a", "items": [{"product_id": -3, "quantity": 1}]}), "items[0].product_id"),
        (json!({"user_id": "a", "items": [{"product_id": 1, "quantity": 0}]}), "items[0].quantity"),
        (json!({"user_id": "a", "items": [{"product_id": 1, "quantity": 1001}]}), "items[0].quantity"),
        (
            json!({"user_id": "a", "items": [{"product_id": 1, "quantity": 1}, {"product_id": 2, "quantity": -1}]}),
            "items[1].quantity",
        ),
    ];
    for (body, field) in cases {
        let (status, p) = shop.place(body.clone(), None).await;
        assert_eq!(status, 400, "{body} -> {p}");
        assert_eq!(p["type"], "https://gauntlet.dev/problems/bad-request");
        assert_eq!(p["field"], field, "{body} -> {p}");
    }
    // Shapes the JSON extractor refuses.
    for body in [
        json!({"items": [{"product_id": 1, "quantity": 1}]}),
        json!({"user_id": "a"}),
        json!({"user_id": 7, "items": []}),
        json!({"user_id": "a", "items": [{"product_id": "one", "quantity": 1}]}),
        json!({"user_id": "a", "items": [{"product_id": 1, "quantity": 1.5}]}),
        json!([1, 2]),
    ] {
        let (status, p) = shop.place(body.clone(), None).await;
        assert_eq!(status, 400, "{body} -> {p}");
    }
    let url = format!("{}/v1/orders", shop.orders.url);
    let res = shop.http.post(&url).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let res = shop.http.post(&url).body(order("a", &[(1, 1)]).to_string()).send().await.unwrap();
    assert_eq!(res.status(), 415, "no content type");
    let res =
        shop.http.post(&url).json(&order("a", &[(1, 1)])).header("Idempotency-Key", "has space").send().await.unwrap();
    assert_eq!(res.status(), 400);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["field"], "Idempotency-Key");
    let res = shop
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(vec![b' '; 200 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(shop.catalog.reservations().is_empty(), "no bad request reached the catalog");
    assert!(shop.admin_orders().await.is_empty(), "no bad request made an order");
}

#[tokio::test]
async fn admin_state_needs_the_admin_token() {
    let shop = Shop::start(&[]).await;
    let url = format!("{}/v1/admin/state", shop.orders.url);
    assert_eq!(shop.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(shop.http.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 403);
    shop.place(order("alice", &[(1, 1)]), None).await;
    assert_eq!(shop.admin_orders().await.len(), 1);
}

/// The admin state contract (`services/README.md`): every order with all its fields, its
/// `user_id`, and the `idempotency_key` of the request that created it (`null` if none).
#[tokio::test]
async fn admin_state_shows_each_order_with_its_user_and_idempotency_key() {
    let shop = Shop::start(&[]).await;
    let (_, keyed) = shop.place(order("alice", &[(1, 1)]), Some("k-1")).await;
    let (_, repeat) = shop.place(order("alice", &[(1, 1)]), Some("k-1")).await;
    assert_eq!(repeat["id"], keyed["id"]);
    let (_, unkeyed) = shop.place(order("bob", &[(2, 1)]), None).await;
    shop.payments.decline_over(1);
    let (_, cancelled) = shop.place(order("carol", &[(3, 1)]), Some("k-3")).await;
    assert_eq!(cancelled["status"], "CANCELLED");

    let res = shop
        .http
        .get(format!("{}/v1/admin/state", shop.orders.url))
        .bearer_auth(shop_kit::config::DEV_SECRET)
        .send()
        .await
        .unwrap();
    let state: Value = res.json().await.unwrap();
    let orders = state["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3, "a repeated key made no second order: {state}");
    for (got, placed, key) in [
        (&orders[0], &keyed, json!("k-1")),
        (&orders[1], &unkeyed, Value::Null),
        (&orders[2], &cancelled, json!("k-3")),
    ] {
        let mut want = placed.clone();
        want["idempotency_key"] = key;
        assert_eq!(got, &want, "the order as GET shows it, plus its key");
    }
    let users: Vec<_> = orders.iter().map(|o| o["user_id"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice", "bob", "carol"]);
}

#[tokio::test]
async fn a_missing_upstream_is_a_config_error_naming_it() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let err = start_orders("http://127.0.0.1:9", "", dir, &[]).await.err().expect("payments is required");
    let ce = err.downcast_ref::<shop_kit::ConfigError>().expect("a ConfigError, so the binary exits 2");
    assert!(ce.to_string().contains("SHOP_UPSTREAM_PAYMENTS"), "{ce}");
}

#[tokio::test]
async fn readiness_does_not_depend_on_upstreams() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Nothing listens on these ports.
    let orders = start_orders("http://127.0.0.1:9", "http://127.0.0.1:9", dir, &[]).await.unwrap();
    let res = reqwest::get(format!("{}/ready", orders.url)).await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn orders_left_in_flight_are_resumed_at_start_up() {
    use shop_orders::events::{LineItem, OrderEvent, OrderState, Timestamp};
    use shop_orders::store::Store;

    let catalog = FakeCatalog::start(5, 10).await;
    let payments = FakePayments::start().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    // Write what a crashed process would have left: orders stopped at each stage.
    {
        let store = Store::open(&dir.path().join("orders.db"), shop_kit::db::Sync::Normal).unwrap();
        let now = Timestamp::now();
        let item = vec![LineItem { product_id: 1, quantity: 1 }];
        let placed = OrderState::placed("o-placed", "u", item.clone(), now);
        store.place(placed, None).await.unwrap();
        // This one reached the catalog: its reservation exists, under its key.
        let http = reqwest::Client::new();
        let r: Value = http
            .post(format!("{}/v1/reservations", catalog.url))
            .header("Idempotency-Key", "o-reserved:reserve")
            .json(&json!({"order_id": "o-reserved", "items": [{"product_id": 1, "quantity": 1}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = OrderState::placed("o-reserved", "u", item.clone(), now);
        store.place(s.clone(), None).await.unwrap();
        let ev = OrderEvent::StockReserved {
            reservation_id: r["id"].as_str().unwrap().into(),
            total_minor: r["total_minor"].as_i64().unwrap(),
            currency: "EUR".into(),
        };
        let s = s.apply(&ev, now).unwrap();
        store.append(&s, &ev).await.unwrap();
        // This one was being compensated after a definite refusal.
        let s = OrderState::placed("o-compensating", "u", item, now);
        store.place(s.clone(), None).await.unwrap();
        let ev = OrderEvent::CompensationStarted { reason: "out of stock: test".into(), in_doubt: false };
        store.append(&s.apply(&ev, now).unwrap(), &ev).await.unwrap();
    }
    let orders = start_orders(&catalog.url, &payments.url, dir, &[]).await.unwrap();
    let http = reqwest::Client::new();
    let mut views = Vec::new();
    for (id, want) in [("o-placed", "PAID"), ("o-reserved", "PAID"), ("o-compensating", "CANCELLED")] {
        let o = wait_terminal(&http, &orders.url, id, Duration::from_secs(10)).await;
        assert_eq!(o["status"], want, "{o}");
        views.push(serde_json::from_value::<OrderView>(o).unwrap());
    }
    let bad = consistency_violations(&views, &catalog.view(), &payments.view());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert_eq!(catalog.reservations().len(), 2, "the resumed reservation was not made twice");
}

#[tokio::test]
async fn a_commit_failing_past_the_deadline_is_retried_by_the_sweeper_not_compensated() {
    let shop = Shop::start(&[
        ("SHOP_ORDERS_INLINE_DEADLINE", "100ms"),
        ("SHOP_ORDERS_SAGA_DEADLINE", "1s"),
        ("SHOP_ORDERS_STEP_ATTEMPTS", "2"),
    ])
    .await;
    shop.payments.set_mode(Mode::SlowBeforeWork(Duration::from_millis(500)));
    let (status, o) = shop.place(order("alice", &[(1, 1)]), None).await;
    assert_eq!(status, 202, "{o}");
    // The reservation is made; the catalog goes down before the commit.
    assert_eq!(shop.catalog.reservations().len(), 1);
    shop.catalog.set_mode(Mode::Unavailable);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, o) = shop.get(&format!("/v1/orders/{}", o["id"].as_str().unwrap())).await;
    assert_eq!(o["status"], "PENDING", "captured but not committed: {o}");
    assert!(o["charge_id"].is_string(), "{o}");
    shop.catalog.set_mode(Mode::Normal);
    let o = wait_terminal(&shop.http, &shop.orders.url, o["id"].as_str().unwrap(), Duration::from_secs(15)).await;
    assert_eq!(o["status"], "PAID", "past the pivot the saga only goes forward: {o}");
    shop.assert_consistent().await;
}

#[tokio::test]
async fn a_product_on_several_lines_is_reserved_and_charged_in_total() {
    let shop = Shop::start(&[]).await;
    let (status, o) = shop.place(order("alice", &[(2, 1), (2, 3)]), None).await;
    assert_eq!(status, 201, "{o}");
    assert_eq!(o["status"], "PAID", "{o}");
    assert_eq!(o["total_minor"], 4 * shop.catalog.price(2));
    assert_eq!(shop.catalog.stock(2).sold, 4);
    shop.assert_consistent().await;
}
