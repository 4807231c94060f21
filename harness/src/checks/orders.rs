//! Orders: nothing acknowledged is lost, and every order ends.

use std::collections::BTreeMap;
use std::time::Duration;

use super::history::{OpOutcome, Operation};
use super::state::{OrderRecord, ShopState};
use super::{CheckResult, Counterexample};

/// The history kind of a place-order operation.
pub const PLACE_ORDER: &str = "place_order";

/// Every acknowledged (`ok`) place-order exists, in the terminal state it was
/// acknowledged in if it was acknowledged terminal; every indeterminate (`unknown`) one
/// that exists is terminal.
pub fn no_lost_orders(history: &[Operation], state: &ShopState) -> CheckResult {
    let orders: BTreeMap<&str, &OrderRecord> = state.orders.iter().map(|o| (o.id.as_str(), o)).collect();
    let mut violations = Vec::new();
    let mut checked = 0;
    for op in history.iter().filter(|op| op.kind == PLACE_ORDER) {
        let Some(id) = op.returned_id.as_deref() else { continue };
        let key = op.idempotency_key.as_deref().unwrap_or("-");
        let when = format!("acknowledged at {:.3}s (key {key})", op.completed.as_secs_f64());
        match (op.outcome, orders.get(id)) {
            (OpOutcome::Ok, None) => {
                checked += 1;
                violations.push(Counterexample {
                    subject: format!("order {id}"),
                    detail: format!("{when} with status {}, but the orders service does not have it", shown(op)),
                    magnitude: 1,
                });
            }
            (OpOutcome::Ok, Some(order)) => {
                checked += 1;
                let acked = op.returned_status.as_deref().unwrap_or("");
                let acked_terminal = acked == "PAID" || acked == "CANCELLED";
                if acked_terminal && order.status != acked {
                    violations.push(Counterexample {
                        subject: format!("order {id}"),
                        detail: format!("{when} as {acked}, but it is now {}", order.status),
                        magnitude: 1,
                    });
                }
            }
            (OpOutcome::Unknown, Some(order)) if !order.is_terminal() => {
                checked += 1;
                violations.push(Counterexample {
                    subject: format!("order {id}"),
                    detail: format!("its placing ended indeterminate and it is still {}", order.status),
                    magnitude: 1,
                });
            }
            _ => {}
        }
    }
    CheckResult::from_violations("no_lost_orders", checked, "acknowledged orders", violations)
}

fn shown(op: &Operation) -> String {
    op.returned_status.clone().unwrap_or_else(|| op.status.map_or("-".into(), |s| s.to_string()))
}

/// Every order is `PAID` or `CANCELLED`; `waited` is how long after the faults healed
/// the state was read, `bound` how long orders were given.
pub fn orders_terminate(state: &ShopState, waited: Duration, bound: Duration) -> CheckResult {
    let violations = state
        .orders
        .iter()
        .filter(|o| !o.is_terminal())
        .map(|o| Counterexample {
            subject: format!("order {}", o.id),
            detail: format!(
                "still {} {:.1}s after the faults healed (bound {})",
                o.status,
                waited.as_secs_f64(),
                humantime::format_duration(bound)
            ),
            magnitude: 1,
        })
        .collect();
    CheckResult::from_violations("orders_terminate", state.orders.len(), "orders", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Outcome;

    fn order(id: &str, status: &str) -> OrderRecord {
        OrderRecord { id: id.into(), status: status.into(), items: Vec::new(), total_minor: Some(100), reason: None }
    }

    fn placed(id: &str, status: u16, returned: &str) -> Operation {
        let body = format!(r#"{{"id":"{id}","status":"{returned}"}}"#);
        let outcome =
            if status == 0 { Outcome::Error(crate::load::stats::ErrorKind::Timeout) } else { Outcome::Status(status) };
        Operation::from_exchange(
            PLACE_ORDER,
            Duration::ZERO,
            Duration::from_millis(10),
            outcome,
            Some(format!("k-{id}")),
            Some(body.as_bytes()),
        )
    }

    #[test]
    fn a_lost_acknowledged_order_is_a_counterexample() {
        let state = ShopState { orders: vec![order("1", "PAID")], ..Default::default() };
        let history = vec![placed("1", 201, "PAID"), placed("2", 201, "PAID")];
        let r = no_lost_orders(&history, &state);
        assert!(!r.valid);
        assert_eq!(r.checked, 2);
        assert_eq!(r.first.unwrap().subject, "order 2");
    }

    #[test]
    fn an_acknowledged_terminal_state_must_not_change() {
        let state = ShopState { orders: vec![order("1", "CANCELLED")], ..Default::default() };
        let r = no_lost_orders(&[placed("1", 201, "PAID")], &state);
        assert!(!r.valid, "{r}");
        assert!(r.first.unwrap().detail.contains("now CANCELLED"));
        let r = no_lost_orders(&[placed("1", 202, "PENDING")], &state);
        assert!(r.valid, "a pending acknowledgement may end either way: {r}");
    }

    #[test]
    fn failed_and_unknown_orders_need_not_exist() {
        let state = ShopState::default();
        let r = no_lost_orders(&[placed("1", 409, "x"), placed("2", 0, "x")], &state);
        assert!(r.valid, "{r}");
    }

    #[test]
    fn pending_orders_do_not_terminate() {
        let state = ShopState { orders: vec![order("1", "PAID"), order("2", "PENDING")], ..Default::default() };
        let r = orders_terminate(&state, Duration::from_secs(30), Duration::from_secs(30));
        assert!(!r.valid);
        assert_eq!(r.violations, 1);
        assert!(r.to_string().contains("order 2: still PENDING"), "{r}");
    }
}
