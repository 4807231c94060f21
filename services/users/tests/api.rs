//! The users API on a real socket: every route, its happy path and each documented error.

use std::time::Duration;

use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use shop_kit::auth::JwtKeys;
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

impl Service {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let running = spawn(&dir, extra).await;
        Self { running, http: Client::new(), _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.http.post(self.url(path)).json(&body).send().await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn register(&self, email: &str) -> Value {
        let res = self.post("/v1/users", json!({"email": email, "name": "Ada", "password": "correct horse"})).await;
        assert_eq!(res.status(), StatusCode::CREATED);
        res.json().await.unwrap()
    }
}

async fn spawn(dir: &tempfile::TempDir, extra: &[(&str, &str)]) -> RunningService {
    let db = dir.path().join("users.db");
    let mut env = Env::from_pairs([("SHOP_DEV_DEFAULTS", "1"), ("SHOP_DB", db.to_str().unwrap())]);
    for (k, v) in extra {
        env = env.with(k, *v);
    }
    let config = ServiceConfig::from_env(&env, "users", 0, true).unwrap();
    let app = shop_users::build(config, env, Metrics::new("users")).await.unwrap();
    app.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
}

/// Asserts a problem+json answer of `status` and `slug`; returns the problem body.
async fn problem(res: Response, status: StatusCode, slug: &str) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], format!("https://gauntlet.dev/problems/{slug}"), "{body}");
    body
}

