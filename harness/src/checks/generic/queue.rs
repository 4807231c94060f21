//! `queue` and `total-queue`: what comes out of a queue went in, no more often than it
//! went in, and (`total-queue`) everything acknowledged comes out (Jepsen's
//! `total-queue`; elements are counted as a multiset, order is not checked).
//!
//! What it reads:
//!
//! - enqueues (`f` = the spec's `enqueue`, default `enqueue`) carry the element in
//!   `value`; every enqueue, whatever its outcome, counts as attempted;
//! - `ok` dequeues (`dequeue`) carry the element in `result`; a `null` result is an
//!   empty queue and is ignored;
//! - `ok` drains (`drain`), normally the final reads, carry an array in `result`, each
//!   element counted as dequeued.
//!
//! Elements are compared by [`element_key`]. `total-queue` without a drain that
//! answered among the final reads is `unknown`: what stayed in the queue was never
//! read. An indeterminate enqueue whose element came out is `recovered` (a note), and
//! so is the number of indeterminate dequeues, which may have taken an element no one
//! saw: Jepsen's total-queue, like this one, expects the drain to empty the queue.
//!
//! [`element_key`]: crate::checks::op::element_key

use serde_json::Value;

use super::{describe, unless_overflowed, Element, FastMap};
use crate::checks::op::{Op, OpHistory, OpType, FINAL_PROCESS};
use crate::checks::{CheckResult, Checking, Clause};

/// The clauses of `queue`.
pub const QUEUE: &[Clause] = &[
    Clause {
        invariant: "queue",
        name: "unexpected",
        rule: "every element dequeued was attempted by some enqueue (ok, fail or info)",
    },
    Clause {
        invariant: "queue",
        name: "duplicated",
        rule: "no element is dequeued more times than enqueues attempted it",
    },
];

/// The clauses of `total-queue`: those of `queue`, and `lost`.
pub const TOTAL_QUEUE: &[Clause] = &[
    Clause {
        invariant: "total-queue",
        name: "unexpected",
        rule: "every element dequeued was attempted by some enqueue (ok, fail or info)",
    },
    Clause {
        invariant: "total-queue",
        name: "duplicated",
        rule: "no element is dequeued more times than enqueues attempted it",
    },
    Clause {
        invariant: "total-queue",
        name: "lost",
        rule: "every element acknowledged `ok` by an enqueue is dequeued or drained, once per acknowledgement",
    },
];

/// How often one element went in and came out.
#[derive(Default)]
struct Tally<'h> {
    attempted: i64,
    acknowledged: i64,
    dequeued: i64,
    /// Its first enqueue, else its first dequeue.
    first: Option<&'h Op>,
}

/// The tallies of every element, in the order each first appeared.
#[derive(Default)]
struct Tallies<'h> {
    list: Vec<(Element<'h>, Tally<'h>)>,
    by_key: FastMap<Element<'h>, usize>,
}

impl<'h> Tallies<'h> {
    fn entry(&mut self, element: &'h Value, op: &'h Op) -> &mut Tally<'h> {
        let list = &mut self.list;
        let i = *self.by_key.entry(Element::new(element)).or_insert_with_key(|&e| {
            list.push((e, Tally::default()));
            list.len() - 1
        });
        let t = &mut list[i].1;
        t.first.get_or_insert(op);
        t
    }
}

/// Checks `history` as a queue: `enqueue`s, `dequeue`s and `drain`s. `total` makes it
/// `total-queue`.
pub fn check(history: &OpHistory, enqueue: &str, dequeue: &str, drain: &str, total: bool) -> CheckResult {
    let clauses = if total { TOTAL_QUEUE } else { QUEUE };
    let mut c = Checking::new(clauses, "elements");
    unless_overflowed(&mut c, history);
    let mut tallies = Tallies::default();
    let mut indeterminate_dequeues = 0usize;
    for op in &history.ops {
        if op.f == enqueue {
            let t = tallies.entry(&op.value, op);
            t.attempted += 1;
            t.acknowledged += i64::from(op.outcome == OpType::Ok);
        } else if op.f == dequeue && op.outcome == OpType::Info {
            indeterminate_dequeues += 1;
        }
    }
    let mut drained = false;
    for op in history.ops.iter().chain(&history.final_reads).filter(|op| op.outcome == OpType::Ok) {
        let out: &[Value] = match &op.result {
            Some(Value::Null) | None if op.f == dequeue => &[],
            Some(v) if op.f == dequeue => std::slice::from_ref(v),
            Some(Value::Array(items)) if op.f == drain => {
                drained |= op.process == FINAL_PROCESS;
                items
            }
            _ if op.f == drain => {
                c.cannot_tell(format!("a drain cannot be counted: {} did not return an array", describe(op)));
                continue;
            }
            _ => continue,
        };
        for v in out {
            tallies.entry(v, op).dequeued += 1;
        }
    }
    if total && !drained {
        c.cannot_tell("no final drain answered, so what stayed in the queue was never read");
    }
    judge(&mut c, clauses, &tallies, total && drained);
    if indeterminate_dequeues > 0 {
        c.note(format!("{indeterminate_dequeues} indeterminate dequeue(s) may have taken elements no one saw"));
    }
    c.subjects(tallies.list.len());
    c.finish()
}

