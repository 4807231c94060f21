//! Events are delivered: every order that ended (paid or cancelled) was told to its
//! user exactly once, nothing was told of an order that did not end or to someone else,
//! and the producer's outbox drained within `settle`.
//!
//! Read from the orders service's admin state (orders and its `outbox` lag) and the
//! notifications service's (`notifications`), as `services/README.md` ("Admin state
//! contract") promises them; a system of your own that answers the same shapes is
//! checked the same way.

use std::collections::BTreeMap;

use crate::state::{NotificationRecord, RepeatedEvent, ShopState};
use gauntlet::checks::{CheckResult, Checking, Clause};

/// The clauses of `events_delivered`.
pub const EVENTS_DELIVERED: &[Clause] = &[
    Clause {
        invariant: "events_delivered",
        name: "notification-missing",
        rule: "every PAID or CANCELLED order has a notification: its terminal event reached the consumer",
    },
    Clause {
        invariant: "events_delivered",
        name: "notified-twice",
        rule: "no order has more than one notification: a redelivered event is not acted on again",
    },
    Clause {
        invariant: "events_delivered",
        name: "notified-not-terminal",
        rule: "no notification is for an order that has not ended (still PENDING)",
    },
    Clause {
        invariant: "events_delivered",
        name: "orphan-notification",
        rule: "every notification is for an order the orders service has",
    },
    Clause {
        invariant: "events_delivered",
        name: "wrong-user",
        rule: "a notification goes to the user who placed its order",
    },
    Clause {
        invariant: "events_delivered",
        name: "wrong-outcome",
        rule: "a notification tells how its order ended: ORDER_PAID for PAID, ORDER_CANCELLED for CANCELLED",
    },
    Clause {
        invariant: "events_delivered",
        name: "published-twice",
        rule: "the broker holds each event once: a repeated publish is dropped by its message id \
               (the consumer met no event id under two stream sequences)",
    },
    Clause {
        invariant: "events_delivered",
        name: "outbox-not-drained",
        rule: "the producer's outbox holds no unsent event once the run settled",
    },
];

const MISSING: &Clause = &EVENTS_DELIVERED[0];
const TWICE: &Clause = &EVENTS_DELIVERED[1];
const NOT_TERMINAL: &Clause = &EVENTS_DELIVERED[2];
const ORPHAN: &Clause = &EVENTS_DELIVERED[3];
const WRONG_USER: &Clause = &EVENTS_DELIVERED[4];
const WRONG_OUTCOME: &Clause = &EVENTS_DELIVERED[5];
const PUBLISHED_TWICE: &Clause = &EVENTS_DELIVERED[6];
const NOT_DRAINED: &Clause = &EVENTS_DELIVERED[7];

/// The notification kind that tells of an order ending in `status`.
fn kind_for(status: &str) -> Option<&'static str> {
    match status {
        "PAID" => Some("ORDER_PAID"),
        "CANCELLED" => Some("ORDER_CANCELLED"),
        _ => None,
    }
}

/// The counterexample of an order whose events the broker held more than once.
fn published_twice(order: &str, copies: &[&RepeatedEvent]) -> Option<(String, String, i64)> {
    if copies.is_empty() {
        return None;
    }
    let events: Vec<String> = copies
        .iter()
        .map(|r| format!("{} ({}) at stream sequences {} and {}", r.event_id, r.kind, r.first_seq, r.stream_seq))
        .collect();
    Some((format!("order {order}"), format!("published twice: {}", events.join("; ")), copies.len() as i64))
}

