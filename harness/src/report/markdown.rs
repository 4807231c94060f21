//! `report.md`: GitHub-flavoured Markdown fit for a pull-request comment. The verdict
//! comes first, then the SLOs, per-flow percentiles, what the answer rules found
//! (degraded answers, checks, dropped starts), the faults timeline and the top errors;
//! sections with nothing to show are left out.

use std::fmt::Write;

use super::format::{fmt_count, fmt_ms, fmt_offset, fmt_opt_offset, fmt_pct, fmt_slo_value, fmt_window};
use super::model::{Report, ScopeStats, SloStatus, Verdict};

/// How many error lines the "top errors" table shows at most.
pub const TOP_ERRORS: usize = 10;

/// The report as Markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    verdict(&mut out, report);
    slos(&mut out, report);
    latency(&mut out, report);
    answers(&mut out, report);
    faults(&mut out, report);
    gates(&mut out, report);
    top_errors(&mut out, report);
    out
}

/// Escapes text for a table cell: no pipes, no line breaks, no raw HTML.
pub fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' | '\r' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push('\''),
            _ => out.push(c),
        }
    }
    out
}

/// Text as an inline code span in a table cell: backticks and line breaks cannot
/// appear in it, pipes are escaped (GitHub splits cells before it reads code spans).
pub fn code(text: &str) -> String {
    let inner: String = text
        .chars()
        .map(|c| match c {
            '`' => '\'',
            '\n' | '\r' => ' ',
            c => c,
        })
        .collect();
    format!("`{}`", inner.replace('|', "\\|"))
}

/// Escapes a line of prose that may hold `code spans`: text outside them is escaped as
/// in [`cell`], text inside is kept as written (GitHub shows it literally).
pub fn prose(text: &str) -> String {
    let parts: Vec<&str> = text.split('`').collect();
    if parts.len().is_multiple_of(2) {
        return cell(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 {
            out.push('`');
            out.push_str(&part.replace(['\n', '\r'], " "));
            out.push('`');
        } else {
            out.push_str(&cell(part));
        }
    }
    out
}

fn verdict(out: &mut String, r: &Report) {
    let name = cell(&r.run.name);
    match &r.verdict {
        Verdict::Passed => {
            let _ = writeln!(out, "## ✅ Gauntlet: {name} passed\n");
        }
        Verdict::Failed { reasons } => {
            let _ = writeln!(out, "## ❌ Gauntlet: {name} failed\n");
            for why in reasons {
                let _ = writeln!(out, "- {}", prose(why));
            }
            out.push('\n');
        }
    }
    let o = &r.overall;
    let _ = writeln!(
        out,
        "{}{} requests in {} ({:.1}/s), availability {}, error rate {}; seed `{}`, started {}, gauntlet {}\n",
        if r.run.simulated {
            "**Simulated cluster** (`gauntlet sim`): every time below is simulated time. "
        } else {
            ""
        },
        fmt_count(o.count),
        fmt_offset(r.run.runtime_ms),
        o.rate,
        fmt_pct(o.availability),
        fmt_pct(o.error_rate),
        r.run.seed,
        r.run.started_at.to_seconds(),
        cell(&r.run.gauntlet_version),
    );
    let checks = o.checks_passed + o.checks_failed;
    if o.degraded > 0 || checks > 0 {
        let _ = writeln!(
            out,
            "Degraded answers {} ({}), availability including them {}; checks failed {} of {}.\n",
            fmt_count(o.degraded),
            fmt_pct(o.degraded_share),
            fmt_pct(o.availability_including_degraded),
            fmt_count(o.checks_failed),
            fmt_count(checks)
        );
    }
    let starts = r.run.flow_starts;
    if starts.dropped > 0 {
        let _ = writeln!(
            out,
            "> **Warning:** {} of {} flow starts were dropped at the in-flight limit; \
             the target rate was not offered in full.\n",
            fmt_count(starts.dropped),
            fmt_count(starts.scheduled)
        );
    }
}

fn slos(out: &mut String, r: &Report) {
    if r.slos.is_empty() {
        return;
    }
    out.push_str("### SLOs\n\n| | SLO | scope | window | observed | samples |\n|---|---|---|---|---:|---:|\n");
    for s in &r.slos {
        let mark = match s.status {
            SloStatus::Passed => "✅",
            SloStatus::Failed => "❌",
            SloStatus::NoData => "❔ no data",
        };
        let _ = writeln!(
            out,
            "| {mark} | {} | {} | {} | {} | {} |",
            code(&s.name),
            cell(&s.scope),
            cell(&s.window),
            fmt_slo_value(s),
            fmt_count(s.samples)
        );
    }
    out.push('\n');
}

fn latency(out: &mut String, r: &Report) {
    let what = crate::report::model::LoadModel::latency_label(r.run.load_model);
    out.push_str(&format!(
        "### Latency\n\n{}{}; service time (from the actual send) below it.\n\n\
         | scope | count | rate/s | availability | p50 | p90 | p95 | p99 | p99.9 | max |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        what[..1].to_uppercase(),
        &what[1..]
    ));
    let rows = scopes(r);
    for (label, s) in &rows {
        let l = &s.latency_ms;
        let _ = writeln!(
            out,
            "| {label} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} |",
            fmt_count(s.count),
            s.rate,
            fmt_pct(s.availability),
            fmt_ms(l.p50),
            fmt_ms(l.p90),
            fmt_ms(l.p95),
            fmt_ms(l.p99),
            fmt_ms(l.p99_9),
            fmt_ms(l.max)
        );
    }
    if let (Some(l), Some(crate::report::model::LoadModel::Open) | None) = (&r.run.send_lateness_ms, r.run.load_model) {
        let _ = writeln!(
            out,
            "\nSend lateness (actual minus intended send: the generator's own share of the latency): \
             p50 {}, p99 {}, max {}.",
            fmt_ms(l.p50),
            fmt_ms(l.p99),
            fmt_ms(l.max)
        );
    }
    out.push_str("\n<details><summary>Service time</summary>\n\n| scope | p50 | p90 | p95 | p99 | p99.9 | max |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (label, s) in &rows {
        let l = &s.service_time_ms;
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | {} | {} |",
            fmt_ms(l.p50),
            fmt_ms(l.p90),
            fmt_ms(l.p95),
            fmt_ms(l.p99),
            fmt_ms(l.p99_9),
            fmt_ms(l.max)
        );
    }
    out.push_str("\n</details>\n\n");
}

