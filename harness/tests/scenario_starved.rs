//! `scenarios/payments-cpu-starved.toml`, `catalog-memory-capped.toml` and
//! `payments-disk-full.toml`, shortened, on the process runtime: each resource fault
//! bites the shop (payments throttled, catalog reclaimed down to its limit, payments'
//! writes meeting a full disk, in the report's observed effect and in payments' own
//! log) and the shop holds its SLOs and its invariants.
//!
//! They need root, cgroups and tmpfs mounts: where one is missing they skip saying why,
//! unless `GAUNTLET_REQUIRE_CGROUPS=1` (set by .ci/run) makes that a failure.

mod scenario_common;

use std::path::Path;

use scenario_common::{gauntlet_run, report_json, scenario_file, workspace};

fn show(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether this machine can hold resource faults (see runtime_limits.rs).
fn capable() -> bool {
    let missing = gauntlet::cluster::limits::missing_capabilities();
    if missing.is_empty() {
        return true;
    }
    let required = std::env::var("GAUNTLET_REQUIRE_CGROUPS").is_ok_and(|v| v == "1");
    assert!(!required, "GAUNTLET_REQUIRE_CGROUPS=1 but: {}", missing.join("; "));
    eprintln!("skipped: {}", missing.join("; "));
    false
}

/// A shortened shop scenario: `workload` at `rate` flows/s for 16 s, one resource fault
/// from 2 s to 10 s, all orders paid.
fn starved(workload: &str, rate: u32, fault: &str) -> String {
    format!(
        "[cluster]\nfile = \"CLUSTER\"\n\
         [load]\nworkload = \"{workload}\"\nschedule = {{ mode = \"constant\", rate = {rate}, duration = \"16s\" }}\n\
         [[fault]]\n{fault}at = \"2s\"\nfor = \"8s\"\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n\
         [[slo]]\nthreshold = 'ok_share(place_order where /status == \"PAID\") >= 95%'\nconfirm = {{ read = \"orders-state\", items = \"/orders\", by = \"/id\" }}\n\
         [recovery]\nduration = \"5s\"\n"
    )
}

/// Runs it; the one fault's report entry and the run's folder, once the run passed.
fn passing(dir: &Path, name: &str, body: &str) -> (serde_json::Value, std::path::PathBuf) {
    let file = scenario_file(dir, name, body);
    let out = gauntlet_run(dir, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = report_json(&stdout);
    let fault = report["faults"][0].clone();
    eprintln!("{name}: {fault}");
    let run_dir = stdout
        .lines()
        .find_map(|l| l.strip_prefix("logs, history and state: "))
        .unwrap_or_else(|| panic!("no run folder in {stdout}"));
    (fault, run_dir.trim().into())
}

#[test]
fn payments_starved_of_cpu_is_throttled_and_every_checkout_still_ends_paid() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let workload = workspace().join("scenarios/workloads/checkouts.toml");
    let body = starved(
        &workload.display().to_string(),
        20,
        "node = \"payments-0\"\nop = \"cpu\"\nattributes = { share = 0.01 }\n",
    );
    let (fault, _) = passing(dir.path(), "payments-cpu-starved-short", &body);
    let effect = fault["effect"].as_str().unwrap_or_default();
    assert!(fault["touched"].as_u64().unwrap_or(0) >= 10, "payments was throttled in most periods: {effect}");
    assert!(effect.contains("at a 1% share of a core (1 ms per 100 ms)"), "{effect}");
}

#[test]
fn catalog_held_below_what_it_holds_is_reclaimed_down_and_keeps_serving() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body = starved("WORKLOAD", 8, "node = \"catalog-0\"\nop = \"memory\"\nattributes = { limit = \"3MiB\" }\n");
    let (fault, _) = passing(dir.path(), "catalog-memory-capped-short", &body);
    let effect = fault["effect"].as_str().unwrap_or_default();
    let bit = effect.contains("by reclaim") || effect.contains("ran at its limit");
    assert!(effect.contains("held to 3.0 MiB") && bit, "{effect}");
}

#[test]
fn payments_disk_full_fails_its_writes_and_no_order_is_lost_or_charged_twice() {
    if !capable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let body = starved(
        "WORKLOAD",
        8,
        "node = \"payments-0\"\nop = \"disk_full\"\nattributes = { leave = \"16KiB\", size = \"32MiB\" }\n",
    );
    let (fault, run_dir) = passing(dir.path(), "payments-disk-full-short", &body);
    let effect = fault["effect"].as_str().unwrap_or_default();
    // Read back, not assumed: payments may have taken some of the 16 KiB already.
    let left_little = ["to 16.0 KiB free", "to 12.0 KiB free", "to 8.0 KiB free", "to 4.0 KiB free", "to 0 B free"];
    assert!(effect.contains("data/payments to ") && left_little.iter().any(|l| effect.contains(l)), "{effect}");
    // Payments met the full disk itself: its writes failed (SQLite's SQLITE_FULL).
    let log = std::fs::read_to_string(run_dir.join("logs/payments-0.log")).unwrap();
    assert!(log.contains("database or disk is full"), "payments never met the full disk: {effect}");
}
