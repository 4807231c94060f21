//! The sample shop's invariants, checked from outside the harness: Gauntlet runs the
//! `shop-invariants` program as any external checker (`services/checks.toml` declares
//! it), with the run's history and final reads, and reads back its verdict.
//!
//! - `no_lost_orders`: nothing acknowledged is lost, nothing unasked for appears, no key
//!   places two orders ([`orders`]);
//! - `orders_terminate`: every order ends within `settle` ([`orders`]);
//! - `money_conserved`, `stock_conserved`: what PAID orders cost was charged once and
//!   their stock committed, nothing else kept ([`money`], [`stock`]);
//! - `events_delivered`: every ended order was told to its user once ([`events`]).
//!
//! The history is the place-order operations of the shop's workload ([`history`]); the
//! end state is each service's `GET /v1/admin/state`, taken as final reads ([`state`]).
//! Every checker is a pure function returning Gauntlet's [`CheckResult`]; every clause
//! has a fixture mutation that breaks it alone ([`fixture`]).

pub mod events;
pub mod history;
pub mod money;
pub mod orders;
pub mod state;
pub mod stock;

#[cfg(test)]
pub(crate) mod fixture;

use std::time::Duration;

use gauntlet::checks::{CheckResult, Clause};

/// The shop's invariants, by name.
pub const INVARIANTS: [&str; 5] =
    ["no_lost_orders", "orders_terminate", "money_conserved", "stock_conserved", "events_delivered"];

/// Every clause of every invariant, in report order.
pub fn all_clauses() -> impl Iterator<Item = &'static Clause> {
    orders::NO_LOST_ORDERS
        .iter()
        .chain(orders::ORDERS_TERMINATE)
        .chain(stock::STOCK_CONSERVED)
        .chain(money::MONEY_CONSERVED)
        .chain(events::EVENTS_DELIVERED)
}

/// What a check reads: the place-order operations, whether the history kept every
/// operation, the end state, and how long the settle phase waited of its bound.
pub struct Inputs<'a> {
    pub ops: &'a [history::Operation],
    pub history_complete: bool,
    pub state: &'a state::ShopState,
    pub waited: Duration,
    pub bound: Duration,
}

/// Checks invariant `name` (one of [`INVARIANTS`]); `None` for a name it does not know.
pub fn check(name: &str, i: &Inputs) -> Option<CheckResult> {
    Some(match name {
        "no_lost_orders" => orders::no_lost_orders(i.ops, i.state, i.history_complete),
        "orders_terminate" => orders::orders_terminate(i.state, i.waited, i.bound),
        "money_conserved" => money::money_conserved(i.state),
        "stock_conserved" => stock::stock_conserved(i.state, true),
        "events_delivered" => events::events_delivered(i.state),
        _ => return None,
    })
}

/// Invariant `name` could not be checked, because of `why`.
pub fn unknown(name: &str, why: impl Into<String>) -> CheckResult {
    CheckResult::unknown_of(name, all_clauses().filter(|c| c.invariant == name), why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gauntlet::checks::{Checking, Validity};

    #[test]
    fn clause_names_are_unique_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for c in all_clauses() {
            assert!(seen.insert((c.invariant, c.name)), "{} appears twice", c.name);
            assert!(INVARIANTS.contains(&c.invariant), "{}", c.invariant);
            assert!(c.rule.len() > 20, "{} needs a rule a reader understands", c.name);
        }
        for inv in INVARIANTS {
            assert!(all_clauses().any(|c| c.invariant == inv), "{inv} has no clause");
        }
    }

    #[test]
    fn nothing_checked_is_unknown_and_unknown_is_not_valid() {
        let r = Checking::new(orders::ORDERS_TERMINATE, "orders").finish();
        assert_eq!(r.validity, Validity::Unknown);
        let r = unknown("money_conserved", "payments answered 503");
        assert!(!r.valid());
        assert_eq!(r.clauses.len(), money::MONEY_CONSERVED.len());
    }

    fn check_all(f: &fixture::Fixture) -> Vec<CheckResult> {
        let i = Inputs {
            ops: &f.history,
            history_complete: true,
            state: &f.state,
            waited: Duration::ZERO,
            bound: Duration::ZERO,
        };
        INVARIANTS.iter().map(|n| check(n, &i).expect("a shop invariant")).collect()
    }

    #[test]
    fn the_consistent_fixture_passes_every_invariant() {
        for r in check_all(&fixture::consistent()) {
            assert_eq!(r.validity, Validity::Valid, "{r}");
        }
    }

    /// The mutation tests: each clause has a state that breaks it, and that state
    /// breaks nothing else, across all five invariants.
    #[test]
    fn every_clause_fails_on_its_own_mutation_and_nothing_else_does() {
        let mutations = fixture::mutations();
        for clause in all_clauses() {
            assert!(
                mutations.iter().any(|(breaks, _)| breaks[0] == clause.name),
                "clause {} has no mutation test",
                clause.name
            );
        }
        for (breaks, f) in &mutations {
            let results = check_all(f);
            let mut broken: Vec<&str> = results.iter().flat_map(|r| r.broken_clauses()).collect();
            broken.sort_unstable();
            let mut expected = breaks.to_vec();
            expected.sort_unstable();
            let shown: Vec<String> = results.iter().map(ToString::to_string).collect();
            assert_eq!(broken, expected, "mutation for {}:\n{}", breaks[0], shown.join("\n"));
            let r = results.iter().find(|r| r.clause(breaks[0]).is_some()).expect("its invariant");
            assert_eq!(r.validity, Validity::Invalid);
            let cx = r.clause(breaks[0]).and_then(|c| c.first.as_ref()).expect("a counterexample");
            assert_eq!(cx.clause, breaks[0]);
        }
    }

    #[test]
    fn a_counterexample_outweighs_an_unknown() {
        let mut c = Checking::new(orders::ORDERS_TERMINATE, "orders");
        c.cannot_tell("the history overflowed");
        c.judge(&orders::ORDERS_TERMINATE[0], Some(("order 1".into(), "still PENDING".into(), 1)));
        assert_eq!(c.finish().validity, Validity::Invalid);
    }
}
