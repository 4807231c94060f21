//! `gauntlet run --schedule-from`: a simulated run's fault schedule (its seed, each
//! fault's times and node target) replayed against real processes.

mod scenario_common;

use scenario_common::{gauntlet_run, report_json, workspace};

#[test]
fn a_schedule_moves_the_faults_and_sets_the_seed_of_a_real_run() {
    let dir = tempfile::tempdir().unwrap();
    // As the simulator writes it for smoke.toml, with the latency fault drawn earlier
    // and shorter, under seed 9.
    let schedule = serde_json::json!({
        "scenario": "smoke",
        "seed": 9,
        "faults": [{ "label": "f1 payments slow", "target": "orders->payments", "at_ms": 3000, "until_ms": 7000 }]
    });
    let file = dir.path().join("schedule.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&schedule).unwrap()).unwrap();
    let out = gauntlet_run(
        dir.path(),
        &workspace().join("scenarios/smoke.toml"),
        &["--schedule-from", file.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("scenario smoke (seed 9)"), "{stdout}");
    let report = report_json(&stdout);
    let fault = &report["faults"][0];
    assert_eq!(fault["planned_at_ms"], 3000, "{fault}");
    let applied = fault["applied_at_ms"].as_u64().expect("applied");
    assert!((3000..4000).contains(&applied), "{fault}");
    let removed = fault["removed_at_ms"].as_u64().expect("removed");
    assert!((7000..8000).contains(&removed), "{fault}");
}

#[test]
fn a_schedule_of_another_scenario_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let schedule = serde_json::json!({ "scenario": "payments-down", "seed": 1, "faults": [] });
    std::fs::create_dir_all(dir.path().join("sim-run")).unwrap();
    std::fs::write(dir.path().join("sim-run/schedule.json"), schedule.to_string()).unwrap();
    let out = gauntlet_run(
        dir.path(),
        &workspace().join("scenarios/smoke.toml"),
        &["--schedule-from", dir.path().join("sim-run").to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("schedule is of scenario `payments-down`"), "{stderr}");
    let missing =
        gauntlet_run(dir.path(), &workspace().join("scenarios/smoke.toml"), &["--schedule-from", "/nonexistent"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot read the fault schedule"), "{stderr}");
}
