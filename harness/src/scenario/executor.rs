//! The timeline executor: one clock for load and faults.
//!
//! The load runner sets the clock's zero (the start of its measured phase, in the
//! [`History`]); every fault is applied and removed at its offset from that zero, and
//! the actual times are recorded. Whatever happens (an SLO abort, an interrupt, an
//! error) every fault still active is rolled back and the cluster is torn down. After
//! the load, the final reads are taken (and taken again until every checker's settle
//! condition holds) within [`super::model::Recovery::settle`]; then the invariants are
//! checked against the history and the final reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::clock::ClockReading;
use super::data;
use super::effect::{self, Counters, Effect};
use super::gauges;
use super::model::{ActualTimes, Fault, FaultAction, FaultTarget, Scenario};
use crate::checks::history::History;
use crate::checks::CheckResult;
use crate::cluster::{LimitEffect, NodeId, NodeOp, Readiness, Runtime, RuntimeError};
use crate::load::client::ClientConfig;
use crate::load::runner::{self, Control, Progress, RunConfig};
use crate::load::slo::{Gauge, Metric, Observable, SloVerdict};
use crate::load::stats::Counts;
use crate::world::reach::{EdgeFaults, Reach};

/// The longest the load's set-up phase may take before the timeline gives up.
const SETUP_LIMIT: Duration = Duration::from_secs(300);
/// How often the live display is refreshed.
const TICK: Duration = Duration::from_millis(500);

/// What the executor reports while it runs.
#[derive(Debug, Clone)]
pub enum Event {
    /// A phase began or something happened worth a line.
    Note(String),
    /// The live numbers, with the labels of the active faults.
    Progress(Progress, Vec<String>),
}

/// One fault as planned and as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Its label.
    pub label: String,
    /// Planned start, seconds from the start of the load.
    pub planned_at: f64,
    /// Planned end.
    pub planned_until: f64,
    /// When it was applied, if it was.
    pub applied_at: Option<f64>,
    /// When it was removed (or rolled back), if it was.
    pub removed_at: Option<f64>,
    /// What went wrong applying or removing it.
    pub error: Option<String>,
    /// What it touched: proof the experiment happened (see [`super::effect`]).
    pub effect: Option<Effect>,
    /// Whether touching nothing fails the run.
    pub expect_effect: bool,
    /// The readings the effect is computed from.
    #[serde(skip)]
    observed: Observed,
}

/// The counters read around one fault.
#[derive(Debug, Clone, Default)]
struct Observed {
    at_apply: Option<Counters>,
    at_remove: Option<Counters>,
    /// What a resource fault did, read back when it was lifted.
    limit: Option<LimitEffect>,
    /// The node's clock as read from its answers just before a clock fault was lifted,
    /// or why it could not be read.
    clock: Option<Result<ClockReading, String>>,
}

impl FaultRecord {
    /// Whether the fault was measured to touch nothing while it was expected to.
    pub fn did_not_happen(&self) -> bool {
        self.expect_effect && self.effect.as_ref().is_some_and(Effect::is_nothing)
    }
}

/// The load's headline numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadSummary {
    /// Requests answered or failed.
    pub requests: u64,
    /// Of those, without a 2xx/3xx in time.
    pub errors: u64,
    /// Corrected p95 latency, ms.
    pub p95_ms: f64,
    /// Corrected p99 latency, ms.
    pub p99_ms: f64,
    /// Share answered in time without a 5xx.
    pub availability: f64,
    /// Requests per second achieved.
    pub rate: f64,
    /// Flow starts dropped at the in-flight limit.
    pub dropped: u64,
    /// Flow starts that went out.
    pub flows_started: u64,
}

impl LoadSummary {
    /// The numbers of a finished load.
    pub fn of(result: &runner::RunResult) -> Self {
        let rec = &result.recorder;
        let overall = rec.overall();
        Self {
            requests: overall.total(),
            errors: overall.failed(),
            p95_ms: overall.latency().value_at_quantile(0.95) as f64 / 1000.0,
            p99_ms: overall.latency().value_at_quantile(0.99) as f64 / 1000.0,
            availability: overall.availability(),
            rate: result.achieved_rate(),
            dropped: rec.dropped(),
            flows_started: result.started,
        }
    }
}

/// Everything a run found out.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// The scenario's name.
    pub scenario: String,
    /// The seed used.
    pub seed: u64,
    /// Where logs and data are.
    pub run_dir: PathBuf,
    /// Why the steady state did not hold before the faults, if it did not.
    pub steady_state_failure: Option<String>,
    /// Why it did not hold again after recovery, if it did not.
    pub steady_state_after: Option<String>,
    /// Why the run stopped early (an SLO abort, an interrupt), if it did.
    pub stopped: Option<String>,
    /// Whether it was interrupted (SIGINT / SIGTERM).
    pub interrupted: bool,
    /// The load's numbers.
    pub load: LoadSummary,
    /// The SLO verdicts.
    #[serde(skip)]
    pub slos: Vec<SloVerdict>,
    /// The SLO verdicts, rendered.
    pub slo_lines: Vec<String>,
    /// The faults, planned and actual.
    pub faults: Vec<FaultRecord>,
    /// The invariant checks.
    pub checks: Vec<CheckResult>,
    /// Operations recorded, by outcome.
    pub operations: BTreeMap<String, usize>,
    /// Rollbacks that failed (faults that may still be in place before teardown).
    pub rollback_errors: Vec<String>,
    /// The report files written (JSON, Markdown, HTML, JUnit), if any.
    pub report_files: Vec<PathBuf>,
    /// Why the run failed, one line per failed gate, once it was judged (`None` when
    /// it never got that far: the steady state failed first, or it was interrupted).
    pub reasons: Option<Vec<String>>,
    /// The proxies' counters when the load's clock started.
    #[serde(skip)]
    baseline: Option<Counters>,
}

