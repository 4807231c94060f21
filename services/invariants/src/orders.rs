//! Orders: nothing acknowledged is lost, nothing unasked for appears, nothing is
//! placed twice, and every order ends.
//!
//! Operations and orders are matched by the idempotency key the load sent (the orders
//! admin state carries each order's key) and, where an answer came back, by the id it
//! returned. A workload that sends no key can still be checked by id, but indeterminate
//! operations without a key cannot be told apart, so the phantom clause gives them the
//! benefit of the doubt (and says how many it could not resolve).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::history::{OpOutcome, Operation};
use crate::state::{OrderRecord, ShopState};
use gauntlet::checks::{CheckResult, Checking, Clause};

/// The history kind of a place-order operation.
pub const PLACE_ORDER: &str = "place_order";

/// The clauses of `no_lost_orders`.
pub const NO_LOST_ORDERS: &[Clause] = &[
    Clause {
        invariant: "no_lost_orders",
        name: "duplicate-order",
        rule: "at most one order exists per idempotency key: a replayed request must not place a second order",
    },
    Clause {
        invariant: "no_lost_orders",
        name: "phantom-order",
        rule: "every order traces to an operation the load invoked, by its idempotency key or by the id an answer returned",
    },
    Clause {
        invariant: "no_lost_orders",
        name: "failed-op-took-effect",
        rule: "no order exists for an operation answered as failed (a 4xx, or a connection never made)",
    },
    Clause {
        invariant: "no_lost_orders",
        name: "lost-acknowledged",
        rule: "every operation acknowledged `ok` names an order the orders service still has",
    },
    Clause {
        invariant: "no_lost_orders",
        name: "acknowledged-state-changed",
        rule: "an order acknowledged in a terminal state (PAID or CANCELLED) is still in that state",
    },
    Clause {
        invariant: "no_lost_orders",
        name: "unknown-not-terminal",
        rule: "an indeterminate (`unknown`) operation that took effect left an order that reached PAID or CANCELLED",
    },
];

/// The clauses of `orders_terminate`.
pub const ORDERS_TERMINATE: &[Clause] = &[Clause {
    invariant: "orders_terminate",
    name: "non-terminal",
    rule: "every order is PAID or CANCELLED once the faults healed and orders had `settle` to finish",
}];

const DUPLICATE: &Clause = &NO_LOST_ORDERS[0];
const PHANTOM: &Clause = &NO_LOST_ORDERS[1];
const FAILED_TOOK_EFFECT: &Clause = &NO_LOST_ORDERS[2];
const LOST: &Clause = &NO_LOST_ORDERS[3];
const STATE_CHANGED: &Clause = &NO_LOST_ORDERS[4];
const UNKNOWN_NOT_TERMINAL: &Clause = &NO_LOST_ORDERS[5];
const NON_TERMINAL: &Clause = &ORDERS_TERMINATE[0];

/// The forms under which an order's stored key matches the key a client sent: the key
/// itself and, for a key a service scoped with prefixes (`user:key`, as the shop's
/// gateway does), every suffix after a `:`.
fn key_forms(stored: &str) -> impl Iterator<Item = &str> {
    std::iter::once(stored).chain(stored.match_indices(':').map(move |(i, _)| &stored[i + 1..]))
}

/// The orders a history's place-order operations could have placed, indexed both ways.
struct Orders<'a> {
    by_id: BTreeMap<&'a str, &'a OrderRecord>,
    by_key: BTreeMap<&'a str, Vec<&'a OrderRecord>>,
}

impl<'a> Orders<'a> {
    fn new(state: &'a ShopState) -> Self {
        let mut by_key: BTreeMap<&str, Vec<&OrderRecord>> = BTreeMap::new();
        for o in &state.orders {
            for k in o.idempotency_key.as_deref().into_iter().flat_map(key_forms) {
                by_key.entry(k).or_default().push(o);
            }
        }
        Self { by_id: state.orders.iter().map(|o| (o.id.as_str(), o)).collect(), by_key }
    }

    /// The order an operation placed, if it can be found: by the id its answer
    /// returned, else by its key (the first order of that key).
    fn of(&self, op: &Operation) -> Option<&'a OrderRecord> {
        op.returned_id
            .as_deref()
            .and_then(|id| self.by_id.get(id).copied())
            .or_else(|| op.idempotency_key.as_deref().and_then(|k| self.by_key.get(k)).and_then(|v| v.first().copied()))
    }
}

