//! Resource faults on the process runtime, measured: a CPU hog capped at a fifth of a
//! core gets about that and the kernel counts its throttling, and gets a whole core
//! again once the cap is lifted; a node that allocates past its memory limit is
//! OOM-killed and the effect says so; a full data disk makes a write fail with ENOSPC
//! and writes succeed again once the filler is gone; and a run aborted by its SLO leaves
//! no cgroup, filler or mount behind.
//!
//! They need root, the cgroup v1 (or v2) `cpu` and `memory` controllers and `mount`:
//! where one is missing they skip saying why, unless `GAUNTLET_REQUIRE_CGROUPS=1`
//! (set by .ci/run) makes that a failure.

mod scenario_common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gauntlet::cluster::binaries::Binaries;
use gauntlet::cluster::ledger::Ledger;
use gauntlet::cluster::limits::cgroup::{group_pids, Hierarchy, Resource};
use gauntlet::cluster::limits::disk;
use gauntlet::cluster::plan::{ClusterPlan, NodeId, Ports, ReplicaOverrides};
use gauntlet::cluster::process::ProcessRuntime;
use gauntlet::cluster::wiring::Wiring;
use gauntlet::cluster::{ClusterSpec, NodeLimit, NodeState, Runtime};

/// How long each CPU measurement lasts: long enough for 10 CFS periods of 100 ms.
const SAMPLE: Duration = Duration::from_millis(1500);

/// Whether this machine can hold resource faults; a missing capability is a failure
/// under `GAUNTLET_REQUIRE_CGROUPS=1`, a skip (saying why) otherwise.
fn capable() -> bool {
    let mut missing = gauntlet::cluster::limits::missing_capabilities();
    if python().is_none() {
        missing.push("python3 is not installed (the stand-in service needs it)".to_string());
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("GAUNTLET_REQUIRE_CGROUPS").is_ok_and(|v| v == "1");
    assert!(!required, "GAUNTLET_REQUIRE_CGROUPS=1 but: {}", missing.join("; "));
    eprintln!("skipped: {}", missing.join("; "));
    false
}

fn python() -> Option<&'static str> {
    let found = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    found.then_some("python3")
}

/// A stand-in service: `/health`; `/eat?mb=N` holds N MiB more (written, so charged);
/// `/write?kb=N` writes N KiB to a file of its data folder and fsyncs it, answering
/// 507 with the errno's name when it cannot.
const STAND_IN: &str = r#"
import http.server, os, errno, urllib.parse
held = []
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        status, body = 200, b"ok"
        if url.path == "/eat":
            held.append(b"x" * (int(q["mb"]) << 20))
        elif url.path == "/write":
            try:
                with open("written-%d" % len(os.listdir(".")), "wb") as f:
                    f.write(b"y" * (int(q["kb"]) << 10))
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as e:
                status, body = 507, errno.errorcode.get(e.errno, str(e.errno)).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["WEB_PORT"])), H).serve_forever()
"#;