impl RunOutcome {
    /// A run of `scenario` in `run_dir` before anything happened: every fault planned,
    /// none applied, nothing judged.
    pub fn planned(scenario: &Scenario, run_dir: PathBuf) -> Self {
        Self {
            scenario: scenario.name.clone(),
            seed: scenario.seed,
            run_dir,
            steady_state_failure: None,
            steady_state_after: None,
            stopped: None,
            interrupted: false,
            load: LoadSummary::default(),
            slos: Vec::new(),
            slo_lines: Vec::new(),
            faults: scenario
                .faults
                .iter()
                .map(|f| FaultRecord {
                    label: f.label.clone(),
                    planned_at: f.at.as_secs_f64(),
                    planned_until: f.until.as_secs_f64(),
                    applied_at: None,
                    removed_at: None,
                    error: None,
                    effect: None,
                    expect_effect: f.expect_effect,
                    observed: Observed::default(),
                })
                .collect(),
            checks: Vec::new(),
            operations: BTreeMap::new(),
            rollback_errors: Vec::new(),
            report_files: Vec::new(),
            reasons: None,
            baseline: None,
        }
    }
}

impl RunOutcome {
    /// Whether every gate passed: the run was judged (see `judge`) and no gate failed.
    pub fn passed(&self) -> bool {
        self.steady_state_failure.is_none() && !self.interrupted && self.reasons.as_ref().is_some_and(Vec::is_empty)
    }

    /// Why it did not pass, one line per failed gate.
    pub fn failure_reasons(&self) -> Vec<String> {
        let mut all = Vec::new();
        if let Some(why) = &self.steady_state_failure {
            all.push(format!("the steady state did not hold before the faults: {why}"));
        }
        if self.interrupted {
            all.push("the run was interrupted".into());
        }
        match &self.reasons {
            Some(reasons) => all.extend(reasons.iter().cloned()),
            None if all.is_empty() => all.push("the run was not judged".into()),
            None => {}
        }
        all
    }
}

/// A running cluster as the executor needs it: the runtime, where its ingress is, and
/// how the executor reaches it ([`Reach`]: HTTP, the edge proxies' API, the load
/// generator, the clock). [`crate::world::run_on`] builds it from a started
/// [`crate::world::World`]; the executor never asks which world that is.
pub struct Cluster<R> {
    /// The runtime, started.
    pub runtime: R,
    /// The ingress URL the load uses.
    pub ingress: String,
    /// How the world is reached.
    pub reach: Reach,
}

/// The gauges the scenario's SLOs name, each with the `/metrics` URL of the first node
/// of its service (a service the cluster does not run is sampled never: no data).
fn gauge_targets<R: Runtime>(scenario: &Scenario, cluster: &mut Cluster<R>) -> Vec<(Gauge, String)> {
    let nodes = cluster.runtime.status();
    gauge_urls(scenario, nodes.iter().map(|n| (n.service.as_str(), n.addr.to_string())))
}

/// The gauges the scenario's SLOs name, each once, with the `/metrics` URL of the first
/// of `nodes` (service, `host:port`) that runs its service; both worlds sample these.
pub fn gauge_urls<'a>(
    scenario: &Scenario,
    nodes: impl IntoIterator<Item = (&'a str, String)> + Clone,
) -> Vec<(Gauge, String)> {
    let mut targets: Vec<(Gauge, String)> = Vec::new();
    for gauge in scenario.slos().iter().filter_map(|s| s.threshold.gauge.clone()) {
        let node = nodes.clone().into_iter().find(|(service, _)| *service == gauge.service);
        if let Some((_, authority)) = node.filter(|_| !targets.iter().any(|(g, _)| *g == gauge)) {
            targets.push((gauge, format!("http://{authority}/metrics")));
        }
    }
    targets
}

/// Which faults are in place, so they can be undone whatever happens.
#[derive(Default)]
struct Active {
    /// Index into the timeline, in application order.
    faults: Vec<usize>,
}

