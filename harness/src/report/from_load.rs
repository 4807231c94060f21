//! A report from what the load generator recorded: per scope stats, the overall time
//! series and latency spectrum, and the SLO verdicts.

use std::collections::BTreeMap;
use std::time::SystemTime;

use hdrhistogram::Histogram;

use super::model::{
    millis, DistributionPoint, FlowReport, FlowStarts, LoadModel, Percentiles, Report, RunInfo, ScopeStats,
    SecondPoint, SloResult, SloStatus, StepReport, Timestamp, Unit, Verdict, SCHEMA_VERSION,
};
use crate::load::recorder::FlowId;
use crate::load::runner::RunResult;
use crate::load::series::SecondSummary;
use crate::load::slo::{self, Comparison, SloSpec, SloVerdict};
use crate::load::stats::{share, us_to_ms, ErrorKind, Stats};

/// Percentiles of the latency spectrum in the report, HdrHistogram style: denser
/// towards the tail, where what matters happens.
pub const SPECTRUM: [f64; 17] =
    [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 90.0, 95.0, 99.0, 99.9, 99.99, 99.999, 100.0];

/// What the load result does not know about the run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunMeta {
    /// The scenario or workload name.
    pub name: String,
    /// The seed of the run.
    pub seed: u64,
    /// When the run started.
    pub started_at: SystemTime,
    /// When it ended.
    pub ended_at: SystemTime,
}

/// A report of a load run judged on `slos`; add faults, invariants and contracts with
/// the `with_*` methods.
pub fn from_load(meta: RunMeta, result: &RunResult, slos: &[SloSpec]) -> Report {
    from_load_judged(meta, result, &result.recorder.verdicts(slos))
}

/// As [`from_load`], with SLO verdicts already reached (a scenario judges some of them
/// on its history and end state, and places windows on the faults' actual times).
pub fn from_load_judged(meta: RunMeta, result: &RunResult, verdicts: &[SloVerdict]) -> Report {
    let rec = &result.recorder;
    let secs = result.measured_secs();
    let flows = rec
        .layout()
        .iter()
        .enumerate()
        .filter_map(|(fi, (flow, steps))| {
            let (stats, _) = rec.flow(FlowId(fi))?;
            let steps = steps
                .iter()
                .enumerate()
                .filter_map(|(si, step)| {
                    let (stats, _) = rec.step(rec.step_id(FlowId(fi), si))?;
                    Some(StepReport { name: step.clone(), stats: scope_stats(stats, secs) })
                })
                .collect();
            Some(FlowReport { name: flow.clone(), stats: scope_stats(stats, secs), steps })
        })
        .collect();
    let run = RunInfo {
        name: meta.name,
        seed: meta.seed,
        started_at: Timestamp(meta.started_at),
        ended_at: Timestamp(meta.ended_at),
        runtime_ms: millis(result.elapsed),
        gauntlet_version: env!("CARGO_PKG_VERSION").to_owned(),
        flow_starts: FlowStarts { scheduled: result.scheduled, started: result.started, dropped: rec.dropped() },
        aborted: result.stopped.clone(),
        steady_state_after: None,
        simulated: false,
        load_model: Some(if result.open_model { LoadModel::Open } else { LoadModel::Closed }),
        send_lateness_ms: (!rec.send_lateness().is_empty()).then(|| percentiles(rec.send_lateness())),
    };
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        run,
        verdict: Verdict::Passed,
        slos: verdicts.iter().map(slo_result).collect(),
        overall: scope_stats(rec.overall(), secs),
        flows,
        time_series: rec.overall_series().seconds().iter().map(second_point).collect(),
        latency_distribution: distribution(rec.overall()),
        faults: Vec::new(),
        invariants: Vec::new(),
        contracts: Vec::new(),
    };
    report.judge();
    report
}

