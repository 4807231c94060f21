//! The payments API on a real socket: every route, its happy path and each documented
//! error, and concurrent retries of one key.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use shop_kit::config::DEV_SECRET;
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{Env, ServiceConfig};

const ADMIN: &str = DEV_SECRET;
/// Amounts above this are declined in these tests.
const DECLINE_OVER: i64 = 10_000;

struct Service {
    running: RunningService,
    http: Client,
    _dir: tempfile::TempDir,
}

impl Service {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A payments service with the extra settings `vars`.
    async fn start_with(vars: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("payments.db");
        let mut env = Env::from_pairs([
            ("SHOP_DEV_DEFAULTS", "1"),
            ("SHOP_DB", db.to_str().unwrap()),
            ("SHOP_PAYMENTS_DECLINE_OVER", &DECLINE_OVER.to_string()),
        ]);
        for (k, v) in vars {
            env = env.with(k, *v);
        }
        let config = ServiceConfig::from_env(&env, "payments", 0, true).unwrap();
        let app = shop_payments::build(config, env, Metrics::new("payments")).await.unwrap();
        let running = app.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        Self { running, http: Client::new(), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn post(&self, path: &str) -> Response {
        self.http.post(self.url(path)).send().await.unwrap()
    }

    fn charge_req(&self, key: &str, body: &Value) -> RequestBuilder {
        self.http.post(self.url("/v1/charges")).header("Idempotency-Key", key).json(body)
    }

    async fn charge(&self, key: &str, body: Value) -> Response {
        self.charge_req(key, &body).send().await.unwrap()
    }

    async fn summary(&self) -> Value {
        let res = self.get("/v1/ledger/summary").await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    async fn state(&self) -> Value {
        let res = self.http.get(self.url("/v1/admin/state")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }
}

/// Asserts a problem+json answer of `status` and `slug`; returns the problem body.
async fn problem(res: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], format!("https://gauntlet.dev/problems/{slug}"), "{body}");
    body
}

fn body(order_id: Value, amount: i64) -> Value {
    json!({"order_id": order_id, "amount_minor": amount, "currency": "EUR"})
}

#[tokio::test]
async fn a_charge_is_captured_once_per_key() {
    let svc = Service::start().await;
    let res = svc.charge("7:charge", body(json!(7), 2500)).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let c: Value = res.json().await.unwrap();
    assert!(c["id"].as_i64().unwrap() > 0);
    assert_eq!(c["order_id"], 7);
    assert_eq!((c["amount_minor"].as_i64(), c["currency"].as_str()), (Some(2500), Some("EUR")));
    assert_eq!((c["status"].as_str(), c["refunded_minor"].as_i64()), (Some("captured"), Some(0)));
    assert!(c["created_at"].as_str().unwrap().ends_with('Z'));

    let again = svc.charge("7:charge", body(json!(7), 2500)).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), c);
    assert_eq!(svc.get(&format!("/v1/charges/{}", c["id"])).await.json::<Value>().await.unwrap(), c);

    let other = svc.charge("7:charge", body(json!(7), 2600)).await;
    assert_eq!(problem(other, StatusCode::CONFLICT, "conflict").await["charge_id"], c["id"]);
    let summary = svc.summary().await;
    assert_eq!(summary["captured_minor"], 2500);
    assert_eq!(summary["by_status"]["captured"], 1);
}

#[tokio::test]
async fn declines_are_recorded_and_repeated() {
    let svc = Service::start().await;
    let first = problem(
        svc.charge("d", body(json!("o-1"), DECLINE_OVER + 1)).await,
        StatusCode::PAYMENT_REQUIRED,
        "payment-declined",
    )
    .await;
    assert!(first["reason"].as_str().unwrap().contains(&DECLINE_OVER.to_string()), "{first}");
    let id = first["charge_id"].as_i64().unwrap();
    let again = problem(
        svc.charge("d", body(json!("o-1"), DECLINE_OVER + 1)).await,
        StatusCode::PAYMENT_REQUIRED,
        "payment-declined",
    )
    .await;
    assert_eq!((again["charge_id"].as_i64(), &again["reason"]), (Some(id), &first["reason"]));
    let declined: Value = svc.get(&format!("/v1/charges/{id}")).await.json().await.unwrap();
    assert_eq!((declined["status"].as_str(), declined["order_id"].as_str()), (Some("declined"), Some("o-1")));
    let refund = svc.post(&format!("/v1/charges/{id}/refund")).await;
    assert_eq!(problem(refund, StatusCode::CONFLICT, "conflict").await["status"], "declined");
    let at_limit = svc.charge("ok", body(json!("o-1"), DECLINE_OVER)).await;
    assert_eq!(at_limit.status(), StatusCode::CREATED);
    let summary = svc.summary().await;
    assert_eq!(summary["by_status"], json!({"captured": 1, "refunded": 0, "declined": 1}));
    assert_eq!(summary["captured_minor"], DECLINE_OVER);
}

