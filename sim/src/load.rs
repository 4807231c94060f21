//! The load generator in simulation: the harness's own flow driver (same workload, same
//! draws, same recorder and history) sending through the simulated network to the
//! ingress, on simulated time; the fault timeline; then settling and reading the shop's
//! state for the checkers.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use gauntlet::checks::history::{History, Operation};
use gauntlet::checks::state::ShopState;
use gauntlet::cluster::plan::Slot;
use gauntlet::cluster::NodeOp;
use gauntlet::load::client::{Exchange, HttpClient, Keep, Transport, MAX_CAPTURE_BODY};
use gauntlet::load::flow::{FlowContext, VirtualUsers};
use gauntlet::load::recorder::{FlowId, Recorder};
use gauntlet::load::runner::{FlowDriver, RunResult};
use gauntlet::load::schedule::ArrivalSchedule;
use gauntlet::load::slo::Gauge;
use gauntlet::load::stats::{ErrorKind, Outcome};
use gauntlet::load::workload::BaseUrl;
use gauntlet::scenario::effect::Traffic;
use gauntlet::scenario::executor;
use gauntlet::scenario::gauges::{self, GaugeSamples};
use gauntlet::scenario::{FaultAction, FaultTarget, Scenario};
use http::header::HOST;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::fabric::Link;

/// How often the run checks its abort conditions, as the real pacer's tick.
const TICK: Duration = Duration::from_millis(500);

/// What happened to one fault of the timeline.
#[derive(Clone, Debug, Default)]
pub struct FaultLog {
    /// When it was put in place and when taken away, from the load's start.
    pub applied: Option<Duration>,
    pub removed: Option<Duration>,
    /// A node operation on orders: the orders not yet terminal just before it struck.
    pub in_flight: Option<BTreeSet<String>>,
    /// A node operation: bytes and connections in and out of the node from the load's
    /// start until it struck (proof the node was in use).
    pub traffic_before: Option<Traffic>,
    /// Why it could not be applied, if it could not.
    pub error: Option<String>,
}

/// Per fault, in scenario order.
pub type FaultTimes = Vec<FaultLog>;

/// What the timeline asks of the simulation's owner, which alone can crash and restart
/// hosts; applied before the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostCommand {
    Crash(String),
    Restart(String),
    /// SIGSTOP: every message to and from the host waits in the network.
    Hold(String),
    /// SIGCONT: what waited is delivered.
    Release(String),
}

/// The queue of [`HostCommand`]s.
pub type Commands = Arc<Mutex<Vec<HostCommand>>>;

/// Per node (host name), its current incarnation's stop switch and whether it has
/// stopped serving (a graceful stop).
pub type Stops = Arc<
    Mutex<std::collections::BTreeMap<String, (tokio::sync::watch::Sender<bool>, Arc<std::sync::atomic::AtomicBool>)>>,
>;

/// What the load host hands back when the simulation ends.
pub struct LoadOutput {
    /// Why the steady state did not hold before the load, if it did not.
    pub steady_before: Option<String>,
    pub result: Option<RunResult>,
    pub history: Vec<Operation>,
    pub history_complete: bool,
    /// Per fault: when it was put in place and taken away, from the load's start.
    pub fault_times: FaultTimes,
    /// The settled state and how long settling took, or why it could not be read.
    pub state: Result<(ShopState, Duration), String>,
    /// Why the steady state did not hold again after recovery, if it did not.
    pub steady_after: Option<String>,
    /// Simulated time when the load started and when everything ended.
    pub started: Duration,
    pub ended: Duration,
    /// The service gauges, sampled while the load ran.
    pub gauges: GaugeSamples,
}

/// Where the load goes and what it reads at the end.
pub struct Targets {
    /// The ingress slots' fabric addresses (`fabric:<port>`), one per gateway replica.
    pub ingress: String,
    /// Each service's admin base address (`orders-0:7003`), for its state.
    pub admin: AdminHosts,
    /// Every slot with its link on the fabric, for the fault timeline.
    pub links: Vec<(Slot, Link)>,
    /// Where node operations go.
    pub commands: Commands,
    /// The nodes' stop switches.
    pub stops: Stops,
    /// The service gauges the SLOs name, each with its node's `/metrics` URL.
    pub gauges: Vec<(Gauge, String)>,
}