/// Checks the notifications against the orders, and the outbox's drain, clause by
/// clause ([`EVENTS_DELIVERED`]). Unknown when the state has no events part (the
/// cluster has no notifications service) or orders reports no outbox.
pub fn events_delivered(state: &ShopState) -> CheckResult {
    let mut c = Checking::new(EVENTS_DELIVERED, "orders and notifications");
    let Some(events) = &state.events else {
        c.cannot_tell("the cluster has no notifications service (run it on services/cluster-events.toml)");
        return c.finish();
    };
    c.subjects(state.orders.len() + events.notifications.len());

    let mut by_order: BTreeMap<&str, Vec<&NotificationRecord>> = BTreeMap::new();
    for n in &events.notifications {
        by_order.entry(n.order_id.as_str()).or_default().push(n);
    }
    for o in &state.orders {
        let notes = by_order.remove(o.id.as_str()).unwrap_or_default();
        let subject = || format!("order {}", o.id);
        match kind_for(&o.status) {
            Some(kind) => {
                c.judge(
                    MISSING,
                    notes.is_empty().then(|| (subject(), format!("{}, but its user was never notified", o.status), 1)),
                );
                c.judge(
                    TWICE,
                    (notes.len() > 1).then(|| {
                        let mut by_event: BTreeMap<&str, usize> = BTreeMap::new();
                        for n in &notes {
                            *by_event.entry(n.event_id.as_str()).or_default() += 1;
                        }
                        let events: Vec<String> = by_event.iter().map(|(e, k)| format!("{e} x{k}")).collect();
                        (
                            subject(),
                            format!("notified {} times (by event {})", notes.len(), events.join(", ")),
                            notes.len() as i64 - 1,
                        )
                    }),
                );
                for n in &notes {
                    c.judge(
                        WRONG_OUTCOME,
                        (n.kind != kind).then(|| (subject(), format!("{}, but notified {}", o.status, n.kind), 1)),
                    );
                }
            }
            None => c.judge(
                NOT_TERMINAL,
                (!notes.is_empty())
                    .then(|| (subject(), format!("still {}, but notified {} time(s)", o.status, notes.len()), 1)),
            ),
        }
        for n in &notes {
            let wrong = match &o.user_id {
                Some(u) => *u != n.user_id,
                None => false,
            };
            c.judge(
                WRONG_USER,
                wrong.then(|| {
                    let owner = o.user_id.as_deref().unwrap_or("?");
                    (subject(), format!("placed by user {owner}, but user {} was notified", n.user_id), 1)
                }),
            );
        }
    }
    for (order, notes) in &by_order {
        c.judge(
            ORPHAN,
            Some((format!("order {order}"), format!("no such order, but {} notification(s) for it", notes.len()), 1)),
        );
    }

    // Every order's events were in the stream once; a repeat of an order the orders
    // service does not have is judged as well.
    let mut repeats: BTreeMap<&str, Vec<&RepeatedEvent>> = BTreeMap::new();
    for r in &events.repeated {
        repeats.entry(r.order_id.as_str()).or_default().push(r);
    }
    for o in &state.orders {
        let copies = repeats.remove(o.id.as_str()).unwrap_or_default();
        c.judge(PUBLISHED_TWICE, published_twice(&o.id, &copies));
    }
    for (order, copies) in &repeats {
        c.judge(PUBLISHED_TWICE, published_twice(order, copies));
    }

    match &events.outbox {
        Some(lag) => {
            c.judge(
                NOT_DRAINED,
                (lag.unsent > 0).then(|| {
                    let age =
                        lag.oldest_unsent_age_ms.map_or(String::new(), |ms| format!(", the oldest waiting {ms} ms"));
                    let relay = if lag.relay { "" } else { " (no relay runs: orders has no broker)" };
                    (
                        "outbox of orders".to_string(),
                        format!("{} event(s) unsent{age}{relay}", lag.unsent),
                        lag.unsent as i64,
                    )
                }),
            );
        }
        None => c.cannot_tell("the orders admin state has no `outbox`: its drain cannot be checked"),
    }
    let dead = events.dead_letters;
    if dead > 0 {
        c.note(format!("{dead} message(s) dead-lettered by notifications"));
    }
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;
    use gauntlet::checks::Validity;

    #[test]
    fn a_run_without_notifications_cannot_be_judged() {
        let mut f = fixture::consistent();
        f.state.events = None;
        let r = events_delivered(&f.state);
        assert_eq!(r.validity, Validity::Unknown);
        assert!(r.summary.contains("no notifications service"), "{r}");
    }

    #[test]
    fn the_worst_is_the_order_notified_most() {
        let mut f = fixture::consistent();
        let events = f.state.events.as_mut().unwrap();
        let o1 = events.notifications[0].clone();
        let o4 = events.notifications[3].clone();
        events.notifications.extend([o1, o4.clone(), o4.clone(), o4]);
        let r = events_delivered(&f.state);
        assert_eq!(r.validity, Validity::Invalid);
        assert_eq!(r.first.as_ref().unwrap().subject, "order o1");
        assert_eq!(r.worst.as_ref().unwrap().subject, "order o4");
        assert!(r.worst.as_ref().unwrap().detail.contains("notified 4 times"), "{r}");
    }
}
