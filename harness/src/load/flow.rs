//! Running one flow: rendering each step's request, sending it, taking captures,
//! recording the step and, at the end, the whole flow.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Uri};
use serde_json::Value;

use super::client::{Exchange, HttpClient, Keep, Transport};
use super::operation::{self, OpSpec};
use super::recorder::{FlowId, Sample};
use super::runner::{RunError, Shared};
use super::stats::{micros, Check, ErrorKind, Judgement, Outcome};
use super::template::{draw_rng, DrawRng};
use super::workload::{BaseUrl, Step, Workload};
use crate::checks::op::{Op, OpType};

/// The draw streams of the setup phase, one per virtual user, far above those of the
/// flow starts (stream `k` for start `k`).
const SETUP_STREAMS: u64 = 1 << 63;

/// Data of each virtual user, captured by the setup phase.
#[derive(Debug, Default)]
pub struct VirtualUsers {
    data: Vec<BTreeMap<String, Value>>,
}

impl VirtualUsers {
    /// Runs the setup phase (not measured): its steps once per virtual user, in order.
    pub async fn prepare(workload: &Workload, client: &HttpClient, base: &BaseUrl) -> Result<Self, RunError> {
        Self::prepare_via(workload, &mut client.clone(), base).await
    }

    /// [`VirtualUsers::prepare`] through any transport.
    pub async fn prepare_via(
        workload: &Workload,
        client: &mut impl Transport,
        base: &BaseUrl,
    ) -> Result<Self, RunError> {
        let Some(setup) = &workload.setup else { return Ok(Self::default()) };
        let mut data = Vec::with_capacity(setup.users as usize);
        for user in 0..setup.users {
            let mut captured = BTreeMap::new();
            let vu = Value::from(user);
            let mut draws = draw_rng(workload.seed, SETUP_STREAMS + u64::from(user));
            for step in &setup.steps {
                let vars = Vars { vu: &vu, iteration: &vu, user: &captured, workload, captures: &[] };
                let req = build_request(step, None, base, &vars, &mut draws);
                let ex = client.exchange(req, keep(step)).await;
                let judgement = step.rules.judge(ex.outcome, &ex.headers, ex.body.as_deref());
                let fail = |outcome: String| RunError::Setup { user, step: step.name.clone(), outcome };
                if judgement.check == Check::Failed {
                    return Err(fail(format!("{}, which fails the step's `expect`", describe(ex.outcome))));
                }
                let taken = match ex.outcome {
                    Outcome::Status(_) if ex.outcome.succeeded() => take_captures(step, &ex),
                    other => Err(other),
                };
                captured.extend(taken.map_err(|o| fail(describe(o)))?);
            }
            data.push(captured);
        }
        Ok(Self { data })
    }

    fn get(&self, iteration: u64) -> Option<&BTreeMap<String, Value>> {
        if self.data.is_empty() {
            return None;
        }
        self.data.get((iteration % self.data.len() as u64) as usize)
    }

    fn count(&self) -> u64 {
        self.data.len().max(1) as u64
    }
}

/// What of a step's answer to keep: the body for captures, the history and checks; the
/// headers its degraded rules look at.
fn keep(step: &Step) -> Keep<'_> {
    let body = !step.captures.is_empty() || step.rules.needs_body() || step.op.as_ref().is_some_and(OpSpec::needs_body);
    Keep { body, headers: step.rules.headers() }
}

fn describe(o: Outcome) -> String {
    match o {
        Outcome::Status(s) => format!("status {s}"),
        Outcome::Error(kind) => kind.name().to_owned(),
    }
}

/// What every flow of a run shares.
pub struct FlowContext {
    pub(crate) workload: Arc<Workload>,
    pub(crate) client: HttpClient,
    pub(crate) base: BaseUrl,
    pub(crate) users: VirtualUsers,
    pub(crate) start: Instant,
    /// Per flow, per step: the URI when the path has no placeholder.
    literal_uris: Vec<Vec<Option<Uri>>>,
    timeout: Duration,
}

