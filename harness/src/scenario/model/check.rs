//! From the file as written to the typed [`Scenario`]: every rule a scenario must meet,
//! each refusal with its span so the error names file:line:column.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::cluster::clock::{self, ClockSkew};
use crate::cluster::limits::Direction;
use crate::cluster::limits::{parse_bytes, Bytes, DEFAULT_DISK_SIZE, MAX_BYTES};
use crate::cluster::plan::{ReplicaOverrides, CLIENT};
use crate::cluster::{ClusterSpec, Edge, NodeId, NodeLimit, NodeOp};
use crate::faults::spec::{EdgeAction, EdgeFault};
use crate::load::slo::{parse_during, SloScope, SloSpec, Threshold, Window};
use crate::load::workload::Workload;

use super::raw::*;
use super::{
    CapacityPlan, CapacityProblem, ClusterChoice, Fault, FaultAction, FaultTarget, LoadPlan, Probe, Recovery,
    RuntimeChoice, Scenario, ScenarioError, SteadyState, WindowAnchor, MAX_FAULTS,
};

pub(crate) enum Located {
    Here(Range<usize>, String),
    Elsewhere(ScenarioError),
}

impl From<(Range<usize>, String)> for Located {
    fn from((span, message): (Range<usize>, String)) -> Self {
        Self::Here(span, message)
    }
}

pub(crate) type Checked<T> = Result<T, Located>;

