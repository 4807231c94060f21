//! `linearizable`: the operations on each key can be put in one order, consistent with
//! real time, in which a register would have answered them as they were answered
//! (Knossos's and Porcupine's linearizability check, by the Wing–Gong–Lowe search of
//! `wgl`).
//!
//! What it reads, per key ([`Op::key`]; operations without one are one key), from the
//! run and the final reads alike:
//!
//! - writes (`f` = the spec's `write`, default `write`) carry the new value in `value`;
//! - reads (`read`) carry the value read in `result`; `null` (or no result) is the
//!   register never written;
//! - with the `cas-register` model, compare-and-sets (`cas`) carry `[old, new]` in
//!   `value`: `ok` means it swapped.
//!
//! Values are compared by [`element_key`]. A `fail` operation did not happen and is
//! dropped (a failed `cas` is not a read either). An `info` write or `cas` may take
//! effect at any time after its invocation, or never; an `info` read tells nothing and
//! is dropped. The search tries at most `max_states` steps per key ([`MAX_STATES`] by
//! default); past that the verdict is `unknown`, never `valid`.
//!
//! [`element_key`]: crate::checks::op::element_key

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::wgl::{self, Call, Outcome, Sequential, Stuck};
use super::{describe, unless_overflowed, Model};
use crate::checks::op::{element_key, Op, OpHistory, OpType};
use crate::checks::{CheckResult, Checking, Clause};

/// The clauses of `linearizable`.
pub const LINEARIZABLE: &[Clause] = &[Clause {
    invariant: "linearizable",
    name: "nonlinearizable",
    rule: "the operations on each key have one order, consistent with real time, that the model allows",
}];

const NONLINEARIZABLE: &Clause = &LINEARIZABLE[0];

/// How many steps the search of one key tries by default before it says `unknown`:
/// about a second of search.
pub const MAX_STATES: u64 = 10_000_000;

/// A register's value, interned: [`EMPTY`] is the register never written.
type Interned = u32;
const EMPTY: Interned = 0;

/// A register operation with its answer.
#[derive(Clone, Copy, Debug)]
enum RegisterOp {
    Read(Interned),
    Write(Interned),
    Cas(Interned, Interned),
}

/// The register (with compare-and-set): the sequential object histories are checked against.
struct Register;

impl Sequential for Register {
    type State = Interned;
    type Input = RegisterOp;

    fn init(&self) -> Interned {
        EMPTY
    }

    fn step(&self, state: Interned, op: &RegisterOp) -> Option<Interned> {
        match *op {
            RegisterOp::Read(v) => (v == state).then_some(state),
            RegisterOp::Write(v) => Some(v),
            RegisterOp::Cas(old, new) => (old == state).then_some(new),
        }
    }
}

/// The `f`s that play each part.
struct Parts<'s> {
    model: Model,
    read: &'s str,
    write: &'s str,
    cas: &'s str,
}

/// One key's operations, as the search's calls and as the history has them.
struct KeyHistory<'h> {
    ops: Vec<&'h Op>,
    calls: Vec<Call<RegisterOp>>,
    ids: HashMap<String, Interned>,
    /// The values by their interned id, `EMPTY` first.
    names: Vec<String>,
    /// An operation that cannot be read, which makes the key unknown.
    malformed: Option<String>,
}

impl<'h> KeyHistory<'h> {
    fn new() -> Self {
        let names = vec![String::new()];
        Self { ops: Vec::new(), calls: Vec::new(), ids: HashMap::new(), names, malformed: None }
    }

    fn intern(&mut self, v: &Value) -> Interned {
        if v.is_null() {
            return EMPTY;
        }
        let next = self.names.len() as Interned;
        let key = element_key(v);
        *self.ids.entry(key).or_insert_with_key(|k| {
            self.names.push(k.clone());
            next
        })
    }