#[tokio::test]
async fn refunds_are_full_and_idempotent() {
    let svc = Service::start().await;
    let c: Value = svc.charge("a", body(json!(1), 1000)).await.json().await.unwrap();
    svc.charge("b", body(json!(2), 300)).await;
    for _ in 0..2 {
        let res = svc.post(&format!("/v1/charges/{}/refund", c["id"])).await;
        assert_eq!(res.status(), StatusCode::OK);
        let r: Value = res.json().await.unwrap();
        assert_eq!((r["status"].as_str(), r["refunded_minor"].as_i64()), (Some("refunded"), Some(1000)));
    }
    assert_eq!(
        svc.summary().await,
        json!({"captured_minor": 1300, "refunded_minor": 1000, "net_minor": 300,
               "by_status": {"captured": 1, "refunded": 1, "declined": 0}})
    );
    problem(svc.post("/v1/charges/999/refund").await, StatusCode::NOT_FOUND, "not-found").await;
    let zero = problem(svc.post("/v1/charges/0/refund").await, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(zero["field"], "id");
    let repeat: Value = svc.charge("a", body(json!(1), 1000)).await.json().await.unwrap();
    assert_eq!(repeat["status"], "refunded", "a repeated key answers the charge as it is now");
}

#[tokio::test]
async fn charges_are_listed_by_order() {
    let svc = Service::start().await;
    svc.charge("a", body(json!(5), 100)).await;
    svc.charge("b", body(json!(6), 200)).await;
    svc.charge("c", body(json!(5), 300)).await;
    let list: Value = svc.get("/v1/charges?order_id=5").await.json().await.unwrap();
    let amounts: Vec<i64> =
        list["items"].as_array().unwrap().iter().map(|c| c["amount_minor"].as_i64().unwrap()).collect();
    assert_eq!(amounts, vec![100, 300]);
    let none: Value = svc.get("/v1/charges?order_id=nope").await.json().await.unwrap();
    assert_eq!(none, json!({"items": []}));
    let missing = problem(svc.get("/v1/charges").await, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(missing["field"], "order_id");
    let empty = problem(svc.get("/v1/charges?order_id=").await, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(empty["field"], "order_id");
}

#[tokio::test]
async fn get_charge_errors() {
    let svc = Service::start().await;
    problem(svc.get("/v1/charges/12").await, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(problem(svc.get("/v1/charges/-1").await, StatusCode::BAD_REQUEST, "bad-request").await["field"], "id");
    problem(svc.get("/v1/charges/abc").await, StatusCode::BAD_REQUEST, "bad-request").await;
}

#[tokio::test]
async fn bad_charges_name_the_field() {
    let svc = Service::start().await;
    let no_key = svc.http.post(svc.url("/v1/charges")).json(&body(json!(1), 100)).send().await.unwrap();
    assert_eq!(problem(no_key, StatusCode::BAD_REQUEST, "bad-request").await["field"], "Idempotency-Key");
    let long_key = svc.charge(&"k".repeat(201), body(json!(1), 100)).await;
    assert_eq!(problem(long_key, StatusCode::BAD_REQUEST, "bad-request").await["field"], "Idempotency-Key");
    let cases = [
        (body(json!(1), 0), "amount_minor"),
        (body(json!(1), -100), "amount_minor"),
        (body(json!(1), 1_000_000_000_001), "amount_minor"),
        (json!({"order_id": 1, "amount_minor": 100, "currency": "EURO"}), "currency"),
        (json!({"order_id": 1, "amount_minor": 100}), "currency"),
        (json!({"order_id": 1, "currency": "EUR"}), "amount_minor"),
        (json!({"amount_minor": 100, "currency": "EUR"}), "order_id"),
        (body(json!(-4), 100), "order_id"),
        (body(json!({"id": 1}), 100), "order_id"),
    ];
    for (b, field) in cases {
        let p = problem(svc.charge("k", b.clone()).await, StatusCode::BAD_REQUEST, "bad-request").await;
        assert_eq!(p["field"], field, "{b}");
    }
    let wrong_type = svc.charge("k", json!({"order_id": 1, "amount_minor": "100", "currency": "EUR"})).await;
    problem(wrong_type, StatusCode::BAD_REQUEST, "bad-request").await;
    let float = svc.charge("k", json!({"order_id": 1, "amount_minor": 1.5, "currency": "EUR"})).await;
    problem(float, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(svc.state().await["charges"], json!([]));
}

#[tokio::test]
async fn admin_state_needs_the_admin_token() {
    let svc = Service::start().await;
    problem(svc.get("/v1/admin/state").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = svc.http.get(svc.url("/v1/admin/state")).bearer_auth("nope").send().await.unwrap();
    problem(wrong, StatusCode::FORBIDDEN, "forbidden").await;
    let c: Value = svc.charge("key-1", body(json!(1), 100)).await.json().await.unwrap();
    let state = svc.state().await;
    let mut expected = c.clone();
    expected["idempotency_key"] = json!("key-1");
    assert_eq!(state["charges"], json!([expected]));
    assert_eq!(state["summary"], svc.summary().await);
}

/// The admin state contract (`services/README.md`): each charge with its key, order,
/// amount, status and refunded amount, whatever became of it.
#[tokio::test]
async fn admin_state_shows_every_charge_with_its_key_order_amount_and_status() {
    let svc = Service::start().await;
    let kept: Value = svc.charge("o-1:charge", body(json!("o-1"), 1200)).await.json().await.unwrap();
    let refunded: Value = svc.charge("o-2:charge", body(json!(2), 3400)).await.json().await.unwrap();
    assert_eq!(svc.post(&format!("/v1/charges/{}/refund", refunded["id"])).await.status(), StatusCode::OK);
    let declined = svc.charge("o-3:charge", body(json!("o-3"), DECLINE_OVER + 1)).await;
    assert_eq!(declined.status(), StatusCode::PAYMENT_REQUIRED);

    let state = svc.state().await;
    let charges = state["charges"].as_array().unwrap();
    let seen: Vec<_> = charges
        .iter()
        .map(|c| {
            (
                c["idempotency_key"].as_str().unwrap(),
                c["order_id"].clone(),
                c["amount_minor"].as_i64().unwrap(),
                c["status"].as_str().unwrap(),
                c["refunded_minor"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("o-1:charge", json!("o-1"), 1200, "captured", 0),
            ("o-2:charge", json!(2), 3400, "refunded", 3400),
            ("o-3:charge", json!("o-3"), DECLINE_OVER + 1, "declined", 0),
        ]
    );
    assert_eq!((&charges[0]["id"], &charges[0]["created_at"]), (&kept["id"], &kept["created_at"]));
    for c in charges {
        assert_eq!(c["currency"], "EUR", "{c}");
    }
    assert_eq!(state["summary"], svc.summary().await);
}

/// `SHOP_TEST_BREAK=skip-idempotency` (debug builds): a repeated key charges again, and
/// only that; the same calls on a healthy service charge once.
#[cfg(debug_assertions)]
#[tokio::test]
async fn the_skip_idempotency_switch_charges_a_repeated_key_again() {
    for (vars, charges) in [(&[][..], 1), (&[("SHOP_TEST_BREAK", "skip-idempotency")][..], 2)] {
        let svc = Service::start_with(vars).await;
        for _ in 0..2 {
            assert!(svc.charge("o-9:charge", body(json!("o-9"), 500)).await.status().is_success());
        }
        let state = svc.state().await;
        let keys: Vec<_> = state["charges"].as_array().unwrap().iter().map(|c| c["idempotency_key"].clone()).collect();
        assert_eq!(keys, vec![json!("o-9:charge"); charges], "{vars:?}");
        assert_eq!(state["summary"]["captured_minor"], 500 * charges as i64, "{vars:?}");
    }
}

#[tokio::test]
async fn twenty_concurrent_retries_charge_once() {
    let svc = Service::start().await;
    let b = body(json!(99), 4200);
    let attempts: Vec<_> = (0..20).map(|_| svc.charge_req("99:charge", &b).send()).collect();
    let answers = join_all(attempts.into_iter().map(|f| async move {
        let res = f.await.unwrap();
        (res.status(), res.json::<Value>().await.unwrap())
    }))
    .await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|(s, c)| (*s == StatusCode::CREATED || *s == StatusCode::OK) && c["id"] == answers[0].1["id"]));
    let state = svc.state().await;
    assert_eq!(state["charges"].as_array().unwrap().len(), 1);
    assert_eq!(state["summary"]["captured_minor"], 4200);
}

#[tokio::test]
async fn concurrent_retries_of_a_decline_record_one_decline() {
    let svc = Service::start().await;
    let b = body(json!(98), DECLINE_OVER * 2);
    let attempts: Vec<_> = (0..10).map(|_| svc.charge_req("98:charge", &b).send()).collect();
    let answers = join_all(attempts.into_iter().map(|f| async move {
        let res = f.await.unwrap();
        (res.status(), res.json::<Value>().await.unwrap())
    }))
    .await;
    assert!(answers
        .iter()
        .all(|(s, p)| *s == StatusCode::PAYMENT_REQUIRED && p["charge_id"] == answers[0].1["charge_id"]));
    assert_eq!(svc.summary().await["by_status"], json!({"captured": 0, "refunded": 0, "declined": 1}));
}

#[tokio::test]
async fn malformed_requests_are_4xx_problems() {
    let svc = Service::start().await;
    for b in [
        "",
        "{",
        "[]",
        "null",
        "{\"amount_minor\": 1e400}",
        "{\"order_id\":1,\"amount_minor\":99999999999999999999,\"currency\":\"EUR\"}",
    ] {
        let res = svc
            .http
            .post(svc.url("/v1/charges"))
            .header("Idempotency-Key", "k")
            .header("content-type", "application/json")
            .body(b)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{b}: {}", res.status());
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let res = svc.http.put(svc.url("/v1/ledger/summary")).send().await.unwrap();
    problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}

async fn join_all<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(tokio::time::timeout(Duration::from_secs(60), h).await.unwrap().unwrap());
    }
    out
}
