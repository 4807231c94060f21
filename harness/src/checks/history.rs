//! The history of one run: the operations of workload steps with an `op`
//! ([`super::op::OpLog`]), on the clock the executor's timeline runs on.

use std::sync::OnceLock;

/// The history of one run, shared by the load runner (which writes it) and the
/// executor (which reads the run's start from it, so faults and load share one clock).
#[derive(Debug, Default)]
pub struct History {
    /// On tokio's clock, which is simulated time in a simulation.
    start: OnceLock<tokio::time::Instant>,
    /// The operations of steps with an `op`, for the checkers.
    pub generic: super::op::OpLog,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the instant the measured phase started (the first call wins), on tokio's
    /// clock: the executor's timeline runs on it in every world.
    pub fn begin(&self, start: tokio::time::Instant) {
        let _ = self.start.set(start);
    }

    /// The instant the measured phase started, once it has.
    pub fn start(&self) -> Option<tokio::time::Instant> {
        self.start.get().copied()
    }
}
