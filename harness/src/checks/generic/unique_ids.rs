//! `unique-ids`: no id is handed out twice (Jepsen's `unique-ids`).
//!
//! What it reads: `ok` operations with `f` = the spec's `generate` (default
//! `generate`) carry the id the system generated in `result`. Ids are compared by
//! [`element_key`]. An `ok` generate without a result cannot be checked and makes the
//! verdict `unknown`; `info` and `fail` ones are not looked at.
//!
//! [`element_key`]: crate::checks::op::element_key

use super::{describe, shown, unless_overflowed, Element, FastMap};
use crate::checks::op::{Op, OpHistory, OpType};
use crate::checks::{CheckResult, Checking, Clause};

/// The clauses of `unique-ids`.
pub const UNIQUE_IDS: &[Clause] = &[Clause {
    invariant: "unique-ids",
    name: "duplicate-id",
    rule: "no two operations acknowledged `ok` were given the same id",
}];

const DUPLICATE: &Clause = &UNIQUE_IDS[0];

/// Checks the ids the `generate` operations of `history` returned.
pub fn check(history: &OpHistory, generate: &str) -> CheckResult {
    let mut c = Checking::new(UNIQUE_IDS, "ids");
    unless_overflowed(&mut c, history);
    // Each id's first holder and how many times it was handed out so far.
    let mut holders: FastMap<Element, (&Op, i64)> = FastMap::default();
    let mut without_id = 0usize;
    for op in history.ops.iter().filter(|op| op.f == generate && op.outcome == OpType::Ok) {
        let Some(id) = &op.result else {
            without_id += 1;
            c.cannot_tell(format!("{} returned no id", describe(op)));
            continue;
        };
        let (first, times) = holders.entry(Element::new(id)).or_insert((op, 0));
        *times += 1;
        let broken = (*times > 1).then(|| {
            let detail = format!("returned to {} and to {} ({} times so far)", describe(first), describe(op), times);
            (format!("id {}", shown(id)), detail, *times - 1)
        });
        c.judge(DUPLICATE, broken);
    }
    if without_id > 0 {
        c.note(format!("{without_id} ok generate(s) returned no id and were not checked"));
    }
    c.subjects(holders.len());
    c.finish()
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::{json, Value};

    use super::super::fixture::{self, history, ok, Mutations};
    use super::super::CheckerSpec;
    use super::*;
    use crate::checks::Validity;

    fn generate(p: u64, id: Value, t: (u64, u64)) -> Op {
        ok(p, "generate", Value::Null, Some(id), t)
    }

    fn ids(third: Value) -> OpHistory {
        history(
            vec![
                generate(0, json!(1), (0, 10)),
                generate(1, json!("2"), (5, 15)),
                fixture::op(2, "generate", Value::Null, None, OpType::Info, (6, 20)),
                generate(2, third, (30, 40)),
            ],
            vec![],
        )
    }

    pub(crate) fn mutations() -> Mutations {
        Mutations {
            specs: vec![CheckerSpec::UniqueIds { generate: "generate".into() }],
            consistent: ids(json!(3)),
            cases: vec![("duplicate-id", ids(json!("1")))],
        }
    }

    #[test]
    fn the_consistent_history_passes_unique_ids() {
        fixture::assert_the_consistent_history_passes(&mutations());
    }

    #[test]
    fn each_mutation_breaks_its_clause_and_nothing_else() {
        fixture::assert_each_mutation_breaks_its_clause_alone(&mutations());
    }

    #[test]
    fn a_duplicate_names_both_operations() {
        let r = check(&ids(json!(1)), "generate");
        let cx = r.first.expect("a counterexample");
        assert_eq!(cx.subject, "id 1");
        assert!(cx.detail.contains("op 0 (generate -> 1, ok, process 0)"), "{}", cx.detail);
        assert!(cx.detail.contains("op 3 (generate -> 1, ok, process 2)"), "{}", cx.detail);
    }

    #[test]
    fn an_ok_generate_without_an_id_makes_the_verdict_unknown() {
        let h = history(vec![fixture::op(0, "generate", Value::Null, None, OpType::Ok, (0, 1))], vec![]);
        assert_eq!(check(&h, "generate").validity, Validity::Unknown);
    }
}
