//! `gauntlet contracts verify --broker-url` against a fake Pact Broker (no broker runs
//! here): pacts come from "pacts for verification" with the consumer version selectors,
//! a pending WIP pact that fails does not fail the run, and every result is published
//! with the provider version and branch.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

#[derive(Clone, Default)]
struct Broker {
    base: String,
    /// Every POST the broker received: (path, body).
    posts: Arc<Mutex<Vec<(String, Value)>>>,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn committed_pact() -> Value {
    let text = std::fs::read_to_string(workspace().join("contracts/pacts/gateway-catalog.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A work-in-progress pact the provider does not honour yet: it wants a `colour`.
fn wip_pact() -> Value {
    let mut pact = committed_pact();
    let interactions = pact["interactions"].as_array_mut().unwrap();
    interactions.retain(|i| i["description"] == "get a product");
    interactions[0]["description"] = json!("get a product with its colour");
    interactions[0]["response"]["body"]["content"]["colour"] = json!("red");
    interactions[0].as_object_mut().unwrap().remove("key");
    pact
}

async fn index(State(b): State<Broker>) -> Json<Value> {
    let href = format!("{}/pacts/provider/{{provider}}/for-verification", b.base);
    Json(json!({"_links": {"pb:provider-pacts-for-verification": {"href": href, "templated": true}}}))
}

async fn for_verification_link(State(b): State<Broker>, UrlPath(provider): UrlPath<String>) -> Json<Value> {
    Json(json!({"_links": {"self": {"href": format!("{}/pacts/provider/{provider}/for-verification", b.base)}}}))
}

async fn pacts_for_verification(
    State(b): State<Broker>,
    UrlPath(provider): UrlPath<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    b.posts.lock().unwrap().push((format!("for-verification/{provider}"), body));
    let pact = |name: &str, description: &str, pending: bool| {
        json!({
            "shortDescription": description,
            "verificationProperties": {"pending": pending, "notices": [{"when": "before_verification", "text": description}]},
            "_links": {"self": {"href": format!("{}/pacts/{name}", b.base), "name": name}}
        })
    };
    Json(json!({"_embedded": {"pacts": [
        pact("main", "latest from the consumer's main branch", false),
        pact("wip", "a work-in-progress pact", true),
    ]}}))
}

async fn pact(State(b): State<Broker>, UrlPath(name): UrlPath<String>) -> Json<Value> {
    let mut pact = if name == "wip" { wip_pact() } else { committed_pact() };
    pact["_links"] = json!({
        "pb:publish-verification-results": {"href": format!("{}/results/{name}", b.base)},
        "pb:provider": {"href": format!("{}/pacticipants/catalog", b.base)},
    });
    Json(pact)
}

async fn pacticipant(State(b): State<Broker>, UrlPath(name): UrlPath<String>) -> Json<Value> {
    let href = format!("{}/pacticipants/{name}/branches/{{branch}}/versions/{{version}}", b.base);
    Json(json!({"_links": {"pb:branch-version": {"href": href, "templated": true}}}))
}

async fn branch_version(
    State(b): State<Broker>,
    UrlPath((name, branch, version)): UrlPath<(String, String, String)>,
) -> Json<Value> {
    b.posts.lock().unwrap().push((format!("branch/{name}/{branch}"), json!(version)));
    Json(json!({}))
}

async fn results(State(b): State<Broker>, UrlPath(name): UrlPath<String>, Json(body): Json<Value>) -> Json<Value> {
    b.posts.lock().unwrap().push((format!("results/{name}"), body));
    Json(json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacts_come_from_the_broker_and_results_go_back() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let broker = Broker { base: base.clone(), ..Broker::default() };
    let app = Router::new()
        .route("/", get(index))
        .route("/pacts/provider/{provider}/for-verification", get(for_verification_link).post(pacts_for_verification))
        .route("/pacts/{name}", get(pact))
        .route("/results/{name}", post(results))
        .route("/pacticipants/{name}", get(pacticipant))
        .route("/pacticipants/{name}/branches/{branch}/versions/{version}", axum::routing::put(branch_version))
        .with_state(broker.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let scratch = tempfile::tempdir().unwrap();
    let junit = scratch.path().join("junit.xml");
    let args = [
        "contracts",
        "verify",
        "--provider",
        "catalog",
        "--broker-url",
        &base,
        "--selector",
        r#"{"mainBranch": true}"#,
        "--include-wip-since",
        "2026-01-01",
        "--provider-branch",
        "main",
        "--publish",
        "--junit",
        junit.to_str().unwrap(),
    ]
    .map(str::to_string);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet"))
            .args(&args)
            .current_dir(workspace())
            .env_remove("SHOP_CONTRACT_BREAK")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    server.abort();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "a failing pending pact does not fail the run:\n{text}");
    assert!(text.contains("get a product with its colour") && text.contains("FAILED (pending, not gating)"), "{text}");

    let posts = broker.posts.lock().unwrap().clone();
    let (_, request) = posts.iter().find(|(p, _)| p == "for-verification/catalog").expect("pacts for verification");
    assert_eq!(request["consumerVersionSelectors"], json!([{"mainBranch": true}]));
    assert_eq!(request["includePendingStatus"], json!(true));
    assert_eq!(request["includeWipPactsSince"], json!("2026-01-01"));
    assert_eq!(request["providerVersionBranch"], json!("main"));

    let published = |name: &str| posts.iter().find(|(p, _)| p == &format!("results/{name}")).map(|(_, b)| b.clone());
    let main = published("main").expect("the main pact's results are published");
    assert_eq!(main["success"], json!(true), "{main}");
    assert!(main["providerApplicationVersion"].as_str().is_some_and(|v| v.starts_with("src-")), "{main}");
    let wip = published("wip").expect("the WIP pact's results are published");
    assert_eq!(wip["success"], json!(false), "{wip}");
    let (_, version) = posts.iter().find(|(p, _)| p == "branch/catalog/main").expect("the provider branch is recorded");
    assert_eq!(version, &main["providerApplicationVersion"]);
}
