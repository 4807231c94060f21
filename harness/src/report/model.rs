//! The report model: one versioned, serde-serialisable description of a run that every
//! renderer (JSON, Markdown, HTML, JUnit) and the baseline comparison read.
//!
//! Field names are snake_case and stable within a major schema version: a new field
//! bumps the minor version and readers ignore fields they do not know; a renamed or
//! removed field bumps the major version, which older readers refuse. Latencies are
//! milliseconds (`_ms`), offsets from the start of the run are whole milliseconds,
//! ratios are fractions in `[0, 1]`.
//!
//! 1.1 added, per scope, the answer rules' counts (`degraded`, `degraded_share`,
//! `availability_including_degraded`, `checks_passed`, `checks_failed`, `checks_share`)
//! and `dropped`; `availability` became strict: degraded answers, failed checks and
//! dropped starts count against it (without answer rules or drops it is what 1.0 wrote).
//!
//! 1.2 added the SLO unit `value` (a service gauge's own unit, for `metric` SLOs, whose
//! `samples` count the scrapes judged); a 1.1 reader does not know it.
//!
//! 1.3 added `run.simulated`: the run was on the simulated cluster (`gauntlet sim`), so
//! its times (`started_at`, `ended_at`, offsets, latencies) are simulated time, not the
//! wall clock's; absent (false) otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The schema version this build writes.
pub const SCHEMA_VERSION: SchemaVersion = SchemaVersion { major: 1, minor: 3 };

/// A `major.minor` schema version; readers accept any minor of a major they know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaVersion {
    /// Changes when a field is renamed, removed or changes meaning.
    pub major: u32,
    /// Changes when a field is added.
    pub minor: u32,
}

impl fmt::Display for SchemaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl FromStr for SchemaVersion {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a schema version like `1.0`");
        let (major, minor) = s.split_once('.').ok_or_else(bad)?;
        Ok(Self { major: major.parse().map_err(|_| bad())?, minor: minor.parse().map_err(|_| bad())? })
    }
}

impl Serialize for SchemaVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SchemaVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// A wall-clock instant, written as an RFC 3339 UTC timestamp with nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub SystemTime);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_nanos(self.0))
    }
}

impl Timestamp {
    /// The timestamp to the second, for people: `2026-11-27T09:00:00Z`.
    pub fn to_seconds(&self) -> String {
        humantime::format_rfc3339_seconds(self.0).to_string()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text)
            .map(Timestamp)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 UTC timestamp: {e}")))
    }
}

/// A whole run: what was run, the verdict, and everything it is based on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The schema version of this document.
    pub schema_version: SchemaVersion,
    /// What was run, when, with which seed.
    pub run: RunInfo,
    /// Passed, or failed with the reasons.
    pub verdict: Verdict,
    /// Each SLO with what was observed.
    #[serde(default)]
    pub slos: Vec<SloResult>,
    /// Every request of the run.
    pub overall: ScopeStats,
    /// Per flow, with its steps.
    #[serde(default)]
    pub flows: Vec<FlowReport>,
    /// The overall 1-second time series, by intended send time.
    #[serde(default)]
    pub time_series: Vec<SecondPoint>,
    /// The overall latency spectrum: latency at increasing percentiles.
    #[serde(default)]
    pub latency_distribution: Vec<DistributionPoint>,
    /// Faults injected, planned and actual.
    #[serde(default)]
    pub faults: Vec<FaultRecord>,
    /// Data invariants checked after the run.
    #[serde(default)]
    pub invariants: Vec<InvariantResult>,
    /// Consumer-provider contract interactions verified.
    #[serde(default)]
    pub contracts: Vec<ContractResult>,
}

/// What was run, when, with which seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The scenario or workload name.
    pub name: String,
    /// The seed every random choice of the run came from.
    pub seed: u64,
    /// When the run started.
    pub started_at: Timestamp,
    /// When the run ended.
    pub ended_at: Timestamp,
    /// Length of the measured phase, milliseconds.
    pub runtime_ms: u64,
    /// The `gauntlet` version that ran it.
    pub gauntlet_version: String,
    /// Flow starts the schedule called for, made, and dropped at the in-flight limit.
    pub flow_starts: FlowStarts,
    /// Why the run stopped early, if it did.
    #[serde(default)]
    pub aborted: Option<String>,
    /// Why the steady-state hypothesis did not hold again after recovery, if it did
    /// not (checked once the load ended and the final reads settled, as Chaos Toolkit does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady_state_after: Option<String>,
    /// Which load model ran, so latencies are labelled for what they are (absent in
    /// reports from before it was recorded: the open model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_model: Option<LoadModel>,
    /// How late the generator sent requests (actual minus intended send), ms: the part
    /// of the latency figures that is the tool's own, not the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lateness_ms: Option<Percentiles>,
    /// Whether the run was on the simulated cluster (`gauntlet sim`): every time in the
    /// report is then simulated time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simulated: bool,
}

/// How the load was offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadModel {
    /// Arrivals on a schedule, whatever the answers: latency runs from each request's
    /// intended send time (coordinated omission corrected).
    Open,
    /// A fixed number of users, each sending when its last answer came: latency runs
    /// from each request's actual send and cannot be corrected.
    Closed,
}