/// The services whose admin state the checkers read.
pub struct AdminHosts {
    pub orders: String,
    pub payments: String,
    pub catalog: String,
    pub token: String,
}

impl AdminHosts {
    /// The orders node and the token, for reading orders in flight.
    fn orders_state(&self) -> (String, String) {
        (self.orders.clone(), self.token.clone())
    }
}

/// The ingress, as the load's client sees it: a keep-alive pool of at most
/// `connections`, each request within `timeout`, stamped on the simulated clock.
#[derive(Clone)]
struct Ingress {
    authority: String,
    host: HeaderValue,
    permits: Arc<Semaphore>,
    idle: Arc<Mutex<Vec<SendRequest<Full<Bytes>>>>>,
    timeout: Duration,
    /// The flow context's start on the std clock, and the same moment simulated: an
    /// exchange is stamped `anchor + (simulated now - t0)`, so only simulated time counts.
    anchor: std::time::Instant,
    t0: Instant,
}

impl Ingress {
    fn stamp(&self, t: Instant) -> std::time::Instant {
        self.anchor + t.saturating_duration_since(self.t0)
    }

    /// One request; a reused connection that the server closed before answering is
    /// replaced once for a request that may be repeated, as the real client does.
    async fn attempt(&self, req: Request<Bytes>, keep: Keep<'_>, sent: &mut Instant) -> Result<Answer, ErrorKind> {
        let _permit = self.permits.acquire().await.map_err(|_| ErrorKind::Protocol)?;
        let pooled = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop().filter(|s| !s.is_closed());
        let reused = pooled.is_some();
        let again = (reused && req.method().is_idempotent()).then(|| {
            let mut copy = Request::new(req.body().clone());
            *copy.method_mut() = req.method().clone();
            *copy.uri_mut() = req.uri().clone();
            *copy.headers_mut() = req.headers().clone();
            copy
        });
        match (self.once(req, keep, sent, pooled).await, again) {
            (Err((ErrorKind::Reset, true)), Some(again)) => {
                self.once(again, keep, sent, None).await.map_err(|(kind, _)| kind)
            }
            (other, _) => other.map_err(|(kind, _)| kind),
        }
    }

    /// One exchange on `pooled` or a new connection; a failure says whether nothing of
    /// an answer had come.
    async fn once(
        &self,
        req: Request<Bytes>,
        keep: Keep<'_>,
        sent: &mut Instant,
        pooled: Option<SendRequest<Full<Bytes>>>,
    ) -> Result<Answer, (ErrorKind, bool)> {
        let mut sender = match pooled {
            Some(s) => s,
            None => crate::net::connect(&self.authority).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::ConnectionRefused => (ErrorKind::ConnectRefused, true),
                _ => (ErrorKind::Connect, true),
            })?,
        };
        // The request goes out once a connection is in hand.
        *sent = Instant::now();
        sender.ready().await.map_err(|_| (ErrorKind::Reset, true))?;
        let res = sender.send_request(req.map(Full::new)).await.map_err(|e| {
            if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
                (ErrorKind::Reset, true)
            } else {
                (ErrorKind::Protocol, true)
            }
        })?;
        let status = res.status().as_u16();
        let headers = keep
            .headers
            .iter()
            .filter_map(|name| res.headers().get(name).map(|v| (name.clone(), v.clone())))
            .collect::<Vec<_>>();
        let body = res.into_body().collect().await.map_err(|_| (ErrorKind::Reset, false))?.to_bytes();
        if !sender.is_closed() {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(sender);
        }
        let body = (keep.body && body.len() <= MAX_CAPTURE_BODY).then_some(body);
        Ok(Answer { status, body, headers })
    }
}

