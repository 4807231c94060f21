//! An infrastructure node on the process runtime, driven as a user drives it: a NATS
//! JetStream broker started from a `command` with its port and data folder filled in,
//! ready by a TCP check, reached by its consumer through the fault proxy under a
//! `nats://` URL, killed with SIGKILL and restarted with its store kept. And a missing
//! `nats-server` is one clear error that says what to install. And the whole events
//! cluster: seven nodes, a checkout notified to its user through the gateway.
//!
//! Tests that need `nats-server` skip (saying why) where it is not installed, and fail
//! instead under `GAUNTLET_REQUIRE_NATS=1`, which CI sets after installing it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gauntlet::cluster::binaries::Binaries;
use gauntlet::cluster::ledger::Ledger;
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::process::ProcessRuntime;
use gauntlet::cluster::wiring::Wiring;
use gauntlet::cluster::{ClusterSpec, NodeOp, NodeState, Runtime};
use gauntlet::faults::client::ToxiproxyClient;
use gauntlet::faults::ProxyServer;
use shop_common::{checkout, notifications, sign_up};

mod shop_common;

/// `nats-server`, if installed; a missing one is an error under `GAUNTLET_REQUIRE_NATS=1`.
fn nats_server() -> Option<PathBuf> {
    let found = std::process::Command::new("nats-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_NATS=1 but nats-server is not installed (apt-get install nats-server)");
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    }
    found.then(|| PathBuf::from("nats-server"))
}

fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) != Some("Z")
}

/// A broker and one consumer of it (`app`, a plain NATS server that writes the upstream
/// variable it was given to `upstream.txt` in its folder, then serves).
fn broker_cluster(dir: &Path, broker_program: &str) -> PathBuf {
    let text = format!(
        r#"name = "events"
ingress = "app"
edges = ["app->broker"]
[services.broker]
command = ["{broker_program}", "--jetstream", "--addr", "{{host}}", "--port", "{{port}}", "--store_dir", "{{data_dir}}"]
port = 7391
scheme = "nats"
health = "tcp"
ready = "tcp"
install = "apt-get install nats-server"
[services.app]
command = ["sh", "-c", "echo \"$UPSTREAM_BROKER\" > upstream.txt && exec nats-server --addr {{host}} --port {{port}}"]
port = 7392
ready = "tcp"
"#
    );
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The first line a NATS server says on a new connection to `url` (`nats://host:port`),
/// or why there is none within a second.
fn nats_info(url: &str) -> Result<String, String> {
    let addr = url.strip_prefix("nats://").ok_or_else(|| format!("{url} is not a nats:// URL"))?;
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream.try_clone().map_err(|e| e.to_string())?).read_line(&mut line).map_err(|e| e.to_string())?;
    let _ = stream.write_all(b"QUIT\r\n");
    if line.is_empty() {
        Err("closed without a word".into())
    } else {
        Ok(line)
    }
}

