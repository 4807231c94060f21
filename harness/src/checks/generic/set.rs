//! `set` and `set-full`: every acknowledged add is in the final read, and nothing is
//! read that was never added (Jepsen's `set` and `set-full`).
//!
//! What it reads:
//!
//! - adds (`f` = the spec's `add`, default `add`) carry the element in `value`;
//! - reads (`f` = `read`) carry the whole set in `result`, a JSON array;
//! - the final read is the last `ok` read among the history's final reads; without one
//!   the verdict is `unknown` ("no final read answered").
//!
//! Elements are compared by [`element_key`]. An element's add counts as acknowledged
//! if any of its adds was `ok`. An indeterminate (`info`) add found in the final read
//! is `recovered`, not a violation; one absent from it is `never read`: both are noted.
//!
//! `set-full` also checks each `ok` read of the run: it must hold every element whose
//! add was acknowledged before the read was invoked (`stale-read`). It notes how long
//! acknowledged elements took to become visible: from the add's completion to the
//! completion of the first read invoked after it that held it.
//!
//! [`element_key`]: crate::checks::op::element_key

use serde_json::Value;

use super::{describe, secs, unless_overflowed, Element, FastMap, FastSet};
use crate::checks::op::{Op, OpHistory, OpType};
use crate::checks::{CheckResult, Checking, Clause};

/// The clauses of `set`.
pub const SET: &[Clause] = &[
    Clause {
        invariant: "set",
        name: "lost",
        rule: "every element whose add was acknowledged `ok` is in the final read",
    },
    Clause {
        invariant: "set",
        name: "unexpected",
        rule: "every element of the final read was attempted by some add (ok, fail or info)",
    },
];

/// The clauses of `set-full`: those of `set`, and `stale-read`.
pub const SET_FULL: &[Clause] = &[
    Clause {
        invariant: "set-full",
        name: "lost",
        rule: "every element whose add was acknowledged `ok` is in the final read",
    },
    Clause {
        invariant: "set-full",
        name: "unexpected",
        rule: "every element of the final read was attempted by some add (ok, fail or info)",
    },
    Clause {
        invariant: "set-full",
        name: "stale-read",
        rule: "every read of the run holds each element whose add was acknowledged before the read was invoked",
    },
];

/// How many elements a stale read's counterexample names.
const MAX_NAMED_MISSING: usize = 3;
/// How many stale reads get their missing elements named (the rest are counted), so a
/// run of stale reads over a large set stays linear.
const MAX_NAMED_STALE_READS: usize = 100;

/// What the adds of one element amounted to.
struct Added<'h> {
    element: Element<'h>,
    /// The best outcome of its adds: `Ok` over `Info` over `Fail`.
    best: OpType,
    /// When the earliest of its `ok` adds completed.
    acked_ns: Option<u64>,
    /// Its first add with outcome `best`.
    op: &'h Op,
}

fn rank(outcome: OpType) -> u8 {
    match outcome {
        OpType::Ok => 3,
        OpType::Info => 2,
        OpType::Fail => 1,
        OpType::Invoke => 0,
    }
}

/// The attempted elements in the order of their first add, and their positions by key.
struct Elements<'h> {
    list: Vec<Added<'h>>,
    by_key: FastMap<Element<'h>, usize>,
}

impl<'h> Elements<'h> {
    fn collect(history: &'h OpHistory, add: &str) -> Self {
        let mut list: Vec<Added> = Vec::new();
        let mut by_key = FastMap::default();
        for op in history.ops.iter().filter(|op| op.f == add) {
            let i = *by_key.entry(Element::new(&op.value)).or_insert_with_key(|&element| {
                list.push(Added { element, best: op.outcome, acked_ns: None, op });
                list.len() - 1
            });
            let e = &mut list[i];
            if rank(op.outcome) > rank(e.best) {
                e.best = op.outcome;
                e.op = op;
            }
            if op.outcome == OpType::Ok {
                e.acked_ns = Some(e.acked_ns.map_or(op.complete_ns, |t| t.min(op.complete_ns)));
            }
        }
        Self { list, by_key }
    }

    /// Marks with `stamp` the attempted elements `read` returned, calling `held` once
    /// for each; returns, each once and in the order listed, those no add attempted.
    /// `marks` has a slot per attempted element.
    fn mark_read(
        &self,
        read: &'h Op,
        stamp: u32,
        marks: &mut [u32],
        mut held: impl FnMut(usize),
    ) -> Result<Vec<Element<'h>>, String> {
        let Some(Value::Array(items)) = &read.result else {
            return Err(format!("{} did not return an array", describe(read)));
        };
        let mut unattempted = Vec::new();
        let mut seen_unattempted = FastSet::default();
        for v in items {
            let element = Element::new(v);
            match self.by_key.get(&element) {
                Some(&i) if marks[i] != stamp => {
                    marks[i] = stamp;
                    held(i);
                }
                Some(_) => {}
                None if seen_unattempted.insert(element) => unattempted.push(element),
                None => {}
            }
        }
        Ok(unattempted)
    }
}

