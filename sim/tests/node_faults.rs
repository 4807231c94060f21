//! Node faults in simulation: a graceful stop drains what is in flight before the node
//! goes, and the node comes back at the end of the fault; a pause freezes what crosses
//! the network until the resume.

use std::path::Path;

use gauntlet::scenario::executor::RunOutcome;
use gauntlet::scenario::Scenario;

/// `orders-killed.toml` with its kill of orders-0 (10 s to 15 s) made `op`, run on seed
/// 14; the run folder lives as long as the returned guard.
fn orders_killed_as(op: &str) -> (RunOutcome, tempfile::TempDir) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/orders-killed.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("op = \"kill\"", &format!("op = \"{op}\""));
    let scenario = Scenario::parse(&text, &path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let outcome = gauntlet_sim::run_seed(&scenario, 14, out.path(), false).unwrap();
    assert!(outcome.passed(), "{:?}", outcome.failure_reasons());
    (outcome, out)
}

/// The counts of "N operation(s) in flight when it struck: a ok, b fail, c info".
fn in_flight(detail: &str) -> (u64, u64, u64) {
    let tail =
        detail.split("in flight when it struck:").nth(1).unwrap_or_else(|| panic!("no in-flight count: {detail}"));
    let count = |what: &str| {
        tail.split([',', ';'])
            .find_map(|p| p.trim().strip_suffix(what))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    };
    (count(" ok"), count(" fail"), count(" info"))
}

#[test]
fn a_stopped_orders_finishes_its_sagas_first_and_comes_back() {
    let (outcome, _run) = orders_killed_as("stop");
    let stop = &outcome.faults[1];
    let (at, applied) = (stop.planned_at, stop.applied_at.expect("the stop happened"));
    // Payments answers 3 s late from 6 s, so sagas are in flight at 10 s: the node
    // goes only once they are done, within the grace period.
    assert!(applied > at && applied < at + 10.0, "stopped at {applied}, planned {at}");
    assert_eq!(stop.removed_at, Some(15.0));
    let effect = stop.effect.as_ref().expect("measured");
    assert!(effect.touched > 0, "{}", effect.detail);
    // Every checkout in flight at the stop was answered before the node went: none is
    // left indeterminate, and the restarted node served the rest.
    let (ok, fail, info) = in_flight(&effect.detail);
    assert!(ok > 0 && fail == 0 && info == 0, "{}", effect.detail);
    assert!(outcome.operations.get("place_order ok").copied().unwrap_or(0) > 50, "{:?}", outcome.operations);
}

#[test]
fn a_paused_orders_answers_nothing_until_it_is_resumed_and_loses_nothing() {
    let (outcome, out) = orders_killed_as("pause");
    let pause = &outcome.faults[1];
    // It strikes once the orders in flight are read (a few simulated ms), and ends on time.
    let applied = pause.applied_at.expect("the pause happened");
    assert!((10.0..10.1).contains(&applied), "paused at {applied}");
    assert_eq!(pause.removed_at, Some(15.0));
    // Checkouts were mid-saga when it froze; every order ended after the thaw (the
    // run passed with orders_terminate).
    let effect = pause.effect.as_ref().expect("measured");
    let (ok, fail, info) = in_flight(&effect.detail);
    assert!(ok + fail + info > 0, "{}", effect.detail);
    // While frozen it answered nothing: no checkout placed during the pause was
    // acknowledged before the resume, and some placed then were acknowledged after it.
    let text = std::fs::read_to_string(out.path().join("history.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let secs = |l: &serde_json::Value| l["time"].as_u64().unwrap() as f64 / 1e9;
    let mut invoked: std::collections::BTreeMap<String, f64> = Default::default();
    let mut during = 0;
    let mut acked_after = 0;
    for l in lines.iter().filter(|l| l["f"] == "place_order") {
        let process = l["process"].to_string();
        if l["type"] == "invoke" {
            invoked.insert(process, secs(l));
            continue;
        }
        let Some(at) = invoked.remove(&process).filter(|at| (applied..15.0).contains(at)) else { continue };
        during += 1;
        if l["type"] == "ok" {
            assert!(secs(l) >= 15.0, "acknowledged while frozen: {l}");
            acked_after += 1;
        }
        let _ = at;
    }
    assert!(during > 0, "checkouts were placed during the pause");
    assert!(acked_after > 0, "some were acknowledged after the resume");
}
