//! The break switches of orders (`SHOP_TEST_BREAK`, debug builds only; see
//! `services/README.md`, "Break switches"): each makes the one anomaly it names appear in
//! the services' admin state, and the same flow on a healthy build does not. Each runs
//! against the fakes and against the real catalog and payments, whose admin state is what
//! the harness's checkers read.
//!
//! The switch is handed to each in-process orders service through its own `Env`, so
//! these tests never touch the process environment and run in parallel safely.
#![cfg(debug_assertions)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{admin_state, consistency_violations, start_orders, wait_terminal, Backends, OrderView, Orders};
use serde_json::{json, Value};

/// 1 x product 1 costs 237 minor units: paid.
const CHEAP: &[(u64, u32)] = &[(1, 1)];
/// 2 x product 20 cost 5680, over the backends' decline limit of 5000: declined.
const DECLINED: &[(u64, u32)] = &[(20, 2)];

struct Shop {
    backends: Backends,
    orders: Orders,
    http: reqwest::Client,
}

impl Shop {
    /// Orders with `vars` against the fakes (`real == false`) or the real services.
    async fn start(real: bool, vars: &[(&str, &str)]) -> Self {
        let backends = if real { Backends::real().await } else { Backends::fakes().await };
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let orders = start_orders(&backends.catalog_url(), &backends.payments_url(), dir, vars).await.unwrap();
        Self { backends, orders, http: reqwest::Client::new() }
    }

    /// Places an order and waits until it is terminal; returns the first answer's status
    /// and the terminal order.
    async fn place(&self, items: &[(u64, u32)], key: Option<&str>) -> (u16, Value) {
        let body = json!({
            "user_id": "u-7",
            "items": items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>(),
        });
        let mut req = self.http.post(format!("{}/v1/orders", self.orders.url)).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let order: Value = res.json().await.unwrap();
        let id = order["id"].as_str().unwrap_or_else(|| panic!("not an order: {order}"));
        (status, wait_terminal(&self.http, &self.orders.url, id, Duration::from_secs(20)).await)
    }

    /// The orders of the admin state.
    async fn orders(&self) -> Vec<Value> {
        admin_state(&self.orders.url).await["orders"].as_array().unwrap().clone()
    }

    /// The reservation of `order`, as the catalog holds it.
    async fn reservation_of(&self, order: &Value) -> String {
        let (reservations, _, _) = self.backends.views().await;
        let mine: Vec<_> = reservations.iter().filter(|r| r.order_id == order["id"]).collect();
        assert_eq!(mine.len(), 1, "{mine:?}");
        mine[0].status.clone()
    }

    /// The charges of `order`, as payments holds them: (status, amount, refunded).
    async fn charges_of(&self, order: &Value) -> Vec<(String, i64, i64)> {
        let (_, charges, _) = self.backends.views().await;
        charges
            .iter()
            .filter(|c| c.order_id == order["id"])
            .map(|c| (c.status.clone(), c.amount_minor, c.refunded_minor))
            .collect()
    }

    /// What a consistency check over the three services' end state finds wrong.
    async fn violations(&self) -> Vec<String> {
        let orders: Vec<OrderView> = serde_json::from_value(Value::Array(self.orders().await)).unwrap();
        let (reservations, charges, stock) = self.backends.views().await;
        let mut bad = consistency_violations(&orders, &reservations, &charges);
        bad.extend(stock);
        bad
    }
}