/// The tests that spin a core take turns: on a small machine two hogs at once would
/// lend each other's uncapped measurement less than a core.
static HOGS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A cluster of `web` (the stand-in) and, with `hog`, `hog` (the stand-in beside a
/// shell spinning on one core, in the same process group).
fn cluster(dir: &Path, hog: bool) -> PathBuf {
    let script = dir.join("stand-in.py");
    std::fs::write(&script, STAND_IN).unwrap();
    let file = dir.join("cluster.toml");
    let s = script.display();
    std::fs::write(
        &file,
        format!(
            "name = \"limits\"\ningress = \"web\"\n[defaults]\nready = \"tcp\"\nenv_names = {{ port = \"WEB_PORT\" }}\n\
             [services.web]\ncommand = [\"python3\", \"{s}\"]\nport = 7481\n{}",
            if hog {
                format!("[services.hog]\ncommand = [\"sh\", \"-c\", \"python3 {s} & while :; do :; done\"]\nport = 7482\n")
            } else {
                String::new()
            }
        ),
    )
    .unwrap();
    file
}

/// A started process runtime of `cluster(dir)`, prepared for `limits`.
async fn started(dir: &Path, limits: &[(NodeId, NodeLimit)]) -> ProcessRuntime {
    let hog = limits.iter().any(|(id, _)| id.service == "hog");
    let spec = ClusterSpec::load(&cluster(dir, hog)).unwrap();
    let plan = ClusterPlan::new(spec, &dir.join("run"), Ports::Ephemeral, &ReplicaOverrides::new()).unwrap();
    let binaries = Binaries::for_dir(&scenario_common::workspace(), "debug").unwrap();
    let mut rt = ProcessRuntime::new(plan, binaries, Wiring::Direct, Ledger::new(&dir.join("runs")), &run_id(dir));
    rt.prepare_limits(limits).unwrap();
    rt.start(&|m| eprintln!("{m}")).await.unwrap();
    rt
}

/// The run id of the runtime `started` in `dir`.
fn run_id(dir: &Path) -> String {
    format!("limits-test-{}-{}", std::process::id(), dir.file_name().unwrap().to_string_lossy())
}

fn node(name: &str) -> NodeId {
    NodeId::parse(name).unwrap()
}

fn pid_of(rt: &mut ProcessRuntime, id: &str) -> u32 {
    rt.status().into_iter().find(|n| n.id == id).unwrap().handle.parse().unwrap()
}

fn addr_of(rt: &mut ProcessRuntime, id: &str) -> String {
    rt.status().into_iter().find(|n| n.id == id).unwrap().addr
}

/// CPU time (user + system) used so far by every process of the group led by `pgid`.
fn group_cpu(pgid: u32) -> Duration {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }.max(1) as f64;
    let used: u64 = group_pids(pgid)
        .into_iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
            // utime and stime are fields 14 and 15; `rest` starts at field 3.
            Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_secs_f64(used as f64 / ticks)
}

/// The most samples an uncapped share is taken over (a busy machine can lend a spinning
/// process less than a core for a while; its best sample is what it can get).
const UNCAPPED_SAMPLES: usize = 3;

/// The best of `UNCAPPED_SAMPLES` shares of the group led by `pgid`.
async fn best_share(pgid: u32) -> f64 {
    let mut best: f64 = 0.0;
    for _ in 0..UNCAPPED_SAMPLES {
        best = best.max(cpu_share(pgid).await);
    }
    best
}