/// Checks `history` as a set: `add`s of elements, `read`s of the whole set. `full`
/// makes it `set-full`.
pub fn check(history: &OpHistory, add: &str, read: &str, full: bool) -> CheckResult {
    let clauses = if full { SET_FULL } else { SET };
    let mut c = Checking::new(clauses, "elements");
    unless_overflowed(&mut c, history);
    let elements = Elements::collect(history, add);
    c.subjects(elements.list.len());
    // A slot per element: the stamp of the last read that held it.
    let mut marks = vec![0u32; elements.list.len()];
    if full {
        stale_reads(&mut c, history, &elements, read, &mut marks);
    }
    let final_read = history.final_reads.iter().rev().find(|op| op.f == read && op.outcome == OpType::Ok);
    let Some(final_read) = final_read else {
        c.cannot_tell("no final read answered");
        return c.finish();
    };
    let stamp = u32::MAX;
    match elements.mark_read(final_read, stamp, &mut marks, |_| {}) {
        Ok(unattempted) => {
            c.subjects(elements.list.len() + unattempted.len());
            let present = |i: usize| marks[i] == stamp;
            judge_final_read(&mut c, clauses, &elements, final_read, present, &unattempted);
        }
        Err(why) => c.cannot_tell(format!("the final read cannot be checked: {why}")),
    }
    c.finish()
}

/// `lost` and `unexpected` (the first two of `clauses`), and the notes on indeterminate adds.
fn judge_final_read(
    c: &mut Checking,
    clauses: &'static [Clause],
    elements: &Elements,
    final_read: &Op,
    present: impl Fn(usize) -> bool,
    unattempted: &[Element],
) {
    let (lost, unexpected) = (&clauses[0], &clauses[1]);
    debug_assert!(lost.name == "lost" && unexpected.name == "unexpected");
    let (mut recovered, mut never_read, mut failed_but_present) = (0usize, 0usize, 0usize);
    for (i, e) in elements.list.iter().enumerate() {
        let present = present(i);
        if present {
            c.judge(unexpected, None);
        }
        match e.best {
            OpType::Ok => c.judge(
                lost,
                (!present).then(|| {
                    let acked = e.acked_ns.unwrap_or(e.op.complete_ns);
                    let detail = format!(
                        "acknowledged by {} at {}, absent from the final read (op {})",
                        describe(e.op),
                        secs(acked),
                        final_read.index
                    );
                    (format!("element {}", e.element), detail, 1)
                }),
            ),
            OpType::Info if present => recovered += 1,
            OpType::Info => never_read += 1,
            _ if present => failed_but_present += 1,
            _ => {}
        }
    }
    for element in unattempted {
        let detail = format!("in the final read (op {}), yet no add ever attempted it", final_read.index);
        c.judge(unexpected, Some((format!("element {element}"), detail, 1)));
    }
    if recovered > 0 {
        c.note(format!("{recovered} indeterminate add(s) took effect (recovered)"));
    }
    if never_read > 0 {
        c.note(format!("{never_read} indeterminate add(s) never read: they did not take effect, or were lost"));
    }
    if failed_but_present > 0 {
        c.note(format!("{failed_but_present} element(s) whose every add failed are in the final read"));
    }
}

/// `stale-read`: every `ok` read of the run against the adds acknowledged before it was
/// invoked; and the latency to visibility, as a note.
fn stale_reads(c: &mut Checking, history: &OpHistory, elements: &Elements, read: &str, marks: &mut [u32]) {
    let stale = &SET_FULL[2];
    // Elements by acknowledgement time, so "acknowledged before t" is a prefix.
    let mut acked: Vec<(u64, usize)> =
        elements.list.iter().enumerate().filter_map(|(i, e)| e.acked_ns.map(|t| (t, i))).collect();
    acked.sort_unstable();
    let mut visible_after: Vec<Option<u64>> = vec![None; elements.list.len()];
    let mut named_stale = 0usize;
    let mut unreadable = 0usize;
    let reads = history.ops.iter().filter(|op| op.f == read && op.outcome == OpType::Ok);
    for (r, stamp) in reads.zip(1u32..u32::MAX) {
        let mut present = 0usize;
        let marked = elements.mark_read(r, stamp, marks, |i| {
            let Some(t) = elements.list[i].acked_ns.filter(|&t| t < r.invoke_ns) else { return };
            present += 1;
            visible_after[i].get_or_insert(r.complete_ns.saturating_sub(t));
        });
        if let Err(why) = marked {
            unreadable += 1;
            c.cannot_tell(format!("a read cannot be checked: {why}"));
            continue;
        }
        let before = acked.partition_point(|&(t, _)| t < r.invoke_ns);
        let missing = before - present;
        let broken = (missing > 0).then(|| {
            let mut detail = format!("{} missed {missing} element(s) acknowledged before it was invoked", describe(r));
            if named_stale < MAX_NAMED_STALE_READS {
                named_stale += 1;
                let named: Vec<String> = acked[..before]
                    .iter()
                    .filter(|&&(_, i)| marks[i] != stamp)
                    .take(MAX_NAMED_MISSING)
                    .map(|&(t, i)| format!("{} (acknowledged at {})", elements.list[i].element, secs(t)))
                    .collect();
                detail.push_str(&format!(": {}", named.join(", ")));
            }
            (format!("read op {}", r.index), detail, missing as i64)
        });
        c.judge(stale, broken);
    }
    if unreadable > 0 {
        c.note(format!("{unreadable} read(s) did not return an array and were not checked"));
    }
    note_visibility(c, visible_after, acked.len());
}