impl FlowContext {
    /// Prepares the context; literal paths are turned into URIs once.
    pub fn new(
        workload: Arc<Workload>,
        client: HttpClient,
        base: BaseUrl,
        users: VirtualUsers,
        start: Instant,
    ) -> Self {
        let literal_uris = workload
            .flows
            .iter()
            .map(|f| {
                f.steps
                    .iter()
                    .map(|s| s.path.as_literal().and_then(|p| format!("{}{p}", base.prefix).parse().ok()))
                    .collect()
            })
            .collect();
        let timeout = client.timeout();
        Self { workload, client, base, users, start, literal_uris, timeout }
    }

    /// The longest a flow can take: every step timing out, plus think times.
    pub fn longest_flow(&self) -> Duration {
        let steps = self.workload.flows.iter().map(|f| {
            let think: Duration = f.steps.iter().map(|s| s.think).sum();
            self.timeout * f.steps.len() as u32 + think
        });
        steps.max().unwrap_or_default() + Duration::from_secs(1)
    }
}

/// Variables visible to a step's templates.
struct Vars<'a> {
    vu: &'a Value,
    iteration: &'a Value,
    user: &'a BTreeMap<String, Value>,
    workload: &'a Workload,
    captures: &'a [(String, Value)],
}

impl Vars<'_> {
    fn lookup(&self, name: &str) -> Option<&Value> {
        if let Some((_, v)) = self.captures.iter().rev().find(|(n, _)| n == name) {
            return Some(v);
        }
        match name {
            "vu" => Some(self.vu),
            "iteration" => Some(self.iteration),
            _ => self.user.get(name).or_else(|| self.workload.vars.get(name)),
        }
    }
}

fn build_request(
    step: &Step,
    literal: Option<&Uri>,
    base: &BaseUrl,
    vars: &Vars<'_>,
    draws: &mut DrawRng,
) -> Request<Bytes> {
    // Built field by field: `Request::builder` moves the whole request head through
    // each call, which costs more than everything else here on the hot path.
    let lookup = |n: &str| vars.lookup(n);
    let body = match &step.body {
        Some(json) => Bytes::from(json.render(&lookup, draws).to_string()),
        None => Bytes::new(),
    };
    let mut req = Request::new(body);
    *req.method_mut() = step.method.clone();
    *req.uri_mut() = match literal {
        Some(uri) => uri.clone(),
        None => {
            let mut path = base.prefix.clone();
            step.path.render_into(&mut path, &lookup, draws);
            path.parse().unwrap_or_else(|_| Uri::from_static("/"))
        }
    };
    let headers = req.headers_mut();
    for (name, value) in &step.headers {
        let text = value.as_literal().map_or_else(|| value.render(&lookup, draws), str::to_owned);
        if let Ok(v) = HeaderValue::from_str(&text) {
            headers.append(name, v);
        }
    }
    if step.body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    req
}

fn take_captures(step: &Step, ex: &Exchange) -> Result<Vec<(String, Value)>, Outcome> {
    if step.captures.is_empty() {
        return Ok(Vec::new());
    }
    let missing = Outcome::Error(ErrorKind::Capture);
    let body = ex.body.as_ref().ok_or(missing)?;
    let json: Value = serde_json::from_slice(body).map_err(|_| missing)?;
    step.captures.iter().map(|c| Ok((c.name.clone(), json.pointer(&c.pointer).cloned().ok_or(missing)?))).collect()
}

