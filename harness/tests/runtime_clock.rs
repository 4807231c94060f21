//! Clock faults on the process runtime, measured: a node's clock set 90 s ahead is read
//! back from its own answers (their `Date` header) within a second of that, set behind
//! it reads behind, a drifting clock gains at its rate, and put back it reads true time
//! again; a node no clock fault targets runs without libfaketime. And on the docker
//! runtime: a shop container (FROM scratch) with libfaketime mounted reads 90 s ahead,
//! then true time again.
//!
//! They need libfaketime (Debian's `faketime`): where it is missing they skip saying
//! why, unless `GAUNTLET_REQUIRE_FAKETIME=1` (set by .ci/run) makes that a failure. The
//! docker test also needs a Docker engine (required under `GAUNTLET_REQUIRE_DOCKER=1`).

mod scenario_common;

use std::path::Path;
use std::time::{Instant, SystemTime};

use gauntlet::cluster::binaries::Binaries;
use gauntlet::cluster::clock::Faketime;
use gauntlet::cluster::docker::{engine_available, DockerRuntime};
use gauntlet::cluster::ledger::Ledger;
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::process::ProcessRuntime;
use gauntlet::cluster::wiring::Wiring;
use gauntlet::cluster::{ClockSkew, ClusterSpec, Runtime};
use gauntlet::scenario::clock::{read, ClockReading};
use gauntlet::world::reach::HostHttp;

/// Whether libfaketime and python3 (the stand-in) are here; a missing one is a failure
/// under `GAUNTLET_REQUIRE_FAKETIME=1`, a skip (saying why) otherwise.
fn capable() -> bool {
    let mut missing: Vec<String> = Faketime::find().err().into_iter().collect();
    if !std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success()) {
        missing.push("python3 is not installed (the stand-in service needs it)".into());
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("GAUNTLET_REQUIRE_FAKETIME").is_ok_and(|v| v == "1");
    assert!(!required, "GAUNTLET_REQUIRE_FAKETIME=1 but: {}", missing.join("; "));
    eprintln!("skipped: {}", missing.join("; "));
    false
}

/// A stand-in service answering every GET with 200 and a `Date` header from its clock
/// (Python's http.server reads it with clock_gettime, as any program does).
const STAND_IN: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["WEB_PORT"])), H).serve_forever()
"#;

/// A started process runtime of `skewed` and `true`, both the stand-in, prepared for
/// clock faults on `skewed-0`.
async fn started(dir: &Path) -> ProcessRuntime {
    let script = dir.join("stand-in.py");
    std::fs::write(&script, STAND_IN).unwrap();
    let file = dir.join("cluster.toml");
    let s = script.display();
    std::fs::write(
        &file,
        format!(
            "name = \"clocks\"\ningress = \"skewed\"\n[defaults]\nready = \"tcp\"\nenv_names = {{ port = \"WEB_PORT\" }}\n\
             [services.skewed]\ncommand = [\"python3\", \"{s}\"]\nport = 7491\n[services.true]\ncommand = [\"python3\", \"{s}\"]\nport = 7492\n"
        ),
    )
    .unwrap();
    let spec = ClusterSpec::load(&file).unwrap();
    let plan = ClusterPlan::new(spec, &dir.join("run"), Ports::Ephemeral, &ReplicaOverrides::new()).unwrap();
    let binaries = Binaries::for_dir(&scenario_common::workspace(), "debug").unwrap();
    let id = format!("clock-{}", std::process::id());
    let mut rt = ProcessRuntime::new(plan, binaries, Wiring::Direct, Ledger::new(&dir.join("runs")), &id);
    rt.prepare_clocks(&[skewed()]).unwrap();
    rt.start(&|m| eprintln!("{m}")).await.unwrap();
    rt
}

fn skewed() -> NodeId {
    NodeId::parse("skewed-0").unwrap()
}

/// Node `service-0`'s clock, read from its answers.
async fn clock_of(rt: &mut ProcessRuntime, service: &str) -> ClockReading {
    let addr = rt.status().into_iter().find(|n| n.id == format!("{service}-0")).unwrap().addr;
    let reading = read(&HostHttp, &format!("http://{addr}/health"), SystemTime::now).await.unwrap();
    eprintln!("{service}-0: {reading:?}");
    reading
}

fn environment(rt: &mut ProcessRuntime, service: &str) -> String {
    let pid = rt.status().into_iter().find(|n| n.id == format!("{service}-0")).unwrap().handle;
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/environ")).unwrap()).replace('\0', "\n")
}

