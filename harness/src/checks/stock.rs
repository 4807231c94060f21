//! Stock is conserved: for every product `initial = available + reserved + sold`, no
//! level is negative, what is sold is what `PAID` orders bought, and at the end nothing
//! is left reserved.

use std::collections::BTreeMap;

use super::state::ShopState;
use super::{CheckResult, Counterexample};

/// Checks the catalog's stock against itself and the orders; `at_end` also demands
/// that no stock is still reserved (every saga has committed or released).
pub fn stock_conserved(state: &ShopState, at_end: bool) -> CheckResult {
    let mut violations = Vec::new();
    let mut bought: BTreeMap<i64, i64> = BTreeMap::new();
    for o in state.orders.iter().filter(|o| o.status == "PAID") {
        for line in &o.items {
            *bought.entry(line.product_id).or_default() += line.quantity;
        }
    }
    let mut held: BTreeMap<i64, i64> = BTreeMap::new();
    for r in state.reservations.iter().filter(|r| r.status == "held") {
        for line in &r.items {
            *held.entry(line.product_id).or_default() += line.quantity;
        }
    }
    for p in &state.products {
        let subject = format!("product {}", p.id);
        let sum = p.available + p.reserved + p.sold;
        if sum != p.initial_stock {
            violations.push(Counterexample {
                subject: subject.clone(),
                detail: format!(
                    "initial {} != available {} + reserved {} + sold {} (= {sum})",
                    p.initial_stock, p.available, p.reserved, p.sold
                ),
                magnitude: sum - p.initial_stock,
            });
        }
        for (what, v) in [("available", p.available), ("reserved", p.reserved), ("sold", p.sold)] {
            if v < 0 {
                violations.push(Counterexample {
                    subject: subject.clone(),
                    detail: format!("{what} is {v}"),
                    magnitude: v,
                });
            }
        }
        let paid = bought.remove(&p.id).unwrap_or(0);
        if p.sold != paid {
            violations.push(Counterexample {
                subject: subject.clone(),
                detail: format!("sold {} but PAID orders bought {paid}", p.sold),
                magnitude: p.sold - paid,
            });
        }
        let holding = held.get(&p.id).copied().unwrap_or(0);
        if at_end && p.reserved != 0 {
            violations.push(Counterexample {
                subject: subject.clone(),
                detail: format!("{} still reserved at the end ({holding} in held reservations)", p.reserved),
                magnitude: p.reserved,
            });
        }
    }
    for (product, qty) in bought {
        violations.push(Counterexample {
            subject: format!("product {product}"),
            detail: format!("PAID orders bought {qty} of a product the catalog does not have"),
            magnitude: qty,
        });
    }
    CheckResult::from_violations("stock_conserved", state.products.len(), "products", violations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::state::{OrderLine, OrderRecord, ReservationRecord, StockLevel};

    fn level(id: i64, available: i64, reserved: i64, sold: i64) -> StockLevel {
        StockLevel { id, initial_stock: 10, available, reserved, sold }
    }

    fn paid(id: &str, product: i64, qty: i64) -> OrderRecord {
        OrderRecord {
            id: id.into(),
            status: "PAID".into(),
            items: vec![OrderLine { product_id: product, quantity: qty }],
            total_minor: Some(1),
            reason: None,
        }
    }

    #[test]
    fn balanced_stock_is_valid() {
        let s = ShopState { products: vec![level(1, 7, 0, 3)], orders: vec![paid("1", 1, 3)], ..Default::default() };
        assert!(stock_conserved(&s, true).valid);
    }

    #[test]
    fn a_leaked_reservation_is_caught_at_the_end() {
        let s = ShopState {
            products: vec![level(1, 8, 2, 0)],
            reservations: vec![ReservationRecord {
                id: 4,
                order_id: "9".into(),
                status: "held".into(),
                items: vec![OrderLine { product_id: 1, quantity: 2 }],
            }],
            ..Default::default()
        };
        assert!(stock_conserved(&s, false).valid, "mid-run a reservation may be held");
        let r = stock_conserved(&s, true);
        assert!(!r.valid);
        assert!(r.first.unwrap().detail.contains("2 still reserved"));
    }

    proptest::proptest! {
        /// Any sequence of reserve / commit / release keeps a product balanced and is
        /// valid at the end once nothing is held; one unit lost anywhere never is.
        #[test]
        fn bookkeeping_balances_and_a_lost_unit_never_does(
            ops in proptest::collection::vec((1i64..5, 0u8..2), 0..30),
            lose in 0usize..3,
        ) {
            let mut p = StockLevel { id: 1, initial_stock: 1000, available: 1000, reserved: 0, sold: 0 };
            let mut orders = Vec::new();
            for (i, (qty, commit)) in ops.iter().enumerate() {
                p.available -= qty;
                p.reserved += qty;
                p.reserved -= qty;
                if *commit == 1 {
                    p.sold += qty;
                    orders.push(paid(&i.to_string(), 1, *qty));
                } else {
                    p.available += qty;
                }
            }
            let good = ShopState { products: vec![p.clone()], orders: orders.clone(), ..Default::default() };
            proptest::prop_assert!(stock_conserved(&good, true).valid);
            match lose {
                0 => p.available -= 1,
                1 => p.sold -= 1,
                _ => p.reserved += 1,
            }
            let bad = ShopState { products: vec![p], orders, ..Default::default() };
            proptest::prop_assert!(!stock_conserved(&bad, true).valid);
        }
    }

    #[test]
    fn lost_units_and_negative_levels_are_caught() {
        let s = ShopState { products: vec![level(1, 5, 0, 3), level(2, 12, 0, -2)], ..Default::default() };
        let r = stock_conserved(&s, true);
        assert!(!r.valid);
        assert!(r.violations >= 3, "{r:?}");
        assert_eq!(r.first.unwrap().subject, "product 1");
    }
}