    /// Adds `op` if it is one the model reads and may have happened.
    fn push(&mut self, op: &'h Op, parts: &Parts) {
        let input = match op.outcome {
            OpType::Fail | OpType::Invoke => return,
            OpType::Info if op.f == parts.read => return,
            _ if op.f == parts.read => RegisterOp::Read(self.intern(op.result.as_ref().unwrap_or(&Value::Null))),
            _ if op.f == parts.write => RegisterOp::Write(self.intern(&op.value)),
            _ if op.f == parts.cas && parts.model == Model::CasRegister => match op.value.as_array().map(Vec::as_slice)
            {
                Some([old, new]) => RegisterOp::Cas(self.intern(old), self.intern(new)),
                _ => {
                    self.malformed.get_or_insert_with(|| format!("{} does not carry [old, new]", describe(op)));
                    return;
                }
            },
            _ => return,
        };
        let complete_ns = (op.outcome == OpType::Ok).then_some(op.complete_ns);
        self.calls.push(Call { input, invoke_ns: op.invoke_ns, complete_ns });
        self.ops.push(op);
    }

    /// A read of a value that no write or cas invoked before the read completed wrote:
    /// the search would refute it only after trying every order before it.
    fn unwritten_read(&self) -> Option<usize> {
        let mut first_written = vec![u64::MAX; self.names.len()];
        for call in &self.calls {
            if let RegisterOp::Write(v) | RegisterOp::Cas(_, v) = call.input {
                first_written[v as usize] = first_written[v as usize].min(call.invoke_ns);
            }
        }
        self.calls.iter().position(|call| match call.input {
            RegisterOp::Read(v) if v != EMPTY => call.complete_ns.is_some_and(|t| first_written[v as usize] > t),
            _ => false,
        })
    }

    fn value(&self, v: Interned) -> String {
        match v {
            EMPTY => "empty (never written)".to_string(),
            v => format!("holding {}", self.names[v as usize]),
        }
    }

    /// The counterexample of a search stuck at `s`.
    fn explain(&self, s: &Stuck<Interned>) -> String {
        let prefix = match s.tail.last() {
            None => "no operation can come first".to_string(),
            Some(&last) => format!(
                "the longest order found holds {} of its {} operations (the last: {}), leaving the register {}",
                s.linearized,
                self.calls.len(),
                describe(self.ops[last]),
                self.value(s.state)
            ),
        };
        let mut detail =
            format!("{prefix}; then {} cannot take effect before it completed", describe(self.ops[s.blocked]));
        if !s.pending.is_empty() {
            let pending: Vec<String> = s.pending.iter().map(|&i| describe(self.ops[i])).collect();
            detail.push_str(&format!(", and neither can the pending {}", pending.join(", ")));
        }
        detail
    }
}

/// Checks each key of `history` for linearizability against `model`, trying at most
/// `max_states` search steps per key.
pub fn check(history: &OpHistory, model: Model, read: &str, write: &str, cas: &str, max_states: u64) -> CheckResult {
    let mut c = Checking::new(LINEARIZABLE, "keys");
    unless_overflowed(&mut c, history);
    let parts = Parts { model, read, write, cas };
    let mut keys: BTreeMap<Option<&str>, KeyHistory> = BTreeMap::new();
    for op in history.ops.iter().chain(&history.final_reads) {
        if op.f == read || op.f == write || op.f == cas {
            keys.entry(op.key.as_deref()).or_insert_with(KeyHistory::new).push(op, &parts);
        }
    }
    keys.retain(|_, k| !k.calls.is_empty() || k.malformed.is_some());
    c.subjects(keys.len());
    let (mut explored, mut bounded) = (0u64, 0usize);
    for (key, k) in &keys {
        let subject = match key {
            Some(key) => format!("key {key}"),
            None => "the register".to_string(),
        };
        if let Some(why) = &k.malformed {
            c.cannot_tell(format!("{subject} cannot be checked: {why}"));
            continue;
        }
        if let Some(read) = k.unwritten_read() {
            let detail = format!(
                "{} returned a value no write or cas invoked before it completed could have written",
                describe(k.ops[read])
            );
            c.judge(NONLINEARIZABLE, Some((subject, detail, 1)));
            continue;
        }
        match wgl::search(&Register, &k.calls, max_states) {
            Outcome::Linearizable { explored: n } => {
                explored += n;
                c.judge(NONLINEARIZABLE, None);
            }
            Outcome::Nonlinearizable(stuck) => c.judge(NONLINEARIZABLE, Some((subject, k.explain(&stuck), 1))),
            Outcome::Bounded { explored: n, bound, stuck } => {
                explored += n;
                bounded += 1;
                c.cannot_tell(match bound {
                    wgl::Bound::States(max) => format!("the search hit its bound of {max} states on {subject}"),
                    wgl::Bound::Memory(bytes) => {
                        format!("the search's cache hit its bound of {} MiB on {subject}", bytes >> 20)
                    }
                });
                if let Some(stuck) = stuck {
                    c.note(format!("on {subject}, before the bound: {}", k.explain(&stuck)));
                }
            }
        }
    }
    if bounded > 1 {
        c.note(format!("the search hit its bound on {bounded} keys"));
    }
    c.note(format!("{explored} search steps over {} key(s), model {}", keys.len(), model.as_str()));
    c.finish()
}

