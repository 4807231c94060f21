//! Money is conserved: what the ledger kept equals what `PAID` orders cost, each order
//! kept exactly its total (a `CANCELLED` one nothing), and no idempotency key charged
//! twice.

use std::collections::BTreeMap;

use super::state::{ChargeRecord, ShopState};
use super::{CheckResult, Counterexample};

/// Checks the payments ledger against the orders.
pub fn money_conserved(state: &ShopState) -> CheckResult {
    let mut violations = Vec::new();

    let mut by_key: BTreeMap<&str, Vec<&ChargeRecord>> = BTreeMap::new();
    for c in state.charges.iter().filter(|c| c.status != "declined") {
        by_key.entry(c.idempotency_key.as_str()).or_default().push(c);
    }
    for (key, charges) in &by_key {
        if charges.len() > 1 {
            let ids: Vec<String> = charges.iter().map(|c| c.id.to_string()).collect();
            let extra: i64 = charges[1..].iter().map(|c| c.amount_minor).sum();
            violations.push(Counterexample {
                subject: format!("idempotency key {key}"),
                detail: format!(
                    "charged {} times (charges {}), {extra} minor units too many",
                    charges.len(),
                    ids.join(", ")
                ),
                magnitude: extra,
            });
        }
    }

    let mut net_by_order: BTreeMap<&str, i64> = BTreeMap::new();
    for c in &state.charges {
        *net_by_order.entry(c.order_id.as_str()).or_default() += c.net_minor();
    }
    let mut paid_total = 0i64;
    for o in &state.orders {
        let kept = net_by_order.remove(o.id.as_str()).unwrap_or(0);
        let owed = match o.status.as_str() {
            "PAID" => {
                let total = o.total_minor.unwrap_or(0);
                paid_total += total;
                total
            }
            "CANCELLED" => 0,
            // Still pending: the terminate checker reports it; its money is in flight.
            _ => continue,
        };
        if kept != owed {
            violations.push(Counterexample {
                subject: format!("order {}", o.id),
                detail: format!("{} with total {owed}, but the ledger kept {kept}", o.status),
                magnitude: kept - owed,
            });
        }
    }
    for (order, kept) in net_by_order {
        if kept != 0 {
            violations.push(Counterexample {
                subject: format!("order {order}"),
                detail: format!("the ledger kept {kept} for an order the orders service does not have"),
                magnitude: kept,
            });
        }
    }
    let pending_net: i64 = state
        .orders
        .iter()
        .filter(|o| !o.is_terminal())
        .map(|o| state.charges.iter().filter(|c| c.order_id == o.id).map(ChargeRecord::net_minor).sum::<i64>())
        .sum();
    let ledger_net = state.ledger.net_minor;
    if ledger_net - pending_net != paid_total {
        violations.push(Counterexample {
            subject: "ledger".into(),
            detail: format!(
                "net {ledger_net} (of which {pending_net} for pending orders), but PAID orders total {paid_total}"
            ),
            magnitude: ledger_net - pending_net - paid_total,
        });
    }
    let charged: i64 = state.charges.iter().map(ChargeRecord::net_minor).sum();
    if charged != ledger_net {
        violations.push(Counterexample {
            subject: "ledger".into(),
            detail: format!("its summary says net {ledger_net}, its charges add up to {charged}"),
            magnitude: ledger_net - charged,
        });
    }
    let checked = state.orders.len() + by_key.len();
    CheckResult::from_violations("money_conserved", checked, "orders and keys", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::state::{LedgerSummary, OrderRecord};
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
        OrderRecord { id: id.into(), status: status.into(), items: Vec::new(), total_minor: Some(total), reason: None }
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
        assert!(!r.valid);
        let first = r.first.unwrap();
        assert_eq!(first.subject, "idempotency key 1:charge");
        assert!(first.detail.contains("charges 1, 2"), "{first}");
    }

    #[test]
    fn a_cancelled_order_that_kept_money_is_caught() {
        let s = with_summary(ShopState {
            orders: vec![order("1", "CANCELLED", 500), order("2", "PAID", 70)],
            charges: vec![charge(1, "1", 500, "captured"), charge(2, "2", 70, "captured")],
            ..Default::default()
        });
        let r = money_conserved(&s);
        assert!(!r.valid);
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
            prop_assert!(money_conserved(&good).valid, "{}", money_conserved(&good));
            let victim = dup.index(s.charges.len());
            let mut again = s.charges[victim].clone();
            again.id = 10_000;
            again.status = "captured".into();
            again.refunded_minor = 0;
            s.charges.push(again);
            let bad = with_summary(s);
            prop_assert!(!money_conserved(&bad).valid);
        }
    }
}
