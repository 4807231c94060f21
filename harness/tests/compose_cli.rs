//! Compose files as clusters, driven as a user would, through the `gauntlet` binary:
//! `examples/compose` (nginx -> webdis -> redis-server from Debian's packages, each
//! image built FROM scratch) under `gauntlet run` with a latency fault on an edge the
//! file names and a kill of one service; a harness killed with SIGKILL leaves no
//! container, network or volume; bad Compose files are refused saying what to do;
//! `gauntlet init --compose` writes files that `check` and `run` accept as written.
//!
//! Skips (saying why) without a Docker engine, the Compose tool or the example's
//! programs; fails instead under `GAUNTLET_REQUIRE_DOCKER=1` (and, for the programs,
//! `GAUNTLET_REQUIRE_EXAMPLES=1`), which `.ci/run` sets once it has installed them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use gauntlet::cluster::docker::engine_available;
use gauntlet::cluster::ledger::Ledger;
use serde_json::Value;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("examples/compose")
}

fn gauntlet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gauntlet")).args(args).output().expect("running gauntlet")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn required(var: &str) -> bool {
    std::env::var(var).as_deref() == Ok("1")
}

/// `true` when the Compose tool runs; prints why not (a failure under GAUNTLET_REQUIRE_DOCKER=1).
fn compose_tool_or_skip() -> bool {
    if Command::new("docker-compose").arg("version").output().is_ok_and(|o| o.status.success()) {
        return true;
    }
    assert!(!required("GAUNTLET_REQUIRE_DOCKER"), "GAUNTLET_REQUIRE_DOCKER=1 but docker-compose is not installed");
    eprintln!("skipped: docker-compose is not installed (apt-get install docker-compose)");
    false
}

/// `true` when a Docker engine answers and the Compose tool runs; prints why not.
fn docker_or_skip() -> bool {
    match engine_available() {
        Ok(()) => compose_tool_or_skip(),
        Err(why) if required("GAUNTLET_REQUIRE_DOCKER") => {
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

/// Docker, the Compose tool and the example's build contexts (its `prepare.sh`, once);
/// the guard keeps the tests that start containers one at a time on a small machine.
fn example_or_skip() -> Option<MutexGuard<'static, ()>> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    static PREPARED: OnceLock<Result<(), String>> = OnceLock::new();
    if !docker_or_skip() {
        return None;
    }
    let prepared = PREPARED.get_or_init(|| {
        let out = Command::new("bash").arg(example().join("prepare.sh")).output().map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(text(&out))
        }
    });
    match prepared {
        Ok(()) => Some(ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())),
        Err(why) if required("GAUNTLET_REQUIRE_EXAMPLES") => panic!("examples/compose/prepare.sh failed: {why}"),
        Err(why) => {
            eprintln!(
                "skipped: examples/compose/prepare.sh failed (apt-get install nginx-light webdis redis-server): {why}"
            );
            None
        }
    }
}

fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect()
}

/// The report.json of the only run under `runs`, and the run's id.
fn report(runs: &Path) -> (Value, String) {
    let run = std::fs::read_dir(runs)
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.path().join("report/report.json").exists())
        .expect("a run with a report");
    let report = serde_json::from_slice(&std::fs::read(run.path().join("report/report.json")).unwrap()).unwrap();
    (report, run.file_name().to_string_lossy().into_owned())
}

