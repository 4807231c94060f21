//! `report.json`: any report reads back as the same report; unknown major schema
//! versions and non-reports are refused with the file named.

mod report_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use gauntlet::report::model::*;
use gauntlet::report::{json, ReportError};
use proptest::prelude::*;
use serde_json::Value;

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn float() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (0u64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| Timestamp(SystemTime::UNIX_EPOCH + Duration::new(s, n)))
}

fn free_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        float().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn percentiles() -> impl Strategy<Value = Percentiles> {
    prop::array::uniform7(float()).prop_map(|[p50, p90, p95, p99, p99_9, max, mean]| Percentiles {
        p50,
        p90,
        p95,
        p99,
        p99_9,
        max,
        mean,
    })
}

fn counts() -> impl Strategy<Value = BTreeMap<String, u64>> {
    prop::collection::btree_map(text(), any::<u64>(), 0..4)
}

fn scope_stats() -> impl Strategy<Value = ScopeStats> {
    let base =
        (any::<u64>(), float(), any::<u64>(), float(), float(), counts(), counts(), percentiles(), percentiles());
    let answers = (float(), any::<u64>(), float(), any::<u64>(), any::<u64>(), prop::option::of(float()), any::<u64>());
    (base, answers).prop_map(
        |(
            (count, rate, succeeded, availability, error_rate, status_classes, errors, latency_ms, service_time_ms),
            (
                availability_including_degraded,
                degraded,
                degraded_share,
                checks_passed,
                checks_failed,
                checks_share,
                dropped,
            ),
        )| {
            ScopeStats {
                count,
                rate,
                succeeded,
                availability,
                availability_including_degraded,
                error_rate,
                degraded,
                degraded_share,
                checks_passed,
                checks_failed,
                checks_share,
                dropped,
                status_classes,
                errors,
                latency_ms,
                service_time_ms,
            }
        },
    )
}

fn flow() -> impl Strategy<Value = FlowReport> {
    let step = (text(), scope_stats()).prop_map(|(name, stats)| StepReport { name, stats });
    (text(), scope_stats(), prop::collection::vec(step, 0..3)).prop_map(|(name, stats, steps)| FlowReport {
        name,
        stats,
        steps,
    })
}

fn slo() -> impl Strategy<Value = SloResult> {
    let unit = prop_oneof![Just(Unit::Ms), Just(Unit::Ratio)];
    let status = prop_oneof![Just(SloStatus::Passed), Just(SloStatus::Failed), Just(SloStatus::NoData)];
    ((text(), text(), text(), text(), text()), float(), prop::option::of(float()), unit, any::<u64>(), status).prop_map(
        |((name, scope, window, metric, comparison), threshold, observed, unit, samples, status)| SloResult {
            name,
            scope,
            window,
            metric,
            comparison,
            threshold,
            observed,
            unit,
            samples,
            status,
        },
    )
}

fn second() -> impl Strategy<Value = SecondPoint> {
    ((any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()), prop::array::uniform4(float())).prop_map(
        |((second, requests, errors, dropped), [error_rate, p50_ms, p95_ms, p99_ms])| SecondPoint {
            second,
            requests,
            errors,
            error_rate,
            dropped,
            p50_ms,
            p95_ms,
            p99_ms,
        },
    )
}

fn fault() -> impl Strategy<Value = FaultRecord> {
    let opt = || prop::option::of(any::<u64>());
    (text(), text(), any::<u64>(), opt(), opt(), opt()).prop_map(
        |(name, target, planned_at_ms, planned_for_ms, applied_at_ms, removed_at_ms)| FaultRecord {
            name,
            target,
            planned_at_ms,
            planned_for_ms,
            applied_at_ms,
            removed_at_ms,
            error: None,
            effect: None,
            touched: None,
            expect_effect: true,
        },
    )
}

fn run_info() -> impl Strategy<Value = RunInfo> {
    let starts = prop::array::uniform3(any::<u64>()).prop_map(|[scheduled, started, dropped]| FlowStarts {
        scheduled,
        started,
        dropped,
    });
    let model = prop::option::of(prop::sample::select(vec![LoadModel::Open, LoadModel::Closed]));
    let ends = (prop::option::of(text()), prop::option::of(text()), model);
    (text(), any::<u64>(), timestamp(), timestamp(), any::<u64>(), text(), starts, ends).prop_map(
        |(
            name,
            seed,
            started_at,
            ended_at,
            runtime_ms,
            gauntlet_version,
            flow_starts,
            (aborted, steady_state_after, load_model),
        )| {
            RunInfo {
                name,
                seed,
                started_at,
                ended_at,
                runtime_ms,
                gauntlet_version,
                flow_starts,
                aborted,
                steady_state_after,
                load_model,
                send_lateness_ms: None,
                simulated: seed % 2 == 1,
            }
        },
    )
}

fn gates() -> impl Strategy<Value = (Vec<InvariantResult>, Vec<ContractResult>)> {
    let invariant = (text(), any::<bool>(), prop::option::of(free_json()), prop::option::of(free_json())).prop_map(
        |(name, valid, first_counterexample, worst_counterexample)| InvariantResult {
            name,
            valid,
            validity: None,
            summary: None,
            clauses: Vec::new(),
            notes: Vec::new(),
            first_counterexample,
            worst_counterexample,
        },
    );
    let contract = (text(), text(), text(), any::<bool>(), prop::option::of(text())).prop_map(
        |(consumer, provider, interaction, passed, message)| ContractResult {
            consumer,
            provider,
            interaction,
            passed,
            message,
        },
    );
    (prop::collection::vec(invariant, 0..3), prop::collection::vec(contract, 0..3))
}

