//! The docker runtime, driven as a user would: the shop as containers built FROM
//! scratch from our binaries, catalog at two replicas, an order through the gateway,
//! a killed catalog replica while reads go on, a restart, and a teardown that leaves no
//! container and no network behind.
//!
//! Skips (saying why) when no Docker engine is reachable; fails instead when
//! `GAUNTLET_REQUIRE_DOCKER=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use gauntlet::cluster::binaries::Binaries;
use gauntlet::cluster::docker::{engine_available, DockerRuntime};
use gauntlet::cluster::ledger::Ledger;
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::{ClusterSpec, NodeOp, NodeState, Runtime};
use serde_json::{json, Value};
use shop_common::{checkout, notifications, sign_up};

mod shop_common;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `true` when the test should run; prints why it does not.
fn docker_or_skip() -> bool {
    match engine_available() {
        Ok(()) => true,
        Err(why) if std::env::var("GAUNTLET_REQUIRE_DOCKER").as_deref() == Ok("1") => {
            panic!("GAUNTLET_REQUIRE_DOCKER=1 but no Docker engine is reachable: {why}")
        }
        Err(why) => {
            eprintln!(
                "skipped: no Docker engine is reachable ({why}); set GAUNTLET_REQUIRE_DOCKER=1 to make this a failure"
            );
            false
        }
    }
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_runs_as_containers_and_leaves_nothing_behind() {
    if !docker_or_skip() {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::load(&workspace().join("services/cluster.toml")).unwrap();
    let plan = ClusterPlan::new(
        spec,
        &runs.path().join("run"),
        Ports::Fixed,
        &ReplicaOverrides::from([("catalog".into(), 2)]),
    )
    .unwrap();
    let binaries = Binaries::for_dir(&workspace(), "debug").unwrap();
    let run_id = format!("docker-test-{}", std::process::id());
    let mut rt = DockerRuntime::new(
        plan,
        binaries,
        PathBuf::from(env!("CARGO_BIN_EXE_gauntlet")),
        Ledger::new(runs.path()),
        &run_id,
        7,
    );
    let started = rt.start(&|m| eprintln!("{m}")).await;
    if let Err(e) = started {
        let _ = rt.teardown().await;
        panic!("the docker runtime did not start: {e}");
    }
    let label = format!("label=dev.gauntlet.run={run_id}");
    assert_eq!(docker_lines(&["ps", "-q", "--filter", &label]).len(), 7, "six nodes and the proxy");
    assert!(rt.status().iter().all(|n| n.state == NodeState::Ready));

    let base = rt.ingress_urls()[0].clone();
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"email": "c@example.com", "name": "Cy", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": "c@example.com", "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order: Value = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(login["token"].as_str().unwrap())
        .json(&json!({"items": [{"product_id": 5, "quantity": 1}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(order["status"], "PAID", "{order}");

    let victim = NodeId { service: "catalog".into(), replica: 1 };
    rt.node_op(&victim, NodeOp::Kill).await.unwrap();
    assert_eq!(rt.status().iter().find(|n| n.id == "catalog-1").unwrap().state, NodeState::Killed);
    for i in 0..20 {
        let res = http.get(format!("{base}/api/v1/products/{}", i % 10 + 1)).send().await.unwrap();
        assert_eq!(res.status(), 200, "read {i} with a catalog container killed");
    }
    rt.node_op(&victim, NodeOp::Restart).await.unwrap();
    assert_eq!(rt.status().iter().find(|n| n.id == "catalog-1").unwrap().state, NodeState::Ready);

    let network = rt.network().to_string();
    rt.teardown().await.unwrap();
    assert!(docker_lines(&["ps", "-aq", "--filter", &label]).is_empty(), "containers left behind");
    let nets = docker_lines(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains(&network), "network {network} left behind");
}

#[test]
fn nothing_outlives_a_docker_harness_killed_with_sigkill() {
    if !docker_or_skip() {
        return;
    }
    use std::io::BufRead;
    let runs = tempfile::tempdir().unwrap();
    Binaries::for_dir(&workspace(), "debug")
        .unwrap()
        .ensure(
            &["shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway"].map(String::from),
            &|m| eprintln!("{m}"),
        )
        .unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["up", "--runtime", "docker", "--profile", "debug", "--ephemeral-ports", "--runs"])
        .arg(runs.path())
        .arg("--cluster")
        .arg(workspace().join("services/cluster.toml"))
        .current_dir(workspace())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    let came_up = lines.map_while(Result::ok).any(|l| l.contains("cluster is up"));
    if !came_up {
        let _ = up.kill();
        panic!("gauntlet up --runtime docker ended before the cluster was up: {:?}", up.wait());
    }
    let entry = Ledger::new(runs.path()).live().pop().expect("a live ledger entry");
    let label = format!("label=dev.gauntlet.run={}", entry.run_id);
    assert!(!docker_lines(&["ps", "-q", "--filter", &label]).is_empty(), "the run's containers are up");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    up.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !docker_lines(&["ps", "-aq", "--filter", &label]).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let left = docker_lines(&["ps", "-aq", "--filter", &label]);
    if !left.is_empty() {
        let mut rm = vec!["rm", "-f", "-v"];
        rm.extend(left.iter().map(String::as_str));
        let _ = Command::new("docker").args(&rm).output();
        panic!("containers still there 2 s after kill -9 of the harness: {left:?}");
    }
}

/// `nats-server`, if installed; a missing one is an error under `GAUNTLET_REQUIRE_NATS=1`.
fn nats_installed() -> bool {
    let found = Command::new("nats-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_NATS").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_NATS=1 but nats-server is not installed (apt-get install nats-server)");
        eprintln!("skipped: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

/// The events shop as containers: the broker's image is built from the installed
/// `nats-server` (no registry), seven nodes come up, a checkout reaches its user as a
/// notification; with the broker container killed a checkout still succeeds, and once
/// the broker is back (its store kept in the run's data folder) the outbox drains and
/// that order is notified too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_shop_runs_as_seven_containers_and_survives_a_killed_broker() {
    if !docker_or_skip() || !nats_installed() {
        return;
    }
    let runs = tempfile::tempdir().unwrap();
    let spec = ClusterSpec::load(&workspace().join("services/cluster-events.toml")).unwrap();
    let plan = ClusterPlan::new(spec, &runs.path().join("run"), Ports::Fixed, &ReplicaOverrides::new()).unwrap();
    let binaries = Binaries::for_dir(&workspace(), "debug").unwrap();
    let run_id = format!("docker-events-{}", std::process::id());
    let mut rt = DockerRuntime::new(
        plan,
        binaries,
        PathBuf::from(env!("CARGO_BIN_EXE_gauntlet")),
        Ledger::new(runs.path()),
        &run_id,
        7,
    );
    if let Err(e) = rt.start(&|m| eprintln!("{m}")).await {
        let _ = rt.teardown().await;
        panic!("the docker runtime did not start the events shop: {e}");
    }
    let status = rt.status();
    assert_eq!(status.len(), 7, "six services and the broker: {status:?}");
    assert!(status.iter().all(|n| n.state == NodeState::Ready), "{status:?}");
    assert!(status.iter().any(|n| n.service == "broker"), "{status:?}");

    let base = rt.ingress_urls()[0].clone();
    let http = reqwest::Client::new();
    let token = sign_up(&http, &base, "ev@example.com").await;
    let first = checkout(&http, &base, &token, 4).await;
    let items = notifications(&http, &base, &token, 1).await;
    assert_eq!(items.len(), 1, "the paid order notified once: {items:?}");
    assert_eq!(items[0]["order_id"], first["id"]);

    let broker = NodeId { service: "broker".into(), replica: 0 };
    rt.node_op(&broker, NodeOp::Kill).await.unwrap();
    let second = checkout(&http, &base, &token, 4).await;
    rt.node_op(&broker, NodeOp::Restart).await.unwrap();
    let items = notifications(&http, &base, &token, 2).await;
    let ids: Vec<&Value> = items.iter().map(|n| &n["order_id"]).collect();
    assert_eq!(items.len(), 2, "both orders notified once each: {items:?}");
    assert!(ids.contains(&&second["id"]), "the order paid while the broker was down: {items:?}");

    let label = format!("label=dev.gauntlet.run={run_id}");
    rt.teardown().await.unwrap();
    assert!(docker_lines(&["ps", "-aq", "--filter", &label]).is_empty(), "containers left behind");
}

/// `gauntlet up --runtime docker` on the events cluster, as a user runs it: seven
/// containers (the broker's image built FROM scratch from the installed nats-server)
/// and the proxy; a paid order reaches its user as a notification, through orders'
/// relay, the broker container and notifications; Ctrl-C leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_cluster_runs_as_seven_containers_and_a_paid_order_reaches_its_user() {
    if !docker_or_skip() || !nats_installed() {
        return;
    }
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let runs = tempfile::tempdir().unwrap();
    let names = ["shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway", "shop-notifications"];
    Binaries::for_dir(&workspace(), "debug").unwrap().ensure(&names.map(String::from), &|m| eprintln!("{m}")).unwrap();
    let mut up = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["up", "--runtime", "docker", "--profile", "debug", "--ephemeral-ports", "--runs"])
        .arg(runs.path())
        .arg("--cluster")
        .arg(workspace().join("services/cluster-events.toml"))
        .current_dir(workspace())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    // Lines arrive on a thread so that waiting for them is bounded.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = up.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut ingress = None;
    let mut came_up = false;
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        eprintln!("up: {line}");
        if let Some(url) = line.strip_prefix("ingress:") {
            ingress = url.split([',', ' ']).find(|w| w.starts_with("http")).map(String::from);
        }
        if line.contains("cluster is up") {
            came_up = true;
            break;
        }
    }
    if !came_up {
        let _ = up.kill();
        panic!("gauntlet up --runtime docker did not bring the events cluster up: {:?}", up.wait());
    }
    let entry = Ledger::new(runs.path()).live().pop().expect("a live ledger entry");
    let label = format!("label=dev.gauntlet.run={}", entry.run_id);
    let running = docker_lines(&["ps", "--filter", &label, "--format", "{{.Names}}"]);
    assert_eq!(running.len(), 8, "seven nodes and the proxy: {running:?}");
    assert!(running.iter().any(|n| n.contains("broker")), "the broker is a container: {running:?}");

    let base = ingress.expect("gauntlet up printed its ingress");
    let http = reqwest::Client::new();
    let token = sign_up(&http, &base, "d@example.com").await;
    let order = checkout(&http, &base, &token, 3).await;
    let mine = notifications(&http, &base, &token, 1).await;
    assert_eq!(mine.first().map(|n| &n["order_id"]), Some(&order["id"]), "the paid order was notified: {mine:?}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while up.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if up.try_wait().unwrap().is_none() {
        let _ = up.kill();
        panic!("gauntlet up did not stop within 60 s of Ctrl-C");
    }
    let left = docker_lines(&["ps", "-aq", "--filter", &label]);
    assert!(left.is_empty(), "containers left behind: {left:?}");
}
