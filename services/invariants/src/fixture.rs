//! A consistent end state of the shop with its history, and one mutation per checker
//! clause that breaks exactly that clause: the proof that every clause can fail.
//!
//! The consistent state:
//!
//! | order | key | outcome of its operation | status | items | reservation | charge |
//! |---|---|---|---|---|---|---|
//! | o1 | k1 | ok 201 PAID | PAID | p1 x2 = 200 | committed | captured 200 |
//! | o2 | k2 | ok 201 CANCELLED | CANCELLED | p2 x1 = 150 | released | declined |
//! | o3 | k3 | ok 202 PENDING | CANCELLED | p1 x1 = 100 | released | refunded 100 |
//! | o4 | k4 | unknown (timeout, no id) | PAID | p2 x3 = 450 | committed | captured 450 |
//! | - | k5 | fail 409 | - | | | |
//! | - | k6 | unknown (reset, no id) | - | | | |
//!
//! Every order that ended has one notification of its outcome for its user, and the
//! outbox is drained. The mutations of the other invariants keep the notifications in
//! step with the orders they change ([`notify_ended`]), so each breaks its clause alone.

use std::time::Duration;

use crate::history::{OpOutcome, Operation};
use crate::orders::PLACE_ORDER;
use crate::state::{
    ChargeRecord, EventsState, LedgerSummary, NotificationRecord, OrderLine, OrderRecord, OutboxLag, RepeatedEvent,
    ReservationRecord, ShopState, StockLevel,
};

/// A history and the state it left.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub history: Vec<Operation>,
    pub state: ShopState,
}

fn lines(items: &[(i64, i64)]) -> Vec<OrderLine> {
    items.iter().map(|&(product_id, quantity)| OrderLine { product_id, quantity }).collect()
}

/// An order record.
pub fn order(id: &str, status: &str, key: Option<&str>, items: &[(i64, i64)], total: i64) -> OrderRecord {
    OrderRecord {
        id: id.into(),
        status: status.into(),
        items: lines(items),
        total_minor: Some(total),
        reason: None,
        idempotency_key: key.map(Into::into),
        user_id: Some("u1".into()),
    }
}

fn op(key: &str, outcome: OpOutcome, id: Option<&str>, returned: Option<&str>) -> Operation {
    Operation {
        kind: PLACE_ORDER.into(),
        invoked: Duration::from_millis(100),
        completed: Duration::from_millis(130),
        outcome,
        idempotency_key: Some(key.into()),
        returned_id: id.map(Into::into),
        returned_status: returned.map(Into::into),
    }
}

fn reservation(id: i64, order: &str, status: &str, items: &[(i64, i64)]) -> ReservationRecord {
    ReservationRecord { id, order_id: order.into(), status: status.into(), items: lines(items) }
}

fn charge(id: i64, order: &str, amount: i64, status: &str, refunded: i64) -> ChargeRecord {
    ChargeRecord {
        id,
        order_id: order.into(),
        amount_minor: amount,
        status: status.into(),
        refunded_minor: refunded,
        idempotency_key: format!("{order}:charge"),
    }
}

/// The consistent state and its history (see the module's table).
pub fn consistent() -> Fixture {
    let history = vec![
        op("k1", OpOutcome::Ok, Some("o1"), Some("PAID")),
        op("k2", OpOutcome::Ok, Some("o2"), Some("CANCELLED")),
        op("k3", OpOutcome::Ok, Some("o3"), Some("PENDING")),
        op("k4", OpOutcome::Unknown, None, None),
        op("k5", OpOutcome::Fail, None, None),
        op("k6", OpOutcome::Unknown, None, None),
    ];
    let state = ShopState {
        orders: vec![
            order("o1", "PAID", Some("k1"), &[(1, 2)], 200),
            order("o2", "CANCELLED", Some("k2"), &[(2, 1)], 150),
            order("o3", "CANCELLED", Some("k3"), &[(1, 1)], 100),
            order("o4", "PAID", Some("k4"), &[(2, 3)], 450),
        ],
        charges: vec![
            charge(1, "o1", 200, "captured", 0),
            charge(2, "o2", 150, "declined", 0),
            charge(3, "o3", 100, "refunded", 100),
            charge(4, "o4", 450, "captured", 0),
        ],
        ledger: LedgerSummary { captured_minor: 750, refunded_minor: 100, net_minor: 650 },
        products: vec![
            StockLevel { id: 1, initial_stock: 100, available: 98, reserved: 0, sold: 2 },
            StockLevel { id: 2, initial_stock: 50, available: 47, reserved: 0, sold: 3 },
        ],
        reservations: vec![
            reservation(1, "o1", "committed", &[(1, 2)]),
            reservation(2, "o2", "released", &[(2, 1)]),
            reservation(3, "o3", "released", &[(1, 1)]),
            reservation(4, "o4", "committed", &[(2, 3)]),
        ],
        events: None,
    };
    let mut f = Fixture { history, state };
    notify_ended(&mut f);
    f
}