pub(crate) fn here<T>(span: Range<usize>, message: impl Into<String>) -> Checked<T> {
    Err(Located::Here(span, message.into()))
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
            runs: self.runs_per_rate.unwrap_or(d.runs),
            warmup: opt_duration(&self.warmup, d.warmup)?,
        };
        match plan.problem() {
            None => {}
            Some(CapacityProblem::Rates) => {
                let max = crate::load::schedule::MAX_RATE;
                return here(span, format!("capacity: need 0 < start_rate <= max_rate <= {max}"));
            }
            Some(CapacityProblem::Growth) => return here(span, "capacity: `growth` must be above 1 and at most 10"),
            Some(CapacityProblem::Steps) => return here(span, "capacity: `max_steps` must be from 2 to 64"),
            Some(CapacityProblem::Runs) => {
                return here(span, "capacity: `runs_per_rate` must be from 1 to 10 and `warmup` at most 1h")
            }
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

fn duration(s: &Spanned<String>) -> Checked<Duration> {
    humantime::parse_duration(s.get_ref().trim())
        .map_err(|e| Located::Here(s.span(), format!("`{}` is not a duration like 250ms or 1m30s ({e})", s.get_ref())))
}

fn opt_duration(s: &Option<Spanned<String>>, default: Duration) -> Checked<Duration> {
    s.as_ref().map_or(Ok(default), duration)
}

impl RawScenario {
    pub(super) fn check(self, dir: &Path, file: &Path) -> Checked<Scenario> {
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
        // The workload's own SLOs keep their stated windows; the scenario's may be tied
        // to the faults, and are placed on their actual times after the run.
        let mut slo_anchors = vec![WindowAnchor::Fixed; load.workload.slos.len()];
        for s in self.slo {
            let (slo, anchor) = check_slo(s, &faults, faults_start, faults_end, &load.workload)?;
            load.workload.slos.push(slo);
            slo_anchors.push(anchor);
        }
        let (mut declared, mut final_reads) =
            super::invariant::check_declared(self.invariant, self.final_read, &load.workload, &cluster.spec, dir)?;
        // Invariants named from the cluster's checks file come first, with their reads.
        // A file that declares no invariant runs none (and its verdict says so).
        let (named, reads) =
            super::invariant::named_invariants(self.invariants.unwrap_or_default(), &load.workload, &cluster.spec)?;
        for n in &named {
            if declared.iter().any(|d| d.name == n.name) {
                return here(
                    0..0,
                    format!("invariant `{}` is both named in `invariants` and declared: rename one", n.name),
                );
            }
        }
        declared.splice(0..0, named);
        final_reads.splice(0..0, reads);
        for slo in &load.workload.slos {
            if let Some(c) = &slo.threshold.confirm {
                if !final_reads.iter().any(|r| r.f == c.read) {
                    let known: Vec<&str> = final_reads.iter().map(|r| r.f.as_str()).collect();
                    return here(
                        0..0,
                        format!(
                            "`{}`: its `confirm` reads `{}`, which no [[final_read]] takes (taken: {})",
                            slo.threshold,
                            c.read,
                            if known.is_empty() { "none".to_string() } else { known.join(", ") }
                        ),
                    );
                }
            }
        }
        Ok(Scenario {
            file: file.to_path_buf(),
            name,
            description,
            seed: self.seed,
            cluster,
            steady_state,
            load,
            faults,
            declared,
            final_reads,
            recovery,
            slo_anchors,
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
    fn check(mut self, dir: &Path) -> Checked<ClusterChoice> {
        if let Some(compose) = self.compose.take() {
            return self.check_compose(&compose, dir);
        }
        if let Some(e) = &self.edges {
            return here(
                e.span(),
                "`edges` here are for a Compose file (`compose = \"FILE\"`); a cluster file names its own",
            );
        }
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
            Some((_, "external")) => RuntimeChoice::External,
            Some((span, other)) => return here(span, format!("runtime `{other}` is not process, docker or external")),
        };
        self.choose(file, spec, runtime)
    }

    /// `[cluster] compose = "FILE"`: the Compose file's services, on the docker runtime.
    fn check_compose(mut self, compose: &Spanned<String>, dir: &Path) -> Checked<ClusterChoice> {
        if let Some(f) = &self.file {
            return here(f.span(), "give `file` (a cluster file) or `compose` (a Compose file), not both");
        }
        if let Some(r) = self.runtime.as_ref().filter(|r| r.get_ref() != "docker") {
            return here(r.span(), "a Compose file's services run as containers: drop `runtime` or make it \"docker\"");
        }
        let file = dir.join(compose.get_ref());
        if !file.exists() {
            return here(compose.span(), format!("Compose file {} does not exist", file.display()));
        }
        let edges = self.edges.take();
        let more = edges.as_ref().map_or(&[][..], |e| e.get_ref().as_slice());
        let spec = crate::cluster::compose::load_with_edges(&file, more).map_err(|e| {
            let message = match &e.hint {
                Some(h) => format!("{}\n  hint: {h}", e.message),
                None => e.message.clone(),
            };
            // A mistake in the scenario's own edges is the scenario's, shown where it is.
            if let (true, Some(edges)) = (e.message.starts_with(crate::cluster::compose::SCENARIO_EDGE), &edges) {
                return Located::Here(edges.span(), message);
            }
            Located::Elsewhere(ScenarioError { file: e.file.clone(), line: e.line, column: e.column, message })
        })?;
        self.choose(file, spec, RuntimeChoice::Docker)
    }

    fn choose(self, file: std::path::PathBuf, spec: ClusterSpec, runtime: RuntimeChoice) -> Checked<ClusterChoice> {
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

pub(super) fn replicas_of(choice: &ClusterChoice, service: &str) -> u32 {
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
        Ok(LoadPlan { workload, schedule, timeout, connections, max_in_flight, warmup: Duration::ZERO })
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
            (None, None) => return here(span, "a fault needs `edge = \"api->db\"` or `node = \"api-1\"`"),
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
        return here(edge.span(), "an edge reads consumer->provider, e.g. api->db");
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
    let Some(toxic) = &f.toxic else {
        return here(edge.span(), "an edge fault needs `toxic`, e.g. toxic = \"latency\" (or \"down\")");
    };
    let spec = EdgeFault::parse(toxic, f.stream.as_deref(), f.attributes.as_ref(), f.toxicity)
        .map_err(|e| Located::Here(edge.span(), e))?;
    let what = spec.name();
    let action = match spec.action {
        EdgeAction::Toxic(_) => FaultAction::Toxics(spec.toxics(&format!("gauntlet_f{n}"))),
        EdgeAction::Down => FaultAction::Down,
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
    let limit_op = f.op.as_ref().filter(|o| LIMIT_OPS.contains(&o.get_ref().as_str()));
    let clock_op = f.op.as_ref().filter(|o| o.get_ref() == "clock");
    if f.toxic.is_some() || f.stream.is_some() || (f.attributes.is_some() && limit_op.is_none() && clock_op.is_none()) {
        return here(
            node.span(),
            "a node fault takes `op`, not `toxic`, `attributes` or `stream` (`attributes` only with cpu, memory, disk_full, packet_loss or clock)",
        );
    }
    let Some(id) = NodeId::parse(node.get_ref()) else {
        return here(node.span(), "a node reads service-replica, e.g. api-1");
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
        return here(
            node.span(),
            "a node fault needs `op`: kill, stop, pause, restart, partition, cpu, memory, disk_full, packet_loss or clock",
        );
    };
    if let Some(op) = clock_op {
        let Some(length) = length else {
            return here(op.span(), "`clock` needs `for` (the clock is put back to true time when it ends)");
        };
        let skew = clock_skew(op, f.attributes.as_ref())?;
        let target = FaultTarget::Node(id);
        return Ok(Fault {
            label: format!("f{n} {target} {skew}"),
            target,
            action: FaultAction::Clock(skew),
            at,
            until: at + length,
            expect_effect: true,
        });
    }
    if let Some(op) = limit_op {
        let Some(length) = length else {
            return here(op.span(), format!("`{}` needs `for` (the limit is lifted when it ends)", op.get_ref()));
        };
        let limit = node_limit(op, f.attributes.as_ref())?;
        if let NodeLimit::PacketLoss { peer: Some(peer), .. } = &limit {
            let calls = |e: &&Edge| e.from == id.service && e.to == *peer;
            if !cluster.spec.edges.iter().any(|e| calls(&e)) {
                let providers: Vec<&str> =
                    cluster.spec.edges.iter().filter(|e| e.from == id.service).map(|e| e.to.as_str()).collect();
                return here(
                    op.span(),
                    format!(
                        "`peer = \"{peer}\"`: {} calls no service {peer} (it calls: {})",
                        id.service,
                        if providers.is_empty() { "none".to_string() } else { providers.join(", ") }
                    ),
                );
            }
        }
        let target = FaultTarget::Node(id);
        return Ok(Fault {
            label: format!("f{n} {target} {limit}"),
            target,
            action: FaultAction::Limit(limit),
            at,
            until: at + length,
            expect_effect: true,
        });
    }
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

/// The node operations that are resource faults, sized by their `attributes`.
const LIMIT_OPS: [&str; 4] = ["cpu", "memory", "disk_full", "packet_loss"];
/// The most cores a CPU share may name.
const MAX_CORES: f64 = 64.0;
/// The smallest memory limit (below it a process cannot even start).
const MIN_MEMORY: u64 = 1 << 20;

/// A resource fault from its `op` and `attributes`, every mistake at the `op`.
fn node_limit(op: &Spanned<String>, attributes: Option<&toml::Table>) -> Checked<NodeLimit> {
    let span = op.span();
    let name = op.get_ref().as_str();
    let empty = toml::Table::new();
    let attrs = attributes.unwrap_or(&empty);
    let known: &[&str] = match name {
        "cpu" => &["share"],
        "memory" => &["limit"],
        "packet_loss" => &["probability", "direction", "peer"],
        _ => &["leave", "size"],
    };
    if let Some(k) = attrs.keys().find(|k| !known.contains(&k.as_str())) {
        return here(span, format!("`{name}` takes attributes {}, not `{k}`", known.join(" and ")));
    }
    let size = |key: &str| -> Checked<Option<u64>> {
        match attrs.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(b)) if *b >= 0 => Ok(Some(*b as u64)),
            Some(toml::Value::String(s)) => parse_bytes(s).map(Some).map_err(|e| Located::Here(span.clone(), e)),
            Some(other) => here(span.clone(), format!("`{key}` is a size like \"64MiB\", not {other}")),
        }
    };
    let limit = match name {
        "cpu" => {
            let share = match attrs.get("share") {
                Some(toml::Value::Float(v)) => Some(*v),
                Some(toml::Value::Integer(v)) => Some(*v as f64),
                Some(toml::Value::String(s)) => parse_share(s),
                _ => None,
            };
            match share {
                Some(share) if share > 0.0 && share <= MAX_CORES => NodeLimit::Cpu { share },
                _ => {
                    return here(
                        span,
                        format!("`cpu` needs attributes = {{ share = 0.2 }}: a share of one core, above 0 and at most {MAX_CORES}"),
                    )
                }
            }
        }
        "packet_loss" => {
            let probability = match attrs.get("probability") {
                Some(toml::Value::Float(v)) => Some(*v),
                Some(toml::Value::String(s)) => parse_share(s),
                _ => None,
            };
            let Some(probability) = probability.filter(|p| *p > 0.0 && *p <= 1.0) else {
                return here(
                    span,
                    "`packet_loss` needs attributes = { probability = 0.05 }: the share of packets dropped, above 0 and at most 1",
                );
            };
            let direction = match attrs.get("direction") {
                None => Direction::Both,
                Some(toml::Value::String(s)) => match Direction::parse(s) {
                    Some(d) => d,
                    None => return here(span, format!("`direction = \"{s}\"`: use \"in\", \"out\" or \"both\"")),
                },
                Some(other) => return here(span, format!("`direction` is \"in\", \"out\" or \"both\", not {other}")),
            };
            let peer = match attrs.get("peer") {
                None => None,
                Some(toml::Value::String(s)) => Some(s.clone()),
                Some(other) => return here(span, format!("`peer` names a service the node calls, not {other}")),
            };
            NodeLimit::PacketLoss { probability, direction, peer }
        }
        "memory" => match size("limit")? {
            Some(bytes) if (MIN_MEMORY..=MAX_BYTES).contains(&bytes) => NodeLimit::Memory { bytes },
            _ => {
                return here(
                    span,
                    format!("`memory` needs attributes = {{ limit = \"64MiB\" }}, at least {}", Bytes(MIN_MEMORY)),
                )
            }
        },
        _ => {
            let disk = size("size")?.unwrap_or(DEFAULT_DISK_SIZE);
            match size("leave")? {
                Some(leave) if leave < disk => NodeLimit::DiskFull { leave, size: disk },
                Some(_) => {
                    return here(
                        span,
                        format!("`leave` must be less than the data filesystem's size ({})", Bytes(disk)),
                    )
                }
                None => return here(span, "`disk_full` needs attributes = { leave = \"1MiB\" } (bytes left free)"),
            }
        }
    };
    Ok(limit)
}

/// A clock fault from its `attributes` (`offset`, optionally `drift`), every mistake
/// at the `op`.
fn clock_skew(op: &Spanned<String>, attributes: Option<&toml::Table>) -> Checked<ClockSkew> {
    let span = op.span();
    let empty = toml::Table::new();
    let attrs = attributes.unwrap_or(&empty);
    if let Some(k) = attrs.keys().find(|k| !["offset", "drift"].contains(&k.as_str())) {
        return here(span, format!("`clock` takes attributes offset and drift, not `{k}`"));
    }
    let text = |key: &str| match attrs.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.as_str())),
        Some(other) => here(span.clone(), format!("`{key}` is a string like \"+90s\", not {other}")),
    };
    let Some(offset) = text("offset")? else {
        return here(span, "`clock` needs attributes = { offset = \"+90s\" } (ahead) or \"-30s\" (behind)");
    };
    let offset_ms = clock::parse_offset(offset).map_err(|e| Located::Here(span.clone(), e))?;
    let drift = text("drift")?.map(clock::parse_drift).transpose().map_err(|e| Located::Here(span.clone(), e))?;
    Ok(ClockSkew { offset_ms, drift: drift.unwrap_or(0.0) })
}

fn check_slo(
    raw: Spanned<RawSlo>,
    faults: &[Fault],
    faults_start: Duration,
    faults_end: Duration,
    workload: &Workload,
) -> Checked<(SloSpec, WindowAnchor)> {
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
    if threshold.metric.scenario_only() && scope != SloScope::Overall {
        return here(span, format!("`{threshold}` is not about requests: drop `flow` and `step`"));
    }
    if let Some(f) = &threshold.op {
        let recorded =
            workload.flows.iter().flat_map(|fl| &fl.steps).any(|st| st.op.as_ref().is_some_and(|o| &o.f == f));
        if !recorded {
            return here(
                s.threshold.span(),
                format!("`{threshold}`: no workload step records `f = \"{f}\"`; add `op = {{ f = \"{f}\" }}` to one"),
            );
        }
    }
    let (window, anchor) = match (&s.during, &s.after) {
        (None, None) => (Window::WHOLE_RUN, WindowAnchor::Fixed),
        (Some(d), None) => match d.get_ref().as_str() {
            "faults" if faults_end > faults_start => {
                (Window { start: faults_start, end: Some(faults_end) }, WindowAnchor::Faults)
            }
            "faults" => return here(d.span(), "during = \"faults\" needs a fault that lasts"),
            "recovery" => (Window { start: faults_end, end: None }, WindowAnchor::Recovery),
            // One fault by its number in the file: `f2`.
            name if name.starts_with('f') && name[1..].parse::<usize>().is_ok() => {
                let Some((i, f)) = faults.iter().enumerate().find(|(_, f)| f.label.split(' ').next() == Some(name))
                else {
                    return here(d.span(), format!("no fault `{name}`; faults are numbered f1, f2... in file order"));
                };
                if f.until <= f.at {
                    return here(d.span(), format!("fault `{name}` is instant; it has no window"));
                }
                (Window { start: f.at, end: Some(f.until) }, WindowAnchor::Fault(i))
            }
            range => (parse_during(range).map_err(|e| Located::Here(d.span(), e))?, WindowAnchor::Fixed),
        },
        (None, Some(a)) => (Window { start: duration(a)?, end: None }, WindowAnchor::Fixed),
        (Some(d), Some(_)) => return here(d.span(), "give `during` or `after`, not both"),
    };
    let abort_after = s.abort_after.as_ref().map(duration).transpose()?;
    let mut threshold = threshold;
    if let Some(c) = s.confirm {
        if threshold.op_where.is_none() {
            return here(c.span(), "`confirm` goes with `ok_share(f where /pointer == value)`");
        }
        let span = c.span();
        let c = c.into_inner();
        for p in [&c.items, &c.by] {
            crate::load::rules::check_pointer(p).map_err(|m| Located::Here(span.clone(), format!("confirm: {m}")))?;
        }
        threshold.confirm = Some(crate::load::slo::Confirm { read: c.read, items: c.items, by: c.by });
    }
    Ok((SloSpec { threshold, scope, window, abort_after }, anchor))
}
