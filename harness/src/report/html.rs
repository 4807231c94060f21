//! `report.html`: one self-contained page (inline CSS and SVG, no scripts, no network)
//! with the verdict, charts of latency percentiles over time with fault windows shaded,
//! throughput and errors over time, the latency distribution, and the tables.

use std::fmt::Write;

use super::format::{fmt_count, fmt_ms, fmt_offset, fmt_opt_offset, fmt_pct, fmt_slo_value, fmt_window};
use super::markdown::{top_error_rows, TOP_ERRORS};
use super::model::{Report, ScopeStats, SloStatus, Verdict};
use super::svg::{Band, LineChart, Series, XAxis};

/// The ids of the charts on the page, in order.
pub const CHART_IDS: [&str; 3] = ["chart-latency", "chart-throughput", "chart-distribution"];

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1040px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.verdict{padding:14px 18px;border-radius:8px;margin:12px 0;color:#fff}
.verdict.passed{background:#1f883d} .verdict.failed{background:#cf222e}
.verdict ul{margin:6px 0 0 18px;padding:0}
.meta{color:#57606a} .warn{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;border-radius:6px}
table{border-collapse:collapse;width:100%;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left} td.n{text-align:right}
th{background:#eef1f4} .pass{color:#1f883d;font-weight:600} .fail{color:#cf222e;font-weight:600}
figure{margin:8px 0 0;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:8px}
figcaption{color:#57606a;font-size:13px;padding:0 4px 4px}
svg.chart{width:100%;height:auto;display:block}
svg .grid{stroke:#eaeef2} svg .axis{stroke:#57606a} svg .axis-tick{stroke:#57606a}
svg text{font:11px system-ui,sans-serif;fill:#57606a} svg .axis-label{font-size:12px}
svg .fault-window rect,svg .fault-swatch{fill:#cf222e;fill-opacity:.12;stroke:#cf222e;stroke-opacity:.35}
svg .band-label{fill:#cf222e} svg .no-data{font-size:16px;text-anchor:middle}
pre{white-space:pre-wrap;margin:0;font-size:12px}
";

/// Escapes text for HTML (element content and quoted attributes).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The report as one HTML page.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let title = escape(&format!("Gauntlet report: {}", report.run.name));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>"
    );
    header(&mut out, report);
    charts(&mut out, report);
    slos(&mut out, report);
    scopes(&mut out, report);
    faults(&mut out, report);
    gates(&mut out, report);
    errors(&mut out, report);
    out.push_str("</main></body></html>\n");
    out
}

fn header(out: &mut String, r: &Report) {
    let _ = write!(out, "<h1>Gauntlet report: {}</h1>", escape(&r.run.name));
    if r.run.simulated {
        out.push_str("<div class=\"meta\"><strong>Simulated cluster</strong> (gauntlet sim): every time on this page, the charts' included, is simulated time.</div>");
    }
    let _ = write!(
        out,
        "<div class=\"meta\">seed {} · started {} · ended {} · measured {} · gauntlet {} · schema {}</div>",
        r.run.seed,
        r.run.started_at.to_seconds(),
        r.run.ended_at.to_seconds(),
        fmt_offset(r.run.runtime_ms),
        escape(&r.run.gauntlet_version),
        r.schema_version
    );
    match &r.verdict {
        Verdict::Passed => {
            out.push_str("<div class=\"verdict passed\" id=\"verdict\"><strong>PASSED</strong>: every gate held.</div>")
        }
        Verdict::Failed { reasons } => {
            out.push_str("<div class=\"verdict failed\" id=\"verdict\"><strong>FAILED</strong><ul>");
            for why in reasons {
                let _ = write!(out, "<li>{}</li>", escape(why));
            }
            out.push_str("</ul></div>");
        }
    }
    let o = &r.overall;
    let _ = write!(
        out,
        "<p>{} requests, {:.1}/s, availability {}, error rate {}, p95 {}, p99 {}.</p>",
        fmt_count(o.count),
        o.rate,
        fmt_pct(o.availability),
        fmt_pct(o.error_rate),
        fmt_ms(o.latency_ms.p95),
        fmt_ms(o.latency_ms.p99)
    );
    let checks = o.checks_passed + o.checks_failed;
    if o.degraded > 0 || checks > 0 {
        let _ = write!(
            out,
            "<p id=\"answers\">Degraded answers {} ({}), availability including them {}; checks failed {} of {}.</p>",
            fmt_count(o.degraded),
            fmt_pct(o.degraded_share),
            fmt_pct(o.availability_including_degraded),
            fmt_count(o.checks_failed),
            fmt_count(checks)
        );
    }
    let starts = r.run.flow_starts;
    if starts.dropped > 0 {
        let _ = write!(
            out,
            "<p class=\"warn\">{} of {} flow starts were dropped at the in-flight limit: the target rate was not \
             offered in full.</p>",
            fmt_count(starts.dropped),
            fmt_count(starts.scheduled)
        );
    }
}

/// The three charts of the page.
pub fn chart_set(r: &Report) -> [LineChart; 3] {
    let bands: Vec<Band> =
        r.fault_windows().into_iter().map(|(start, end, short, label)| Band { start, end, short, label }).collect();
    let ts = &r.time_series;
    let over_time = |f: fn(&super::model::SecondPoint) -> f64| -> Vec<(f64, f64)> {
        ts.iter().map(|p| (p.second as f64 + 0.5, f(p))).collect()
    };
    let latency = LineChart {
        id: CHART_IDS[0],
        title: "Corrected latency percentiles per second".into(),
        x_axis: XAxis::Seconds,
        y_unit: "ms",
        series: vec![
            Series { name: "p50".into(), color: "#2f81f7", points: over_time(|p| p.p50_ms) },
            Series { name: "p95".into(), color: "#bf8700", points: over_time(|p| p.p95_ms) },
            Series { name: "p99".into(), color: "#cf222e", points: over_time(|p| p.p99_ms) },
        ],
        bands: bands.clone(),
    };
    let throughput = LineChart {
        id: CHART_IDS[1],
        title: "Requests and errors per second".into(),
        x_axis: XAxis::Seconds,
        y_unit: "/s",
        series: vec![
            Series { name: "requests/s".into(), color: "#1f883d", points: over_time(|p| p.requests as f64) },
            Series { name: "errors/s".into(), color: "#cf222e", points: over_time(|p| p.errors as f64) },
            Series { name: "dropped/s".into(), color: "#8250df", points: over_time(|p| p.dropped as f64) },
        ],
        bands,
    };
    let dist = &r.latency_distribution;
    let distribution = LineChart {
        id: CHART_IDS[2],
        title: "Latency by percentile (whole run)".into(),
        x_axis: XAxis::Percentile,
        y_unit: "ms",
        series: vec![
            Series {
                name: if r.run.load_model == Some(crate::report::model::LoadModel::Closed) {
                    "latency (closed loop)".into()
                } else {
                    "corrected latency".into()
                },
                color: "#cf222e",
                points: dist.iter().map(|d| (d.percentile, d.latency_ms)).collect(),
            },
            Series {
                name: "service time".into(),
                color: "#2f81f7",
                points: dist.iter().map(|d| (d.percentile, d.service_time_ms)).collect(),
            },
        ],
        bands: Vec::new(),
    };
    [latency, throughput, distribution]
}

fn charts(out: &mut String, r: &Report) {
    let closed = r.run.load_model == Some(crate::report::model::LoadModel::Closed);
    let captions = [
        if closed {
            "Latency percentiles over time, from each request's send (a closed loop: not corrected for \
             coordinated omission); shaded: faults in force."
        } else {
            "Latency percentiles over time, from the intended send time (coordinated omission corrected); \
             shaded: faults in force."
        },
        "Throughput and errors over time; shaded: faults in force.",
        "Latency distribution of the whole run: corrected latency against service time; the gap is queueing.",
    ];
    out.push_str("<h2>Charts</h2>");
    for (chart, caption) in chart_set(r).iter().zip(captions) {
        let _ = write!(out, "<figure>{}<figcaption>{caption}</figcaption></figure>", chart.render());
    }
}

fn mark(pass: bool) -> &'static str {
    if pass {
        "<span class=\"pass\">pass</span>"
    } else {
        "<span class=\"fail\">FAIL</span>"
    }
}

fn slos(out: &mut String, r: &Report) {
    if r.slos.is_empty() {
        return;
    }
    out.push_str("<h2>SLOs</h2><table id=\"slos\"><tr><th></th><th>SLO</th><th>scope</th><th>window</th><th>observed</th><th>samples</th></tr>");
    for s in &r.slos {
        let status = match s.status {
            SloStatus::NoData => "<span class=\"fail\">NO DATA</span>",
            other => mark(other == SloStatus::Passed),
        };
        let _ = write!(
            out,
            "<tr><td>{status}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&s.name),
            escape(&s.scope),
            escape(&s.window),
            fmt_slo_value(s),
            fmt_count(s.samples)
        );
    }
    out.push_str("</table>");
}

fn scopes(out: &mut String, r: &Report) {
    let mut rows: Vec<(String, &ScopeStats)> = vec![("overall".into(), &r.overall)];
    for f in &r.flows {
        rows.push((format!("flow {}", f.name), &f.stats));
        for s in &f.steps {
            rows.push((format!("step {}/{}", f.name, s.name), &s.stats));
        }
    }
    out.push_str(
        "<h2>Latency per flow and step</h2><table id=\"scopes\"><tr><th>scope</th><th>count</th><th>rate/s</th>\
         <th>availability</th><th></th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>p99.9</th><th>max</th></tr>",
    );
    for (label, s) in rows {
        for (i, (kind, p)) in [("corrected", &s.latency_ms), ("service", &s.service_time_ms)].into_iter().enumerate() {
            out.push_str("<tr>");
            if i == 0 {
                let _ = write!(
                    out,
                    "<td rowspan=\"2\">{}</td><td class=\"n\" rowspan=\"2\">{}</td><td class=\"n\" rowspan=\"2\">{:.1}</td>\
                     <td class=\"n\" rowspan=\"2\">{}</td>",
                    escape(&label),
                    fmt_count(s.count),
                    s.rate,
                    fmt_pct(s.availability)
                );
            }
            let _ = write!(out, "<td>{kind}</td>");
            for v in [p.p50, p.p90, p.p95, p.p99, p.p99_9, p.max] {
                let _ = write!(out, "<td class=\"n\">{}</td>", fmt_ms(v));
            }
            out.push_str("</tr>");
        }
    }
    out.push_str("</table>");
}

fn faults(out: &mut String, r: &Report) {
    if r.faults.is_empty() {
        return;
    }
    out.push_str("<h2>Faults</h2><table id=\"faults\"><tr><th>fault</th><th>target</th><th>planned</th><th>applied</th><th>removed</th></tr>");
    for f in &r.faults {
        let _ = write!(
            out,
            "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&f.name),
            escape(&f.target),
            fmt_window(f),
            fmt_opt_offset(f.applied_at_ms),
            fmt_opt_offset(f.removed_at_ms)
        );
    }
    out.push_str("</table>");
}

fn gates(out: &mut String, r: &Report) {
    if !r.invariants.is_empty() {
        out.push_str("<h2>Invariants</h2><table id=\"invariants\"><tr><th></th><th>invariant</th><th>first counterexample</th><th>worst counterexample</th></tr>");
        for i in &r.invariants {
            let json = |v: &Option<serde_json::Value>| {
                v.as_ref().map_or_else(String::new, |v| {
                    format!("<pre>{}</pre>", escape(&serde_json::to_string_pretty(v).unwrap_or_default()))
                })
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                mark(i.valid),
                escape(&i.name),
                json(&i.first_counterexample),
                json(&i.worst_counterexample)
            );
        }
        out.push_str("</table>");
    }
    if !r.contracts.is_empty() {
        out.push_str("<h2>Contracts</h2><table id=\"contracts\"><tr><th></th><th>consumer</th><th>provider</th><th>interaction</th><th>message</th></tr>");
        for c in &r.contracts {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                mark(c.passed),
                escape(&c.consumer),
                escape(&c.provider),
                escape(&c.interaction),
                escape(c.message.as_deref().unwrap_or(""))
            );
        }
        out.push_str("</table>");
    }
}

fn errors(out: &mut String, r: &Report) {
    let rows = top_error_rows(r, TOP_ERRORS);
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<h2>Top errors</h2><table id=\"errors\"><tr><th>step</th><th>error</th><th>count</th><th>share</th></tr>",
    );
    for (scope, kind, n, share) in rows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            escape(&scope),
            escape(&kind),
            fmt_count(n),
            fmt_pct(share)
        );
    }
    out.push_str("</table>");
}