/// The report's view of one scope's stats over a measured phase of `secs` seconds.
pub fn scope_stats(s: &Stats, secs: f64) -> ScopeStats {
    let c = s.counts();
    let status_classes: BTreeMap<String, u64> = (1..=5).map(|c| (format!("{c}xx"), s.status_class(c))).collect();
    let mut errors: BTreeMap<String, u64> =
        ErrorKind::ALL.iter().map(|k| (k.name().to_owned(), s.errors(*k))).collect();
    errors.insert("http_4xx".into(), s.status_class(4));
    errors.insert("http_5xx".into(), s.status_class(5));
    ScopeStats {
        count: c.total,
        rate: if secs > 0.0 { c.total as f64 / secs } else { 0.0 },
        succeeded: c.succeeded,
        availability: share(c.available, c.offered()),
        availability_including_degraded: share(c.available_including_degraded, c.offered()),
        error_rate: share(s.failed(), c.total),
        degraded: c.degraded,
        degraded_share: share(c.degraded, c.total),
        checks_passed: c.checks_passed,
        checks_failed: c.checks_failed,
        checks_share: (c.checks() > 0).then(|| share(c.checks_passed, c.checks())),
        dropped: c.dropped,
        status_classes,
        errors,
        latency_ms: percentiles(s.latency()),
        service_time_ms: percentiles(s.service()),
    }
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    let q = |p: f64| us_to_ms(h.value_at_quantile(p / 100.0));
    Percentiles {
        p50: q(50.0),
        p90: q(90.0),
        p95: q(95.0),
        p99: q(99.0),
        p99_9: q(99.9),
        max: us_to_ms(h.max()),
        mean: h.mean() / 1000.0,
    }
}

fn distribution(s: &Stats) -> Vec<DistributionPoint> {
    if s.total() == 0 {
        return Vec::new();
    }
    SPECTRUM
        .iter()
        .map(|&p| DistributionPoint {
            percentile: p,
            latency_ms: us_to_ms(s.latency().value_at_quantile(p / 100.0)),
            service_time_ms: us_to_ms(s.service().value_at_quantile(p / 100.0)),
        })
        .collect()
}

fn second_point(s: &SecondSummary) -> SecondPoint {
    SecondPoint {
        second: s.second,
        requests: s.requests,
        errors: s.errors,
        error_rate: s.error_rate(),
        dropped: s.dropped,
        p50_ms: s.p50_ms,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
    }
}