/// Runs `scenario` on a started `cluster`: steady state, load and faults on one clock,
/// recovery, checks. Never tears the cluster down (the caller does, always); always
/// rolls back the faults it applied.
pub async fn execute<R: Runtime>(
    scenario: &Scenario,
    cluster: &mut Cluster<R>,
    mut interrupt: watch::Receiver<bool>,
    on_event: &(dyn Fn(Event) + Sync),
) -> anyhow::Result<RunOutcome> {
    let mut outcome = RunOutcome::planned(scenario, cluster.runtime.plan().run_dir.clone());
    let started_at = (cluster.reach.clock)();

    on_event(Event::Note("checking the steady state".into()));
    let steady = tokio::select! {
        r = steady_state(scenario, cluster) => r,
        _ = interrupt.wait_for(|v| *v) => {
            outcome.interrupted = true;
            outcome.stopped = Some("interrupted before the load".into());
            return Ok(outcome);
        }
    };
    if let Err(why) = steady {
        outcome.steady_state_failure = Some(why);
        return Ok(outcome);
    }

    let history = Arc::new(History::new());
    let stop = Arc::new(AtomicBool::new(false));
    let latest: Arc<Mutex<Option<Progress>>> = Arc::default();
    let mut workload = scenario.load.workload.clone();
    workload.base_url = Some(
        crate::load::workload::BaseUrl::parse(&cluster.ingress).map_err(|e| anyhow::anyhow!("the ingress URL: {e}"))?,
    );
    let config = RunConfig {
        schedule: scenario.load.schedule.clone(),
        max_in_flight: scenario.load.max_in_flight,
        client: ClientConfig { connections: scenario.load.connections, timeout: scenario.load.timeout },
        max_flows: 10_000_000,
        tick: TICK,
        history: Some(history.clone()),
        warmup: scenario.load.warmup,
        batch: crate::load::runner::DEFAULT_BATCH,
    };
    on_event(Event::Note(format!(
        "load: {} for {}, {} fault(s)",
        scenario.load.workload.flows.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join("+"),
        humantime::format_duration(scenario.load.duration()),
        scenario.faults.len()
    )));
    let gauge_stop = Arc::new(AtomicBool::new(false));
    let http = cluster.reach.http.clone();
    let sampler = tokio::spawn(gauges::sample(
        gauge_targets(scenario, cluster),
        Instant::now(),
        gauge_stop.clone(),
        move |url| {
            let get = http.get(&url, None, gauges::READ_TIMEOUT);
            async move { get.await.ok().filter(|(status, _)| (200..300).contains(status)).map(|(_, text)| text) }
        },
    ));
    // Whichever way this function returns, the sampler stops.
    let _stop_sampling = gauges::StopOnDrop(gauge_stop.clone());
    let load_done = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, latest) = (stop.clone(), latest.clone());
        let run = cluster.reach.load.run(
            Arc::new(workload),
            config,
            Box::new(move |p: &Progress| {
                if let Ok(mut l) = latest.lock() {
                    *l = Some(p.clone());
                }
                if stop.load(Ordering::Relaxed) {
                    Control::Stop("interrupted".into())
                } else {
                    Control::Continue
                }
            }),
        );
        let done = load_done.clone();
        async move {
            let r = run.await;
            done.store(true, Ordering::Relaxed);
            r
        }
    };
    // The load runs alongside the timeline, in this task: its result is kept once it
    // ends, whichever of the two ends first.
    let mut load = std::pin::pin!(load);
    let mut loaded = None;

    let mut active = Active::default();
    let timeline = {
        let timeline = run_timeline(
            scenario,
            cluster,
            &history,
            &load_done,
            &latest,
            &mut active,
            &mut outcome,
            &mut interrupt,
            on_event,
        );
        let mut timeline = std::pin::pin!(timeline);
        loop {
            tokio::select! {
                // In this order every time: the simulation replays it.
                biased;
                r = &mut load, if loaded.is_none() => loaded = Some(r),
                t = &mut timeline => break t,
            }
        }
    };
    // Whatever ended the timeline, nothing stays broken.
    rollback(scenario, cluster, &mut active, &mut outcome, &history, on_event).await;
    if let Err(e) = &timeline {
        on_event(Event::Note(format!("the timeline failed: {e:#}")));
        stop.store(true, Ordering::Relaxed);
    }
    if outcome.interrupted {
        stop.store(true, Ordering::Relaxed);
    }
    let result = match loaded {
        Some(r) => r,
        None => tokio::select! {
            r = &mut load => r,
            _ = interrupt.wait_for(|v| *v), if !outcome.interrupted => {
                outcome.interrupted = true;
                stop.store(true, Ordering::Relaxed);
                return Ok(outcome);
            }
        },
    };
    gauge_stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap_or_default();
    timeline?;
    observe_effects(scenario, cluster, &mut outcome, &history);
    let result = result?;
    let rec = &result.recorder;
    outcome.load = LoadSummary::of(&result);
    // SLO windows tied to faults are judged on when the faults were actually in place.
    let actual: Vec<ActualTimes> = outcome
        .faults
        .iter()
        .map(|f| ActualTimes {
            applied: f.applied_at.map(Duration::from_secs_f64),
            removed: f.removed_at.map(Duration::from_secs_f64),
        })
        .collect();
    if !rec.windows_movable() {
        on_event(Event::Note(format!(
            "too many requests to keep (over {}): SLO windows stay on the planned fault times",
            crate::load::recorder::MAX_KEPT
        )));
    }
    outcome.slos = slo_verdicts(scenario, rec, &actual, &samples);
    outcome.slo_lines = outcome.slos.iter().map(|v| v.to_string()).collect();
    if outcome.stopped.is_none() {
        outcome.stopped = result.stopped.clone();
    }
    if outcome.interrupted {
        return Ok(outcome);
    }
    let judged = tokio::select! {
        checks = judge_data(scenario, cluster, &history, &mut outcome, on_event) => checks,
        _ = interrupt.wait_for(|v| *v) => {
            outcome.interrupted = true;
            return Ok(outcome);
        }
    };
    outcome.checks = judged;
    check_steady_state_again(scenario, cluster, &mut outcome, &mut interrupt, on_event).await;
    judge(scenario, &mut outcome, &result, (started_at, &cluster.reach), on_event);
    Ok(outcome)
}

/// The final reads, once every fault is healed and the load is over (retried within
/// `recovery.settle`, and taken again every 500 ms until every checker's settle
/// condition holds), the history files, and the declared invariants' verdicts.
async fn judge_data<R: Runtime>(
    scenario: &Scenario,
    cluster: &mut Cluster<R>,
    history: &History,
    outcome: &mut RunOutcome,
    on_event: &(dyn Fn(Event) + Sync),
) -> Vec<CheckResult> {
    let start = history.start().unwrap_or_else(tokio::time::Instant::now);
    let now_ns = || u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let mut ops = history.generic.history();
    for op in &ops.ops {
        *outcome.operations.entry(format!("{} {}", op.f, op.outcome.as_str())).or_default() += 1;
    }
    let dir = outcome.run_dir.clone();
    let bound = scenario.recovery.settle;
    let mut ctx =
        data::CheckContext { dropped: ops.dropped, waited: Duration::ZERO, bound, blocking: cluster.reach.simulated };
    let settle_started = tokio::time::Instant::now();
    let wait_to_settle = data::has_settle_condition(&scenario.declared);
    if !scenario.final_reads.is_empty() {
        on_event(Event::Note(format!(
            "final reads: {} request(s), retried for up to {}{}",
            scenario.final_reads.len(),
            humantime::format_duration(bound),
            if wait_to_settle { ", until the checkers say the system settled" } else { "" }
        )));
        let nodes = cluster.runtime.status();
        let ingress = cluster.ingress.trim_end_matches('/').to_string();
        let url_of = |read: &super::model::FinalRead| {
            let base = match &read.service {
                Some(svc) => nodes.iter().find(|n| &n.service == svc).map(|n| format!("http://{}", n.addr)),
                None => None,
            };
            format!("{}{}", base.unwrap_or_else(|| ingress.clone()), read.path)
        };
        loop {
            let left = bound.saturating_sub(settle_started.elapsed());
            let reads =
                data::take_final_reads(&scenario.final_reads, &url_of, &*cluster.reach.http, left, now_ns).await;
            let answered = reads.unanswered.is_empty();
            if !answered || !wait_to_settle {
                for why in &reads.unanswered {
                    on_event(Event::Note(format!("a final read did not answer: {why}")));
                }
            }
            ops.final_reads = reads.ops;
            if !answered || !wait_to_settle {
                break;
            }
            let files = match data::write_history(&dir, &ops) {
                Ok(files) => files,
                Err(_) => break,
            };
            ctx.waited = settle_started.elapsed();
            match data::settled(&scenario.declared, &files, &dir, ctx).await {
                Ok(true) => break,
                Ok(false) if settle_started.elapsed() >= bound => {
                    on_event(Event::Note(format!(
                        "not settled after {}: the invariants judge the system as it is",
                        humantime::format_duration(bound)
                    )));
                    break;
                }
                Ok(false) => tokio::time::sleep(data::FINAL_READ_RETRY).await,
                Err(why) => {
                    on_event(Event::Note(format!("could not tell whether the system settled: {why}")));
                    break;
                }
            }
        }
    }
    ctx.waited = settle_started.elapsed();
    judge_ok_shares(outcome, &ops);
    let files = data::write_history(&dir, &ops).map_err(|e| e.to_string());
    if let Err(e) = &files {
        on_event(Event::Note(format!("could not write the history files in {}: {e}", dir.display())));
    }
    data::check_declared(&scenario.declared, &ops, files.as_ref().map_err(String::as_str), &dir, ctx).await
}