async fn start(cluster: &Path, runs: &Path, run_id: &str) -> (ProcessRuntime, ProxyServer) {
    let spec = ClusterSpec::load(cluster).unwrap();
    let plan = ClusterPlan::new(spec, &runs.join("run"), Ports::Ephemeral, &ReplicaOverrides::new()).unwrap();
    let proxy = ProxyServer::start("127.0.0.1:0", 1).await.unwrap();
    let wiring = Wiring::Toxiproxy { client: ToxiproxyClient::new(proxy.url()) };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let binaries = Binaries::for_dir(workspace, "debug").unwrap();
    (ProcessRuntime::new(plan, binaries, wiring, Ledger::new(runs), run_id), proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_is_reached_through_its_proxy_and_keeps_its_store_across_a_kill() {
    let Some(nats) = nats_server() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = broker_cluster(dir.path(), nats.to_str().unwrap());
    let (mut rt, proxy) = start(&cluster, dir.path(), "b1").await;
    rt.start(&|m| eprintln!("{m}")).await.unwrap();
    let status = rt.status();
    assert!(status.iter().all(|n| n.state == NodeState::Ready), "{status:?}");
    let broker = status.iter().find(|n| n.id == "broker-0").unwrap().clone();

    // The consumer got a nats:// URL, and it is the proxy's, not the broker's own port.
    let run = dir.path().join("run");
    let upstream = std::fs::read_to_string(run.join("data/app-0/upstream.txt")).unwrap().trim().to_string();
    assert!(upstream.starts_with("nats://127.0.0.1:"), "{upstream}");
    assert!(
        !upstream.ends_with(&format!(":{}", broker.addr.rsplit(':').next().unwrap())),
        "{upstream} bypasses the proxy"
    );
    let info = nats_info(&upstream).unwrap();
    assert!(info.starts_with("INFO {"), "NATS speaks through the proxy: {info}");
    assert!(info.contains("\"jetstream\":true"), "JetStream is on: {info}");
    let store = run.join("data/broker-0/jetstream");
    assert!(store.is_dir(), "JetStream stores its files in the node's data folder");

    // kill -9: the proxy leads nowhere; a restart is ready again and keeps the store.
    let id = NodeId { service: "broker".into(), replica: 0 };
    let pid: u32 = broker.handle.parse().unwrap();
    rt.node_op(&id, NodeOp::Kill).await.unwrap();
    assert!(!alive(pid));
    assert!(nats_info(&upstream).is_err(), "a killed broker answers nothing through its proxy");
    std::fs::write(store.join("marker"), "kept").unwrap();
    rt.node_op(&id, NodeOp::Restart).await.unwrap();
    assert_eq!(rt.status().iter().find(|n| n.id == "broker-0").unwrap().state, NodeState::Ready);
    let deadline = Instant::now() + Duration::from_secs(5);
    let info = loop {
        match nats_info(&upstream) {
            Ok(info) => break info,
            Err(e) if Instant::now() > deadline => panic!("the restarted broker is not reached: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    assert!(info.contains("\"jetstream\":true"), "{info}");
    assert_eq!(std::fs::read_to_string(store.join("marker")).unwrap(), "kept", "the store survives a restart");

    let pids: Vec<u32> = rt.status().iter().map(|n| n.handle.parse().unwrap()).collect();
    rt.teardown().await.unwrap();
    for pid in pids {
        assert!(!alive(pid), "pid {pid} outlived the teardown");
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_broker_program_says_what_to_install_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = broker_cluster(dir.path(), "gauntlet-test-no-such-nats-server");
    let (mut rt, proxy) = start(&cluster, dir.path(), "b2").await;
    let err = rt.start(&|_| {}).await.expect_err("a missing program cannot start").to_string();
    assert!(err.contains("gauntlet-test-no-such-nats-server"), "names the program: {err}");
    assert!(err.contains("apt-get install nats-server"), "says what to install: {err}");
    assert!(rt.status().iter().all(|n| n.handle.is_empty()), "nothing was started: {:?}", rt.status());
    rt.teardown().await.unwrap();
    proxy.shutdown().await;
}

/// The shop's event-driven half, brought up as `gauntlet up --cluster
/// services/cluster-events.toml` brings it up: seven nodes, and a checkout through the
/// gateway reaches its user as a notification, through the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_shop_runs_seven_nodes_and_a_checkout_is_notified_through_the_gateway() {
    if nats_server().is_none() {
        return;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let binaries = Binaries::for_dir(&workspace, "debug").unwrap();
    let names: Vec<String> =
        ["shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway", "shop-notifications"]
            .map(String::from)
            .to_vec();
    binaries.ensure(&names, &|m| eprintln!("{m}")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::load(&workspace.join("services/cluster-events.toml")).unwrap();
    let plan = ClusterPlan::new(spec, &dir.path().join("run"), Ports::Ephemeral, &ReplicaOverrides::new()).unwrap();
    let proxy = ProxyServer::start("127.0.0.1:0", 1).await.unwrap();
    let wiring = Wiring::Toxiproxy { client: ToxiproxyClient::new(proxy.url()) };
    let mut rt = ProcessRuntime::new(plan, binaries, wiring, Ledger::new(dir.path()), "b3");
    rt.start(&|m| eprintln!("{m}")).await.unwrap();
    let status = rt.status();
    assert_eq!(status.len(), 7, "six services and the broker: {status:?}");
    assert!(status.iter().all(|n| n.state == NodeState::Ready), "{status:?}");

    let base = rt.ingress_urls()[0].clone();
    let http = reqwest::Client::new();
    let token = sign_up(&http, &base, "events@example.com").await;
    let order = checkout(&http, &base, &token, 3).await;
    let items = notifications(&http, &base, &token, 1).await;
    assert_eq!(items.len(), 1, "one notification for the paid order: {items:?}");
    assert_eq!(items[0]["order_id"], order["id"]);
    assert_eq!(items[0]["kind"], "ORDER_PAID");
    let anonymous = http.get(format!("{base}/api/v1/notifications")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401, "a user's notifications need their token");

    rt.teardown().await.unwrap();
    proxy.shutdown().await;
}