fn slo_result(v: &SloVerdict) -> SloResult {
    let t = &v.spec.threshold;
    let metric = t.metric.name();
    let comparison = match t.comparison {
        Comparison::Less => "<",
        Comparison::LessOrEqual => "<=",
        Comparison::Greater => ">",
        Comparison::GreaterOrEqual => ">=",
    };
    SloResult {
        name: t.to_string(),
        scope: v.spec.scope.to_string(),
        window: v.spec.window.to_string(),
        metric,
        comparison: comparison.into(),
        threshold: t.bound,
        observed: v.observed.filter(|x| x.is_finite()),
        unit: match t.metric {
            m if m.is_latency() => Unit::Ms,
            slo::Metric::GaugeMax => Unit::Value,
            _ => Unit::Ratio,
        },
        samples: v.samples,
        status: match v.status {
            slo::SloStatus::Passed => SloStatus::Passed,
            slo::SloStatus::Failed => SloStatus::Failed,
            slo::SloStatus::NoData => SloStatus::NoData,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::recorder::{Recorder, Sample};
    use crate::load::stats::Outcome;
    use crate::report::model::SloStatus as Status;

    fn meta() -> RunMeta {
        RunMeta { name: "t".into(), seed: 7, started_at: SystemTime::UNIX_EPOCH, ended_at: SystemTime::UNIX_EPOCH }
    }

    fn run(samples: &[(u64, u64, u16)], slos: &[SloSpec], stopped: Option<&str>) -> RunResult {
        let layout = vec![("f".to_owned(), vec!["a".to_owned(), "b".to_owned()])];
        let mut rec = Recorder::new(layout, slos, Duration::ZERO).unwrap();
        for &(at_ms, took_ms, status) in samples {
            let intended = Duration::from_millis(at_ms);
            let done = intended + Duration::from_millis(took_ms);
            let s = Sample::plain(intended, intended, done, Outcome::Status(status));
            rec.record_step(rec.step_id(FlowId(0), 0), &s);
            rec.record_flow(FlowId(0), &s);
        }
        rec.finish();
        let n = samples.len() as u64;
        RunResult {
            recorder: rec,
            elapsed: Duration::from_secs(2),
            scheduled: n,
            started: n,
            stopped: stopped.map(Into::into),
            open_model: true,
        }
    }

    #[test]
    fn stats_series_and_slos_come_from_the_recorder() {
        let samples: Vec<(u64, u64, u16)> =
            (0..100).map(|i| (i * 20, if i < 90 { 10 } else { 100 }, if i == 0 { 503 } else { 200 })).collect();
        let slos = [SloSpec::overall("p95 < 50ms".parse().unwrap()), SloSpec::overall("p50 < 50ms".parse().unwrap())];
        let report = from_load(meta(), &run(&samples, &slos, None), &slos);
        let o = &report.overall;
        assert_eq!((o.count, o.rate), (100, 50.0));
        assert!((o.latency_ms.p50 - 10.0).abs() < 0.05 && (o.latency_ms.p95 - 100.0).abs() < 0.1, "{o:?}");
        assert_eq!((o.errors["http_5xx"], o.availability), (1, 0.99));
        assert_eq!(report.time_series.len(), 2);
        assert_eq!(report.time_series.iter().map(|s| s.requests).sum::<u64>(), 100);
        assert_eq!(report.flows[0].steps[1].stats.count, 0);
        assert_eq!([report.slos[0].status, report.slos[1].status], [Status::Failed, Status::Passed]);
        assert!(!report.verdict.passed());
        assert_eq!(report.latency_distribution.len(), SPECTRUM.len());
    }

    #[test]
    fn degraded_answers_failed_checks_and_drops_are_in_the_report() {
        use crate::load::stats::{Check, Judgement};
        let layout = vec![("f".to_owned(), vec!["a".to_owned()])];
        let slos = [SloSpec::overall("checks >= 99%".parse().unwrap())];
        let mut rec = Recorder::new(layout, &slos, Duration::ZERO).unwrap();
        let judgements = [
            Judgement { degraded: true, check: Check::Passed },
            Judgement { degraded: false, check: Check::Failed },
            Judgement { degraded: false, check: Check::Passed },
            Judgement { degraded: false, check: Check::Passed },
        ];
        for (i, judgement) in judgements.into_iter().enumerate() {
            let at = Duration::from_millis(i as u64 * 10);
            let s = Sample { intended: at, sent: at, done: at, outcome: Outcome::Status(200), judgement };
            rec.record_step(rec.step_id(FlowId(0), 0), &s);
        }
        rec.record_dropped(FlowId(0), Duration::ZERO);
        rec.finish();
        let result = RunResult {
            recorder: rec,
            elapsed: Duration::from_secs(1),
            scheduled: 5,
            started: 4,
            stopped: None,
            open_model: false,
        };
        let report = from_load(meta(), &result, &slos);
        let o = &report.overall;
        assert_eq!((o.count, o.degraded, o.checks_passed, o.checks_failed, o.dropped), (4, 1, 3, 1, 1));
        assert_eq!((o.availability, o.availability_including_degraded), (0.4, 0.6));
        assert_eq!((o.degraded_share, o.checks_share, o.succeeded), (0.25, Some(0.75), 3));
        assert_eq!(report.slos[0].metric, "checks");
        assert_eq!((report.slos[0].status, report.slos[0].samples), (Status::Failed, 4));
        let json: serde_json::Value = serde_json::from_str(&crate::report::json::to_string(&report)).unwrap();
        assert_eq!(json["overall"]["checks_share"], 0.75);
        assert_eq!(json["overall"]["degraded"], 1);
        let unchecked = scope_stats(&Stats::new(), 1.0);
        assert_eq!(unchecked.checks_share, None);
        // A closed loop's latency is not labelled corrected, in the data or the render.
        assert_eq!(json["run"]["load_model"], "closed");
        assert!(json["run"]["send_lateness_ms"]["p99"].is_number(), "{}", json["run"]);
        let md = crate::report::markdown::render(&report);
        assert!(md.contains("Latency (closed loop, from send; not corrected") && !md.contains("Corrected"), "{md}");
    }

    #[test]
    fn an_empty_aborted_run_fails_without_nans() {
        let slos = [SloSpec::overall("availability >= 99%".parse().unwrap())];
        let report = from_load(meta(), &run(&[], &slos, Some("breached")), &slos);
        assert_eq!(report.slos[0].status, Status::NoData);
        let crate::report::model::Verdict::Failed { reasons } = &report.verdict else { panic!("an aborted run fails") };
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(report.latency_distribution.is_empty() && report.overall.rate == 0.0);
        let json = crate::report::json::to_string(&report);
        let back = crate::report::json::from_str(&json, std::path::Path::new("report.json")).unwrap();
        assert_eq!(back, report);
    }
}
