//! Baseline comparison: a latency percentile that grew, or a throughput that shrank,
//! by more than a tolerance is a regression.
//!
//! Scopes (overall, each flow, each step) are matched by name; a scope present on one
//! side only is listed, not compared. A scope with no requests on a side has no
//! latency to compare; its throughput still counts.

use std::fmt;
use std::str::FromStr;

use super::format::fmt_ms;
use super::model::{Report, ScopeStats};

/// What can be compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompareMetric {
    /// Corrected latency, median.
    P50,
    /// 90th percentile.
    P90,
    /// 95th percentile.
    P95,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P99_9,
    /// Highest latency.
    Max,
    /// Requests (or flows) per second.
    Throughput,
}

impl CompareMetric {
    /// Every metric, in table order.
    pub const ALL: [Self; 7] = [Self::P50, Self::P90, Self::P95, Self::P99, Self::P99_9, Self::Max, Self::Throughput];

    /// What `gauntlet report compare` looks at unless told otherwise.
    pub const DEFAULT: [Self; 3] = [Self::P95, Self::P99, Self::Throughput];

    /// The metric's name on the command line and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P95 => "p95",
            Self::P99 => "p99",
            Self::P99_9 => "p99.9",
            Self::Max => "max",
            Self::Throughput => "throughput",
        }
    }

    /// Whether a higher value is worse (latency) rather than better (throughput).
    pub fn higher_is_worse(self) -> bool {
        self != Self::Throughput
    }

    fn value(self, s: &ScopeStats) -> f64 {
        let l = &s.latency_ms;
        match self {
            Self::P50 => l.p50,
            Self::P90 => l.p90,
            Self::P95 => l.p95,
            Self::P99 => l.p99,
            Self::P99_9 => l.p99_9,
            Self::Max => l.max,
            Self::Throughput => s.rate,
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Self::Throughput => format!("{v:.1}/s"),
            _ => fmt_ms(v),
        }
    }
}

impl fmt::Display for CompareMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CompareMetric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|m| m.name()).collect();
            format!("unknown metric `{s}`; use one of {}", names.join(", "))
        })
    }
}

/// The largest relative change that is still noise, as a fraction (`10%` is 0.1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance(f64);

impl Tolerance {
    /// A tolerance of `fraction` (0.1 for 10%); `None` if negative or not finite.
    pub fn new(fraction: f64) -> Option<Self> {
        (fraction.is_finite() && fraction >= 0.0).then_some(Self(fraction))
    }

    /// The tolerance as a fraction.
    pub fn fraction(self) -> f64 {
        self.0
    }
}

impl Default for Tolerance {
    fn default() -> Self {
        Self(0.10)
    }
}

impl FromStr for Tolerance {
    type Err = String;

    /// `10%` or `10` (percent).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a tolerance; write a percentage like `10%`");
        let pct: f64 = s.trim().trim_end_matches('%').trim().parse().map_err(|_| bad())?;
        Self::new(pct / 100.0).ok_or_else(bad)
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0 * 100.0)
    }
}

/// How a metric moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// Worse by more than the tolerance.
    Regression,
    /// Better by more than the tolerance.
    Improvement,
    /// Within the tolerance: noise.
    Unchanged,
}

/// One metric of one scope, baseline against new.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// `overall`, `flow checkout`, `step checkout/pay`.
    pub scope: String,
    /// What was compared.
    pub metric: CompareMetric,
    /// The baseline's value (milliseconds, or per second).
    pub baseline: f64,
    /// The new value.
    pub new: f64,
    /// `(new - baseline) / baseline`; `None` when the baseline is 0 and the new is not.
    pub relative: Option<f64>,
    /// Regression, improvement or noise.
    pub kind: ChangeKind,
}

/// Baseline against new, metric by metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The tolerance used.
    pub tolerance: Tolerance,
    /// Every compared metric of every scope present on both sides.
    pub changes: Vec<Change>,
    /// Scopes only the baseline has.
    pub only_in_baseline: Vec<String>,
    /// Scopes only the new report has.
    pub only_in_new: Vec<String>,
}

