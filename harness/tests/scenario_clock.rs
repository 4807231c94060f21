//! `scenarios/gateway-clock-ahead.toml` on the process runtime: the gateway's clock,
//! moved by libfaketime, is read back from its own answers within a second of each
//! offset set (90 s ahead, then the jump to 30 s ahead), and the shop does what the
//! hypothesis says; and a run aborted mid-fault puts the clock back.
//!
//! They need libfaketime (Debian's `faketime`): where it is missing they skip saying
//! why, unless `GAUNTLET_REQUIRE_FAKETIME=1` (set by .ci/run) makes that a failure.

mod scenario_common;

use scenario_common::{gauntlet_run, report_json, scenario_file, workspace};

fn show(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether libfaketime is here (see runtime_clock.rs).
fn capable() -> bool {
    let Err(missing) = gauntlet::cluster::clock::Faketime::find() else { return true };
    let required = std::env::var("GAUNTLET_REQUIRE_FAKETIME").is_ok_and(|v| v == "1");
    assert!(!required, "GAUNTLET_REQUIRE_FAKETIME=1 but: {missing}");
    eprintln!("skipped: {missing}");
    false
}

/// The seconds a clock effect says the node's clock read ahead (negative: behind).
fn read_offset(effect: &str) -> f64 {
    let after = effect.split(" read ").nth(1).unwrap_or_else(|| panic!("no reading in {effect}"));
    let mut words = after.split(' ');
    let secs: f64 = words.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{effect}"));
    match words.nth(1) {
        Some("ahead") => secs,
        Some("behind") => -secs,
        _ => panic!("neither ahead nor behind: {effect}"),
    }
}

#[test]
fn a_gateway_clock_ahead_refuses_tokens_until_it_jumps_back_and_is_read_back_within_a_second() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = workspace().join("scenarios/gateway-clock-ahead.toml");
    let out = gauntlet_run(dir.path(), &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = report_json(&String::from_utf8_lossy(&out.stdout));
    let faults = report["faults"].as_array().unwrap();
    for (fault, set) in faults.iter().zip([90.0, 30.0]) {
        let effect = fault["effect"].as_str().unwrap_or_default();
        assert!((read_offset(effect) - set).abs() < 1.0, "set {set}: {effect}");
        assert!(effect.contains("(Date header"), "{effect}");
    }
}

#[test]
fn a_run_aborted_mid_fault_puts_the_clock_back() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Checkouts fail while the gateway is 90 s ahead (tokens of 75 s look expired): the
    // SLO aborts the run 2 s into the fault, with the clock still moved.
    let body = "[cluster]\nfile = \"CLUSTER\"\nenv = { users = { SHOP_USERS_TOKEN_TTL = \"75s\" } }\n\
         [load]\nworkload = \"WORKLOAD\"\nschedule = { mode = \"constant\", rate = 8, duration = \"30s\" }\n\
         [[fault]]\nnode = \"gateway-0\"\nop = \"clock\"\nattributes = { offset = \"+90s\" }\nat = \"1s\"\nfor = \"25s\"\n\
         [[slo]]\nthreshold = \"error_rate < 1%\"\nflow = \"checkout\"\nabort_after = \"2s\"\n\
         [recovery]\nduration = \"1s\"\n";
    let file = scenario_file(dir.path(), "clock-aborted", body);
    let out = gauntlet_run(dir.path(), &file, &[]);
    let shown = show(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("rolled back f1 gateway-0 clock +90s"), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let effect = report_json(&stdout)["faults"][0]["effect"].as_str().unwrap_or_default().to_string();
    assert!((read_offset(&effect) - 90.0).abs() < 1.0, "read before it was put back: {effect}");
    let run_dir = stdout.lines().find_map(|l| l.strip_prefix("logs, history and state: ")).expect("a run folder");
    let clock =
        std::fs::read_to_string(std::path::Path::new(run_dir.trim()).join("clocks/gateway-0.faketime")).unwrap();
    assert_eq!(clock, "+0.000s\n", "the gateway's clock is put back");
}
