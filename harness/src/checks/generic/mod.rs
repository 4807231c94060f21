//! Jepsen's generic checkers: pure functions of an [`OpHistory`] that know nothing of
//! the system under test, only of what its workload recorded (`f`, `value`, `result`,
//! `outcome`, times). A scenario names one per `[[invariant]]` and says which `f`s
//! play which part ([`CheckerSpec`]).
//!
//! Conventions shared by every checker:
//!
//! - Elements and ids are compared by [`element_key`], so `1`
//!   and `"1"` are one element.
//! - `ok` happened, `fail` did not, `info` may have happened, at any time after its
//!   invocation.
//! - A history that overflowed ([`OpHistory::complete`] is false) makes every checker
//!   `unknown` unless it found a counterexample among the operations it kept.
//! - A checker with nothing to look at is `unknown`, never `valid`.
//!
//! Each checker lives in its own file, whose doc comment states what it reads.

pub mod bank;
pub mod counter;
pub mod linearizable;
pub mod queue;
pub mod set;
pub mod unique_ids;
mod wgl;

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use serde_json::Value;

use super::op::{element_key, Op, OpHistory, FINAL_PROCESS};
use super::{CheckResult, Checking, Clause};

pub use linearizable::MAX_STATES;

/// The generic checkers a scenario can name.
pub const CHECKERS: [&str; 8] =
    ["set", "set-full", "counter", "bank", "unique-ids", "queue", "total-queue", "linearizable"];

/// The sequential object a `linearizable` history is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// A register: `write` sets its value, `read` returns it.
    Register,
    /// A register with compare-and-set: also `cas` of `[old, new]`.
    CasRegister,
}

impl Model {
    /// Its name in scenarios and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::CasRegister => "cas-register",
        }
    }
}

/// Which checker and its parameters, as the scenario's `[[invariant]]` declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckerSpec {
    /// `set` (`full` false) and `set-full` (`full` true).
    Set { add: String, read: String, full: bool },
    /// `counter`.
    Counter { add: String, read: String },
    /// `bank`; `total` defaults to the first read's sum.
    Bank { read: String, total: Option<i64>, accounts: Option<Vec<String>> },
    /// `unique-ids`.
    UniqueIds { generate: String },
    /// `queue` (`total` false) and `total-queue` (`total` true).
    Queue { enqueue: String, dequeue: String, drain: String, total: bool },
    /// `linearizable`.
    Linearizable { model: Model, read: String, write: String, cas: String, max_states: u64 },
}

impl CheckerSpec {
    /// The checker `name` (one of [`CHECKERS`]) with every parameter at its default.
    pub fn with_defaults(name: &str) -> Option<Self> {
        let s = |v: &str| v.to_string();
        Some(match name {
            "set" | "set-full" => Self::Set { add: s("add"), read: s("read"), full: name == "set-full" },
            "counter" => Self::Counter { add: s("add"), read: s("read") },
            "bank" => Self::Bank { read: s("read"), total: None, accounts: None },
            "unique-ids" => Self::UniqueIds { generate: s("generate") },
            "queue" | "total-queue" => Self::Queue {
                enqueue: s("enqueue"),
                dequeue: s("dequeue"),
                drain: s("drain"),
                total: name == "total-queue",
            },
            "linearizable" => Self::Linearizable {
                model: Model::CasRegister,
                read: s("read"),
                write: s("write"),
                cas: s("cas"),
                max_states: MAX_STATES,
            },
            _ => return None,
        })
    }