impl Comparison {
    /// The changes that are regressions.
    pub fn regressions(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.kind == ChangeKind::Regression)
    }

    /// Whether anything regressed.
    pub fn regressed(&self) -> bool {
        self.regressions().next().is_some()
    }
}

/// Compares `new` against `baseline` on `metrics`.
pub fn compare(baseline: &Report, new: &Report, tolerance: Tolerance, metrics: &[CompareMetric]) -> Comparison {
    let (base_scopes, new_scopes) = (scopes(baseline), scopes(new));
    let mut changes = Vec::new();
    for (scope, b) in &base_scopes {
        let Some((_, n)) = new_scopes.iter().find(|(s, _)| s == scope) else { continue };
        for &metric in metrics {
            let latency = metric.higher_is_worse();
            if latency && (b.count == 0 || n.count == 0) {
                continue;
            }
            changes.push(judge(scope, metric, metric.value(b), metric.value(n), tolerance));
        }
    }
    let missing = |from: &[(String, &ScopeStats)], other: &[(String, &ScopeStats)]| {
        from.iter().filter(|(s, _)| !other.iter().any(|(o, _)| o == s)).map(|(s, _)| s.clone()).collect()
    };
    Comparison {
        tolerance,
        only_in_baseline: missing(&base_scopes, &new_scopes),
        only_in_new: missing(&new_scopes, &base_scopes),
        changes,
    }
}

fn judge(scope: &str, metric: CompareMetric, baseline: f64, new: f64, tolerance: Tolerance) -> Change {
    let relative = if baseline > 0.0 {
        Some((new - baseline) / baseline)
    } else if new == baseline {
        Some(0.0)
    } else {
        None
    };
    let worse_sign = if metric.higher_is_worse() { 1.0 } else { -1.0 };
    let kind = match relative {
        Some(r) if r * worse_sign > tolerance.0 => ChangeKind::Regression,
        Some(r) if r * worse_sign < -tolerance.0 => ChangeKind::Improvement,
        Some(_) => ChangeKind::Unchanged,
        // From nothing to something: worse for latency, better for throughput.
        None if metric.higher_is_worse() => ChangeKind::Regression,
        None => ChangeKind::Improvement,
    };
    Change { scope: scope.to_owned(), metric, baseline, new, relative, kind }
}

fn scopes(r: &Report) -> Vec<(String, &ScopeStats)> {
    let mut out = vec![("overall".to_owned(), &r.overall)];
    for f in &r.flows {
        out.push((format!("flow {}", f.name), &f.stats));
        for s in &f.steps {
            out.push((format!("step {}/{}", f.name, s.name), &s.stats));
        }
    }
    out
}

impl fmt::Display for Comparison {
    /// A plain-text table of every change, regressions marked, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 6]> = self
            .changes
            .iter()
            .map(|c| {
                let change = c.relative.map_or_else(|| "new".into(), |r| format!("{:+.1}%", r * 100.0));
                let verdict = match c.kind {
                    ChangeKind::Regression => "REGRESSION",
                    ChangeKind::Improvement => "improved",
                    ChangeKind::Unchanged => "ok",
                };
                [
                    c.scope.clone(),
                    c.metric.to_string(),
                    c.metric.format(c.baseline),
                    c.metric.format(c.new),
                    change,
                    verdict.into(),
                ]
            })
            .collect();
        let header = ["scope", "metric", "baseline", "new", "change", "verdict"].map(String::from);
        let mut widths = header.clone().map(|h| h.len());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .enumerate()
                .map(|(i, (cell, w))| if (2..5).contains(&i) { format!("{cell:>w$}") } else { format!("{cell:<w$}") })
                .collect();
            writeln!(f, "{}", line.join("  ").trim_end())?;
        }
        for s in &self.only_in_baseline {
            writeln!(f, "only in the baseline: {s}")?;
        }
        for s in &self.only_in_new {
            writeln!(f, "only in the new report: {s}")?;
        }
        let n = self.regressions().count();
        write!(
            f,
            "{n} regression{} beyond {} (of {} compared)",
            if n == 1 { "" } else { "s" },
            self.tolerance,
            rows.len()
        )?;
        if self.changes.is_empty() {
            write!(f, "; nothing comparable: the reports share no scope with data")?;
        }
        Ok(())
    }
}
