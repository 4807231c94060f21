//! Stock is conserved: reservations agree with the orders they are for, every unit is
//! available, reserved or sold, what is sold is what `PAID` orders bought, and at the
//! end nothing is held.

use std::collections::BTreeMap;

use crate::state::{OrderLine, ReservationRecord, ShopState};
use gauntlet::checks::{CheckResult, Checking, Clause};

/// The clauses of `stock_conserved`.
pub const STOCK_CONSERVED: &[Clause] = &[
    Clause {
        invariant: "stock_conserved",
        name: "paid-not-committed",
        rule: "a PAID order's committed reservations hold exactly its items (none: sold nothing; twice: sold twice)",
    },
    Clause {
        invariant: "stock_conserved",
        name: "cancelled-committed",
        rule: "a CANCELLED order has no committed reservation: its stock went back, released or never reserved",
    },
    Clause {
        invariant: "stock_conserved",
        name: "orphan-reservation",
        rule: "every reservation is for an order the orders service has",
    },
    Clause {
        invariant: "stock_conserved",
        name: "held-at-end",
        rule: "at the end no reservation is still held: every saga committed or released what it reserved",
    },
    Clause {
        invariant: "stock_conserved",
        name: "unbalanced-product",
        rule: "for every product, initial stock = available + reserved + sold",
    },
    Clause {
        invariant: "stock_conserved",
        name: "negative-level",
        rule: "no product's initial, available, reserved or sold level is negative",
    },
    Clause {
        invariant: "stock_conserved",
        name: "sold-not-bought",
        rule: "for every product, sold = what PAID orders bought (+ what orders still pending have committed)",
    },
    Clause {
        invariant: "stock_conserved",
        name: "reserved-not-held",
        rule: "for every product, reserved = what the held reservations hold",
    },
];

const PAID_NOT_COMMITTED: &Clause = &STOCK_CONSERVED[0];
const CANCELLED_COMMITTED: &Clause = &STOCK_CONSERVED[1];
const ORPHAN: &Clause = &STOCK_CONSERVED[2];
const HELD_AT_END: &Clause = &STOCK_CONSERVED[3];
const UNBALANCED: &Clause = &STOCK_CONSERVED[4];
const NEGATIVE: &Clause = &STOCK_CONSERVED[5];
const SOLD_NOT_BOUGHT: &Clause = &STOCK_CONSERVED[6];
const RESERVED_NOT_HELD: &Clause = &STOCK_CONSERVED[7];

/// Units per product of some lines.
fn units<'a>(lines: impl Iterator<Item = &'a OrderLine>) -> BTreeMap<i64, i64> {
    let mut by_product = BTreeMap::new();
    for l in lines {
        *by_product.entry(l.product_id).or_default() += l.quantity;
    }
    by_product.retain(|_, q| *q != 0);
    by_product
}

fn shown(units: &BTreeMap<i64, i64>) -> String {
    if units.is_empty() {
        return "nothing".into();
    }
    units.iter().map(|(p, q)| format!("{q} x product {p}")).collect::<Vec<_>>().join(", ")
}

