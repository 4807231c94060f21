//! SLO thresholds, k6-like, and their verdicts.
//!
//! A threshold is a string such as `p95 < 200ms`, `p99 <= 1s`, `max < 2s`,
//! `availability >= 99.9%` or `error_rate < 0.1%`, parsed once into a [`Threshold`].
//! An [`SloSpec`] gives it a scope (overall, a flow, a step), a window (the whole run,
//! `during = "30s..90s"`, `after = "90s"`) and optionally `abort_after`: stop the run
//! when every 1-second bucket of that long a stretch breaches it.
//!
//! Latency metrics are the coordinated-omission-corrected latency (from the intended
//! send time). The ratio metrics:
//!
//! | metric | share of | that |
//! |---|---|---|
//! | `availability` | requests and dropped flow starts | got an answer in time, not a 5xx, not degraded, no failed check |
//! | `availability_including_degraded` | requests and dropped flow starts | as `availability`, degraded answers counted as good |
//! | `error_rate` | requests | got no 2xx/3xx answer in time, or failed their check |
//! | `degraded` | requests | matched one of the workload's `degraded` rules |
//! | `checks` | checks (requests of steps with `expect`) | passed their check |
//!
//! A flow start dropped at the in-flight limit never sent its requests; counting it as
//! one unavailable request keeps an overloaded generator from reporting a good
//! availability over the few requests it managed to send.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

use super::duration::HumanDuration;
use super::stats::Counts;

/// What a threshold measures.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// A latency percentile, in (0, 100].
    Percentile(f64),
    /// The highest latency.
    Max,
    /// The mean latency.
    Mean,
    /// Share of requests (and dropped starts) with a good answer: in time, not 5xx,
    /// not degraded, no failed check.
    Availability,
    /// As [`Metric::Availability`], with degraded answers counted as good.
    AvailabilityIncludingDegraded,
    /// Share of requests without a 2xx/3xx answer in time, or with a failed check.
    ErrorRate,
    /// Share of requests whose answer matched a `degraded` rule.
    Degraded,
    /// Share of checks (requests of steps with `expect`) that passed.
    Checks,
    /// A business outcome of any system: share of the operations of one `f`
    /// ([`Threshold::op`]) invoked in the window that ended `ok` (and, with `where`,
    /// whose completion carried that value), from the run's operation history
    /// (`ok_share(add) >= 95%`, `ok_share(pay where /status == "PAID") >= 95%`). Only a
    /// scenario can judge it.
    OkShare,
    /// The highest value a service's gauge showed on its `/metrics`, sampled every
    /// second while a scenario runs ([`Threshold::gauge`] names which). Only a scenario
    /// can judge it: the load generator does not see the services.
    GaugeMax,
}

impl Metric {
    /// Whether the metric is a latency (its bound is a duration) or a ratio.
    pub fn is_latency(self) -> bool {
        matches!(self, Self::Percentile(_) | Self::Max | Self::Mean)
    }

    /// Whether only a scenario run can judge it (the history, the end state or the
    /// services' own metrics), not the load generator alone.
    pub fn scenario_only(self) -> bool {
        matches!(self, Self::OkShare | Self::GaugeMax)
    }
}

/// A gauge one service exposes on `/metrics`: `db:queue_depth`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gauge {
    /// The service (its first node is sampled).
    pub service: String,
    /// The metric's name as exposed; series with labels are summed.
    pub name: String,
}

impl fmt::Display for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.service, self.name)
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
    #[error(
        "unknown metric `{0}`; use p50..p99.99, max, mean, availability, \
         availability_including_degraded, error_rate, degraded, checks, or in scenarios only \
         ok_share(<f>) or `metric <service>:<gauge> max`"
    )]
    Metric(String),
    /// A gauge bound that is not a number.
    #[error("`{0}` is not a number; a gauge's bound looks like `500`")]
    Number(String),
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
    /// The bound: milliseconds for latencies, a fraction in [0, 1] for ratios, the
    /// gauge's own unit for [`Metric::GaugeMax`].
    pub bound: f64,
    /// The service gauge a [`Metric::GaugeMax`] samples; `None` for every other metric.
    pub gauge: Option<Gauge>,
    /// The operations' `f` a [`Metric::OkShare`] is over; `None` for every other metric.
    pub op: Option<String>,
    /// `where <pointer> == <value>`: only the `ok` completions whose value has this
    /// JSON value at this pointer count as `ok` (e.g. an order acknowledged as PAID).
    pub op_where: Option<(String, serde_json::Value)>,
    /// Where a final read shows the state an `ok` operation reached since (a scenario's
    /// `confirm`): one that matches `op_where` there counts too.
    pub confirm: Option<Confirm>,
}