/// The share of one core the group led by `pgid` used over `SAMPLE` of wall time.
async fn cpu_share(pgid: u32) -> f64 {
    let (cpu0, t0) = (group_cpu(pgid), Instant::now());
    tokio::time::sleep(SAMPLE).await;
    (group_cpu(pgid) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64()
}

async fn get(addr: &str, path: &str) -> Result<(u16, String), String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).no_proxy().build().unwrap();
    let res = http.get(format!("http://{addr}{path}")).send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    Ok((status, res.text().await.map_err(|e| e.to_string())?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_hog_capped_at_a_fifth_of_a_core_gets_about_that_and_a_whole_core_again_after() {
    if !capable() {
        return;
    }
    let _turn = HOGS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let cap = NodeLimit::Cpu { share: 0.2 };
    let mut rt = started(dir.path(), &[(node("hog-0"), cap.clone())]).await;
    let pid = pid_of(&mut rt, "hog-0");
    let free = best_share(pid).await;
    rt.limit(&node("hog-0"), &cap).await.unwrap();
    let run_cgroup = Hierarchy::find(Resource::Cpu).unwrap().run_dir(&run_id(dir.path()));
    assert!(run_cgroup.join("hog-0").is_dir(), "the node has its own cgroup while capped");
    let capped = cpu_share(pid).await;
    let effect = rt.unlimit(&node("hog-0"), &cap).await.unwrap();
    let after = best_share(pid).await;
    eprintln!("uncapped {free:.2}, capped {capped:.2}, after {after:.2}: {}", effect.detail);
    // Side by side: the same hog, uncapped, capped, and uncapped again (the machine may
    // be busy, so the uncapped runs are compared with the capped one, not with 1.0).
    assert!((0.1..0.3).contains(&capped), "capped at 0.2 of a core it gets about that: {capped:.2}");
    assert!(free > 2.0 * capped, "uncapped it spins far more: {free:.2} against {capped:.2}");
    assert!(after > 2.0 * capped, "lifted, it gets its core back: {after:.2} against {capped:.2}");
    assert!(effect.touched >= 10, "the kernel throttled it in most periods: {}", effect.detail);
    assert!(effect.detail.contains("at a 20% share of a core (20 ms per 100 ms)"), "{}", effect.detail);
    assert!(!run_cgroup.join("hog-0").exists(), "the node's cgroup is gone once lifted");
    assert_eq!(rt.status().iter().find(|n| n.id == "hog-0").unwrap().state, NodeState::Ready);
    rt.teardown().await.unwrap();
    assert!(!run_cgroup.exists(), "teardown removes the run's cgroup folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_allocating_past_its_memory_limit_is_oom_killed_and_the_effect_says_so() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cap = NodeLimit::Memory { bytes: 48 << 20 };
    let mut rt = started(dir.path(), &[(node("web-0"), cap.clone())]).await;
    let addr = addr_of(&mut rt, "web-0");
    // Below the limit it lives.
    assert_eq!(get(&addr, "/eat?mb=4").await.map(|r| r.0), Ok(200));
    rt.limit(&node("web-0"), &cap).await.unwrap();
    assert_eq!(get(&addr, "/eat?mb=4").await.map(|r| r.0), Ok(200), "under the limit it still answers");
    let past = get(&addr, "/eat?mb=96").await;
    assert!(past.is_err(), "it died answering: {past:?}");
    let effect = rt.unlimit(&node("web-0"), &cap).await.unwrap();
    eprintln!("{}", effect.detail);
    assert!(effect.node_ended, "{}", effect.detail);
    assert!(effect.detail.contains("OOM-killed") && effect.detail.contains("SIGKILL"), "{}", effect.detail);
    assert!(effect.touched > 0, "{}", effect.detail);
    // A limit the node lives under is reported as such.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let mut other = started(&other_dir, &[(node("web-0"), cap.clone())]).await;
    other.limit(&node("web-0"), &cap).await.unwrap();
    let addr = addr_of(&mut other, "web-0");
    assert_eq!(get(&addr, "/eat?mb=1").await.map(|r| r.0), Ok(200));
    let lived = other.unlimit(&node("web-0"), &cap).await.unwrap();
    assert!(!lived.node_ended && lived.detail.contains("no process was OOM-killed"), "{}", lived.detail);
    other.teardown().await.unwrap();
    rt.teardown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_data_disk_fails_writes_with_enospc_until_the_filler_is_gone() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let full = NodeLimit::DiskFull { leave: 64 << 10, size: 16 << 20 };
    let mut rt = started(dir.path(), &[(node("web-0"), full.clone())]).await;
    let data = dir.path().join("run/data/web-0");
    assert!(disk::is_mount(&data), "the data folder is the run's own filesystem from the start");
    let addr = addr_of(&mut rt, "web-0");
    assert_eq!(get(&addr, "/write?kb=1024").await, Ok((200, "ok".into())), "room before the fault");
    rt.limit(&node("web-0"), &full).await.unwrap();
    let free = disk::free(&data).unwrap();
    assert!(free <= 64 << 10, "filled to the bytes it leaves: {free}");
    assert_eq!(get(&addr, "/write?kb=1024").await, Ok((507, "ENOSPC".into())), "a write meets a full disk");
    let effect = rt.unlimit(&node("web-0"), &full).await.unwrap();
    eprintln!("{}", effect.detail);
    assert!(effect.detail.contains("to 64.0 KiB free") || effect.detail.contains(" KiB free"), "{}", effect.detail);
    assert!(effect.touched > 10 << 20, "the filler took the rest: {}", effect.detail);
    assert!(!data.join(disk::FILLER).exists(), "the filler is gone");
    assert_eq!(get(&addr, "/write?kb=1024").await, Ok((200, "ok".into())), "writes succeed again");
    rt.teardown().await.unwrap();
    assert!(!disk::is_mount(&data), "teardown unmounts the data folder");
}

#[test]
fn a_run_aborted_by_its_slo_rolls_back_its_cpu_cap_and_full_disk_and_leaves_nothing() {
    if !capable() {
        return;
    }
    let _turn = HOGS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), true);
    // The SLO cannot hold (p95 under a microsecond): the run aborts with both faults on.
    let body = format!(
        "invariants = []\n[cluster]\nfile = \"{}\"\n\
         [load]\nschedule = {{ mode = \"constant\", rate = 20, duration = \"30s\" }}\n\
         [load.workload]\n[[load.workload.flow]]\nname = \"health\"\n[[load.workload.flow.step]]\npath = \"/health\"\n\
         [[fault]]\nnode = \"hog-0\"\nop = \"cpu\"\nattributes = {{ share = 0.1 }}\nat = \"500ms\"\nfor = \"25s\"\n\
         [[fault]]\nnode = \"web-0\"\nop = \"disk_full\"\nattributes = {{ leave = \"1MiB\", size = \"8MiB\" }}\nat = \"500ms\"\nfor = \"25s\"\n\
         [[slo]]\nthreshold = \"p95 < 1us\"\nabort_after = \"2s\"\n[recovery]\nduration = \"1s\"\n",
        cluster.display()
    );
    let file = scenario_common::scenario_file(dir.path(), "aborted", &body);
    let out = scenario_common::gauntlet_run(dir.path(), &file, &[]);
    let shown = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("rolled back f1 hog-0 cpu 10%"), "{shown}");
    assert!(shown.contains("rolled back f2 web-0 disk_full"), "{shown}");
    let r = scenario_common::report_json(&String::from_utf8_lossy(&out.stdout));
    let effects: Vec<String> =
        r["faults"].as_array().unwrap().iter().map(|f| f["effect"].as_str().unwrap_or_default().to_string()).collect();
    assert!(effects.iter().any(|e| e.contains("throttled in")), "{effects:?}");
    assert!(effects.iter().any(|e| e.contains("filled") && e.contains("1.0 MiB free")), "{effects:?}");
    // Nothing of the run is left: no cgroup, no mount, no ledger entry.
    let runs = dir.path().join("runs");
    let id = std::fs::read_dir(&runs)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.contains("limits"))
        .unwrap();
    let cpu = Hierarchy::find(Resource::Cpu).unwrap();
    assert!(!cpu.run_dir(&id).exists(), "the run's cgroup is gone");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&runs.join(&id).display().to_string()), "no mount of the run is left");
    assert!(Ledger::new(&runs).entries().is_empty(), "the run ended cleanly");
}