/// Checks the catalog's stock and reservations against themselves and the orders;
/// `at_end` also demands that no reservation is still held.
pub fn stock_conserved(state: &ShopState, at_end: bool) -> CheckResult {
    let mut c = Checking::new(STOCK_CONSERVED, "products and reservations");
    c.subjects(state.products.len() + state.reservations.len());
    let mut by_order: BTreeMap<&str, Vec<&ReservationRecord>> = BTreeMap::new();
    for r in &state.reservations {
        by_order.entry(r.order_id.as_str()).or_default().push(r);
    }
    let committed_of = |order: &str| {
        units(
            by_order.get(order).into_iter().flatten().filter(|r| r.status == "committed").flat_map(|r| r.items.iter()),
        )
    };

    let mut sold_by_orders: BTreeMap<i64, i64> = BTreeMap::new();
    for o in &state.orders {
        let committed = committed_of(&o.id);
        match o.status.as_str() {
            "PAID" => {
                let bought = units(o.items.iter());
                c.judge(
                    PAID_NOT_COMMITTED,
                    (committed != bought).then(|| {
                        let off: i64 = bought.values().sum::<i64>() - committed.values().sum::<i64>();
                        (
                            format!("order {}", o.id),
                            format!(
                                "PAID for {}, but its committed reservations hold {}",
                                shown(&bought),
                                shown(&committed)
                            ),
                            off,
                        )
                    }),
                );
                for (p, q) in bought {
                    *sold_by_orders.entry(p).or_default() += q;
                }
            }
            "CANCELLED" => c.judge(
                CANCELLED_COMMITTED,
                (!committed.is_empty()).then(|| {
                    (
                        format!("order {}", o.id),
                        format!("CANCELLED, but its reservation of {} was committed (sold)", shown(&committed)),
                        committed.values().sum(),
                    )
                }),
            ),
            // In flight: its commit may have landed before the order is marked PAID.
            _ => {
                for (p, q) in committed {
                    *sold_by_orders.entry(p).or_default() += q;
                }
            }
        }
    }

    let known: std::collections::BTreeSet<&str> = state.orders.iter().map(|o| o.id.as_str()).collect();
    for r in &state.reservations {
        c.judge(
            ORPHAN,
            (!known.contains(r.order_id.as_str())).then(|| {
                (
                    format!("reservation {}", r.id),
                    format!("{} for order {}, which the orders service does not have", r.status, r.order_id),
                    r.items.iter().map(|l| l.quantity).sum(),
                )
            }),
        );
        if at_end {
            c.judge(
                HELD_AT_END,
                (r.status == "held").then(|| {
                    (
                        format!("reservation {}", r.id),
                        format!("held for order {}: still {} at the end", r.order_id, shown(&units(r.items.iter()))),
                        r.items.iter().map(|l| l.quantity).sum(),
                    )
                }),
            );
        }
    }

    let held = units(state.reservations.iter().filter(|r| r.status == "held").flat_map(|r| r.items.iter()));
    for p in &state.products {
        let subject = format!("product {}", p.id);
        let sum = p.available + p.reserved + p.sold;
        c.judge(
            UNBALANCED,
            (sum != p.initial_stock).then(|| {
                (
                    subject.clone(),
                    format!(
                        "initial {} != available {} + reserved {} + sold {} (= {sum})",
                        p.initial_stock, p.available, p.reserved, p.sold
                    ),
                    sum - p.initial_stock,
                )
            }),
        );
        let negative: Vec<String> =
            [("initial", p.initial_stock), ("available", p.available), ("reserved", p.reserved), ("sold", p.sold)]
                .iter()
                .filter(|(_, v)| *v < 0)
                .map(|(what, v)| format!("{what} is {v}"))
                .collect();
        let lowest = [p.initial_stock, p.available, p.reserved, p.sold].into_iter().min().unwrap_or(0);
        c.judge(NEGATIVE, (!negative.is_empty()).then(|| (subject.clone(), negative.join(", "), lowest)));
        let bought = sold_by_orders.remove(&p.id).unwrap_or(0);
        c.judge(
            SOLD_NOT_BOUGHT,
            (p.sold != bought).then(|| {
                (subject.clone(), format!("sold {} but PAID orders bought {bought}", p.sold), p.sold - bought)
            }),
        );
        let holding = held.get(&p.id).copied().unwrap_or(0);
        c.judge(
            RESERVED_NOT_HELD,
            (p.reserved != holding).then(|| {
                (subject, format!("reserved {} but held reservations hold {holding}", p.reserved), p.reserved - holding)
            }),
        );
    }
    for (product, qty) in sold_by_orders {
        c.judge(
            SOLD_NOT_BOUGHT,
            Some((
                format!("product {product}"),
                format!("PAID orders bought {qty} of a product the catalog does not have"),
                qty,
            )),
        );
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use crate::state::{OrderRecord, StockLevel};
    use gauntlet::checks::Validity;

    fn paid(id: &str, product: i64, qty: i64) -> OrderRecord {
        fixture::order(id, "PAID", Some(id), &[(product, qty)], 1)
    }

    fn committed(id: i64, order: &str, product: i64, qty: i64) -> ReservationRecord {
        ReservationRecord {
            id,
            order_id: order.into(),
            status: "committed".into(),
            items: vec![OrderLine { product_id: product, quantity: qty }],
        }
    }

    #[test]
    fn a_held_reservation_is_allowed_mid_run_and_caught_at_the_end() {
        let mut f = fixture::consistent();
        f.state.reservations.push(ReservationRecord {
            id: 9,
            order_id: "o2".into(),
            status: "held".into(),
            items: vec![OrderLine { product_id: 1, quantity: 2 }],
        });
        f.state.products[0].available -= 2;
        f.state.products[0].reserved += 2;
        assert_eq!(stock_conserved(&f.state, false).validity, Validity::Valid, "mid-run a reservation may be held");
        let r = stock_conserved(&f.state, true);
        assert_eq!(r.broken_clauses(), vec!["held-at-end"]);
        assert!(r.first.unwrap().detail.contains("still 2 x product 1 at the end"));
    }

    #[test]
    fn a_paid_order_committed_with_other_items_names_both() {
        let mut f = fixture::consistent();
        f.state.reservations[0].items[0].quantity = 1;
        let r = stock_conserved(&f.state, true);
        let cx = r.clause("paid-not-committed").and_then(|c| c.first.clone()).unwrap();
        assert_eq!(cx.subject, "order o1");
        assert!(cx.detail.contains("PAID for 2 x product 1") && cx.detail.contains("hold 1 x product 1"), "{cx}");
    }

    proptest::proptest! {
        /// Any sequence of reserve / commit / release keeps a product balanced and is
        /// valid at the end; one unit lost anywhere never is.
        #[test]
        fn bookkeeping_balances_and_a_lost_unit_never_does(
            ops in proptest::collection::vec((1i64..5, 0u8..2), 0..30),
            lose in 0usize..3,
        ) {
            let mut p = StockLevel { id: 1, initial_stock: 1000, available: 1000, reserved: 0, sold: 0 };
            let mut s = ShopState::default();
            for (i, (qty, commit)) in ops.iter().enumerate() {
                let id = i.to_string();
                p.available -= qty;
                if *commit == 1 {
                    p.sold += qty;
                    s.orders.push(paid(&id, 1, *qty));
                    s.reservations.push(committed(i as i64, &id, 1, *qty));
                } else {
                    p.available += qty;
                    s.orders.push(fixture::order(&id, "CANCELLED", None, &[(1, *qty)], 1));
                }
            }
            s.products = vec![p.clone()];
            let good = stock_conserved(&s, true);
            proptest::prop_assert!(good.valid(), "{}", good);
            match lose {
                0 => p.available -= 1,
                1 => p.sold -= 1,
                _ => p.reserved += 1,
            }
            s.products = vec![p];
            proptest::prop_assert_eq!(stock_conserved(&s, true).validity, Validity::Invalid);
        }
    }
}
