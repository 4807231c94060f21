//! Conformance of the embedded server's HTTP API with Toxiproxy 2.x, over raw HTTP:
//! every endpoint, its status codes and its error bodies; and the typed errors of the
//! async client.

mod proxy_common;

use gauntlet::faults::model::{ProxyConfig, Stream, Toxic, ToxicKind};
use gauntlet::faults::{ClientError, ProxyServer};
use proxy_common::*;
use serde_json::{json, Value};

/// A raw HTTP client of one server.
struct Raw {
    base: String,
    http: reqwest::Client,
}

impl Raw {
    fn new(server: &ProxyServer) -> Self {
        Self { base: server.url(), http: reqwest::Client::new() }
    }

    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = tokio::time::timeout(STEP, req.send()).await.expect("in time").expect("sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }
}

fn err(status: u16, message: &str) -> Value {
    json!({"error": message, "status": status})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_answers_toxiproxy_json() {
    let (server, _) = server(1).await;
    let resp = reqwest::get(format!("{}/version", server.url())).await.expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json;charset=utf-8")
    );
    let v: Value = resp.json().await.expect("json");
    assert!(v["version"].as_str().is_some_and(|s| s.starts_with("2.")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_endpoints_statuses_and_error_bodies() {
    let (server, _) = server(2).await;
    let raw = Raw::new(&server);
    let up = echo_server().await.to_string();

    assert_eq!(raw.call("GET", "/proxies", None).await, (200, json!({})));

    let body = format!(r#"{{"name":"a","listen":"127.0.0.1:0","upstream":"{up}"}}"#);
    let (status, created) = raw.call("POST", "/proxies", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "a");
    assert_eq!(created["upstream"], up.as_str());
    assert_eq!(created["enabled"], true);
    assert_eq!(created["toxics"], json!([]));
    let listen = created["listen"].as_str().unwrap_or_default().to_string();
    assert!(listen.starts_with("127.0.0.1:") && !listen.ends_with(":0"), "{listen}");

    assert_eq!(raw.call("POST", "/proxies", Some(&body)).await, (409, err(409, "proxy already exists")));
    let no_name = format!(r#"{{"upstream":"{up}"}}"#);
    assert_eq!(raw.call("POST", "/proxies", Some(&no_name)).await, (400, err(400, "missing required field: name")));
    assert_eq!(
        raw.call("POST", "/proxies", Some(r#"{"name":"b"}"#)).await,
        (400, err(400, "missing required field: upstream"))
    );
    assert_eq!(raw.call("POST", "/proxies", Some("")).await, (400, err(400, "bad request body: EOF")));
    let (status, malformed) = raw.call("POST", "/proxies", Some("{\"name\": ")).await;
    assert_eq!(status, 400);
    assert!(malformed["error"].as_str().is_some_and(|e| e.starts_with("bad request body: ")), "{malformed}");
    assert_eq!(malformed["status"], 400);
    let (status, wrong_type) = raw.call("POST", "/proxies", Some(r#"{"name": 5, "upstream": "x"}"#)).await;
    assert_eq!(status, 400);
    assert!(wrong_type["error"].as_str().is_some_and(|e| e.contains("name must be a string")), "{wrong_type}");

    let (status, shown) = raw.call("GET", "/proxies/a", None).await;
    assert_eq!((status, shown["listen"].as_str()), (200, Some(listen.as_str())));
    assert_eq!(raw.call("GET", "/proxies/nope", None).await, (404, err(404, "proxy not found")));
    let (_, all) = raw.call("GET", "/proxies", None).await;
    assert_eq!(all["a"]["name"], "a");

    let (status, disabled) = raw.call("PATCH", "/proxies/a", Some(r#"{"enabled": false}"#)).await;
    assert_eq!((status, &disabled["enabled"], &disabled["upstream"]), (200, &json!(false), &json!(up)));
    let (status, enabled) = raw.call("POST", "/proxies/a", Some(r#"{"enabled": true}"#)).await;
    assert_eq!((status, &enabled["enabled"]), (200, &json!(true)));
    assert_eq!(enabled["listen"].as_str(), Some(listen.as_str()), "re-enabled on the same address");
    assert_eq!(
        raw.call("PATCH", "/proxies/nope", Some(r#"{"enabled": false}"#)).await,
        (404, err(404, "proxy not found"))
    );
    let (status, bad) = raw.call("PATCH", "/proxies/a", Some(r#"{"enabled": "no"}"#)).await;
    assert_eq!(status, 400);
    assert!(bad["error"].as_str().is_some_and(|e| e.contains("enabled must be a boolean")), "{bad}");

    assert_eq!(raw.call("DELETE", "/proxies/a", None).await, (204, Value::Null));
    assert_eq!(raw.call("DELETE", "/proxies/a", None).await, (404, err(404, "proxy not found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxic_endpoints_statuses_and_error_bodies() {
    let (server, client) = server(3).await;
    let raw = Raw::new(&server);
    proxy_to(&client, "a", echo_server().await).await;

    let (status, toxic) =
        raw.call("POST", "/proxies/a/toxics", Some(r#"{"type":"latency","attributes":{"latency":100}}"#)).await;
    assert_eq!(status, 200, "{toxic}");
    assert_eq!(
        toxic,
        json!({"attributes": {"latency": 100, "jitter": 0}, "name": "latency_downstream",
               "type": "latency", "stream": "downstream", "toxicity": 1.0})
    );
    let again = raw.call("POST", "/proxies/a/toxics", Some(r#"{"type":"latency","attributes":{"latency":1}}"#)).await;
    assert_eq!(again, (409, err(409, "toxic already exists")));
    assert_eq!(
        raw.call("POST", "/proxies/a/toxics", Some(r#"{"type":"jam"}"#)).await,
        (400, err(400, "invalid toxic type"))
    );
    assert_eq!(
        raw.call("POST", "/proxies/a/toxics", Some(r#"{"type":"latency","stream":"sideways"}"#)).await,
        (400, err(400, "stream was invalid, can be either upstream or downstream"))
    );
    let (status, negative) = raw
        .call("POST", "/proxies/a/toxics", Some(r#"{"name":"n","type":"bandwidth","attributes":{"rate":-1}}"#))
        .await;
    assert_eq!(status, 400);
    assert_eq!(negative["error"], "bad request body: attributes.rate must not be negative, got -1");
    let (status, malformed) = raw.call("POST", "/proxies/a/toxics", Some("[1,")).await;
    assert_eq!(status, 400);
    assert!(malformed["error"].as_str().is_some_and(|e| e.starts_with("bad request body: ")));
    assert_eq!(
        raw.call("POST", "/proxies/nope/toxics", Some(r#"{"type":"latency"}"#)).await,
        (404, err(404, "proxy not found"))
    );

    let (status, list) = raw.call("GET", "/proxies/a/toxics", None).await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(1)));
    assert_eq!(raw.call("GET", "/proxies/nope/toxics", None).await, (404, err(404, "proxy not found")));
    let (status, shown) = raw.call("GET", "/proxies/a/toxics/latency_downstream", None).await;
    assert_eq!((status, &shown), (200, &toxic));
    assert_eq!(raw.call("GET", "/proxies/a/toxics/nope", None).await, (404, err(404, "toxic not found")));

    let (status, patched) = raw
        .call("PATCH", "/proxies/a/toxics/latency_downstream", Some(r#"{"attributes":{"jitter":5},"toxicity":0.5}"#))
        .await;
    assert_eq!(status, 200);
    assert_eq!(patched["attributes"], json!({"latency": 100, "jitter": 5}));
    assert_eq!(patched["toxicity"], 0.5);
    let (status, bad) = raw.call("POST", "/proxies/a/toxics/latency_downstream", Some(r#"{"toxicity": 2}"#)).await;
    assert_eq!(status, 400);
    assert_eq!(bad["error"], "bad request body: toxicity must be between 0 and 1, got 2");
    assert_eq!(raw.call("PATCH", "/proxies/a/toxics/nope", Some("{}")).await, (404, err(404, "toxic not found")));

    let (_, proxy) = raw.call("GET", "/proxies/a", None).await;
    assert_eq!(proxy["toxics"].as_array().map(Vec::len), Some(1));

    assert_eq!(raw.call("DELETE", "/proxies/a/toxics/latency_downstream", None).await, (204, Value::Null));
    assert_eq!(
        raw.call("DELETE", "/proxies/a/toxics/latency_downstream", None).await,
        (404, err(404, "toxic not found"))
    );
    assert_eq!(raw.call("DELETE", "/proxies/nope/toxics/x", None).await, (404, err(404, "proxy not found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxics_list_upstream_first_in_the_order_added() {
    let (_server, client) = server(4).await;
    proxy_to(&client, "a", echo_server().await).await;
    add(&client, "a", ToxicKind::SlowClose { delay: 1 }, Stream::Downstream).await;
    add(&client, "a", ToxicKind::Timeout { timeout: 0 }, Stream::Upstream).await;
    add(&client, "a", ToxicKind::LimitData { bytes: 9 }, Stream::Downstream).await;
    let names: Vec<String> = client.toxics("a").await.expect("toxics").into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["timeout_upstream", "slow_close_downstream", "limit_data_downstream"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn populate_creates_validates_first_and_keeps_unchanged_proxies() {
    let (server, client) = server(5).await;
    let raw = Raw::new(&server);
    let up = echo_server().await.to_string();
    let body = format!(r#"[{{"name":"p1","upstream":"{up}"}},{{"name":"p2","upstream":"{up}","enabled":false}}]"#);
    let (status, out) = raw.call("POST", "/populate", Some(&body)).await;
    assert_eq!(status, 201, "{out}");
    assert_eq!(out["proxies"].as_array().map(Vec::len), Some(2));
    assert_eq!(out["proxies"][1]["enabled"], false);

    let bad = format!(r#"[{{"name":"p3","upstream":"{up}"}},{{"name":"p4"}}]"#);
    assert_eq!(
        raw.call("POST", "/populate", Some(&bad)).await,
        (400, err(400, "missing required field: upstream at proxy 2"))
    );
    assert_eq!(raw.call("GET", "/proxies/p3", None).await.0, 404, "a refused populate created p3");
    let (status, not_array) = raw.call("POST", "/populate", Some(r#"{"name":"x"}"#)).await;
    assert_eq!(status, 400, "{not_array}");

    add(&client, "p1", ToxicKind::Latency { latency: 1, jitter: 0 }, Stream::Upstream).await;
    let (status, again) = raw.call("POST", "/populate", Some(&format!(r#"[{{"name":"p1","upstream":"{up}"}}]"#))).await;
    assert_eq!(status, 201);
    assert_eq!(again["proxies"][0]["toxics"].as_array().map(Vec::len), Some(1), "unchanged proxy replaced");
    assert_eq!(raw.call("POST", "/populate", Some("[]")).await, (201, json!({"proxies": []})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_enables_every_proxy_and_removes_every_toxic() {
    let (server, client) = server(6).await;
    let raw = Raw::new(&server);
    let addr = proxy_to(&client, "a", echo_server().await).await;
    add(&client, "a", ToxicKind::Timeout { timeout: 0 }, Stream::Downstream).await;
    client.set_enabled("a", false).await.expect("disabled");
    assert_eq!(raw.call("POST", "/reset", None).await, (204, Value::Null));
    let proxy = client.proxy("a").await.expect("proxy");
    assert!(proxy.enabled);
    assert!(proxy.toxics.is_empty());
    let mut stream = connect(addr).await;
    assert_eq!(round_trip(&mut stream, b"ok").await.0, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_bytes_per_proxy_and_direction() {
    let (server, client) = server(7).await;
    let addr = proxy_to(&client, "m", echo_server().await).await;
    let mut stream = connect(addr).await;
    round_trip(&mut stream, &[1u8; 1234]).await;
    let wanted = [
        ("toxiproxy_proxy_received_bytes_total", "upstream"),
        ("toxiproxy_proxy_sent_bytes_total", "upstream"),
        ("toxiproxy_proxy_received_bytes_total", "downstream"),
        ("toxiproxy_proxy_sent_bytes_total", "downstream"),
    ];
    let counted = |text: &str, metric: &str, direction: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{metric}{{direction=\"{direction}\"")) && l.contains("proxy=\"m\""));
        line.is_some_and(|l| l.ends_with(" 1234"))
    };
    // The client has its echo once the proxy wrote it; the proxy counts the write right
    // after, so on a busy machine the counters may trail the client by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let resp = reqwest::get(format!("{}/metrics", server.url())).await.expect("get");
        assert_eq!(resp.status().as_u16(), 200);
        let text = resp.text().await.expect("text");
        if wanted.iter().all(|(m, d)| counted(&text, m, d)) || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    for (metric, direction) in wanted {
        assert!(counted(&text, metric, direction), "{metric} {direction}:\n{text}");
    }
    assert!(text.contains("gauntlet_proxy_connections_total{proxy=\"m\"} 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_address_in_use_is_a_toxiproxy_error_not_a_panic() {
    let (server, _) = server(8).await;
    let raw = Raw::new(&server);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let body = format!(r#"{{"name":"a","listen":"{addr}","upstream":"127.0.0.1:1"}}"#);
    assert_eq!(
        raw.call("POST", "/proxies", Some(&body)).await,
        (500, err(500, &format!("listen tcp {addr}: bind: address already in use")))
    );
    assert_eq!(raw.call("GET", "/proxies/a", None).await.0, 404);
    let started = ProxyServer::start(&addr.to_string(), 1).await;
    let message = started.err().map(|e| e.to_string());
    assert_eq!(message, Some(format!("listen tcp {addr}: bind: address already in use")));

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["proxy", "--listen", &addr.to_string(), "--seed", "1"])
        .output()
        .expect("gauntlet runs");
    assert_eq!(out.status.code(), Some(3), "harness failure exit code");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("address already in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_unknown_routes_and_wrong_methods_are_refused() {
    let (server, _) = server(9).await;
    let http = reqwest::Client::new();
    let browser =
        http.get(format!("{}/proxies", server.url())).header("user-agent", "Mozilla/5.0").send().await.expect("sent");
    assert_eq!(browser.status().as_u16(), 403);
    let raw = Raw::new(&server);
    assert_eq!(raw.call("GET", "/nothing", None).await.0, 404);
    assert_eq!(raw.call("PUT", "/proxies", Some("{}")).await.0, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_surfaces_every_error_status_as_a_typed_error() {
    let (_server, client) = server(10).await;
    let up = echo_server().await;
    proxy_to(&client, "a", up).await;
    let dup = client.create_proxy(&ProxyConfig::new("a", "127.0.0.1:0", up.to_string())).await;
    assert!(matches!(&dup, Err(ClientError::Conflict { message }) if message == "proxy already exists"), "{dup:?}");
    let missing = client.proxy("nope").await;
    assert!(matches!(&missing, Err(ClientError::NotFound { message }) if message == "proxy not found"), "{missing:?}");
    let toxic = Toxic::new(ToxicKind::Latency { latency: 1, jitter: 0 }, Stream::Upstream);
    client.add_toxic("a", &toxic).await.expect("added");
    let again = client.add_toxic("a", &toxic).await;
    assert!(matches!(again, Err(ClientError::Conflict { .. })), "{again:?}");
    let bad = client.update_toxic("a", &toxic.name, json!({"attributes": {"latency": -3}})).await;
    assert!(
        matches!(&bad, Err(ClientError::BadRequest { message }) if message.contains("attributes.latency")),
        "{bad:?}"
    );
    assert_eq!(bad.err().and_then(|e| e.status()), Some(400));
    let gone = client.remove_toxic("a", "nope").await;
    assert!(matches!(gone, Err(ClientError::NotFound { .. })));
    let unreachable = gauntlet::faults::ToxiproxyClient::new("http://127.0.0.1:1").version().await;
    assert!(matches!(unreachable, Err(ClientError::Transport { .. })), "{unreachable:?}");
    let got = client.toxic("a", &toxic.name).await.expect("toxic");
    assert_eq!(got, toxic);
    assert!(client.version().await.expect("version").starts_with("2."));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauntlet_proxy_serves_the_api_and_stops_on_sigterm() {
    use std::io::BufRead;
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["proxy", "--listen", &listen, "--seed", "77"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gauntlet starts");
    let stdout = child.stdout.take().expect("stdout");
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        line
    });
    let line = tokio::time::timeout(STEP, first_line).await.expect("announced in time").expect("line");
    let client = gauntlet::faults::ToxiproxyClient::new(format!("http://{listen}"));
    let version = client.version().await;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + STEP;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(line.contains(&format!("http://{listen}")) && line.contains("seed 77"), "{line}");
    assert!(version.is_ok_and(|v| v.starts_with("2.")));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "did not stop cleanly on SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_style_addresses_without_a_host_mean_loopback() {
    let (_server, client) = server(11).await;
    let echo = echo_server().await;
    let proxy = client.create_proxy(&ProxyConfig::new("go", ":0", format!(":{}", echo.port()))).await.expect("created");
    assert!(proxy.listen.starts_with("127.0.0.1:"), "{}", proxy.listen);
    let mut stream = connect(proxy.listen.parse().expect("addr")).await;
    assert_eq!(round_trip(&mut stream, b"go").await.0, b"go");
}
