//! The scenario file, parsed once into a typed [`Scenario`].
//!
//! ```toml
//! name = "payments-latency"
//! description = "Hypothesis: a 300 ms spike on orders->payments keeps p95 under 1.5 s..."
//! seed = 7
//!
//! [cluster]
//! file = "../services/cluster.toml"   # relative to this file (the default)
//! runtime = "process"                 # or "docker"
//! replicas = { catalog = 2 }
//! env = { payments = { SHOP_PAYMENTS_DECLINE_OVER = "100000" } }
//!
//! [steady_state]                      # checked before any fault; the run aborts if unmet
//! timeout = "10s"
//! [[steady_state.probe]]
//! name = "products are readable"
//! path = "/api/v1/products/1"
//! expect = 200
//!
//! [load]
//! workload = "workloads/shop.toml"    # or an inline [load.workload] table
//! schedule = { mode = "constant", rate = 20, duration = "40s" }
//! timeout = "5s"
//!
//! [[fault]]
//! edge = "orders->payments"           # or node = "catalog-1" with op = "kill"
//! stream = "downstream"
//! toxic = "latency"
//! attributes = { latency = "300ms", jitter = "50ms" }
//! at = "10s"
//! for = "15s"
//!
//! [[slo]]
//! threshold = "p95 < 1500ms"
//! during = "faults"                   # or "recovery", "f1", "10s..25s"; or after = "30s"
//!
//! invariants = ["no_lost_orders", "orders_terminate", "money_conserved", "stock_conserved"]
//!
//! [recovery]
//! duration = "10s"                    # load goes on this long after the last fault
//! settle = "45s"                      # how long orders may take to end after the load
//!
//! [capacity]                          # only for `gauntlet capacity`
//! start_rate = 25                     # flows/s of the first step
//! max_rate = 3200
//! growth = 2                          # ×2 per passing step until one fails
//! resolution = "5%"                   # then bisect until the gap is this small
//! max_steps = 14                      # runs in all, the confirmation included
//! ```
//!
//! Every mistake is reported as `file:line:column: what is wrong`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::checks::INVARIANTS;
use crate::cluster::plan::{ReplicaOverrides, CLIENT};
use crate::cluster::spec::line_col;
use crate::cluster::{ClusterSpec, Edge, NodeId, NodeOp};
use crate::faults::spec::Action;
use crate::faults::{FaultSpec, Toxic};
use crate::load::schedule::{ArrivalSchedule, ScheduleSpec};
use crate::load::slo::{parse_during, SloScope, SloSpec, Threshold, Window};
use crate::load::workload::{BaseUrl, Workload};

/// The most faults one scenario may have.
pub const MAX_FAULTS: usize = 64;

/// A scenario file that cannot be run, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ScenarioError {
    /// The file at fault (the scenario, or a file it names).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Where the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Child processes on 127.0.0.1.
    Process,
    /// Containers.
    Docker,
}

/// The cluster a scenario runs on.
#[derive(Debug, Clone)]
pub struct ClusterChoice {
    /// The cluster file.
    pub file: PathBuf,
    /// Its parsed spec.
    pub spec: ClusterSpec,
    /// Where it runs (the command line may override it).
    pub runtime: RuntimeChoice,
    /// Replica counts overriding the cluster file's.
    pub replicas: ReplicaOverrides,
    /// Extra environment per service.
    pub env: BTreeMap<String, BTreeMap<String, String>>,
}

/// A request through the ingress that must answer `expect` before faults start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What it shows.
    pub name: String,
    /// Path and query on the ingress.
    pub path: String,
    /// The status it must answer.
    pub expect: u16,
}

/// The steady-state hypothesis: every node ready and every probe answering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteadyState {
    /// How long the probes may take to pass.
    pub timeout: Duration,
    /// The probes.
    pub probes: Vec<Probe>,
}

/// The load of a scenario.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The workload, its SLOs those of the scenario; its base URL is set at run time.
    pub workload: Workload,
    /// When flows start.
    pub schedule: ArrivalSchedule,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Connections of the load client.
    pub connections: usize,
    /// The most flows running at once.
    pub max_in_flight: usize,
}

impl LoadPlan {
    /// How long the load lasts.
    pub fn duration(&self) -> Duration {
        self.schedule.duration()
    }
}

/// Where a fault acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every slot of an edge, or one provider replica's slot.
    Edge {
        /// `orders->payments`; `client->gateway` for the ingress.
        edge: Edge,
        /// Only this provider replica's slot.
        replica: Option<u32>,
    },
    /// One node.
    Node(NodeId),
}

impl fmt::Display for FaultTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edge { edge, replica: None } => write!(f, "{edge}"),
            Self::Edge { edge, replica: Some(r) } => write!(f, "{edge}#{r}"),
            Self::Node(n) => write!(f, "{n}"),
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Toxics added to each slot's proxy, removed when the fault ends.
    Toxics(Vec<Toxic>),
    /// The slots' proxies disabled (connections refused), re-enabled at the end.
    Down,
    /// A node operation; its inverse ends the fault.
    Node(NodeOp),
}

