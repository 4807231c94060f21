//! The catalog API on a real socket: every route, its happy path and each documented
//! error, plus races for the last units of stock.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use shop_kit::config::DEV_SECRET;
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{Env, ServiceConfig};

const ADMIN: &str = DEV_SECRET;

struct Service {
    running: RunningService,
    http: Client,
    _dir: tempfile::TempDir,
}

async fn spawn(dir: &tempfile::TempDir, products: &str, stock: &str) -> RunningService {
    let db = dir.path().join("catalog.db");
    let env = Env::from_pairs([
        ("SHOP_DEV_DEFAULTS", "1"),
        ("SHOP_DB", db.to_str().unwrap()),
        ("SHOP_CATALOG_SEED_PRODUCTS", products),
        ("SHOP_CATALOG_SEED_STOCK", stock),
    ]);
    let config = ServiceConfig::from_env(&env, "catalog", 0, true).unwrap();
    let app = shop_catalog::build(config, env, Metrics::new("catalog")).await.unwrap();
    app.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
}

impl Service {
    /// A catalog seeded with 5 products of 10 units each.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let running = spawn(&dir, "5", "10").await;
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

    fn reserve_req(&self, key: &str, body: &Value) -> RequestBuilder {
        self.http.post(self.url("/v1/reservations")).header("Idempotency-Key", key).json(body)
    }

    async fn reserve(&self, key: &str, body: Value) -> Response {
        self.reserve_req(key, &body).send().await.unwrap()
    }

