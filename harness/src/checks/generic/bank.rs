//! `bank`: transfers between accounts conserve the total, and no balance goes below
//! zero (Jepsen's `bank`).
//!
//! What it reads: reads (`f` = the spec's `read`, default `read`) carry every
//! account's balance in `result`, a JSON object `{account: balance}` of integers.
//! Every `ok` read is checked, those of the run and the final reads alike; other
//! operations (the transfers) are not looked at.
//!
//! The total is the spec's `total`, or else the sum of the first read (a note says
//! so). When the spec lists its `accounts`, every read holds exactly those.

use std::collections::HashSet;

use serde_json::Map;
use serde_json::Value;

use super::{describe, integer, unless_overflowed};
use crate::checks::op::{Op, OpHistory, OpType};
use crate::checks::{CheckResult, Checking, Clause};

/// The clauses of `bank`.
pub const BANK: &[Clause] = &[
    Clause {
        invariant: "bank",
        name: "wrong-total",
        rule: "the balances of every read sum to the total: transfers move money, they never make or destroy it",
    },
    Clause { invariant: "bank", name: "negative-balance", rule: "no read shows an account with a negative balance" },
    Clause {
        invariant: "bank",
        name: "unexpected-account",
        rule: "every account a read shows is one of the scenario's `accounts`",
    },
    Clause {
        invariant: "bank",
        name: "missing-account",
        rule: "every read shows every one of the scenario's `accounts`",
    },
];

const WRONG_TOTAL: &Clause = &BANK[0];
const NEGATIVE: &Clause = &BANK[1];
const UNEXPECTED: &Clause = &BANK[2];
const MISSING: &Clause = &BANK[3];

/// How many accounts one counterexample names.
const MAX_NAMED_ACCOUNTS: usize = 3;

/// A read's balances, or why it has none.
fn balances(op: &Op) -> Result<(&Map<String, Value>, i128), String> {
    let Some(Value::Object(accounts)) = &op.result else {
        return Err(format!("{} did not return an object of balances", describe(op)));
    };
    let mut sum = 0i128;
    for (name, balance) in accounts {
        let b = integer(balance).ok_or_else(|| format!("{} gave account {name} no integer balance", describe(op)))?;
        sum += i128::from(b);
    }
    Ok((accounts, sum))
}

fn named<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.take(MAX_NAMED_ACCOUNTS).collect::<Vec<_>>().join(", ")
}

