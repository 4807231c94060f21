//! Clock faults in simulation: `gateway-clock-ahead.toml`, shortened, runs on the
//! gateway's simulated clock with the outcome its hypothesis states (checkouts refused
//! while the gateway is 90 s ahead, paid once it jumps to 30 s ahead), the clock read
//! back from the gateway's own answers, and the seed replays byte for byte.

use std::path::Path;

use gauntlet::scenario::Scenario;

/// The shipped scenario with its timeline halved: the first fault from 4 s to 9 s, the
/// jump from 9 s to 13 s, load for 17 s.
fn shortened() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/gateway-clock-ahead.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("duration = \"34s\"", "duration = \"17s\"")
        .replace("at = \"8s\"\nfor = \"10s\"", "at = \"4s\"\nfor = \"5s\"")
        .replace("at = \"18s\"\nfor = \"8s\"", "at = \"9s\"\nfor = \"4s\"")
        .replace("[recovery]\nduration = \"8s\"", "[recovery]\nduration = \"4s\"");
    let scenario = Scenario::parse(&text, &path).unwrap();
    assert_eq!(scenario.faults[1].at.as_secs(), 9, "the scenario file changed: update this test");
    scenario
}

#[test]
fn a_gateway_clock_ahead_refuses_tokens_in_simulation_and_replays() {
    let scenario = shortened();
    let out = tempfile::tempdir().unwrap();
    let dirs = [out.path().join("a"), out.path().join("b")];
    for dir in &dirs {
        let outcome = gauntlet_sim::run_seed(&scenario, 29, dir, false).unwrap();
        assert!(outcome.passed(), "{:?}", outcome.failure_reasons());
        for (fault, set) in outcome.faults.iter().zip([90.0, 30.0]) {
            let effect = fault.effect.as_ref().expect("measured");
            let read: f64 = effect
                .detail
                .split(" read ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no reading in {}", effect.detail));
            assert!((read - set).abs() < 1.0, "set {set}, {}", effect.detail);
            assert!(effect.detail.contains("ahead (Date header"), "{}", effect.detail);
        }
        assert!(outcome.operations.get("place_order fail").copied().unwrap_or(0) > 5, "{:?}", outcome.operations);
    }
    assert_eq!(gauntlet_sim::compare::first_divergence(&dirs[0], &dirs[1]), None);
}