#[test]
fn the_compose_example_runs_with_a_latency_fault_on_a_named_edge_and_a_killed_service() {
    let Some(_one) = example_or_skip() else { return };
    let runs = tempfile::tempdir().unwrap();
    let scenario = example().join("latency-and-kill.toml");
    let out = gauntlet(&["run", scenario.to_str().unwrap(), "--runs", runs.path().to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "gauntlet run failed:\n{said}");
    assert!(said.contains("building image gauntlet-compose/compose-shop-store:latest"), "{said}");
    let (report, id) = report(runs.path());
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults[0]["target"], "api->store", "{faults:?}");
    assert!(faults[0]["touched"].as_u64().unwrap() > 0, "the latency went through the edge's proxy: {faults:?}");
    assert_eq!(faults[1]["target"], "store-0");
    // The latency landed: webdis's calls to Redis, behind every request, took 150 ms more.
    let seconds = report["time_series"].as_array().unwrap();
    let p50 = |s: usize| seconds[s]["p50_ms"].as_f64().unwrap();
    assert!(p50(2) >= 150.0 && p50(3) >= 150.0, "p50 during the latency fault: {} {}", p50(2), p50(3));
    // The kill landed: requests failed while Redis was down, and none of the
    // acknowledged increments was lost (appendonly on the file's named volume).
    let errors: u64 = seconds[7..=9].iter().map(|s| s["errors"].as_u64().unwrap()).sum();
    assert!(errors > 0, "no request failed while store was killed: {seconds:?}");
    assert_eq!(report["invariants"][0]["validity"], "valid", "{}", report["invariants"]);
    let label = format!("label=dev.gauntlet.run={id}");
    assert!(docker_lines(&["ps", "-aq", "--filter", &label]).is_empty(), "teardown removed every container");
}