#[cfg(test)]
pub(super) mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::super::fixture::{self, history, ok, Mutations};
    use super::super::CheckerSpec;
    use super::*;
    use crate::checks::Validity;

    fn write(p: u64, v: i64, outcome: OpType, t: (u64, u64)) -> Op {
        fixture::op(p, "write", json!(v), None, outcome, t)
    }

    fn read(p: u64, v: Value, t: (u64, u64)) -> Op {
        ok(p, "read", Value::Null, Some(v), t)
    }

    fn cas(p: u64, old: i64, new: i64, outcome: OpType, t: (u64, u64)) -> Op {
        fixture::op(p, "cas", json!([old, new]), None, outcome, t)
    }

    fn keyed(key: &str, mut op: Op) -> Op {
        op.key = Some(key.into());
        op
    }

    fn spec(model: Model, max_states: u64) -> CheckerSpec {
        CheckerSpec::Linearizable { model, read: "read".into(), write: "write".into(), cas: "cas".into(), max_states }
    }

    fn verdict(ops: Vec<Op>) -> CheckResult {
        super::super::check(&spec(Model::CasRegister, MAX_STATES), &history(ops, vec![]))
    }

    /// Two writers and a reader; the read overlaps the second write.
    fn registers(last_read: Value) -> OpHistory {
        history(
            vec![
                write(0, 1, OpType::Ok, (0, 10)),
                read(1, json!(1), (12, 20)),
                write(0, 2, OpType::Ok, (25, 40)),
                read(1, last_read, (30, 50)),
            ],
            vec![],
        )
    }

    pub(crate) fn mutations() -> Mutations {
        Mutations {
            specs: vec![spec(Model::CasRegister, MAX_STATES), spec(Model::Register, MAX_STATES)],
            consistent: registers(json!(2)),
            cases: vec![("nonlinearizable", registers(json!(3)))],
        }
    }

    #[test]
    fn the_consistent_history_passes_both_models() {
        fixture::assert_the_consistent_history_passes(&mutations());
    }

    #[test]
    fn each_mutation_breaks_its_clause_and_nothing_else() {
        fixture::assert_each_mutation_breaks_its_clause_alone(&mutations());
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_the_old_value_or_the_new() {
        assert!(registers(json!(1)).ops.len() == 4);
        assert_eq!(verdict(registers(json!(1)).ops).validity, Validity::Valid);
        assert_eq!(verdict(registers(json!(2)).ops).validity, Validity::Valid);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_not_linearizable() {
        let r = verdict(vec![write(0, 1, OpType::Ok, (0, 10)), read(1, json!(7), (20, 30))]);
        assert_eq!(r.broken_clauses(), ["nonlinearizable"]);
    }

    #[test]
    fn a_read_of_an_old_value_after_a_newer_write_completed_is_not_linearizable() {
        let r = verdict(vec![
            write(0, 1, OpType::Ok, (0, 10)),
            write(0, 2, OpType::Ok, (20, 30)),
            read(1, json!(1), (40, 50)),
        ]);
        assert_eq!(r.validity, Validity::Invalid);
        let cx = r.first.expect("a counterexample");
        assert_eq!(cx.subject, "the register");
        assert!(cx.detail.contains("the longest order found holds 2 of its 3 operations"), "{}", cx.detail);
        assert!(cx.detail.contains("leaving the register holding 2"), "{}", cx.detail);
        assert!(cx.detail.contains("then op 2 (read -> 1, ok, process 1) cannot take effect"), "{}", cx.detail);
    }

    #[test]
    fn readers_that_see_two_concurrent_writes_in_contradictory_orders_are_not_linearizable() {
        // Writes of 1 and 2 overlap; one reader sees 1 then 2, the other 2 then 1.
        let ops = vec![
            write(0, 1, OpType::Ok, (0, 100)),
            write(1, 2, OpType::Ok, (0, 100)),
            read(2, json!(1), (10, 20)),
            read(3, json!(2), (10, 20)),
            read(2, json!(2), (30, 40)),
            read(3, json!(1), (30, 40)),
        ];
        assert_eq!(verdict(ops).broken_clauses(), ["nonlinearizable"]);
        // One order both readers agree on is fine.
        let ops = vec![
            write(0, 1, OpType::Ok, (0, 100)),
            write(1, 2, OpType::Ok, (0, 100)),
            read(2, json!(1), (10, 20)),
            read(3, json!(1), (10, 20)),
            read(2, json!(2), (30, 40)),
            read(3, json!(2), (30, 40)),
        ];
        assert_eq!(verdict(ops).validity, Validity::Valid);
    }

    #[test]
    fn an_indeterminate_write_may_take_effect_late_or_never() {
        let seen_late = vec![
            write(0, 1, OpType::Ok, (0, 10)),
            write(1, 2, OpType::Info, (20, 30)),
            read(2, json!(1), (40, 50)),
            read(2, json!(2), (60, 70)),
        ];
        assert_eq!(verdict(seen_late).validity, Validity::Valid);
        let never =
            vec![write(0, 1, OpType::Ok, (0, 10)), write(1, 2, OpType::Info, (20, 30)), read(2, json!(1), (40, 50))];
        assert_eq!(verdict(never).validity, Validity::Valid);
    }

    #[test]
    fn an_indeterminate_write_cannot_take_effect_before_it_was_invoked() {
        let r = verdict(vec![read(2, json!(2), (0, 10)), write(1, 2, OpType::Info, (20, 30))]);
        assert_eq!(r.broken_clauses(), ["nonlinearizable"]);
    }

    #[test]
    fn failed_operations_and_indeterminate_reads_are_dropped() {
        let ops = vec![
            write(0, 1, OpType::Ok, (0, 10)),
            write(1, 9, OpType::Fail, (12, 14)),
            cas(1, 7, 8, OpType::Fail, (15, 16)),
            fixture::op(2, "read", Value::Null, Some(json!(5)), OpType::Info, (20, 30)),
            read(2, json!(1), (40, 50)),
        ];
        assert_eq!(verdict(ops).validity, Validity::Valid);
    }

    #[test]
    fn a_cas_swaps_only_from_its_old_value() {
        let h = |old| {
            vec![write(0, 1, OpType::Ok, (0, 10)), cas(1, old, 3, OpType::Ok, (20, 30)), read(2, json!(3), (40, 50))]
        };
        assert_eq!(verdict(h(1)).validity, Validity::Valid);
        assert_eq!(verdict(h(2)).broken_clauses(), ["nonlinearizable"]);
        let r = super::super::check(&spec(Model::Register, MAX_STATES), &history(h(1), vec![]));
        assert_eq!(r.broken_clauses(), ["nonlinearizable"], "the plain register knows no cas");
    }

    #[test]
    fn each_key_is_checked_on_its_own() {
        let ops = vec![
            keyed("a", write(0, 1, OpType::Ok, (0, 10))),
            keyed("b", write(1, 2, OpType::Ok, (0, 10))),
            keyed("a", read(2, json!(1), (20, 30))),
            keyed("b", read(2, json!(2), (20, 30))),
            keyed("c", read(3, Value::Null, (20, 30))),
        ];
        let r = verdict(ops.clone());
        assert_eq!((r.validity, r.checked), (Validity::Valid, 3), "{r}");
        let mut ops = ops;
        ops[3].result = Some(json!(1));
        let r = verdict(ops);
        assert_eq!(r.first.expect("a counterexample").subject, "key b");
    }

    #[test]
    fn a_malformed_cas_makes_its_key_unknown() {
        let r = verdict(vec![fixture::op(0, "cas", json!(3), None, OpType::Ok, (0, 10))]);
        assert_eq!(r.validity, Validity::Unknown, "{r}");
        assert!(r.summary.contains("does not carry [old, new]"), "{r}");
    }

    #[test]
    fn a_read_of_a_value_written_only_after_it_completed_is_refuted_without_a_search() {
        let r = verdict(vec![read(1, json!(2), (0, 10)), write(0, 2, OpType::Ok, (20, 30))]);
        let cx = r.first.as_ref().expect("a counterexample");
        assert!(cx.detail.starts_with("op 0 (read -> 2, ok, process 1) returned a value no write"), "{}", cx.detail);
        assert!(r.notes.iter().any(|n| n.starts_with("0 search steps")), "{r}");
    }

    #[test]
    fn a_bounded_search_notes_the_longest_order_it_found() {
        let ops = vec![
            write(0, 1, OpType::Ok, (0, 10)),
            write(1, 2, OpType::Ok, (0, 10)),
            read(2, json!(1), (20, 30)),
            read(3, json!(2), (40, 50)),
        ];
        let r = super::super::check(&spec(Model::CasRegister, 6), &history(ops, vec![]));
        assert_eq!(r.validity, Validity::Unknown, "{r}");
        assert!(r.notes.iter().any(|n| n.starts_with("on the register, before the bound: the longest order")), "{r}");
    }

    #[test]
    fn the_search_past_its_bound_is_unknown_never_valid() {
        let r = super::super::check(&spec(Model::CasRegister, 2), &registers(json!(2)));
        assert_eq!(r.validity, Validity::Unknown, "{r}");
        assert_eq!(r.unknown_because.as_deref(), Some("the search hit its bound of 2 states on the register"));
    }

    /// Whether some order of `ops` (writes, reads, cas; `None` completion for info)
    /// respecting real time is legal, by trying them all: the oracle for the search.
    fn brute_force(calls: &[Call<RegisterOp>]) -> bool {
        fn go(calls: &[Call<RegisterOp>], left: &mut Vec<usize>, state: Interned) -> bool {
            if left.iter().all(|&i| calls[i].complete_ns.is_none()) {
                return true;
            }
            for k in 0..left.len() {
                let x = left[k];
                let blocked = left.iter().any(|&y| calls[y].complete_ns.is_some_and(|c| c < calls[x].invoke_ns));
                let Some(next) = (!blocked).then(|| Register.step(state, &calls[x].input)).flatten() else { continue };
                left.remove(k);
                let found = go(calls, left, next);
                left.insert(k, x);
                if found {
                    return true;
                }
            }
            false
        }
        go(calls, &mut (0..calls.len()).collect(), EMPTY)
    }

    fn small_call() -> impl Strategy<Value = Call<RegisterOp>> {
        let input = prop_oneof![
            (0u32..3).prop_map(RegisterOp::Read),
            (1u32..3).prop_map(RegisterOp::Write),
            (0u32..3, 1u32..3).prop_map(|(o, n)| RegisterOp::Cas(o, n)),
        ];
        (input, 0u64..20, 0u64..10, prop::bool::weighted(0.2)).prop_map(|(input, invoke_ns, len, info)| Call {
            input,
            invoke_ns,
            complete_ns: (!info).then_some(invoke_ns + len),
        })
    }

    /// One process's operation in a simulated run: what it does, when, how long it
    /// takes, where in that time it takes effect, and whether its answer is lost.
    #[derive(Clone, Debug)]
    struct Simulated {
        process: u64,
        f: u8,
        a: i64,
        b: i64,
        gap: u64,
        len: u64,
        /// Where it takes effect, in thousandths of its duration (of three durations
        /// for an indeterminate one, which may take effect after the client gave up).
        at: u64,
        info: bool,
        happens: bool,
    }

    fn simulated() -> impl Strategy<Value = Simulated> {
        (0u64..4, 0u8..3, 0i64..3, 0i64..3, 0u64..20, 1u64..30, 0u64..=1000, prop::bool::weighted(0.15), any::<bool>())
            .prop_map(|(process, f, a, b, gap, len, at, info, happens)| Simulated {
                process,
                f,
                a,
                b,
                gap,
                len,
                at,
                info,
                happens,
            })
    }

    /// The history a real atomic register gives the simulated operations: each takes
    /// effect at one instant inside its interval (or never, for some indeterminate ones).
    fn atomic_register_history(sim: &[Simulated]) -> OpHistory {
        let mut clock = [0u64; 4];
        let mut timed = Vec::new();
        for s in sim {
            let invoke = clock[s.process as usize] + s.gap;
            let complete = invoke + s.len;
            clock[s.process as usize] = complete;
            let span = if s.info { 3 * s.len } else { s.len };
            let effect = (!s.info || s.happens).then_some(invoke + span * s.at / 1000);
            timed.push((s, invoke, complete, effect));
        }
        let mut by_effect: Vec<usize> = (0..timed.len()).filter(|&i| timed[i].3.is_some()).collect();
        by_effect.sort_by_key(|&i| timed[i].3);
        let mut register = Value::Null;
        let mut answers = vec![(None, OpType::Ok); timed.len()];
        for i in by_effect {
            let s = timed[i].0;
            answers[i] = match s.f {
                0 => (Some(register.clone()), OpType::Ok),
                1 => {
                    register = json!(s.a);
                    (None, OpType::Ok)
                }
                _ if register == json!(s.a) => {
                    register = json!(s.b);
                    (None, OpType::Ok)
                }
                _ => (None, OpType::Fail),
            };
        }
        let ops = timed
            .iter()
            .zip(answers)
            .map(|(&(s, invoke, complete, _), (result, outcome))| {
                let (f, value) = match s.f {
                    0 => ("read", Value::Null),
                    1 => ("write", json!(s.a)),
                    _ => ("cas", json!([s.a, s.b])),
                };
                let outcome = if s.info { OpType::Info } else { outcome };
                fixture::op(s.process, f, value, result, outcome, (invoke, complete))
            })
            .collect();
        history(ops, vec![])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn histories_of_a_simulated_atomic_register_are_always_linearizable(
            sim in prop::collection::vec(simulated(), 1..40)
        ) {
            let h = atomic_register_history(&sim);
            let r = super::super::check(&spec(Model::CasRegister, MAX_STATES), &h);
            // Only indeterminate reads leave nothing to check, which is unknown.
            let expected = if r.checked == 0 { Validity::Unknown } else { Validity::Valid };
            prop_assert_eq!(r.validity, expected, "{}", r);
        }

        #[test]
        fn the_search_agrees_with_trying_every_order(calls in prop::collection::vec(small_call(), 1..7)) {
            let expected = brute_force(&calls);
            let found = match wgl::search(&Register, &calls, MAX_STATES) {
                Outcome::Linearizable { .. } => true,
                Outcome::Nonlinearizable(_) => false,
                Outcome::Bounded { .. } => unreachable!("a handful of calls stays far below the bound"),
            };
            prop_assert_eq!(found, expected);
        }
    }
}
