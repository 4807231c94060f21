//! Money is conserved: each PAID order was charged its total exactly once and kept it,
//! each CANCELLED one kept nothing, no charge is for an order that does not exist, no
//! idempotency key charged twice, and the ledger's net is what PAID orders cost.

use std::collections::BTreeMap;

use crate::state::{ChargeRecord, ShopState};
use gauntlet::checks::{CheckResult, Checking, Clause};

/// The clauses of `money_conserved`.
pub const MONEY_CONSERVED: &[Clause] = &[
    Clause {
        invariant: "money_conserved",
        name: "paid-not-charged-once",
        rule: "a PAID order has exactly one charge that moved money: captured, of its total, with nothing refunded",
    },
    Clause {
        invariant: "money_conserved",
        name: "cancelled-kept-money",
        rule: "a CANCELLED order kept nothing: no charge, a declined one, or every charge fully refunded",
    },
    Clause {
        invariant: "money_conserved",
        name: "orphan-charge",
        rule: "every charge that moved money is for an order the orders service has",
    },
    Clause {
        invariant: "money_conserved",
        name: "ledger-not-paid-total",
        rule: "the ledger's own net (captured - refunded) equals what PAID orders cost, plus what pending orders hold",
    },
    Clause {
        invariant: "money_conserved",
        name: "key-charged-twice",
        rule: "no idempotency key made more than one charge that moved money",
    },
];

const PAID_ONCE: &Clause = &MONEY_CONSERVED[0];
const CANCELLED_KEPT: &Clause = &MONEY_CONSERVED[1];
const ORPHAN: &Clause = &MONEY_CONSERVED[2];
const LEDGER: &Clause = &MONEY_CONSERVED[3];
const KEY_TWICE: &Clause = &MONEY_CONSERVED[4];

