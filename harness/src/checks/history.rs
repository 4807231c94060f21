//! The operation history of a run, Jepsen-style: every state-changing operation the
//! load performed, with when it was invoked, when it completed, and how it ended.
//!
//! The load runner fills it (a workload step with `record = "place_order"` records one
//! [`Operation`] per request); the checkers read it after the run.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;

use crate::load::stats::{ErrorKind, Outcome};

/// The most operations one history keeps; later ones are counted, not kept.
pub const MAX_OPERATIONS: usize = 1_000_000;

/// How an operation ended, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    /// Acknowledged: a 2xx/3xx answer.
    Ok,
    /// Definitely not done: a 4xx answer, or the connection was never made.
    Fail,
    /// Indeterminate: a timeout, a reset, a 5xx. It may or may not have taken effect.
    Unknown,
}

impl OpOutcome {
    /// Classifies a request's outcome. A 5xx is indeterminate (a gateway may have
    /// timed out while the work went on); a refused connection never reached anyone.
    pub fn classify(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Status(s) if (200..400).contains(&s) => Self::Ok,
            Outcome::Status(s) if s < 500 => Self::Fail,
            Outcome::Status(_) => Self::Unknown,
            Outcome::Error(ErrorKind::ConnectRefused | ErrorKind::Connect) => Self::Fail,
            Outcome::Error(_) => Self::Unknown,
        }
    }

    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Unknown => "unknown",
        }
    }
}

/// One recorded operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// What it was (`place_order`, `register`), from the step's `record`.
    pub kind: String,
    /// When it was sent, from the start of the run.
    #[serde(serialize_with = "as_secs")]
    pub invoked: Duration,
    /// When it completed or failed, from the start of the run.
    #[serde(serialize_with = "as_secs")]
    pub completed: Duration,
    /// How it ended.
    pub outcome: OpOutcome,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The idempotency key it sent, if any.
    pub idempotency_key: Option<String>,
    /// The `id` it returned, if any (as text).
    pub returned_id: Option<String>,
    /// The `status` field it returned, if any (e.g. `PAID`).
    pub returned_status: Option<String>,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Operation {
    /// An operation from what a request sent and got back; `body` is the answer's body.
    pub fn from_exchange(
        kind: &str,
        invoked: Duration,
        completed: Duration,
        outcome: Outcome,
        idempotency_key: Option<String>,
        body: Option<&[u8]>,
    ) -> Self {
        let json: Option<serde_json::Value> = body.and_then(|b| serde_json::from_slice(b).ok());
        let text = |key: &str| {
            json.as_ref().and_then(|j| j.get(key)).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        };
        let mut op_outcome = OpOutcome::classify(outcome);
        let returned_id = text("id");
        // An acknowledgement we cannot read is not an acknowledgement we can check.
        if op_outcome == OpOutcome::Ok && returned_id.is_none() && kind == "place_order" {
            op_outcome = OpOutcome::Unknown;
        }
        Self {
            kind: kind.to_string(),
            invoked,
            completed,
            outcome: op_outcome,
            status: match outcome {
                Outcome::Status(s) => Some(s),
                Outcome::Error(_) => None,
            },
            idempotency_key,
            returned_id,
            returned_status: text("status"),
        }
    }
}

/// The history of one run, shared by the load runner (which writes it) and the
/// executor (which reads the run's start from it, so faults and load share one clock).
#[derive(Debug, Default)]
pub struct History {
    /// On tokio's clock, which is simulated time in a simulation.
    start: OnceLock<tokio::time::Instant>,
    ops: Mutex<Vec<Operation>>,
    overflow: std::sync::atomic::AtomicU64,
    /// The operations of steps with an `op`, for the generic checkers.
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

    /// Appends an operation (dropped and counted beyond [`MAX_OPERATIONS`]).
    pub fn record(&self, op: Operation) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if ops.len() < MAX_OPERATIONS {
            ops.push(op);
        } else {
            self.overflow.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Every operation so far, in completion order.
    pub fn operations(&self) -> Vec<Operation> {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Operations not kept because the history was full.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_classified_conservatively() {
        assert_eq!(OpOutcome::classify(Outcome::Status(201)), OpOutcome::Ok);
        assert_eq!(OpOutcome::classify(Outcome::Status(409)), OpOutcome::Fail);
        assert_eq!(OpOutcome::classify(Outcome::Status(504)), OpOutcome::Unknown);
        assert_eq!(OpOutcome::classify(Outcome::Error(ErrorKind::Timeout)), OpOutcome::Unknown);
        assert_eq!(OpOutcome::classify(Outcome::Error(ErrorKind::Reset)), OpOutcome::Unknown);
        assert_eq!(OpOutcome::classify(Outcome::Error(ErrorKind::ConnectRefused)), OpOutcome::Fail);
    }

    #[test]
    fn an_operation_keeps_what_it_returned() {
        let body = br#"{"id":"17","status":"PAID"}"#;
        let op = Operation::from_exchange(
            "place_order",
            Duration::from_millis(5),
            Duration::from_millis(9),
            Outcome::Status(201),
            Some("k-1".into()),
            Some(body),
        );
        assert_eq!(op.outcome, OpOutcome::Ok);
        assert_eq!(op.returned_id.as_deref(), Some("17"));
        assert_eq!(op.returned_status.as_deref(), Some("PAID"));
        let unreadable = Operation::from_exchange(
            "place_order",
            Duration::ZERO,
            Duration::ZERO,
            Outcome::Status(201),
            None,
            Some(b"<html>"),
        );
        assert_eq!(unreadable.outcome, OpOutcome::Unknown);
    }

    #[test]
    fn the_start_is_set_once() {
        let h = History::new();
        assert!(h.start().is_none());
        let t = tokio::time::Instant::now();
        h.begin(t);
        h.begin(t + Duration::from_secs(1));
        assert_eq!(h.start(), Some(t));
    }
}
