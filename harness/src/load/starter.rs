//! The open-model starter: a plain thread that sleeps until each arrival time and
//! hands the flow to the async runtime.
//!
//! The runtime's timers have a 1 ms granularity and round up, which would make every
//! start up to a millisecond late, and that lateness would show in the corrected
//! latency. A thread sleeping with the OS timer wakes within tens of microseconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Handle;

use super::flow::run_flow;
use super::recorder::FlowId;
use super::runner::Shared;
use super::schedule::OpenSchedule;

/// The longest the starter sleeps before looking at the stop flag again.
const STOP_POLL: Duration = Duration::from_millis(20);

/// What the starter needs besides the shared run state.
pub(crate) struct Starter {
    pub(crate) schedule: OpenSchedule,
    pub(crate) max_flows: u64,
    pub(crate) max_in_flight: usize,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) runtime: Handle,
}

impl Starter {
    /// Starts flows at the schedule's arrival times until the schedule ends, `max_flows`
    /// is reached or `stop` is set; returns (scheduled, started). Blocks the thread.
    pub(crate) fn run(self, shared: Arc<Shared>) -> (u64, u64) {
        let ctx = &shared.ctx;
        let mut rng = StdRng::seed_from_u64(ctx.workload.seed);
        let total_weight = ctx.workload.total_weight();
        let (mut k, mut started) = (0u64, 0u64);
        while k < self.max_flows && !self.stop.load(Ordering::Relaxed) {
            let Some(at) = self.schedule.arrival(k) else { break };
            let due = ctx.start + at;
            let now = Instant::now();
            if due > now {
                std::thread::sleep((due - now).min(STOP_POLL));
                continue;
            }
            let ticket = if total_weight > 1 { rng.random_range(0..total_weight) } else { 0 };
            let flow = FlowId(ctx.workload.flow_for_ticket(ticket));
            if shared.in_flight.load(Ordering::Relaxed) >= self.max_in_flight {
                if let Ok(mut rec) = shared.recorder.lock() {
                    rec.record_dropped(flow, at);
                }
            } else {
                shared.in_flight.fetch_add(1, Ordering::Relaxed);
                started += 1;
                let (shared, mut client) = (shared.clone(), ctx.client.clone());
                self.runtime.spawn(async move { run_flow(shared, flow, k, at, &mut client).await });
            }
            k += 1;
        }
        (k, started)
    }
}
