//! The Markdown and JUnit renderings: structure checks against what the report holds.

mod report_common;

use gauntlet::report::model::{SloStatus, Verdict};
use gauntlet::report::{junit, markdown, write_all, Report};
use quick_xml::events::Event;
use quick_xml::Reader;

/// What a JUnit document holds, counted by parsing it.
#[derive(Debug, Default)]
struct JunitCounts {
    suites: usize,
    testcases: usize,
    failures: usize,
    declared_tests: usize,
    declared_failures: usize,
    names: Vec<String>,
    messages: Vec<String>,
}

fn attr(e: &quick_xml::events::BytesStart<'_>, name: &str) -> Option<String> {
    e.attributes()
        .map(|a| a.expect("well-formed attribute"))
        .find(|a| a.key.as_ref() == name.as_bytes())
        .map(|a| a.unescape_value().expect("escaped attribute").into_owned())
}

fn parse_junit(xml: &str) -> JunitCounts {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().check_end_names = true;
    let mut counts = JunitCounts::default();
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("invalid XML at {}: {e}", reader.buffer_position())) {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                b"testsuites" => {
                    counts.declared_tests = attr(&e, "tests").unwrap().parse().unwrap();
                    counts.declared_failures = attr(&e, "failures").unwrap().parse().unwrap();
                }
                b"testsuite" => counts.suites += 1,
                b"testcase" => {
                    counts.testcases += 1;
                    counts.names.push(attr(&e, "name").expect("testcase name"));
                }
                b"failure" => {
                    counts.failures += 1;
                    counts.messages.push(attr(&e, "message").expect("failure message"));
                }
                _ => {}
            },
            Event::Text(t) => {
                t.unescape().expect("escaped text");
            }
            _ => {}
        }
    }
    counts
}

fn expected_failures(r: &Report) -> usize {
    r.slos.iter().filter(|s| !s.passed()).count()
        + r.invariants.iter().filter(|i| !i.valid).count()
        + r.contracts.iter().filter(|c| !c.passed).count()
        + r.faults.iter().filter(|f| f.error.is_some() || f.did_not_happen()).count()
        + usize::from(r.run.aborted.is_some())
}

#[test]
fn junit_has_one_case_per_gate_and_a_failure_per_failed_gate() {
    let report = report_common::report();
    assert_eq!(report.slos.iter().filter(|s| s.status == SloStatus::Failed).count(), 1, "{:#?}", report.slos);
    let counts = parse_junit(&junit::render(&report));
    let cases = report.slos.len() + report.invariants.len() + report.contracts.len() + report.faults.len();
    assert_eq!(counts.testcases, cases);
    assert_eq!(counts.failures, expected_failures(&report));
    assert_eq!(counts.failures, 3);
    assert_eq!((counts.declared_tests, counts.declared_failures), (counts.testcases, counts.failures));
    assert_eq!(counts.suites, 4, "slos, faults, invariants, contracts");
    assert!(counts.names.iter().any(|n| n == "stock never <0 & \"never\" lost"), "{:?}", counts.names);
    assert!(counts.messages.iter().any(|m| m.starts_with("`p95 < 200ms` breached")), "{:?}", counts.messages);
}

#[test]
fn junit_stays_valid_with_hostile_text_and_counts_an_abort() {
    let mut report = report_common::report();
    report.run.aborted = Some("SLO breached \u{0}\u{1b}[31m <x> & ]]> --".into());
    report.contracts[1].interaction = "quote\" apos' lt< gt> amp& nul\u{0} tab\t".into();
    report.judge();
    let xml = junit::render(&report);
    let counts = parse_junit(&xml);
    assert_eq!(
        counts.testcases,
        report.slos.len() + report.invariants.len() + report.contracts.len() + report.faults.len() + 1
    );
    assert_eq!(counts.failures, expected_failures(&report));
    assert_eq!(counts.suites, 5);
    assert!(counts.names.iter().any(|n| n == "quote\" apos' lt< gt> amp& nul\u{FFFD} tab\t"), "{:?}", counts.names);
}

