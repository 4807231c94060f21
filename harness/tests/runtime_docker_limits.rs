//! Faults on containers' own resources, on two programs this project did not write
//! (Redis and webdis, from Debian's packages, each a container built FROM scratch):
//! real packet drops in webdis's network namespace on its calls to Redis, counted by
//! the kernel and lifted after; Redis's CPU capped by `docker update --cpus` until the
//! kernel throttles it, and its memory by `--memory`, each set back when lifted.
//!
//! Skips, saying why, without a Docker engine, without redis-server and webdis, or
//! without root, nft and nsenter; fails instead under GAUNTLET_REQUIRE_DOCKER=1 (and
//! GAUNTLET_REQUIRE_EXAMPLES=1 for the programs), which `.ci/run` sets after installing
//! them.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use gauntlet::cluster::binaries::Binaries;
use gauntlet::cluster::docker::{engine_available, DockerRuntime};
use gauntlet::cluster::ledger::Ledger;
use gauntlet::cluster::limits::{container, Direction};
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::{ClusterSpec, NodeLimit, Runtime};
use scenario_common::{missing_programs, runs_or_skips};

mod scenario_common;

const CLUSTER: &str = r#"
name = "limits"
ingress = "web"
edges = ["web->store"]
[defaults]
ready_timeout = "30s"
[services.store]
command = ["redis-server", "--port", "{port}", "--bind", "{host}", "--dir", "{data_dir}", "--save", "", "--protected-mode", "no"]
port = 7470
scheme = "redis"
health = "tcp"
ready = "tcp"
[services.web]
command = ["webdis", "{data_dir}/webdis.json"]
files = { "webdis.json" = "webdis.json.in" }
port = 7471
health = "/PING"
ready = "/PING"
"#;

const WEBDIS: &str = r#"{{ "redis_host": "{upstream.store.host}", "redis_port": {upstream.store.port},
  "http_host": "{host}", "http_port": {port}, "daemonize": false, "threads": 2, "pool_size": 4 }}
"#;

fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}

