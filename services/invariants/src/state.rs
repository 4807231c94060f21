//! The services' end state, as their admin endpoints (`GET /v1/admin/state`) answer it:
//! orders, the payments ledger, the catalog's stock and reservations, and where the
//! cluster has its event-driven half, orders' outbox and the notifications sent.

use serde::{Deserialize, Deserializer, Serialize};

use gauntlet::checks::op::{HistoryLine, OpType};

/// An order as the orders service holds it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct OrderRecord {
    /// Its id (text).
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    /// `PENDING`, `PAID` or `CANCELLED`.
    pub status: String,
    /// Its lines.
    #[serde(default)]
    pub items: Vec<OrderLine>,
    /// Its total, once the stock was reserved.
    #[serde(default)]
    pub total_minor: Option<i64>,
    /// Why it was cancelled.
    #[serde(default)]
    pub reason: Option<String>,
    /// The `Idempotency-Key` of the request that placed it (`None` when it had none).
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The user it is for.
    #[serde(default, deserialize_with = "opt_id_text")]
    pub user_id: Option<String>,
}

impl OrderRecord {
    /// Whether the order has reached a terminal state.
    pub fn is_terminal(&self) -> bool {
        self.status == "PAID" || self.status == "CANCELLED"
    }
}

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: i64,
    /// Units.
    pub quantity: i64,
}

/// A charge in the payments ledger, with the idempotency key that made it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ChargeRecord {
    /// Its id.
    pub id: i64,
    /// The order it is for (text).
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// `captured`, `refunded` or `declined`.
    pub status: String,
    /// Amount refunded, minor units.
    #[serde(default)]
    pub refunded_minor: i64,
    /// The key of the request that made it.
    pub idempotency_key: String,
}

impl ChargeRecord {
    /// Money this charge moved and kept: captured minus refunded (0 for a decline).
    pub fn net_minor(&self) -> i64 {
        if self.status == "declined" {
            0
        } else {
            self.amount_minor - self.refunded_minor
        }
    }
}

/// The ledger summary the payments service computes itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LedgerSummary {
    /// Everything ever captured.
    pub captured_minor: i64,
    /// Everything refunded.
    pub refunded_minor: i64,
    /// `captured - refunded`.
    pub net_minor: i64,
}

/// A product's stock levels.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct StockLevel {
    /// The product.
    pub id: i64,
    /// Stock it was seeded with.
    pub initial_stock: i64,
    /// Free to reserve.
    pub available: i64,
    /// Held by reservations.
    pub reserved: i64,
    /// Committed (sold).
    pub sold: i64,
}

/// A stock reservation.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReservationRecord {
    /// Its id.
    pub id: i64,
    /// The order it is for (text).
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    /// `held`, `committed` or `released`.
    pub status: String,
    /// Its lines.
    #[serde(default)]
    pub items: Vec<OrderLine>,
}

/// How far the orders service's outbox relay is behind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OutboxLag {
    /// Whether a relay publishes it (a broker is configured).
    #[serde(default)]
    pub relay: bool,
    /// Published events the broker has not acknowledged yet.
    pub unsent: u64,
    /// How long the oldest of them has waited.
    #[serde(default)]
    pub oldest_unsent_age_ms: Option<u64>,
}

/// A notification the notifications service recorded.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct NotificationRecord {
    /// The order it tells of (text).
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    /// The user it went to (text).
    #[serde(deserialize_with = "id_text")]
    pub user_id: String,
    /// `ORDER_PAID` or `ORDER_CANCELLED`.
    pub kind: String,
    /// The event it was made from.
    #[serde(default)]
    pub event_id: String,
}

/// An event the broker held twice: the consumer met its id under a second stream
/// sequence (the producer published it again and its message id did not drop it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct RepeatedEvent {
    pub event_id: String,
    /// The order it belongs to (text).
    #[serde(deserialize_with = "id_text")]
    pub order_id: String,
    /// Its type, e.g. `ORDER_PLACED`.
    pub kind: String,
    /// The stream sequence it was first acted on under, and the repeat's.
    pub first_seq: i64,
    pub stream_seq: i64,
}

/// The event-driven half's end state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EventsState {
    /// The orders service's outbox lag (`None` when its admin state has none).
    pub outbox: Option<OutboxLag>,
    /// Every notification.
    pub notifications: Vec<NotificationRecord>,
    /// How many messages the consumer gave up on.
    pub dead_letters: usize,
    /// Events the broker held more than once.
    pub repeated: Vec<RepeatedEvent>,
}

impl EventsState {
    /// Whether delivery has caught up with `orders`: nothing left in the outbox and every
    /// ended order notified (what the settle phase waits for).
    pub fn caught_up(&self, orders: &[OrderRecord]) -> bool {
        let drained = self.outbox.as_ref().is_none_or(|o| o.unsent == 0);
        let notified: std::collections::BTreeSet<&str> =
            self.notifications.iter().map(|n| n.order_id.as_str()).collect();
        drained && orders.iter().filter(|o| o.is_terminal()).all(|o| notified.contains(o.id.as_str()))
    }
}

/// Everything the checkers look at, from the three stateful services.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ShopState {
    /// Every order.
    pub orders: Vec<OrderRecord>,
    /// Every charge.
    pub charges: Vec<ChargeRecord>,
    /// The ledger's own summary.
    pub ledger: LedgerSummary,
    /// Every product's stock.
    pub products: Vec<StockLevel>,
    /// Every reservation.
    pub reservations: Vec<ReservationRecord>,
    /// The event-driven half, where the cluster has a notifications service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<EventsState>,
}

fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("an id must be a string or a number, got {other}"))),
    }
}

fn opt_id_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!("an id must be a string or a number, got {other}"))),
    }
}

#[derive(Deserialize)]
struct OrdersState {
    orders: Vec<OrderRecord>,
    #[serde(default)]
    outbox: Option<OutboxLag>,
}

#[derive(Deserialize)]
struct NotificationsState {
    notifications: Vec<NotificationRecord>,
    #[serde(default)]
    dead_letters: Vec<serde_json::Value>,
    #[serde(default)]
    repeated_events: Vec<RepeatedEvent>,
}

#[derive(Deserialize)]
struct PaymentsState {
    charges: Vec<ChargeRecord>,
    summary: LedgerSummary,
}

#[derive(Deserialize)]
struct CatalogState {
    products: Vec<StockLevel>,
    reservations: Vec<ReservationRecord>,
}

/// The final reads (`f`) the shop's state is read from: each service's
/// `GET /v1/admin/state`, whole (`result = ""`), as `services/checks.toml` declares them.
pub const READS: [&str; 4] = ["orders-state", "payments-state", "catalog-state", "notifications-state"];

impl ShopState {
    /// The shop's state from the run's final reads (`final-reads.jsonl`): the orders,
    /// payments and catalog reads must have answered; notifications' is read where the
    /// cluster has that service.
    pub fn from_final_reads(lines: &[HistoryLine]) -> anyhow::Result<ShopState> {
        let read = |f: &str| lines.iter().rev().find(|l| l.f == f && l.kind == OpType::Ok).map(|l| l.value.to_string());
        let need = |f: &str| {
            read(f).ok_or_else(|| {
                anyhow::anyhow!("the final read `{f}` did not answer (see the run's notes), so the state is unknown")
            })
        };
        Self::from_admin_json(&need(READS[0])?, &need(READS[1])?, &need(READS[2])?, read(READS[3]).as_deref())
    }

    /// Whether the shop has settled: every order ended and, with the event-driven half,
    /// delivery caught up (what the settle phase waits for).
    pub fn settled(&self) -> bool {
        self.orders.iter().all(|o| o.is_terminal()) && self.events.as_ref().is_none_or(|e| e.caught_up(&self.orders))
    }

    /// The shop's state from the bodies of each service's `GET /v1/admin/state` (orders,
    /// payments, catalog, and notifications when the cluster has it), however they were
    /// fetched.
    pub fn from_admin_json(
        orders: &str,
        payments: &str,
        catalog: &str,
        notifications: Option<&str>,
    ) -> anyhow::Result<ShopState> {
        use anyhow::Context as _;
        let orders: OrdersState = serde_json::from_str(orders).context("reading the orders admin state")?;
        let payments: PaymentsState = serde_json::from_str(payments).context("reading the payments admin state")?;
        let catalog: CatalogState = serde_json::from_str(catalog).context("reading the catalog admin state")?;
        let events = match notifications {
            Some(text) => {
                let n: NotificationsState =
                    serde_json::from_str(text).context("reading the notifications admin state")?;
                Some(EventsState {
                    outbox: orders.outbox,
                    notifications: n.notifications,
                    dead_letters: n.dead_letters.len(),
                    repeated: n.repeated_events,
                })
            }
            None => None,
        };
        Ok(ShopState {
            orders: orders.orders,
            charges: payments.charges,
            ledger: payments.summary,
            products: catalog.products,
            reservations: catalog.reservations,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_services_shapes() {
        let o: OrdersState = serde_json::from_str(
            r#"{"orders":[{"id":"5","user_id":"1","status":"PAID","items":[{"product_id":3,"quantity":2}],
            "total_minor":822,"currency":"EUR","reservation_id":"9","charge_id":"4","reason":null,"version":5,
            "created_at":"x","updated_at":"y"}]}"#,
        )
        .unwrap();
        assert!(o.orders[0].is_terminal());
        let p: PaymentsState = serde_json::from_str(
            r#"{"charges":[{"id":1,"order_id":5,"amount_minor":822,"currency":"EUR","status":"captured",
            "refunded_minor":0,"created_at":"x","idempotency_key":"5:charge"}],
            "summary":{"captured_minor":822,"refunded_minor":0,"net_minor":822,"by_status":{}}}"#,
        )
        .unwrap();
        assert_eq!(p.charges[0].order_id, "5");
        assert_eq!(p.charges[0].net_minor(), 822);
        assert_eq!(o.outbox, None, "an orders service without an outbox still reads");
        let o: OrdersState =
            serde_json::from_str(r#"{"orders":[],"outbox":{"relay":true,"unsent":2,"oldest_unsent_age_ms":40}}"#)
                .unwrap();
        assert_eq!(o.outbox, Some(OutboxLag { relay: true, unsent: 2, oldest_unsent_age_ms: Some(40) }));
        let n: NotificationsState = serde_json::from_str(
            r#"{"notifications":[{"id":1,"user_id":"7","order_id":"o1","event_id":"o1:4","kind":"ORDER_PAID",
            "text":"Your order o1 is paid.","created_ms":1}],"processed_events":2,"dead_letters":[]}"#,
        )
        .unwrap();
        assert_eq!(n.notifications[0].user_id, "7");
    }
}