/// A notification of `order`'s outcome `kind` for `user`.
pub fn notification(order: &str, user: &str, kind: &str) -> NotificationRecord {
    NotificationRecord {
        order_id: order.into(),
        user_id: user.into(),
        kind: kind.into(),
        event_id: format!("{order}:{}", if kind == "ORDER_PAID" { 4 } else { 3 }),
    }
}

/// Makes the events part agree with the orders: one notification per ended order, the
/// outbox drained.
pub fn notify_ended(f: &mut Fixture) {
    let notifications = f
        .state
        .orders
        .iter()
        .filter_map(|o| {
            let kind = match o.status.as_str() {
                "PAID" => "ORDER_PAID",
                "CANCELLED" => "ORDER_CANCELLED",
                _ => return None,
            };
            Some(notification(&o.id, o.user_id.as_deref().unwrap_or("u1"), kind))
        })
        .collect();
    let outbox = Some(OutboxLag { relay: true, unsent: 0, oldest_unsent_age_ms: None });
    f.state.events = Some(EventsState { outbox, notifications, dead_letters: 0, repeated: Vec::new() });
}

/// Sets an order's status.
pub fn set_status(f: &mut Fixture, id: &str, status: &str) {
    f.state.orders.iter_mut().find(|o| o.id == id).expect("a fixture order").status = status.into();
}

fn mutated(change: impl FnOnce(&mut Fixture)) -> Fixture {
    let mut f = consistent();
    change(&mut f);
    notify_ended(&mut f);
    f
}

/// A change to the events part alone (the orders stay as they are).
fn events_mutated(change: impl FnOnce(&mut Fixture, &mut EventsState)) -> Fixture {
    let mut f = consistent();
    let mut events = f.state.events.take().expect("the fixture has events");
    change(&mut f, &mut events);
    f.state.events = Some(events);
    f
}

/// One mutation per clause of every invariant: the clauses it breaks (the one it
/// targets first; a second only where the anomaly cannot exist without it) and the state.
pub fn mutations() -> Vec<(&'static [&'static str], Fixture)> {
    let mut all: Vec<(&'static [&'static str], Fixture)> = Vec::new();
    let every =
        order_mutations().into_iter().chain(stock_mutations()).chain(money_mutations()).chain(event_mutations());
    for (clause, f) in every {
        let breaks: &'static [&'static str] = match clause {
            // A pending order is, by definition, also not terminal.
            "unknown-not-terminal" => &["unknown-not-terminal", "non-terminal"],
            "notified-not-terminal" => &["notified-not-terminal", "non-terminal"],
            other => Box::leak(Box::new([other])),
        };
        all.push((breaks, f));
    }
    all
}

/// For each clause of `no_lost_orders` and `orders_terminate`, a state that breaks it alone.
pub fn order_mutations() -> Vec<(&'static str, Fixture)> {
    vec![
        // The acknowledged-pending o3 never finished.
        ("non-terminal", mutated(|f| set_status(f, "o3", "PENDING"))),
        // A replay of k1 placed a second order, cancelled before it reserved anything.
        ("duplicate-order", mutated(|f| f.state.orders.push(order("o5", "CANCELLED", Some("k1"), &[(1, 2)], 0)))),
        // An order no operation asked for.
        ("phantom-order", mutated(|f| f.state.orders.push(order("o5", "CANCELLED", Some("zz"), &[(1, 1)], 0)))),
        // The 409 of k5 took effect after all.
        ("failed-op-took-effect", mutated(|f| f.state.orders.push(order("o5", "CANCELLED", Some("k5"), &[(1, 1)], 0)))),
        // o2 was acknowledged and vanished, with its (released) reservation and declined charge.
        (
            "lost-acknowledged",
            mutated(|f| {
                f.state.orders.retain(|o| o.id != "o2");
                f.state.reservations.retain(|r| r.order_id != "o2");
                f.state.charges.retain(|c| c.order_id != "o2");
            }),
        ),
        // o2 was acknowledged PAID, but it is CANCELLED.
        ("acknowledged-state-changed", mutated(|f| f.history[1].returned_status = Some("PAID".into()))),
        // The timed-out k4 placed o4, which never finished (money and stock skip pending orders).
        ("unknown-not-terminal", mutated(|f| set_status(f, "o4", "PENDING"))),
    ]
}