fn note_visibility(c: &mut Checking, visible_after: Vec<Option<u64>>, acked: usize) {
    let mut latencies: Vec<u64> = visible_after.into_iter().flatten().collect();
    let never = acked - latencies.len();
    if latencies.is_empty() {
        return;
    }
    let mid = latencies.len() / 2;
    let (_, median, _) = latencies.select_nth_unstable(mid);
    let median = *median;
    let max = latencies.iter().copied().max().unwrap_or(0);
    c.note(format!(
        "latency to visibility over {} element(s): median {:.1}ms, max {:.1}ms; {never} acknowledged element(s) no read of the run saw",
        latencies.len(),
        median as f64 / 1e6,
        max as f64 / 1e6
    ));
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::super::fixture::{self, final_read, history, ok, Mutations};
    use super::super::{check as check_spec, CheckerSpec};
    use super::*;
    use crate::checks::Validity;

    fn add(p: u64, v: i64, outcome: OpType, t: (u64, u64)) -> Op {
        fixture::op(p, "add", json!(v), None, outcome, t)
    }

    fn read(p: u64, seen: Value, t: (u64, u64)) -> Op {
        ok(p, "read", Value::Null, Some(seen), t)
    }

    /// 1 and 2 acknowledged, 3 indeterminate (recovered), 4 failed; a read during the
    /// run sees what was acknowledged before it.
    fn consistent_with(run_read: Value, final_set: Value) -> OpHistory {
        history(
            vec![
                add(1, 1, OpType::Ok, (0, 10)),
                add(2, 2, OpType::Ok, (5, 20)),
                add(3, 3, OpType::Info, (6, 50)),
                add(1, 4, OpType::Fail, (12, 15)),
                read(2, run_read, (30, 40)),
            ],
            vec![final_read("read", final_set, 100)],
        )
    }

    pub(crate) fn mutations() -> Mutations {
        let spec = |full| CheckerSpec::Set { add: "add".into(), read: "read".into(), full };
        Mutations {
            specs: vec![spec(false), spec(true)],
            consistent: consistent_with(json!([1, 2]), json!([1, 2, 3])),
            cases: vec![
                ("lost", consistent_with(json!([1, 2]), json!([1, 3]))),
                ("unexpected", consistent_with(json!([1, 2]), json!([1, 2, 3, 9]))),
                ("stale-read", consistent_with(json!([1]), json!([1, 2, 3]))),
            ],
        }
    }

    #[test]
    fn the_consistent_history_passes_set_and_set_full() {
        fixture::assert_the_consistent_history_passes(&mutations());
    }

    #[test]
    fn each_mutation_breaks_its_clause_and_nothing_else() {
        fixture::assert_each_mutation_breaks_its_clause_alone(&mutations());
    }

    #[test]
    fn recovered_and_never_read_indeterminate_adds_are_noted_not_violations() {
        let r = check(&consistent_with(json!([1, 2]), json!([1, 2, 3])), "add", "read", false);
        assert!(r.notes.iter().any(|n| n.contains("1 indeterminate add(s) took effect")), "{r}");
        let r = check(&consistent_with(json!([1, 2]), json!([1, 2])), "add", "read", false);
        assert_eq!(r.validity, Validity::Valid);
        assert!(r.notes.iter().any(|n| n.contains("1 indeterminate add(s) never read")), "{r}");
    }

    #[test]
    fn without_a_final_read_the_verdict_is_unknown() {
        let mut h = consistent_with(json!([1, 2]), json!([1, 2, 3]));
        h.final_reads.clear();
        let r = check(&h, "add", "read", false);
        assert_eq!(r.validity, Validity::Unknown);
        assert_eq!(r.unknown_because.as_deref(), Some("no final read answered"));
    }

    #[test]
    fn a_lost_element_names_its_add_and_the_final_read() {
        let r = check(&consistent_with(json!([1, 2]), json!([1, 3])), "add", "read", false);
        let cx = r.first.expect("a counterexample");
        assert_eq!(cx.subject, "element 2");
        assert!(cx.detail.contains("op 1 (add 2, ok, process 2)"), "{}", cx.detail);
    }

    #[test]
    fn a_number_and_its_text_are_one_element() {
        let r = check(&consistent_with(json!(["1", 2]), json!(["1", "2", 3])), "add", "read", true);
        assert_eq!(r.validity, Validity::Valid, "{r}");
    }

    #[test]
    fn set_full_notes_the_latency_to_visibility() {
        let r = check_spec(
            &CheckerSpec::Set { add: "add".into(), read: "read".into(), full: true },
            &consistent_with(json!([1, 2]), json!([1, 2, 3])),
        );
        assert!(r.notes.iter().any(|n| n.starts_with("latency to visibility over 2 element(s)")), "{r}");
    }
}
