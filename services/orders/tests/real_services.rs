//! The saga against the real catalog and payments services, in-process on real sockets:
//! the fakes of `api.rs` must not be the only thing orders agrees with.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{consistency_violations, start_orders, wait_terminal, Backends, OrderView};
use serde_json::{json, Value};

async fn place(http: &reqwest::Client, orders: &str, items: &[(u64, u32)]) -> (u16, Value) {
    let body = json!({
        "user_id": "real-user",
        "items": items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect::<Vec<_>>(),
    });
    let res = http.post(format!("{orders}/v1/orders")).json(&body).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_saga_branch_against_the_real_services() {
    let backends = Backends::real().await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let orders = start_orders(
        &backends.catalog_url(),
        &backends.payments_url(),
        dir,
        &[("SHOP_ORDERS_SAGA_DEADLINE", "1500ms"), ("SHOP_ORDERS_SETTLE", "300ms")],
    )
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let price = |id: i64| (id * 137) % 9000 + 100;

    let (status, paid) = place(&http, &orders.url, &[(1, 2), (3, 1)]).await;
    assert_eq!((status, paid["status"].as_str()), (201, Some("PAID")), "{paid}");
    assert_eq!(paid["total_minor"], 2 * price(1) + price(3));

    let (status, oos) = place(&http, &orders.url, &[(4, 600), (4, 600)]).await;
    assert_eq!((status, oos["status"].as_str()), (201, Some("CANCELLED")), "{oos}");
    assert_eq!(oos["reason"], "out of stock: product 4 (requested 1200, available 1000)");

    let (_, unknown) = place(&http, &orders.url, &[(999, 1)]).await;
    assert_eq!(unknown["status"], "CANCELLED", "{unknown}");
    assert_eq!(unknown["reason"], "unknown product 999");

    let (_, declined) = place(&http, &orders.url, &[(20, 2)]).await;
    assert_eq!(declined["status"], "CANCELLED", "{declined}");
    assert!(declined["reason"].as_str().unwrap().starts_with("payment declined: "), "{declined}");

    // Payments takes the money but answers after the saga deadline.
    backends.slow_charges(Duration::from_secs(20));
    let (_, late) = place(&http, &orders.url, &[(5, 1)]).await;
    let late = wait_terminal(&http, &orders.url, late["id"].as_str().unwrap(), Duration::from_secs(20)).await;
    assert_eq!(late["status"], "CANCELLED", "{late}");
    assert!(late["reason"].as_str().unwrap().starts_with("timeout: "), "{late}");
    backends.slow_charges(Duration::ZERO);

    let body: Value = http
        .get(format!("{}/v1/admin/state", orders.url))
        .bearer_auth(shop_kit::config::DEV_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let all: Vec<OrderView> = serde_json::from_value(body["orders"].clone()).unwrap();
    assert_eq!(all.len(), 5);
    let (reservations, charges, stock) = backends.views().await;
    let mut bad = consistency_violations(&all, &reservations, &charges);
    bad.extend(stock);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let refunded: Vec<_> = charges.iter().filter(|c| c.status == "refunded").collect();
    assert_eq!(refunded.len(), 1, "the late charge was found and refunded: {charges:?}");
}