#[tokio::test]
async fn register_then_get() {
    let svc = Service::start().await;
    let res =
        svc.post("/v1/users", json!({"email": " Ada@Example.com ", "name": "Ada", "password": "correct horse"})).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let user: Value = res.json().await.unwrap();
    assert_eq!(user["email"], "Ada@Example.com");
    assert_eq!(user["name"], "Ada");
    assert!(user["id"].as_i64().unwrap() > 0);
    assert!(user["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(user.get("password").is_none() && user.get("password_hash").is_none());
    let fetched: Value = svc.get(&format!("/v1/users/{}", user["id"])).await.json().await.unwrap();
    assert_eq!(fetched, user);
}

#[tokio::test]
async fn bad_registrations_name_the_field() {
    let svc = Service::start().await;
    let cases = [
        (json!({"email": "nope", "name": "Ada", "password": "correct horse"}), "email"),
        (json!({"email": "a@b.co", "name": " ", "password": "correct horse"}), "name"),
        (json!({"email": "a@b.co", "name": "Ada", "password": "short"}), "password"),
        (json!({"email": "a@b.co", "name": "Ada", "password": "x".repeat(129)}), "password"),
        (json!({"name": "Ada", "password": "correct horse"}), "email"),
        (json!({"email": "a@b.co", "password": "correct horse"}), "name"),
        (json!({"email": "a@b.co", "name": "Ada"}), "password"),
    ];
    for (body, field) in cases {
        let p = problem(svc.post("/v1/users", body.clone()).await, StatusCode::BAD_REQUEST, "bad-request").await;
        assert_eq!(p["field"], field, "{body}");
    }
    let wrong_type = svc.post("/v1/users", json!({"email": 5, "name": "Ada", "password": "correct horse"})).await;
    problem(wrong_type, StatusCode::BAD_REQUEST, "bad-request").await;
    let not_json = svc.http.post(svc.url("/v1/users")).body("email=a").send().await.unwrap();
    problem(not_json, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type").await;
    let admin: Value = authed(&svc, ADMIN, "/v1/admin/state").await.json().await.unwrap();
    assert_eq!(admin["users"], 0, "nothing was stored");
}

#[tokio::test]
async fn duplicate_email_is_a_conflict_case_insensitively() {
    let svc = Service::start().await;
    svc.register("ada@example.com").await;
    let res =
        svc.post("/v1/users", json!({"email": "ADA@example.COM", "name": "Other", "password": "other password"})).await;
    problem(res, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn concurrent_duplicate_registrations_create_one_account() {
    let svc = Service::start().await;
    let attempts = (0..8).map(|i| {
        let (http, url) = (svc.http.clone(), svc.url("/v1/users"));
        async move {
            let body = json!({"email": "race@example.com", "name": format!("n{i}"), "password": "correct horse"});
            http.post(url).json(&body).send().await.unwrap().status()
        }
    });
    let statuses = futures_join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{statuses:?}");
    let admin: Value = authed(&svc, ADMIN, "/v1/admin/state").await.json().await.unwrap();
    assert_eq!(admin["users"], 1);
}

#[tokio::test]
async fn login_issues_a_verifiable_token() {
    let svc = Service::start_with(&[("SHOP_USERS_TOKEN_TTL", "15m")]).await;
    let user = svc.register("ada@example.com").await;
    let res = svc.post("/v1/login", json!({"email": "ADA@example.com", "password": "correct horse"})).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["user_id"], user["id"]);
    let claims = JwtKeys::hs256(DEV_SECRET).verify(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, user["id"].to_string());
    assert_eq!(claims.email, "ada@example.com");
    assert_eq!(claims.exp - claims.iat, 900);
}

#[tokio::test]
async fn login_does_not_say_what_was_wrong() {
    let svc = Service::start().await;
    svc.register("ada@example.com").await;
    let wrong_pw = svc.post("/v1/login", json!({"email": "ada@example.com", "password": "wrong horse"})).await;
    let wrong_pw = problem(wrong_pw, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let unknown = svc.post("/v1/login", json!({"email": "bob@example.com", "password": "correct horse"})).await;
    let unknown = problem(unknown, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(wrong_pw["detail"], unknown["detail"]);
    let huge = svc.post("/v1/login", json!({"email": "ada@example.com", "password": "x".repeat(10_000)})).await;
    problem(huge, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let missing = svc.post("/v1/login", json!({"email": "ada@example.com"})).await;
    assert_eq!(problem(missing, StatusCode::BAD_REQUEST, "bad-request").await["field"], "password");
}

#[tokio::test]
async fn get_user_errors() {
    let svc = Service::start().await;
    problem(svc.get("/v1/users/999").await, StatusCode::NOT_FOUND, "not-found").await;
    let zero = problem(svc.get("/v1/users/0").await, StatusCode::BAD_REQUEST, "bad-request").await;
    assert_eq!(zero["field"], "id");
    problem(svc.get("/v1/users/abc").await, StatusCode::BAD_REQUEST, "bad-request").await;
    problem(svc.get("/v1/users/99999999999999999999999").await, StatusCode::BAD_REQUEST, "bad-request").await;
}

async fn authed(svc: &Service, token: &str, path: &str) -> Response {
    svc.http.get(svc.url(path)).bearer_auth(token).send().await.unwrap()
}

#[tokio::test]
async fn admin_state_needs_the_admin_token() {
    let svc = Service::start().await;
    problem(svc.get("/v1/admin/state").await, StatusCode::UNAUTHORIZED, "unauthorized").await;
    problem(authed(&svc, "not-the-token", "/v1/admin/state").await, StatusCode::FORBIDDEN, "forbidden").await;
    svc.register("a@example.com").await;
    svc.register("b@example.com").await;
    let state: Value = authed(&svc, ADMIN, "/v1/admin/state").await.json().await.unwrap();
    assert_eq!(state, json!({"users": 2}));
}

#[tokio::test]
async fn accounts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn(&dir, &[]).await;
    let http = Client::new();
    let res = http
        .post(format!("{}/v1/users", first.url()))
        .json(&json!({"email": "ada@example.com", "name": "Ada", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    first.stop().await;
    let second = spawn(&dir, &[]).await;
    let res = http
        .post(format!("{}/v1/login", second.url()))
        .json(&json!({"email": "ada@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_requests_are_4xx_problems() {
    let svc = Service::start().await;
    let bodies = [
        "",
        "{",
        "[]",
        "null",
        "{\"email\": []}",
        "\"str\"",
        "{\"email\":\"a@b.co\",\"name\":\"A\",\"password\":null}",
    ];
    for path in ["/v1/users", "/v1/login"] {
        for body in bodies {
            let res = svc
                .http
                .post(svc.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(res.status().is_client_error(), "{path} {body}: {}", res.status());
            assert_eq!(res.headers()["content-type"], "application/problem+json");
        }
    }
    let big = "x".repeat(100 * 1024);
    let res = svc.post("/v1/users", json!({"email": "a@b.co", "name": big, "password": "correct horse"})).await;
    problem(res, StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large").await;
    let res = svc.http.delete(svc.url("/v1/users/1")).send().await.unwrap();
    problem(res, StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed").await;
}

async fn futures_join_all<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(tokio::time::timeout(Duration::from_secs(60), h).await.unwrap().unwrap());
    }
    out
}
