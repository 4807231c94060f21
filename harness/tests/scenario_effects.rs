//! An experiment must prove it happened, and the system must come back: a fault that
//! touched nothing fails the run ("the experiment did not happen") unless the scenario
//! says `expect_effect = false`; `orders-killed` finds sagas in flight at the kill and
//! the restart resumes them; a steady state that does not hold again after recovery
//! fails the run on its own; a slow restart does not delay another fault.

mod scenario_common;

use std::path::Path;

use scenario_common::{gauntlet_run, report_json, scenario_file, workspace};

fn show(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The report.json of a run.
fn report(out: &std::process::Output) -> serde_json::Value {
    report_json(&String::from_utf8_lossy(&out.stdout))
}

fn reasons(report: &serde_json::Value) -> Vec<String> {
    report["verdict"]["reasons"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(String::from)).collect()
}

#[test]
fn a_fault_on_an_edge_no_traffic_crosses_is_an_experiment_that_did_not_happen() {
    let dir = tempfile::tempdir().unwrap();
    // Only browsing: nothing crosses orders->payments, so its latency touches nothing.
    let body = |expect: &str| {
        format!(
            "invariants = []\n[cluster]\nfile = \"CLUSTER\"\n\
             [load]\nschedule = {{ mode = \"constant\", rate = 10, duration = \"6s\" }}\n\
             [load.workload]\n[[load.workload.flow]]\nname = \"browse\"\n[[load.workload.flow.step]]\npath = \"/api/v1/products/1\"\n\
             [[fault]]\nedge = \"orders->payments\"\ntoxic = \"latency\"\nattributes = {{ latency = \"200ms\" }}\nat = \"1s\"\nfor = \"3s\"\n{expect}\
             [[slo]]\nthreshold = \"availability >= 99%\"\n[recovery]\nduration = \"1s\"\n"
        )
    };
    let file = scenario_file(dir.path(), "untouched", &body(""));
    let out = gauntlet_run(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("NO EFFECT: the experiment did not happen"), "{}", show(&out));
    let r = report(&out);
    let why = reasons(&r);
    assert_eq!(why.len(), 1, "the untouched fault is the only failure: {why:?}");
    assert!(why[0].contains("the experiment did not happen") && why[0].contains("orders->payments"), "{why:?}");
    assert_eq!(r["faults"][0]["touched"], 0, "{}", r["faults"]);

    // Saying so up front makes the same run pass.
    let file = scenario_file(dir.path(), "untouched-expected", &body("expect_effect = false\n"));
    let out = gauntlet_run(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn orders_killed_finds_checkouts_in_flight_and_the_restart_resumes_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = gauntlet_run(dir.path(), &workspace().join("scenarios/orders-killed.toml"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = report(&out);
    let kill = r["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["target"] == "orders-0")
        .unwrap_or_else(|| panic!("no kill of orders-0 in {}", r["faults"]))
        .clone();
    eprintln!("the kill: {kill}");
    // Checkouts were in flight at the kill -9, and their clients cannot tell how they
    // ended: the history holds them as indeterminate.
    let effect = kill["effect"].as_str().unwrap_or_default();
    let info = in_flight_info(effect);
    assert!(info > 0, "checkouts were in flight at the kill, indeterminate: {effect}");
    // The restart resumed their sagas: every order ended and none was lost.
    let valid =
        |name: &str| r["invariants"].as_array().unwrap().iter().any(|i| i["name"] == name && i["valid"] == true);
    assert!(valid("orders_terminate") && valid("no_lost_orders"), "{}", r["invariants"]);
}

/// The `info` count of "N operation(s) in flight when it struck: a ok, b fail, c info".
fn in_flight_info(effect: &str) -> u64 {
    let tail =
        effect.split("in flight when it struck:").nth(1).unwrap_or_else(|| panic!("no in-flight count: {effect}"));
    tail.split(',').find_map(|p| p.trim().strip_suffix(" info")).and_then(|n| n.trim().parse().ok()).unwrap()
}

/// A stand-in service: ready at once, but its `/probe` answers 200 only on its first
/// start (a marker file in its data directory says it ran before).
const ONCE: &str = r#"
import http.server, os
restarted = os.path.exists("started")
open("started", "w").close()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path in ("/health", "/ready") or (self.path == "/probe" and not restarted)
        self.send_response(200 if ok else 503)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["WEB_PORT"])), H).serve_forever()
"#;

/// A stand-in service that takes 2 s to come back after its first start.
const SLOW_RESTART: &str = r#"
import http.server, os, time
if os.path.exists("started"):
    time.sleep(2)
open("started", "w").close()
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

/// python3, if installed; a missing one is an error under `GAUNTLET_REQUIRE_PYTHON=1`.
fn python() -> Option<String> {
    let found = std::process::Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var("GAUNTLET_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
        assert!(!required, "GAUNTLET_REQUIRE_PYTHON=1 but python3 is not installed (apt-get install python3)");
        eprintln!("skipped: python3 is not installed (the stand-in service needs it)");
    }
    found.then(|| "python3".to_string())
}

/// A one-service cluster in `dir` whose node `web-0` runs `script` with python.
fn stand_in_cluster(dir: &Path, python: &str, script: &str) -> std::path::PathBuf {
    let path = dir.join("stand-in.py");
    std::fs::write(&path, script).unwrap();
    let cluster = dir.join("cluster.toml");
    let text = format!(
        "name = \"stand-in\"\ningress = \"web\"\n[services.web]\ncommand = [\"{python}\", \"{}\"]\nport = 7391\nenv_names = {{ port = \"WEB_PORT\" }}\n",
        path.display()
    );
    std::fs::write(&cluster, text).unwrap();
    cluster
}

#[test]
fn a_steady_state_that_does_not_hold_again_after_recovery_fails_the_run() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = stand_in_cluster(dir.path(), &python, ONCE);
    let body = format!(
        "invariants = []\n[cluster]\nfile = \"{}\"\n\
         [steady_state]\ntimeout = \"3s\"\n[[steady_state.probe]]\nname = \"probe answers\"\npath = \"/probe\"\n\
         [load]\nschedule = {{ mode = \"constant\", rate = 20, duration = \"6s\" }}\n\
         [load.workload]\n[[load.workload.flow]]\nname = \"health\"\n[[load.workload.flow.step]]\npath = \"/health\"\n\
         [[fault]]\nnode = \"web-0\"\nop = \"kill\"\nat = \"1s\"\nfor = \"1s\"\n\
         [[slo]]\nthreshold = \"availability >= 10%\"\n[recovery]\nduration = \"2s\"\n",
        cluster.display()
    );
    let file = scenario_file(Path::new(dir.path()), "once", &body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(show(&out).contains("steady state did not hold again after recovery"), "{}", show(&out));
    let r = report(&out);
    let why = reasons(&r);
    assert_eq!(why.len(), 1, "the steady state after recovery is the only failure: {why:?}");
    assert!(why[0].contains("did not hold again after recovery") && why[0].contains("probe answers"), "{why:?}");
    assert!(r["run"]["steady_state_after"].as_str().is_some_and(|s| s.contains("503")), "{}", r["run"]);
}

#[test]
fn a_slow_restart_does_not_delay_the_next_fault() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cluster = stand_in_cluster(dir.path(), &python, SLOW_RESTART);
    // The restart at 1s takes 2 s to be ready; the latency is due at 1.5s, in the middle.
    let body = format!(
        "invariants = []\n[cluster]\nfile = \"{}\"\n\
         [load]\nschedule = {{ mode = \"constant\", rate = 20, duration = \"7s\" }}\n\
         [load.workload]\n[[load.workload.flow]]\nname = \"health\"\n[[load.workload.flow.step]]\npath = \"/health\"\n\
         [[fault]]\nnode = \"web-0\"\nop = \"restart\"\nat = \"1s\"\n\
         [[fault]]\nedge = \"client->web\"\ntoxic = \"latency\"\nattributes = {{ latency = \"10ms\" }}\nat = \"1500ms\"\nfor = \"3s\"\nexpect_effect = false\n\
         [[slo]]\nthreshold = \"availability >= 10%\"\n[recovery]\nduration = \"2s\"\n",
        cluster.display()
    );
    let file = scenario_file(dir.path(), "slow-restart", &body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let r = report(&out);
    let fault = |target: &str| {
        r["faults"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["target"] == target)
            .cloned()
            .unwrap_or_else(|| panic!("{target}"))
    };
    let (restart, latency) = (fault("web-0"), fault("client->web"));
    let late = |f: &serde_json::Value| f["applied_at_ms"].as_i64().unwrap() - f["planned_at_ms"].as_i64().unwrap();
    eprintln!("restart {restart}\nlatency {latency}");
    assert!(late(&restart) >= 1_500, "the restart is complete once the node is ready: {restart}");
    assert!(late(&latency) < 500, "the latency went on when due, not after the restart: {latency}");
}
