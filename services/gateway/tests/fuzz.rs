//! Fuzzed bad requests against every route of every service, direct and through the
//! gateway: wrong types, missing fields, garbage bodies, huge bodies, bad JWTs, odd path
//! parameters and unknown routes. Whatever comes in, the answer is never a 5xx, and
//! every 4xx is problem+json.

mod common;

use common::{Shop, ADMIN};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Svc {
    Gateway,
    Users,
    Catalog,
    Orders,
    Payments,
}

#[derive(Clone, Copy, Debug)]
enum Auth {
    None,
    User,
    Admin,
}

/// Every route: where it is, its method, its path (`{id}` is fuzzed), what auth it wants.
const ROUTES: &[(Svc, &str, &str, Auth)] = &[
    (Svc::Gateway, "POST", "/api/v1/users", Auth::None),
    (Svc::Gateway, "POST", "/api/v1/login", Auth::None),
    (Svc::Gateway, "GET", "/api/v1/users/me", Auth::User),
    (Svc::Gateway, "GET", "/api/v1/products", Auth::None),
    (Svc::Gateway, "GET", "/api/v1/products/{id}", Auth::None),
    (Svc::Gateway, "POST", "/api/v1/orders", Auth::User),
    (Svc::Gateway, "GET", "/api/v1/orders", Auth::User),
    (Svc::Gateway, "GET", "/api/v1/orders/{id}", Auth::User),
    (Svc::Users, "POST", "/v1/users", Auth::None),
    (Svc::Users, "POST", "/v1/login", Auth::None),
    (Svc::Users, "GET", "/v1/users/{id}", Auth::None),
    (Svc::Users, "GET", "/v1/admin/state", Auth::Admin),
    (Svc::Catalog, "GET", "/v1/products", Auth::None),
    (Svc::Catalog, "GET", "/v1/products/{id}", Auth::None),
    (Svc::Catalog, "POST", "/v1/products", Auth::Admin),
    (Svc::Catalog, "POST", "/v1/reservations", Auth::None),
    (Svc::Catalog, "GET", "/v1/reservations/{id}", Auth::None),
    (Svc::Catalog, "POST", "/v1/reservations/{id}/commit", Auth::None),
    (Svc::Catalog, "POST", "/v1/reservations/{id}/release", Auth::None),
    (Svc::Catalog, "GET", "/v1/admin/state", Auth::Admin),
    (Svc::Payments, "POST", "/v1/charges", Auth::None),
    (Svc::Payments, "GET", "/v1/charges", Auth::None),
    (Svc::Payments, "GET", "/v1/charges/{id}", Auth::None),
    (Svc::Payments, "POST", "/v1/charges/{id}/refund", Auth::None),
    (Svc::Payments, "GET", "/v1/ledger/summary", Auth::None),
    (Svc::Payments, "GET", "/v1/admin/state", Auth::Admin),
    (Svc::Orders, "POST", "/v1/orders", Auth::None),
    (Svc::Orders, "GET", "/v1/orders/{id}", Auth::None),
    (Svc::Orders, "GET", "/v1/users/{id}/orders", Auth::None),
    (Svc::Orders, "GET", "/v1/admin/state", Auth::Admin),
];

#[derive(Clone, Debug)]
enum Body {
    Empty,
    Json(Value),
    Bytes(Vec<u8>),
    Huge,
}

#[derive(Clone, Debug)]
enum Token {
    Valid,
    Garbage(String),
    WrongKey,
    Omitted,
}

#[derive(Clone, Debug)]
struct Case {
    route: usize,
    method: Option<&'static str>,
    id: String,
    query: String,
    body: Body,
    token: Token,
    content_type: bool,
    idempotency_key: Option<String>,
    unknown_suffix: Option<String>,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[ -~]{0,20}".prop_map(Value::String),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(u64::MAX)),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(field_name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Field names the services really read, and some they do not.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("email".to_string()),
        Just("name".to_string()),
        Just("password".to_string()),
        Just("items".to_string()),
        Just("product_id".to_string()),
        Just("quantity".to_string()),
        Just("order_id".to_string()),
        Just("amount_minor".to_string()),
        Just("currency".to_string()),
        Just("user_id".to_string()),
        Just("sku".to_string()),
        Just("price_minor".to_string()),
        Just("stock".to_string()),
        "[a-z_]{1,8}",
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => Just(Body::Empty),
        6 => json_value().prop_map(Body::Json),
        2 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
        1 => Just(Body::Huge),
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        Just("0".to_string()),
        Just("1".to_string()),
        Just("99999999999999999999999".to_string()),
        "[a-zA-Z0-9_-]{1,40}",
        "%[0-9A-F]{2}[a-z]{0,4}",
        Just("..".to_string()),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        0..ROUTES.len(),
        prop_oneof![4 => Just(None), 1 => prop_oneof![Just("GET"), Just("POST"), Just("PUT"), Just("DELETE"), Just("PATCH")].prop_map(Some)],
        id(),
        prop_oneof![Just(String::new()), "[a-z]{1,6}=[ -~&&[^#&]]{0,8}", Just("limit=-1".to_string()), Just("limit=abc&offset=x".to_string()), Just("limit=1000000".to_string()), Just("order_id=".to_string())],
        body(),
        prop_oneof![3 => Just(Token::Valid), 1 => "[ -~]{0,40}".prop_map(Token::Garbage), 1 => Just(Token::WrongKey), 1 => Just(Token::Omitted)],
        prop::bool::weighted(0.8),
        prop::option::of("[ -~]{0,200}"),
        prop::option::weighted(0.1, "[a-z]{1,8}"),
    )
        .prop_map(|(route, method, id, query, body, token, content_type, idempotency_key, unknown_suffix)| Case {
            route,
            method,
            id,
            query,
            body,
            token,
            content_type,
            idempotency_key,
            unknown_suffix,
        })
}