fn broken(switch: &str) -> [(&str, &str); 1] {
    [("SHOP_TEST_BREAK", switch)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_order_places_a_second_order_under_a_used_key() {
    for real in [false, true] {
        let healthy = Shop::start(real, &[]).await;
        let (_, first) = healthy.place(CHEAP, Some("k-dup")).await;
        let (status, again) = healthy.place(CHEAP, Some("k-dup")).await;
        assert_eq!((status, &again), (200, &first), "a healthy repeat answers the first order");
        assert_eq!(healthy.orders().await.len(), 1);
        assert!(healthy.violations().await.is_empty());

        let shop = Shop::start(real, &broken("duplicate-order")).await;
        let (s1, first) = shop.place(CHEAP, Some("k-dup")).await;
        let (s2, second) = shop.place(CHEAP, Some("k-dup")).await;
        assert_eq!((s1, s2), (201, 201), "the repeat is answered as a new order");
        assert_ne!(first["id"], second["id"]);
        let orders = shop.orders().await;
        let keyed: Vec<_> = orders.iter().map(|o| (&o["idempotency_key"], o["status"].as_str().unwrap())).collect();
        assert_eq!(keyed, [(&json!("k-dup"), "PAID"), (&json!("k-dup"), "PAID")], "one key, two orders");
        // Each order has its own saga: its own reservation and its own charge.
        for o in [&first, &second] {
            assert_eq!(shop.reservation_of(o).await, "committed");
            assert_eq!(shop.charges_of(o).await.len(), 1);
        }
        // Otherwise the shop behaves: a key reused with another body is still refused.
        let res = shop
            .http
            .post(format!("{}/v1/orders", shop.orders.url))
            .header("Idempotency-Key", "k-dup")
            .json(&json!({"user_id": "u-7", "items": [{"product_id": 2, "quantity": 1}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 409);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_paid_leaves_a_paid_order_with_its_stock_released() {
    for real in [false, true] {
        let healthy = Shop::start(real, &[]).await;
        let (_, o) = healthy.place(CHEAP, None).await;
        assert_eq!(o["status"], "PAID");
        assert_eq!(healthy.reservation_of(&o).await, "committed");
        assert!(healthy.violations().await.is_empty());

        let shop = Shop::start(real, &broken("release-paid")).await;
        let (_, o) = shop.place(CHEAP, None).await;
        assert_eq!(o["status"], "PAID", "{o}");
        assert_eq!(shop.reservation_of(&o).await, "released");
        assert_eq!(shop.charges_of(&o).await, [("captured".to_string(), 237, 0)], "the money is taken as usual");
        let bad = shop.violations().await;
        assert!(bad.iter().any(|v| v.contains("PAID order") && v.contains("released")), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_cancelled_leaves_a_cancelled_order_with_its_stock_sold() {
    for real in [false, true] {
        let healthy = Shop::start(real, &[]).await;
        let (_, o) = healthy.place(DECLINED, None).await;
        assert_eq!(o["status"], "CANCELLED");
        assert_eq!(healthy.reservation_of(&o).await, "released");
        assert!(healthy.violations().await.is_empty());

        let shop = Shop::start(real, &broken("commit-cancelled")).await;
        let (_, o) = shop.place(DECLINED, None).await;
        assert_eq!(o["status"], "CANCELLED", "{o}");
        assert!(o["reason"].as_str().unwrap().starts_with("payment declined"), "{o}");
        assert_eq!(shop.reservation_of(&o).await, "committed");
        let bad = shop.violations().await;
        assert!(bad.iter().any(|v| v.contains("CANCELLED order") && v.contains("holds stock")), "{bad:?}");
        // Paid orders are untouched.
        let (_, paid) = shop.place(CHEAP, None).await;
        assert_eq!((paid["status"].as_str(), shop.reservation_of(&paid).await.as_str()), (Some("PAID"), "committed"));
    }
}

/// A charge that payments captured but answered only after the saga deadline: the saga
/// cancels the order and must refund it. Provoked by holding back payments' answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_refund_leaves_a_cancelled_order_with_its_money_taken() {
    let timing = [
        ("SHOP_ORDERS_SAGA_DEADLINE", "1500ms"),
        ("SHOP_ORDERS_SETTLE", "300ms"),
        ("SHOP_ORDERS_INLINE_DEADLINE", "10s"),
    ];
    for real in [false, true] {
        let healthy = Shop::start(real, &timing).await;
        healthy.backends.slow_charges(Duration::from_secs(20));
        let (_, o) = healthy.place(CHEAP, None).await;
        assert_eq!(o["status"], "CANCELLED", "{o}");
        assert_eq!(healthy.charges_of(&o).await, [("refunded".to_string(), 237, 237)]);
        assert!(healthy.violations().await.is_empty());

        let mut vars = timing.to_vec();
        vars.push(("SHOP_TEST_BREAK", "skip-refund"));
        let shop = Shop::start(real, &vars).await;
        shop.backends.slow_charges(Duration::from_secs(20));
        let (_, o) = shop.place(CHEAP, None).await;
        assert_eq!(o["status"], "CANCELLED", "{o}");
        assert!(o["reason"].as_str().unwrap().starts_with("timeout: "), "{o}");
        assert_eq!(shop.charges_of(&o).await, [("captured".to_string(), 237, 0)], "captured and never refunded");
        assert_eq!(shop.reservation_of(&o).await, "released", "stock is released as usual");
        let bad = shop.violations().await;
        assert!(bad.iter().any(|v| v.contains("CANCELLED order") && v.contains("money taken")), "{bad:?}");
        assert!(!bad.iter().any(|v| v.contains("holds stock")), "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_compensation_leaves_a_cancelled_order_holding_its_stock() {
    for real in [false, true] {
        let shop = Shop::start(real, &broken("skip-compensation")).await;
        let (_, o) = shop.place(DECLINED, None).await;
        assert_eq!(o["status"], "CANCELLED", "{o}");
        assert_eq!(shop.reservation_of(&o).await, "held");
        let bad = shop.violations().await;
        assert!(bad.iter().any(|v| v.contains("holds stock")), "{bad:?}");
    }
}

#[tokio::test]
async fn an_unknown_switch_is_a_config_error_naming_the_variable() {
    let backends = Backends::fakes().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let err = start_orders(&backends.catalog_url(), &backends.payments_url(), dir, &broken("release-payd"))
        .await
        .err()
        .expect("a misspelt switch must not start a healthy service");
    let ce = err.downcast_ref::<shop_kit::ConfigError>().expect("a ConfigError, so the binary exits 2");
    assert!(ce.to_string().contains("SHOP_TEST_BREAK") && ce.to_string().contains("release-payd"), "{ce}");
}