#[test]
fn a_passing_report_has_no_failures() {
    let mut report = report_common::report();
    report.slos.retain(|s| s.passed());
    report.invariants.retain(|i| i.valid);
    report.contracts.retain(|c| c.passed);
    report.judge();
    assert_eq!(report.verdict, Verdict::Passed);
    let counts = parse_junit(&junit::render(&report));
    assert_eq!(counts.failures, 0);
    assert!(counts.testcases > 0);
    assert!(markdown::render(&report).starts_with("## ✅ Gauntlet: "));
}

fn table_rows<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
    let start = md.find(heading).unwrap_or_else(|| panic!("no `{heading}` in\n{md}"));
    md[start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("###"))
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .collect()
}

#[test]
fn markdown_puts_the_verdict_first_then_the_tables() {
    let report = report_common::report();
    let md = markdown::render(&report);
    let Verdict::Failed { reasons } = &report.verdict else { panic!("the synthetic run fails") };
    assert!(md.starts_with("## ❌ Gauntlet: shop checkout \\| &lt;smoke&gt; &amp; \"friends\" failed\n"), "{md}");
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    for why in reasons {
        assert!(md.contains(&format!("- {}", markdown::prose(why))), "reason `{why}` missing");
    }
    assert!(md.contains("- SLO `p95 < 200ms` (overall, whole run) failed: observed "), "{md}");
    assert!(md.contains("- contract gateway -&gt; catalog: `list products <page 2>` failed"), "{md}");
    let order: Vec<usize> =
        ["### SLOs", "### Latency", "### Faults", "### Invariants", "### Contracts", "### Top errors"]
            .iter()
            .map(|h| md.find(h).unwrap_or_else(|| panic!("no {h}")))
            .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(table_rows(&md, "### SLOs").len(), report.slos.len());
    let scopes = 1 + report.flows.iter().map(|f| 1 + f.steps.len()).sum::<usize>();
    assert_eq!(table_rows(&md, "### Latency").len(), scopes);
    assert_eq!(table_rows(&md, "### Faults").len(), report.faults.len());
    assert!(md.contains("| `orders->payments` | at 10s for 5s | 10.012s | 15.02s |"), "{md}");
    assert!(md.contains("| catalog-1") || md.contains("`catalog-1`"));
    let errors = table_rows(&md, "### Top errors");
    assert!(
        errors.iter().any(|r| r.contains("http_5xx")) && errors.iter().any(|r| r.contains("timeout")),
        "{errors:?}"
    );
    for row in table_rows(&md, "### Latency") {
        assert_eq!(row.matches(" | ").count() + 1, 10, "cells of `{row}`");
    }
}

#[test]
fn markdown_shows_degraded_answers_checks_and_drops_only_when_there_are_some() {
    let mut report = report_common::report();
    assert!(!markdown::render(&report).contains("### Answers"));
    report.overall.degraded = 12;
    report.overall.degraded_share = 0.008;
    report.overall.availability_including_degraded = 0.99;
    report.overall.checks_passed = 40;
    report.overall.checks_failed = 2;
    report.flows[0].steps[1].stats.degraded = 12;
    let md = markdown::render(&report);
    assert!(
        md.contains("Degraded answers 12 (0.800%), availability including them 99.000%; checks failed 2 of 42."),
        "{md}"
    );
    let rows = table_rows(&md, "### Answers");
    let scopes = 1 + report.flows.iter().map(|f| 1 + f.steps.len()).sum::<usize>();
    assert_eq!(rows.len(), scopes, "{md}");
    assert!(rows[0].starts_with("| **overall** |") && rows[0].contains("| 12 (0.800%) | 40 | 2 |"), "{}", rows[0]);
    let latency = md.find("### Latency").unwrap();
    assert!(
        latency < md.find("### Answers").unwrap() && md.find("### Answers").unwrap() < md.find("### Faults").unwrap()
    );
}

#[test]
fn write_all_writes_the_four_files() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_all(&dir.path().join("run-1"), &report_common::report()).unwrap();
    let names: Vec<String> = written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["report.json", "report.md", "report.html", "junit.xml"]);
    for p in &written {
        assert!(std::fs::metadata(p).unwrap().len() > 100, "{} is nearly empty", p.display());
    }
}