#[test]
fn nothing_outlives_a_compose_harness_killed_with_sigkill() {
    let Some(_one) = example_or_skip() else { return };
    use std::io::BufRead;
    let runs = tempfile::tempdir().unwrap();
    let compose = example().join("docker-compose.yml");
    let mut up = Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["up", "--compose", compose.to_str().unwrap(), "--runs", runs.path().to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(up.stdout.take().unwrap()).lines();
    if !lines.map_while(Result::ok).any(|l| l.contains("cluster is up")) {
        let _ = up.kill();
        panic!("gauntlet up --compose ended before the cluster was up: {:?}", up.wait());
    }
    let entry = Ledger::new(runs.path()).live().pop().expect("a live ledger entry");
    let label = format!("label=dev.gauntlet.run={}", entry.run_id);
    assert_eq!(docker_lines(&["ps", "-q", "--filter", &label]).len(), 4, "three services and the proxy are up");
    assert_eq!(entry.volumes.len(), 1, "the file's named volume, made for the run: {entry:?}");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(up.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    up.wait().unwrap();
    let left = || {
        let mut left = docker_lines(&["ps", "-aq", "--filter", &label]);
        left.extend(
            entry
                .networks
                .iter()
                .filter(|n| !docker_lines(&["network", "ls", "-q", "--filter", &format!("name=^{n}$")]).is_empty())
                .cloned(),
        );
        left.extend(docker_lines(&["volume", "ls", "-q", "--filter", &label]));
        left
    };
    let deadline = Instant::now() + Duration::from_secs(2);
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = left();
    if !left.is_empty() {
        gauntlet(&["down", "--runs", runs.path().to_str().unwrap()]);
        panic!("still there 2 s after kill -9 of the harness (containers, networks, volumes): {left:?}");
    }
}

/// A Compose file `text` in a folder of its own, with a build context `ctx/`.
fn compose_file(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("ctx")).unwrap();
    std::fs::write(dir.join("ctx/Dockerfile"), "FROM scratch\n").unwrap();
    let path = dir.join("docker-compose.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_compose_files_are_refused_naming_the_service_and_what_to_do() {
    if !compose_tool_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, text: &str| {
        let file = compose_file(&dir.path().join(name), text);
        let out = gauntlet(&["check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", self::text(&out));
        self::text(&out)
    };
    let host = check("host", "services:\n  web:\n    build: ./ctx\n    expose: ['80']\n    network_mode: host\n");
    assert!(host.contains("docker-compose.yml:5:5: service web: `network_mode` is not supported"), "{host}");
    assert!(host.contains("fault proxy"), "says why and what to do: {host}");
    let replicas =
        check("deploy", "services:\n  web:\n    build: ./ctx\n    expose: ['80']\n    deploy: { replicas: 2 }\n");
    assert!(replicas.contains("service web: `deploy` is not supported") && replicas.contains("replicas"), "{replicas}");
    let missing = check(
        "edge",
        "x-gauntlet:\n  edges: [{ from: web, to: api, env: API_URL }]\nservices:\n  web:\n    build: ./ctx\n    ports: ['8080:80']\n    environment: { OTHER: x }\n  api:\n    build: ./ctx\n    expose: ['80']\n",
    );
    assert!(missing.contains("x-gauntlet edge web->api: service web has no environment variable API_URL"), "{missing}");
    let unnamed = check(
        "value",
        "x-gauntlet:\n  edges: [{ from: web, to: api, env: API_URL }]\nservices:\n  web:\n    build: ./ctx\n    ports: ['8080:80']\n    environment: { API_URL: 'http://localhost:80' }\n  api:\n    build: ./ctx\n    expose: ['80']\n",
    );
    assert!(
        unnamed.contains("API_URL of service web is \"http://localhost:80\", which names no address of api"),
        "{unnamed}"
    );

    // Edges may come from the scenario too; a mistake in one is the scenario's.
    let file = compose_file(
        &dir.path().join("scenario-edges"),
        "services:\n  web:\n    build: ./ctx\n    ports: ['8080:80']\n    environment: { API_URL: 'http://api:80/' }\n  api:\n    build: ./ctx\n    expose: ['80']\n",
    );
    let scenario = file.with_file_name("scenario.toml");
    let write = |env: &str| {
        let text = format!(
            "name = \"s\"\ndescription = \"d\"\n[cluster]\ncompose = \"docker-compose.yml\"\nedges = [{{ from = \"web\", to = \"api\", env = \"{env}\" }}]\n\
             [load]\nworkload = {{ flow = [{{ name = \"f\", step = [{{ path = \"/\" }}] }}] }}\n\
             schedule = {{ mode = \"constant\", rate = 1, duration = \"10s\" }}\n\
             [[fault]]\nname = \"slow\"\nedge = \"web->api\"\ntoxic = \"latency\"\nattributes = {{ latency = \"10ms\" }}\nat = \"0s\"\nfor = \"1s\"\n"
        );
        std::fs::write(&scenario, text).unwrap();
        gauntlet(&["check", scenario.to_str().unwrap()])
    };
    let out = write("API_URL");
    assert!(out.status.success(), "a fault on an edge the scenario names: {}", text(&out));
    let out = write("NOPE");
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("scenario.toml:5:")
            && said.contains("[cluster] edge web->api: service web has no environment variable NOPE"),
        "{said}"
    );

    // An image that is not on this machine: nothing is pulled, the error says to build it.
    if !docker_or_skip() {
        return;
    }
    let file = compose_file(
        &dir.path().join("image"),
        "services:\n  web:\n    image: gauntlet-test/no-such-image:1\n    expose: ['80']\n",
    );
    let runs = dir.path().join("runs");
    let out = gauntlet(&["up", "--compose", file.to_str().unwrap(), "--runs", runs.to_str().unwrap()]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(3), "{said}");
    assert!(said.contains("image gauntlet-test/no-such-image:1 is not on this machine"), "{said}");
    assert!(said.contains("docker build -t gauntlet-test/no-such-image:1"), "{said}");
}

#[test]
fn init_compose_writes_a_scenario_that_checks_and_runs_as_written() {
    let Some(_one) = example_or_skip() else { return };
    let dir = tempfile::tempdir().unwrap();
    let compose = example().join("docker-compose.yml");
    let out = gauntlet(&[
        "init",
        "--compose",
        compose.to_str().unwrap(),
        "--dir",
        dir.path().to_str().unwrap(),
        "--path",
        "/PING",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let scenario = dir.path().join("scenario.toml");
    let written = std::fs::read_to_string(&scenario).unwrap();
    assert!(written.contains("edge = \"front->api\""), "a fault on the file's first edge:\n{written}");
    let out = gauntlet(&["check", scenario.to_str().unwrap(), compose.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let runs = dir.path().join("runs");
    let out = gauntlet(&["run", scenario.to_str().unwrap(), "--runs", runs.to_str().unwrap()]);
    assert!(out.status.success(), "gauntlet run of the init scenario:\n{}", text(&out));
    let (report, _) = report(&runs);
    assert_eq!(report["faults"][0]["target"], "front->api");
    assert!(report["faults"][0]["touched"].as_u64().unwrap() > 0, "{}", report["faults"]);
}

/// `GET /PING` through the ingress: its status, or why there was none.
async fn ping(http: &reqwest::Client, base: &str) -> Result<u16, String> {
    match http.get(format!("{base}/PING")).send().await {
        Ok(r) => Ok(r.status().as_u16()),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The guard keeps this test's containers apart from the other tests' (each test has
// its own runtime, so no task of this one waits on the lock).
#[allow(clippy::await_holding_lock)]
async fn node_faults_work_on_compose_services_as_on_any_docker_node() {
    use gauntlet::cluster::docker::DockerRuntime;
    use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
    use gauntlet::cluster::{NodeOp, NodeState, Runtime};
    let Some(_one) = example_or_skip() else { return };
    let runs = tempfile::tempdir().unwrap();
    let spec = gauntlet::cluster::compose::load(&example().join("docker-compose.yml")).unwrap();
    // No service is a binary of this workspace: nothing to build.
    let binaries = gauntlet::cluster::binaries::Binaries::for_cluster(&spec, &example(), "debug").unwrap();
    let plan = ClusterPlan::new(spec, &runs.path().join("run"), Ports::Fixed, &ReplicaOverrides::new()).unwrap();
    let run_id = format!("compose-ops-{}", std::process::id());
    let gauntlet = PathBuf::from(env!("CARGO_BIN_EXE_gauntlet"));
    let mut rt = DockerRuntime::new(plan, binaries, gauntlet, Ledger::new(runs.path()), &run_id, 1);
    if let Err(e) = rt.start(&|m| eprintln!("{m}")).await {
        let _ = rt.teardown().await;
        panic!("the Compose file did not start on the docker runtime: {e}");
    }
    let base = rt.ingress_urls()[0].clone();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().unwrap();
    assert_eq!(ping(&http, &base).await, Ok(200));
    let state = |rt: &mut DockerRuntime, id: &str| rt.status().into_iter().find(|n| n.id == id).unwrap().state;
    let store = NodeId { service: "store".into(), replica: 0 };
    let api = NodeId { service: "api".into(), replica: 0 };

    // Paused, Redis holds webdis's calls; resumed, it answers again.
    rt.node_op(&store, NodeOp::Pause).await.unwrap();
    assert_eq!(state(&mut rt, "store-0"), NodeState::Paused);
    assert_ne!(ping(&http, &base).await, Ok(200), "an answer through a paused store");
    rt.node_op(&store, NodeOp::Resume).await.unwrap();
    // Partitioned, webdis is cut off from nginx and from Redis; healed, all is well.
    rt.node_op(&api, NodeOp::Partition).await.unwrap();
    assert_eq!(state(&mut rt, "api-0"), NodeState::Partitioned);
    assert_ne!(ping(&http, &base).await, Ok(200), "an answer through a partitioned api");
    rt.node_op(&api, NodeOp::Heal).await.unwrap();
    // Stopped, then restarted on its volume (and ready again by its healthcheck).
    rt.node_op(&store, NodeOp::Stop).await.unwrap();
    assert_eq!(state(&mut rt, "store-0"), NodeState::Stopped);
    rt.node_op(&store, NodeOp::Restart).await.unwrap();
    assert_eq!(state(&mut rt, "store-0"), NodeState::Ready);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ping(&http, &base).await != Ok(200) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ping(&http, &base).await, Ok(200), "the front answers once every fault is undone");

    rt.teardown().await.unwrap();
    let label = format!("label=dev.gauntlet.run={run_id}");
    assert!(docker_lines(&["ps", "-aq", "--filter", &label]).is_empty(), "containers left behind");
    assert!(docker_lines(&["volume", "ls", "-q", "--filter", &label]).is_empty(), "volumes left behind");
}
