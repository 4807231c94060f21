//! The generator: runs the setup phase, then starts flows on schedule and records them.
//!
//! Open model: the `k`-th flow starts at the schedule's `k`-th arrival time whatever
//! happened to earlier flows. When `max_in_flight` flows are already running, the start
//! is *dropped* and counted, never postponed, so the offered rate is what the schedule
//! says or the run says it was not. Every loop is bounded: by the schedule's end, by
//! `max_requests`, and by a drain deadline after the schedule ends.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;
use tokio::time::sleep_until;

use super::client::{ClientConfig, ClientError, DedicatedConnection, HttpClient};
use super::flow::{run_flow, FlowContext, VirtualUsers};
use super::recorder::{FlowId, Recorder, UnknownScope};
use super::schedule::{ArrivalSchedule, OpenSchedule};
use super::starter::Starter;
use super::workload::Workload;

/// How a run is bounded and paced.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// When flows start.
    pub schedule: ArrivalSchedule,
    /// The most flows running at once (open model); further starts are dropped.
    pub max_in_flight: usize,
    /// Connections and per-request timeout.
    pub client: ClientConfig,
    /// Stop starting flows after this many (a hard bound whatever the schedule).
    pub max_flows: u64,
    /// How often the progress callback runs.
    pub tick: Duration,
    /// Where steps with `record` write their operations; its start is set to the
    /// measured phase's start, the clock a scenario's faults run on.
    pub history: Option<Arc<crate::checks::history::History>>,
    /// Flows meant to start before this offset run but are not measured: the system
    /// warms up first. Operations they record still go into `history`.
    pub warmup: Duration,
    /// Open model: the shortest time between two wake-ups of the starter; arrivals
    /// closer together start in one wake-up ([`DEFAULT_BATCH`] unless tuned).
    pub batch: Duration,
}

/// The starter's default wake-up floor: fine enough that a start is at most 0.2 ms late
/// by the generator's choice.
pub const DEFAULT_BATCH: Duration = Duration::from_micros(200);

/// The run could not be carried out.
#[derive(Debug, Error)]
pub enum RunError {
    /// No base URL in the workload nor on the command line.
    #[error("no base URL: give one on the command line or as `base_url` in the workload")]
    NoBaseUrl,
    /// The client could not be set up.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An SLO names a flow or step that does not exist.
    #[error(transparent)]
    Scope(#[from] UnknownScope),
    /// A setup step failed, so the virtual users are not ready.
    #[error("setup failed for virtual user {user} at step `{step}`: {outcome}")]
    Setup {
        /// The virtual user.
        user: u32,
        /// The step.
        step: String,
        /// What happened.
        outcome: String,
    },
}

/// A snapshot for the progress display.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    /// Time since the measured phase started.
    pub elapsed: Duration,
    /// Requests answered or failed so far.
    pub requests: u64,
    /// Of those, without a 2xx/3xx answer in time.
    pub errors: u64,
    /// Flow starts dropped at the in-flight limit.
    pub dropped: u64,
    /// Corrected p95 latency so far, milliseconds.
    pub p95_ms: f64,
    /// Flows running now.
    pub in_flight: usize,
}

impl Progress {
    /// Requests per second achieved so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

/// What the progress callback wants.
#[derive(Clone, Debug, PartialEq)]
pub enum Control {
    /// Go on.
    Continue,
    /// Stop starting flows, for this reason.
    Stop(String),
}

/// What a finished run hands back.
#[derive(Debug)]
pub struct RunResult {
    /// Everything recorded, time series closed.
    pub recorder: Recorder,
    /// From the start of the measured phase to the last answer.
    pub elapsed: Duration,
    /// Flow starts the schedule called for before the run ended.
    pub scheduled: u64,
    /// Flow starts that went out.
    pub started: u64,
    /// Why the run stopped early, if it did.
    pub stopped: Option<String>,
    /// Whether it ran the open model (latency from each request's intended send time,
    /// coordinated omission corrected) or a closed loop (from each request's send).
    pub open_model: bool,
}

impl RunResult {
    /// Seconds measured: the run without its warm-up.
    pub fn measured_secs(&self) -> f64 {
        self.elapsed.saturating_sub(self.recorder.warmup()).as_secs_f64()
    }

    /// Requests per second over the measured run, answered or failed.
    pub fn achieved_rate(&self) -> f64 {
        let secs = self.measured_secs();
        if secs > 0.0 {
            self.recorder.overall().total() as f64 / secs
        } else {
            0.0
        }
    }
}

/// Runs flows through a transport and on a clock the caller owns, recording into the
/// same [`Recorder`] and history as [`run`] does: for a simulated network, where the
/// pacer's timer and the TCP pool of [`run`] cannot go. The caller decides when each
/// flow starts (its arrival schedule) and hands each its own transport.
#[derive(Clone)]
pub struct FlowDriver {
    shared: Arc<Shared>,
}

impl FlowDriver {
    /// A driver over `ctx`, recording into `recorder` and, when given, `history`.
    pub fn new(ctx: FlowContext, recorder: Recorder, history: Option<Arc<crate::checks::history::History>>) -> Self {
        let shared = Shared {
            ctx,
            recorder: Mutex::new(recorder),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            history,
        };
        Self { shared: Arc::new(shared) }
    }

