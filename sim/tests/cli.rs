//! `gauntlet-sim` as a user runs it: exit codes, refusals that name what is refused.

use std::path::Path;
use std::process::Command;

fn sim(args: &[&str]) -> (i32, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_gauntlet-sim")).args(args).current_dir(&root).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_closed_loop_load_runs_and_is_reported_as_closed() {
    // smoke.toml with its open schedule swapped for a closed loop of 2 users.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("scenarios/smoke.toml")).unwrap();
    let open = "schedule = { mode = \"constant\", rate = 8, duration = \"24s\" }";
    assert!(text.contains(open), "smoke.toml's schedule changed: update this test");
    let text = text
        .replace(open, "schedule = { mode = \"closed\", connections = 2, duration = \"24s\" }")
        .replace("workload = \"workloads/", &format!("workload = \"{}/scenarios/workloads/", root.display()))
        .replace("[cluster]\n", &format!("[cluster]\nfile = \"{}/services/cluster.toml\"\n", root.display()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("closed.toml");
    std::fs::write(&file, text).unwrap();
    let out = dir.path().join("runs");
    let (code, text) = sim(&[file.to_str().unwrap(), "--seed", "3", "--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{text}");
    let report = std::fs::read(out.join("seed-3/report/report.json")).unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report).unwrap();
    assert_eq!(report["run"]["load_model"], "closed", "{}", report["run"]);
    // Two users back to back for 24 simulated seconds, as fast as the shop answers.
    let flows: u64 = report["flows"].as_array().unwrap().iter().map(|f| f["stats"]["count"].as_u64().unwrap()).sum();
    assert!(flows >= 100, "{flows} flows");
}

#[test]
fn a_scenario_on_the_event_driven_shop_is_refused_naming_the_service() {
    let (code, text) = sim(&["scenarios/broker-killed.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("service `broker`") || text.contains("service `notifications`"), "{text}");
}

#[test]
fn a_bad_seed_range_is_a_usage_error() {
    let (code, text) = sim(&["scenarios/smoke.toml", "--seeds", "5..2"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("empty"), "{text}");
}

#[test]
fn a_missing_scenario_file_is_bad_input() {
    let (code, text) = sim(&["scenarios/nope.toml"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("nope.toml"), "{text}");
}