fn can_run() -> bool {
    if let Err(why) = engine_available() {
        assert!(!required("GAUNTLET_REQUIRE_DOCKER"), "GAUNTLET_REQUIRE_DOCKER=1 but no Docker engine: {why}");
        eprintln!("skipped: no Docker engine is reachable ({why})");
        return false;
    }
    let missing = missing_programs(&["redis-server", "webdis"]);
    runs_or_skips(&missing, "GAUNTLET_REQUIRE_EXAMPLES", "apt-get install redis-server webdis")
        && runs_or_skips(&container::packet_loss_missing(), "GAUNTLET_REQUIRE_DOCKER", "root, nftables, util-linux")
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `n` requests to webdis, one at a time: how many were answered 200.
async fn requests(base: &str, n: usize) -> usize {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut ok = 0;
    for i in 0..n {
        let r = client.get(format!("{base}/SET/k{i}/{}", "v".repeat(2000))).send().await;
        ok += usize::from(r.is_ok_and(|r| r.status().is_success()));
    }
    ok
}

/// The share in a packet-loss effect: "dropped D of C packet(s) (S%, ...".
fn dropped_share(detail: &str) -> f64 {
    let pct = detail.split("packet(s) (").nth(1).and_then(|s| s.split('%').next()).unwrap_or_default();
    pct.parse::<f64>().unwrap_or(-1.0) / 100.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_lose_packets_and_are_starved_for_real_then_given_back() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cluster.toml"), CLUSTER).unwrap();
    std::fs::write(dir.path().join("webdis.json.in"), WEBDIS).unwrap();
    let spec = ClusterSpec::load(&dir.path().join("cluster.toml")).unwrap();
    let binaries = Binaries::for_cluster(&spec, dir.path(), "debug").unwrap();
    let plan = ClusterPlan::new(spec, &dir.path().join("run"), Ports::Ephemeral, &ReplicaOverrides::new()).unwrap();
    let run_id = format!("docker-limits-{}", std::process::id());
    let gauntlet = PathBuf::from(env!("CARGO_BIN_EXE_gauntlet"));
    let mut rt = DockerRuntime::new(plan, binaries, gauntlet, Ledger::new(dir.path()), &run_id, 5);
    let web = NodeId { service: "web".into(), replica: 0 };
    let store = NodeId { service: "store".into(), replica: 0 };
    let loss = NodeLimit::PacketLoss { probability: 0.3, direction: Direction::Both, peer: Some("store".into()) };
    let cpu = NodeLimit::Cpu { share: 0.02 };
    let memory = NodeLimit::Memory { bytes: 48 << 20 };
    rt.prepare_limits(&[(web.clone(), loss.clone()), (store.clone(), cpu.clone()), (store.clone(), memory.clone())])
        .unwrap();
    if let Err(e) = rt.start(&|m| eprintln!("{m}")).await {
        let _ = rt.teardown().await;
        panic!("the cluster did not start: {e}");
    }
    let base = rt.ingress_urls()[0].clone();
    let status = rt.status();
    let handle = |id: &NodeId| {
        let short = status.iter().find(|n| n.id == id.to_string()).map(|n| n.handle.clone()).unwrap();
        docker(&["inspect", "-f", "{{.Id}}", &short])
    };
    let (web_cid, store_cid) = (handle(&web), handle(&store));
    let result = std::panic::AssertUnwindSafe(async {
        assert_eq!(requests(&base, 5).await, 5, "webdis answers through its proxy before any fault");

        // Packet loss: the kernel drops about 30% of webdis's packets to and from Redis's
        // slot; TCP retransmits them, so the requests still succeed, later.
        let pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &web_cid]).parse().unwrap();
        rt.limit(&web, &loss).await.unwrap();
        assert_eq!(requests(&base, 30).await, 30, "TCP carried every request through the drops");
        let effect = rt.unlimit(&web, &loss).await.unwrap();
        eprintln!("packet_loss: {}", effect.detail);
        assert!(effect.touched > 0, "{}", effect.detail);
        let share = dropped_share(&effect.detail);
        assert!((0.1..=0.5).contains(&share), "about 30% of the covered packets dropped: {}", effect.detail);
        let left = Command::new("nsenter")
            .args(["-t", &pid.to_string(), "-n", "nft", "list", "table", "inet", container::TABLE])
            .output()
            .unwrap();
        assert!(!left.status.success(), "the drop table is gone from webdis's namespace after the fault");
        assert_eq!(requests(&base, 5).await, 5);

        // CPU: Redis at 2% of a core under a stream of 2 KB writes is throttled.
        rt.limit(&store, &cpu).await.unwrap();
        assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.NanoCpus}}", &store_cid]), "20000000");
        let load = (0..4).map(|_| {
            tokio::spawn({
                let base = base.clone();
                async move { requests(&base, 40).await }
            })
        });
        for task in load.collect::<Vec<_>>() {
            task.await.unwrap();
        }
        let effect = rt.unlimit(&store, &cpu).await.unwrap();
        eprintln!("cpu: {}", effect.detail);
        assert!(effect.touched > 0, "the kernel throttled Redis: {}", effect.detail);
        let cores = std::thread::available_parallelism().unwrap().get() as u64 * 1_000_000_000;
        assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.NanoCpus}}", &store_cid]), cores.to_string());

        // Memory: held to 48 MiB, then set back to the machine's memory.
        rt.limit(&store, &memory).await.unwrap();
        assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &store_cid]), (48u64 << 20).to_string());
        assert_eq!(requests(&base, 10).await, 10);
        let effect = rt.unlimit(&store, &memory).await.unwrap();
        eprintln!("memory: {}", effect.detail);
        assert!(effect.detail.contains("held to 48.0 MiB") && !effect.node_ended, "{}", effect.detail);
        let after: u64 = docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &store_cid]).parse().unwrap();
        assert!(after > 1 << 30, "the memory limit was lifted: {after}");
    });
    let outcome = futures_catch(result).await;
    rt.teardown().await.unwrap();
    let label = format!("label=dev.gauntlet.run={run_id}");
    assert!(docker(&["ps", "-aq", "--filter", &label]).is_empty(), "no container outlives the run");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn futures_catch<F: std::future::Future<Output = ()>>(
    f: std::panic::AssertUnwindSafe<F>,
) -> Result<(), Box<dyn std::any::Any + Send>> {
    use futures::FutureExt as _;
    f.catch_unwind().await
}

fn gauntlet_run(scenario: &str, extra: &[&str]) -> (std::process::Output, tempfile::TempDir) {
    let runs = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--profile", "debug", "--runs"])
        .arg(runs.path())
        .arg(scenario_common::workspace().join(scenario))
        .args(extra)
        .output()
        .unwrap();
    (out, runs)
}

/// The example scenario, run as a user would: the drops land (the kernel's counters in
/// the report), TCP hides them from the clients, and no write is lost.
#[test]
fn a_scenario_drops_packets_between_two_containers_and_nothing_is_lost() {
    if !can_run() {
        return;
    }
    let (out, _runs) = gauntlet_run("examples/redis-webdis/packet-loss.toml", &[]);
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{shown}");
    let effect = shown.lines().find(|l| l.contains("effect: dropped")).unwrap_or_else(|| panic!("{shown}"));
    let share = dropped_share(effect);
    assert!((0.1..=0.35).contains(&share), "about 20% dropped: {effect}");
    for checker in ["set", "counter", "linearizable"] {
        assert!(shown.lines().any(|l| l.trim_start().starts_with(&format!("VALID   {checker}"))), "{shown}");
    }
}

/// Local processes share one network namespace: real drops are refused there, before
/// anything starts, pointing at the proxy's `loss` toxic.
#[test]
fn packet_loss_is_refused_on_the_process_runtime() {
    let (out, _runs) = gauntlet_run("examples/redis-webdis/packet-loss.toml", &["--runtime", "process"]);
    let shown = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(shown.contains("use the `loss` toxic"), "{shown}");
}
