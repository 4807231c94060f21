//! The scenario file, parsed once into a typed [`Scenario`].
//!
//! ```toml
//! name = "db-latency"
//! description = "Hypothesis: a 300 ms spike on api->db keeps p95 under 1.5 s..."
//! seed = 7
//!
//! [cluster]
//! file = "../services/cluster.toml"   # relative to this file (the default)
//! runtime = "process"                 # or "docker", or "external" (services at their `urls`)
//! replicas = { api = 2 }
//! env = { db = { LOG_LEVEL = "debug" } }
//!
//! [steady_state]                      # checked before any fault; the run aborts if unmet
//! timeout = "10s"
//! [[steady_state.probe]]
//! name = "products are readable"
//! path = "/api/v1/products/1"
//! expect = 200
//!
//! [load]
//! workload = "workload.toml"         # or an inline [load.workload] table
//! schedule = { mode = "constant", rate = 20, duration = "40s" }
//! timeout = "5s"
//!
//! [[fault]]
//! edge = "api->db"           # or node = "api-1" with op = "kill"
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
//! invariants = ["no_lost_acks"]         # by name, from the cluster file's `checks` file;
//! # none unless named or declared here: [[invariant]] and [[final_read]] (see `invariant`).
//!
//! [recovery]
//! duration = "10s"                    # load goes on this long after the last fault
//! settle = "45s"                      # how long the final reads may take to answer and settle
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

mod check;
mod invariant;
mod raw;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cluster::plan::ReplicaOverrides;
use crate::cluster::spec::line_col;
use crate::cluster::{ClockSkew, ClusterSpec, Edge, NodeId, NodeLimit, NodeOp};
use crate::faults::Toxic;
use crate::load::schedule::ArrivalSchedule;
use crate::load::slo::{SloSpec, Window};
use crate::load::workload::{BaseUrl, Workload};

pub use check::parse_share;
use check::Located;
pub use invariant::{FinalRead, Invariant, InvariantCheck};
use raw::RawScenario;

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
    /// A deployment already running at its services' `urls`: nothing is started.
    External,
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
    /// The first part of the schedule that runs but is not measured (set by a capacity
    /// step; zero otherwise).
    pub warmup: Duration,
}

impl LoadPlan {
    /// How long the load lasts, its warm-up included.
    pub fn duration(&self) -> Duration {
        self.schedule.duration()
    }

    /// How long the load is measured: its duration after the warm-up.
    pub fn measured(&self) -> Duration {
        self.duration().saturating_sub(self.warmup)
    }
}

/// Where a fault acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultTarget {
    /// Every slot of an edge, or one provider replica's slot.
    Edge {
        /// `api->db`; `client->web` for the ingress.
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
    /// A resource fault on a node (CPU share, memory limit, full disk), lifted at the end.
    Limit(NodeLimit),
    /// The node's wall clock set to a skew, put back to true time at the end (a jump is
    /// a second clock fault starting when the first ends).
    Clock(ClockSkew),
}

/// One entry of the fault timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// A short label (`f1 api->db latency`).
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
    /// After the load, how long the final reads may take to answer, and the system to
    /// settle where a checker says when it has.
    pub settle: Duration,
}

/// What an SLO's window is tied to. A window tied to faults is stated on their planned
/// times and judged on their actual ones ([`Scenario::slos_as_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAnchor {
    /// The times written (`during = "10s..20s"`, `after = "30s"`, the whole run).
    Fixed,
    /// From the first fault's application to the last one's removal.
    Faults,
    /// From the last fault's removal to the end of the run.
    Recovery,
    /// While fault `i` (by position in the timeline) was in place.
    Fault(usize),
}

/// When a fault was actually in place, from the start of the run; `None` where it was
/// not applied or not removed (the planned time stands in).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ActualTimes {
    /// When it was in place.
    pub applied: Option<Duration>,
    /// When it was gone (for a restart or a kill, when the node was back).
    pub removed: Option<Duration>,
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
    /// The invariants checked after recovery: those `invariants = [...]` names from the
    /// cluster's checks file, then the file's own `[[invariant]]`s; library or external
    /// checkers of the operation history and the final reads. None unless named.
    pub declared: Vec<Invariant>,
    /// The final reads, taken once faults are healed and the load is over (the checks
    /// file's, for the invariants named from it, then the file's own).
    pub final_reads: Vec<FinalRead>,
    /// The recovery phase.
    pub recovery: Recovery,
    /// What each SLO's window is tied to, in the order of [`Scenario::slos`].
    pub slo_anchors: Vec<WindowAnchor>,
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
    /// The most rates the search tries (each run `runs` times), confirmation included.
    pub max_steps: usize,
    /// How often each rate is run; it passes only when every run passes.
    pub runs: usize,
    /// Each run first runs at its rate this long, unmeasured.
    pub warmup: Duration,
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
    /// `runs` not in 1..=10, or a warm-up over an hour.
    Runs,
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
        } else if !(1..=MAX_RUNS).contains(&self.runs) || self.warmup > Duration::from_secs(3600) {
            Some(CapacityProblem::Runs)
        } else {
            None
        }
    }
}