fn report() -> impl Strategy<Value = Report> {
    let verdict = prop_oneof![
        Just(Verdict::Passed),
        prop::collection::vec(text(), 0..3).prop_map(|reasons| Verdict::Failed { reasons }),
    ];
    let dist = (float(), float(), float()).prop_map(|(percentile, latency_ms, service_time_ms)| DistributionPoint {
        percentile,
        latency_ms,
        service_time_ms,
    });
    (
        0u32..50,
        run_info(),
        verdict,
        prop::collection::vec(slo(), 0..4),
        scope_stats(),
        prop::collection::vec(flow(), 0..3),
        prop::collection::vec(second(), 0..5),
        prop::collection::vec(dist, 0..5),
        prop::collection::vec(fault(), 0..3),
        gates(),
    )
        .prop_map(
            |(
                minor,
                run,
                verdict,
                slos,
                overall,
                flows,
                time_series,
                latency_distribution,
                faults,
                (invariants, contracts),
            )| Report {
                // Any minor of the known major reads back.
                schema_version: SchemaVersion { major: SCHEMA_VERSION.major, minor },
                run,
                verdict,
                slos,
                overall,
                flows,
                time_series,
                latency_distribution,
                faults,
                invariants,
                contracts,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_report_reads_back_as_itself(report in report()) {
        let text = json::to_string(&report);
        let back = json::from_str(&text, Path::new("report.json")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, report);
    }
}

#[test]
fn a_report_from_a_run_reads_back_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let report = report_common::report();
    json::write(&path, &report).unwrap();
    assert_eq!(json::read(&path).unwrap(), report);
}

#[test]
fn the_json_has_stable_snake_case_names() {
    let value: Value = serde_json::from_str(&json::to_string(&report_common::report())).unwrap();
    assert_eq!(value["schema_version"], "1.3");
    assert_eq!(value["verdict"]["status"], "failed");
    assert!(value["overall"]["latency_ms"]["p99_9"].is_number());
    assert!(value["overall"]["service_time_ms"]["p95"].is_number());
    assert!(value["run"]["started_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(value["faults"][0]["target"], "orders->payments");
    assert_eq!(value["slos"][0]["status"], "failed");
    assert_eq!(value["flows"][1]["steps"][0]["name"], "pay");
}

#[test]
fn an_unknown_major_version_is_refused_with_the_file_named() {
    let mut value: Value = serde_json::from_str(&json::to_string(&report_common::report())).unwrap();
    value["schema_version"] = Value::from("2.0");
    let err = json::from_str(&value.to_string(), Path::new("runs/new/report.json")).unwrap_err();
    assert!(matches!(err, ReportError::UnsupportedSchema { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("runs/new/report.json") && msg.contains("2.0") && msg.contains("1.x"), "{msg}");
}

#[test]
fn a_newer_minor_version_with_extra_fields_is_read() {
    let mut value: Value = serde_json::from_str(&json::to_string(&report_common::report())).unwrap();
    value["schema_version"] = Value::from("1.7");
    value["something_new"] = Value::from(true);
    let report = json::from_str(&value.to_string(), Path::new("r.json")).unwrap();
    assert_eq!(report.schema_version, SchemaVersion { major: 1, minor: 7 });
}

/// Published baselines were written by 1.0, before the answer rules' fields existed.
#[test]
fn a_1_0_report_without_the_answer_fields_is_read() {
    let mut value: Value = serde_json::from_str(&json::to_string(&report_common::report())).unwrap();
    value["schema_version"] = Value::from("1.0");
    let new_fields = [
        "availability_including_degraded",
        "degraded",
        "degraded_share",
        "checks_passed",
        "checks_failed",
        "checks_share",
        "dropped",
    ];
    let strip = |scope: &mut Value| {
        for field in new_fields {
            scope.as_object_mut().unwrap().remove(field);
        }
    };
    strip(&mut value["overall"]);
    for flow in value["flows"].as_array_mut().unwrap() {
        strip(&mut flow["stats"]);
        for step in flow["steps"].as_array_mut().unwrap() {
            strip(&mut step["stats"]);
        }
    }
    let report = json::from_str(&value.to_string(), Path::new("baseline.json")).unwrap();
    assert_eq!((report.overall.degraded, report.overall.checks_share, report.overall.dropped), (0, None, 0));
}

#[test]
fn non_reports_are_refused_clearly() {
    let err = json::from_str("{\"hello\": 1}", Path::new("x.json")).unwrap_err();
    assert!(matches!(err, ReportError::NoSchemaVersion { .. }));
    let err = json::from_str("not json", Path::new("x.json")).unwrap_err();
    assert!(err.to_string().starts_with("x.json: not a gauntlet report"), "{err}");
    let err = json::from_str("{\"schema_version\": \"one\"}", Path::new("x.json")).unwrap_err();
    assert!(matches!(err, ReportError::UnsupportedSchema { .. }));
    let err = json::read(Path::new("/nonexistent/report.json")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/report.json"));
}