/// Checks the steady-state hypothesis again once the run recovered (Chaos Toolkit's
/// default): a system that does not come back fails the run even if every SLO held.
async fn check_steady_state_again<R: Runtime>(
    scenario: &Scenario,
    cluster: &mut Cluster<R>,
    outcome: &mut RunOutcome,
    interrupt: &mut watch::Receiver<bool>,
    on_event: &(dyn Fn(Event) + Sync),
) {
    on_event(Event::Note("checking the steady state again".into()));
    tokio::select! {
        r = steady_state(scenario, cluster) => {
            if let Err(why) = r {
                on_event(Event::Note(format!("the steady state did not hold again: {why}")));
                outcome.steady_state_after = Some(why);
            }
        }
        _ = interrupt.wait_for(|v| *v) => outcome.interrupted = true,
    }
}

/// Judges the `ok_share(f)` SLOs on the operation history: of the operations of `f`
/// invoked in each window, the share that ended `ok` (with the value `where` asks for,
/// in its answer or, with `confirm`, in the final read that shows its state since).
fn judge_ok_shares(outcome: &mut RunOutcome, history: &crate::checks::op::OpHistory) {
    let ops = &history.ops;
    let mut judged = false;
    for v in outcome.slos.iter_mut().filter(|v| v.spec.threshold.metric == Metric::OkShare) {
        let f = v.spec.threshold.op.as_deref().unwrap_or_default();
        let window = v.spec.window;
        let of_f = ops.iter().filter(|o| o.f == f && window.contains(Duration::from_nanos(o.invoke_ns)));
        let (mut placed, mut ok) = (0, 0);
        let shown = v.spec.threshold.confirm.as_ref().map(|c| confirmed_items(c, &history.final_reads));
        let wanted = |op: &crate::checks::op::Op| match &v.spec.threshold.op_where {
            None => true,
            Some((pointer, value)) => {
                let matches = |doc: &serde_json::Value| doc.pointer(pointer) == Some(value);
                let answered = op.result.as_ref().is_some_and(matches);
                let since = || {
                    let (Some(items), Some(c)) = (&shown, &v.spec.threshold.confirm) else { return false };
                    let id = op.result.as_ref().and_then(|r| r.pointer(&c.by)).map(crate::checks::op::element_key);
                    id.and_then(|id| items.get(&id)).is_some_and(&matches)
                };
                answered || since()
            }
        };
        for op in of_f {
            placed += 1;
            ok += u64::from(op.outcome == crate::checks::op::OpType::Ok && wanted(op));
        }
        let counts = Outcomes(Counts { total: placed, placed, paid: ok, ..Counts::default() });
        *v = SloVerdict::judge(&v.spec, Some(&counts));
        judged = true;
    }
    if judged {
        outcome.slo_lines = outcome.slos.iter().map(|v| v.to_string()).collect();
    }
}

/// The items of a `confirm`'s final read, by what identifies each.
fn confirmed_items(
    c: &crate::load::slo::Confirm,
    reads: &[crate::checks::op::Op],
) -> BTreeMap<String, serde_json::Value> {
    let read = reads.iter().find(|r| r.f == c.read).and_then(|r| r.result.as_ref());
    let items = read.and_then(|v| v.pointer(&c.items)).and_then(|v| v.as_array());
    items
        .into_iter()
        .flatten()
        .filter_map(|item| item.pointer(&c.by).map(|id| (crate::checks::op::element_key(id), item.clone())))
        .collect()
}

struct Outcomes(Counts);

impl Observable for Outcomes {
    fn counts(&self) -> Counts {
        self.0
    }
    fn latency_percentile_ms(&self, _: f64) -> f64 {
        0.0
    }
    fn latency_max_ms(&self) -> f64 {
        0.0
    }
    fn latency_mean_ms(&self) -> f64 {
        0.0
    }
}

/// Reaches the run's one verdict: the report model decides it
/// ([`crate::report::Report::failure_reasons`]), and the exit code, the CLI's lines,
/// `report.md`, `report.html` and `junit.xml` all render that decision. Writes the
/// report files.
fn judge(
    scenario: &Scenario,
    outcome: &mut RunOutcome,
    result: &runner::RunResult,
    (started_at, reach): (std::time::SystemTime, &Reach),
    on_event: &(dyn Fn(Event) + Sync),
) {
    judge_at(scenario, outcome, result, (started_at, (reach.clock)()), reach.simulated, on_event);
}