    /// Its name, one of [`CHECKERS`].
    pub fn name(&self) -> &'static str {
        match self {
            Self::Set { full: false, .. } => "set",
            Self::Set { full: true, .. } => "set-full",
            Self::Counter { .. } => "counter",
            Self::Bank { .. } => "bank",
            Self::UniqueIds { .. } => "unique-ids",
            Self::Queue { total: false, .. } => "queue",
            Self::Queue { total: true, .. } => "total-queue",
            Self::Linearizable { .. } => "linearizable",
        }
    }

    /// The `f`s it reads, so a scenario can refuse one no step records. `queue` also
    /// counts a `drain` when there is one, but does not need it.
    pub fn fs(&self) -> Vec<&str> {
        match self {
            Self::Set { add, read, .. } | Self::Counter { add, read } => vec![add, read],
            Self::Bank { read, .. } => vec![read],
            Self::UniqueIds { generate } => vec![generate],
            Self::Queue { enqueue, dequeue, total: false, .. } => vec![enqueue, dequeue],
            Self::Queue { enqueue, dequeue, drain, total: true } => vec![enqueue, dequeue, drain],
            Self::Linearizable { model: Model::Register, read, write, .. } => vec![read, write],
            Self::Linearizable { model: Model::CasRegister, read, write, cas, .. } => vec![read, write, cas],
        }
    }

    /// Its clauses, in report order.
    pub fn clauses(&self) -> &'static [Clause] {
        match self {
            Self::Set { full: false, .. } => set::SET,
            Self::Set { full: true, .. } => set::SET_FULL,
            Self::Counter { .. } => counter::COUNTER,
            Self::Bank { .. } => bank::BANK,
            Self::UniqueIds { .. } => unique_ids::UNIQUE_IDS,
            Self::Queue { total: false, .. } => queue::QUEUE,
            Self::Queue { total: true, .. } => queue::TOTAL_QUEUE,
            Self::Linearizable { .. } => linearizable::LINEARIZABLE,
        }
    }
}

/// Checks `history` with the checker `spec` names.
pub fn check(spec: &CheckerSpec, history: &OpHistory) -> CheckResult {
    match spec {
        CheckerSpec::Set { add, read, full } => set::check(history, add, read, *full),
        CheckerSpec::Counter { add, read } => counter::check(history, add, read),
        CheckerSpec::Bank { read, total, accounts } => bank::check(history, read, *total, accounts.as_deref()),
        CheckerSpec::UniqueIds { generate } => unique_ids::check(history, generate),
        CheckerSpec::Queue { enqueue, dequeue, drain, total } => queue::check(history, enqueue, dequeue, drain, *total),
        CheckerSpec::Linearizable { model, read, write, cas, max_states } => {
            linearizable::check(history, *model, read, write, cas, *max_states)
        }
    }
}

/// Every clause of every generic checker, in report order.
pub fn all_clauses() -> impl Iterator<Item = &'static Clause> {
    set::SET
        .iter()
        .chain(set::SET_FULL)
        .chain(counter::COUNTER)
        .chain(bank::BANK)
        .chain(unique_ids::UNIQUE_IDS)
        .chain(queue::QUEUE)
        .chain(queue::TOTAL_QUEUE)
        .chain(linearizable::LINEARIZABLE)
}

/// The longest value text a counterexample quotes; a set read can hold a million elements.
const MAX_SHOWN_CHARS: usize = 80;

/// Marks the verdict unknown when the history overflowed.
fn unless_overflowed(c: &mut Checking, history: &OpHistory) {
    if !history.complete() {
        c.cannot_tell(format!("the history overflowed: {} operations were not kept", history.dropped));
    }
}

/// A value as a report quotes it, cut short.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// An operation as a counterexample names it: index, `f`, value, result, outcome,
/// process.
fn describe(op: &Op) -> String {
    let mut s = format!("op {} ({}", op.index, op.f);
    if !op.value.is_null() {
        s.push(' ');
        s.push_str(&shown(&op.value));
    }
    if let Some(r) = &op.result {
        s.push_str(" -> ");
        s.push_str(&shown(r));
    }
    s.push_str(", ");
    s.push_str(op.outcome.as_str());
    if op.process == FINAL_PROCESS {
        s.push_str(", final read)");
    } else {
        s.push_str(&format!(", process {})", op.process));
    }
    s
}

/// Nanoseconds from the start of the run as seconds, for reports.
fn secs(ns: u64) -> String {
    format!("{:.3}s", ns as f64 / 1e9)
}

