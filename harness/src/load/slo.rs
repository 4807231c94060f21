//! SLO thresholds, k6-like, and their verdicts.
//!
//! A threshold is a string such as `p95 < 200ms`, `p99 <= 1s`, `max < 2s`,
//! `availability >= 99.9%` or `error_rate < 0.1%`, parsed once into a [`Threshold`].
//! An [`SloSpec`] gives it a scope (overall, a flow, a step), a window (the whole run,
//! `during = "30s..90s"`, `after = "90s"`) and optionally `abort_after`: stop the run
//! when every 1-second bucket of that long a stretch breaches it.
//!
//! Latency metrics are the coordinated-omission-corrected latency (from the intended
//! send time). `availability` is the share of requests that got a non-5xx answer in
//! time; `error_rate` the share that did not get a 2xx/3xx answer in time.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

use super::duration::HumanDuration;

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A latency percentile, in (0, 100].
    Percentile(f64),
    /// The highest latency.
    Max,
    /// The mean latency.
    Mean,
    /// Share of requests answered in time without a 5xx.
    Availability,
    /// Share of requests without a 2xx/3xx answer in time.
    ErrorRate,
}

impl Metric {
    /// Whether the metric is a latency (its bound is a duration) or a ratio.
    pub fn is_latency(self) -> bool {
        matches!(self, Self::Percentile(_) | Self::Max | Self::Mean)
    }
}

/// How an observed value must compare with the bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Comparison {
    /// Whether `observed` satisfies the comparison with `bound`.
    pub fn holds(self, observed: f64, bound: f64) -> bool {
        match self {
            Self::Less => observed < bound,
            Self::LessOrEqual => observed <= bound,
            Self::Greater => observed > bound,
            Self::GreaterOrEqual => observed >= bound,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
        }
    }
}

/// A threshold string that does not parse, and what to write instead.
#[derive(Debug, Error, PartialEq)]
pub enum ThresholdError {
    /// Not `METRIC OP VALUE`.
    #[error("`{0}` is not a threshold; write it like `p95 < 200ms` or `availability >= 99.9%`")]
    Shape(String),
    /// An unknown metric.
    #[error("unknown metric `{0}`; use p50..p99.99, max, mean, availability or error_rate")]
    Metric(String),
    /// A latency bound that is not a duration.
    #[error("`{0}` is not a duration; latency bounds look like `200ms` or `1.5s`")]
    Latency(String),
    /// A ratio bound that is not a percentage.
    #[error("`{0}` is not a percentage between 0% and 100%, like `99.9%`")]
    Ratio(String),
}

/// A parsed threshold: metric, comparison, bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub metric: Metric,
    /// How it must compare.
    pub comparison: Comparison,
    /// The bound: milliseconds for latencies, a fraction in [0, 1] for ratios.
    pub bound: f64,
}

impl FromStr for Threshold {
    type Err = ThresholdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || ThresholdError::Shape(s.to_owned());
        let at = s.find(['<', '>']).ok_or_else(shape)?;
        let (lhs, rest) = s.split_at(at);
        let (comparison, rhs) = if let Some(r) = rest.strip_prefix("<=") {
            (Comparison::LessOrEqual, r)
        } else if let Some(r) = rest.strip_prefix(">=") {
            (Comparison::GreaterOrEqual, r)
        } else if let Some(r) = rest.strip_prefix('<') {
            (Comparison::Less, r)
        } else {
            (Comparison::Greater, &rest[1..])
        };
        let (lhs, rhs) = (lhs.trim(), rhs.trim());
        if lhs.is_empty() || rhs.is_empty() {
            return Err(shape());
        }
        let metric = parse_metric(lhs)?;
        let bound = if metric.is_latency() {
            let d: HumanDuration = rhs.parse().map_err(|_| ThresholdError::Latency(rhs.into()))?;
            d.0.as_secs_f64() * 1000.0
        } else {
            parse_ratio(rhs)?
        };
        Ok(Self { metric, comparison, bound })
    }
}

fn parse_metric(s: &str) -> Result<Metric, ThresholdError> {
    let bad = || ThresholdError::Metric(s.to_owned());
    Ok(match s {
        "max" => Metric::Max,
        "mean" | "avg" => Metric::Mean,
        "availability" => Metric::Availability,
        "error_rate" => Metric::ErrorRate,
        _ => {
            let q: f64 = s.strip_prefix('p').ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if !(q > 0.0 && q <= 100.0) {
                return Err(bad());
            }
            Metric::Percentile(q)
        }
    })
}

