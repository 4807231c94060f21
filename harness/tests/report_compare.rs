//! Baseline comparison: an injected regression is found, noise within the tolerance is not.

mod report_common;

use gauntlet::report::compare::{compare, ChangeKind, CompareMetric, Tolerance};
use gauntlet::report::model::ScopeStats;
use gauntlet::report::Report;
use proptest::prelude::*;

fn scale_latency(s: &mut ScopeStats, factor: f64) {
    let p = &mut s.latency_ms;
    for v in [&mut p.p50, &mut p.p90, &mut p.p95, &mut p.p99, &mut p.p99_9, &mut p.max, &mut p.mean] {
        *v *= factor;
    }
}

fn each_scope(r: &mut Report, mut f: impl FnMut(&mut ScopeStats)) {
    f(&mut r.overall);
    for flow in &mut r.flows {
        f(&mut flow.stats);
        for step in &mut flow.steps {
            f(&mut step.stats);
        }
    }
}

fn tol(pct: f64) -> Tolerance {
    Tolerance::new(pct / 100.0).unwrap()
}

#[test]
fn a_slower_run_is_a_regression_found_in_every_scope() {
    let baseline = report_common::report();
    // Service time three times longer: every latency percentile grows.
    let new = report_common::report_with_slowdown(3.0);
    let c = compare(&baseline, &new, tol(10.0), &[CompareMetric::P50, CompareMetric::Throughput]);
    let regressed: Vec<&str> = c.regressions().map(|ch| ch.scope.as_str()).collect();
    assert_eq!(regressed.len(), 1 + 2 + 3, "{c}");
    assert!(c.regressions().all(|ch| ch.metric == CompareMetric::P50 && ch.relative.unwrap() > 0.5));
    assert!(c
        .changes
        .iter()
        .filter(|ch| ch.metric == CompareMetric::Throughput)
        .all(|ch| ch.kind == ChangeKind::Unchanged));
    assert!(c.to_string().contains("REGRESSION"));
}

#[test]
fn the_same_run_twice_is_not_a_regression() {
    let c = compare(&report_common::report(), &report_common::report(), tol(0.0), &CompareMetric::ALL);
    assert!(!c.regressed(), "{c}");
    assert_eq!(c.changes.len(), 6 * CompareMetric::ALL.len());
    assert!(c.only_in_baseline.is_empty() && c.only_in_new.is_empty());
}

#[test]
fn a_throughput_drop_is_a_regression_and_a_gain_is_not() {
    let baseline = report_common::report();
    let mut slower = baseline.clone();
    slower.overall.rate *= 0.8;
    let c = compare(&baseline, &slower, tol(10.0), &[CompareMetric::Throughput]);
    let r: Vec<_> = c.regressions().collect();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].scope.as_str(), r[0].metric), ("overall", CompareMetric::Throughput));
    let c = compare(&slower, &baseline, tol(10.0), &[CompareMetric::Throughput]);
    assert!(!c.regressed());
    assert!(c.changes.iter().any(|ch| ch.kind == ChangeKind::Improvement));
}

#[test]
fn scopes_on_one_side_only_are_listed_not_compared() {
    let baseline = report_common::report();
    let mut new = baseline.clone();
    new.flows[1].name = "checkout-v2".into();
    let c = compare(&baseline, &new, tol(10.0), &CompareMetric::DEFAULT);
    assert_eq!(c.only_in_baseline, ["flow checkout", "step checkout/pay"]);
    assert_eq!(c.only_in_new, ["flow checkout-v2", "step checkout-v2/pay"]);
    assert!(!c.regressed());
}

#[test]
fn tolerances_and_metrics_parse_from_the_command_line_forms() {
    assert_eq!("10%".parse::<Tolerance>().unwrap().fraction(), 0.1);
    assert_eq!("2.5".parse::<Tolerance>().unwrap().fraction(), 0.025);
    assert!("-3%".parse::<Tolerance>().is_err() && "ten".parse::<Tolerance>().is_err());
    assert_eq!("p99.9".parse::<CompareMetric>().unwrap(), CompareMetric::P99_9);
    assert_eq!("Throughput".parse::<CompareMetric>().unwrap(), CompareMetric::Throughput);
    assert!("p42".parse::<CompareMetric>().unwrap_err().contains("p95"));
}

proptest! {
    /// Latency scaled by a factor within the tolerance is noise; beyond it, a regression
    /// (or an improvement when it shrank), in every scope with data.
    #[test]
    fn only_changes_beyond_the_tolerance_count(tolerance_pct in 1.0f64..50.0, change_pct in -90.0f64..200.0) {
        prop_assume!((change_pct.abs() - tolerance_pct).abs() > 0.01);
        let baseline = report_common::report();
        let mut new = baseline.clone();
        each_scope(&mut new, |s| scale_latency(s, 1.0 + change_pct / 100.0));
        let c = compare(&baseline, &new, tol(tolerance_pct), &[CompareMetric::P95, CompareMetric::P99]);
        let expected = if change_pct > tolerance_pct {
            ChangeKind::Regression
        } else if change_pct < -tolerance_pct {
            ChangeKind::Improvement
        } else {
            ChangeKind::Unchanged
        };
        prop_assert_eq!(c.changes.len(), 12);
        for ch in &c.changes {
            prop_assert_eq!(ch.kind, expected, "{}", c);
        }
    }
}