/// How an operation is looked up in a final read: among the items at `items` of the
/// read `read`, the one whose value at `by` equals the operation's own at `by`.
#[derive(Clone, Debug, PartialEq)]
pub struct Confirm {
    /// The final read's `f`.
    pub read: String,
    /// A JSON pointer to the array of items in what it read.
    pub items: String,
    /// A JSON pointer, into an item and into the operation's completion value, to what
    /// identifies it (an id).
    pub by: String,
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
        if let Some(gauge) = lhs.strip_prefix("metric ") {
            let gauge = parse_gauge(gauge.trim()).ok_or_else(|| ThresholdError::Metric(lhs.to_owned()))?;
            let bound: f64 = rhs.parse().map_err(|_| ThresholdError::Number(rhs.into()))?;
            if !bound.is_finite() {
                return Err(ThresholdError::Number(rhs.into()));
            }
            return Ok(Self {
                metric: Metric::GaugeMax,
                comparison,
                bound,
                gauge: Some(gauge),
                op: None,
                op_where: None,
                confirm: None,
            });
        }
        if let Some(inner) = lhs.strip_prefix("ok_share(").and_then(|r| r.strip_suffix(')')) {
            let (f, op_where) = match inner.split_once(" where ") {
                None => (inner.trim(), None),
                Some((f, cond)) => {
                    let (pointer, value) =
                        cond.split_once("==").ok_or_else(|| ThresholdError::Metric(lhs.to_owned()))?;
                    let (pointer, value) = (pointer.trim(), value.trim());
                    let value: serde_json::Value =
                        serde_json::from_str(value).map_err(|_| ThresholdError::Metric(lhs.to_owned()))?;
                    if super::rules::check_pointer(pointer).is_err() {
                        return Err(ThresholdError::Metric(lhs.to_owned()));
                    }
                    (f.trim(), Some((pointer.to_owned(), value)))
                }
            };
            if !super::operation::valid_f(f) {
                return Err(ThresholdError::Metric(lhs.to_owned()));
            }
            let bound = parse_ratio(rhs)?;
            return Ok(Self {
                metric: Metric::OkShare,
                comparison,
                bound,
                gauge: None,
                op: Some(f.to_owned()),
                op_where,
                confirm: None,
            });
        }
        let metric = parse_metric(lhs)?;
        let bound = if metric.is_latency() {
            let d: HumanDuration = rhs.parse().map_err(|_| ThresholdError::Latency(rhs.into()))?;
            d.0.as_secs_f64() * 1000.0
        } else {
            parse_ratio(rhs)?
        };
        Ok(Self { metric, comparison, bound, gauge: None, op: None, op_where: None, confirm: None })
    }
}

/// `<service>:<gauge> max`, the only aggregate there is.
fn parse_gauge(s: &str) -> Option<Gauge> {
    let (source, aggregate) = s.rsplit_once(char::is_whitespace)?;
    let (service, name) = source.trim().split_once(':')?;
    let valid = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (aggregate == "max" && valid(service) && valid(name))
        .then(|| Gauge { service: service.to_owned(), name: name.to_owned() })
}

fn parse_metric(s: &str) -> Result<Metric, ThresholdError> {
    let bad = || ThresholdError::Metric(s.to_owned());
    Ok(match s {
        "max" => Metric::Max,
        "mean" | "avg" => Metric::Mean,
        "availability" => Metric::Availability,
        "availability_including_degraded" => Metric::AvailabilityIncludingDegraded,
        "error_rate" => Metric::ErrorRate,
        "degraded" => Metric::Degraded,
        "checks" => Metric::Checks,
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
            Metric::GaugeMax => match &self.gauge {
                Some(g) => write!(f, "metric {g} max {op} {}", self.bound),
                None => write!(f, "metric ? max {op} {}", self.bound),
            },
            Metric::OkShare => {
                write!(f, "ok_share({}", self.op.as_deref().unwrap_or("?"))?;
                if let Some((pointer, value)) = &self.op_where {
                    write!(f, " where {pointer} == {value}")?;
                }
                write!(f, ") {op} {}%", self.bound * 100.0)
            }
            ratio => write!(f, "{} {op} {}%", ratio.name(), self.bound * 100.0),
        }
    }
}