fn parse_ratio(s: &str) -> Result<f64, ThresholdError> {
    let bad = || ThresholdError::Ratio(s.to_owned());
    let pct: f64 = s.strip_suffix('%').ok_or_else(bad)?.trim().parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&pct) {
        return Err(bad());
    }
    Ok(pct / 100.0)
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = self.comparison.symbol();
        match self.metric {
            Metric::Percentile(q) => write!(f, "p{q} {op} {}", fmt_ms(self.bound)),
            Metric::Max => write!(f, "max {op} {}", fmt_ms(self.bound)),
            Metric::Mean => write!(f, "mean {op} {}", fmt_ms(self.bound)),
            Metric::Availability => write!(f, "availability {op} {}%", self.bound * 100.0),
            Metric::ErrorRate => write!(f, "error_rate {op} {}%", self.bound * 100.0),
        }
    }
}

/// Formats milliseconds as `250ms`, `1.5s` or `900us` (a human duration string).
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{}s", ms / 1000.0)
    } else if ms >= 1.0 || ms == 0.0 {
        format!("{ms}ms")
    } else {
        format!("{}us", ms * 1000.0)
    }
}

/// What a threshold looks at: everything, one flow, or one step of one flow.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SloScope {
    /// Every request of the run.
    Overall,
    /// Whole flows (latency from the flow's intended start to its last answer).
    Flow(String),
    /// One step of one flow.
    Step {
        /// The flow.
        flow: String,
        /// The step.
        step: String,
    },
}

impl fmt::Display for SloScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Overall => f.write_str("overall"),
            Self::Flow(flow) => write!(f, "flow {flow}"),
            Self::Step { flow, step } => write!(f, "step {flow}/{step}"),
        }
    }
}

/// The part of the run a threshold is judged on, by intended send time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// Offset from the start of the run.
    pub start: Duration,
    /// End offset (exclusive); `None` for the end of the run.
    pub end: Option<Duration>,
}

impl Window {
    /// The whole run.
    pub const WHOLE_RUN: Self = Self { start: Duration::ZERO, end: None };

    /// Whether offset `at` lies in the window.
    pub fn contains(&self, at: Duration) -> bool {
        at >= self.start && self.end.is_none_or(|end| at < end)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |d: Duration| humantime::format_duration(d).to_string();
        match (self.start.is_zero(), self.end) {
            (true, None) => f.write_str("whole run"),
            (false, None) => write!(f, "after {}", h(self.start)),
            (_, Some(end)) => write!(f, "during {}..{}", h(self.start), h(end)),
        }
    }
}

/// One service-level objective: a threshold on a scope over a window.
#[derive(Clone, Debug, PartialEq)]
pub struct SloSpec {
    /// The threshold.
    pub threshold: Threshold,
    /// What it looks at.
    pub scope: SloScope,
    /// When.
    pub window: Window,
    /// Abort the run when it is breached in every 1-second bucket for this long.
    pub abort_after: Option<Duration>,
}

impl SloSpec {
    /// A whole-run, overall SLO.
    pub fn overall(threshold: Threshold) -> Self {
        Self { threshold, scope: SloScope::Overall, window: Window::WHOLE_RUN, abort_after: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    threshold: String,
    flow: Option<String>,
    step: Option<String>,
    during: Option<String>,
    after: Option<HumanDuration>,
    abort_after: Option<HumanDuration>,
}

impl<'de> Deserialize<'de> for SloSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = RawSlo::deserialize(d)?;
        let threshold: Threshold = raw.threshold.parse().map_err(D::Error::custom)?;
        let scope = match (raw.flow, raw.step) {
            (None, None) => SloScope::Overall,
            (Some(flow), None) => SloScope::Flow(flow),
            (Some(flow), Some(step)) => SloScope::Step { flow, step },
            (None, Some(_)) => return Err(D::Error::custom("`step` needs its `flow`")),
        };
        let window = match (raw.during, raw.after) {
            (None, None) => Window::WHOLE_RUN,
            (None, Some(after)) => Window { start: after.0, end: None },
            (Some(during), None) => parse_during(&during).map_err(D::Error::custom)?,
            (Some(_), Some(_)) => return Err(D::Error::custom("give `during` or `after`, not both")),
        };
        Ok(Self { threshold, scope, window, abort_after: raw.abort_after.map(|d| d.0) })
    }
}

/// Parses a `during` range, `30s..90s`.
pub fn parse_during(s: &str) -> Result<Window, String> {
    let bad = || format!("`{s}` is not a time range; write it like `30s..90s`");
    let (a, b) = s.split_once("..").ok_or_else(bad)?;
    let start: HumanDuration = a.parse().map_err(|_| bad())?;
    let end: HumanDuration = b.parse().map_err(|_| bad())?;
    if end.0 <= start.0 {
        return Err(format!("`{s}`: the range ends before it starts"));
    }
    Ok(Window { start: start.0, end: Some(end.0) })
}

