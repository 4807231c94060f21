//! The load generator in simulation: the harness's own flow driver (same workload, same
//! draws, same recorder and history) sending through the simulated network to the
//! ingress, paced on simulated time as the real generator paces on the host's clock.
//! The executor runs it through [`gauntlet::world::reach::Generator`], as it runs the
//! real one.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use gauntlet::load::client::{Exchange, HttpClient, Keep, Transport, MAX_CAPTURE_BODY};
use gauntlet::load::flow::{FlowContext, VirtualUsers};
use gauntlet::load::recorder::{FlowId, Recorder};
use gauntlet::load::runner::{FlowDriver, RunConfig, RunError, RunResult};
use gauntlet::load::schedule::ArrivalSchedule;
use gauntlet::load::stats::{ErrorKind, Outcome};
use gauntlet::load::workload::Workload;
use gauntlet::world::reach::{Generator, OnProgress};
use http::header::HOST;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The load generator of a simulated world, sending to its ingress (`fabric:<port>`).
pub struct SimLoad {
    pub ingress: String,
}

impl Generator for SimLoad {
    fn run(
        &self,
        workload: Arc<Workload>,
        config: RunConfig,
        on_progress: OnProgress,
    ) -> LocalBoxFuture<'static, anyhow::Result<RunResult>> {
        let ingress = self.ingress.clone();
        Box::pin(async move { Ok(run(&ingress, workload, config, on_progress).await?) })
    }
}

/// The real generator's run, on simulated time: setup, flows on the schedule (open
/// model: dropped at the in-flight limit, never postponed; or a closed loop), a tick of
/// progress and abort checks every `config.tick`, then the drain.
async fn run(
    authority: &str,
    workload: Arc<Workload>,
    config: RunConfig,
    mut on_progress: OnProgress,
) -> Result<RunResult, RunError> {
    let base = workload.base_url.clone().ok_or(RunError::NoBaseUrl)?;
    let anchor = std::time::Instant::now();
    let mut ingress = Ingress {
        authority: authority.to_string(),
        host: HeaderValue::from_str(authority).unwrap_or(HeaderValue::from_static("gateway")),
        permits: Arc::new(Semaphore::new(config.client.connections.max(1))),
        idle: Arc::default(),
        timeout: config.client.timeout,
        anchor,
        t0: Instant::now(),
    };
    let users = VirtualUsers::prepare_via(&workload, &mut ingress.clone(), &base).await?;
    let layout =
        workload.flows.iter().map(|f| (f.name.clone(), f.steps.iter().map(|s| s.name.clone()).collect())).collect();
    let mut recorder = Recorder::new(layout, &workload.slos, config.client.timeout + Duration::from_secs(1))?;
    recorder.exclude_warmup(config.warmup);

    // The load's clock starts here, for the flows, the faults and the charts alike.
    let t0 = Instant::now();
    ingress.t0 = t0;
    if let Some(history) = &config.history {
        history.begin(t0);
    }
    let detached = HttpClient::detached(authority, config.client.timeout)?;
    let context = FlowContext::new(workload.clone(), detached, base, users, anchor);
    let longest = context.longest_flow();
    let driver = FlowDriver::new(context, recorder, config.history.clone());

    let total_weight = workload.total_weight();
    let (mut scheduled, mut started, mut stopped) = (0u64, 0u64, None);
    let mut next_tick = t0 + config.tick;
    let open = match &config.schedule {
        ArrivalSchedule::Open(open) => Some(open),
        ArrivalSchedule::Closed { connections, duration } => {
            let closed = ClosedLoop { driver: &driver, workload: &workload, ingress: &ingress, t0, tick: config.tick };
            (started, stopped) = closed.run(*connections, *duration, config.max_flows, &mut on_progress).await;
            scheduled = started;
            None
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(workload.seed);
    while let Some(at) = open.and_then(|open| open.arrival(scheduled)).filter(|_| scheduled < config.max_flows) {
        while t0 + at > next_tick {
            tokio::time::sleep_until(next_tick).await;
            if let Some(why) = driver.tick(next_tick - t0, &mut on_progress) {
                stopped = Some(why);
                break;
            }
            next_tick += config.tick;
        }
        if stopped.is_some() {
            break;
        }
        tokio::time::sleep_until(t0 + at).await;
        let k = scheduled;
        scheduled += 1;
        let ticket = if total_weight > 1 { rng.random_range(0..total_weight) } else { 0 };
        let flow = FlowId(workload.flow_for_ticket(ticket));
        if driver.in_flight() >= config.max_in_flight {
            driver.record_dropped(flow, at);
            continue;
        }
        started += 1;
        tokio::task::spawn_local(driver.run_flow(flow, k, at, ingress.clone()));
    }
    // Drain: every flow started ends, within the longest a flow can take; a stop asked
    // for now changes nothing, the starts are over.
    let deadline = Instant::now() + longest;
    while driver.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if Instant::now() >= next_tick {
            let _ = driver.tick(Instant::now() - t0, &mut on_progress);
            next_tick = Instant::now() + config.tick;
        }
    }
    let (recorder, last_done) = driver.finish()?;
    let stopped = stopped.or_else(|| recorder.abort_reason().map(str::to_owned));
    let elapsed = if stopped.is_some() { last_done } else { last_done.max(config.schedule.duration()) };
    let open_model = open.is_some();
    Ok(RunResult { recorder, elapsed, scheduled, started, stopped, open_model })
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

/// A closed loop as the real runner runs it: virtual users, each on its own connection
/// with its own flow draws (seeded as the real runner seeds them), starting its next
/// flow when the last one ends.
struct ClosedLoop<'a> {
    driver: &'a FlowDriver,
    workload: &'a Workload,
    ingress: &'a Ingress,
    t0: Instant,
    tick: Duration,
}

impl ClosedLoop<'_> {
    /// Runs `connections` users until `duration` (at most `max_flows` flows in all);
    /// returns the flows started and why the run stopped early, if it did.
    async fn run(
        &self,
        connections: usize,
        duration: Duration,
        max_flows: u64,
        on_progress: &mut OnProgress,
    ) -> (u64, Option<String>) {
        let (driver, workload, t0) = (self.driver, self.workload, self.t0);
        let stop = Mutex::new(None::<String>);
        let budget = std::sync::atomic::AtomicU64::new(max_flows);
        let total_weight = workload.total_weight();
        let workers = (0..connections).map(|worker| {
            let own = Ingress { permits: Arc::new(Semaphore::new(1)), idle: Arc::default(), ..self.ingress.clone() };
            let (stop, budget) = (&stop, &budget);
            async move {
                let seed = workload.seed ^ (worker as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let (mut k, mut started) = (worker as u64, 0u64);
                loop {
                    let at = Instant::now() - t0;
                    let stopped = stop.lock().unwrap_or_else(PoisonError::into_inner).is_some();
                    let take = |n: u64| n.checked_sub(1);
                    let relaxed = std::sync::atomic::Ordering::Relaxed;
                    if at >= duration || stopped || budget.fetch_update(relaxed, relaxed, take).is_err() {
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
            let mut next = t0 + self.tick;
            while next - t0 <= duration {
                tokio::time::sleep_until(next).await;
                if let Some(why) = driver.tick(next - t0, &mut *on_progress) {
                    *stop.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                    return;
                }
                next += self.tick;
            }
        };
        let (started, ()) = tokio::join!(futures::future::join_all(workers), ticks);
        (started.iter().sum(), stop.into_inner().unwrap_or_else(PoisonError::into_inner))
    }
}
