//! The operational surface every service gets from `ServiceApp`, on real sockets.

use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
use shop_kit::client::{ClientConfig, UpstreamClient, UpstreamRequest};
use shop_kit::error::Problem;
use shop_kit::metrics::Metrics;
use shop_kit::server::RunningService;
use shop_kit::{Env, Json, ServiceApp, ServiceConfig};
use tokio::net::TcpListener;

fn config(env: Env) -> ServiceConfig {
    ServiceConfig::from_env(&env.with("SHOP_DEV_DEFAULTS", "1").with("SHOP_BODY_LIMIT", "1024"), "test", 0, false)
        .unwrap()
}

#[derive(serde::Deserialize, serde::Serialize)]
struct Item {
    name: String,
    qty: u32,
}

async fn spawn(router: Router, db: Option<shop_kit::Db>) -> RunningService {
    let mut app = ServiceApp::new(config(Env::default()), Metrics::new("test"), router);
    if let Some(db) = db {
        app = app.with_db(db);
    }
    app.spawn(TcpListener::bind("127.0.0.1:0").await.unwrap())
}

fn demo_router() -> Router {
    Router::new()
        .route("/items", post(|Json(i): Json<Item>| async move { Json(i) }))
        .route("/panic", get(|| async { panic!("boom") as &'static str }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                "done"
            }),
        )
}

async fn problem(res: reqwest::Response) -> (u16, Problem) {
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = shop_kit::Db::open(&dir.path().join("t.db"), &[], shop_kit::db::Sync::Normal).unwrap();
    let svc = spawn(demo_router(), Some(db)).await;
    let http = reqwest::Client::new();
    assert_eq!(http.get(format!("{}/health", svc.url())).send().await.unwrap().status(), 200);
    assert_eq!(http.get(format!("{}/ready", svc.url())).send().await.unwrap().status(), 200);
    let res = http
        .post(format!("{}/items", svc.url()))
        .json(&serde_json::json!({"name": "a", "qty": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = http.get(format!("{}/metrics", svc.url())).send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"shop_http_requests_total{method="POST",route="/items",status="200",service="test"} 1"#),
        "{text}"
    );
    assert!(text.contains("shop_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains("shop_http_requests_in_flight"), "{text}");
}

#[tokio::test]
async fn client_mistakes_are_problem_json_4xx() {
    let svc = spawn(demo_router(), None).await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", svc.url());

    let (s, p) = problem(http.get(url("/nope")).send().await.unwrap()).await;
    assert_eq!((s, p.type_uri.as_str()), (404, "https://gauntlet.dev/problems/not-found"));
    let (s, p) = problem(http.delete(url("/items")).send().await.unwrap()).await;
    assert_eq!((s, p.type_uri.as_str()), (405, "https://gauntlet.dev/problems/method-not-allowed"));
    let (s, p) =
        problem(http.post(url("/items")).body("{}").header("content-type", "application/json").send().await.unwrap())
            .await;
    assert_eq!(s, 400);
    assert!(p.detail.unwrap().contains("missing field"));
    let (s, _) = problem(
        http.post(url("/items"))
            .body(r#"{"name":1,"qty":1}"#)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    let (s, _) = problem(http.post(url("/items")).body("x").send().await.unwrap()).await;
    assert_eq!(s, 415);
    let huge = format!(r#"{{"name":"{}","qty":1}}"#, "x".repeat(4096));
    let (s, p) =
        problem(http.post(url("/items")).body(huge).header("content-type", "application/json").send().await.unwrap())
            .await;
    assert_eq!((s, p.type_uri.as_str()), (413, "https://gauntlet.dev/problems/payload-too-large"));
    let (s, p) = problem(http.get(url("/panic")).send().await.unwrap()).await;
    assert_eq!((s, p.type_uri.as_str()), (500, "https://gauntlet.dev/problems/internal"));
}

#[tokio::test]
async fn trace_context_follows_a_request_across_services() {
    // Service B echoes the traceparent it received; service A calls B through the
    // resilient client inside a request.
    let b = spawn(
        Router::new().route(
            "/echo",
            get(|h: axum::http::HeaderMap| async move {
                Json(serde_json::json!({
                    "traceparent": h.get("traceparent").and_then(|v| v.to_str().ok()),
                    "request_id": h.get("x-request-id").and_then(|v| v.to_str().ok()),
                }))
            }),
        ),
        None,
    )
    .await;
    let client = UpstreamClient::new("b", &[b.url()], ClientConfig::default(), None);
    let a = spawn(
        Router::new().route(
            "/call",
            get(move || {
                let client = client.clone();
                async move {
                    let v: serde_json::Value = client.call(UpstreamRequest::get("/echo")).await.unwrap();
                    Json(v)
                }
            }),
        ),
        None,
    )
    .await;
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let res = reqwest::Client::new()
        .get(format!("{}/call", a.url()))
        .header("traceparent", incoming)
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert!(res.headers()["traceparent"].to_str().unwrap().contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert_eq!(res.headers()["x-request-id"], "req-42");
    let seen: serde_json::Value = res.json().await.unwrap();
    let sent = seen["traceparent"].as_str().unwrap();
    assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{sent}");
    assert!(!sent.contains("00f067aa0ba902b7"), "a new span id per hop: {sent}");
    assert_eq!(seen["request_id"], "req-42");
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let svc = spawn(demo_router(), None).await;
    let url = format!("{}/slow", svc.url());
    let addr = svc.addr;
    let inflight = tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    svc.stop().await;
    assert_eq!(inflight.await.unwrap(), "done");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer listening");
}