/// One entry of the fault timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// A short label (`f1 orders->payments latency`).
    pub label: String,
    /// Where.
    pub target: FaultTarget,
    /// What.
    pub action: FaultAction,
    /// When it starts, from the start of the load.
    pub at: Duration,
    /// When it ends, from the start of the load; a `restart` is instant.
    pub until: Duration,
    /// Whether the run fails when the fault touched nothing (`expect_effect`, default true).
    pub expect_effect: bool,
}

impl Fault {
    /// What undoes a node operation at the end of the fault, if anything.
    pub fn inverse(op: NodeOp) -> Option<NodeOp> {
        match op {
            NodeOp::Kill | NodeOp::Stop => Some(NodeOp::Restart),
            NodeOp::Pause => Some(NodeOp::Resume),
            NodeOp::Partition => Some(NodeOp::Heal),
            NodeOp::Restart | NodeOp::Resume | NodeOp::Heal => None,
        }
    }
}

/// After the last fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// The load goes on at least this long after the last fault ends.
    pub duration: Duration,
    /// After the load, how long orders may take to reach a terminal state.
    pub settle: Duration,
}

/// A parsed, checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it came from.
    pub file: PathBuf,
    /// Its name.
    pub name: String,
    /// What it tests, with its hypothesis.
    pub description: String,
    /// Seed of every random choice (load and fault proxy).
    pub seed: u64,
    /// The cluster.
    pub cluster: ClusterChoice,
    /// Checked before the faults.
    pub steady_state: SteadyState,
    /// The load.
    pub load: LoadPlan,
    /// The fault timeline, by start time.
    pub faults: Vec<Fault>,
    /// The invariants checked after recovery (names from [`INVARIANTS`]).
    pub invariants: Vec<String>,
    /// The recovery phase.
    pub recovery: Recovery,
    /// How `gauntlet capacity` searches for the highest rate that meets the SLOs.
    pub capacity: Option<CapacityPlan>,
}

/// The `[capacity]` table: how `gauntlet capacity` searches for the highest constant
/// arrival rate at which every SLO (and invariant) of the scenario still holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CapacityPlan {
    /// The first rate tried, flow starts per second.
    pub start_rate: f64,
    /// The highest rate tried.
    pub max_rate: f64,
    /// Each passing rate is multiplied by this until one fails.
    pub growth: f64,
    /// The search stops when the failing rate is within this share above the passing one.
    pub resolution: f64,
    /// The most runs of the search, confirmation included.
    pub max_steps: usize,
}

/// Which bound of a [`CapacityPlan`] is not met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapacityProblem {
    /// Not `0 < start_rate <= max_rate <= MAX_RATE`.
    Rates,
    /// `growth` not in (1, 10].
    Growth,
    /// `max_steps` not in 2..=64.
    Steps,
}

impl CapacityPlan {
    /// The first bound the plan breaks, if any (the file and the flags report it their way).
    pub fn problem(&self) -> Option<CapacityProblem> {
        let max = crate::load::schedule::MAX_RATE;
        if !(self.start_rate > 0.0 && self.start_rate <= self.max_rate && self.max_rate <= max) {
            Some(CapacityProblem::Rates)
        } else if !(self.growth > 1.0 && self.growth <= 10.0) {
            Some(CapacityProblem::Growth)
        } else if !(2..=64).contains(&self.max_steps) {
            Some(CapacityProblem::Steps)
        } else {
            None
        }
    }
}

impl Default for CapacityPlan {
    fn default() -> Self {
        Self { start_rate: 10.0, max_rate: 10_000.0, growth: 2.0, resolution: 0.05, max_steps: 16 }
    }
}

impl Scenario {
    /// The same scenario at a constant arrival rate over its load's duration (a step of
    /// a capacity search).
    pub fn at_rate(&self, rate: f64) -> Result<Self, String> {
        let mut s = self.clone();
        s.load.schedule = ArrivalSchedule::constant(rate, self.load.duration()).map_err(|e| e.to_string())?;
        Ok(s)
    }

    /// The SLOs (also the workload's).
    pub fn slos(&self) -> &[SloSpec] {
        &self.load.workload.slos
    }

    /// When the last fault ends.
    pub fn faults_end(&self) -> Duration {
        self.faults.iter().map(|f| f.until).max().unwrap_or_default()
    }

    /// Sets the seed (the command line's `--seed`) for the load and the faults.
    pub fn reseed(&mut self, seed: u64) {
        self.seed = seed;
        self.load.workload.seed = seed;
    }

    /// Points the load at the ingress.
    pub fn target(&mut self, ingress: &str) -> Result<(), String> {
        self.load.workload.base_url = Some(BaseUrl::parse(ingress)?);
        Ok(())
    }