/// The operation a step with an `op` invokes, as flow start `k` (its process: a flow
/// start does its steps one after another, as a Jepsen process does) at `at`.
fn invocation(spec: &OpSpec, k: u64, at: Duration, vars: &Vars<'_>) -> Op {
    let lookup = |n: &str| vars.lookup(n);
    // `op` templates draw nothing (the workload refuses draws there): any stream will do.
    let mut no_draws = draw_rng(0, 0);
    Op {
        index: 0,
        process: k,
        f: spec.f.clone(),
        key: spec.key.as_ref().map(|t| t.render(&lookup, &mut no_draws)),
        value: spec.value.as_ref().map_or(Value::Null, |t| t.render(&lookup, &mut no_draws)),
        result: None,
        outcome: OpType::Info,
        invoke_ns: u64::try_from(at.as_nanos()).unwrap_or(u64::MAX),
        complete_ns: 0,
    }
}

/// Runs flow `flow` as start number `k`, meant to start at offset `intended`.
pub(crate) async fn run_flow(
    shared: Arc<Shared>,
    flow: FlowId,
    k: u64,
    intended: Duration,
    transport: &mut impl Transport,
) {
    let ctx = &shared.ctx;
    let steps = &ctx.workload.flows[flow.0].steps;
    let empty = BTreeMap::new();
    let user = ctx.users.get(k).unwrap_or(&empty);
    let (vu, iteration) = (Value::from(k % ctx.users.count()), Value::from(k));
    let mut captures: Vec<(String, Value)> = Vec::new();
    let mut step_intended = intended;
    let (mut service, mut last_done) = (Duration::ZERO, intended);
    let mut flow_judgement = Judgement::NONE;
    let mut draws = draw_rng(ctx.workload.seed, k);
    for (i, step) in steps.iter().enumerate() {
        let vars = Vars { vu: &vu, iteration: &iteration, user, workload: &ctx.workload, captures: &captures };
        let literal = ctx.literal_uris[flow.0][i].as_ref();
        let req = build_request(step, literal, &ctx.base, &vars, &mut draws);
        let invoked = match (&step.op, &shared.history) {
            (Some(spec), Some(history)) => history.generic.invoke(invocation(spec, k, step_intended, &vars)),
            _ => None,
        };
        let ex = transport.exchange(req, keep(step)).await;
        let judgement = step.rules.judge(ex.outcome, &ex.headers, ex.body.as_deref());
        if let (Some(index), Some(spec), Some(history)) = (invoked, &step.op, &shared.history) {
            let done = operation::classify(spec, ex.outcome, judgement, ex.body.as_deref());
            let ns = |t: Instant| u64::try_from(t.saturating_duration_since(ctx.start).as_nanos()).unwrap_or(u64::MAX);
            history.generic.complete(index, done.outcome, done.result, ns(ex.sent), ns(ex.done));
        }
        flow_judgement = flow_judgement.and(judgement);
        let mut outcome = ex.outcome;
        // A wrong answer is not one to take values from or to go on after.
        let good = |o: Outcome| o.succeeded() && judgement.check != Check::Failed;
        if good(outcome) {
            match take_captures(step, &ex) {
                Ok(taken) => captures.extend(taken),
                Err(failed) => outcome = failed,
            }
        }
        let sample = Sample {
            intended: step_intended,
            sent: ex.sent.saturating_duration_since(ctx.start),
            done: ex.done.saturating_duration_since(ctx.start),
            outcome,
            judgement,
        };
        service += sample.done.saturating_sub(sample.sent);
        last_done = sample.done;
        let last = i + 1 == steps.len() || !good(outcome);
        if let Ok(mut rec) = shared.recorder.lock() {
            let id = rec.step_id(flow, i);
            rec.record_step(id, &sample);
            if last {
                // The flow's own record goes under the same lock.
                let sent = last_done.saturating_sub(service);
                let whole = Sample { intended, sent, done: last_done, outcome, judgement: flow_judgement };
                rec.record_flow(flow, &whole);
            }
        }
        if last {
            break;
        }
        step_intended = last_done;
        if !step.think.is_zero() {
            tokio::time::sleep(step.think).await;
            step_intended += step.think;
        }
    }
    shared.last_done.fetch_max(micros(last_done), Ordering::Relaxed);
    shared.in_flight.fetch_sub(1, Ordering::Relaxed);
}
