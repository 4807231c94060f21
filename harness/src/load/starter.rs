//! The open-model starter: starts each flow at its arrival time from a task of the
//! runtime itself, whatever happened to earlier flows.
//!
//! No thread paces the schedule: the starter sleeps on a [`PreciseTimer`] until the
//! next arrival is due, then starts every flow due by then in one go. It wakes at most
//! once per `batch` ([`super::runner::DEFAULT_BATCH`], 200 µs, unless tuned), so at high
//! rates a wake-up starts several flows; that is the timer floor, and the most a start
//! is late by the starter's doing (each flow's latency still runs from its intended
//! time, and the recorder reports the actual lateness). A wake-up costs the same
//! whatever it starts, so a coarser batch spends less CPU per request at high rates.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::flow::run_flow;
use super::recorder::FlowId;
use super::runner::{RunConfig, Shared};
use super::schedule::OpenSchedule;
use super::timer::PreciseTimer;

/// Where the starter is in the schedule.
pub(crate) struct Starter {
    schedule: OpenSchedule,
    max_flows: u64,
    max_in_flight: usize,
    /// Draws the flow of each start, in start order: the same seed, the same flows.
    rng: ChaCha8Rng,
    total_weight: u64,
    timer: PreciseTimer,
    batch: Duration,
    last_wake: Option<Instant>,
    /// Arrivals handled so far (started or dropped).
    pub(crate) scheduled: u64,
    /// Flows started so far.
    pub(crate) started: u64,
}

impl Starter {
    /// A starter at the beginning of `schedule`, drawing flows from `seed`.
    pub(crate) fn new(schedule: OpenSchedule, config: &RunConfig, shared: &Shared) -> Self {
        let workload = &shared.ctx.workload;
        Self {
            schedule,
            max_flows: config.max_flows,
            max_in_flight: config.max_in_flight,
            batch: config.batch,
            rng: ChaCha8Rng::seed_from_u64(workload.seed),
            total_weight: workload.total_weight(),
            timer: PreciseTimer::new(),
            last_wake: None,
            scheduled: 0,
            started: 0,
        }
    }

    /// Starts (or drops, at the in-flight limit) every flow due by now; false once the
    /// schedule or `max_flows` is over.
    pub(crate) fn start_due(&mut self, shared: &Arc<Shared>) -> bool {
        let ctx = &shared.ctx;
        let elapsed = ctx.start.elapsed();
        while self.scheduled < self.max_flows {
            let Some(at) = self.schedule.arrival(self.scheduled) else { return false };
            if at > elapsed {
                return true;
            }
            let k = self.scheduled;
            self.scheduled += 1;
            let ticket = if self.total_weight > 1 { self.rng.random_range(0..self.total_weight) } else { 0 };
            let flow = FlowId(ctx.workload.flow_for_ticket(ticket));
            if shared.in_flight.load(Ordering::Relaxed) >= self.max_in_flight {
                if let Ok(mut rec) = shared.recorder.lock() {
                    rec.record_dropped(flow, at);
                }
                continue;
            }
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
            self.started += 1;
            let (shared, mut client) = (shared.clone(), ctx.client.clone());
            tokio::spawn(async move { run_flow(shared, flow, k, at, &mut client).await });
        }
        false
    }

    /// Waits until the next arrival is due, but no sooner than `batch` after the last
    /// wake-up.
    pub(crate) async fn wait(&mut self, start: Instant) {
        let Some(at) = self.schedule.arrival(self.scheduled) else { return };
        let mut due = start + at;
        if let Some(last) = self.last_wake {
            due = due.max(last + self.batch);
        }
        self.timer.sleep_until(due).await;
        self.last_wake = Some(Instant::now());
    }
}