struct Answer {
    status: u16,
    body: Option<Bytes>,
    headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl Transport for Ingress {
    async fn exchange(&mut self, mut req: Request<Bytes>, keep: Keep<'_>) -> Exchange {
        req.headers_mut().insert(HOST, self.host.clone());
        let mut sent = Instant::now();
        let result = tokio::time::timeout(self.timeout, self.attempt(req, keep, &mut sent)).await;
        let done = Instant::now();
        let (outcome, body, headers) = match result {
            Ok(Ok(a)) => (Outcome::Status(a.status), a.body, a.headers),
            Ok(Err(kind)) => (Outcome::Error(kind), None, Vec::new()),
            Err(_) => (Outcome::Error(ErrorKind::Timeout), None, Vec::new()),
        };
        Exchange { sent: self.stamp(sent), done: self.stamp(done), outcome, body, headers }
    }
}

/// Runs the whole experiment from the load host: steady state, load with the fault
/// timeline, drain, settle, state, steady state again.
pub async fn drive(scenario: Arc<Scenario>, targets: Targets, out: Arc<Mutex<Option<LoadOutput>>>) {
    let output = run(&scenario, &targets).await;
    *out.lock().unwrap_or_else(PoisonError::into_inner) = Some(output);
}

async fn run(scenario: &Scenario, targets: &Targets) -> LoadOutput {
    let sim_start = Instant::now();
    let since = |t: Instant| t.saturating_duration_since(sim_start);
    let mut output = LoadOutput {
        steady_before: None,
        result: None,
        history: Vec::new(),
        history_complete: true,
        fault_times: vec![FaultLog::default(); scenario.faults.len()],
        state: Err("the run ended before the state was read".into()),
        steady_after: None,
        started: Duration::ZERO,
        ended: Duration::ZERO,
        gauges: GaugeSamples::default(),
    };
    let plan = &scenario.load;
    let anchor = std::time::Instant::now();
    let mut ingress = Ingress {
        authority: targets.ingress.clone(),
        host: HeaderValue::from_str(&targets.ingress).unwrap_or(HeaderValue::from_static("gateway")),
        permits: Arc::new(Semaphore::new(plan.connections.max(1))),
        idle: Arc::default(),
        timeout: plan.timeout,
        anchor,
        t0: sim_start,
    };
    if let Err(why) = steady_state(scenario, &ingress).await {
        output.steady_before = Some(why);
        output.ended = since(Instant::now());
        return output;
    }
    let base = BaseUrl { authority: targets.ingress.clone(), prefix: String::new() };
    let mut workload = plan.workload.clone();
    workload.base_url = Some(base.clone());
    let workload = Arc::new(workload);
    let users = match VirtualUsers::prepare_via(&workload, &mut ingress.clone(), &base).await {
        Ok(u) => u,
        Err(e) => {
            output.steady_before = Some(format!("the workload's setup failed: {e}"));
            output.ended = since(Instant::now());
            return output;
        }
    };
    let layout =
        workload.flows.iter().map(|f| (f.name.clone(), f.steps.iter().map(|s| s.name.clone()).collect())).collect();
    let grace = plan.timeout + Duration::from_secs(1);
    let mut recorder = match Recorder::new(layout, &workload.slos, grace) {
        Ok(r) => r,
        Err(e) => {
            output.steady_before = Some(format!("the workload's SLOs: {e}"));
            return output;
        }
    };
    recorder.exclude_warmup(plan.warmup);

    // The load's clock starts here, for the flows, the faults and the charts alike.
    let t0 = Instant::now();
    output.started = since(t0);
    ingress.t0 = t0;
    let Ok(detached) = HttpClient::detached(&targets.ingress, plan.timeout) else {
        output.steady_before = Some(format!("bad ingress authority {}", targets.ingress));
        return output;
    };
    let history = Arc::new(History::new());
    let context = FlowContext::new(workload.clone(), detached, base, users, anchor);
    let longest = context.longest_flow();
    let driver = FlowDriver::new(context, recorder, Some(history.clone()));

    // Service gauges, read once a second as the real executor reads them, directly from
    // the node (not through the fabric).
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = (!targets.gauges.is_empty()).then(|| {
        tokio::task::spawn_local(gauges::sample_with(targets.gauges.clone(), t0, sampling.clone(), |url| async move {
            use shop_kit::platform::Transport as _;
            let mut req = Request::new(Bytes::new());
            *req.uri_mut() = url.parse().ok()?;
            let res = tokio::time::timeout(gauges::READ_TIMEOUT, crate::net::SimHttp::default().send(req))
                .await
                .ok()?
                .ok()?;
            res.status().is_success().then(|| String::from_utf8_lossy(res.body()).into_owned())
        }))
    });
    let times = Arc::new(Mutex::new(output.fault_times.clone()));
    let timeline = tokio::task::spawn_local(fault_timeline(
        scenario.faults.clone(),
        targets.links.clone(),
        targets.commands.clone(),
        targets.stops.clone(),
        targets.admin.orders_state(),
        t0,
        times.clone(),
    ));

    let total_weight = workload.total_weight();
    let (mut scheduled, mut started, mut stopped) = (0u64, 0u64, None);
    let mut next_tick = t0 + TICK;
    let open = match &plan.schedule {
        ArrivalSchedule::Open(open) => Some(open),
        ArrivalSchedule::Closed { connections, duration } => {
            (started, stopped) = closed_loop(&driver, &workload, &ingress, *connections, *duration, t0).await;
            scheduled = started;
            None
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(workload.seed);
    while let Some(at) = open.and_then(|open| open.arrival(scheduled)) {
        while t0 + at > next_tick {
            tokio::time::sleep_until(next_tick).await;
            if let Some(why) = driver.advance(next_tick - t0) {
                stopped = Some(why);
                break;
            }
            next_tick += TICK;
        }
        if stopped.is_some() {
            break;
        }
        tokio::time::sleep_until(t0 + at).await;
        let k = scheduled;
        scheduled += 1;
        let ticket = if total_weight > 1 { rng.random_range(0..total_weight) } else { 0 };
        let flow = FlowId(workload.flow_for_ticket(ticket));
        if driver.in_flight() >= plan.max_in_flight {
            driver.record_dropped(flow, at);
            continue;
        }
        started += 1;
        tokio::task::spawn_local(driver.run_flow(flow, k, at, ingress.clone()));
    }
    // Drain: every flow started ends, within the longest a flow can take.
    let deadline = Instant::now() + longest;
    while driver.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = driver.advance(Instant::now() - t0);
    }
    sampling.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(sampler) = sampler {
        output.gauges = sampler.await.unwrap_or_default();
    }
    // Whatever the load did, every fault comes off.
    let _ = timeline.await;
    output.fault_times = times.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let (recorder, last_done) = match driver.finish() {
        Ok(r) => r,
        Err(e) => {
            output.steady_before = Some(format!("the recorder: {e}"));
            return output;
        }
    };
    let stopped = stopped.or_else(|| recorder.abort_reason().map(str::to_owned));
    let elapsed = if stopped.is_some() { last_done } else { last_done.max(plan.schedule.duration()) };
    let open_model = open.is_some();
    output.result = Some(RunResult { recorder, elapsed, scheduled, started, stopped, open_model });
    output.history = history.operations();
    output.history_complete = history.overflow() == 0;

    let http = crate::net::SimHttp::default();
    output.state = executor::settle_with(|| read_state(&http, &targets.admin), scenario.recovery.settle).await;
    if let Err(why) = steady_state(scenario, &ingress).await {
        output.steady_after = Some(why);
    }
    output.ended = since(Instant::now());
    output
}

/// Puts each fault in place at its offset from `t0` and takes it away at its end,
/// recording when each happened and what it found.
async fn fault_timeline(
    faults: Vec<gauntlet::scenario::Fault>,
    all: Vec<(Slot, Link)>,
    commands: Commands,
    stops: Stops,
    orders: (String, String),
    t0: Instant,
    log: Arc<Mutex<FaultTimes>>,
) {
    let start_totals: Vec<(u64, u64)> = all.iter().map(|(_, l)| l.totals()).collect();
    let tasks = faults.iter().enumerate().map(|(i, fault)| {
        // The links it acts on: an edge's slots, or, for a node, every slot into it and
        // every slot carrying its own calls.
        let touching: Vec<(usize, Link)> = all
            .iter()
            .enumerate()
            .filter(|(_, (slot, _))| match &fault.target {
                FaultTarget::Edge { edge, replica } => slot.edge == *edge && replica.is_none_or(|r| r == slot.replica),
                FaultTarget::Node(id) => (slot.edge.to == id.service && slot.replica == id.replica) || slot.serves(id),
            })
            .map(|(k, (_, link))| (k, link.clone()))
            .collect();
        let (log, commands, orders, stops) = (log.clone(), commands.clone(), orders.clone(), stops.clone());
        let (action, target, at, until) = (fault.action.clone(), fault.target.clone(), fault.at, fault.until);
        let start_totals = start_totals.clone();
        async move {
            let record = |f: &dyn Fn(&mut FaultLog)| f(&mut log.lock().unwrap_or_else(PoisonError::into_inner)[i]);
            tokio::time::sleep_until(t0 + at).await;
            match (&action, &target) {
                (FaultAction::Node(op), FaultTarget::Node(id)) => {
                    let mut traffic = Traffic::default();
                    for (k, link) in &touching {
                        let (bytes, conns) = link.totals();
                        traffic.bytes += bytes - start_totals[*k].0;
                        traffic.connections += conns - start_totals[*k].1;
                    }
                    record(&|l| l.traffic_before = Some(traffic));
                    if id.service == "orders" {
                        // Before it strikes: once orders is down its state cannot be read.
                        if let Ok(state) = read_orders(&orders).await {
                            record(&|l| l.in_flight = Some(state.clone()));
                        }
                    }
                    let host = id.to_string();
                    match op {
                        NodeOp::Kill => commands
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(HostCommand::Crash(host.clone())),
                        NodeOp::Restart => commands
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(HostCommand::Restart(host.clone())),
                        NodeOp::Stop => {
                            // SIGTERM: the node stops accepting and finishes what is in
                            // flight, then its process is gone.
                            let switch = stops.lock().unwrap_or_else(PoisonError::into_inner).get(&host).cloned();
                            if let Some((stop, stopped)) = switch {
                                let _ = stop.send(true);
                                let deadline = Instant::now() + Duration::from_secs(120);
                                while !stopped.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                                    tokio::time::sleep(Duration::from_millis(1)).await;
                                }
                            }
                            commands
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(HostCommand::Crash(host.clone()));
                        }
                        NodeOp::Partition => {
                            for (_, link) in &touching {
                                link.apply(i, &FaultAction::Down);
                            }
                        }
                        NodeOp::Pause => commands
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(HostCommand::Hold(host.clone())),
                        other => {
                            let why = format!("node operation {other:?} is not simulated");
                            record(&|l| l.error = Some(why.clone()));
                            return;
                        }
                    }
                    record(&|l| l.applied = Some(Instant::now() - t0));
                    if *op == NodeOp::Restart {
                        return; // instant: nothing to undo
                    }
                    tokio::time::sleep_until(t0 + until).await;
                    match op {
                        NodeOp::Kill | NodeOp::Stop => {
                            commands.lock().unwrap_or_else(PoisonError::into_inner).push(HostCommand::Restart(host))
                        }
                        NodeOp::Pause => {
                            commands.lock().unwrap_or_else(PoisonError::into_inner).push(HostCommand::Release(host))
                        }
                        _ => {
                            for (_, link) in &touching {
                                link.remove(i);
                            }
                        }
                    }
                    record(&|l| l.removed = Some(Instant::now() - t0));
                }
                _ => {
                    for (_, link) in &touching {
                        link.apply(i, &action);
                    }
                    record(&|l| l.applied = Some(Instant::now() - t0));
                    tokio::time::sleep_until(t0 + until).await;
                    for (_, link) in &touching {
                        link.remove(i);
                    }
                    record(&|l| l.removed = Some(Instant::now() - t0));
                }
            }
        }
    });
    futures::future::join_all(tasks).await;
}

/// The ids of the orders not yet terminal, from orders' admin state at `(host, token)`.
async fn read_orders((host, token): &(String, String)) -> Result<BTreeSet<String>, String> {
    let text = admin_get(&crate::net::SimHttp::default(), host, token).await?;
    let state = ShopState::from_orders_json(&text).map_err(|e| format!("{e:#}"))?;
    Ok(state.into_iter().filter(|o| !o.is_terminal()).map(|o| o.id).collect())
}

/// A closed loop as the real runner runs it: `connections` virtual users, each on its own
/// connection with its own flow draws (seeded as the real runner seeds them), starting
/// its next flow when the last one ends, until `duration`. Returns the flows started
/// and why the run stopped early, if it did.
async fn closed_loop(
    driver: &FlowDriver,
    workload: &gauntlet::load::workload::Workload,
    ingress: &Ingress,
    connections: usize,
    duration: Duration,
    t0: Instant,
) -> (u64, Option<String>) {
    let stop = std::cell::RefCell::new(None::<String>);
    let total_weight = workload.total_weight();
    let workers = (0..connections).map(|worker| {
        let own = Ingress { permits: Arc::new(Semaphore::new(1)), idle: Arc::default(), ..ingress.clone() };
        let stop = &stop;
        async move {
            let seed = workload.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let (mut k, mut started) = (worker as u64, 0u64);
            loop {
                let at = Instant::now() - t0;
                if at >= duration || stop.borrow().is_some() {
                    break started;
                }
                let flow = FlowId(workload.flow_for_ticket(rng.random_range(0..total_weight)));
                driver.run_flow(flow, k, at, own.clone()).await;
                k += connections as u64;
                started += 1;
            }
        }
    });
    let ticks = async {
        let mut next = t0 + TICK;
        while next - t0 <= duration {
            tokio::time::sleep_until(next).await;
            if let Some(why) = driver.advance(next - t0) {
                *stop.borrow_mut() = Some(why);
                return;
            }
            next += TICK;
        }
    };
    let (started, ()) = tokio::join!(futures::future::join_all(workers), ticks);
    (started.iter().sum(), stop.take())
}

/// Every probe answers what it expects, within the steady state's timeout, as the real
/// executor probes.
async fn steady_state(scenario: &Scenario, ingress: &Ingress) -> Result<(), String> {
    executor::probe_steady_state(&scenario.steady_state, |path| {
        let (mut ingress, path) = (ingress.clone(), path.to_string());
        async move {
            let mut req = Request::new(Bytes::new());
            *req.uri_mut() = path.parse().map_err(|e| format!("bad path {path}: {e}"))?;
            match ingress.exchange(req, Keep::default()).await.outcome {
                Outcome::Status(status) => Ok(status),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
}

/// The services' admin state, read once over simulated HTTP.
async fn read_state(http: &crate::net::SimHttp, admin: &AdminHosts) -> Result<ShopState, String> {
    let orders = admin_get(http, &admin.orders, &admin.token).await?;
    let payments = admin_get(http, &admin.payments, &admin.token).await?;
    let catalog = admin_get(http, &admin.catalog, &admin.token).await?;
    ShopState::from_admin_json(&orders, &payments, &catalog, None).map_err(|e| format!("{e:#}"))
}

/// `GET /v1/admin/state` of the node at `host`, within 10 s.
async fn admin_get(http: &crate::net::SimHttp, host: &str, token: &str) -> Result<String, String> {
    use shop_kit::platform::Transport as _;
    let mut req = Request::new(Bytes::new());
    *req.uri_mut() = format!("http://{host}/v1/admin/state").parse().map_err(|e| format!("{host}: {e}"))?;
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {token}")) {
        req.headers_mut().insert(http::header::AUTHORIZATION, v);
    }
    let res = tokio::time::timeout(Duration::from_secs(10), http.send(req))
        .await
        .map_err(|_| format!("{host}: no admin state within 10s"))??;
    let text = String::from_utf8_lossy(res.body()).into_owned();
    if !res.status().is_success() {
        return Err(format!("{host} admin state answered {}: {text}", res.status()));
    }
    Ok(text)
}