/// Every SLO's verdict: windows tied to faults on when the faults were actually in place
/// (`actual`; on the planned times if the recorder kept too few requests to move them),
/// request SLOs on the recorded requests, service gauges on their `samples`.
pub fn slo_verdicts(
    scenario: &Scenario,
    rec: &crate::load::recorder::Recorder,
    actual: &[ActualTimes],
    samples: &gauges::GaugeSamples,
) -> Vec<crate::load::slo::SloVerdict> {
    let slos = if rec.windows_movable() { scenario.slos_as_run(actual) } else { scenario.slos().to_vec() };
    let mut verdicts = rec.verdicts(&slos);
    for v in verdicts.iter_mut().filter(|v| v.spec.threshold.metric == Metric::GaugeMax) {
        *v = samples.verdict(&v.spec);
    }
    verdicts
}

/// Judges a finished run into one verdict (`outcome.reasons`) and writes its report
/// under `run_dir/report`; `times` are when it started and ended on the clock it ran
/// on (the simulated one in a simulation, so its report is the same byte for byte), and
/// `simulated` marks the report as a simulated run's.
pub fn judge_at(
    scenario: &Scenario,
    outcome: &mut RunOutcome,
    result: &runner::RunResult,
    times: (std::time::SystemTime, std::time::SystemTime),
    simulated: bool,
    on_event: &(dyn Fn(Event) + Sync),
) {
    let mut report = to_report(scenario, outcome, result, times);
    report.run.simulated = simulated;
    outcome.reasons = Some(report.failure_reasons());
    match crate::report::write_all(&outcome.run_dir.join("report"), &report) {
        Ok(files) => outcome.report_files = files,
        Err(e) => on_event(Event::Note(format!("could not write the report: {e}"))),
    }
}

/// The run in the report model, for the JSON, Markdown, HTML and JUnit renderers.
fn to_report(
    scenario: &Scenario,
    outcome: &RunOutcome,
    result: &runner::RunResult,
    (started_at, ended_at): (std::time::SystemTime, std::time::SystemTime),
) -> crate::report::Report {
    use crate::report::model::{FaultRecord as Planned, InvariantResult};
    let meta = crate::report::RunMeta { name: scenario.name.clone(), seed: scenario.seed, started_at, ended_at };
    let mut report = crate::report::from_load_judged(meta, result, &outcome.slos);
    report.run.steady_state_after = outcome.steady_state_after.clone();
    let secs = |v: Option<f64>| v.map(Duration::from_secs_f64);
    for (fault, happened) in scenario.faults.iter().zip(&outcome.faults) {
        let planned = Planned::planned(&fault.label, fault.target.to_string(), fault.at, Some(fault.until - fault.at));
        let mut record = planned.happened(secs(happened.applied_at), secs(happened.removed_at));
        record.error = happened.error.clone();
        record.effect = happened.effect.as_ref().map(|e| e.detail.clone());
        record.touched = happened.effect.as_ref().filter(|e| e.measured).map(|e| e.touched);
        record.expect_effect = happened.expect_effect;
        report = report.with_fault(record);
    }
    for e in &outcome.rollback_errors {
        let mut record = Planned::planned("rollback", "-", Duration::ZERO, None);
        record.error = Some(format!("could not roll back: {e}"));
        report = report.with_fault(record);
    }
    for c in &outcome.checks {
        let value = |x: &Option<crate::checks::Counterexample>| x.as_ref().and_then(|x| serde_json::to_value(x).ok());
        report = report.with_invariant(InvariantResult {
            name: c.invariant.clone(),
            valid: c.valid(),
            validity: Some(c.validity.as_str().to_ascii_lowercase()),
            summary: Some(c.summary.clone()),
            clauses: c.clauses.iter().filter_map(|cl| serde_json::to_value(cl).ok()).collect(),
            notes: c.notes.clone(),
            first_counterexample: value(&c.first),
            worst_counterexample: value(&c.worst),
        });
    }
    report
}

async fn steady_state<R: Runtime>(scenario: &Scenario, cluster: &mut Cluster<R>) -> Result<(), String> {
    let not_ready: Vec<String> = cluster
        .runtime
        .status()
        .into_iter()
        .filter(|n| n.state != crate::cluster::NodeState::Ready)
        .map(|n| format!("{} is {}", n.id, n.state))
        .collect();
    if !not_ready.is_empty() {
        return Err(format!("nodes not ready: {}", not_ready.join(", ")));
    }
    let http = &cluster.reach.http;
    let ingress = cluster.ingress.trim_end_matches('/').to_string();
    probe_steady_state(&scenario.steady_state, |path| {
        let get = http.get(&format!("{ingress}{path}"), None, Duration::from_secs(5));
        async move { get.await.map(|(status, _)| status) }
    })
    .await
}

