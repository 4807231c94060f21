//! Jepsen's operation history, for any system: what a workload step did (`f`), the
//! value it carried, which virtual user did it, when it was invoked and completed, and
//! how it ended (`ok`, `fail` or `info`).
//!
//! A history file is JSON Lines, two lines per operation (its invocation, then its
//! completion), whose fields map one to one onto Jepsen's op maps: `type`, `f`,
//! `value`, `process`, `time` (nanoseconds from the start of the run) and `index`. A
//! keyed operation's value is written as Jepsen's independent tuple `[key, value]`.
//! In memory an operation is one [`Op`], invocation and completion together, which is
//! what every checker wants.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most operations one history keeps; past it every checker that needs the whole
/// history is `unknown`.
pub const MAX_OPS: usize = 1_000_000;

/// How an operation ended, in Jepsen's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// The invocation (only in the file: in memory an [`Op`] holds both halves).
    Invoke,
    /// It happened: the step's `expect` held (a 2xx without one).
    Ok,
    /// It did not happen: an answer said so (a 4xx by default).
    Fail,
    /// Indeterminate: a timeout, a reset, a 5xx. It may or may not have happened, and
    /// it may take effect at any time after its invocation.
    Info,
}

impl OpType {
    /// Its name in the history file and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invoke => "invoke",
            Self::Ok => "ok",
            Self::Fail => "fail",
            Self::Info => "info",
        }
    }
}

/// One operation: its invocation and its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    /// Its place in the history, in invocation order (0-based, unique).
    pub index: u64,
    /// The process (virtual user) that did it. Final reads use [`FINAL_PROCESS`].
    pub process: u64,
    /// What it was, e.g. `add`, `read`, `write`, `cas`, `enqueue`, `generate`.
    pub f: String,
    /// The key it acted on, for checkers that check each key on its own.
    pub key: Option<String>,
    /// The value it was invoked with (what it added or wrote; `[old, new]` for a
    /// `cas`), or `null` (a read).
    pub value: Value,
    /// The value its completion carried (what a read returned, an id the system
    /// generated), when it carried one.
    pub result: Option<Value>,
    /// How it ended: `Ok`, `Fail` or `Info`, never `Invoke`.
    pub outcome: OpType,
    /// When it was invoked, in nanoseconds from the start of the run.
    pub invoke_ns: u64,
    /// When it completed (or the client gave up on it), in nanoseconds from the start.
    pub complete_ns: u64,
}

/// The process number of final reads, which no virtual user has.
pub const FINAL_PROCESS: u64 = u64::MAX;

impl Op {
    /// What it returned if it carried a result, else the value it was invoked with:
    /// Jepsen's completion `value`.
    pub fn completion_value(&self) -> &Value {
        self.result.as_ref().unwrap_or(&self.value)
    }
}

/// The operations of one run and the final reads taken once faults healed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpHistory {
    /// Every operation of the run, in invocation order (`index` ascending).
    pub ops: Vec<Op>,
    /// The final reads, in the order they were taken (also [`Op`]s, with
    /// [`FINAL_PROCESS`]).
    pub final_reads: Vec<Op>,
    /// Operations not kept because the history was full.
    pub dropped: u64,
}

impl OpHistory {
    /// Whether every operation of the run was kept.
    pub fn complete(&self) -> bool {
        self.dropped == 0
    }
}