fn scopes(r: &Report) -> Vec<(String, &ScopeStats)> {
    let mut rows: Vec<(String, &ScopeStats)> = vec![("**overall**".into(), &r.overall)];
    for f in &r.flows {
        rows.push((format!("flow {}", cell(&f.name)), &f.stats));
        for s in &f.steps {
            rows.push((format!("↳ {}/{}", cell(&f.name), cell(&s.name)), &s.stats));
        }
    }
    rows
}

/// Degraded answers, checks and dropped starts per scope: why availability is what it
/// is. Left out when no answer rule matched and nothing was checked or dropped.
fn answers(out: &mut String, r: &Report) {
    let o = &r.overall;
    if o.degraded == 0 && o.checks_passed + o.checks_failed == 0 && o.dropped == 0 {
        return;
    }
    out.push_str(
        "### Answers\n\nDegraded answers (matched a `degraded` rule), failed checks (`expect`) and \
         dropped flow starts all count against availability.\n\n\
         | scope | count | availability | incl. degraded | degraded | checks passed | checks failed | dropped |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (label, s) in scopes(r) {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} ({}) | {} | {} | {} |",
            fmt_count(s.count),
            fmt_pct(s.availability),
            fmt_pct(s.availability_including_degraded),
            fmt_count(s.degraded),
            fmt_pct(s.degraded_share),
            fmt_count(s.checks_passed),
            fmt_count(s.checks_failed),
            fmt_count(s.dropped)
        );
    }
    out.push('\n');
}

fn faults(out: &mut String, r: &Report) {
    if r.faults.is_empty() {
        return;
    }
    out.push_str(
        "### Faults\n\n| | fault | target | planned | applied | removed | observed effect |\n|---|---|---|---|---:|---:|---|\n",
    );
    for f in &r.faults {
        let mark = if f.error.is_some() || f.did_not_happen() { "❌" } else { "✅" };
        let effect = match (&f.error, f.did_not_happen()) {
            (Some(e), _) => format!("error: {e}"),
            (None, true) => format!("**did not happen**: {}", f.effect.as_deref().unwrap_or("nothing")),
            (None, false) => f.effect.clone().unwrap_or_else(|| "-".into()),
        };
        let _ = writeln!(
            out,
            "| {mark} | {} | {} | {} | {} | {} | {} |",
            cell(&f.name),
            code(&f.target),
            fmt_window(f),
            fmt_opt_offset(f.applied_at_ms),
            fmt_opt_offset(f.removed_at_ms),
            cell(&effect)
        );
    }
    out.push('\n');
}

fn gates(out: &mut String, r: &Report) {
    if !r.invariants.is_empty() {
        out.push_str("### Invariants\n\n| | invariant | first counterexample |\n|---|---|---|\n");
        for i in &r.invariants {
            let example = i.first_counterexample.as_ref().map_or_else(String::new, |v| code(&v.to_string()));
            let _ = writeln!(
                out,
                "| {} | {} | {example} |",
                if i.valid {
                    "✅"
                } else if i.is_unknown() {
                    "❔ unknown"
                } else {
                    "❌"
                },
                cell(&i.name)
            );
        }
        out.push('\n');
    }
    if !r.contracts.is_empty() {
        out.push_str("### Contracts\n\n| | consumer | provider | interaction | message |\n|---|---|---|---|---|\n");
        for c in &r.contracts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                if c.passed { "✅" } else { "❌" },
                cell(&c.consumer),
                cell(&c.provider),
                cell(&c.interaction),
                cell(c.message.as_deref().unwrap_or(""))
            );
        }
        out.push('\n');
    }
}

/// `(scope, kind, count, share of the scope's requests)`, most frequent first.
pub fn top_error_rows(r: &Report, limit: usize) -> Vec<(String, String, u64, f64)> {
    let mut rows: Vec<(String, String, u64, f64)> = Vec::new();
    let mut add = |scope: String, s: &ScopeStats| {
        for (kind, &n) in s.errors.iter().filter(|(_, &n)| n > 0) {
            rows.push((scope.clone(), kind.clone(), n, n as f64 / s.count.max(1) as f64));
        }
    };
    if r.flows.iter().all(|f| f.steps.is_empty()) {
        add("overall".into(), &r.overall);
    }
    for f in &r.flows {
        for s in &f.steps {
            add(format!("{}/{}", f.name, s.name), &s.stats);
        }
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)).then_with(|| a.1.cmp(&b.1)));
    rows.truncate(limit);
    rows
}

fn top_errors(out: &mut String, r: &Report) {
    let rows = top_error_rows(r, TOP_ERRORS);
    if rows.is_empty() {
        return;
    }
    out.push_str("### Top errors\n\n| step | error | count | share |\n|---|---|---:|---:|\n");
    for (scope, kind, n, share) in rows {
        let _ = writeln!(out, "| {} | {} | {} | {} |", cell(&scope), cell(&kind), fmt_count(n), fmt_pct(share));
    }
    out.push('\n');
}
