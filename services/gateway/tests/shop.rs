//! The five services together on real sockets: orders placed through the gateway leave
//! stock, ledger and orders in agreement.

mod common;

use std::collections::BTreeMap;

use common::Shop;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_through_the_gateway_keep_stock_ledger_and_orders_in_agreement() {
    let shop = Shop::start(&[
        ("SHOP_CATALOG_SEED_PRODUCTS", "5".into()),
        ("SHOP_CATALOG_SEED_STOCK", "20".into()),
        // Orders over 50.00 are declined: some sagas must compensate.
        ("SHOP_PAYMENTS_DECLINE_OVER", "5000".into()),
    ])
    .await;
    let (_, token) = shop.user("buyer@example.com").await;
    let (_, other_token) = shop.user("other@example.com").await;

    // Concurrent orders: some succeed, some run out of stock, some are declined.
    let mut tasks = Vec::new();
    for i in 0..40u32 {
        let http = shop.http.clone();
        let url = shop.api("/orders");
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            let product = i % 5 + 1;
            let quantity = if i % 7 == 0 { 30 } else { 1 + i % 3 };
            let res = http
                .post(url)
                .bearer_auth(token)
                .header("idempotency-key", format!("order-{i}"))
                .json(&json!({"items": [{"product_id": product, "quantity": quantity}]}))
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }));
    }
    let mut placed = Vec::new();
    for t in tasks {
        let (status, order) = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status}: {order}");
        placed.push(order);
    }
    let paid = placed.iter().filter(|o| o["status"] == "PAID").count();
    let cancelled = placed.iter().filter(|o| o["status"] == "CANCELLED").count();
    assert_eq!(paid + cancelled, placed.len(), "every order is terminal");
    assert!(paid > 0 && cancelled > 0, "paid {paid}, cancelled {cancelled}");

    // The client's idempotency key returns the same order.
    let again: Value = shop
        .http
        .post(shop.api("/orders"))
        .bearer_auth(&token)
        .header("idempotency-key", "order-1")
        .json(&json!({"items": [{"product_id": 2, "quantity": 2}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["id"], placed[1]["id"]);
    // A key that breaks the kit's rule is refused at the edge, naming the header.
    let bad = shop
        .http
        .post(shop.api("/orders"))
        .bearer_auth(&token)
        .header("idempotency-key", "has space")
        .json(&json!({"items": [{"product_id": 2, "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "Idempotency-Key");

    // Orders belong to their user.
    let mine: Value =
        shop.http.get(shop.api("/orders")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    assert_eq!(mine["items"].as_array().unwrap().len(), placed.len());
    let id = placed[0]["id"].as_str().unwrap();
    let res = shop.http.get(shop.api(&format!("/orders/{id}"))).bearer_auth(&other_token).send().await.unwrap();
    assert_eq!(res.status(), 404, "another user's order is not found");

    // Stock: initial = available + reserved + sold; sold matches the PAID orders.
    let catalog = shop.admin_state(&shop.catalog).await;
    let mut sold_by_orders: BTreeMap<i64, i64> = BTreeMap::new();
    for o in placed.iter().filter(|o| o["status"] == "PAID") {
        for item in o["items"].as_array().unwrap() {
            *sold_by_orders.entry(item["product_id"].as_i64().unwrap()).or_default() +=
                item["quantity"].as_i64().unwrap();
        }
    }
    for p in catalog["products"].as_array().unwrap() {
        let (initial, available, reserved, sold) = (
            p["initial_stock"].as_i64().unwrap(),
            p["available"].as_i64().unwrap(),
            p["reserved"].as_i64().unwrap(),
            p["sold"].as_i64().unwrap(),
        );
        assert_eq!(initial, available + reserved + sold, "{p}");
        assert!(available >= 0);
        assert_eq!(reserved, 0, "no reservation is left held: {p}");
        assert_eq!(sold, sold_by_orders.get(&p["id"].as_i64().unwrap()).copied().unwrap_or(0), "{p}");
    }

    // Money: net captured = sum of PAID totals; one charge per paid order.
    let payments = shop.admin_state(&shop.payments).await;
    let paid_total: i64 =
        placed.iter().filter(|o| o["status"] == "PAID").map(|o| o["total_minor"].as_i64().unwrap()).sum();
    assert_eq!(payments["summary"]["net_minor"].as_i64().unwrap(), paid_total, "{}", payments["summary"]);
    let ledger: Value =
        shop.http.get(format!("{}/v1/ledger/summary", shop.payments.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(ledger["net_minor"], payments["summary"]["net_minor"]);
    for o in placed.iter().filter(|o| o["status"] == "PAID") {
        let captured = payments["charges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["order_id"] == o["id"] && c["status"] == "captured")
            .count();
        assert_eq!(captured, 1, "exactly one captured charge for order {}", o["id"]);
    }

    // Orders: the orders service agrees with what the clients saw.
    let orders = shop.admin_state(&shop.orders).await;
    let by_id: BTreeMap<&str, &Value> =
        orders["orders"].as_array().unwrap().iter().map(|o| (o["id"].as_str().unwrap(), o)).collect();
    for o in &placed {
        assert_eq!(by_id[o["id"].as_str().unwrap()]["status"], o["status"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_degrade_to_stale_when_the_catalog_is_down() {
    let shop = Shop::start(&[("SHOP_CATALOG_SEED_PRODUCTS", "5".into())]).await;
    let fresh = shop.http.get(shop.api("/products?limit=2")).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(fresh.headers().get("x-gauntlet-stale").is_none());
    let fresh: Value = fresh.json().await.unwrap();

    // Stop the catalog: the listing is served from the last good answer, marked stale.
    let Shop { gateway, catalog, http, .. } = shop;
    let addr = catalog.addr;
    catalog.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let stale = http.get(format!("{}/api/v1/products?limit=2", gateway.url())).send().await.unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["x-gauntlet-stale"], "true");
    assert_eq!(stale.json::<Value>().await.unwrap(), fresh);
    // A read never made before has nothing to fall back on: 503, as problem+json.
    let miss = http.get(format!("{}/api/v1/products/4", gateway.url())).send().await.unwrap();
    assert_eq!(miss.status(), 503);
    assert_eq!(miss.headers()["content-type"], "application/problem+json");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_rate_limits_are_enforced_at_the_edge() {
    let shop = Shop::start(&[("SHOP_GATEWAY_RATE", "5".into()), ("SHOP_GATEWAY_BURST", "5".into())]).await;
    let res = shop.http.post(shop.api("/orders")).json(&json!({"items": []})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = shop.http.get(shop.api("/orders")).bearer_auth("not-a-jwt").send().await.unwrap();
    assert_eq!(res.status(), 401);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["type"], "https://gauntlet.dev/problems/unauthorized");

    let mut limited = None;
    for _ in 0..20 {
        let res = shop.http.get(shop.api("/products")).send().await.unwrap();
        if res.status() == 429 {
            limited = Some(res);
            break;
        }
    }
    let res = limited.expect("a client over its rate gets 429");
    assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}