impl LoadModel {
    /// What the latency figure of a run of this model is.
    pub fn latency_label(this: Option<Self>) -> &'static str {
        match this {
            Some(Self::Closed) => "latency (closed loop, from send; not corrected for coordinated omission)",
            _ => "corrected latency (from intended send)",
        }
    }
}

/// Flow starts the schedule called for, made, and dropped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowStarts {
    /// Called for by the schedule before the run ended.
    pub scheduled: u64,
    /// Actually started.
    pub started: u64,
    /// Dropped because the in-flight limit was reached (the offered rate fell short).
    pub dropped: u64,
}

/// The outcome of the run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verdict {
    /// Every gate held.
    Passed,
    /// At least one gate failed.
    Failed {
        /// One line per failed gate.
        reasons: Vec<String>,
    },
}

impl Verdict {
    /// Whether every gate held.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Passed)
    }
}

/// The unit of a threshold's bound and observed value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Milliseconds.
    Ms,
    /// A fraction in `[0, 1]`.
    Ratio,
    /// A service gauge's own unit (events, seconds, ...), as it exposes it.
    Value,
}

/// Whether an SLO held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloStatus {
    /// The threshold held.
    Passed,
    /// The threshold was breached.
    Failed,
    /// Nothing was recorded in its scope and window; counts as failed.
    NoData,
}

/// One SLO with what was observed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// The threshold as written, e.g. `p95 < 200ms`.
    pub name: String,
    /// What it looks at: `overall`, `flow checkout`, `step checkout/pay`.
    pub scope: String,
    /// When: `whole run`, `during 30s..1m30s`, `after 1m30s`.
    pub window: String,
    /// The metric: `p95`, `max`, `mean`, `availability`, `availability_including_degraded`,
    /// `error_rate`, `degraded`, `checks`.
    pub metric: String,
    /// The comparison: `<`, `<=`, `>`, `>=`.
    pub comparison: String,
    /// The bound, in `unit`.
    pub threshold: f64,
    /// The observed value, in `unit`, if anything was recorded.
    pub observed: Option<f64>,
    /// Milliseconds, a ratio, or a gauge's own value.
    pub unit: Unit,
    /// Requests or flows the observation is based on (scrapes, for a `metric` SLO).
    pub samples: u64,
    /// Passed, failed or no data.
    pub status: SloStatus,
}

impl SloResult {
    /// Whether the SLO held.
    pub fn passed(&self) -> bool {
        self.status == SloStatus::Passed
    }
}

/// Latency percentiles of one scope, milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Highest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// What one scope (overall, a flow, a step) recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScopeStats {
    /// Requests (or whole flows) recorded.
    pub count: u64,
    /// `count` per second of the measured phase.
    pub rate: f64,
    /// Those answered in time with a 2xx/3xx and no failed check.
    pub succeeded: u64,
    /// Share of requests and dropped starts that got a good answer: in time, not a
    /// 5xx, not degraded, no failed check.
    pub availability: f64,
    /// As `availability`, with degraded answers counted as good.
    #[serde(default)]
    pub availability_including_degraded: f64,
    /// Share without a 2xx/3xx answer in time, or with a failed check.
    pub error_rate: f64,
    /// Answers that matched one of the workload's `degraded` rules (stale, partial).
    #[serde(default)]
    pub degraded: u64,
    /// `degraded / count`.
    #[serde(default)]
    pub degraded_share: f64,
    /// Checks (requests of steps with `expect`; for a flow, flows with such steps)
    /// that passed.
    #[serde(default)]
    pub checks_passed: u64,
    /// Checks that failed: no answer in time, or a wrong one.
    #[serde(default)]
    pub checks_failed: u64,
    /// `checks_passed / (checks_passed + checks_failed)`; absent when nothing was checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks_share: Option<f64>,
    /// Flow starts dropped at the in-flight limit, each counted as one unavailable
    /// request (overall and in its flow; a step never saw it).
    #[serde(default)]
    pub dropped: u64,
    /// Answers by status class: `1xx` .. `5xx`.
    #[serde(default)]
    pub status_classes: BTreeMap<String, u64>,
    /// Failures by kind: `timeout`, `connect_refused`, `reset`, ..., `http_4xx`, `http_5xx`.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Corrected latency: from the intended send time (coordinated omission corrected).
    pub latency_ms: Percentiles,
    /// Service time: from the actual send.
    pub service_time_ms: Percentiles,
}

/// One flow and its steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    /// The flow's name.
    pub name: String,
    /// Whole flows, from the flow's intended start to its last answer.
    pub stats: ScopeStats,
    /// Its steps, in order.
    #[serde(default)]
    pub steps: Vec<StepReport>,
}

/// One step of a flow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name.
    pub name: String,
    /// Its requests.
    pub stats: ScopeStats,
}

