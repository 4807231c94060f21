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
fn a_load_the_simulator_cannot_run_is_refused_naming_it() {
    // smoke.toml with its open schedule swapped for a closed loop (only open-model
    // schedules are simulated).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("scenarios/smoke.toml")).unwrap();
    let open = "schedule = { mode = \"constant\", rate = 8, duration = \"24s\" }";
    assert!(text.contains(open), "smoke.toml's schedule changed: update this test");
    let text = text
        .replace(open, "schedule = { mode = \"closed\", connections = 4, duration = \"24s\" }")
        .replace("workload = \"workloads/", &format!("workload = \"{}/scenarios/workloads/", root.display()))
        .replace("[cluster]\n", &format!("[cluster]\nfile = \"{}/services/cluster.toml\"\n", root.display()));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("closed.toml");
    std::fs::write(&file, text).unwrap();
    let (code, out) = sim(&[file.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot be simulated") && out.contains("closed-loop"), "{out}");
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
