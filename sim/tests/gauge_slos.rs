//! SLOs on service gauges in simulation: the simulator reads each named gauge from its
//! node's `/metrics` once a second, as the real executor does, and judges the SLO on
//! the samples in its window; each verdict below can go either way.

use std::path::Path;

use gauntlet::load::slo::SloStatus;
use gauntlet::scenario::Scenario;

#[test]
fn a_breaker_gauge_slo_fails_while_the_storm_opens_it_and_passes_once_it_closed() {
    // The reset storm (10 s to 25 s) opens orders' breaker on payments (the gauge is
    // 0 closed, 1 half-open, 2 open, summed over orders' upstream replicas); by 35 s
    // it has closed again.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/payments-reset-peer.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + "\n[[slo]]\nthreshold = \"metric orders:shop_breaker_state max < 1\"\nduring = \"faults\"\n"
        + "\n[[slo]]\nthreshold = \"metric orders:shop_breaker_state max < 1\"\nafter = \"35s\"\n"
        + "\n[[slo]]\nthreshold = \"metric orders:shop_no_such_gauge max < 1\"\n";
    let scenario = Scenario::parse(&text, &path).unwrap();
    let out = tempfile::tempdir().unwrap();
    let outcome = gauntlet_sim::run_seed(&scenario, 17, out.path(), false).unwrap();
    let gauge = |i: usize| {
        let v = outcome.slos.iter().filter(|v| v.spec.threshold.gauge.is_some()).nth(i).unwrap().clone();
        eprintln!("{v}");
        v
    };
    let (during, after, missing) = (gauge(0), gauge(1), gauge(2));
    assert_eq!(during.status, SloStatus::Failed, "{during}");
    assert!(during.observed.unwrap() >= 1.0 && during.samples >= 5, "{during}");
    assert_eq!(after.status, SloStatus::Passed, "{after}");
    assert!(after.samples >= 3, "sampled once a second: {after}");
    assert_eq!(missing.status, SloStatus::NoData, "{missing}");
    // The gauge SLOs are in the run's one verdict.
    assert!(!outcome.passed());
    assert!(
        outcome.failure_reasons().iter().any(|r| r.contains("shop_breaker_state")),
        "{:?}",
        outcome.failure_reasons()
    );
}