fn listed(charges: &[&ChargeRecord]) -> String {
    if charges.is_empty() {
        return "none".into();
    }
    charges
        .iter()
        .map(|c| {
            format!(
                "#{} {} {}{}",
                c.id,
                c.status,
                c.amount_minor,
                if c.refunded_minor > 0 { format!(" (refunded {})", c.refunded_minor) } else { String::new() }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks the payments ledger against the orders, clause by clause ([`MONEY_CONSERVED`]).
pub fn money_conserved(state: &ShopState) -> CheckResult {
    let mut c = Checking::new(MONEY_CONSERVED, "orders and charges");
    c.subjects(state.orders.len() + state.charges.len());
    // A decline moved no money; it is history, not a charge.
    let moved: Vec<&ChargeRecord> = state.charges.iter().filter(|c| c.status != "declined").collect();

    let mut by_key: BTreeMap<&str, Vec<&ChargeRecord>> = BTreeMap::new();
    let mut by_order: BTreeMap<&str, Vec<&ChargeRecord>> = BTreeMap::new();
    for ch in &moved {
        by_key.entry(ch.idempotency_key.as_str()).or_default().push(ch);
        by_order.entry(ch.order_id.as_str()).or_default().push(ch);
    }
    for (key, charges) in &by_key {
        c.judge(
            KEY_TWICE,
            (charges.len() > 1).then(|| {
                let extra: i64 = charges[1..].iter().map(|c| c.amount_minor).sum();
                (
                    format!("idempotency key {key}"),
                    format!("charged {} times ({}), {extra} minor units too many", charges.len(), listed(charges)),
                    extra,
                )
            }),
        );
    }

    let (mut paid_total, mut pending_net) = (0i64, 0i64);
    for o in &state.orders {
        let charges = by_order.remove(o.id.as_str()).unwrap_or_default();
        let kept: i64 = charges.iter().map(|c| c.net_minor()).sum();
        match o.status.as_str() {
            "PAID" => {
                let total = o.total_minor.unwrap_or(0);
                paid_total += total;
                let once = matches!(charges.as_slice(), [ch] if ch.status == "captured" && ch.amount_minor == total && ch.refunded_minor == 0);
                c.judge(
                    PAID_ONCE,
                    (!once).then(|| {
                        (
                            format!("order {}", o.id),
                            format!("PAID with total {total}, but its charges are: {}", listed(&charges)),
                            kept - total,
                        )
                    }),
                );
            }
            "CANCELLED" => c.judge(
                CANCELLED_KEPT,
                (kept != 0).then(|| {
                    (format!("order {}", o.id), format!("CANCELLED, but it kept {kept} ({})", listed(&charges)), kept)
                }),
            ),
            // Still pending: the terminate checker reports it; its money is in flight.
            _ => pending_net += kept,
        }
    }
    for (order, charges) in by_order {
        let kept: i64 = charges.iter().map(|c| c.net_minor()).sum();
        c.judge(
            ORPHAN,
            Some((
                format!("order {order}"),
                format!(
                    "the ledger has {} for an order the orders service does not have, keeping {kept}",
                    listed(&charges)
                ),
                kept.max(1),
            )),
        );
    }
    for _ in moved.iter().filter(|ch| state.orders.iter().any(|o| o.id == ch.order_id)) {
        c.looked(ORPHAN);
    }

    let net = state.ledger.net_minor;
    c.judge(
        LEDGER,
        (net != paid_total + pending_net).then(|| {
            (
                "ledger".into(),
                format!("net {net}, but PAID orders total {paid_total} and pending orders hold {pending_net}"),
                net - paid_total - pending_net,
            )
        }),
    );
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{LedgerSummary, OrderRecord};
    use proptest::prelude::*;

    fn charge(id: i64, order: &str, amount: i64, status: &str) -> ChargeRecord {
        ChargeRecord {
            id,
            order_id: order.into(),
            amount_minor: amount,
            status: status.into(),
            refunded_minor: if status == "refunded" { amount } else { 0 },
            idempotency_key: format!("{order}:charge"),
        }
    }

    fn order(id: &str, status: &str, total: i64) -> OrderRecord {
        crate::fixture::order(id, status, Some(id), &[], total)
    }

    fn with_summary(mut s: ShopState) -> ShopState {
        let captured: i64 = s.charges.iter().filter(|c| c.status != "declined").map(|c| c.amount_minor).sum();
        let refunded: i64 = s.charges.iter().map(|c| c.refunded_minor).sum();
        s.ledger = LedgerSummary { captured_minor: captured, refunded_minor: refunded, net_minor: captured - refunded };
        s
    }

    #[test]
    fn a_key_charged_twice_is_caught_with_the_charges() {
        let s = with_summary(ShopState {
            orders: vec![order("1", "PAID", 500)],
            charges: vec![charge(1, "1", 500, "captured"), charge(2, "1", 500, "captured")],
            ..Default::default()
        });
        let r = money_conserved(&s);
        assert!(!r.valid());
        let cx = r.clause("key-charged-twice").and_then(|c| c.first.clone()).unwrap();
        assert_eq!(cx.subject, "idempotency key 1:charge");
        assert!(cx.detail.contains("#1 captured 500, #2 captured 500"), "{cx}");
    }

    #[test]
    fn a_cancelled_order_that_kept_money_is_caught() {
        let s = with_summary(ShopState {
            orders: vec![order("1", "CANCELLED", 500), order("2", "PAID", 70)],
            charges: vec![charge(1, "1", 500, "captured"), charge(2, "2", 70, "captured")],
            ..Default::default()
        });
        let r = money_conserved(&s);
        assert!(!r.valid());
        assert_eq!(r.broken_clauses(), vec!["cancelled-kept-money", "ledger-not-paid-total"], "{r}");
        assert_eq!(r.worst.unwrap().subject, "order 1");
    }

    proptest! {
        /// Any mix of paid, cancelled-and-refunded and declined orders balances; adding
        /// one duplicate charge anywhere never does.
        #[test]
        fn consistent_ledgers_balance_and_one_duplicate_never_does(
            orders in proptest::collection::vec((1i64..10_000, 0u8..3), 1..40),
            dup in any::<prop::sample::Index>(),
        ) {
            let mut s = ShopState::default();
            for (i, (total, kind)) in orders.iter().enumerate() {
                let id = (i + 1).to_string();
                let (status, charge_status) = match kind {
                    0 => ("PAID", "captured"),
                    1 => ("CANCELLED", "refunded"),
                    _ => ("CANCELLED", "declined"),
                };
                s.orders.push(order(&id, status, *total));
                s.charges.push(charge(i as i64 + 1, &id, *total, charge_status));
            }
            let good = with_summary(s.clone());
            prop_assert!(money_conserved(&good).valid(), "{}", money_conserved(&good));
            let victim = dup.index(s.charges.len());
            let mut again = s.charges[victim].clone();
            again.id = 10_000;
            again.status = "captured".into();
            again.refunded_minor = 0;
            s.charges.push(again);
            let bad = with_summary(s);
            prop_assert!(!money_conserved(&bad).valid());
        }
    }
}
