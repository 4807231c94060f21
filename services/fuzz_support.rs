//! Shared by the services' route fuzzers (`services/*/tests/fuzz.rs`, which include it
//! with `#[path]`): request strategies, a service started once per test binary, and the
//! check every answer must pass (never a 5xx; every 4xx is problem+json).

#![allow(dead_code)]

use std::fmt::Debug;
use std::future::Future;

use proptest::prelude::*;
use reqwest::{Client, Method};
use serde_json::{Map, Value};
use shop_kit::config::DEV_SECRET;
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{Env, ServiceApp, ServiceConfig};

/// A request body as a fuzzer sends it.
#[derive(Clone, Debug)]
pub enum Body {
    None,
    Json(Value),
    /// Arbitrary text claiming to be JSON.
    Text(String),
    /// JSON sent with the wrong media type.
    Form(Value),
}

#[derive(Clone, Debug)]
pub struct FuzzRequest {
    method: Method,
    path: String,
    idempotency_key: Option<String>,
    bearer: Option<String>,
    body: Body,
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        2 => (-3i64..1100).prop_map(Value::from),
        3 => (1i64..6).prop_map(Value::from),
        1 => any::<f64>().prop_filter("JSON has no NaN or infinity", |f| f.is_finite()).prop_map(Value::from),
        2 => "\\PC{0,20}".prop_map(Value::from),
        1 => "[a-z]{1,8}@[a-z]{1,8}\\.com".prop_map(Value::from),
        1 => prop_oneof![Just("EUR"), Just("usd"), Just("EURO"), Just("")].prop_map(Value::from),
    ]
}

/// An object with some of `fields`, each a leaf; `items` is a list of such objects.
fn shaped(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let item = prop::sample::subsequence(&["product_id", "quantity", "extra"][..], 0..=3)
        .prop_flat_map(|keys| prop::collection::vec(leaf(), keys.len()).prop_map(move |vals| object(&keys, vals)));
    let items = prop::collection::vec(item, 0..4).prop_map(Value::Array);
    prop::sample::subsequence(fields, 0..=fields.len()).prop_flat_map(move |keys| {
        let values: Vec<BoxedStrategy<Value>> =
            keys.iter().map(|k| if *k == "items" { items.clone().boxed() } else { leaf().boxed() }).collect();
        values.prop_map(move |vals| object(&keys, vals))
    })
}

fn object(keys: &[&str], values: Vec<Value>) -> Value {
    Value::Object(keys.iter().map(|k| k.to_string()).zip(values).collect())
}

fn json(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        4 => prop::sample::select(fields).prop_map(String::from),
        1 => "[a-z_]{1,8}",
    ];
    leaf().prop_recursive(3, 24, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn path_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        (-2i64..30).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999".to_string()),
        "[a-zA-Z0-9._~%-]{0,12}",
    ]
}

fn body(fields: &'static [&'static str]) -> impl Strategy<Value = Body> {
    prop_oneof![
        1 => Just(Body::None),
        2 => json(fields).prop_map(Body::Json),
        6 => shaped(fields).prop_map(Body::Json),
        1 => "\\PC{0,40}".prop_map(Body::Text),
        1 => json(fields).prop_map(Body::Form),
    ]
}

pub fn request(
    routes: &'static [(&'static str, &'static str)],
    fields: &'static [&'static str],
) -> impl Strategy<Value = FuzzRequest> {
    let method = prop::sample::select(vec![Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH]);
    (
        prop::sample::select(routes),
        prop_oneof![3 => Just(None), 1 => Just(Some(Method::GET)), 1 => method.prop_map(Some)],
        path_segment(),
        prop::option::of("[ -~]{0,210}"),
        prop::option::of(prop_oneof![Just(DEV_SECRET.to_string()), "[!-~]{1,30}"]),
        body(fields),
    )
        .prop_map(|((route_method, template), method, segment, idempotency_key, bearer, body)| FuzzRequest {
            method: method.unwrap_or_else(|| route_method.parse().unwrap()),
            path: template.replace("{id}", &segment),
            idempotency_key,
            bearer,
            body,
        })
}

/// One service on a real socket, started once per test binary, and its runtime.
pub struct Fixture {
    pub rt: tokio::runtime::Runtime,
    pub http: Client,
    pub base: String,
    _service: RunningService,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Starts service `name` with `build` (its crate's `build`), a fresh database, and
    /// `build_env` added to its environment.
    pub fn start<F, Fut, E>(name: &str, build_env: &[(&str, &str)], build: F) -> Fixture
    where
        F: FnOnce(ServiceConfig, Env, Metrics) -> Fut,
        Fut: Future<Output = Result<ServiceApp, E>>,
        E: Debug,
    {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(format!("{name}.db"));
        let mut env = Env::from_pairs([("SHOP_DEV_DEFAULTS", "1"), ("SHOP_DB", db.to_str().unwrap())]);
        for (k, v) in build_env {
            env = env.with(k, *v);
        }
        let config = ServiceConfig::from_env(&env, name, 0, true).unwrap();
        let service = rt.block_on(async {
            let app = build(config, env, Metrics::new(name)).await.unwrap();
            app.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
        });
        Fixture { rt, http: Client::new(), base: service.url(), _service: service, _dir: dir }
    }
}

/// Sends `r`; fails the case on a 5xx or a 4xx that is not problem+json.
pub async fn send(http: &Client, base: &str, r: &FuzzRequest) -> Result<(), TestCaseError> {
    let mut req = http.request(r.method.clone(), format!("{base}{}", r.path));
    if let Some(k) = &r.idempotency_key {
        req = req.header("Idempotency-Key", k.as_str());
    }
    if let Some(b) = &r.bearer {
        req = req.bearer_auth(b);
    }
    req = match &r.body {
        Body::None => req,
        Body::Json(v) => req.json(v),
        Body::Text(t) => req.header("content-type", "application/json").body(t.clone()),
        Body::Form(v) => req.header("content-type", "application/x-www-form-urlencoded").body(v.to_string()),
    };
    let res = req.send().await.map_err(|e| TestCaseError::fail(format!("{r:?}: {e}")))?;
    let status = res.status();
    prop_assert!(!status.is_server_error(), "{:?} answered {}: {:?}", r, status, res.text().await);
    if status.is_client_error() {
        prop_assert_eq!(
            res.headers().get("content-type").map(|v| v.to_str().unwrap_or("")),
            Some("application/problem+json")
        );
    }
    Ok(())
}