/// Checks the place-order operations of `history` against the orders of `state`,
/// clause by clause ([`NO_LOST_ORDERS`]). `history_complete` is false when the history
/// overflowed: then an order no kept operation explains may still have one, and the
/// verdict cannot be `valid`.
pub fn no_lost_orders(history: &[Operation], state: &ShopState, history_complete: bool) -> CheckResult {
    let ops: Vec<&Operation> = history.iter().filter(|op| op.kind == PLACE_ORDER).collect();
    let orders = Orders::new(state);
    let mut c = Checking::new(NO_LOST_ORDERS, "place-order operations");
    c.subjects(ops.len());
    if !history_complete {
        c.cannot_tell("the history overflowed, so some operations were not kept");
    }

    let mut by_stored_key: BTreeMap<&str, Vec<&OrderRecord>> = BTreeMap::new();
    for o in &state.orders {
        if let Some(k) = o.idempotency_key.as_deref() {
            by_stored_key.entry(k).or_default().push(o);
        }
    }
    for (key, placed) in &by_stored_key {
        let broken = (placed.len() > 1).then(|| {
            let ids: Vec<&str> = placed.iter().map(|o| o.id.as_str()).collect();
            (
                format!("idempotency key {key}"),
                format!("{} orders for one key: {}", placed.len(), ids.join(", ")),
                placed.len() as i64 - 1,
            )
        });
        c.judge(DUPLICATE, broken);
    }

    // Phantoms: orders no operation explains. A keyless order may be one of the
    // keyless indeterminate operations that returned no id; those are given the doubt.
    let keys: BTreeSet<&str> = ops.iter().filter_map(|op| op.idempotency_key.as_deref()).collect();
    let returned: BTreeSet<&str> = ops.iter().filter_map(|op| op.returned_id.as_deref()).collect();
    let mut unexplained_keyless = ops
        .iter()
        .filter(|op| op.idempotency_key.is_none() && op.returned_id.is_none() && op.outcome == OpOutcome::Unknown)
        .count();
    let doubted = unexplained_keyless;
    for o in &state.orders {
        let traced = returned.contains(o.id.as_str())
            || o.idempotency_key.as_deref().is_some_and(|k| key_forms(k).any(|k| keys.contains(k)));
        let broken = match (traced, o.idempotency_key.as_deref()) {
            (true, _) => None,
            (false, None) if unexplained_keyless > 0 => {
                unexplained_keyless -= 1;
                None
            }
            (false, key) => Some((
                format!("order {}", o.id),
                match key {
                    Some(k) => format!("{} with key {k}, which no operation of the run sent", o.status),
                    None => format!("{} with no key and an id no answer returned", o.status),
                },
                1,
            )),
        };
        c.judge(PHANTOM, broken);
    }
    if doubted > 0 {
        c.note(format!(
            "{doubted} indeterminate operation(s) had neither a key nor an id; keyless orders were matched to them"
        ));
    }

    // Failed operations: every operation of a key failed, yet an order has that key.
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for op in &ops {
        if let Some(k) = op.idempotency_key.as_deref() {
            by_key.entry(k).or_default().push(op);
        }
    }
    for (key, key_ops) in &by_key {
        if key_ops.iter().any(|op| op.outcome != OpOutcome::Fail) {
            continue;
        }
        let broken = orders.by_key.get(key).and_then(|v| v.first()).map(|o| {
            let last = key_ops.last().expect("a key has operations");
            (
                format!("order {}", o.id),
                format!(
                    "{} for key {key}, whose every attempt failed (the last at {:.3}s)",
                    o.status,
                    last.completed.as_secs_f64()
                ),
                1,
            )
        });
        c.judge(FAILED_TOOK_EFFECT, broken);
    }

    let mut happened: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut did_not, mut unresolvable) = (0usize, 0usize);
    for op in &ops {
        let key = op.idempotency_key.as_deref().unwrap_or("-");
        let found = orders.of(op);
        match op.outcome {
            OpOutcome::Ok => {
                let id = op.returned_id.as_deref().unwrap_or("-");
                let when = format!("acknowledged at {:.3}s (key {key})", op.completed.as_secs_f64());
                c.judge(
                    LOST,
                    found.is_none().then(|| {
                        (
                            format!("order {id}"),
                            format!("{when} as {}, but the orders service does not have it", shown(op)),
                            1,
                        )
                    }),
                );
                let acked = op.returned_status.as_deref().unwrap_or("");
                if let (Some(order), true) = (found, acked == "PAID" || acked == "CANCELLED") {
                    c.judge(
                        STATE_CHANGED,
                        (order.status != acked).then(|| {
                            (
                                format!("order {}", order.id),
                                format!("{when} as {acked}, but it is now {}", order.status),
                                1,
                            )
                        }),
                    );
                }
            }
            OpOutcome::Unknown => match found {
                Some(order) => {
                    *happened.entry(order.status.as_str()).or_default() += 1;
                    c.judge(
                        UNKNOWN_NOT_TERMINAL,
                        (!order.is_terminal()).then(|| {
                            (
                                format!("order {}", order.id),
                                format!(
                                    "placed by an indeterminate operation at {:.3}s (key {key}) and still {}",
                                    op.invoked.as_secs_f64(),
                                    order.status
                                ),
                                1,
                            )
                        }),
                    );
                }
                None if op.idempotency_key.is_some() || op.returned_id.is_some() => did_not += 1,
                None => unresolvable += 1,
            },
            OpOutcome::Fail => {}
        }
    }
    let unknown = happened.values().sum::<usize>() + did_not + unresolvable;
    if unknown > 0 {
        let states: Vec<String> = happened.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let mut note = format!(
            "{unknown} indeterminate: {} happened ({}), {did_not} did not happen",
            happened.values().sum::<usize>(),
            if states.is_empty() { "none".into() } else { states.join(", ") }
        );
        if unresolvable > 0 {
            note.push_str(&format!(", {unresolvable} could not be resolved (no key, no id)"));
        }
        c.note(note);
    }
    c.finish()
}