/// For each clause of `stock_conserved`, a state that breaks it alone.
pub fn stock_mutations() -> Vec<(&'static str, Fixture)> {
    vec![
        // The PAID o1's reservation was released (its units still counted sold).
        ("paid-not-committed", mutated(|f| f.state.reservations[0].status = "released".into())),
        // The CANCELLED o2's reservation was committed.
        ("cancelled-committed", mutated(|f| f.state.reservations[1].status = "committed".into())),
        // A reservation for an order that does not exist (released: no level changes).
        ("orphan-reservation", mutated(|f| f.state.reservations.push(reservation(5, "o9", "released", &[(1, 1)])))),
        // A second reservation of o2 still held at the end, its unit counted reserved.
        (
            "held-at-end",
            mutated(|f| {
                f.state.reservations.push(reservation(5, "o2", "held", &[(1, 1)]));
                f.state.products[0].available -= 1;
                f.state.products[0].reserved += 1;
            }),
        ),
        // A unit of product 1 vanished.
        ("unbalanced-product", mutated(|f| f.state.products[0].available -= 1)),
        // A product with a negative (but balanced) level.
        (
            "negative-level",
            mutated(|f| {
                f.state.products.push(StockLevel { id: 3, initial_stock: -1, available: -1, reserved: 0, sold: 0 })
            }),
        ),
        // One more unit of product 1 counted sold than PAID orders bought.
        (
            "sold-not-bought",
            mutated(|f| {
                f.state.products[0].available -= 1;
                f.state.products[0].sold += 1;
            }),
        ),
        // A unit counted reserved that no held reservation holds.
        (
            "reserved-not-held",
            mutated(|f| {
                f.state.products[0].available -= 1;
                f.state.products[0].reserved += 1;
            }),
        ),
    ]
}

/// For each clause of `money_conserved`, a state that breaks it alone.
pub fn money_mutations() -> Vec<(&'static str, Fixture)> {
    vec![
        // o1 was charged a second time under another key, and refunded that charge.
        (
            "paid-not-charged-once",
            mutated(|f| {
                let mut again = charge(5, "o1", 100, "refunded", 100);
                again.idempotency_key = "o1:charge-again".into();
                f.state.charges.push(again);
                f.state.ledger = LedgerSummary { captured_minor: 850, refunded_minor: 200, net_minor: 650 };
            }),
        ),
        // The CANCELLED o3 was never refunded (the ledger's own summary still says 650).
        (
            "cancelled-kept-money",
            mutated(|f| {
                f.state.charges[2].status = "captured".into();
                f.state.charges[2].refunded_minor = 0;
            }),
        ),
        // A charge for an order the orders service does not have.
        ("orphan-charge", mutated(|f| f.state.charges.push(charge(5, "o9", 70, "captured", 0)))),
        // The ledger's summary says more was kept than PAID orders cost.
        ("ledger-not-paid-total", mutated(|f| f.state.ledger.net_minor = 700)),
        // o3's key charged twice, both refunded.
        ("key-charged-twice", mutated(|f| f.state.charges.push(charge(5, "o3", 100, "refunded", 100)))),
    ]
}

/// For each clause of `events_delivered`, a state that breaks it alone.
pub fn event_mutations() -> Vec<(&'static str, Fixture)> {
    vec![
        // The paid o4's event never reached the consumer.
        ("notification-missing", events_mutated(|_, e| e.notifications.retain(|n| n.order_id != "o4"))),
        // o1's paid event was redelivered and acted on again.
        ("notified-twice", events_mutated(|_, e| e.notifications.push(notification("o1", "u1", "ORDER_PAID")))),
        // o3 never ended, yet its user was told it was cancelled.
        ("notified-not-terminal", events_mutated(|f, _| set_status(f, "o3", "PENDING"))),
        // A notification for an order that does not exist.
        ("orphan-notification", events_mutated(|_, e| e.notifications.push(notification("o9", "u1", "ORDER_PAID")))),
        // o1's notification went to another user.
        ("wrong-user", events_mutated(|_, e| e.notifications[0].user_id = "u2".into())),
        // The cancelled o2 was told it was paid.
        ("wrong-outcome", events_mutated(|_, e| e.notifications[1].kind = "ORDER_PAID".into())),
        // o1's placed event was published twice and the broker kept both.
        (
            "published-twice",
            events_mutated(|_, e| {
                e.repeated.push(RepeatedEvent {
                    event_id: "o1:1".into(),
                    order_id: "o1".into(),
                    kind: "ORDER_PLACED".into(),
                    first_seq: 1,
                    stream_seq: 5,
                })
            }),
        ),
        // Three events never left the orders service.
        (
            "outbox-not-drained",
            events_mutated(|_, e| e.outbox = Some(OutboxLag { relay: true, unsent: 3, oldest_unsent_age_ms: Some(9) })),
        ),
    ]
}
