//! The shop's operations, read from the run's history file (`history.jsonl`, Jepsen's op
//! maps as Gauntlet writes them; `gauntlet schema history`).
//!
//! The shop's workload records a checkout as
//! `op = { f = "place_order", value = { key = "<idempotency key>" }, result = "" }`: the
//! invocation carries the key the request sent, an `ok` completion the order the answer
//! returned (its `id` and `status`).

use std::collections::BTreeMap;
use std::time::Duration;

use gauntlet::checks::op::{HistoryLine, OpType, ProcessId};
use serde::Serialize;
use serde_json::Value;

/// How an operation ended, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpOutcome {
    /// Acknowledged (`ok`).
    Ok,
    /// Definitely not done (`fail`: a 4xx answer, or the connection was never made).
    Fail,
    /// Indeterminate (`info`: a timeout, a reset, a 5xx). It may or may not have taken effect.
    Unknown,
}

/// One place-order operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// What it was (`place_order`), its history `f`.
    pub kind: String,
    /// When it was sent, from the start of the run.
    pub invoked: Duration,
    /// When it completed or failed, from the start of the run.
    pub completed: Duration,
    /// How it ended.
    pub outcome: OpOutcome,
    /// The idempotency key it sent, if any.
    pub idempotency_key: Option<String>,
    /// The `id` it returned, if any (as text).
    pub returned_id: Option<String>,
    /// The `status` field it returned, if any (e.g. `PAID`).
    pub returned_status: Option<String>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The operations of function `f` in a history file's lines, each invocation paired
/// with its process's next completion (a process does one operation at a time).
/// Completion order, as the checkers read it.
pub fn operations(lines: &[HistoryLine], f: &str) -> Vec<Operation> {
    let mut open: BTreeMap<u64, &HistoryLine> = BTreeMap::new();
    let mut ops = Vec::new();
    for line in lines.iter().filter(|l| l.f == f) {
        let ProcessId::Number(p) = line.process else { continue };
        if line.kind == OpType::Invoke {
            open.insert(p, line);
            continue;
        }
        let Some(invoke) = open.remove(&p) else { continue };
        let mut outcome = match line.kind {
            OpType::Ok => OpOutcome::Ok,
            OpType::Fail => OpOutcome::Fail,
            _ => OpOutcome::Unknown,
        };
        let (returned_id, returned_status) = match outcome {
            OpOutcome::Ok => (text(line.value.get("id")), text(line.value.get("status"))),
            _ => (None, None),
        };
        // An acknowledgement we cannot read is not an acknowledgement we can check.
        if outcome == OpOutcome::Ok && returned_id.is_none() {
            outcome = OpOutcome::Unknown;
        }
        ops.push(Operation {
            kind: f.to_string(),
            invoked: Duration::from_nanos(invoke.time),
            completed: Duration::from_nanos(line.time),
            outcome,
            idempotency_key: text(invoke.value.get("key")),
            returned_id,
            returned_status,
        });
    }
    // The run ended under these: indeterminate.
    for invoke in open.into_values() {
        ops.push(Operation {
            kind: f.to_string(),
            invoked: Duration::from_nanos(invoke.time),
            completed: Duration::from_nanos(invoke.time),
            outcome: OpOutcome::Unknown,
            idempotency_key: text(invoke.value.get("key")),
            returned_id: None,
            returned_status: None,
        });
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(kind: OpType, process: u64, value: Value, time: u64) -> HistoryLine {
        HistoryLine { kind, f: "place_order".into(), value, process: ProcessId::Number(process), time, index: 0 }
    }

    #[test]
    fn invocations_pair_with_their_process_completion() {
        let lines = [
            line(OpType::Invoke, 1, json!({"key": "k1"}), 10),
            line(OpType::Invoke, 2, json!({"key": "k2"}), 20),
            line(OpType::Info, 2, json!({"key": "k2"}), 25),
            line(OpType::Ok, 1, json!({"id": 17, "status": "PAID"}), 30),
            line(OpType::Invoke, 3, json!({"key": "k3"}), 40),
            line(OpType::Ok, 3, json!("<html>"), 45),
            line(OpType::Invoke, 4, json!({"key": "k4"}), 50),
        ];
        let ops = operations(&lines, "place_order");
        let k = |i: usize| ops[i].idempotency_key.as_deref();
        assert_eq!((k(0), ops[0].outcome), (Some("k2"), OpOutcome::Unknown));
        assert_eq!((k(1), ops[1].outcome, ops[1].returned_id.as_deref()), (Some("k1"), OpOutcome::Ok, Some("17")));
        assert_eq!(ops[1].returned_status.as_deref(), Some("PAID"));
        assert_eq!((ops[1].invoked, ops[1].completed), (Duration::from_nanos(10), Duration::from_nanos(30)));
        // An acknowledgement whose order cannot be read, and one the run ended under.
        assert_eq!((k(2), ops[2].outcome), (Some("k3"), OpOutcome::Unknown));
        assert_eq!((k(3), ops[3].outcome), (Some("k4"), OpOutcome::Unknown));
        assert!(operations(&lines, "register").is_empty());
    }
}
