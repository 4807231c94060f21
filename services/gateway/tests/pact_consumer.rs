//! Consumer contract tests of the gateway: its real routes, served by its real router,
//! with the Pact mock server as the upstream under test. One mock server per
//! interaction; each test writes its pact into a scratch directory and fails if the
//! committed one in `contracts/pacts/` differs (`GAUNTLET_UPDATE_PACTS=1` rewrites it).

#[path = "../../pact_support.rs"]
mod pact;

use std::time::Duration;

use pact_consumer::prelude::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shop_kit::auth::JwtKeys;
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{Env, ServiceConfig};

use pact::PactFile;

const PROBLEM_JSON: &str = "^application/problem\\+json";
const NOWHERE: &str = "http://127.0.0.1:9";
const SECRET: &str = "pact-consumer-test-secret";
const PASSWORD: &str = "correct horse battery";

/// The gateway, built as `shop-gateway` builds it, with `upstream` served by `url`.
async fn gateway(upstream: &str, url: &str) -> RunningService {
    let mut env = Env::from_pairs([("SHOP_DEV_DEFAULTS", "1"), ("SHOP_LOG", "warn"), ("SHOP_JWT_SECRET", SECRET)]);
    for name in ["users", "catalog", "orders"] {
        let target = if name == upstream { url } else { NOWHERE };
        env = env.with(&format!("SHOP_UPSTREAM_{}", name.to_uppercase()), target.trim_end_matches('/'));
    }
    let config = ServiceConfig::from_env(&env, "gateway", 0, false).unwrap();
    let app = shop_gateway::build(config, env, Metrics::new("gateway")).await.unwrap();
    app.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
}

fn token(sub: &str) -> String {
    JwtKeys::hs256(SECRET).issue(sub, "ada@example.com", Duration::from_secs(600))
}