impl Default for CapacityPlan {
    fn default() -> Self {
        Self {
            start_rate: 10.0,
            max_rate: 10_000.0,
            growth: 2.0,
            resolution: 0.05,
            max_steps: 16,
            runs: 3,
            warmup: Duration::from_secs(5),
        }
    }
}

/// The most runs of one rate in a capacity search.
pub const MAX_RUNS: usize = 10;

impl Scenario {
    /// The same scenario at a constant arrival rate (a run of a capacity search): first
    /// `warmup` unmeasured, then its load's duration measured. Faults and SLO windows of
    /// stated times move with the measured part, so `at = "10s"` is still 10 s into it.
    pub fn at_rate(&self, rate: f64, warmup: Duration) -> Result<Self, String> {
        let mut s = self.clone();
        s.load.schedule = ArrivalSchedule::constant(rate, warmup + self.load.measured()).map_err(|e| e.to_string())?;
        s.load.warmup = warmup;
        for f in &mut s.faults {
            f.at += warmup;
            f.until += warmup;
        }
        let anchors = self.slo_anchors.iter().chain(std::iter::repeat(&WindowAnchor::Fixed));
        for (slo, anchor) in s.load.workload.slos.iter_mut().zip(anchors) {
            if *anchor == WindowAnchor::Fixed && slo.window != Window::WHOLE_RUN {
                slo.window.start += warmup;
                slo.window.end = slo.window.end.map(|e| e + warmup);
            }
        }
        Ok(s)
    }

    /// The resource faults of the timeline, by node: what a runtime must be able to hold
    /// (and prepare for) before the cluster starts.
    pub fn limits(&self) -> Vec<(NodeId, NodeLimit)> {
        self.faults
            .iter()
            .filter_map(|f| match (&f.action, &f.target) {
                (FaultAction::Limit(l), FaultTarget::Node(id)) => Some((id.clone(), l.clone())),
                _ => None,
            })
            .collect()
    }

    /// The nodes whose clock a fault moves, each once: what a runtime must prepare
    /// before the cluster starts.
    pub fn clock_nodes(&self) -> Vec<NodeId> {
        let mut nodes: Vec<NodeId> = Vec::new();
        for f in &self.faults {
            if let (FaultAction::Clock(_), FaultTarget::Node(id)) = (&f.action, &f.target) {
                if !nodes.contains(id) {
                    nodes.push(id.clone());
                }
            }
        }
        nodes
    }

    /// The SLOs (also the workload's).
    pub fn slos(&self) -> &[SloSpec] {
        &self.load.workload.slos
    }

    /// The SLOs with each window tied to faults placed on when they were actually in
    /// place: `actual[i]` for fault `i`. A restart ends when it was applied (the node was
    /// back); a fault never applied keeps its planned times.
    pub fn slos_as_run(&self, actual: &[ActualTimes]) -> Vec<SloSpec> {
        let span = |i: usize| {
            let f = &self.faults[i];
            let a = actual.get(i).copied().unwrap_or_default();
            let start = a.applied.unwrap_or(f.at);
            let end = if f.until > f.at { a.removed.unwrap_or(f.until) } else { a.applied.unwrap_or(f.until) };
            (start, end.max(start))
        };
        let spans: Vec<(Duration, Duration)> = (0..self.faults.len()).map(span).collect();
        let first = spans.iter().map(|s| s.0).min().unwrap_or_default();
        let last = spans.iter().map(|s| s.1).max().unwrap_or_default();
        self.slos()
            .iter()
            .zip(self.slo_anchors.iter().chain(std::iter::repeat(&WindowAnchor::Fixed)))
            .map(|(slo, anchor)| {
                let window = match *anchor {
                    WindowAnchor::Fixed => slo.window,
                    WindowAnchor::Faults => Window { start: first, end: Some(last) },
                    WindowAnchor::Recovery => Window { start: last, end: None },
                    WindowAnchor::Fault(i) => {
                        let (start, end) = spans.get(i).copied().unwrap_or((slo.window.start, slo.window.start));
                        Window { start, end: Some(end) }
                    }
                };
                SloSpec { window, ..slo.clone() }
            })
            .collect()
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

/// The JSON Schema of the scenario file (shipped as `scenarios/scenario.schema.json`).
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(RawScenario)).expect("a schema is JSON")
}