    /// What every flow shares.
    pub fn context(&self) -> &FlowContext {
        &self.shared.ctx
    }

    /// Flow `flow` as start number `k`, meant to start at offset `intended` from the
    /// context's start, through `transport`: counted in flight from this call (so the
    /// caller's next in-flight check sees it) until the returned future ends.
    pub fn run_flow<T: super::client::Transport + 'static>(
        &self,
        flow: FlowId,
        k: u64,
        intended: Duration,
        mut transport: T,
    ) -> impl std::future::Future<Output = ()> + 'static {
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        async move { run_flow(shared, flow, k, intended, &mut transport).await }
    }

    /// Flows started and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Records a start that did not happen (too many in flight).
    pub fn record_dropped(&self, flow: FlowId, intended: Duration) {
        if let Ok(mut rec) = self.shared.recorder.lock() {
            rec.record_dropped(flow, intended);
        }
    }

    /// A tick of the run at `elapsed`, as [`run`]'s pacer ticks: moves the recorder's
    /// clock and reports progress; the reason to stop, when an abort condition has
    /// tripped or `on_progress` asks to.
    pub fn tick(&self, elapsed: Duration, on_progress: &mut dyn FnMut(&Progress) -> Control) -> Option<String> {
        self.shared.tick(elapsed, on_progress)
    }

    /// Ends the run: the recorder, finished, and when the last answer came. A flow
    /// still running records into an empty stand-in from here on.
    pub fn finish(&self) -> Result<(Recorder, Duration), RunError> {
        let stand_in = Recorder::new(Vec::new(), &[], Duration::ZERO)?;
        let mut guard = self.shared.recorder.lock().unwrap_or_else(PoisonError::into_inner);
        let mut recorder = std::mem::replace(&mut *guard, stand_in);
        drop(guard);
        recorder.finish();
        Ok((recorder, Duration::from_micros(self.shared.last_done.load(Ordering::Relaxed))))
    }
}

/// Shared by the scheduler and every flow task.
pub(crate) struct Shared {
    pub(crate) ctx: FlowContext,
    pub(crate) recorder: Mutex<Recorder>,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) last_done: AtomicU64,
    pub(crate) history: Option<Arc<crate::checks::history::History>>,
}

impl Shared {
    /// Moves the recorder's clock to `elapsed` and shows `on_progress` the numbers so
    /// far; the reason the run must stop, if it must.
    fn tick(&self, elapsed: Duration, on_progress: &mut dyn FnMut(&Progress) -> Control) -> Option<String> {
        let progress = {
            let mut rec = self.recorder.lock().unwrap_or_else(PoisonError::into_inner);
            rec.advance(elapsed);
            if let Some(reason) = rec.abort_reason() {
                return Some(reason.to_owned());
            }
            let overall = rec.overall();
            Progress {
                elapsed,
                requests: overall.total(),
                errors: overall.failed(),
                dropped: rec.dropped(),
                p95_ms: overall.latency().value_at_quantile(0.95) as f64 / 1000.0,
                in_flight: self.in_flight.load(Ordering::Relaxed),
            }
        };
        match on_progress(&progress) {
            Control::Continue => None,
            Control::Stop(reason) => Some(reason),
        }
    }
}