impl Metric {
    /// The metric's name in thresholds and reports: `p95`, `availability`, ...
    pub fn name(self) -> String {
        match self {
            Self::Percentile(q) => format!("p{q}"),
            Self::Max => "max".into(),
            Self::Mean => "mean".into(),
            Self::Availability => "availability".into(),
            Self::AvailabilityIncludingDegraded => "availability_including_degraded".into(),
            Self::ErrorRate => "error_rate".into(),
            Self::Degraded => "degraded".into(),
            Self::Checks => "checks".into(),
            Self::OkShare => "ok_share".into(),
            Self::GaugeMax => "gauge_max".into(),
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
        // To the millisecond: a window placed on actual fault times is not shown in ns.
        let h = |d: Duration| humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string();
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
        if threshold.metric.scenario_only() {
            return Err(D::Error::custom(format!(
                "`{threshold}` is judged over a scenario's history, end state or services: state it in the scenario's [[slo]]"
            )));
        }
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

/// What a threshold is evaluated against: latencies in milliseconds and outcome counts
/// (for a sampled gauge: the samples in `counts().total`, their highest value as the max).
pub trait Observable {
    /// The outcome counts.
    fn counts(&self) -> Counts;
    /// Corrected latency at percentile `q` (0..=100), in milliseconds.
    fn latency_percentile_ms(&self, q: f64) -> f64;
    /// Highest corrected latency, in milliseconds.
    fn latency_max_ms(&self) -> f64;
    /// Mean corrected latency, in milliseconds.
    fn latency_mean_ms(&self) -> f64;
}

impl Threshold {
    /// How many requests, flows, dropped starts or checks the metric is a share of (for
    /// a latency, the requests or flows its histogram holds).
    pub fn samples(&self, c: &Counts) -> u64 {
        match self.metric {
            Metric::Availability | Metric::AvailabilityIncludingDegraded => c.offered(),
            Metric::Checks => c.checks(),
            Metric::OkShare => c.placed,
            _ => c.total,
        }
    }

    /// The observed value of the metric, or `None` when there is nothing to observe.
    pub fn observe(&self, o: &dyn Observable) -> Option<f64> {
        let c = o.counts();
        let whole = self.samples(&c);
        if whole == 0 {
            return None;
        }
        let of = |part: u64| part as f64 / whole as f64;
        Some(match self.metric {
            Metric::Percentile(q) => o.latency_percentile_ms(q),
            Metric::Max => o.latency_max_ms(),
            Metric::Mean => o.latency_mean_ms(),
            Metric::GaugeMax => o.latency_max_ms(),
            Metric::Availability => of(c.available),
            Metric::AvailabilityIncludingDegraded => of(c.available_including_degraded),
            Metric::ErrorRate => 1.0 - of(c.succeeded),
            Metric::Degraded => of(c.degraded),
            Metric::Checks => of(c.checks_passed),
            Metric::OkShare => of(c.paid),
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
        } else if self.metric == Metric::GaugeMax {
            format!("{value}")
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
        let samples = observed.map_or(0, |o| spec.threshold.samples(&o.counts()));
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
    use crate::load::stats::{Check, Judgement, Outcome, Stats};

    #[test]
    fn parses_the_documented_forms() {
        let t: Threshold = "p95 < 200ms".parse().unwrap();
        assert_eq!(
            t,
            Threshold {
                metric: Metric::Percentile(95.0),
                comparison: Comparison::Less,
                bound: 200.0,
                gauge: None,
                op: None,
                op_where: None,
                confirm: None
            }
        );
        let t: Threshold = "p99 < 1s".parse().unwrap();
        assert_eq!(t.bound, 1000.0);
        let t: Threshold = "availability >= 99.9%".parse().unwrap();
        assert!((t.bound - 0.999).abs() < 1e-12);
        assert_eq!(t.comparison, Comparison::GreaterOrEqual);
        let t: Threshold = "error_rate<0.1%".parse().unwrap();
        assert!((t.bound - 0.001).abs() < 1e-12);
        let metrics = ["availability_including_degraded >= 99%", "degraded <= 5%", "checks >= 99%"];
        let parsed: Vec<Metric> = metrics.iter().map(|m| m.parse::<Threshold>().unwrap().metric).collect();
        assert_eq!(parsed, [Metric::AvailabilityIncludingDegraded, Metric::Degraded, Metric::Checks]);
        for m in metrics {
            assert_eq!(m.parse::<Threshold>().unwrap().to_string(), m);
        }
    }

    fn stats(record: impl FnOnce(&mut Stats)) -> Stats {
        let mut s = Stats::new();
        record(&mut s);
        s
    }

    fn judge(threshold: &str, s: &Stats) -> SloVerdict {
        SloVerdict::judge(&SloSpec::overall(threshold.parse().unwrap()), Some(s))
    }

    #[test]
    fn degraded_answers_fail_availability_but_not_availability_including_degraded() {
        let stale = Judgement { degraded: true, check: Check::Unchecked };
        let s = stats(|s| {
            for i in 0..10 {
                s.record_judged(1000, 1000, Outcome::Status(200), if i < 2 { stale } else { Judgement::NONE });
            }
        });
        let strict = judge("availability >= 99%", &s);
        assert_eq!((strict.observed, strict.passed()), (Some(0.8), false));
        let lenient = judge("availability_including_degraded >= 99%", &s);
        assert_eq!((lenient.observed, lenient.passed()), (Some(1.0), true));
        let share = judge("degraded <= 5%", &s);
        assert_eq!((share.observed, share.passed()), (Some(0.2), false));
    }

    #[test]
    fn the_checks_slo_fails_when_checks_fail() {
        let wrong = Judgement { degraded: false, check: Check::Failed };
        let right = Judgement { degraded: false, check: Check::Passed };
        let s = stats(|s| {
            s.record_judged(1000, 1000, Outcome::Status(200), wrong);
            for _ in 0..3 {
                s.record_judged(1000, 1000, Outcome::Status(200), right);
            }
            s.record(1000, 1000, Outcome::Status(200));
        });
        let v = judge("checks >= 99%", &s);
        assert_eq!((v.observed, v.samples, v.passed()), (Some(0.75), 4, false));
        assert_eq!(judge("availability >= 80%", &s).observed, Some(0.8));
        let unchecked = stats(|s| s.record(1000, 1000, Outcome::Status(200)));
        assert_eq!(judge("checks >= 99%", &unchecked).status, SloStatus::NoData);
    }

    #[test]
    fn dropped_starts_lower_availability() {
        let s = stats(|s| {
            for _ in 0..3 {
                s.record(1000, 1000, Outcome::Status(200));
            }
            s.record_dropped();
        });
        let v = judge("availability >= 99%", &s);
        assert_eq!((v.observed, v.samples, v.passed()), (Some(0.75), 4, false));
        assert_eq!(judge("error_rate < 1%", &s).samples, 3, "error_rate is over requests sent");
        let only_dropped = stats(Stats::record_dropped);
        assert_eq!(judge("availability >= 99%", &only_dropped).observed, Some(0.0));
        assert_eq!(judge("p95 < 1s", &only_dropped).status, SloStatus::NoData);
    }

    #[test]
    fn a_service_gauge_parses_prints_back_and_is_judged_on_its_highest_sample() {
        let t: Threshold = "metric worker:jobs_pending max < 500".parse().unwrap();
        let gauge = Gauge { service: "worker".into(), name: "jobs_pending".into() };
        assert_eq!((t.metric, t.bound, t.gauge.as_ref()), (Metric::GaugeMax, 500.0, Some(&gauge)));
        assert_eq!(t.to_string(), "metric worker:jobs_pending max < 500");
        assert!(t.metric.scenario_only());
        for bad in ["metric db max < 5", "metric db:x p95 < 5", "metric :x max < 5", "metric o:x max < 5ms"] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ok_share_names_its_operations_and_is_a_share_of_them() {
        let t: Threshold = "ok_share(add) >= 95%".parse().unwrap();
        assert_eq!((t.metric, t.bound, t.op.as_deref()), (Metric::OkShare, 0.95, Some("add")));
        assert_eq!(t.to_string(), "ok_share(add) >= 95%");
        assert!(t.metric.scenario_only());
        let counts = Counts { total: 20, placed: 20, paid: 19, ..Counts::default() };
        assert_eq!(t.samples(&counts), 20);
        let t: Threshold = r#"ok_share(pay where /status == "PAID") >= 95%"#.parse().unwrap();
        assert_eq!(t.op_where, Some(("/status".into(), serde_json::json!("PAID"))));
        assert_eq!(t.to_string(), r#"ok_share(pay where /status == "PAID") >= 95%"#);
        for bad in [
            "ok_share() >= 95%",
            "ok_share(a b) >= 95%",
            "ok_share(add) < 1s",
            "ok_share(pay where status == \"PAID\") >= 95%",
            "ok_share(pay where /status == PAID) >= 95%",
            "ok_share(pay where /status) >= 95%",
        ] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
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
