//! Judging the data of systems this project did not write, killed with SIGKILL
//! mid-load: Redis behind webdis (both from Debian's packages), and NATS JetStream
//! (Debian's nats-server) behind a front written with its official Python client. Where
//! the store keeps writes in memory only, the checkers say INVALID and name what was
//! lost; where it keeps them on disk, they say VALID. And external checkers, through the
//! history files, on a store that drops every fifth element it acknowledges.
//!
//! Needs `redis-server` and `webdis`, `nats-server`, and python3 with nats-py and
//! aiohttp: each test skips, saying so, where its system is missing; required under
//! GAUNTLET_REQUIRE_EXAMPLES=1, which `.ci/run` sets after installing them.

mod scenario_common;

use std::process::Output;

use scenario_common::{report_json, workspace};

fn show(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether `programs` are on PATH and `python_modules` import; `install` says how to
/// get them.
fn installed(programs: &[&str], python_modules: &[&str], install: &str) -> bool {
    let mut missing: Vec<String> = programs
        .iter()
        .filter(|p| !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).any(|d| d.join(p).is_file()))
        .map(|p| p.to_string())
        .collect();
    for module in python_modules {
        let imports = std::process::Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !imports {
            missing.push(format!("python module {module}"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("GAUNTLET_REQUIRE_EXAMPLES").is_ok_and(|v| v == "1");
    assert!(!required, "GAUNTLET_REQUIRE_EXAMPLES=1 but {missing:?} are missing ({install})");
    eprintln!("skipped: {missing:?} missing ({install})");
    false
}

const REDIS: (&[&str], &[&str], &str) = (&["redis-server", "webdis"], &[], "apt-get install redis-server webdis");
const JETSTREAM: (&[&str], &[&str], &str) =
    (&["nats-server", "python3"], &["nats", "aiohttp"], "apt-get install nats-server; pip install nats-py aiohttp");

/// The examples' nodes listen on the ports their cluster file names: one run at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `examples/<example>.toml`: its output, its report.json, and its run folder.
fn run_example(example: &str) -> (Output, serde_json::Value, std::path::PathBuf, tempfile::TempDir) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--runs"])
        .arg(dir.path().join("runs"))
        .arg(workspace().join("examples").join(format!("{example}.toml")))
        .current_dir(workspace())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let report = report_json(&stdout);
    let report_path =
        stdout.split_whitespace().find(|w| w.ends_with("report.json")).map(std::path::PathBuf::from).unwrap();
    let run = report_path.parent().and_then(|p| p.parent()).unwrap().to_path_buf();
    (out, report, run, dir)
}

fn invariant<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["invariants"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no invariant {name} in {}", report["invariants"]))
}

fn clause<'a>(inv: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    inv["clauses"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no clause {name} in {inv}"))
}

#[test]
fn a_redis_that_keeps_writes_in_memory_only_loses_them_when_killed_and_the_checkers_name_them() {
    if !installed(REDIS.0, REDIS.1, REDIS.2) {
        return;
    }
    let (out, report, run, _dir) = run_example("redis-webdis/volatile-killed");
    let shown = show(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let set = invariant(&report, "set");
    assert_eq!(set["validity"], "invalid", "{shown}");
    let lost = clause(set, "lost");
    assert!(lost["violations"].as_u64().unwrap() > 0, "{lost}");
    assert!(lost["first"]["subject"].as_str().is_some(), "the first lost element is named: {lost}");
    assert_eq!(clause(set, "unexpected")["violations"], 0, "nothing was invented: {set}");
    let counter = invariant(&report, "counter");
    assert_eq!(counter["validity"], "invalid", "{shown}");
    assert!(clause(counter, "read-too-low")["violations"].as_u64().unwrap() > 0, "{counter}");
    assert_eq!(invariant(&report, "linearizable")["validity"], "invalid", "{shown}");
    let theirs = invariant(&report, "lost-adds");
    assert_eq!(clause(theirs, "lost")["violations"], lost["violations"], "the user's checker agrees: {theirs}");
    assert!(shown.contains("INVALID"), "{shown}");
    // The history is Jepsen's op maps, one per line, with the final reads beside it.
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.len() > 100, "{} lines", lines.len());
    assert!(lines.iter().any(|l| l["type"] == "info"), "the kill left indeterminate operations");
    assert!(lines
        .iter()
        .all(|l| ["type", "f", "value", "process", "time", "index"].iter().all(|k| !l[k].is_null() || *k == "value")));
    let finals = std::fs::read_to_string(run.join("final-reads.jsonl")).unwrap();
    assert_eq!(finals.lines().count(), 6, "three final reads, invoked and answered:\n{finals}");
}

#[test]
fn a_redis_that_fsyncs_every_write_before_answering_loses_nothing_when_killed() {
    if !installed(REDIS.0, REDIS.1, REDIS.2) {
        return;
    }
    let (out, report, _run, _dir) = run_example("redis-webdis/durable-killed");
    let shown = show(&out);
    for name in ["set", "counter", "linearizable", "lost-adds"] {
        assert_eq!(invariant(&report, name)["validity"], "valid", "{name}:\n{shown}");
    }
    assert_eq!(out.status.code(), Some(0), "{shown}");
}

#[test]
fn jetstream_with_memory_storage_loses_and_reissues_what_it_acknowledged_when_killed() {
    if !installed(JETSTREAM.0, JETSTREAM.1, JETSTREAM.2) {
        return;
    }
    let (out, report, _run, _dir) = run_example("nats-jetstream/memory-killed");
    let shown = show(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    for (name, anomaly) in [
        ("total-queue", "lost"),
        ("set", "lost"),
        ("counter", "read-too-low"),
        ("unique-ids", "duplicate-id"),
        ("linearizable", "nonlinearizable"),
    ] {
        let inv = invariant(&report, name);
        assert_eq!(inv["validity"], "invalid", "{name}:\n{shown}");
        let c = clause(inv, anomaly);
        assert!(c["violations"].as_u64().unwrap() > 0 && c["first"]["subject"].is_string(), "{name}: {c}");
    }
    // What the kill did to the clients, read from the history as for any system.
    let effect = report["faults"][0]["effect"].as_str().unwrap_or_default();
    assert!(effect.contains("operation(s) in flight when it struck"), "{effect}");
}

#[test]
fn jetstream_with_file_storage_keeps_what_it_acknowledged_when_killed() {
    if !installed(JETSTREAM.0, JETSTREAM.1, JETSTREAM.2) {
        return;
    }
    let (out, report, _run, _dir) = run_example("nats-jetstream/file-killed");
    let shown = show(&out);
    for name in ["total-queue", "set", "counter", "unique-ids", "linearizable"] {
        assert_eq!(invariant(&report, name)["validity"], "valid", "{name}:\n{shown}");
    }
    assert_eq!(out.status.code(), Some(0), "{shown}");
}

/// A store that acknowledges every add and silently drops every fifth: a bug the set
/// checker must name, whoever wrote the store.
const LOSSY_STORE: &str = r#"
import json, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
items, lock = [], threading.Lock()
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/add/"):
            x = self.path[5:]
            with lock:
                if int(x) % 5 != 0:
                    items.append(x)
            body = b'{"added":true}'
        elif self.path == "/items":
            with lock:
                body = json.dumps({"items": items}).encode()
        elif self.path == "/private/items":
            if self.headers.get("authorization") != "Bearer s3cret":
                self.send_response(401)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            with lock:
                body = json.dumps({"items": items}).encode()
        else:
            body = b"{}"
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn python() -> bool {
    let found = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_PYTHON=1 but python3 is not installed (apt-get install python3)");
        eprintln!("skipped: python3 is not installed (the stand-in store and the checkers need it)");
    }
    found
}

#[test]
fn external_checkers_judge_through_the_history_files_and_whatever_goes_wrong_is_unknown() {
    if !python() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("store.py"), LOSSY_STORE).unwrap();
    std::fs::write(
        dir.path().join("cluster.toml"),
        "name = \"lossy\"\ningress = \"store\"\n[services.store]\ncommand = [\"python3\", \"./store.py\", \"{port}\"]\n\
         port = 7471\nhealth = \"/items\"\nready = \"/items\"\n",
    )
    .unwrap();
    // store.py is an argument, not the program: run it from the node's folder by path.
    let cluster = std::fs::read_to_string(dir.path().join("cluster.toml"))
        .unwrap()
        .replace("./store.py", &dir.path().join("store.py").display().to_string());
    std::fs::write(dir.path().join("cluster.toml"), cluster).unwrap();
    std::fs::write(dir.path().join("crash.py"), "import sys\nsys.exit('the checker fell over')\n").unwrap();
    std::fs::write(
        dir.path().join("garbage.py"),
        "import os\nopen(os.environ['GAUNTLET_VERDICT'], 'w').write('{\"valid\": ')\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("slow.py"), "import time\ntime.sleep(30)\n").unwrap();
    let checker = workspace().join("examples/checkers/lost_adds.py");
    let scenario = format!(
        r#"name = "lossy-store"
description = "Hypothesis: the store keeps every element it acknowledges (it does not)."
seed = 2
[cluster]
file = "cluster.toml"
[load]
schedule = {{ mode = "constant", rate = 30, duration = "3s" }}
[load.workload]
[[load.workload.flow]]
name = "add"
[[load.workload.flow.step]]
path = "/add/{{{{iteration}}}}"
op = {{ f = "add", value = "{{{{iteration}}}}" }}
[[final_read]]
path = "/private/items"
bearer = "s3cret"
result = "/items"
[[slo]]
threshold = "ok_share(add) >= 99%"
[[invariant]]
checker = "set"
[[invariant]]
name = "lost-adds"
command = ["python3", "{checker}"]
[[invariant]]
name = "crash"
command = ["python3", "crash.py"]
[[invariant]]
name = "garbage"
command = ["python3", "garbage.py"]
[[invariant]]
name = "slow"
command = ["python3", "slow.py"]
timeout = "1s"
[recovery]
duration = "1s"
settle = "5s"
"#,
        checker = checker.display()
    );
    let file = dir.path().join("lossy.toml");
    std::fs::write(&file, scenario).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gauntlet"))
        .args(["run", "--runs"])
        .arg(dir.path().join("runs"))
        .arg(&file)
        .current_dir(workspace())
        .output()
        .unwrap();
    let shown = show(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    let report = report_json(&String::from_utf8_lossy(&out.stdout));
    // Every add was acknowledged (the store lies later, not now): the share of `ok` holds.
    let share = report["slos"].as_array().unwrap().iter().find(|s| s["name"] == "ok_share(add) >= 99%").unwrap();
    assert_eq!((share["status"].as_str(), share["observed"].as_f64()), (Some("passed"), Some(1.0)), "{share}");
    // The library and the user's own checker find the same lost elements.
    let set = invariant(&report, "set");
    let ext = invariant(&report, "lost-adds");
    assert_eq!(set["validity"], "invalid", "{shown}");
    assert_eq!(ext["validity"], "invalid", "{shown}");
    let lost = clause(set, "lost")["violations"].as_u64().unwrap();
    assert!(lost >= 10, "about one in five of ~90 adds: {lost}");
    assert_eq!(clause(ext, "lost")["violations"].as_u64().unwrap(), lost, "{ext}");
    let subject = clause(ext, "lost")["first"]["subject"].as_str().unwrap().to_string();
    let n: u64 = subject.trim_start_matches("element ").parse().unwrap();
    assert_eq!(n % 5, 0, "the lost ones are the fifths: {subject}");
    for (name, why) in
        [("crash", "the checker fell over"), ("garbage", "not a verdict file"), ("slow", "ran past its timeout of 1s")]
    {
        let inv = invariant(&report, name);
        assert_eq!(inv["validity"], "unknown", "{name}: {inv}");
        assert!(inv["summary"].as_str().unwrap().contains(why), "{name}: {inv}");
    }
}