/// A JSON number as an integer, when it is one.
fn integer(v: &Value) -> Option<i64> {
    v.as_i64()
}

/// An element (or id) as [`element_key`] compares it, borrowed from the history, so a
/// million of them hash and compare without allocating. It carries its hash: a map
/// that grows, or probes past another element, then need not reach back into the
/// history, whose values are far apart in memory.
#[derive(Clone, Copy, Debug)]
struct Element<'h> {
    value: &'h Value,
    hash: u64,
}

/// The longest key text spelled on the stack; longer ones are allocated.
const MAX_STACK_KEY: usize = 64;

impl<'h> Element<'h> {
    fn new(value: &'h Value) -> Self {
        let mut h = FastHasher::default();
        with_key(value, |k| k.hash(&mut h));
        Self { value, hash: h.finish() }
    }

    fn with_key<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        with_key(self.value, f)
    }
}

/// Calls `f` with `value`'s [`element_key`]: a string as itself, anything else as its
/// compact JSON, spelled on the stack when it is short.
fn with_key<R>(value: &Value, f: impl FnOnce(&str) -> R) -> R {
    let mut text = StackText { bytes: [0; MAX_STACK_KEY], len: 0 };
    let written = match value {
        Value::String(s) => return f(s),
        // Integers are most elements: spell them without serde's machinery.
        Value::Number(n) if n.is_u64() => text.integer(n.as_u64().unwrap_or(0), false),
        Value::Number(n) if n.is_i64() => text.integer(n.as_i64().unwrap_or(0).unsigned_abs(), true),
        other => write!(text, "{other}"),
    };
    match written {
        Ok(()) => f(text.as_str()),
        Err(_) => f(&element_key(value)),
    }
}

impl PartialEq for Element<'_> {
    fn eq(&self, other: &Self) -> bool {
        if self.hash != other.hash {
            return false;
        }
        match (self.value, other.value) {
            (Value::String(a), Value::String(b)) => a == b,
            // Two integers have one text when they are one number.
            (Value::Number(a), Value::Number(b)) if !a.is_f64() && !b.is_f64() => a == b,
            _ => self.with_key(|a| other.with_key(|b| a == b)),
        }
    }
}

impl Eq for Element<'_> {}

impl Hash for Element<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Display for Element<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_key(|k| f.write_str(k))
    }
}