fn shown(op: &Operation) -> String {
    op.returned_status.clone().unwrap_or_else(|| "-".into())
}

/// Every order is `PAID` or `CANCELLED`; `waited` is how long after the faults healed
/// the state was read, `bound` how long orders were given.
pub fn orders_terminate(state: &ShopState, waited: Duration, bound: Duration) -> CheckResult {
    let mut c = Checking::new(ORDERS_TERMINATE, "orders");
    c.subjects(state.orders.len());
    for o in &state.orders {
        c.judge(
            NON_TERMINAL,
            (!o.is_terminal()).then(|| {
                (
                    format!("order {}", o.id),
                    format!(
                        "still {} {:.1}s after the faults healed (bound {})",
                        o.status,
                        waited.as_secs_f64(),
                        humantime::format_duration(bound)
                    ),
                    1,
                )
            }),
        );
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, Fixture};
    use gauntlet::checks::Validity;

    fn check(f: &Fixture) -> CheckResult {
        no_lost_orders(&f.history, &f.state, true)
    }

    #[test]
    fn the_consistent_fixture_is_valid_and_resolves_its_unknowns() {
        let f = fixture::consistent();
        let r = check(&f);
        assert_eq!(r.validity, Validity::Valid, "{r}");
        assert!(r.notes.iter().any(|n| n.contains("1 happened (1 PAID), 1 did not happen")), "{r}");
        assert_eq!(orders_terminate(&f.state, Duration::ZERO, Duration::ZERO).validity, Validity::Valid);
    }

    #[test]
    fn an_unknown_that_happened_by_key_alone_is_matched_without_an_id() {
        let mut f = fixture::consistent();
        fixture::set_status(&mut f, "o4", "PENDING");
        let r = check(&f);
        let cx = r.clause("unknown-not-terminal").and_then(|c| c.first.clone()).expect("a counterexample");
        assert_eq!(cx.subject, "order o4");
        assert!(cx.detail.contains("key k4") && cx.detail.contains("still PENDING"), "{cx}");
    }

    #[test]
    fn a_key_scoped_by_the_service_matches_the_clients_key() {
        let mut f = fixture::consistent();
        for o in &mut f.state.orders {
            o.idempotency_key = o.idempotency_key.as_ref().map(|k| format!("u1:{k}"));
        }
        assert_eq!(check(&f).validity, Validity::Valid, "{}", check(&f));
        // Two users may use one client key: not a duplicate.
        f.state.orders.push(fixture::order("o5", "CANCELLED", Some("u2:k1"), &[], 0));
        assert_eq!(check(&f).validity, Validity::Valid, "{}", check(&f));
        f.state.orders.push(fixture::order("o6", "CANCELLED", Some("u2:k1"), &[], 0));
        assert_eq!(check(&f).broken_clauses(), vec!["duplicate-order"]);
    }

    #[test]
    fn an_overflowed_history_is_never_valid() {
        let f = fixture::consistent();
        let r = no_lost_orders(&f.history, &f.state, false);
        assert_eq!(r.validity, Validity::Unknown, "{r}");
        assert!(r.summary.contains("overflowed"), "{r}");
    }

    #[test]
    fn keyless_orders_get_the_doubt_of_keyless_unknowns_but_no_more() {
        let mut f = fixture::consistent();
        for o in &mut f.state.orders {
            o.idempotency_key = None;
        }
        for op in &mut f.history {
            op.idempotency_key = None;
        }
        // o4 was placed by the timed-out operation, which returned no id: with keys
        // gone, only the doubt of the two keyless unknowns explains it.
        assert_eq!(check(&f).validity, Validity::Valid, "{}", check(&f));
        f.state.orders.push(fixture::order("o8", "CANCELLED", None, &[], 0));
        f.state.orders.push(fixture::order("o9", "CANCELLED", None, &[], 0));
        let r = check(&f);
        assert_eq!(r.broken_clauses(), vec!["phantom-order"], "{r}");
        assert_eq!(r.clause("phantom-order").unwrap().violations, 1, "two unknowns explain two of three: {r}");
    }

    #[test]
    fn no_operations_is_unknown_not_valid() {
        let r = no_lost_orders(&[], &ShopState::default(), true);
        assert_eq!(r.validity, Validity::Unknown, "{r}");
    }
}