/// Judges every element's tally: `unexpected` and `duplicated` for what came out,
/// `lost` (the third of `clauses`) when `lost` is judged.
fn judge(c: &mut Checking, clauses: &'static [Clause], tallies: &Tallies, lost: bool) {
    let (unexpected, duplicated) = (&clauses[0], &clauses[1]);
    let mut recovered = 0i64;
    for (key, t) in &tallies.list {
        let first = || t.first.map(describe).unwrap_or_default();
        let subject = || format!("element {key}");
        if t.dequeued > 0 {
            c.judge(
                unexpected,
                (t.attempted == 0).then(|| {
                    (
                        subject(),
                        format!("dequeued {} time(s), first by {}, never enqueued", t.dequeued, first()),
                        t.dequeued,
                    )
                }),
            );
            if t.attempted > 0 {
                let extra = t.dequeued - t.attempted;
                c.judge(
                    duplicated,
                    (extra > 0).then(|| {
                        let detail = format!(
                            "dequeued {} time(s), enqueued {} time(s) (first {})",
                            t.dequeued,
                            t.attempted,
                            first()
                        );
                        (subject(), detail, extra)
                    }),
                );
            }
            recovered += (t.dequeued.min(t.attempted) - t.acknowledged).max(0);
        }
        if lost && t.acknowledged > 0 {
            let missing = t.acknowledged - t.dequeued;
            c.judge(
                &clauses[2],
                (missing > 0).then(|| {
                    let detail = format!(
                        "acknowledged by {} enqueue(s) (first {}), dequeued or drained {} time(s)",
                        t.acknowledged,
                        first(),
                        t.dequeued
                    );
                    (subject(), detail, missing)
                }),
            );
        }
    }
    if recovered > 0 {
        c.note(format!("{recovered} indeterminate enqueue(s) took effect (recovered)"));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::super::fixture::{self, final_read, history, ok, Mutations};
    use super::super::CheckerSpec;
    use super::*;
    use crate::checks::Validity;

    fn enqueue(p: u64, v: i64, outcome: OpType, t: (u64, u64)) -> Op {
        fixture::op(p, "enqueue", json!(v), None, outcome, t)
    }

    fn dequeue(p: u64, out: Value, t: (u64, u64)) -> Op {
        ok(p, "dequeue", Value::Null, Some(out), t)
    }

    /// 1 and 2 acknowledged, 3 indeterminate (recovered by the drain), 4 failed; 1 is
    /// dequeued, a dequeue finds the queue empty, the drain takes the rest.
    fn consistent_with(second_dequeue: Value, drained: Value) -> OpHistory {
        history(
            vec![
                enqueue(0, 1, OpType::Ok, (0, 10)),
                enqueue(1, 2, OpType::Ok, (5, 15)),
                enqueue(2, 3, OpType::Info, (6, 30)),
                enqueue(0, 4, OpType::Fail, (12, 14)),
                dequeue(1, json!(1), (20, 25)),
                dequeue(0, second_dequeue, (26, 28)),
            ],
            vec![final_read("drain", drained, 100)],
        )
    }

    pub(crate) fn mutations() -> Mutations {
        let spec = |total| CheckerSpec::Queue {
            enqueue: "enqueue".into(),
            dequeue: "dequeue".into(),
            drain: "drain".into(),
            total,
        };
        Mutations {
            specs: vec![spec(false), spec(true)],
            consistent: consistent_with(Value::Null, json!([2, 3])),
            cases: vec![
                ("unexpected", consistent_with(json!(9), json!([2, 3]))),
                ("duplicated", consistent_with(json!(1), json!([2, 3]))),
                ("lost", consistent_with(Value::Null, json!([3]))),
            ],
        }
    }

    #[test]
    fn the_consistent_history_passes_queue_and_total_queue() {
        fixture::assert_the_consistent_history_passes(&mutations());
    }

    #[test]
    fn each_mutation_breaks_its_clause_and_nothing_else() {
        fixture::assert_each_mutation_breaks_its_clause_alone(&mutations());
    }

    #[test]
    fn an_indeterminate_enqueue_that_came_out_is_recovered() {
        let r = check(&consistent_with(Value::Null, json!([2, 3])), "enqueue", "dequeue", "drain", true);
        assert!(r.notes.iter().any(|n| n.starts_with("1 indeterminate enqueue(s) took effect")), "{r}");
    }

    #[test]
    fn total_queue_without_a_final_drain_is_unknown_but_queue_is_not() {
        let mut h = consistent_with(Value::Null, json!([2, 3]));
        h.final_reads.clear();
        let r = check(&h, "enqueue", "dequeue", "drain", true);
        assert_eq!(r.validity, Validity::Unknown, "{r}");
        assert!(r.summary.contains("no final drain answered"), "{r}");
        assert_eq!(check(&h, "enqueue", "dequeue", "drain", false).validity, Validity::Valid);
    }

    #[test]
    fn an_element_enqueued_twice_may_come_out_twice() {
        let h = history(
            vec![
                enqueue(0, 7, OpType::Ok, (0, 1)),
                enqueue(0, 7, OpType::Ok, (2, 3)),
                dequeue(1, json!(7), (4, 5)),
                dequeue(1, json!("7"), (6, 7)),
            ],
            vec![final_read("drain", json!([]), 100)],
        );
        assert_eq!(check(&h, "enqueue", "dequeue", "drain", true).validity, Validity::Valid);
    }
}
