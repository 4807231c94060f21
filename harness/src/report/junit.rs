//! `junit.xml`: one test case per SLO, invariant and contract, for CI test panes.
//!
//! Three suites, `slos`, `invariants` and `contracts`; an aborted run adds a failed
//! `run` suite so a CI never reads an aborted run as green. Text is escaped for XML 1.0,
//! characters XML cannot carry at all are replaced by U+FFFD.

use std::fmt::Write;

use super::format::fmt_slo_value;
use super::model::{Report, SloStatus};

/// One test case: its class, name, and failure message if it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// `gauntlet.slo`, `gauntlet.invariant`, ...
    pub classname: String,
    /// What was checked.
    pub name: String,
    /// `None` when it passed; the message and the longer detail when it failed.
    pub failure: Option<(String, String)>,
}

/// The report's test cases, by suite.
pub fn suites(report: &Report) -> Vec<(&'static str, Vec<Case>)> {
    let mut suites = Vec::new();
    if let Some(why) = &report.run.aborted {
        let failure = Some(("the run was aborted".to_owned(), why.clone()));
        suites.push(("run", vec![Case { classname: "gauntlet.run".into(), name: "completed".into(), failure }]));
    }
    let slos = report
        .slos
        .iter()
        .map(|s| {
            let observed = fmt_slo_value(s);
            let failure = match s.status {
                SloStatus::Passed => None,
                SloStatus::Failed => Some((
                    format!("`{}` breached: observed {observed}", s.name),
                    format!("scope {}, window {}, {} samples", s.scope, s.window, s.samples),
                )),
                SloStatus::NoData => Some((
                    format!("`{}` has no data", s.name),
                    format!("nothing was recorded for {} in {}", s.scope, s.window),
                )),
            };
            Case { classname: "gauntlet.slo".into(), name: format!("{} ({}, {})", s.name, s.scope, s.window), failure }
        })
        .collect();
    suites.push(("slos", slos));
    // Each fault is a case: it fails when it did not happen as planned, or touched nothing.
    let faults = report
        .faults
        .iter()
        .map(|f| {
            let effect = f.effect.clone().unwrap_or_default();
            let failure = match (&f.error, f.did_not_happen()) {
                (Some(e), _) => Some((format!("fault `{}` did not happen as planned", f.name), e.clone())),
                (None, true) => Some((format!("the experiment did not happen: `{}` touched nothing", f.name), effect)),
                (None, false) => None,
            };
            Case { classname: "gauntlet.fault".into(), name: format!("{} ({})", f.name, f.target), failure }
        })
        .collect::<Vec<_>>();
    if !faults.is_empty() {
        suites.push(("faults", faults));
    }
    let invariants = report
        .invariants
        .iter()
        .map(|i| {
            let failure = (!i.valid).then(|| {
                let example = |v: &Option<serde_json::Value>| v.as_ref().map_or("-".into(), |v| v.to_string());
                (
                    if i.is_unknown() {
                        format!("invariant `{}` could not be checked (unknown is not a pass)", i.name)
                    } else {
                        format!("invariant `{}` was violated", i.name)
                    },
                    format!(
                        "first counterexample: {}\nworst counterexample: {}",
                        example(&i.first_counterexample),
                        example(&i.worst_counterexample)
                    ),
                )
            });
            Case { classname: "gauntlet.invariant".into(), name: i.name.clone(), failure }
        })
        .collect();
    suites.push(("invariants", invariants));
    let contracts = report
        .contracts
        .iter()
        .map(|c| {
            let failure = (!c.passed).then(|| {
                (
                    format!("{} -> {}: `{}` failed", c.consumer, c.provider, c.interaction),
                    c.message.clone().unwrap_or_default(),
                )
            });
            Case {
                classname: format!("gauntlet.contract.{}.{}", c.consumer, c.provider),
                name: c.interaction.clone(),
                failure,
            }
        })
        .collect();
    suites.push(("contracts", contracts));
    suites
}

/// The report as JUnit XML.
pub fn render(report: &Report) -> String {
    let suites = suites(report);
    let tests: usize = suites.iter().map(|(_, c)| c.len()).sum();
    let failures: usize = suites.iter().map(|(_, c)| c.iter().filter(|c| c.failure.is_some()).count()).sum();
    let time = report.run.runtime_ms as f64 / 1000.0;
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" time=\"{time:.3}\">",
        escape(&format!("gauntlet {}", report.run.name))
    );
    for (name, cases) in &suites {
        let failed = cases.iter().filter(|c| c.failure.is_some()).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\" \
             timestamp=\"{}\" time=\"{time:.3}\">",
            cases.len(),
            escape(report.run.started_at.to_seconds().trim_end_matches('Z')),
        );
        for case in cases {
            let _ =
                write!(out, "    <testcase classname=\"{}\" name=\"{}\"", escape(&case.classname), escape(&case.name));
            match &case.failure {
                None => out.push_str("/>\n"),
                Some((message, detail)) => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"{name}\">{}</failure>\n    </testcase>",
                        escape(message),
                        escape(detail)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// Escapes text for an XML attribute or element; characters XML 1.0 cannot hold become
/// U+FFFD.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c if xml_char(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    out
}

fn xml_char(c: char) -> bool {
    matches!(c as u32, 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}
