//! `counter`: every read of a counter lies between what had certainly been added and
//! what could have been (Jepsen's `counter`).
//!
//! What it reads:
//!
//! - adds (`f` = the spec's `add`, default `add`) carry the increment in `value`, an
//!   integer (`null` means 1; it may be negative);
//! - reads (`f` = `read`) carry the count in `result`, an integer. Every `ok` read is
//!   checked, those of the run and the final reads alike.
//!
//! For a read invoked at `t0` and completed at `t1`, the adds that certainly took
//! effect are the `ok` ones completed before `t0`; those that may have are the `ok` and
//! `info` ones invoked before `t1` (a `fail` never did). The read must lie between the
//! least and the greatest sum the uncertain adds allow: with only positive increments,
//! the certain sum and the possible sum; a negative increment lowers the least sum
//! instead, so the bounds stay right for counters that go down.

use super::{describe, integer, unless_overflowed};
use crate::checks::op::{Op, OpHistory, OpType};
use crate::checks::{CheckResult, Checking, Clause};

/// The clauses of `counter`.
pub const COUNTER: &[Clause] = &[
    Clause {
        invariant: "counter",
        name: "read-too-low",
        rule: "a read is at least the least sum the adds acknowledged before it and those concurrent with it allow",
    },
    Clause {
        invariant: "counter",
        name: "read-too-high",
        rule: "a read is at most the greatest sum the adds invoked before it completed (ok or info) allow",
    },
];

const TOO_LOW: &Clause = &COUNTER[0];
const TOO_HIGH: &Clause = &COUNTER[1];

/// Running sums of the positive and the negative increments of adds in some order, so
/// the sums over any prefix are one lookup.
struct PrefixSums {
    /// The order's key (a completion or invocation time), ascending.
    at: Vec<u64>,
    /// `pos[i]`, `neg[i]`: the sums over the first `i` adds.
    pos: Vec<i128>,
    neg: Vec<i128>,
}

impl PrefixSums {
    fn new(mut adds: Vec<(u64, i64)>) -> Self {
        adds.sort_unstable_by_key(|&(t, _)| t);
        let (mut pos, mut neg) = (vec![0i128], vec![0i128]);
        for &(_, d) in &adds {
            let (p, n) = (*pos.last().expect("seeded"), *neg.last().expect("seeded"));
            pos.push(p + i128::from(d.max(0)));
            neg.push(n + i128::from(d.min(0)));
        }
        Self { at: adds.into_iter().map(|(t, _)| t).collect(), pos, neg }
    }

    /// The sums over the adds whose time satisfies `before`.
    fn over(&self, before: impl Fn(u64) -> bool) -> (i128, i128) {
        let n = self.at.partition_point(|&t| before(t));
        (self.pos[n], self.neg[n])
    }
}

/// An add's increment, or why it has none.
fn increment(op: &Op) -> Result<i64, String> {
    if op.value.is_null() {
        return Ok(1);
    }
    integer(&op.value).ok_or_else(|| format!("{} carries no integer increment", describe(op)))
}