    async fn state(&self) -> Value {
        let res = self.http.get(self.url("/v1/admin/state")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let state: Value = res.json().await.unwrap();
        assert_conserved(&state);
        state
    }

    async fn stock_of(&self, id: i64) -> Value {
        let state = self.state().await;
        state["products"].as_array().unwrap().iter().find(|p| p["id"] == id).unwrap().clone()
    }
}

fn assert_conserved(state: &Value) {
    for p in state["products"].as_array().unwrap() {
        let n = |k: &str| p[k].as_i64().unwrap();
        assert!(n("available") >= 0 && n("reserved") >= 0 && n("sold") >= 0, "{p}");
        assert_eq!(n("initial_stock"), n("available") + n("reserved") + n("sold"), "{p}");
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

fn order(order_id: Value, items: &[(i64, i64)]) -> Value {
    let items: Vec<Value> = items.iter().map(|(p, q)| json!({"product_id": p, "quantity": q})).collect();
    json!({"order_id": order_id, "items": items})
}

#[tokio::test]
async fn products_are_listed_in_pages() {
    let svc = Service::start().await;
    let page: Value = svc.get("/v1/products").await.json().await.unwrap();
    assert_eq!((page["total"].as_i64(), page["limit"].as_i64(), page["offset"].as_i64()), (Some(5), Some(20), Some(0)));
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    for (i, p) in items.iter().enumerate() {
        let id = i as i64 + 1;
        assert_eq!(p["id"], id);
        assert_eq!(p["price_minor"], (id * 137) % 9000 + 100);
        assert_eq!(p["currency"], "EUR");
        assert_eq!(p["stock"], 10);
        assert!(p["sku"].is_string() && p["name"].is_string());
    }
    let page: Value = svc.get("/v1/products?limit=2&offset=3").await.json().await.unwrap();
    let ids: Vec<i64> = page["items"].as_array().unwrap().iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![4, 5]);
    assert_eq!(page["total"], 5);
    let past_end: Value = svc.get("/v1/products?offset=50").await.json().await.unwrap();
    assert_eq!(past_end["items"], json!([]));
}

#[tokio::test]
async fn bad_paging_names_the_field() {
    let svc = Service::start().await;
    for (query, field) in [("limit=0", "limit"), ("limit=101", "limit"), ("offset=-1", "offset")] {
        let p = problem(svc.get(&format!("/v1/products?{query}")).await, StatusCode::BAD_REQUEST, "bad-request").await;
        assert_eq!(p["field"], field, "{query}");
    }
    problem(svc.get("/v1/products?limit=ten").await, StatusCode::BAD_REQUEST, "bad-request").await;
}

#[tokio::test]
async fn get_product_and_its_errors() {
    let svc = Service::start().await;
    let p: Value = svc.get("/v1/products/3").await.json().await.unwrap();
    assert_eq!(p["id"], 3);
    let missing = problem(svc.get("/v1/products/99").await, StatusCode::NOT_FOUND, "not-found").await;
    assert_eq!(missing["product_id"], 99);
    assert_eq!(problem(svc.get("/v1/products/0").await, StatusCode::BAD_REQUEST, "bad-request").await["field"], "id");
    problem(svc.get("/v1/products/x").await, StatusCode::BAD_REQUEST, "bad-request").await;
}

#[tokio::test]
async fn creating_products_needs_admin_and_a_new_sku() {
    let svc = Service::start().await;
    let body = json!({"sku": "MUG-1", "name": "Mug", "price_minor": 1250, "currency": "usd", "stock": 3});
    let create = |token: Option<&str>, body: &Value| {
        let req = svc.http.post(svc.url("/v1/products")).json(body);
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
        .send()
    };
    problem(create(None, &body).await.unwrap(), StatusCode::UNAUTHORIZED, "unauthorized").await;
    problem(create(Some("wrong-token"), &body).await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
    let res = create(Some(ADMIN), &body).await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p, json!({"id": 6, "sku": "MUG-1", "name": "Mug", "price_minor": 1250, "currency": "USD", "stock": 3}));
    assert_eq!(svc.get("/v1/products/6").await.json::<Value>().await.unwrap(), p);
    assert_eq!(svc.stock_of(6).await["initial_stock"], 3);
    let dup = create(Some(ADMIN), &body).await.unwrap();
    assert_eq!(problem(dup, StatusCode::CONFLICT, "conflict").await["field"], "sku");
    let bad = [
        (json!({"sku": "X", "name": "Mug", "price_minor": 0, "currency": "EUR", "stock": 1}), "price_minor"),
        (json!({"sku": "X", "name": "Mug", "price_minor": 5, "currency": "EURO", "stock": 1}), "currency"),
        (json!({"sku": "X", "name": "Mug", "price_minor": 5, "currency": "EUR", "stock": -1}), "stock"),
        (json!({"sku": "X y", "name": "Mug", "price_minor": 5, "currency": "EUR", "stock": 1}), "sku"),
        (json!({"sku": "X", "price_minor": 5, "currency": "EUR", "stock": 1}), "name"),
    ];
    for (body, field) in bad {
        let p = problem(create(Some(ADMIN), &body).await.unwrap(), StatusCode::BAD_REQUEST, "bad-request").await;
        assert_eq!(p["field"], field, "{body}");
    }
}

#[tokio::test]
async fn a_reservation_holds_stock_and_a_repeated_key_returns_it() {
    let svc = Service::start().await;
    let body = order(json!(42), &[(1, 2), (2, 3)]);
    let res = svc.reserve("42:reserve", body.clone()).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let r: Value = res.json().await.unwrap();
    assert_eq!(r["status"], "held");
    assert_eq!(r["order_id"], 42);
    assert_eq!(r["currency"], "EUR");
    let (p1, p2) = (137 + 100, 274 + 100);
    assert_eq!(
        r["items"],
        json!([
            {"product_id": 1, "quantity": 2, "unit_price_minor": p1},
            {"product_id": 2, "quantity": 3, "unit_price_minor": p2},
        ])
    );
    assert_eq!(r["total_minor"], 2 * p1 + 3 * p2);
    assert_eq!(svc.get("/v1/products/1").await.json::<Value>().await.unwrap()["stock"], 8);
    assert_eq!(svc.stock_of(2).await, json!({"id": 2, "initial_stock": 10, "available": 7, "reserved": 3, "sold": 0}));

    let again = svc.reserve("42:reserve", body).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.unwrap(), r);
    assert_eq!(svc.stock_of(2).await["reserved"], 3, "a repeated key holds nothing more");

    let other_body = svc.reserve("42:reserve", order(json!(42), &[(1, 1)])).await;
    let p = problem(other_body, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(p["reservation_id"], r["id"]);

    let fetched: Value = svc.get(&format!("/v1/reservations/{}", r["id"])).await.json().await.unwrap();
    assert_eq!(fetched, r);
    let string_order: Value = svc.reserve("k2", order(json!("ord-7"), &[(3, 1)])).await.json().await.unwrap();
    assert_eq!(string_order["order_id"], "ord-7");
}

#[tokio::test]
async fn out_of_stock_and_unknown_products_hold_nothing() {
    let svc = Service::start().await;
    let short = svc.reserve("a", order(json!(1), &[(1, 4), (2, 8), (2, 3)])).await;
    let p = problem(short, StatusCode::CONFLICT, "out-of-stock").await;
    assert_eq!(
        (p["product_id"].as_i64(), p["requested"].as_i64(), p["available"].as_i64()),
        (Some(2), Some(11), Some(10))
    );
    let unknown = svc.reserve("b", order(json!(1), &[(1, 1), (77, 1)])).await;
    assert_eq!(problem(unknown, StatusCode::NOT_FOUND, "not-found").await["product_id"], 77);
    let state = svc.state().await;
    assert!(state["products"].as_array().unwrap().iter().all(|p| p["available"] == 10), "{state}");
    assert_eq!(state["reservations"], json!([]));
    let retry = svc.reserve("a", order(json!(1), &[(1, 4)])).await;
    assert_eq!(retry.status(), StatusCode::CREATED, "a failed attempt does not burn its key");
}

#[tokio::test]
async fn bad_reservations_name_the_field() {
    let svc = Service::start().await;
    let no_key = svc.http.post(svc.url("/v1/reservations")).json(&order(json!(1), &[(1, 1)])).send().await.unwrap();
    assert_eq!(problem(no_key, StatusCode::BAD_REQUEST, "bad-request").await["field"], "Idempotency-Key");
    let spaced = svc.reserve("has space", order(json!(1), &[(1, 1)])).await;
    assert_eq!(problem(spaced, StatusCode::BAD_REQUEST, "bad-request").await["field"], "Idempotency-Key");
    let many: Vec<(i64, i64)> = (0..51).map(|_| (1, 1)).collect();
    let cases = [
        (order(json!(1), &[(1, 0)]), "items[0].quantity"),
        (order(json!(1), &[(1, 1), (2, 1001)]), "items[1].quantity"),
        (order(json!(1), &[(-3, 1)]), "items[0].product_id"),
        (order(json!(1), &many), "items"),
        (order(json!(1), &[]), "items"),
        (order(json!(0), &[(1, 1)]), "order_id"),
        (order(json!(""), &[(1, 1)]), "order_id"),
        (json!({"items": [{"product_id": 1, "quantity": 1}]}), "order_id"),
        (json!({"order_id": 1}), "items"),
        (json!({"order_id": 1, "items": [{"quantity": 1}]}), "items[0].product_id"),
    ];
    for (body, field) in cases {
        let p = problem(svc.reserve("k", body.clone()).await, StatusCode::BAD_REQUEST, "bad-request").await;
        assert_eq!(p["field"], field, "{body}");
    }
    let wrong_type = svc.reserve("k", json!({"order_id": 1, "items": [{"product_id": "one", "quantity": 1}]})).await;
    problem(wrong_type, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(svc.state().await["reservations"], json!([]));
}

#[tokio::test]
async fn commit_sells_and_release_returns_each_once() {
    let svc = Service::start().await;
    let a: Value = svc.reserve("a", order(json!(1), &[(1, 2)])).await.json().await.unwrap();
    let b: Value = svc.reserve("b", order(json!(2), &[(1, 3)])).await.json().await.unwrap();

    for _ in 0..2 {
        let res = svc.post(&format!("/v1/reservations/{}/commit", a["id"])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "committed");
    }
    for _ in 0..2 {
        let res = svc.post(&format!("/v1/reservations/{}/release", b["id"])).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "released");
    }
    assert_eq!(svc.stock_of(1).await, json!({"id": 1, "initial_stock": 10, "available": 8, "reserved": 0, "sold": 2}));

    let release_committed = svc.post(&format!("/v1/reservations/{}/release", a["id"])).await;
    problem(release_committed, StatusCode::CONFLICT, "conflict").await;
    let commit_released = svc.post(&format!("/v1/reservations/{}/commit", b["id"])).await;
    problem(commit_released, StatusCode::CONFLICT, "conflict").await;
    assert_eq!(svc.stock_of(1).await["sold"], 2);

    for path in ["/v1/reservations/999", "/v1/reservations/999/commit", "/v1/reservations/999/release"] {
        let res = if path.ends_with("999") { svc.get(path).await } else { svc.post(path).await };
        problem(res, StatusCode::NOT_FOUND, "not-found").await;
    }
    let zero = problem(svc.post("/v1/reservations/0/commit").await, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(zero["field"], "id");
    let state = svc.state().await;
    let statuses: Vec<&str> =
        state["reservations"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["committed", "released"]);
}

#[tokio::test]
async fn admin_state_needs_the_admin_token() {
    let svc = Service::start().await;
    problem(svc.get("/v1/admin/state").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let wrong = svc.http.get(svc.url("/v1/admin/state")).bearer_auth("nope").send().await.unwrap();
    problem(wrong, StatusCode::FORBIDDEN, "forbidden").await;
    let state = svc.state().await;
    assert_eq!(state["products"].as_array().unwrap().len(), 5);
}

/// The admin state contract (`services/README.md`): every reservation with its order
/// (as sent), its priced items and its status, whatever became of it.
#[tokio::test]
async fn admin_state_shows_each_reservation_with_its_order_items_and_status() {
    let svc = Service::start().await;
    let mut ids = Vec::new();
    for (key, order_id, items) in
        [("a", json!(11), &[(1, 2), (2, 1)][..]), ("b", json!("o-12"), &[(3, 1)]), ("c", json!("o-13"), &[(1, 1)])]
    {
        let r: Value = svc.reserve(key, order(order_id, items)).await.json().await.unwrap();
        ids.push(r["id"].clone());
    }
    assert_eq!(svc.post(&format!("/v1/reservations/{}/commit", ids[0])).await.status(), StatusCode::OK);
    assert_eq!(svc.post(&format!("/v1/reservations/{}/release", ids[1])).await.status(), StatusCode::OK);

    let state = svc.state().await;
    let price = |id: i64| (id * 137) % 9000 + 100;
    let line = |p: i64, q: i64| json!({"product_id": p, "quantity": q, "unit_price_minor": price(p)});
    let want = [
        (json!(11), "committed", json!([line(1, 2), line(2, 1)]), 2 * price(1) + price(2)),
        (json!("o-12"), "released", json!([line(3, 1)]), price(3)),
        (json!("o-13"), "held", json!([line(1, 1)]), price(1)),
    ];
    let reservations = state["reservations"].as_array().unwrap();
    assert_eq!(reservations.len(), want.len());
    for ((r, id), (order_id, status, items, total)) in reservations.iter().zip(&ids).zip(want) {
        assert_eq!(&r["id"], id, "{r}");
        assert_eq!((&r["order_id"], r["status"].as_str().unwrap()), (&order_id, status), "{r}");
        assert_eq!((&r["items"], r["total_minor"].as_i64().unwrap()), (&items, total), "{r}");
        assert_eq!(r["currency"], "EUR");
    }
    let p1 = svc.stock_of(1).await;
    assert_eq!((p1["reserved"].as_i64(), p1["sold"].as_i64()), (Some(1), Some(2)), "{p1}");
}

#[tokio::test]
async fn seeding_happens_only_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let http = Client::new();
    let first = spawn(&dir, "3", "10").await;
    let res = http
        .post(format!("{}/v1/reservations", first.url()))
        .header("Idempotency-Key", "k")
        .json(&order(json!(1), &[(1, 4)]))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    first.stop().await;
    let second = spawn(&dir, "8", "99").await;
    let page: Value = http.get(format!("{}/v1/products", second.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"][0]["stock"], 6, "the reservation survived and nothing was re-seeded");
    assert_eq!(page["items"][1]["stock"], 10);
}

#[tokio::test]
async fn racing_for_the_last_units_never_oversells() {
    let svc = Service::start().await;
    // Product 1 has 10 units; 30 orders of 1 unit each race for them, some alongside
    // product 2 so multi-line reservations race too.
    let attempts: Vec<_> = (0..30)
        .map(|i| {
            let items: &[(i64, i64)] = if i % 2 == 0 { &[(1, 1)] } else { &[(2, 1), (1, 1)] };
            svc.reserve_req(&format!("race-{i}"), &order(json!(i + 1), items)).send()
        })
        .collect();
    let statuses: Vec<StatusCode> =
        join_all(attempts.into_iter().map(|f| async move { f.await.unwrap().status() })).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 10, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT));
    let p1 = svc.stock_of(1).await;
    assert_eq!((p1["available"].as_i64(), p1["reserved"].as_i64()), (Some(0), Some(10)));
    let state = svc.state().await;
    let reserved_of_2: i64 = state["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["items"].as_array().unwrap().iter())
        .filter(|i| i["product_id"] == 2)
        .map(|i| i["quantity"].as_i64().unwrap())
        .sum();
    assert_eq!(svc.stock_of(2).await["reserved"].as_i64().unwrap(), reserved_of_2);
}

#[tokio::test]
async fn concurrent_retries_of_one_key_reserve_once() {
    let svc = Service::start().await;
    let body = order(json!("o-1"), &[(3, 2)]);
    let attempts: Vec<_> = (0..20).map(|_| svc.reserve_req("same-key", &body).send()).collect();
    let answers: Vec<(StatusCode, Value)> = join_all(attempts.into_iter().map(|f| async move {
        let res = f.await.unwrap();
        (res.status(), res.json::<Value>().await.unwrap())
    }))
    .await;
    assert_eq!(answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1);
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::CREATED || *s == StatusCode::OK));
    assert!(answers.iter().all(|(_, r)| r["id"] == answers[0].1["id"]));
    assert_eq!(svc.stock_of(3).await["reserved"], 2);
    assert_eq!(svc.state().await["reservations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn malformed_requests_are_4xx_problems() {
    let svc = Service::start().await;
    for body in [
        "",
        "{",
        "[]",
        "null",
        "{\"order_id\": {}}",
        "{\"order_id\":1,\"items\":{}}",
        "{\"order_id\":1,\"items\":[null]}",
    ] {
        let res = svc
            .http
            .post(svc.url("/v1/reservations"))
            .header("Idempotency-Key", "k")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_client_error(), "{body}: {}", res.status());
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
    let res = svc.http.delete(svc.url("/v1/products/1")).send().await.unwrap();
    problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
    problem(svc.get("/v1/nothing").await, StatusCode::NOT_FOUND, "not-found").await;
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