#[test]
fn a_harness_killed_with_sigkill_leaves_no_cgroup_or_mount_behind() {
    if !capable() {
        return;
    }
    let _turn = HOGS.blocking_lock();
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), true);
    let body = format!(
        "invariants = []\n[cluster]\nfile = \"{}\"\n\
         [load]\nschedule = {{ mode = \"constant\", rate = 5, duration = \"60s\" }}\n\
         [load.workload]\n[[load.workload.flow]]\nname = \"health\"\n[[load.workload.flow.step]]\npath = \"/health\"\n\
         [[fault]]\nnode = \"hog-0\"\nop = \"cpu\"\nattributes = {{ share = 0.1 }}\nat = \"500ms\"\nfor = \"50s\"\n\
         [[fault]]\nnode = \"web-0\"\nop = \"disk_full\"\nattributes = {{ leave = \"1MiB\", size = \"8MiB\" }}\nat = \"500ms\"\nfor = \"50s\"\n\
         [recovery]\nduration = \"1s\"\n",
        cluster.display()
    );
    let file = scenario_common::scenario_file(dir.path(), "killed", &body);
    scenario_common::binaries();
    let runs = dir.path().join("runs");
    let mut harness = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--profile", "debug", "--runs"])
        .arg(&runs)
        .arg(&file)
        .current_dir(scenario_common::workspace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let cpu = Hierarchy::find(Resource::Cpu).unwrap();
    let mounted =
        |run: &Path| std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&run.display().to_string());
    // Both faults in place: the node's cgroup and the data folder's mount exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (cgroup, run) = loop {
        let run = std::fs::read_dir(&runs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("data").exists());
        if let Some(run) = run {
            let id = run.file_name().unwrap().to_string_lossy().to_string();
            let cgroup = cpu.run_dir(&id);
            if cgroup.join("hog-0").exists() && mounted(&run) && run.join("data/web-0").join(disk::FILLER).exists() {
                break (cgroup, run);
            }
        }
        assert!(Instant::now() < deadline, "the faults never went on");
        std::thread::sleep(Duration::from_millis(100));
    };
    harness.kill().unwrap();
    harness.wait().unwrap();
    // The reaper (a process of its own) removes what the dead harness left.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cgroup.exists() || mounted(&run) {
        assert!(
            Instant::now() < deadline,
            "left behind: cgroup {} {}, mount {}",
            cgroup.display(),
            cgroup.exists(),
            mounted(&run)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