/// What a threshold is evaluated against: latencies in milliseconds and outcome counts.
pub trait Observable {
    /// Requests (or flows) recorded.
    fn total(&self) -> u64;
    /// Those answered in time without a 5xx.
    fn available(&self) -> u64;
    /// Those answered in time with a 2xx/3xx.
    fn succeeded(&self) -> u64;
    /// Corrected latency at percentile `q` (0..=100), in milliseconds.
    fn latency_percentile_ms(&self, q: f64) -> f64;
    /// Highest corrected latency, in milliseconds.
    fn latency_max_ms(&self) -> f64;
    /// Mean corrected latency, in milliseconds.
    fn latency_mean_ms(&self) -> f64;
}

impl Threshold {
    /// The observed value of the metric, or `None` when nothing was recorded.
    pub fn observe(&self, o: &dyn Observable) -> Option<f64> {
        let total = o.total();
        if total == 0 {
            return None;
        }
        Some(match self.metric {
            Metric::Percentile(q) => o.latency_percentile_ms(q),
            Metric::Max => o.latency_max_ms(),
            Metric::Mean => o.latency_mean_ms(),
            Metric::Availability => o.available() as f64 / total as f64,
            Metric::ErrorRate => 1.0 - o.succeeded() as f64 / total as f64,
        })
    }

    /// Whether `observed` meets the threshold.
    pub fn holds(&self, observed: f64) -> bool {
        self.comparison.holds(observed, self.bound)
    }

    /// Formats an observed value in the metric's unit.
    pub fn format_value(&self, value: f64) -> String {
        if self.metric.is_latency() {
            fmt_ms((value * 1000.0).round() / 1000.0)
        } else {
            format!("{:.3}%", value * 100.0)
        }
    }
}

/// The outcome of one SLO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloStatus {
    /// The threshold held.
    Passed,
    /// The threshold was breached.
    Failed,
    /// Nothing was recorded in the scope and window: the SLO cannot be shown to hold,
    /// so it counts as failed.
    NoData,
}

/// The judgement of one SLO, with what was observed.
#[derive(Clone, Debug, PartialEq)]
pub struct SloVerdict {
    /// The SLO judged.
    pub spec: SloSpec,
    /// The observed value (milliseconds or a fraction), if anything was recorded.
    pub observed: Option<f64>,
    /// How many requests or flows it is based on.
    pub samples: u64,
    /// Passed, failed, or no data.
    pub status: SloStatus,
}

impl SloVerdict {
    /// Judges `spec` against what was observed in its scope and window.
    pub fn judge(spec: &SloSpec, observed: Option<&dyn Observable>) -> Self {
        let samples = observed.map_or(0, |o| o.total());
        let value = observed.and_then(|o| spec.threshold.observe(o));
        let status = match value {
            None => SloStatus::NoData,
            Some(v) if spec.threshold.holds(v) => SloStatus::Passed,
            Some(_) => SloStatus::Failed,
        };
        Self { spec: spec.clone(), observed: value, samples, status }
    }

    /// Whether the SLO held.
    pub fn passed(&self) -> bool {
        self.status == SloStatus::Passed
    }
}

impl fmt::Display for SloVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = match self.status {
            SloStatus::Passed => "PASS",
            SloStatus::Failed => "FAIL",
            SloStatus::NoData => "NO DATA",
        };
        let value = self.observed.map_or("-".into(), |v| self.spec.threshold.format_value(v));
        write!(
            f,
            "{mark:7} {} ({}, {}): observed {value} over {} samples",
            self.spec.threshold, self.spec.scope, self.spec.window, self.samples
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let t: Threshold = "p95 < 200ms".parse().unwrap();
        assert_eq!(t, Threshold { metric: Metric::Percentile(95.0), comparison: Comparison::Less, bound: 200.0 });
        let t: Threshold = "p99 < 1s".parse().unwrap();
        assert_eq!(t.bound, 1000.0);
        let t: Threshold = "availability >= 99.9%".parse().unwrap();
        assert!((t.bound - 0.999).abs() < 1e-12);
        assert_eq!(t.comparison, Comparison::GreaterOrEqual);
        let t: Threshold = "error_rate<0.1%".parse().unwrap();
        assert!((t.bound - 0.001).abs() < 1e-12);
    }

    #[test]
    fn refuses_nonsense_with_a_hint() {
        assert!(matches!("p95 200ms".parse::<Threshold>(), Err(ThresholdError::Shape(_))));
        assert!(matches!("p101 < 1s".parse::<Threshold>(), Err(ThresholdError::Metric(_))));
        assert!(matches!("p95 < 99%".parse::<Threshold>(), Err(ThresholdError::Latency(_))));
        assert!(matches!("availability > 1s".parse::<Threshold>(), Err(ThresholdError::Ratio(_))));
    }

    #[test]
    fn windows_contain_their_start_not_their_end() {
        let w = parse_during("30s..1m").unwrap();
        assert!(w.contains(Duration::from_secs(30)));
        assert!(!w.contains(Duration::from_secs(60)));
        assert!(parse_during("1m..30s").is_err());
    }
}