/// An element of a set or queue as a comparable key: a string as itself, anything else
/// as its compact JSON text, so `1` and `"1"` are one element: stores often give back
/// as text what was sent as a number.
pub fn element_key(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The operations of a run as the load records them, from many tasks at once: each is
/// kept at its invocation (as `info`, so one the run ended under stays indeterminate)
/// and completed in place. Bounded by [`MAX_OPS`]; past it operations are counted,
/// not kept.
#[derive(Debug, Default)]
pub struct OpLog {
    ops: std::sync::Mutex<Vec<Op>>,
    dropped: std::sync::atomic::AtomicU64,
}

/// The completion time of an operation the run ended under, until [`OpLog::history`]
/// gives it the last completion time seen.
const NEVER: u64 = u64::MAX;

impl OpLog {
    /// Keeps `op` as invoked (its `outcome`, `result` and `index` are set here) and
    /// gives its index, or `None` (and counts it) when the log is full.
    pub fn invoke(&self, mut op: Op) -> Option<u64> {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if ops.len() >= MAX_OPS {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return None;
        }
        let index = ops.len() as u64;
        op.index = index;
        op.outcome = OpType::Info;
        op.result = None;
        op.complete_ns = NEVER;
        ops.push(op);
        Some(index)
    }

    /// Completes operation `index` (from [`OpLog::invoke`]): how it ended, what its
    /// completion carried, when its request was really sent (the invocation was kept
    /// at the intended time, which is no later) and when it completed.
    pub fn complete(&self, index: u64, outcome: OpType, result: Option<Value>, sent_ns: u64, complete_ns: u64) {
        debug_assert!(outcome != OpType::Invoke, "a completion is ok, fail or info");
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(op) = ops.get_mut(index as usize) {
            op.invoke_ns = op.invoke_ns.max(sent_ns);
            op.outcome = outcome;
            op.result = result;
            op.complete_ns = complete_ns.max(op.invoke_ns);
        }
    }

    /// How many operations were invoked so far, kept or not.
    pub fn invoked(&self) -> u64 {
        let kept = self.ops.lock().unwrap_or_else(|p| p.into_inner()).len() as u64;
        kept + self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The operations so far, in invocation order, with no final reads. One the run
    /// ended under is `info`, completed at the last completion time seen.
    pub fn history(&self) -> OpHistory {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let last = ops.iter().map(|o| if o.complete_ns == NEVER { o.invoke_ns } else { o.complete_ns }).max();
        for op in ops.iter_mut().filter(|o| o.complete_ns == NEVER) {
            op.complete_ns = last.unwrap_or(op.invoke_ns);
        }
        OpHistory { ops, final_reads: Vec::new(), dropped: self.dropped.load(std::sync::atomic::Ordering::Relaxed) }
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    fn add(process: u64, value: &str, at: u64) -> Op {
        Op {
            index: 0,
            process,
            f: "add".into(),
            key: None,
            value: Value::from(value),
            result: None,
            outcome: OpType::Ok,
            invoke_ns: at,
            complete_ns: 0,
        }
    }

    #[test]
    fn an_operation_the_run_ended_under_stays_indeterminate() {
        let log = OpLog::default();
        let a = log.invoke(add(1, "a", 10)).unwrap();
        let b = log.invoke(add(2, "b", 20)).unwrap();
        log.complete(a, OpType::Ok, None, 12, 50);
        assert_eq!(log.history().ops[0].invoke_ns, 12);
        let h = log.history();
        assert_eq!((h.ops[0].outcome, h.ops[0].complete_ns), (OpType::Ok, 50));
        assert_eq!((h.ops[1].index, h.ops[1].outcome, h.ops[1].complete_ns), (b, OpType::Info, 50));
        assert!(h.complete());
    }
}

/// One line of a history file: one of Jepsen's op maps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[schemars(title = "Gauntlet operation history (one JSON object per line, Jepsen's op map)")]
pub struct HistoryLine {
    /// `invoke`, then one of `ok` (it happened), `fail` (it did not) or `info` (it may
    /// have: a timeout, a reset, a 5xx).
    #[serde(rename = "type")]
    pub kind: OpType,
    /// The operation's function, as the workload step's `op.f` names it.
    pub f: String,
    /// The invocation's value; on a completion, what it carried (a read's result).
    /// A keyed operation's value is the tuple `[key, value]`, as Jepsen's independent
    /// checkers take it.
    pub value: Value,
    /// The process: the flow start that did it (one operation at a time, as a Jepsen
    /// process); a final read's is `"final"`.
    pub process: ProcessId,
    /// Nanoseconds from the start of the run.
    pub time: u64,
    /// The line's place in the history, from 0.
    pub index: u64,
}

/// A process in a history file: a number, or `"final"` for the final reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ProcessId {
    /// A flow start.
    Number(u64),
    /// The final-read phase.
    Named(String),
}

fn keyed(key: &Option<String>, value: &Value) -> Value {
    match key {
        Some(k) => Value::Array(vec![Value::String(k.clone()), value.clone()]),
        None => value.clone(),
    }
}

/// The history as Jepsen's op maps, in time order (an invocation before a completion
/// at the same nanosecond), each line indexed by its place.
pub fn history_lines(ops: &[Op]) -> Vec<HistoryLine> {
    let mut events: Vec<(u64, bool, &Op)> = Vec::with_capacity(ops.len() * 2);
    for op in ops {
        events.push((op.invoke_ns, false, op));
        events.push((op.complete_ns, true, op));
    }
    // Stable: ties keep invocation order.
    events.sort_by_key(|&(time, completion, op)| (time, completion, op.index));
    events
        .into_iter()
        .enumerate()
        .map(|(i, (time, completion, op))| HistoryLine {
            kind: if completion { op.outcome } else { OpType::Invoke },
            f: op.f.clone(),
            value: keyed(&op.key, if completion { op.completion_value() } else { &op.value }),
            process: if op.process == FINAL_PROCESS {
                ProcessId::Named("final".into())
            } else {
                ProcessId::Number(op.process)
            },
            time,
            index: i as u64,
        })
        .collect()
}

/// Writes `lines` as JSON Lines.
pub fn write_jsonl(lines: &[HistoryLine], out: &mut impl std::io::Write) -> std::io::Result<()> {
    for line in lines {
        serde_json::to_writer(&mut *out, line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// The JSON Schema of a history file's lines (`gauntlet schema history`).
pub fn history_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(HistoryLine)).unwrap_or_default()
}

#[cfg(test)]
mod file_tests {
    use super::*;

    #[test]
    fn a_history_file_is_jepsens_op_maps_in_time_order() {
        let op = |index, process, f: &str, key: Option<&str>, value: Value, result, outcome, t0, t1| Op {
            index,
            process,
            f: f.into(),
            key: key.map(str::to_owned),
            value,
            result,
            outcome,
            invoke_ns: t0,
            complete_ns: t1,
        };
        let ops = vec![
            op(0, 3, "write", Some("k1"), Value::from(5), None, OpType::Ok, 10, 40),
            op(1, 4, "read", Some("k1"), Value::Null, Some(Value::from(5)), OpType::Ok, 20, 30),
            op(2, FINAL_PROCESS, "read", None, Value::Null, Some(serde_json::json!(["a"])), OpType::Ok, 50, 60),
        ];
        let mut out = Vec::new();
        write_jsonl(&history_lines(&ops), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], r#"{"type":"invoke","f":"write","value":["k1",5],"process":3,"time":10,"index":0}"#);
        assert_eq!(lines[2], r#"{"type":"ok","f":"read","value":["k1",5],"process":4,"time":30,"index":2}"#);
        assert_eq!(lines[5], r#"{"type":"ok","f":"read","value":["a"],"process":"final","time":60,"index":5}"#);
        let back: HistoryLine = serde_json::from_str(lines[3]).unwrap();
        assert_eq!((back.kind, back.time), (OpType::Ok, 40));
        let schema = history_schema().to_string();
        assert!(schema.contains("invoke") && schema.contains("\"index\""), "{schema}");
    }
}