/// Runs every probe of `steady` through `get` (a path in, the status it answered or why
/// there was none out) every 200 ms until it answers what it expects, all within the
/// steady state's timeout, on tokio's clock. Both worlds probe with it.
pub async fn probe_steady_state<F, Fut>(steady: &super::model::SteadyState, get: F) -> Result<(), String>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = Result<u16, String>>,
{
    let deadline = tokio::time::Instant::now() + steady.timeout;
    for probe in &steady.probes {
        loop {
            let last = match get(&probe.path).await {
                Ok(status) if status == probe.expect => break,
                Ok(status) => format!("answered {status}"),
                Err(e) => e,
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "probe `{}` (GET {}) expected {} but {last} for {}",
                    probe.name,
                    probe.path,
                    probe.expect,
                    humantime::format_duration(steady.timeout)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Apply,
    Remove,
}

/// A change of the timeline under way: an edge change, or a restarted node coming up.
type Underway = std::pin::Pin<Box<dyn std::future::Future<Output = (usize, Change, anyhow::Result<()>)> + Send>>;

/// Runs the fault timeline against the load's clock. Changes are started when due and
/// run concurrently (an edge change over the Toxiproxy API, a restarted node's wait for
/// readiness), so a slow restart never delays another fault; changes to one target
/// (one edge, one node) keep their order. Each change's time is when it completed.
#[allow(clippy::too_many_arguments)]
async fn run_timeline<R: Runtime>(
    scenario: &Scenario,
    cluster: &mut Cluster<R>,
    history: &History,
    load_done: &AtomicBool,
    latest: &Mutex<Option<Progress>>,
    active: &mut Active,
    outcome: &mut RunOutcome,
    interrupt: &mut watch::Receiver<bool>,
    on_event: &(dyn Fn(Event) + Sync),
) -> anyhow::Result<()> {
    use futures::stream::{FuturesUnordered, StreamExt};
    // The clock starts when the load's measured phase does (after its set-up).
    let setup_deadline = Instant::now() + SETUP_LIMIT;
    let t0 = loop {
        if let Some(t) = history.start() {
            break t;
        }
        if load_done.load(Ordering::Relaxed) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < setup_deadline, "the load's set-up did not finish within {SETUP_LIMIT:?}");
        if *interrupt.borrow() {
            outcome.interrupted = true;
            outcome.stopped = Some("interrupted during the load's set-up".into());
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    outcome.baseline = cluster.reach.faults.counters().await;
    let mut pending: Vec<(Duration, usize, Change)> = Vec::new();
    for (i, f) in scenario.faults.iter().enumerate() {
        pending.push((f.at, i, Change::Apply));
        if f.until > f.at {
            pending.push((f.until, i, Change::Remove));
        }
    }
    // Removals before applications at the same instant, so back-to-back faults on one
    // node do not clash.
    pending.sort_by_key(|(t, i, c)| (*t, matches!(c, Change::Apply), *i));
    let target_of = |i: usize| scenario.faults[i].target.to_string();
    let mut underway: FuturesUnordered<Underway> = FuturesUnordered::new();
    // Faults with a change under way, and their targets.
    let mut busy: Vec<(usize, String)> = Vec::new();
    let end = t0 + scenario.load.duration();
    let mut next_tick = Instant::now();
    let stop = loop {
        let now = Instant::now();
        if now >= next_tick {
            next_tick = now + TICK;
            if let Some(p) = latest.lock().ok().and_then(|l| l.clone()) {
                let labels = active.faults.iter().map(|&i| scenario.faults[i].label.clone()).collect();
                on_event(Event::Progress(p, labels));
            }
        }
        // Start what is due, unless its target is busy with an earlier change.
        let mut k = 0;
        while k < pending.len() {
            let (at, i, change) = pending[k];
            if t0 + at > now {
                break;
            }
            let target = target_of(i);
            // A later change of a busy target waits, and so does everything after it on
            // that target (the list is in time order).
            if busy.iter().any(|(_, t)| *t == target) || pending[..k].iter().any(|p| target_of(p.1) == target) {
                k += 1;
                continue;
            }
            pending.remove(k);
            let fault = &scenario.faults[i];
            match (&fault.action, &fault.target) {
                (FaultAction::Node(_) | FaultAction::Limit(_) | FaultAction::Clock(_), FaultTarget::Node(node)) => {
                    let observed = &mut outcome.faults[i].observed;
                    let started = node_change(&fault.action, node, change, cluster, observed).await;
                    match started {
                        Ok(Some(ready)) => {
                            busy.push((i, target));
                            let node = node.clone();
                            underway.push(Box::pin(async move {
                                let r = ready.await;
                                (i, change, r.map_err(|e| anyhow::anyhow!(e).context(format!("waiting for {node}"))))
                            }));
                        }
                        Ok(None) => {
                            let at = t0.elapsed().as_secs_f64();
                            completed(scenario, cluster, active, outcome, i, change, Ok(()), at, on_event).await;
                        }
                        Err(e) => {
                            let at = t0.elapsed().as_secs_f64();
                            completed(scenario, cluster, active, outcome, i, change, Err(e.into()), at, on_event).await;
                        }
                    }
                }
                (action, target) => {
                    busy.push((i, target_of(i)));
                    let (faults, names) = (cluster.reach.faults.clone(), proxies(cluster, target));
                    let action = action.clone();
                    underway.push(Box::pin(async move {
                        let r = edge_change(&action, &*faults, &names, change).await;
                        (i, change, r)
                    }));
                }
            }
        }
        let load_finished = load_done.load(Ordering::Relaxed);
        if pending.is_empty() && underway.is_empty() && (load_finished || now >= end) {
            break None;
        }
        if load_finished && underway.is_empty() {
            // The load stopped early (an SLO abort): the remaining faults are moot.
            break None;
        }
        let due = pending.first().map(|(at, _, _)| t0 + *at).filter(|d| *d > now);
        let wake = due.map_or(next_tick, |d| d.min(next_tick));
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(wake) => {}
            Some((i, change, result)) = underway.next(), if !underway.is_empty() => {
                busy.retain(|(b, _)| *b != i);
                finished(scenario, cluster, active, outcome, (i, change, result), t0, on_event).await;
            }
            _ = interrupt.wait_for(|v| *v) => {
                outcome.interrupted = true;
                break Some(format!("interrupted at {:.2}s", t0.elapsed().as_secs_f64()));
            }
        }
    };
    // Let what is under way finish, so the rollback finds every change done.
    while let Some(done) = underway.next().await {
        finished(scenario, cluster, active, outcome, done, t0, on_event).await;
    }
    if let Some(why) = stop {
        outcome.stopped = Some(why);
    }
    Ok(())
}

/// Starts a change of a node fault: its operation (or inverse), or putting on or
/// lifting a resource fault (what it did goes to `observed`; a node it ended is started
/// again). A restart's wait for readiness comes back to await elsewhere.
async fn node_change<R: Runtime>(
    action: &FaultAction,
    node: &NodeId,
    change: Change,
    cluster: &mut Cluster<R>,
    observed: &mut Observed,
) -> Result<Option<Readiness>, RuntimeError> {
    let op = match (action, change) {
        (FaultAction::Node(op), Change::Apply) => Some(*op),
        (FaultAction::Node(op), Change::Remove) => Fault::inverse(*op),
        (FaultAction::Limit(limit), Change::Apply) => return cluster.runtime.limit(node, limit).await.map(|()| None),
        (FaultAction::Clock(skew), Change::Apply) => {
            return cluster.runtime.set_clock(node, Some(*skew)).await.map(|()| None);
        }
        (FaultAction::Clock(_), Change::Remove) => {
            // Read while the skew still holds, then put the clock back whatever was read.
            observed.clock = Some(read_node_clock(cluster, node).await);
            return cluster.runtime.set_clock(node, None).await.map(|()| None);
        }
        (FaultAction::Limit(limit), Change::Remove) => {
            let effect = cluster.runtime.unlimit(node, limit).await?;
            let ended = effect.node_ended;
            observed.limit = Some(effect);
            ended.then_some(NodeOp::Restart)
        }
        _ => None,
    };
    match op {
        Some(op) => cluster.runtime.node_op_detached(node, op).await,
        None => Ok(None),
    }
}

/// Node `id`'s clock read back from its answers (its `/health`), against the world's.
async fn read_node_clock<R: Runtime>(cluster: &mut Cluster<R>, id: &NodeId) -> Result<ClockReading, String> {
    let name = id.to_string();
    let addr = cluster.runtime.status().into_iter().find(|n| n.id == name).map(|n| n.addr);
    let addr = addr.ok_or_else(|| format!("{id} is not in the cluster's status"))?;
    super::clock::read(&*cluster.reach.http, &format!("http://{addr}/health"), cluster.reach.clock).await
}

/// Records a change that was under way: a restarted node's readiness goes to its
/// runtime first, then the change is recorded as completed now.
async fn finished<R: Runtime>(
    scenario: &Scenario,
    cluster: &mut Cluster<R>,
    active: &mut Active,
    outcome: &mut RunOutcome,
    (i, change, result): (usize, Change, anyhow::Result<()>),
    t0: Instant,
    on_event: &(dyn Fn(Event) + Sync),
) {
    if let FaultTarget::Node(node) = &scenario.faults[i].target {
        let ready = result
            .as_ref()
            .map(|_| ())
            .map_err(|e| crate::cluster::RuntimeError::Start { node: node.to_string(), detail: format!("{e:#}") });
        cluster.runtime.node_ready(node, &ready);
    }
    let at = t0.elapsed().as_secs_f64();
    completed(scenario, cluster, active, outcome, i, change, result, at, on_event).await;
}

/// Records a change of fault `i` that completed at `at` (seconds on the load's clock).
#[allow(clippy::too_many_arguments)]
async fn completed<R: Runtime>(
    scenario: &Scenario,
    cluster: &Cluster<R>,
    active: &mut Active,
    outcome: &mut RunOutcome,
    i: usize,
    change: Change,
    result: anyhow::Result<()>,
    at: f64,
    on_event: &(dyn Fn(Event) + Sync),
) {
    let fault = &scenario.faults[i];
    let reading = cluster.reach.faults.counters().await;
    let record = &mut outcome.faults[i];
    match change {
        Change::Apply => record.observed.at_apply = reading,
        Change::Remove => record.observed.at_remove = reading,
    }
    match (change, result) {
        (Change::Apply, Ok(())) => {
            record.applied_at = Some(at);
            if fault.until > fault.at {
                active.faults.push(i);
            }
            on_event(Event::Note(format!("{:>7.2}s applied {}", at, fault.label)));
        }
        (Change::Remove, Ok(())) => {
            record.removed_at = Some(at);
            active.faults.retain(|&a| a != i);
            on_event(Event::Note(format!("{:>7.2}s removed {}", at, fault.label)));
        }
        (Change::Apply, Err(e)) => {
            record.error = Some(format!("applying: {e:#}"));
            on_event(Event::Note(format!("{:>7.2}s could not apply {}: {e:#}", at, fault.label)));
            // It may be half in place: roll it back with the others.
            if !active.faults.contains(&i) {
                active.faults.push(i);
            }
        }
        (Change::Remove, Err(e)) => {
            record.error = Some(format!("removing: {e:#}"));
            on_event(Event::Note(format!("{:>7.2}s could not remove {}: {e:#}", at, fault.label)));
        }
    }
}

fn proxies<R: Runtime>(cluster: &Cluster<R>, target: &FaultTarget) -> Vec<String> {
    let FaultTarget::Edge { edge, replica } = target else { return Vec::new() };
    cluster
        .runtime
        .plan()
        .slots
        .iter()
        .filter(|s| &s.edge == edge && replica.is_none_or(|r| r == s.replica))
        .map(|s| s.proxy_name())
        .collect()
}

/// Applies or removes an edge fault on its proxies `names`.
async fn edge_change(
    action: &FaultAction,
    faults: &dyn EdgeFaults,
    names: &[String],
    change: Change,
) -> anyhow::Result<()> {
    match (action, change) {
        (FaultAction::Toxics(toxics), Change::Apply) => {
            for proxy in names {
                for t in toxics {
                    faults.add_toxic(proxy, t).await?;
                }
            }
            Ok(())
        }
        (FaultAction::Toxics(toxics), Change::Remove) => {
            let mut first_error = None;
            for proxy in names {
                for t in toxics {
                    if let Err(e) = faults.remove_toxic(proxy, &t.name).await {
                        first_error.get_or_insert(e);
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        }
        (FaultAction::Down, change) => {
            for proxy in names {
                faults.set_enabled(proxy, change == Change::Remove).await?;
            }
            Ok(())
        }
        (FaultAction::Node(_) | FaultAction::Limit(_) | FaultAction::Clock(_), _) => {
            anyhow::bail!("a node operation is not an edge change")
        }
    }
}

/// Removes `fault` now, waiting for whatever it takes (a restart's readiness included);
/// what a resource fault did goes to `observed`.
async fn remove<R: Runtime>(fault: &Fault, cluster: &mut Cluster<R>, observed: &mut Observed) -> anyhow::Result<()> {
    match (&fault.action, &fault.target) {
        (FaultAction::Node(_) | FaultAction::Limit(_) | FaultAction::Clock(_), FaultTarget::Node(id)) => {
            if let Some(ready) = node_change(&fault.action, id, Change::Remove, cluster, observed).await? {
                let r = ready.await;
                cluster.runtime.node_ready(id, &r);
                r?;
            }
            Ok(())
        }
        (FaultAction::Node(_) | FaultAction::Limit(_) | FaultAction::Clock(_), FaultTarget::Edge { .. }) => Ok(()),
        (action, target) => {
            edge_change(action, &*cluster.reach.faults, &proxies(cluster, target), Change::Remove).await
        }
    }
}

/// Each fault's observed effect, from the readings taken around it and, for a node
/// fault, the operations in flight when it struck.
fn observe_effects<R: Runtime>(scenario: &Scenario, cluster: &Cluster<R>, outcome: &mut RunOutcome, history: &History) {
    let plan = cluster.runtime.plan();
    // Copied out of the log only where a node fault needs it.
    let node_faults = scenario.faults.iter().any(|f| matches!(f.action, FaultAction::Node(_)));
    let ops = if node_faults { history.generic.history().ops } else { Vec::new() };
    for (fault, record) in scenario.faults.iter().zip(outcome.faults.iter_mut()) {
        if record.applied_at.is_none() {
            continue;
        }
        let obs = &record.observed;
        if matches!(fault.action, FaultAction::Limit(_)) {
            record.effect = Some(match &obs.limit {
                Some(l) => Effect { measured: true, touched: l.touched, detail: l.detail.clone() },
                None => Effect::unmeasured("the limit was not lifted, so its counters were not read"),
            });
            continue;
        }
        if let (FaultAction::Clock(skew), FaultTarget::Node(node)) = (&fault.action, &fault.target) {
            let held = match (record.applied_at, record.removed_at) {
                (Some(a), Some(r)) => Duration::from_secs_f64((r - a).max(0.0)),
                _ => Duration::ZERO,
            };
            record.effect = Some(match &obs.clock {
                Some(Ok(reading)) => effect::clock_effect(node, reading, skew.offset_after(held)),
                Some(Err(e)) => Effect::unmeasured(format!("the clock of {node} could not be read: {e}")),
                None => Effect::unmeasured("the clock was not put back, so it was not read"),
            });
            continue;
        }
        let (Some(base), Some(at_apply)) = (outcome.baseline.as_ref(), obs.at_apply.as_ref()) else {
            record.effect = Some(Effect::unmeasured("the Toxiproxy API serves no /metrics counters"));
            continue;
        };
        record.effect = Some(match (&fault.action, &fault.target) {
            (FaultAction::Toxics(toxics), target) => {
                let names = proxies(cluster, target);
                let toxic = toxics.first().map_or("", |t| t.kind.type_name());
                match obs.at_remove.as_ref() {
                    Some(at_remove) => {
                        effect::toxic_effect(effect::between(at_apply, at_remove, &names), names.len(), toxic)
                    }
                    None => Effect::unmeasured("the proxies were not read when it was removed"),
                }
            }
            (FaultAction::Down, target) => {
                let names = proxies(cluster, target);
                effect::traffic_effect(effect::between(base, at_apply, &names), names.len(), "before the edge was cut")
            }
            (FaultAction::Node(_), FaultTarget::Node(node)) => {
                {
                    // Its calls out count too: a consumer is called by no one, and what
                    // it does goes out over its edge to (say) a broker.
                    let names: Vec<String> = plan
                        .slots
                        .iter()
                        .filter(|s| {
                            let into = s.edge.to == node.service && s.replica == node.replica;
                            let out = s.edge.from == node.service && s.from_replica == Some(node.replica);
                            into || out
                        })
                        .map(|s| s.proxy_name())
                        .collect();
                    let traffic = effect::traffic_effect(
                        effect::between(base, at_apply, &names),
                        names.len(),
                        "in and out of the node before it struck",
                    );
                    match record.applied_at {
                        Some(at) if !ops.is_empty() => {
                            let at_ns = u64::try_from(Duration::from_secs_f64(at).as_nanos()).unwrap_or(u64::MAX);
                            effect::OpsInFlight::at(&ops, at_ns).describe_in(traffic)
                        }
                        _ => traffic,
                    }
                }
            }
            (FaultAction::Node(_) | FaultAction::Limit(_) | FaultAction::Clock(_), FaultTarget::Edge { .. }) => {
                Effect::unmeasured("a node operation on an edge")
            }
            (FaultAction::Limit(_) | FaultAction::Clock(_), FaultTarget::Node(_)) => {
                Effect::unmeasured("measured above")
            }
        });
    }
}

/// Undoes every fault still in place, newest first.
async fn rollback<R: Runtime>(
    scenario: &Scenario,
    cluster: &mut Cluster<R>,
    active: &mut Active,
    outcome: &mut RunOutcome,
    history: &History,
    on_event: &(dyn Fn(Event) + Sync),
) {
    while let Some(i) = active.faults.pop() {
        let fault = &scenario.faults[i];
        let result = remove(fault, cluster, &mut outcome.faults[i].observed).await;
        let at = history.start().map_or(0.0, |t| t.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                outcome.faults[i].removed_at = Some(at);
                outcome.faults[i].observed.at_remove = cluster.reach.faults.counters().await;
                on_event(Event::Note(format!("{at:>7.2}s rolled back {}", fault.label)));
            }
            Err(e) => {
                on_event(Event::Note(format!("{at:>7.2}s could not roll back {}: {e:#}", fault.label)));
                outcome.rollback_errors.push(format!("{}: {e:#}", fault.label));
            }
        }
    }
}

/// Counts of operations by outcome, for the summary line.
pub fn describe_operations(ops: &BTreeMap<String, usize>) -> String {
    if ops.is_empty() {
        return "none recorded".into();
    }
    ops.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
}