#[test]
fn no_request_gets_a_5xx_and_every_4xx_is_problem_json() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let shop = rt
        .block_on(Shop::start(&[("SHOP_CATALOG_SEED_PRODUCTS", "10".into()), ("SHOP_GATEWAY_RATE", "1000000".into())]));
    let (_, user_token) = rt.block_on(shop.user("fuzz@example.com"));
    let wrong_key = shop_kit::auth::JwtKeys::hs256("some-other-secret-key!").issue(
        "1",
        "x@y.z",
        std::time::Duration::from_secs(60),
    );
    // A fresh connection per request: a server may close a connection after refusing a body
    // unread, and a pooled client would race it; that is not what this test is about.
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();

    let cases: u32 = std::env::var("GAUNTLET_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let result = runner.run(&case(), |c| {
        let (svc, method, template, auth) = ROUTES[c.route];
        let base = match svc {
            Svc::Gateway => shop.gateway.url(),
            Svc::Users => shop.users.url(),
            Svc::Catalog => shop.catalog.url(),
            Svc::Orders => shop.orders.url(),
            Svc::Payments => shop.payments.url(),
        };
        let mut path = template.replace("{id}", &c.id);
        if let Some(s) = &c.unknown_suffix {
            path.push('/');
            path.push_str(s);
        }
        let url = if c.query.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{}", c.query) };
        let method = c.method.unwrap_or(method);
        let mut req = http.request(method.parse().unwrap(), &url);
        let token = match (&c.token, auth) {
            (Token::Valid, Auth::Admin) => Some(ADMIN.to_string()),
            (Token::Valid, Auth::User) => Some(user_token.clone()),
            (Token::Valid, Auth::None) | (Token::Omitted, _) => None,
            (Token::Garbage(g), _) => Some(g.clone()),
            (Token::WrongKey, _) => Some(wrong_key.clone()),
        };
        if let Some(t) = token {
            if reqwest::header::HeaderValue::from_str(&format!("Bearer {t}")).is_ok() {
                req = req.bearer_auth(t);
            }
        }
        if let Some(k) = &c.idempotency_key {
            if reqwest::header::HeaderValue::from_str(k).is_ok() {
                req = req.header("idempotency-key", k);
            }
        }
        if c.content_type {
            req = req.header("content-type", "application/json");
        }
        req = match &c.body {
            Body::Empty => req,
            Body::Json(v) => req.body(v.to_string()),
            Body::Bytes(b) => req.body(b.clone()),
            Body::Huge => req.body(format!("{{\"email\":\"{}\"}}", "x".repeat(200_000))),
        };
        let (status, content_type, text) = rt.block_on(async {
            let res = req.send().await.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
            let status = res.status().as_u16();
            let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let text = res.text().await.unwrap_or_default();
            Ok::<_, TestCaseError>((status, ct, text))
        })?;
        prop_assert!(status < 500, "{method} {url} -> {status}: {text}\ncase: {c:?}");
        if (400..500).contains(&status) {
            prop_assert_eq!(&content_type, "application/problem+json", "{} {} -> {}: {}", method, url, status, text);
            let p: Value =
                serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("not JSON: {e}: {text}")))?;
            prop_assert!(
                p["type"].as_str().is_some_and(|t| t.starts_with("https://gauntlet.dev/problems/")),
                "{}",
                text
            );
            prop_assert_eq!(p["status"].as_u64(), Some(u64::from(status)));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // The services are all still there.
    for svc in [&shop.gateway, &shop.users, &shop.catalog, &shop.orders, &shop.payments] {
        let ok = rt.block_on(async { http.get(format!("{}/health", svc.url())).send().await }).unwrap().status();
        assert_eq!(ok, 200);
    }
}