/// Text written into a buffer on the stack; a write that does not fit fails.
struct StackText {
    bytes: [u8; MAX_STACK_KEY],
    len: usize,
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).expect("whole strs were written")
    }

    /// Writes an integer in decimal, `-` first when `negative`.
    fn integer(&mut self, magnitude: u64, negative: bool) -> fmt::Result {
        let digits = magnitude.checked_ilog10().unwrap_or(0) as usize + 1;
        let end = self.len + usize::from(negative) + digits;
        if end > MAX_STACK_KEY {
            return Err(fmt::Error);
        }
        if negative {
            self.bytes[self.len] = b'-';
        }
        let mut n = magnitude;
        for at in (end - digits..end).rev() {
            self.bytes[at] = b'0' + (n % 10) as u8;
            n /= 10;
        }
        self.len = end;
        Ok(())
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > MAX_STACK_KEY {
            return Err(fmt::Error);
        }
        self.bytes[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A fast hash (Firefox's and rustc's multiply-rotate, with a finaliser) for the
/// checkers' maps: the histories are our own, so there is no flooding to fear.
#[derive(Default)]
struct FastHasher(u64);

impl Hasher for FastHasher {
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits, which pick the bucket, weak: fold the high
        // bits down (MurmurHash3's finaliser, halved).
        let h = (self.0 ^ (self.0 >> 33)).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u32(&mut self, w: u32) {
        self.write_u64(u64::from(w));
    }

    fn write_usize(&mut self, w: usize) {
        self.write_u64(w as u64);
    }
}

/// A hash map with [`FastHasher`].
type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A hash set with [`FastHasher`].
type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
pub(crate) mod fixture {
    //! Small histories for the checkers' tests, and the mutation-test harness every
    //! checker file runs: a consistent history that passes, and per clause a history
    //! that breaks that clause and nothing else.

    use serde_json::Value;

    use super::{check, CheckerSpec};
    use crate::checks::op::{Op, OpHistory, OpType, FINAL_PROCESS};
    use crate::checks::Validity;

    /// An operation of `process`, invoked at `t.0` and completed at `t.1` (ns).
    pub fn op(process: u64, f: &str, value: Value, result: Option<Value>, outcome: OpType, t: (u64, u64)) -> Op {
        Op { index: 0, process, f: f.into(), key: None, value, result, outcome, invoke_ns: t.0, complete_ns: t.1 }
    }

    /// An `ok` operation carrying `value` and answering `result`.
    pub fn ok(process: u64, f: &str, value: Value, result: Option<Value>, t: (u64, u64)) -> Op {
        op(process, f, value, result, OpType::Ok, t)
    }

    /// A final read (`ok`, [`FINAL_PROCESS`]) of `f` answering `result`, at `at` ns.
    pub fn final_read(f: &str, result: Value, at: u64) -> Op {
        op(FINAL_PROCESS, f, Value::Null, Some(result), OpType::Ok, (at, at + 1))
    }

    /// A history of `ops` (put in invocation order and numbered) and `final_reads`.
    pub fn history(mut ops: Vec<Op>, mut final_reads: Vec<Op>) -> OpHistory {
        ops.sort_by_key(|op| op.invoke_ns);
        for (i, op) in ops.iter_mut().chain(final_reads.iter_mut()).enumerate() {
            op.index = i as u64;
        }
        OpHistory { ops, final_reads, dropped: 0 }
    }

    /// One checker family's fixtures: the specs that read such histories, a history
    /// they all pass, and per clause a history that breaks it alone.
    pub struct Mutations {
        pub specs: Vec<CheckerSpec>,
        pub consistent: OpHistory,
        pub cases: Vec<(&'static str, OpHistory)>,
    }

    pub fn assert_the_consistent_history_passes(m: &Mutations) {
        for spec in &m.specs {
            let r = check(spec, &m.consistent);
            assert_eq!(r.validity, Validity::Valid, "{}: {r}", spec.name());
        }
    }

    /// Each case breaks its clause in every spec that has it, and nothing else in any.
    pub fn assert_each_mutation_breaks_its_clause_alone(m: &Mutations) {
        for (clause, h) in &m.cases {
            let mut judged = false;
            for spec in &m.specs {
                let r = check(spec, h);
                let has = spec.clauses().iter().any(|c| c.name == *clause);
                let expected: Vec<&str> = if has { vec![clause] } else { vec![] };
                assert_eq!(r.broken_clauses(), expected, "mutation {clause} under {}: {r}", spec.name());
                if has {
                    judged = true;
                    assert_eq!(r.validity, Validity::Invalid, "{r}");
                    let cx = r.clause(clause).and_then(|c| c.first.as_ref()).expect("a counterexample");
                    assert_eq!(cx.clause, *clause);
                } else {
                    assert_eq!(r.validity, Validity::Valid, "mutation {clause} under {}: {r}", spec.name());
                }
            }
            assert!(judged, "no spec of the family has clause {clause}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;
    use crate::checks::op::OpType;
    use crate::checks::Validity;

    #[test]
    fn generic_clause_names_are_unique_and_documented() {
        let mut seen = BTreeSet::new();
        for c in all_clauses() {
            assert!(seen.insert((c.invariant, c.name)), "{} {} appears twice", c.invariant, c.name);
            assert!(CHECKERS.contains(&c.invariant), "{}", c.invariant);
            assert!(c.rule.len() > 20, "{} needs a rule a reader understands", c.name);
        }
        for name in CHECKERS {
            let spec = CheckerSpec::with_defaults(name).expect("every checker has defaults");
            assert_eq!(spec.name(), name);
            assert!(!spec.clauses().is_empty(), "{name} has no clause");
            assert!(spec.clauses().iter().all(|c| c.invariant == name), "{name}'s clauses name another checker");
        }
    }

    fn mutation_families() -> [super::fixture::Mutations; 6] {
        [
            set::tests::mutations(),
            counter::tests::mutations(),
            bank::tests::mutations(),
            unique_ids::tests::mutations(),
            queue::tests::mutations(),
            linearizable::tests::mutations(),
        ]
    }

    #[test]
    fn every_generic_clause_has_a_mutation() {
        let families = mutation_families();
        for c in all_clauses() {
            let covered = families.iter().any(|m| {
                m.specs.iter().any(|s| s.name() == c.invariant) && m.cases.iter().any(|(name, _)| *name == c.name)
            });
            assert!(covered, "clause {} of {} has no mutation test", c.name, c.invariant);
        }
    }

    #[test]
    fn every_checker_is_unknown_on_an_empty_history() {
        for name in CHECKERS {
            let r = check(&CheckerSpec::with_defaults(name).unwrap(), &OpHistory::default());
            assert_eq!(r.validity, Validity::Unknown, "{r}");
            assert_eq!(r.invariant, name);
        }
    }

    #[test]
    fn an_overflowed_history_is_unknown_for_every_checker() {
        let families = mutation_families();
        for m in families {
            let mut h = m.consistent.clone();
            h.dropped = 3;
            for spec in &m.specs {
                let r = check(spec, &h);
                assert_eq!(r.validity, Validity::Unknown, "{r}");
                assert!(r.summary.contains("3 operations were not kept"), "{r}");
            }
        }
    }

    #[test]
    fn fs_name_the_parts_each_checker_reads() {
        let spec = |n| CheckerSpec::with_defaults(n).unwrap();
        assert_eq!(spec("set-full").fs(), ["add", "read"]);
        assert_eq!(spec("queue").fs(), ["enqueue", "dequeue"]);
        assert_eq!(spec("total-queue").fs(), ["enqueue", "dequeue", "drain"]);
        assert_eq!(spec("linearizable").fs(), ["read", "write", "cas"]);
        let register = CheckerSpec::Linearizable {
            model: Model::Register,
            read: "get".into(),
            write: "put".into(),
            cas: "cas".into(),
            max_states: 1,
        };
        assert_eq!(register.fs(), ["get", "put"]);
        assert!(CheckerSpec::with_defaults("sets").is_none());
    }

    #[test]
    fn an_element_is_its_text_whatever_its_json_type() {
        let (one, text, long) = (json!(1), json!("1"), json!({"k": "v".repeat(100)}));
        assert_eq!(Element::new(&one), Element::new(&text));
        let hash = |e: Element| {
            let mut h = FastHasher::default();
            e.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(Element::new(&one)), hash(Element::new(&text)));
        assert_eq!(Element::new(&long).to_string(), element_key(&long));
        assert_ne!(Element::new(&long), Element::new(&one));
        assert_ne!(Element::new(&json!(1.0)), Element::new(&one));
        assert_ne!(Element::new(&json!(-0.0)), Element::new(&json!(0.0)));
        for v in [json!(0), json!(-17), json!(u64::MAX), json!(i64::MIN), json!(2.5), json!(null), json!([1, "a"])] {
            assert_eq!(Element::new(&v).to_string(), element_key(&v), "{v}");
            assert_eq!(Element::new(&v), Element::new(&json!(element_key(&v))), "{v} equals its text");
        }
    }

    #[test]
    fn an_operation_is_described_by_index_f_value_result_outcome_and_process() {
        let op = fixture::op(3, "cas", serde_json::json!([1, 2]), None, OpType::Info, (0, 1));
        assert_eq!(describe(&op), "op 0 (cas [1,2], info, process 3)");
        let long = Value::String("x".repeat(500));
        assert!(shown(&long).len() < 100);
    }
}
