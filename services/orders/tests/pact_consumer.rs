//! Consumer contract tests of orders: its real upstream calls (`shop_orders::upstreams`,
//! read by the saga's `classify`) against the Pact mock server, one mock server per
//! interaction. Each test writes its pact into a scratch directory and fails if the
//! committed one in `contracts/pacts/` differs; `GAUNTLET_UPDATE_PACTS=1` rewrites it.

#[path = "../../pact_support.rs"]
mod pact;

use std::time::Duration;

use pact_consumer::prelude::*;
use serde_json::json;
use shop_kit::client::{ClientConfig, UpstreamClient};
use shop_orders::events::LineItem;
use shop_orders::saga::{classify, Failure, StepKind};
use shop_orders::upstreams::Upstreams;

use pact::PactFile;

const PROBLEM_JSON: &str = "^application/problem\\+json";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Orders' clients, configured as `shop_orders::build` configures them.
fn upstreams(catalog: &str, payments: &str) -> Upstreams {
    let client = |name: &str, url: &str| {
        UpstreamClient::new(name, &[url.trim_end_matches('/').to_string()], ClientConfig::default(), None)
    };
    Upstreams { catalog: client("catalog", catalog), payments: client("payments", payments) }
}

const NOWHERE: &str = "http://127.0.0.1:9";

fn reservation_body(status: &str) -> JsonPattern {
    json_pattern!({
        "id": like!(7),
        "status": status,
        "total_minor": like!(374),
        "currency": like!("EUR"),
    })
}

