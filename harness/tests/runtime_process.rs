//! The process runtime, driven the way a user drives it: the shop comes up with two
//! catalog replicas, takes an order through the gateway, keeps serving reads while a
//! catalog replica is killed, gets it back, and leaves no process behind. And a
//! harness killed with SIGKILL is cleaned up after by the next `gauntlet up`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gauntlet::cluster::binaries::Binaries;
use gauntlet::cluster::ledger::{self, Ledger};
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::process::ProcessRuntime;
use gauntlet::cluster::wiring::Wiring;
use gauntlet::cluster::{ClusterSpec, NodeOp, NodeState, Runtime};
use gauntlet::faults::client::ToxiproxyClient;
use gauntlet::faults::ProxyServer;
use serde_json::{json, Value};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn shop_spec() -> ClusterSpec {
    ClusterSpec::load(&workspace().join("services/cluster.toml")).unwrap()
}

fn binaries() -> Binaries {
    let b = Binaries::for_dir(&workspace(), "debug").unwrap();
    let names: Vec<String> =
        ["shop-users", "shop-catalog", "shop-payments", "shop-orders", "shop-gateway"].map(String::from).to_vec();
    b.ensure(&names, &|m| eprintln!("{m}")).unwrap();
    b
}

fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    stat.rfind(')').and_then(|i| stat.get(i + 2..i + 3)) != Some("Z")
}