/// Checks the balance `read`s of `history`: against `total` (or the first read's sum),
/// and against `accounts` when given.
pub fn check(history: &OpHistory, read: &str, total: Option<i64>, accounts: Option<&[String]>) -> CheckResult {
    let mut c = Checking::new(BANK, "reads");
    unless_overflowed(&mut c, history);
    let reads = history.ops.iter().chain(&history.final_reads).filter(|op| op.f == read && op.outcome == OpType::Ok);
    let expected: Option<HashSet<&str>> = accounts.map(|a| a.iter().map(String::as_str).collect());
    let mut total = total.map(i128::from);
    let (mut checked, mut unreadable) = (0usize, 0usize);
    for r in reads {
        let (shown, sum) = match balances(r) {
            Ok(b) => b,
            Err(why) => {
                unreadable += 1;
                c.cannot_tell(format!("a read cannot be checked: {why}"));
                continue;
            }
        };
        checked += 1;
        let total = *total.get_or_insert_with(|| {
            c.note(format!("no total was given: took {sum}, the sum of the first read ({})", describe(r)));
            sum
        });
        let subject = || format!("read op {}", r.index);
        c.judge(
            WRONG_TOTAL,
            (sum != total).then(|| {
                let off = i64::try_from(sum - total).unwrap_or(i64::MAX);
                (subject(), format!("{} sums to {sum}, not {total}", describe(r)), off)
            }),
        );
        let negative: Vec<(&str, i64)> =
            shown.iter().filter_map(|(a, b)| integer(b).filter(|b| *b < 0).map(|b| (a.as_str(), b))).collect();
        c.judge(
            NEGATIVE,
            (!negative.is_empty()).then(|| {
                let worst = negative.iter().map(|(_, b)| *b).min().unwrap_or(0);
                let list = named(negative.iter().map(|(a, _)| *a));
                (subject(), format!("{} shows negative balances: {list}", describe(r)), worst.saturating_neg())
            }),
        );
        let Some(expected) = &expected else { continue };
        let unexpected: Vec<&str> = shown.keys().map(String::as_str).filter(|a| !expected.contains(a)).collect();
        c.judge(
            UNEXPECTED,
            (!unexpected.is_empty()).then(|| {
                let detail =
                    format!("{} shows accounts not in `accounts`: {}", describe(r), named(unexpected.iter().copied()));
                (subject(), detail, unexpected.len() as i64)
            }),
        );
        let missing: Vec<&str> =
            accounts.unwrap_or_default().iter().map(String::as_str).filter(|a| !shown.contains_key(*a)).collect();
        c.judge(
            MISSING,
            (!missing.is_empty()).then(|| {
                let detail = format!("{} lacks accounts: {}", describe(r), named(missing.iter().copied()));
                (subject(), detail, missing.len() as i64)
            }),
        );
    }
    if unreadable > 0 {
        c.note(format!("{unreadable} read(s) returned no balances and were not checked"));
    }
    c.subjects(checked);
    c.finish()
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::super::fixture::{self, final_read, history, ok, Mutations};
    use super::super::CheckerSpec;
    use super::*;
    use crate::checks::Validity;

    fn read(p: u64, balances: Value, t: (u64, u64)) -> Op {
        ok(p, "read", Value::Null, Some(balances), t)
    }

    /// Two accounts holding 20 between them; a transfer in between (ignored).
    fn consistent_with(second_read: Value) -> OpHistory {
        history(
            vec![
                read(0, json!({"a": 10, "b": 10}), (0, 10)),
                ok(1, "transfer", json!({"from": "a", "to": "b", "amount": 5}), None, (5, 15)),
                read(2, second_read, (20, 30)),
            ],
            vec![final_read("read", json!({"a": 5, "b": 15}), 100)],
        )
    }

    pub(crate) fn mutations() -> Mutations {
        Mutations {
            specs: vec![CheckerSpec::Bank {
                read: "read".into(),
                total: Some(20),
                accounts: Some(vec!["a".into(), "b".into()]),
            }],
            consistent: consistent_with(json!({"a": 5, "b": 15})),
            cases: vec![
                ("wrong-total", consistent_with(json!({"a": 5, "b": 16}))),
                ("negative-balance", consistent_with(json!({"a": -5, "b": 25}))),
                ("unexpected-account", consistent_with(json!({"a": 5, "b": 15, "c": 0}))),
                ("missing-account", consistent_with(json!({"b": 20}))),
            ],
        }
    }

    #[test]
    fn the_consistent_history_passes_bank() {
        fixture::assert_the_consistent_history_passes(&mutations());
    }

    #[test]
    fn each_mutation_breaks_its_clause_and_nothing_else() {
        fixture::assert_each_mutation_breaks_its_clause_alone(&mutations());
    }

    #[test]
    fn without_accounts_only_the_total_and_the_signs_are_judged() {
        for (clause, h) in mutations().cases {
            let r = check(&h, "read", None, None);
            let expected: &[&str] = if clause.ends_with("-account") { &[] } else { &[clause] };
            assert_eq!(r.broken_clauses(), expected, "{r}");
        }
    }

    #[test]
    fn without_a_total_the_first_read_sets_it_and_a_note_says_so() {
        let r = check(&consistent_with(json!({"a": 5, "b": 15})), "read", None, None);
        assert!(r.notes.iter().any(|n| n.starts_with("no total was given: took 20")), "{r}");
    }

    #[test]
    fn a_wrong_total_is_as_bad_as_its_discrepancy() {
        let r = check(&consistent_with(json!({"a": 5, "b": 12})), "read", Some(20), None);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.first.expect("a counterexample").magnitude, -3);
    }

    #[test]
    fn a_read_without_balances_makes_the_verdict_unknown() {
        let r = check(&consistent_with(json!([5, 15])), "read", Some(20), None);
        assert_eq!(r.validity, Validity::Unknown, "{r}");
    }
}