fn definite(err: &shop_kit::client::ClientError, step: StepKind) -> String {
    match classify(step, err) {
        Failure::Definite(reason) => reason,
        Failure::Transient(reason) => panic!("orders would retry {err}: {reason}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_to_catalog() {
    let pact = PactFile::new("orders", "catalog");

    let server = pact
        .interaction("reserve stock for an order", |i| {
            i.given("products 1 to 100 exist");
            i.request
                .post()
                .path("/v1/reservations")
                .header("Idempotency-Key", term!("^.+:reserve$", "pact-ord-1:reserve"))
                .header("Content-Type", "application/json")
                .json_body(json_pattern!({
                    "order_id": "pact-ord-1",
                    "items": [{"product_id": 1, "quantity": 2}],
                }));
            i.response.status(201).header("Content-Type", "application/json").json_body(reservation_body("held"));
        })
        .await;
    let up = upstreams(server.url().as_str(), NOWHERE);
    let r = up.reserve("pact-ord-1", &[LineItem { product_id: 1, quantity: 2 }], TIMEOUT).await.unwrap();
    assert_eq!((r.id.as_str(), r.status.as_str()), ("7", "held"));
    drop(server);

    let server = pact
        .interaction("reserve a product that is out of stock", |i| {
            i.given("product 42 has 0 stock");
            i.request
                .post()
                .path("/v1/reservations")
                .header("Idempotency-Key", term!("^.+:reserve$", "pact-ord-2:reserve"))
                .header("Content-Type", "application/json")
                .json_body(json_pattern!({
                    "order_id": "pact-ord-2",
                    "items": [{"product_id": 42, "quantity": 1}],
                }));
            i.response.status(409).header("Content-Type", term!(PROBLEM_JSON, "application/problem+json")).json_body(
                json_pattern!({
                    "type": "https://gauntlet.dev/problems/out-of-stock",
                    "title": like!("Out of stock"),
                    "status": 409,
                    "product_id": 42,
                    "requested": like!(1),
                    "available": like!(0),
                }),
            );
        })
        .await;
    let up = upstreams(server.url().as_str(), NOWHERE);
    let err = up.reserve("pact-ord-2", &[LineItem { product_id: 42, quantity: 1 }], TIMEOUT).await.unwrap_err();
    assert_eq!(definite(&err, StepKind::Reserve), "out of stock: product 42 (requested 1, available 0)");
    drop(server);

    let server = pact
        .interaction("reserve a product that does not exist", |i| {
            i.given("no product 999999 exists");
            i.request
                .post()
                .path("/v1/reservations")
                .header("Idempotency-Key", term!("^.+:reserve$", "pact-ord-3:reserve"))
                .header("Content-Type", "application/json")
                .json_body(json_pattern!({
                    "order_id": "pact-ord-3",
                    "items": [{"product_id": 999999, "quantity": 1}],
                }));
            i.response.status(404).header("Content-Type", term!(PROBLEM_JSON, "application/problem+json")).json_body(
                json_pattern!({
                    "type": "https://gauntlet.dev/problems/not-found",
                    "title": like!("Not found"),
                    "status": 404,
                    "product_id": 999999,
                }),
            );
        })
        .await;
    let up = upstreams(server.url().as_str(), NOWHERE);
    let err = up.reserve("pact-ord-3", &[LineItem { product_id: 999999, quantity: 1 }], TIMEOUT).await.unwrap_err();
    assert_eq!(definite(&err, StepKind::Reserve), "unknown product 999999");
    drop(server);

    for (verb, status) in [("commit", "committed"), ("release", "released")] {
        let server = pact
            .interaction(&format!("{verb} a held reservation"), |i| {
                i.given("a reservation is held");
                i.request.post().path_from_provider_state(
                    format!("/v1/reservations/${{reservation_id}}/{verb}"),
                    term!(format!("^/v1/reservations/[0-9]+/{verb}$"), format!("/v1/reservations/7/{verb}")),
                );
                i.response.status(200).header("Content-Type", "application/json").json_body(reservation_body(status));
            })
            .await;
        let up = upstreams(server.url().as_str(), NOWHERE);
        let r = match verb {
            "commit" => up.commit("pact-ord-1", "7").await.unwrap(),
            _ => up.release("pact-ord-1", "7").await.unwrap(),
        };
        assert_eq!(r.status, status);
        drop(server);
    }

    pact.check_committed();
}

fn charge_body(status: &str, amount: i64) -> JsonPattern {
    json_pattern!({"id": like!(3), "status": status, "amount_minor": like!(amount)})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_to_payments() {
    let pact = PactFile::new("orders", "payments");

    let server = pact
        .interaction("charge an order", |i| {
            i.request
                .post()
                .path("/v1/charges")
                .header("Idempotency-Key", term!("^.+:charge$", "pact-ord-1:charge"))
                .header("Content-Type", "application/json")
                .json_body(json!({"order_id": "pact-ord-1", "amount_minor": 1000, "currency": "EUR"}));
            i.response.status(201).header("Content-Type", "application/json").json_body(charge_body("captured", 1000));
        })
        .await;
    let up = upstreams(NOWHERE, server.url().as_str());
    let c = up.charge("pact-ord-1", 1000, "EUR", TIMEOUT).await.unwrap();
    assert_eq!((c.id.as_str(), c.status.as_str()), ("3", "captured"));
    drop(server);

    let server = pact
        .interaction("charge an order over the decline limit", |i| {
            i.given("payments decline amounts over 5000");
            i.request
                .post()
                .path("/v1/charges")
                .header("Idempotency-Key", term!("^.+:charge$", "pact-ord-4:charge"))
                .header("Content-Type", "application/json")
                .json_body(json!({"order_id": "pact-ord-4", "amount_minor": 9000, "currency": "EUR"}));
            i.response.status(402).header("Content-Type", term!(PROBLEM_JSON, "application/problem+json")).json_body(
                json_pattern!({
                    "type": "https://gauntlet.dev/problems/payment-declined",
                    "title": like!("Payment declined"),
                    "status": 402,
                    "reason": like!("amount over the limit"),
                }),
            );
        })
        .await;
    let up = upstreams(NOWHERE, server.url().as_str());
    let err = up.charge("pact-ord-4", 9000, "EUR", TIMEOUT).await.unwrap_err();
    assert_eq!(definite(&err, StepKind::Charge), "payment declined: amount over the limit");
    drop(server);

    let server = pact
        .interaction("list the charges of an order", |i| {
            i.given("a captured charge exists for order pact-ord-charged");
            i.request.get().path("/v1/charges").query_param("order_id", "pact-ord-charged");
            i.response
                .status(200)
                .header("Content-Type", "application/json")
                .json_body(json_pattern!({"items": each_like!(charge_body("captured", 1000))}));
        })
        .await;
    let up = upstreams(NOWHERE, server.url().as_str());
    let charges = up.charges_of("pact-ord-charged").await.unwrap();
    assert_eq!(charges.len(), 1);
    drop(server);

    let server = pact
        .interaction("refund a captured charge", |i| {
            i.given("a captured charge exists for order pact-ord-charged");
            i.request.post().path_from_provider_state(
                "/v1/charges/${charge_id}/refund",
                term!("^/v1/charges/[0-9]+/refund$", "/v1/charges/3/refund"),
            );
            i.response.status(200).header("Content-Type", "application/json").json_body(charge_body("refunded", 1000));
        })
        .await;
    let up = upstreams(NOWHERE, server.url().as_str());
    let c = up.refund("pact-ord-charged", "3").await.unwrap();
    assert_eq!(c.status, "refunded");
    drop(server);

    pact.check_committed();
}