async fn shop_order(http: &reqwest::Client, base: &str) -> Value {
    let email = format!("u{}@example.com", std::process::id());
    let res = http
        .post(format!("{base}/api/v1/users"))
        .json(&json!({"email": email, "name": "Ada", "password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let login: Value = http
        .post(format!("{base}/api/v1/login"))
        .json(&json!({"email": email, "password": "correct horse"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let res = http
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(&token)
        .json(&json!({"items": [{"product_id": 3, "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_runs_survives_a_killed_replica_and_leaves_nothing_behind() {
    let runs = tempfile::tempdir().unwrap();
    let plan = ClusterPlan::new(
        shop_spec(),
        &runs.path().join("run"),
        Ports::Ephemeral,
        &ReplicaOverrides::from([("catalog".into(), 2)]),
    )
    .unwrap();
    let proxy = ProxyServer::start("127.0.0.1:0", 1).await.unwrap();
    let wiring = Wiring::Toxiproxy { client: ToxiproxyClient::new(proxy.url()) };
    let mut rt = ProcessRuntime::new(plan, binaries(), wiring, Ledger::new(runs.path()), "t1");
    rt.start(&|m| eprintln!("{m}")).await.unwrap();

    let status = rt.status();
    assert_eq!(status.len(), 6, "five services, catalog twice");
    assert!(status.iter().all(|n| n.state == NodeState::Ready), "{status:?}");
    let pids: Vec<u32> = status.iter().map(|n| n.handle.parse().unwrap()).collect();
    assert!(pids.iter().all(|p| alive(*p)));

    let base = rt.ingress_urls()[0].clone();
    let http = reqwest::Client::new();
    let order = shop_order(&http, &base).await;
    assert_eq!(order["status"], "PAID", "{order}");

    let victim = NodeId { service: "catalog".into(), replica: 1 };
    rt.node_op(&victim, NodeOp::Kill).await.unwrap();
    let killed = rt.status().into_iter().find(|n| n.id == "catalog-1").unwrap();
    assert_eq!(killed.state, NodeState::Killed);
    assert!(!alive(killed.handle.parse().unwrap()));
    for i in 0..30 {
        let res = http.get(format!("{base}/api/v1/products/{}", i % 10 + 1)).send().await.unwrap();
        assert_eq!(res.status(), 200, "read {i} failed with a catalog replica down");
    }

    rt.node_op(&victim, NodeOp::Restart).await.unwrap();
    let back = rt.status().into_iter().find(|n| n.id == "catalog-1").unwrap();
    assert_eq!(back.state, NodeState::Ready);
    let res = http.get(format!("http://{}/v1/products/1", back.addr)).send().await.unwrap();
    assert_eq!(res.status(), 200, "the restarted replica serves");

    // Pause is visible and reversible.
    let users = NodeId { service: "users".into(), replica: 0 };
    rt.node_op(&users, NodeOp::Pause).await.unwrap();
    assert_eq!(rt.status().iter().find(|n| n.id == "users-0").unwrap().state, NodeState::Paused);
    rt.node_op(&users, NodeOp::Resume).await.unwrap();
    assert_eq!(rt.status().iter().find(|n| n.id == "users-0").unwrap().state, NodeState::Ready);

    let all_pids: Vec<u32> = rt.status().iter().map(|n| n.handle.parse().unwrap()).collect();
    rt.teardown().await.unwrap();
    for pid in all_pids.iter().chain(&pids) {
        assert!(!alive(*pid), "pid {pid} outlived the teardown");
    }
    assert!(Ledger::new(runs.path()).entries().is_empty(), "a clean teardown leaves no ledger entry");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_drops_one_nodes_traffic_until_it_is_healed() {
    let runs = tempfile::tempdir().unwrap();
    let replicas = ReplicaOverrides::from([("catalog".into(), 2)]);
    let plan = ClusterPlan::new(shop_spec(), &runs.path().join("run"), Ports::Ephemeral, &replicas).unwrap();
    let proxy = ProxyServer::start("127.0.0.1:0", 1).await.unwrap();
    let api = ToxiproxyClient::new(proxy.url());
    let wiring = Wiring::Toxiproxy { client: api.clone() };
    let mut rt = ProcessRuntime::new(plan, binaries(), wiring, Ledger::new(runs.path()), "t2");
    rt.start(&|_| {}).await.unwrap();
    let proxies = api.proxies().await.unwrap();
    let slot = |name: &str| format!("http://{}/v1/products/77", proxies[name].listen);
    let (to_cut, to_other) = (slot("gateway-0__catalog__0"), slot("gateway-0__catalog__1"));
    let http = reqwest::Client::builder().timeout(Duration::from_millis(1500)).build().unwrap();
    let catalog = NodeId { service: "catalog".into(), replica: 0 };
    assert_eq!(http.get(&to_cut).send().await.unwrap().status(), 200);

    rt.node_op(&catalog, NodeOp::Partition).await.unwrap();
    assert_eq!(rt.status().iter().find(|n| n.id == "catalog-0").unwrap().state, NodeState::Partitioned);
    // Not refused: the connection is taken and the request hangs until the caller's
    // own timeout, as across a real network partition.
    let err = http.get(&to_cut).send().await.expect_err("a partitioned node does not answer");
    assert!(err.is_timeout() && !err.is_connect(), "timed out, not refused: {err:?}");
    // The other replica of the same service is untouched.
    assert_eq!(http.get(&to_other).send().await.unwrap().status(), 200);
    let gateway = rt.ingress_urls()[0].clone();
    let slow = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let res = slow.get(format!("{gateway}/api/v1/products/77")).send().await.unwrap();
    assert_eq!(res.status(), 200, "the gateway reads from the replica it can reach");

    rt.node_op(&catalog, NodeOp::Heal).await.unwrap();
    assert_eq!(http.get(&to_cut).send().await.unwrap().status(), 200, "healed");
    assert!(matches!(rt.node_op(&catalog, NodeOp::Heal).await, Err(gauntlet::cluster::RuntimeError::BadState { .. })));
    rt.teardown().await.unwrap();
    proxy.shutdown().await;
}

/// Starts `gauntlet up` and waits for its "cluster is up" line.
/// Waits for `child` to exit; kills it and fails if it has not within `limit`.
fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("gauntlet did not exit within {limit:?} of its signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gauntlet_up(runs: &Path) -> std::process::Child {
    binaries();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["up", "--profile", "debug", "--ephemeral-ports", "--proxy-listen", "127.0.0.1:0", "--runs"])
        .arg(runs)
        .arg("--cluster")
        .arg(workspace().join("services/cluster.toml"))
        .current_dir(workspace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in out.lines() {
        let line = line.unwrap();
        if line.contains("cluster is up") {
            return child;
        }
        assert!(Instant::now() < deadline, "gauntlet up did not come up");
    }
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = child.wait();
    panic!("gauntlet up ended ({status:?}) before the cluster was up: {err}");
}

/// The reaper `gauntlet` started for its run: its child whose command line is `reap`.
fn reaper_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat[stat.rfind(')')? + 2..].split(' ').nth(1)?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        (ppid == parent && cmdline.split(|b| *b == 0).nth(1) == Some(b"reap")).then_some(pid)
    })
}

fn sigkill(pid: u32) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
}

#[test]
fn nothing_outlives_a_harness_killed_with_sigkill() {
    let runs = tempfile::tempdir().unwrap();
    let mut up = gauntlet_up(runs.path());
    let entry = Ledger::new(runs.path()).live().pop().expect("a live ledger entry");
    let pids: Vec<u32> = entry.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), 5);
    assert!(reaper_of(up.id()).is_some(), "the run has its reaper");

    sigkill(up.id());
    up.wait().unwrap();
    // Within 2 s, without `gauntlet down`: the reaper saw its owner go.
    let deadline = Instant::now() + Duration::from_secs(2);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<&u32> = pids.iter().filter(|p| alive(**p)).collect();
    assert!(left.is_empty(), "node processes still alive 2 s after kill -9 of the harness: {left:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while !Ledger::new(runs.path()).entries().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(Ledger::new(runs.path()).entries().is_empty(), "the reaper forgets the run it cleaned up");
}

#[test]
fn with_its_reaper_killed_too_the_next_up_cleans_up_after_a_killed_harness() {
    let runs = tempfile::tempdir().unwrap();
    let mut first = gauntlet_up(runs.path());
    let entry = Ledger::new(runs.path()).live().pop().expect("a live ledger entry");
    let pids: Vec<u32> = entry.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids.len(), 5);

    // Both lines of defence but the last: the reaper first, then the harness.
    sigkill(reaper_of(first.id()).expect("the run has its reaper"));
    sigkill(first.id());
    first.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(pids.iter().all(|p| alive(*p)), "with no reaper, the nodes are still running");

    let mut second = gauntlet_up(runs.path());
    let mut err = String::new();
    // SIGINT = Ctrl-C: the second run tears itself down and exits 0.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(second.id() as i32), nix::sys::signal::Signal::SIGINT).unwrap();
    // Bounded: a Ctrl-C the harness missed must fail the test, not hang it.
    let status = wait_at_most(&mut second, Duration::from_secs(60));
    std::io::Read::read_to_string(second.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains(&format!("run {} ended without cleaning up; ended", entry.run_id)), "{err}");
    for p in &pids {
        assert!(!alive(*p), "leftover pid {p} was not ended");
    }
    assert!(Ledger::new(runs.path()).entries().is_empty());
    assert!(!ledger::same_process(entry.owner_pid, entry.owner_start_time));
}

#[test]
fn bad_cluster_files_exit_with_code_2_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("name = \"c\"\n[services.a]\nport = 7000\n", "c.toml:2:1: service \"a\" has no `binary` or `command`"),
        (
            "name = \"c\"\nedges = [\"a->b\"]\n[services.a]\nbinary = \"x\"\nport = 7000\n",
            "c.toml:2:10: edge \"a->b\" names unknown service \"b\"",
        ),
        ("name = \"c\"\n[services.a]\nbinary = \"x\"\nport = 7000\nportt = 1\n", "c.toml:5:1: unknown field `portt`"),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("c.toml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
            .args(["up", "--runs"])
            .arg(dir.path().join("runs"))
            .arg("--cluster")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in {err}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(["up", "--cluster", "/nonexistent.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the cluster file"));
}
