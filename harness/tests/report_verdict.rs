//! The one verdict: every gate the report holds can fail it on its own, and every
//! renderer shows that decision (a fault that touched nothing, a fault that errored,
//! an invariant that could not be checked).

mod report_common;

use gauntlet::report::model::{FaultRecord, InvariantResult, Verdict};
use std::time::Duration;

fn passing() -> gauntlet::report::Report {
    let mut r = report_common::report();
    r.invariants.retain(|i| i.valid);
    r.contracts.retain(|c| c.passed);
    r.slos.clear();
    r.judge();
    assert_eq!(r.verdict, Verdict::Passed, "{:?}", r.failure_reasons());
    r
}

fn fault(touched: Option<u64>, expect_effect: bool) -> FaultRecord {
    let mut f =
        FaultRecord::planned("latency", "orders->payments", Duration::from_secs(1), Some(Duration::from_secs(2)))
            .happened(Some(Duration::from_secs(1)), Some(Duration::from_secs(3)));
    f.effect = Some(format!("{} bytes through 1 proxy while it was in place", touched.unwrap_or(0)));
    f.touched = touched;
    f.expect_effect = expect_effect;
    f
}

fn rendered(r: &gauntlet::report::Report) -> (String, String) {
    (gauntlet::report::markdown::render(r), gauntlet::report::junit::render(r))
}

#[test]
fn a_fault_that_touched_nothing_fails_the_run_in_every_renderer() {
    let r = passing().with_fault(fault(Some(0), true));
    let reasons = r.failure_reasons();
    assert!(reasons.iter().any(|x| x.contains("the experiment did not happen")), "{reasons:?}");
    let (md, junit) = rendered(&r);
    assert!(md.contains("did not happen"), "{md}");
    assert!(junit.contains("the experiment did not happen"), "{junit}");

    assert_eq!(passing().with_fault(fault(Some(4096), true)).verdict, Verdict::Passed);
    assert_eq!(passing().with_fault(fault(Some(0), false)).verdict, Verdict::Passed, "expect_effect = false");
    assert_eq!(passing().with_fault(fault(None, true)).verdict, Verdict::Passed, "unmeasured is shown, not judged");
}

#[test]
fn a_fault_that_failed_to_apply_fails_the_report_not_only_the_exit_code() {
    let mut f = fault(Some(10), true);
    f.error = Some("applying: proxy orders-0__payments__0 answered 500".into());
    let r = passing().with_fault(f);
    assert!(matches!(r.verdict, Verdict::Failed { .. }));
    let (md, junit) = rendered(&r);
    assert!(md.contains("answered 500"), "{md}");
    assert!(junit.contains("did not happen as planned"), "{junit}");
}

#[test]
fn an_unknown_invariant_is_never_a_pass() {
    let r = passing().with_invariant(InvariantResult {
        name: "money_conserved".into(),
        valid: false,
        validity: Some("unknown".into()),
        summary: Some("could not be checked: payments answered 503".into()),
        clauses: Vec::new(),
        notes: Vec::new(),
        first_counterexample: None,
        worst_counterexample: None,
    });
    let reasons = r.failure_reasons();
    assert!(reasons.iter().any(|x| x.contains("is unknown") && x.contains("503")), "{reasons:?}");
    let (md, junit) = rendered(&r);
    assert!(md.contains("unknown"), "{md}");
    assert!(junit.contains("could not be checked"), "{junit}");
}
