//! A realistic report for the report tests, built through `report::from_load` from a
//! recorder fed with synthetic samples: 30 s at 50 req/s over two flows, a 5 s stall
//! while a fault is in force, a few 5xx and timeouts.

#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use gauntlet::load::recorder::{FlowId, Recorder, Sample};
use gauntlet::load::runner::RunResult;
use gauntlet::load::slo::SloSpec;
use gauntlet::load::stats::{ErrorKind, Outcome};
use gauntlet::report::model::{ContractResult, FaultRecord, InvariantResult};
use gauntlet::report::{from_load, Report, RunMeta};
use serde_json::json;

/// Length of the synthetic run, seconds.
pub const RUN_SECS: u64 = 30;
/// Requests per second of the synthetic run.
pub const RATE: u64 = 50;
/// The fault window, seconds.
pub const FAULT: (u64, u64) = (10, 15);

fn slo(text: &str) -> SloSpec {
    toml::from_str(text).expect("test SLO parses")
}

/// The SLOs the synthetic run is judged on: `p95 < 200ms` overall fails (the stall),
/// the others hold.
pub fn slos() -> Vec<SloSpec> {
    vec![
        slo("threshold = 'p95 < 200ms'"),
        slo("threshold = 'p50 < 100ms'\nflow = 'browse'"),
        slo("threshold = 'availability >= 90%'\nflow = 'checkout'\nstep = 'pay'"),
        slo("threshold = 'p99 < 2s'\nafter = '20s'"),
    ]
}

/// `base_ms` of service time per request, multiplied by `slowdown`; during the fault
/// window requests wait up to a second before they can be sent.
pub fn recorded(slowdown: f64) -> RunResult {
    let layout = vec![
        ("browse".to_owned(), vec!["list".to_owned(), "get".to_owned()]),
        ("checkout".to_owned(), vec!["pay".to_owned()]),
    ];
    let slos = slos();
    let mut rec = Recorder::new(layout, &slos, Duration::ZERO).expect("scopes exist");
    let mut n = 0u64;
    for second in 0..RUN_SECS {
        for i in 0..RATE {
            n += 1;
            let intended = Duration::from_millis(second * 1000 + i * 1000 / RATE);
            let stalled = (FAULT.0..FAULT.1).contains(&second);
            let wait = if stalled { Duration::from_millis(1000 - i * 1000 / RATE) } else { Duration::ZERO };
            let service = Duration::from_micros(((5_000 + (n % 10) * 1_000) as f64 * slowdown) as u64);
            let sent = intended + wait;
            let outcome = match n % 97 {
                0 => Outcome::Status(503),
                1 if stalled => Outcome::Error(ErrorKind::Timeout),
                _ => Outcome::Status(200),
            };
            let sample = Sample::plain(intended, sent, sent + service, outcome);
            let (flow, step) = if n.is_multiple_of(3) { (FlowId(1), 0) } else { (FlowId(0), (n % 2) as usize) };
            rec.record_step(rec.step_id(flow, step), &sample);
            rec.record_flow(flow, &sample);
        }
    }
    rec.finish();
    let total = RUN_SECS * RATE;
    RunResult {
        recorder: rec,
        elapsed: Duration::from_secs(RUN_SECS),
        scheduled: total,
        started: total,
        stopped: None,
        open_model: true,
    }
}

/// The synthetic run's report with a fault, two invariants and two contracts.
pub fn report_with_slowdown(slowdown: f64) -> Report {
    let started = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let meta = RunMeta {
        name: "shop checkout | <smoke> & \"friends\"".into(),
        seed: 42,
        started_at: started,
        ended_at: started + Duration::from_secs(RUN_SECS + 2),
    };
    from_load(meta, &recorded(slowdown), &slos())
        .with_fault(
            FaultRecord::planned(
                "payments latency",
                "orders->payments",
                Duration::from_secs(FAULT.0),
                Some(Duration::from_secs(FAULT.1 - FAULT.0)),
            )
            .happened(Some(Duration::from_millis(10_012)), Some(Duration::from_millis(15_020))),
        )
        .with_fault(FaultRecord::planned("kill catalog", "catalog-1", Duration::from_secs(25), None))
        .with_invariant(InvariantResult {
            name: "money is conserved".into(),
            valid: true,
            validity: None,
            summary: None,
            clauses: Vec::new(),
            notes: Vec::new(),
            first_counterexample: None,
            worst_counterexample: None,
        })
        .with_invariant(InvariantResult {
            name: "stock never <0 & \"never\" lost".into(),
            valid: false,
            validity: None,
            summary: None,
            clauses: Vec::new(),
            notes: Vec::new(),
            first_counterexample: Some(json!({"product": "p-1", "stock": -1})),
            worst_counterexample: Some(json!({"product": "p-7", "stock": -4, "note": "a\u{1}b"})),
        })
        .with_contract(ContractResult {
            consumer: "orders".into(),
            provider: "payments".into(),
            interaction: "a charge with an idempotency key".into(),
            passed: true,
            message: None,
        })
        .with_contract(ContractResult {
            consumer: "gateway".into(),
            provider: "catalog".into(),
            interaction: "list products <page 2>".into(),
            passed: false,
            message: Some("expected status 200, got 404".into()),
        })
}

/// The synthetic run's report.
pub fn report() -> Report {
    report_with_slowdown(1.0)
}