    /// Reads and parses a scenario file and the files it names.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the scenario file: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses scenario text; `file` names it in errors and anchors relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ScenarioError> {
        let at = |span: Range<usize>, message: String| {
            let (line, column) = line_col(text, span.start);
            ScenarioError { file: file.to_path_buf(), line, column, message }
        };
        let raw: RawScenario = toml::from_str(text).map_err(|e| at(e.span().unwrap_or(0..0), e.message().into()))?;
        let dir = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
        raw.check(&dir, file).map_err(|e| match e {
            Located::Here(span, message) => at(span, message),
            Located::Elsewhere(e) => e,
        })
    }
}

enum Located {
    Here(Range<usize>, String),
    Elsewhere(ScenarioError),
}

impl From<(Range<usize>, String)> for Located {
    fn from((span, message): (Range<usize>, String)) -> Self {
        Self::Here(span, message)
    }
}

type Checked<T> = Result<T, Located>;

fn here<T>(span: Range<usize>, message: impl Into<String>) -> Checked<T> {
    Err(Located::Here(span, message.into()))
}

/// The scenario file as written. Its JSON Schema is [`json_schema`].
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Gauntlet scenario file")]
struct RawScenario {
    /// The scenario's name.
    #[schemars(with = "String")]
    name: Spanned<String>,
    /// What the experiment tests: its hypothesis, in a sentence or two.
    #[schemars(with = "String")]
    description: Spanned<String>,
    /// Seed of every random choice (the load's flow picks, the proxy's toxicity).
    #[serde(default)]
    seed: u64,
    /// The cluster to run on.
    #[serde(default)]
    cluster: RawCluster,
    /// Checked before faults start; the run aborts if it does not hold.
    #[serde(default)]
    steady_state: RawSteadyState,
    /// The load driven during the whole timeline.
    #[schemars(with = "RawLoad")]
    load: Spanned<RawLoad>,
    /// The fault timeline.
    #[serde(default)]
    #[schemars(with = "Vec<RawFault>")]
    fault: Vec<Spanned<RawFault>>,
    /// Service-level objectives, each over a window.
    #[serde(default)]
    #[schemars(with = "Vec<RawSlo>")]
    slo: Vec<Spanned<RawSlo>>,
    /// The invariants to check after recovery (default: all).
    #[schemars(with = "Option<Vec<String>>")]
    invariants: Option<Vec<Spanned<String>>>,
    /// The recovery phase.
    #[serde(default)]
    recovery: RawRecovery,
    /// For `gauntlet capacity`: the search for the highest rate that meets the SLOs.
    #[schemars(with = "Option<RawCapacity>")]
    capacity: Option<Spanned<RawCapacity>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCapacity {
    /// The first rate tried, flow starts per second (default 10).
    start_rate: Option<f64>,
    /// The highest rate tried (default 10000).
    max_rate: Option<f64>,
    /// Each passing rate is multiplied by this until one fails (default 2).
    growth: Option<f64>,
    /// Stop when the lowest failing rate is within this share above the highest
    /// passing one: "5%" (the default).
    #[schemars(with = "Option<String>")]
    resolution: Option<Spanned<String>>,
    /// The most runs of the search, the confirmation run included (default 16).
    max_steps: Option<usize>,
}

impl RawCapacity {
    fn check(self, span: Range<usize>) -> Checked<CapacityPlan> {
        let d = CapacityPlan::default();
        let plan = CapacityPlan {
            start_rate: self.start_rate.unwrap_or(d.start_rate),
            max_rate: self.max_rate.unwrap_or(d.max_rate),
            growth: self.growth.unwrap_or(d.growth),
            resolution: match &self.resolution {
                None => d.resolution,
                Some(r) => parse_share(r.get_ref())
                    .filter(|v| *v > 0.0 && *v < 1.0)
                    .ok_or_else(|| Located::Here(r.span(), format!("`{}` is not a share like \"5%\"", r.get_ref())))?,
            },
            max_steps: self.max_steps.unwrap_or(d.max_steps),
        };
        match plan.problem() {
            None => {}
            Some(CapacityProblem::Rates) => {
                let max = crate::load::schedule::MAX_RATE;
                return here(span, format!("capacity: need 0 < start_rate <= max_rate <= {max}"));
            }
            Some(CapacityProblem::Growth) => return here(span, "capacity: `growth` must be above 1 and at most 10"),
            Some(CapacityProblem::Steps) => return here(span, "capacity: `max_steps` must be from 2 to 64"),
        }
        Ok(plan)
    }
}

/// "5%" or "0.05" as 0.05.
pub fn parse_share(s: &str) -> Option<f64> {
    let s = s.trim();
    match s.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok().map(|v| v / 100.0),
        None => s.parse().ok(),
    }
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    /// The cluster file, relative to the scenario (default ../services/cluster.toml).
    #[schemars(with = "Option<String>")]
    file: Option<Spanned<String>>,
    /// "process" (default) or "docker".
    #[schemars(with = "Option<String>")]
    runtime: Option<Spanned<String>>,
    /// Replica counts overriding the cluster file's, e.g. { catalog = 2 }.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, u32>")]
    replicas: BTreeMap<String, Spanned<u32>>,
    /// Extra environment per service, e.g. { payments = { SHOP_PAYMENTS_DECLINE_OVER = "5000" } }.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, BTreeMap<String, String>>")]
    env: BTreeMap<String, Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSteadyState {
    /// How long the probes may take to pass (default 15s).
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
    /// Requests through the ingress that must answer as expected.
    #[serde(default)]
    probe: Vec<RawProbe>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    /// What it shows.
    name: String,
    /// Path on the ingress, e.g. /api/v1/products/1.
    #[schemars(with = "String")]
    path: Spanned<String>,
    /// The status it must answer (default 200).
    #[serde(default = "ok_status")]
    #[schemars(with = "u16")]
    expect: Spanned<u16>,
}

fn ok_status() -> Spanned<u16> {
    Spanned::new(0..0, 200)
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    /// A workload file (relative to the scenario), or an inline workload table: flows of
    /// steps, `degraded` rules, per-step `expect`, templates with `{{var}}` and
    /// `{{uniform 1 100}}` (see harness/src/load/workload.rs).
    #[schemars(with = "serde_json::Value")]
    workload: Spanned<toml::Value>,
    /// The arrival schedule; default the workload's.
    #[schemars(with = "Option<serde_json::Value>")]
    schedule: Option<Spanned<ScheduleSpec>>,
    /// Per-request timeout (default 5s).
    #[schemars(with = "Option<String>")]
    timeout: Option<Spanned<String>>,
    /// Connections of the load client (default 64).
    #[serde(default)]
    connections: Option<usize>,
    /// The most flows running at once (default 1024).
    #[serde(default)]
    max_in_flight: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawFault {
    /// A label for reports.
    name: Option<String>,
    /// An edge "consumer->provider" ("client->gateway" for the ingress).
    #[schemars(with = "Option<String>")]
    edge: Option<Spanned<String>>,
    /// Only the slot of this provider replica (default: every replica).
    replica: Option<u32>,
    /// "upstream" (requests), "downstream" (responses, the default) or "both".
    stream: Option<String>,
    /// A toxic: latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data,
    /// http_abort, http_delay; or "down" (the edge refuses connections).
    toxic: Option<String>,
    /// The toxic's attributes; times as durations ("100ms").
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    attributes: Option<toml::Table>,
    /// Share of connections the toxic acts on, 0..1 (default 1).
    toxicity: Option<f64>,
    /// A node, e.g. "catalog-1".
    #[schemars(with = "Option<String>")]
    node: Option<Spanned<String>>,
    /// kill, stop, pause, restart or partition.
    #[schemars(with = "Option<String>")]
    op: Option<Spanned<String>>,
    /// When it starts, from the start of the load ("10s").
    #[schemars(with = "String")]
    at: Spanned<String>,
    /// How long it lasts ("15s"); a restart takes none.
    #[serde(rename = "for")]
    #[schemars(rename = "for", with = "Option<String>")]
    duration: Option<Spanned<String>>,
    /// Whether a fault that touched nothing (no traffic through its proxies while it was
    /// in place; no order in flight when it struck the orders service) fails the run with
    /// "the experiment did not happen" (default true).
    expect_effect: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawSlo {
    /// "p95 < 500ms", "availability >= 99%" (degraded answers, failed checks and dropped
    /// starts count against it), "availability_including_degraded >= 99%",
    /// "error_rate < 1%", "degraded <= 5%" (share of answers matching the workload's
    /// `degraded` rules), "checks >= 99%" (share of `expect` checks passed)...
    #[schemars(with = "String")]
    threshold: Spanned<String>,
    /// Only this flow of the workload.
    flow: Option<String>,
    /// Only this step of `flow`.
    step: Option<String>,
    /// "faults" (first fault start to last fault end), "recovery" (after the last
    /// fault), one fault "f2" (numbered in file order), or a range "10s..25s".
    #[schemars(with = "Option<String>")]
    during: Option<Spanned<String>>,
    /// From this offset to the end ("30s").
    #[schemars(with = "Option<String>")]
    after: Option<Spanned<String>>,
    /// Abort the run when breached in every second for this long.
    #[schemars(with = "Option<String>")]
    abort_after: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawRecovery {
    /// The load goes on at least this long after the last fault (default 5s).
    #[schemars(with = "Option<String>")]
    duration: Option<Spanned<String>>,
    /// After the load, how long orders may take to end (default 45s).
    #[schemars(with = "Option<String>")]
    settle: Option<Spanned<String>>,
}

fn duration(s: &Spanned<String>) -> Checked<Duration> {
    humantime::parse_duration(s.get_ref().trim())
        .map_err(|e| Located::Here(s.span(), format!("`{}` is not a duration like 250ms or 1m30s ({e})", s.get_ref())))
}

fn opt_duration(s: &Option<Spanned<String>>, default: Duration) -> Checked<Duration> {
    s.as_ref().map_or(Ok(default), duration)
}

impl RawScenario {
    fn check(self, dir: &Path, file: &Path) -> Checked<Scenario> {
        let name = self.name.get_ref().trim().to_string();
        if name.is_empty() {
            return here(self.name.span(), "`name` must not be empty");
        }
        let description = self.description.get_ref().trim().to_string();
        if description.is_empty() {
            return here(self.description.span(), "`description` must state the hypothesis the run tests");
        }
        let cluster = self.cluster.check(dir)?;
        let steady_state = SteadyState {
            timeout: opt_duration(&self.steady_state.timeout, Duration::from_secs(15))?,
            probes: self
                .steady_state
                .probe
                .into_iter()
                .map(|p| {
                    if !p.path.get_ref().starts_with('/') {
                        return here(p.path.span(), "a probe's path starts with `/`, e.g. /api/v1/products/1");
                    }
                    if !(100..600).contains(p.expect.get_ref()) {
                        return here(p.expect.span(), "`expect` is an HTTP status, 100-599");
                    }
                    Ok(Probe { name: p.name, path: p.path.into_inner(), expect: p.expect.into_inner() })
                })
                .collect::<Checked<_>>()?,
        };
        let load_span = self.load.span();
        let mut load = self.load.into_inner().check(dir, file, self.seed)?;
        let faults = check_faults(self.fault, &cluster)?;
        let recovery = Recovery {
            duration: opt_duration(&self.recovery.duration, Duration::from_secs(5))?,
            settle: opt_duration(&self.recovery.settle, Duration::from_secs(45))?,
        };
        let faults_end = faults.iter().map(|f| f.until).max().unwrap_or_default();
        let faults_start = faults.iter().map(|f| f.at).min().unwrap_or_default();
        if faults_end + recovery.duration > load.duration() {
            return here(
                load_span,
                format!(
                    "the load lasts {} but the last fault ends at {} and recovery needs {} more: lengthen the schedule",
                    humantime::format_duration(load.duration()),
                    humantime::format_duration(faults_end),
                    humantime::format_duration(recovery.duration)
                ),
            );
        }
        let mut slos = Vec::new();
        for s in self.slo {
            slos.push(check_slo(s, &faults, faults_start, faults_end, &load.workload)?);
        }
        load.workload.slos.extend(slos);
        let invariants = match self.invariants {
            None => INVARIANTS.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                let mut seen = Vec::new();
                for i in list {
                    if !INVARIANTS.contains(&i.get_ref().as_str()) {
                        return here(
                            i.span(),
                            format!("unknown invariant `{}`; use {}", i.get_ref(), INVARIANTS.join(", ")),
                        );
                    }
                    if !seen.contains(i.get_ref()) {
                        seen.push(i.into_inner());
                    }
                }
                seen
            }
        };
        Ok(Scenario {
            file: file.to_path_buf(),
            name,
            description,
            seed: self.seed,
            cluster,
            steady_state,
            load,
            faults,
            invariants,
            recovery,
            capacity: self
                .capacity
                .map(|c| {
                    let span = c.span();
                    c.into_inner().check(span)
                })
                .transpose()?,
        })
    }
}

impl RawCluster {
    fn check(self, dir: &Path) -> Checked<ClusterChoice> {
        let file = match &self.file {
            Some(f) => dir.join(f.get_ref()),
            None => dir.join("../services/cluster.toml"),
        };
        let spec = ClusterSpec::load(&file).map_err(|e| match &self.file {
            // A file that cannot be read is the scenario's mistake; one that does not
            // parse is the cluster file's, reported where it is.
            Some(f) if !file.exists() => {
                Located::Here(f.span(), format!("cluster file {} does not exist", file.display()))
            }
            _ => Located::Elsewhere(ScenarioError {
                file: e.file.clone(),
                line: e.line,
                column: e.column,
                message: e.message.clone(),
            }),
        })?;
        let runtime = match self.runtime.as_ref().map(|r| (r.span(), r.get_ref().as_str())) {
            None | Some((_, "process")) => RuntimeChoice::Process,
            Some((_, "docker")) => RuntimeChoice::Docker,
            Some((span, other)) => return here(span, format!("runtime `{other}` is not process or docker")),
        };
        let mut replicas = ReplicaOverrides::new();
        for (svc, n) in self.replicas {
            if spec.service(&svc).is_none() {
                return here(n.span(), format!("replicas: no service `{svc}` in {}", file.display()));
            }
            if !(1..=16).contains(n.get_ref()) {
                return here(n.span(), "replicas must be from 1 to 16");
            }
            replicas.insert(svc, n.into_inner());
        }
        let mut env = BTreeMap::new();
        for (svc, vars) in self.env {
            if spec.service(&svc).is_none() {
                return here(vars.span(), format!("env: no service `{svc}` in {}", file.display()));
            }
            env.insert(svc, vars.into_inner());
        }
        Ok(ClusterChoice { file, spec, runtime, replicas, env })
    }
}

fn replicas_of(choice: &ClusterChoice, service: &str) -> u32 {
    choice.replicas.get(service).copied().or_else(|| choice.spec.service(service).map(|s| s.replicas)).unwrap_or(0)
}

impl RawLoad {
    fn check(self, dir: &Path, file: &Path, seed: u64) -> Checked<LoadPlan> {
        let span = self.workload.span();
        let mut workload = match self.workload.into_inner() {
            toml::Value::String(path) => {
                let path = dir.join(path);
                Workload::load(&path).map_err(|e| workload_error(e, &path))?
            }
            toml::Value::Table(table) => {
                let text = toml::to_string(&table).map_err(|e| Located::Here(span.clone(), e.to_string()))?;
                let origin = format!("{} [load.workload]", file.display());
                Workload::parse(&text, &origin)
                    .map_err(|e| Located::Here(span.clone(), format!("the inline workload: {e}")))?
            }
            other => {
                return here(span, format!("`workload` is a file name or a table, not a {}", other.type_str()));
            }
        };
        workload.seed = seed;
        let schedule = match (&self.schedule, &workload.schedule) {
            (Some(s), _) => s.get_ref().build().map_err(|e| Located::Here(s.span(), format!("schedule: {e}")))?,
            (None, Some(s)) => {
                s.build().map_err(|e| Located::Here(span.clone(), format!("the workload's schedule: {e}")))?
            }
            (None, None) => {
                return here(
                    span,
                    "no schedule: give [load] schedule = { mode = \"constant\", rate = 20, duration = \"40s\" }",
                )
            }
        };
        let timeout = opt_duration(&self.timeout, Duration::from_secs(5))?;
        if timeout.is_zero() {
            return here(self.timeout.map_or(0..0, |t| t.span()), "`timeout` must be positive");
        }
        let connections = self.connections.unwrap_or(64).clamp(1, 10_000);
        let max_in_flight = self.max_in_flight.unwrap_or(1024).clamp(1, 100_000);
        Ok(LoadPlan { workload, schedule, timeout, connections, max_in_flight })
    }
}

fn workload_error(e: crate::load::workload::WorkloadError, path: &Path) -> Located {
    use crate::load::workload::WorkloadError;
    match e {
        WorkloadError::Read { source, .. } => Located::Elsewhere(ScenarioError {
            file: path.to_path_buf(),
            line: 1,
            column: 1,
            message: format!("cannot read the workload file: {source}"),
        }),
        WorkloadError::Invalid { line, column, message, .. } => {
            Located::Elsewhere(ScenarioError { file: path.to_path_buf(), line, column, message })
        }
    }
}

fn check_faults(raw: Vec<Spanned<RawFault>>, cluster: &ClusterChoice) -> Checked<Vec<Fault>> {
    if raw.len() > MAX_FAULTS {
        return here(raw[MAX_FAULTS].span(), format!("a scenario may have at most {MAX_FAULTS} faults"));
    }
    let mut faults = Vec::with_capacity(raw.len());
    for (i, spanned) in raw.into_iter().enumerate() {
        let span = spanned.span();
        let f = spanned.into_inner();
        let at = duration(&f.at)?;
        let length = f.duration.as_ref().map(duration).transpose()?;
        let n = i + 1;
        let fault = match (&f.edge, &f.node) {
            (Some(_), Some(node)) => return here(node.span(), "give either `edge` or `node`, not both"),
            (None, None) => return here(span, "a fault needs `edge = \"orders->payments\"` or `node = \"catalog-1\"`"),
            (Some(edge), None) => edge_fault(n, &f, edge, at, length, cluster)?,
            (None, Some(node)) => node_fault(n, &f, node, at, length, cluster)?,
        };
        let label = match &f.name {
            Some(name) => format!("f{n} {name}"),
            None => fault.label,
        };
        faults.push(Fault { label, expect_effect: f.expect_effect.unwrap_or(true), ..fault });
    }
    for (i, a) in faults.iter().enumerate() {
        for b in &faults[i + 1..] {
            let overlap = a.at < b.until.max(b.at + Duration::from_millis(1))
                && b.at < a.until.max(a.at + Duration::from_millis(1));
            let node_clash = matches!((&a.target, &b.target), (FaultTarget::Node(x), FaultTarget::Node(y)) if x == y);
            if overlap && node_clash {
                return Err(Located::Here(
                    0..0,
                    format!("faults `{}` and `{}` act on the same node at the same time", a.label, b.label),
                ));
            }
        }
    }
    faults.sort_by_key(|f| f.at);
    Ok(faults)
}

fn edge_fault(
    n: usize,
    f: &RawFault,
    edge: &Spanned<String>,
    at: Duration,
    length: Option<Duration>,
    cluster: &ClusterChoice,
) -> Checked<Fault> {
    if let Some(op) = &f.op {
        return here(op.span(), "`op` is for node faults; an edge fault takes `toxic`");
    }
    let Some((from, to)) = edge.get_ref().split_once("->") else {
        return here(edge.span(), "an edge reads consumer->provider, e.g. orders->payments");
    };
    let parsed = Edge { from: from.trim().to_string(), to: to.trim().to_string() };
    let known = cluster.spec.edges.contains(&parsed) || (parsed.from == CLIENT && parsed.to == cluster.spec.ingress);
    if !known {
        let mut all: Vec<String> = vec![format!("{CLIENT}->{}", cluster.spec.ingress)];
        all.extend(cluster.spec.edges.iter().map(|e| e.to_string()));
        return here(
            edge.span(),
            format!("no edge `{}` in the cluster; its edges are {}", edge.get_ref(), all.join(", ")),
        );
    }
    if let Some(r) = f.replica {
        if r >= replicas_of(cluster, &parsed.to) {
            return here(edge.span(), format!("{} has no replica {r}", parsed.to));
        }
    }
    let Some(length) = length else {
        return here(edge.span(), "an edge fault needs `for`, e.g. for = \"15s\"");
    };
    let mut table = toml::Table::new();
    table.insert("edge".into(), edge.get_ref().clone().into());
    table.insert("toxic".into(), f.toxic.clone().unwrap_or_default().into());
    if let Some(s) = &f.stream {
        table.insert("direction".into(), s.clone().into());
    }
    if let Some(a) = &f.attributes {
        table.insert("attributes".into(), toml::Value::Table(a.clone()));
    }
    if let Some(t) = f.toxicity {
        table.insert("toxicity".into(), t.into());
    }
    if f.toxic.is_none() {
        return here(edge.span(), "an edge fault needs `toxic`, e.g. toxic = \"latency\" (or \"down\")");
    }
    let spec = FaultSpec::from_toml(&toml::Value::Table(table)).map_err(|e| Located::Here(edge.span(), e.reason))?;
    let prefix = format!("gauntlet_f{n}");
    let (action, what) = match &spec.action {
        Action::Toxic(kind) => (FaultAction::Toxics(spec.toxics(&prefix)), kind.type_name()),
        Action::Down => (FaultAction::Down, "down"),
        other => return here(edge.span(), format!("`{other:?}` acts on a node; use node = ... and op = ...")),
    };
    let target = FaultTarget::Edge { edge: parsed, replica: f.replica };
    Ok(Fault { label: format!("f{n} {target} {what}"), target, action, at, until: at + length, expect_effect: true })
}

fn node_fault(
    n: usize,
    f: &RawFault,
    node: &Spanned<String>,
    at: Duration,
    length: Option<Duration>,
    cluster: &ClusterChoice,
) -> Checked<Fault> {
    if f.toxic.is_some() || f.attributes.is_some() || f.stream.is_some() {
        return here(node.span(), "a node fault takes `op`, not `toxic`, `attributes` or `stream`");
    }
    let Some(id) = NodeId::parse(node.get_ref()) else {
        return here(node.span(), "a node reads service-replica, e.g. catalog-1");
    };
    let count = replicas_of(cluster, &id.service);
    if count == 0 {
        return here(node.span(), format!("no service `{}` in the cluster", id.service));
    }
    if id.replica >= count {
        return here(
            node.span(),
            format!("{} has replicas 0..{} (raise [cluster] replicas to use {id})", id.service, count - 1),
        );
    }
    let Some(op_text) = &f.op else {
        return here(node.span(), "a node fault needs `op`: kill, stop, pause, restart or partition");
    };
    let op: NodeOp = op_text.get_ref().parse().map_err(|e: String| Located::Here(op_text.span(), e))?;
    let until = match (op, length) {
        (NodeOp::Resume | NodeOp::Heal, _) => {
            return here(op_text.span(), "resume and heal end faults by themselves; use pause or partition with `for`");
        }
        (NodeOp::Restart, None) => at,
        (NodeOp::Restart, Some(_)) => return here(op_text.span(), "a restart is instant: drop `for`"),
        (_, Some(d)) => at + d,
        (_, None) => {
            return here(op_text.span(), format!("`{op}` needs `for` (the node is brought back when it ends)"));
        }
    };
    let target = FaultTarget::Node(id);
    Ok(Fault {
        label: format!("f{n} {target} {op}"),
        target,
        action: FaultAction::Node(op),
        at,
        until,
        expect_effect: true,
    })
}

fn check_slo(
    raw: Spanned<RawSlo>,
    faults: &[Fault],
    faults_start: Duration,
    faults_end: Duration,
    workload: &Workload,
) -> Checked<SloSpec> {
    let span = raw.span();
    let s = raw.into_inner();
    let threshold: Threshold = s
        .threshold
        .get_ref()
        .parse()
        .map_err(|e: crate::load::slo::ThresholdError| Located::Here(s.threshold.span(), e.to_string()))?;
    let scope = match (s.flow, s.step) {
        (None, None) => SloScope::Overall,
        (Some(flow), step) => {
            let Some(f) = workload.flows.iter().find(|f| f.name == flow) else {
                let names: BTreeSet<&str> = workload.flows.iter().map(|f| f.name.as_str()).collect();
                return here(span, format!("no flow `{flow}` in the workload; its flows: {names:?}"));
            };
            match step {
                None => SloScope::Flow(flow),
                Some(step) if f.steps.iter().any(|s| s.name == step) => SloScope::Step { flow, step },
                Some(step) => return here(span, format!("flow `{flow}` has no step `{step}`")),
            }
        }
        (None, Some(_)) => return here(span, "`step` needs its `flow`"),
    };
    let window = match (&s.during, &s.after) {
        (None, None) => Window::WHOLE_RUN,
        (Some(d), None) => match d.get_ref().as_str() {
            "faults" if faults_end > faults_start => Window { start: faults_start, end: Some(faults_end) },
            "faults" => return here(d.span(), "during = \"faults\" needs a fault that lasts"),
            "recovery" => Window { start: faults_end, end: None },
            // One fault by its number in the file: `f2`.
            name if name.starts_with('f') && name[1..].parse::<usize>().is_ok() => {
                let Some(f) = faults.iter().find(|f| f.label.split(' ').next() == Some(name)) else {
                    return here(d.span(), format!("no fault `{name}`; faults are numbered f1, f2... in file order"));
                };
                if f.until <= f.at {
                    return here(d.span(), format!("fault `{name}` is instant; it has no window"));
                }
                Window { start: f.at, end: Some(f.until) }
            }
            range => parse_during(range).map_err(|e| Located::Here(d.span(), e))?,
        },
        (None, Some(a)) => Window { start: duration(a)?, end: None },
        (Some(d), Some(_)) => return here(d.span(), "give `during` or `after`, not both"),
    };
    let abort_after = s.abort_after.as_ref().map(duration).transpose()?;
    Ok(SloSpec { threshold, scope, window, abort_after })
}

/// The JSON Schema of the scenario file (shipped as `scenarios/scenario.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawScenario)).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("scenarios")
    }

    const BASE: &str = r#"
name = "t"
description = "Hypothesis: it holds."
seed = 3
[cluster]
replicas = { catalog = 2 }
[load]
schedule = { mode = "constant", rate = 5, duration = "30s" }
[load.workload]
[[load.workload.flow]]
name = "browse"
[[load.workload.flow.step]]
path = "/api/v1/products/1"
"#;

    fn parse(extra: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(&format!("{BASE}{extra}"), &shop_dir().join("t.toml"))
    }

    #[test]
    fn a_full_timeline_parses() {
        let s = parse(
            r#"
[[fault]]
edge = "orders->payments"
toxic = "latency"
attributes = { latency = "300ms" }
at = "5s"
for = "10s"
[[fault]]
node = "catalog-1"
op = "kill"
at = "2s"
for = "3s"
[[slo]]
threshold = "p95 < 1s"
during = "faults"
[[slo]]
threshold = "availability >= 99%"
during = "recovery"
[[slo]]
threshold = "p99 < 2s"
during = "f1"
"#,
        )
        .unwrap();
        assert_eq!(s.slos()[2].window, Window { start: Duration::from_secs(5), end: Some(Duration::from_secs(15)) });
        assert_eq!(s.faults.len(), 2);
        assert_eq!(s.faults[0].action, FaultAction::Node(NodeOp::Kill), "sorted by start");
        assert_eq!(s.faults_end(), Duration::from_secs(15));
        assert_eq!(s.slos()[0].window, Window { start: Duration::from_secs(2), end: Some(Duration::from_secs(15)) });
        assert_eq!(s.slos()[1].window.start, Duration::from_secs(15));
        assert_eq!(s.invariants.len(), 4);
        assert_eq!(replicas_of(&s.cluster, "catalog"), 2);
        let FaultAction::Toxics(t) = &s.faults[1].action else { panic!() };
        assert_eq!(t[0].name, "gauntlet_f1_latency_downstream");
    }

    #[test]
    fn mistakes_point_at_their_place() {
        let cases = [
            ("[[fault]]\nedge = \"orders->nowhere\"\ntoxic = \"latency\"\nat = \"1s\"\nfor = \"1s\"\n", 15, "no edge"),
            ("[[fault]]\nnode = \"catalog-2\"\nop = \"kill\"\nat = \"1s\"\nfor = \"1s\"\n", 15, "replicas 0..1"),
            (
                "[[fault]]\nnode = \"catalog-0\"\nop = \"explode\"\nat = \"1s\"\nfor = \"1s\"\n",
                16,
                "unknown node operation",
            ),
            ("[[fault]]\nnode = \"catalog-0\"\nop = \"kill\"\nat = \"soon\"\nfor = \"1s\"\n", 17, "not a duration"),
            ("[[slo]]\nthreshold = \"p95 < lots\"\n", 15, "not a duration"),
            ("invariants = [\"fast\"]\n", 17, "unknown invariant"),
        ];
        for (extra, line, what) in cases {
            // Top-level keys must come before the tables of BASE.
            let text =
                if extra.starts_with("invariants") { format!("{extra}{BASE}") } else { format!("{BASE}{extra}") };
            let e = Scenario::parse(&text, &shop_dir().join("t.toml")).unwrap_err();
            let line = if extra.starts_with("invariants") { 1 } else { line };
            assert_eq!(e.line, line, "{e}");
            assert!(e.message.contains(what), "{e}");
        }
    }

    #[test]
    fn faults_must_end_before_the_recovery_phase() {
        let e = parse("[[fault]]\nnode = \"catalog-0\"\nop = \"pause\"\nat = \"20s\"\nfor = \"8s\"\n").unwrap_err();
        assert!(e.message.contains("lengthen the schedule"), "{e}");
    }
}