/// Checks `history` as a counter: `add`s of increments, `read`s of the count.
pub fn check(history: &OpHistory, add: &str, read: &str) -> CheckResult {
    let mut c = Checking::new(COUNTER, "reads");
    unless_overflowed(&mut c, history);
    let (mut certain, mut possible) = (Vec::new(), Vec::new());
    for op in history.ops.iter().filter(|op| op.f == add && op.outcome != OpType::Fail) {
        let d = match increment(op) {
            Ok(d) => d,
            Err(why) => {
                c.cannot_tell(format!("an add cannot be counted: {why}"));
                return c.finish();
            }
        };
        if op.outcome == OpType::Ok {
            certain.push((op.complete_ns, d));
        }
        possible.push((op.invoke_ns, d));
    }
    let certain = PrefixSums::new(certain);
    let possible = PrefixSums::new(possible);
    let reads = history.ops.iter().chain(&history.final_reads).filter(|op| op.f == read && op.outcome == OpType::Ok);
    let (mut checked, mut unreadable) = (0usize, 0usize);
    for r in reads {
        let Some(value) = r.result.as_ref().and_then(integer) else {
            unreadable += 1;
            c.cannot_tell(format!("a read cannot be checked: {} returned no integer", describe(r)));
            continue;
        };
        checked += 1;
        let (certain_pos, certain_neg) = certain.over(|t| t < r.invoke_ns);
        let (possible_pos, possible_neg) = possible.over(|t| t <= r.complete_ns);
        let lower = certain_pos + possible_neg;
        let upper = certain_neg + possible_pos;
        let value = i128::from(value);
        let off = |bound: i128, by: i128, word: &str| {
            let detail = format!("{} read {value}, {word} the {bound} the adds allow", describe(r));
            (format!("read op {}", r.index), detail, i64::try_from(by).unwrap_or(i64::MAX))
        };
        c.judge(TOO_LOW, (value < lower).then(|| off(lower, lower - value, "below")));
        c.judge(TOO_HIGH, (value > upper).then(|| off(upper, value - upper, "above")));
    }
    if unreadable > 0 {
        c.note(format!("{unreadable} read(s) returned no integer and were not checked"));
    }
    c.subjects(checked);
    c.finish()
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::{json, Value};

    use super::super::fixture::{self, final_read, history, ok, Mutations};
    use super::super::CheckerSpec;
    use super::*;
    use crate::checks::Validity;

    fn add(p: u64, v: Value, outcome: OpType, t: (u64, u64)) -> Op {
        fixture::op(p, "add", v, None, outcome, t)
    }

    fn read(p: u64, n: i64, t: (u64, u64)) -> Op {
        ok(p, "read", Value::Null, Some(json!(n)), t)
    }

    /// +1 acknowledged, +2 indeterminate, +5 failed: the first read may see 1 to 3.
    fn consistent_with(first_read: i64) -> OpHistory {
        history(
            vec![
                add(0, json!(1), OpType::Ok, (0, 10)),
                add(1, json!(2), OpType::Info, (5, 15)),
                add(2, json!(5), OpType::Fail, (6, 8)),
                read(0, first_read, (20, 30)),
                read(2, 3, (40, 50)),
            ],
            vec![final_read("read", json!(3), 100)],
        )
    }

    pub(crate) fn mutations() -> Mutations {
        Mutations {
            specs: vec![CheckerSpec::Counter { add: "add".into(), read: "read".into() }],
            consistent: consistent_with(1),
            cases: vec![("read-too-low", consistent_with(0)), ("read-too-high", consistent_with(4))],
        }
    }

    #[test]
    fn the_consistent_history_passes_counter() {
        fixture::assert_the_consistent_history_passes(&mutations());
    }

    #[test]
    fn each_mutation_breaks_its_clause_and_nothing_else() {
        fixture::assert_each_mutation_breaks_its_clause_alone(&mutations());
    }

    #[test]
    fn a_read_concurrent_with_an_acknowledged_add_may_see_it_or_not() {
        for seen in [0, 1] {
            let h = history(vec![add(0, Value::Null, OpType::Ok, (0, 10)), read(1, seen, (5, 8))], vec![]);
            assert_eq!(check(&h, "add", "read").validity, Validity::Valid, "read {seen}");
        }
    }

    #[test]
    fn a_negative_increment_lowers_the_least_count_not_the_greatest() {
        let h = |seen| {
            history(
                vec![
                    add(0, json!(5), OpType::Ok, (0, 10)),
                    add(1, json!(-3), OpType::Info, (20, 30)),
                    read(2, seen, (25, 35)),
                ],
                vec![],
            )
        };
        assert_eq!(check(&h(2), "add", "read").validity, Validity::Valid);
        assert_eq!(check(&h(5), "add", "read").validity, Validity::Valid);
        assert_eq!(check(&h(1), "add", "read").broken_clauses(), ["read-too-low"]);
        assert_eq!(check(&h(6), "add", "read").broken_clauses(), ["read-too-high"]);
    }

    #[test]
    fn a_too_low_read_says_by_how_much() {
        let r = check(&consistent_with(-4), "add", "read");
        let cx = r.first.expect("a counterexample");
        assert_eq!(cx.magnitude, 5);
        assert!(cx.detail.contains("read -4, below the 1 the adds allow"), "{}", cx.detail);
    }

    #[test]
    fn an_add_without_an_integer_makes_the_verdict_unknown() {
        let h = history(vec![add(0, json!("x"), OpType::Ok, (0, 10)), read(1, 1, (20, 30))], vec![]);
        assert_eq!(check(&h, "add", "read").validity, Validity::Unknown);
    }
}
