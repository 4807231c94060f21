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
    // Every order in flight at the stop ended, and the restarted node served the rest.
    assert!(
        effect.detail.contains(&format!("{} of them reached PAID or CANCELLED", effect.touched)),
        "{}",
        effect.detail
    );
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
    // Orders were mid-saga when it froze, and every one of them ended after the thaw.
    let effect = pause.effect.as_ref().expect("measured");
    assert!(effect.touched > 0, "{}", effect.detail);
    assert!(
        effect.detail.contains(&format!("{} of them reached PAID or CANCELLED", effect.touched)),
        "{}",
        effect.detail
    );
    // While frozen it answered nothing: no order placed during the pause was created
    // (201) before the resume, and some placed then were created after it.
    let history: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("history.json")).unwrap()).unwrap();
    let during: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|op| op["kind"] == "place_order")
        .filter(|op| (applied..15.0).contains(&op["invoked"].as_f64().unwrap()))
        .collect();
    assert!(!during.is_empty(), "checkouts were placed during the pause");
    for op in &during {
        if op["status"] == 201 {
            assert!(op["completed"].as_f64().unwrap() >= 15.0, "created while frozen: {op}");
        }
    }
    assert!(during.iter().any(|op| op["status"] == 201), "some were created after the resume: {during:?}");
}