/// Runs `workload` as `config` says, calling `on_progress` every tick.
pub async fn run(
    workload: Arc<Workload>,
    config: RunConfig,
    mut on_progress: impl FnMut(&Progress) -> Control,
) -> Result<RunResult, RunError> {
    let base = workload.base_url.clone().ok_or(RunError::NoBaseUrl)?;
    let client = HttpClient::new(&base.authority, config.client).await?;
    let layout =
        workload.flows.iter().map(|f| (f.name.clone(), f.steps.iter().map(|s| s.name.clone()).collect())).collect();
    let grace = config.client.timeout + Duration::from_secs(1);
    let mut recorder = Recorder::new(layout, &workload.slos, grace)?;
    recorder.exclude_warmup(config.warmup);
    let users = VirtualUsers::prepare(&workload, &client, &base).await?;
    let start = Instant::now();
    if let Some(history) = &config.history {
        history.begin(tokio::time::Instant::from_std(start));
    }
    let shared = Arc::new(Shared {
        ctx: FlowContext::new(workload.clone(), client, base, users, start),
        recorder: Mutex::new(recorder),
        in_flight: AtomicUsize::new(0),
        last_done: AtomicU64::new(0),
        history: config.history.clone(),
    });
    let mut pacer = Pacer {
        shared: &shared,
        config: &config,
        next_tick: start + config.tick,
        on_progress: &mut on_progress,
        stopped: None,
    };
    let (scheduled, started) = match &config.schedule {
        ArrivalSchedule::Open(open) => pacer.open(open).await,
        ArrivalSchedule::Closed { connections, duration } => pacer.closed(*connections, *duration).await,
    };
    let stopped = pacer.stopped.take();
    pacer.drain().await;
    // A flow still running past the drain deadline records into the empty stand-in.
    let stand_in = Recorder::new(Vec::new(), &[], grace)?;
    let mut guard = shared.recorder.lock().unwrap_or_else(PoisonError::into_inner);
    let mut recorder = std::mem::replace(&mut *guard, stand_in);
    drop(guard);
    recorder.finish();
    let stopped = stopped.or_else(|| recorder.abort_reason().map(str::to_owned));
    // A full run lasts at least its schedule, even when the last answer came sooner.
    let last_done = Duration::from_micros(shared.last_done.load(Ordering::Relaxed));
    let elapsed = if stopped.is_some() { last_done } else { last_done.max(config.schedule.duration()) };
    let open_model = matches!(config.schedule, ArrivalSchedule::Open(_));
    Ok(RunResult { recorder, elapsed, scheduled, started, stopped, open_model })
}

struct Pacer<'a, F> {
    shared: &'a Arc<Shared>,
    config: &'a RunConfig,
    next_tick: Instant,
    on_progress: &'a mut F,
    stopped: Option<String>,
}

impl<F: FnMut(&Progress) -> Control> Pacer<'_, F> {
    /// Starts flows at the schedule's arrival times (see [`Starter`]) and reports
    /// progress between them; returns (scheduled, started).
    async fn open(&mut self, open: &OpenSchedule) -> (u64, u64) {
        let shared = self.shared;
        let mut starter = Starter::new(open.clone(), self.config, shared);
        let start = shared.ctx.start;
        while starter.start_due(shared) {
            tokio::select! {
                biased;
                _ = sleep_until(self.next_tick.into()) => {
                    if self.tick(Instant::now()) {
                        break;
                    }
                }
                _ = starter.wait(start) => {}
            }
        }
        (starter.scheduled, starter.started)
    }

    /// Runs `connections` virtual users back to back until `duration` is over.
    async fn closed(&mut self, connections: usize, duration: Duration) -> (u64, u64) {
        let shared = self.shared;
        let end = shared.ctx.start + duration;
        let budget = Arc::new(AtomicU64::new(self.config.max_flows));
        let mut workers = tokio::task::JoinSet::new();
        for worker in 0..connections {
            let (shared, budget) = (shared.clone(), budget.clone());
            let seed = shared.ctx.workload.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            workers.spawn(async move {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let mut connection = DedicatedConnection::new(&shared.ctx.client);
                let total_weight = shared.ctx.workload.total_weight();
                let mut k = worker as u64;
                let mut started = 0u64;
                loop {
                    let at = shared.ctx.start.elapsed();
                    if at >= duration || !take_one(&budget) {
                        break;
                    }
                    let flow = FlowId(shared.ctx.workload.flow_for_ticket(rng.random_range(0..total_weight)));
                    shared.in_flight.fetch_add(1, Ordering::Relaxed);
                    run_flow(shared.clone(), flow, k, at, &mut connection).await;
                    k += connections as u64;
                    started += 1;
                }
                started
            });
        }
        loop {
            let now = Instant::now();
            if now >= end || self.stopped.is_some() || workers.is_empty() {
                break;
            }
            if now >= self.next_tick && self.tick(now) {
                budget.store(0, Ordering::Relaxed);
                break;
            }
            sleep_until(self.next_tick.min(end).into()).await;
        }
        let mut started = 0;
        while let Some(done) = workers.join_next().await {
            started += done.unwrap_or(0);
        }
        (started, started)
    }

    /// Reports progress; returns true when the run must stop.
    fn tick(&mut self, now: Instant) -> bool {
        self.next_tick = now + self.config.tick;
        let stop = self.shared.tick(now - self.shared.ctx.start, &mut *self.on_progress);
        let must = stop.is_some();
        if must {
            self.stopped = stop;
        }
        must
    }

    /// Waits for running flows to end, at most as long as the slowest possible flow.
    async fn drain(&mut self) {
        let deadline = Instant::now() + self.shared.ctx.longest_flow();
        let poll = Duration::from_millis(5);
        while self.shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            let now = Instant::now();
            if now >= self.next_tick {
                // A stop request while draining changes nothing: the starts are over.
                let _ = self.tick(now);
            }
            tokio::time::sleep(poll).await;
        }
    }
}

fn take_one(budget: &AtomicU64) -> bool {
    budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
}