/// One second of the run, by intended send time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the start of the run.
    pub second: u64,
    /// Requests intended in this second (the rate, per second).
    pub requests: u64,
    /// Those without a 2xx/3xx answer in time.
    pub errors: u64,
    /// `errors / requests`, 0 when there were none.
    pub error_rate: f64,
    /// Flow starts dropped at the in-flight limit.
    pub dropped: u64,
    /// Corrected latency, median, milliseconds.
    pub p50_ms: f64,
    /// 95th percentile, milliseconds.
    pub p95_ms: f64,
    /// 99th percentile, milliseconds.
    pub p99_ms: f64,
}

/// Latency at one percentile of the whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DistributionPoint {
    /// The percentile, in `[0, 100]`.
    pub percentile: f64,
    /// Corrected latency, milliseconds.
    pub latency_ms: f64,
    /// Service time, milliseconds.
    pub service_time_ms: f64,
}

/// A fault of the scenario's timeline: what was planned and what happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The fault's name, e.g. `db latency`.
    pub name: String,
    /// What it acted on: an edge `api->db` or a node `api-1`.
    pub target: String,
    /// Planned start, milliseconds from the start of the run.
    pub planned_at_ms: u64,
    /// Planned duration, milliseconds; `None` for the rest of the run.
    pub planned_for_ms: Option<u64>,
    /// When it was actually applied, if it was.
    pub applied_at_ms: Option<u64>,
    /// When it was actually removed, if it was.
    pub removed_at_ms: Option<u64>,
    /// What went wrong applying, removing or rolling it back: a fault that did not
    /// happen as planned fails the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it touched, for people (absent in 1.0 reports and when it never applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    /// How much it touched (bytes, or operations in flight), when measured; 0 is nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touched: Option<u64>,
    /// Whether touching nothing fails the run (`expect_effect`, default true).
    #[serde(default = "yes")]
    pub expect_effect: bool,
}

fn yes() -> bool {
    true
}

impl FaultRecord {
    /// Whether it was measured to touch nothing while it was expected to.
    pub fn did_not_happen(&self) -> bool {
        self.expect_effect && self.touched == Some(0)
    }
}

impl FaultRecord {
    /// A fault planned at `at` for `lasting` (`None`: the rest of the run), not yet applied.
    pub fn planned(
        name: impl Into<String>,
        target: impl Into<String>,
        at: Duration,
        lasting: Option<Duration>,
    ) -> Self {
        Self {
            name: name.into(),
            target: target.into(),
            planned_at_ms: millis(at),
            planned_for_ms: lasting.map(millis),
            applied_at_ms: None,
            removed_at_ms: None,
            error: None,
            effect: None,
            touched: None,
            expect_effect: true,
        }
    }

    /// Records when the fault was actually applied and removed.
    pub fn happened(mut self, applied: Option<Duration>, removed: Option<Duration>) -> Self {
        self.applied_at_ms = applied.map(millis);
        self.removed_at_ms = removed.map(millis);
        self
    }

    /// The window the fault was in force, in milliseconds: the actual times when known,
    /// else the planned ones; the end is `None` when it lasted to the end of the run.
    pub fn window_ms(&self) -> (u64, Option<u64>) {
        let start = self.applied_at_ms.unwrap_or(self.planned_at_ms);
        let end = match (self.applied_at_ms, self.removed_at_ms) {
            (_, Some(removed)) => Some(removed),
            (Some(_), None) => None,
            (None, None) => self.planned_for_ms.map(|d| self.planned_at_ms.saturating_add(d)),
        };
        (start, end)
    }
}

/// Whole milliseconds of `d`, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl InvariantResult {
    /// Whether the checker could not tell (Jepsen's `unknown`): never a pass.
    pub fn is_unknown(&self) -> bool {
        self.validity.as_deref() == Some("unknown")
    }
}

/// One data invariant checked after the run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InvariantResult {
    /// The invariant, e.g. `money is conserved`.
    pub name: String,
    /// Whether it held (only a `valid` verdict is).
    pub valid: bool,
    /// Jepsen's three-valued verdict: `valid`, `invalid` or `unknown` (absent in 1.0 reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validity: Option<String>,
    /// One line for people (absent in 1.0 reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Each clause: its anomaly's name, its rule, what it checked and its counterexamples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clauses: Vec<serde_json::Value>,
    /// What else the checker found out (e.g. how indeterminate operations resolved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The first violation found, in the checker's own shape (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_json")]
    pub first_counterexample: Option<serde_json::Value>,
    /// The worst violation found, in the checker's own shape (absent when none).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present_json")]
    pub worst_counterexample: Option<serde_json::Value>,
}

/// One interaction of a consumer-provider contract, verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractResult {
    /// The consumer, e.g. `api`.
    pub consumer: String,
    /// The provider, e.g. `db`.
    pub provider: String,
    /// The interaction's description.
    pub interaction: String,
    /// Whether the provider honoured it.
    pub passed: bool,
    /// What went wrong, when it failed.
    #[serde(default)]
    pub message: Option<String>,
}

/// A free JSON field that is present, `null` included: absence (via `default`) is the
/// only `None`, so a counterexample that is `null` reads back as itself.
fn present_json<'de, D: Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}
