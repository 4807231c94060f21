//! `scenarios/payments-loss.toml` and `scenarios/payments-corrupt.toml`, shortened, on
//! the process runtime: the damaging toxics touch the shop's traffic (segments lost,
//! bytes flipped, in the report's observed effect) and the shop holds its SLOs and
//! invariants; a corrupted answer is refused by orders' client (its Content-Digest does
//! not match) and retried, never stored.

mod scenario_common;

use std::path::Path;

use scenario_common::{gauntlet_run, report_json, scenario_file};

fn show(out: &std::process::Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A shortened shop scenario with one fault on orders->payments.
fn damaged_payments(fault: &str) -> String {
    format!(
        "[cluster]\nfile = \"CLUSTER\"\n\
         [load]\nworkload = \"WORKLOAD\"\nschedule = {{ mode = \"constant\", rate = 8, duration = \"12s\" }}\n\
         [[fault]]\nedge = \"orders->payments\"\n{fault}at = \"2s\"\nfor = \"8s\"\n\
         [[slo]]\nthreshold = \"availability >= 99%\"\n\
         [[slo]]\nthreshold = 'ok_share(place_order where /status == \"PAID\") >= 90%'\nconfirm = {{ read = \"orders-state\", items = \"/orders\", by = \"/id\" }}\n\
         [recovery]\nduration = \"2s\"\n"
    )
}

/// Runs it; the one fault's report entry, once the run passed.
fn passing_fault(dir: &Path, name: &str, fault: &str) -> serde_json::Value {
    let file = scenario_file(dir, name, &damaged_payments(fault));
    let out = gauntlet_run(dir, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report = report_json(&String::from_utf8_lossy(&out.stdout));
    let fault = report["faults"][0].clone();
    eprintln!("{name}: {fault}");
    fault
}

#[test]
fn lost_segments_on_orders_payments_slow_checkouts_and_the_report_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let fault = passing_fault(
        dir.path(),
        "payments-loss-short",
        "stream = \"both\"\ntoxic = \"loss\"\nattributes = { probability = 0.2, segment_size = 256 }\n",
    );
    assert!(fault["touched"].as_u64().unwrap_or(0) > 0, "no segment lost: {fault}");
    let effect = fault["effect"].as_str().unwrap_or_default();
    assert!(effect.contains("segment(s) lost (retransmitted after 200"), "{effect}");
}

#[test]
fn corrupted_payments_answers_are_refused_by_their_digest_retried_and_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let fault = passing_fault(
        dir.path(),
        "payments-corrupt-short",
        "stream = \"downstream\"\ntoxic = \"corrupt\"\nattributes = { rate = 0.005, spare_head = true }\n",
    );
    assert!(fault["touched"].as_u64().unwrap_or(0) > 0, "no byte flipped: {fault}");
    assert!(fault["effect"].as_str().unwrap_or_default().contains("byte(s) flipped"), "{fault}");
    // The damage was met, and detected: orders logged the refusals it retried.
    let mut refused = 0;
    let mut logs = Vec::new();
    for run in std::fs::read_dir(dir.path().join("runs")).unwrap().flatten() {
        let log = run.path().join("logs/orders-0.log");
        refused +=
            std::fs::read_to_string(&log).unwrap_or_default().matches("does not match its Content-Digest").count();
        logs.push(log);
    }
    assert!(refused > 0, "orders took every damaged answer as good data (read {logs:?})");
}
