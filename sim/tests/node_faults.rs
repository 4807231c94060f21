//! Node faults in simulation: a graceful stop drains what is in flight before the node
//! goes, and the node comes back at the end of the fault.

use std::path::Path;

use gauntlet::scenario::Scenario;

#[test]
fn a_stopped_orders_finishes_its_sagas_first_and_comes_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let path = root.join("orders-killed.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("op = \"kill\"", "op = \"stop\"");
    let stopped = Scenario::parse(&text, &path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let outcome = gauntlet_sim::run_seed(&stopped, 14, out.path(), false).unwrap();
    assert!(outcome.passed(), "{:?}", outcome.failure_reasons());
    let stop = &outcome.faults[1];
    let (at, applied) = (stop.planned_at, stop.applied_at.expect("the stop happened"));
    // Payments is slowed to 1.5 s from 6 s, so sagas are in flight at 10 s: the node
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
    assert!(outcome.order_statuses.get("PAID").copied().unwrap_or(0) > 50, "{:?}", outcome.order_statuses);
}