#[tokio::test]
async fn a_clock_set_ahead_reads_back_within_a_second_and_reads_true_once_put_back() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rt = started(dir.path()).await;
    assert!(environment(&mut rt, "skewed").contains("LD_PRELOAD="), "the skewed node runs with libfaketime");
    assert!(!environment(&mut rt, "true").contains("LD_PRELOAD="), "no clock fault, no libfaketime");

    let before = clock_of(&mut rt, "skewed").await;
    assert!(before.offset.abs() < 1.0, "a prepared node starts at true time: {before:?}");

    rt.set_clock(&skewed(), Some(ClockSkew { offset_ms: 90_000, drift: 0.0 })).await.unwrap();
    let ahead = clock_of(&mut rt, "skewed").await;
    assert!((ahead.offset - 90.0).abs() < 1.0, "set +90 s, read {ahead:?}");
    assert!(ahead.within < 0.1, "read to the Date header's turn, not its second: {ahead:?}");
    let untouched = clock_of(&mut rt, "true").await;
    assert!(untouched.offset.abs() < 1.0, "only the targeted node moves: {untouched:?}");

    // A jump: straight to 30 s behind.
    rt.set_clock(&skewed(), Some(ClockSkew { offset_ms: -30_000, drift: 0.0 })).await.unwrap();
    let behind = clock_of(&mut rt, "skewed").await;
    assert!((behind.offset + 30.0).abs() < 1.0, "set -30 s, read {behind:?}");

    rt.set_clock(&skewed(), None).await.unwrap();
    let back = clock_of(&mut rt, "skewed").await;
    assert!(back.offset.abs() < 1.0, "put back, read {back:?}");
    rt.teardown().await.unwrap();
}

#[tokio::test]
async fn a_drifting_clock_gains_at_its_rate_and_stops_when_put_back() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut rt = started(dir.path()).await;
    let struck = Instant::now();
    rt.set_clock(&skewed(), Some(ClockSkew { offset_ms: 0, drift: 0.5 })).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let reading = clock_of(&mut rt, "skewed").await;
    // Read at some moment of the last second or so: between 0.5 × 4 s and 0.5 × now.
    let (low, high) = (2.0, 0.5 * struck.elapsed().as_secs_f64());
    assert!(
        reading.offset > low - 0.3 && reading.offset < high + 0.3,
        "gained 0.5 s per second for 4-{:.1} s, read {reading:?}",
        struck.elapsed().as_secs_f64()
    );
    rt.set_clock(&skewed(), None).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let back = clock_of(&mut rt, "skewed").await;
    assert!(back.offset.abs() < 1.0, "put back, no more stepping: {back:?}");
    rt.teardown().await.unwrap();
}

/// Whether a Docker engine answers; required under `GAUNTLET_REQUIRE_DOCKER=1`.
fn docker() -> bool {
    match engine_available() {
        Ok(()) => true,
        Err(why) => {
            let required = std::env::var("GAUNTLET_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
            assert!(!required, "GAUNTLET_REQUIRE_DOCKER=1 but no Docker engine is reachable: {why}");
            eprintln!("skipped: no Docker engine is reachable ({why})");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containers_clock_set_ahead_reads_back_within_a_second_and_true_once_put_back() {
    if !capable() || !docker() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.toml");
    std::fs::write(
        &file,
        "name = \"clock-docker\"\ningress = \"catalog\"\n\
         [defaults]\nenv_names = { port = \"SHOP_PORT\", bind = \"SHOP_BIND\", database = \"SHOP_DB\" }\n\
         health = \"/health\"\nready = \"/ready\"\nenv = { SHOP_DEV_DEFAULTS = \"1\" }\n\
         [services.catalog]\nbinary = \"shop-catalog\"\nport = 7102\ndatabase = true\n",
    )
    .unwrap();
    let spec = ClusterSpec::load(&file).unwrap();
    let plan = ClusterPlan::new(spec, &dir.path().join("run"), Ports::Fixed, &ReplicaOverrides::new()).unwrap();
    let binaries = Binaries::for_dir(&scenario_common::workspace(), "debug").unwrap();
    let id = format!("clock-docker-{}", std::process::id());
    let mut rt = DockerRuntime::new(
        plan,
        binaries,
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_gauntlet")),
        Ledger::new(&dir.path().join("runs")),
        &id,
        7,
    );
    let catalog = NodeId::parse("catalog-0").unwrap();
    rt.prepare_clocks(std::slice::from_ref(&catalog)).unwrap();
    rt.start(&|m| eprintln!("{m}")).await.unwrap();
    let addr = rt.status().into_iter().find(|n| n.id == "catalog-0").unwrap().addr;
    let url = format!("http://{addr}/health");
    let before = read(&HostHttp, &url, SystemTime::now).await.unwrap();
    assert!(before.offset.abs() < 1.0, "started at true time: {before:?}");
    rt.set_clock(&catalog, Some(ClockSkew { offset_ms: 90_000, drift: 0.0 })).await.unwrap();
    let ahead = read(&HostHttp, &url, SystemTime::now).await.unwrap();
    rt.set_clock(&catalog, None).await.unwrap();
    let back = read(&HostHttp, &url, SystemTime::now).await.unwrap();
    rt.teardown().await.unwrap();
    assert!((ahead.offset - 90.0).abs() < 1.0, "set +90 s in the container, read {ahead:?}");
    assert!(back.offset.abs() < 1.0, "put back, read {back:?}");
}