fn problem(slug: &str) -> JsonPattern {
    json_pattern!({"type": format!("https://gauntlet.dev/problems/{slug}"), "title": like!("Not found")})
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_to_users() {
    let pact = PactFile::new("gateway", "users");
    let http = reqwest::Client::new();

    let server = pact
        .interaction("register a new user", |i| {
            i.given("no user has the email new@example.com");
            i.request
                .post()
                .path("/v1/users")
                .header("Content-Type", "application/json")
                .json_body(json!({"email": "new@example.com", "name": "New User", "password": PASSWORD}));
            i.response
                .status(201)
                .header("Location", term!("^/v1/users/[0-9]+$", "/v1/users/2"))
                .header("Content-Type", "application/json")
                .json_body(json_pattern!({
                    "id": like!(2),
                    "email": "new@example.com",
                    "name": "New User",
                    "created_at": like!("2026-01-01T00:00:00Z"),
                }));
        })
        .await;
    let gw = gateway("users", server.url().as_str()).await;
    let body = json!({"email": "new@example.com", "name": "New User", "password": PASSWORD});
    let res = http.post(format!("{}/api/v1/users", gw.url())).json(&body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(res.headers()["location"], "/v1/users/2");
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("register an email that is taken", |i| {
            i.given("a user ada@example.com exists");
            i.request
                .post()
                .path("/v1/users")
                .header("Content-Type", "application/json")
                .json_body(json!({"email": "ada@example.com", "name": "Ada Again", "password": PASSWORD}));
            i.response
                .status(409)
                .header("Content-Type", term!(PROBLEM_JSON, "application/problem+json"))
                .json_body(json_pattern!({"type": "https://gauntlet.dev/problems/conflict", "status": 409}));
        })
        .await;
    let gw = gateway("users", server.url().as_str()).await;
    let body = json!({"email": "ada@example.com", "name": "Ada Again", "password": PASSWORD});
    let (status, answer) = send(http.post(format!("{}/api/v1/users", gw.url())).json(&body)).await;
    assert_eq!(
        (status, answer["type"].as_str()),
        (StatusCode::CONFLICT, Some("https://gauntlet.dev/problems/conflict"))
    );
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("log in", |i| {
            i.given("a user ada@example.com exists");
            i.request
                .post()
                .path("/v1/login")
                .header("Content-Type", "application/json")
                .json_body(json!({"email": "ada@example.com", "password": PASSWORD}));
            i.response.status(200).header("Content-Type", "application/json").json_body(json_pattern!({
                "token": like!("eyJhbGciOiJIUzI1NiJ9.e30.sig"),
                "token_type": "Bearer",
                "expires_in": like!(3600),
                "user_id": like!(1),
            }));
        })
        .await;
    let gw = gateway("users", server.url().as_str()).await;
    let body = json!({"email": "ada@example.com", "password": PASSWORD});
    let (status, answer) = send(http.post(format!("{}/api/v1/login", gw.url())).json(&body)).await;
    assert_eq!((status, answer["token_type"].as_str()), (StatusCode::OK, Some("Bearer")));
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("get the signed-in user", |i| {
            i.given("a user ada@example.com exists");
            i.request
                .get()
                .path_from_provider_state("/v1/users/${user_id}", term!("^/v1/users/[0-9]+$", "/v1/users/1"));
            i.response.status(200).header("Content-Type", "application/json").json_body(json_pattern!({
                "id": like!(1),
                "email": "ada@example.com",
                "name": like!("Ada Lovelace"),
                "created_at": like!("2026-01-01T00:00:00Z"),
            }));
        })
        .await;
    let gw = gateway("users", server.url().as_str()).await;
    let (status, answer) = send(http.get(format!("{}/api/v1/users/me", gw.url())).bearer_auth(token("1"))).await;
    assert_eq!((status, answer["email"].as_str()), (StatusCode::OK, Some("ada@example.com")));
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("get a user that does not exist", |i| {
            i.given("no user 999999 exists");
            i.request.get().path("/v1/users/999999");
            i.response
                .status(404)
                .header("Content-Type", term!(PROBLEM_JSON, "application/problem+json"))
                .json_body(problem("not-found"));
        })
        .await;
    let gw = gateway("users", server.url().as_str()).await;
    let (status, _) = send(http.get(format!("{}/api/v1/users/me", gw.url())).bearer_auth(token("999999"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gw.stop().await;
    drop(server);

    pact.check_committed();
}

fn product() -> JsonPattern {
    json_pattern!({
        "id": like!(1),
        "sku": like!("SKU-0001"),
        "name": like!("Product 1"),
        "price_minor": like!(237),
        "currency": like!("EUR"),
        "stock": like!(1000),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_to_catalog() {
    let pact = PactFile::new("gateway", "catalog");
    let http = reqwest::Client::new();

    let server = pact
        .interaction("list products", |i| {
            i.given("products 1 to 100 exist");
            i.request.get().path("/v1/products").query_param("limit", "2");
            i.response.status(200).header("Content-Type", "application/json").json_body(json_pattern!({
                "items": each_like!(product()),
                "total": like!(100),
                "limit": 2,
                "offset": 0,
            }));
        })
        .await;
    let gw = gateway("catalog", server.url().as_str()).await;
    let (status, answer) = send(http.get(format!("{}/api/v1/products?limit=2", gw.url()))).await;
    assert_eq!((status, answer["items"][0]["name"].as_str()), (StatusCode::OK, Some("Product 1")));
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("get a product", |i| {
            i.given("products 1 to 100 exist");
            i.request.get().path("/v1/products/1");
            i.response.status(200).header("Content-Type", "application/json").json_body(product());
        })
        .await;
    let gw = gateway("catalog", server.url().as_str()).await;
    let (status, answer) = send(http.get(format!("{}/api/v1/products/1", gw.url()))).await;
    assert_eq!((status, answer["name"].as_str()), (StatusCode::OK, Some("Product 1")));
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("get a product that does not exist", |i| {
            i.given("no product 999999 exists");
            i.request.get().path("/v1/products/999999");
            i.response
                .status(404)
                .header("Content-Type", term!(PROBLEM_JSON, "application/problem+json"))
                .json_body(problem("not-found"));
        })
        .await;
    let gw = gateway("catalog", server.url().as_str()).await;
    let (status, _) = send(http.get(format!("{}/api/v1/products/999999", gw.url()))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gw.stop().await;
    drop(server);

    pact.check_committed();
}

fn order() -> JsonPattern {
    json_pattern!({
        "id": like!("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        "user_id": "7",
        "status": like!("PENDING"),
        "items": each_like!({"product_id": 1, "quantity": 1}),
    })
}

fn order_path() -> StringPattern {
    term!("^/v1/orders/[0-9a-f-]+$", "/v1/orders/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_to_orders() {
    let pact = PactFile::new("gateway", "orders");
    let http = reqwest::Client::new();

    let server = pact
        .interaction("place an order that is still pending", |i| {
            i.given("the saga's upstreams are slow");
            i.request
                .post()
                .path("/v1/orders")
                .header("Idempotency-Key", "7:client-key-1")
                .header("Content-Type", "application/json")
                .json_body(json!({"user_id": "7", "items": [{"product_id": 1, "quantity": 1}]}));
            i.response
                .status(202)
                .header("Location", order_path())
                .header("Content-Type", "application/json")
                .json_body(order());
        })
        .await;
    let gw = gateway("orders", server.url().as_str()).await;
    let body = json!({"items": [{"product_id": 1, "quantity": 1}]});
    let req = http
        .post(format!("{}/api/v1/orders", gw.url()))
        .bearer_auth(token("7"))
        .header("Idempotency-Key", "client-key-1")
        .json(&body);
    let (status, answer) = send(req).await;
    assert_eq!((status, answer["user_id"].as_str()), (StatusCode::ACCEPTED, Some("7")));
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("list a user's orders", |i| {
            i.given("an order exists for user 7");
            i.request.get().path("/v1/users/7/orders");
            i.response
                .status(200)
                .header("Content-Type", "application/json")
                .json_body(json_pattern!({"items": each_like!(order())}));
        })
        .await;
    let gw = gateway("orders", server.url().as_str()).await;
    let (status, answer) = send(http.get(format!("{}/api/v1/orders", gw.url())).bearer_auth(token("7"))).await;
    assert_eq!((status, answer["items"][0]["user_id"].as_str()), (StatusCode::OK, Some("7")));
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("get an order", |i| {
            i.given("an order exists for user 7");
            i.request.get().path_from_provider_state("/v1/orders/${order_id}", order_path());
            i.response.status(200).header("Content-Type", "application/json").json_body(order());
        })
        .await;
    let gw = gateway("orders", server.url().as_str()).await;
    let url = format!("{}/api/v1/orders/0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", gw.url());
    let (status, answer) = send(http.get(url).bearer_auth(token("7"))).await;
    assert_eq!((status, answer["user_id"].as_str()), (StatusCode::OK, Some("7")), "the owner sees the order");
    gw.stop().await;
    drop(server);

    let server = pact
        .interaction("get an order that does not exist", |i| {
            i.given("no order nope-404 exists");
            i.request.get().path("/v1/orders/nope-404");
            i.response
                .status(404)
                .header("Content-Type", term!(PROBLEM_JSON, "application/problem+json"))
                .json_body(problem("not-found"));
        })
        .await;
    let gw = gateway("orders", server.url().as_str()).await;
    let (status, _) = send(http.get(format!("{}/api/v1/orders/nope-404", gw.url())).bearer_auth(token("7"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    gw.stop().await;
    drop(server);

    pact.check_committed();
}
