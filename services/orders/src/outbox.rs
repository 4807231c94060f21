//! The transactional outbox: the order events other services hear of, queued in the
//! same transaction that records them, until the relay has the broker's ack.
//!
//! The events table is the truth; the `outbox` table is the part of it that leaves the
//! service: one row per published event (`Placed`, `Paid`, `Cancelled`), written in the
//! transaction that appends the event, with the message frozen as it was then. Its
//! `seq` is the order of commits (SQLite has one writer at a time), which is the order
//! the relay publishes in. `sent_at` is set only after the broker acknowledged the
//! message, so a crash between the ack and the mark sends the event again, and the
//! broker drops the repeat by its message id (the event id, JetStream's `Nats-Msg-Id`).

use serde::{Deserialize, Serialize};
use shop_kit::breakage::{Breakage, Switch};
use shop_kit::db::sqlite::{self, params, OptionalExtension};
use shop_kit::db::{Db, DbError, SingleWriter};

use crate::events::{OrderEvent, OrderState, Timestamp};

/// The stream the relay publishes to, and the subjects it holds.
pub const STREAM: &str = "ORDERS";
/// Every order event's subject is under this prefix: `orders.placed`, `orders.paid`,
/// `orders.cancelled`.
pub const SUBJECTS: &str = "orders.>";

/// The migration that creates the outbox (applied after the store's own).
pub const MIGRATION: &str = "
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    sent_ms    INTEGER
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_ms IS NULL;
";

/// What other services hear of an order: one message per published event.
///
/// Fields are only ever added; consumers ignore the ones they do not know.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEventMessage {
    /// `<order_id>:<version>`: unique, stable across retries, the broker's de-duplication key.
    pub event_id: String,
    /// `ORDER_PLACED`, `ORDER_PAID` or `ORDER_CANCELLED`.
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: String,
    pub user_id: String,
    /// The order's version after this event (its place in the order's own log).
    pub version: u64,
    /// The order's status after this event: `PENDING`, `PAID` or `CANCELLED`.
    pub status: String,
    pub total_minor: Option<i64>,
    pub currency: Option<String>,
    /// Why it was cancelled (`ORDER_CANCELLED` only).
    pub reason: Option<String>,
    /// When the event happened.
    pub at: Timestamp,
}

impl OrderEventMessage {
    /// The message for `event`, recorded as the change to `after`; `None` for the saga's
    /// inner steps, which stay inside the service.
    pub fn of(event: &OrderEvent, after: &OrderState) -> Option<Self> {
        let kind = match event {
            OrderEvent::Placed { .. } => "ORDER_PLACED",
            OrderEvent::Paid => "ORDER_PAID",
            OrderEvent::Cancelled { .. } => "ORDER_CANCELLED",
            _ => return None,
        };
        Some(Self {
            event_id: format!("{}:{}", after.id, after.version),
            kind: kind.to_string(),
            order_id: after.id.clone(),
            user_id: after.user_id.clone(),
            version: after.version,
            status: after.stage.status().as_str().to_string(),
            total_minor: after.total_minor,
            currency: after.currency.clone(),
            reason: match event {
                OrderEvent::Cancelled { reason } => Some(reason.clone()),
                _ => None,
            },
            at: after.updated_at,
        })
    }

    /// Its subject: `orders.placed`, `orders.paid` or `orders.cancelled`.
    pub fn subject(&self) -> String {
        format!("orders.{}", self.kind.trim_start_matches("ORDER_").to_ascii_lowercase())
    }

    /// The message body the relay publishes: this message as JSON. The break switch
    /// `paid-without-user` (debug builds) leaves `user_id` out of `ORDER_PAID`.
    pub fn payload(&self, breakage: Breakage) -> String {
        let mut json = serde_json::to_value(self).expect("messages are plain data");
        if self.kind == "ORDER_PAID" && breakage.is_broken(Switch::PaidWithoutUser) {
            if let Some(fields) = json.as_object_mut() {
                fields.remove("user_id");
            }
        }
        json.to_string()
    }
}

/// Queues the message of `event` (if it is published) in transaction `tx`, the one
/// that records the event.
pub(crate) fn enqueue(
    tx: &sqlite::Transaction<'_>,
    event: &OrderEvent,
    after: &OrderState,
    breakage: Breakage,
) -> sqlite::Result<()> {
    let Some(message) = OrderEventMessage::of(event, after) else { return Ok(()) };
    tx.execute(
        "INSERT INTO outbox (event_id, subject, payload, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![message.event_id, message.subject(), message.payload(breakage), Timestamp::now().millis() as i64],
    )?;
    Ok(())
}

/// One queued message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub seq: i64,
    pub event_id: String,
    pub subject: String,
    pub payload: String,
}

/// How far the relay is behind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// Events not yet acknowledged by the broker.
    pub unsent: u64,
    /// How long the oldest of them has waited, in milliseconds; `None` when none waits.
    pub oldest_unsent_age_ms: Option<u64>,
}

/// The outbox table of an orders database.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    writer: SingleWriter,
}

impl Outbox {
    /// The outbox of `db` (an orders database, migrated). Its writes wait in `db`'s
    /// single-writer queue, behind the store's.
    pub fn new(db: Db) -> Self {
        Self { writer: SingleWriter::new(db.clone()), db }
    }

    /// The oldest unsent messages, in publishing order, at most `limit`.
    pub async fn unsent(&self, limit: u32) -> Result<Vec<Pending>, DbError> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, event_id, subject, payload FROM outbox WHERE sent_ms IS NULL ORDER BY seq LIMIT ?1",
                )?;
                let rows = stmt.query_map([limit], |r| {
                    Ok(Pending { seq: r.get(0)?, event_id: r.get(1)?, subject: r.get(2)?, payload: r.get(3)? })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    /// The queued message of event `event_id` (sent or not), as the relay publishes it.
    pub async fn message(&self, event_id: &str) -> Result<Option<Pending>, DbError> {
        let event_id = event_id.to_string();
        self.db
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT seq, event_id, subject, payload FROM outbox WHERE event_id = ?1",
                    [&event_id],
                    |r| Ok(Pending { seq: r.get(0)?, event_id: r.get(1)?, subject: r.get(2)?, payload: r.get(3)? }),
                )
                .optional()?)
            })
            .await
    }

    /// Marks `seqs` sent (the broker acknowledged each).
    pub async fn mark_sent(&self, seqs: Vec<i64>) -> Result<(), DbError> {
        if seqs.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now().millis() as i64;
        self.writer
            .write(move |tx| {
                let mut stmt = tx.prepare_cached("UPDATE outbox SET sent_ms = ?1 WHERE seq = ?2")?;
                for seq in seqs {
                    stmt.execute(params![now, seq])?;
                }
                Ok::<_, DbError>(())
            })
            .await
    }

    /// How far behind the relay is, as of `now`.
    pub async fn lag(&self, now: Timestamp) -> Result<Lag, DbError> {
        let (unsent, oldest): (i64, Option<i64>) = self
            .db
            .read(|c| {
                Ok(c.query_row("SELECT count(*), min(created_ms) FROM outbox WHERE sent_ms IS NULL", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?)
            })
            .await?;
        Ok(Lag {
            unsent: u64::try_from(unsent).unwrap_or(0),
            oldest_unsent_age_ms: oldest.map(|o| now.millis().saturating_sub(u64::try_from(o).unwrap_or(0))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::LineItem;
    use crate::store::Store;
    use shop_kit::db::Sync;

    fn placed(id: &str) -> OrderState {
        OrderState::placed(id, "u7", vec![LineItem { product_id: 1, quantity: 1 }], Timestamp::from_millis(1_000))
    }

    #[tokio::test]
    async fn published_events_are_queued_with_their_order_in_commit_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("orders.db"), Sync::Normal).unwrap();
        let outbox = Outbox::new(store.db().clone());
        store.place(placed("o1"), None).await.unwrap();
        store.place(placed("o2"), None).await.unwrap();
        // Inner saga steps stay inside; the cancellation is published.
        let s = store.load("o1").await.unwrap().unwrap();
        let started = OrderEvent::CompensationStarted { reason: "declined".into(), in_doubt: false };
        let s = s.apply(&started, Timestamp::from_millis(2_000)).unwrap();
        store.append(&s, &started).await.unwrap();
        let cancelled = OrderEvent::Cancelled { reason: "declined".into() };
        let s = s.apply(&cancelled, Timestamp::from_millis(3_000)).unwrap();
        store.append(&s, &cancelled).await.unwrap();

        let pending = outbox.unsent(10).await.unwrap();
        let ids: Vec<_> = pending.iter().map(|p| (p.event_id.as_str(), p.subject.as_str())).collect();
        assert_eq!(ids, [("o1:1", "orders.placed"), ("o2:1", "orders.placed"), ("o1:3", "orders.cancelled")]);
        let last: OrderEventMessage = serde_json::from_str(&pending[2].payload).unwrap();
        assert_eq!(
            (last.kind.as_str(), last.user_id.as_str(), last.status.as_str()),
            ("ORDER_CANCELLED", "u7", "CANCELLED")
        );
        assert_eq!(last.reason.as_deref(), Some("declined"));
        assert_eq!(outbox.lag(Timestamp::now()).await.unwrap().unsent, 3);

        outbox.mark_sent(vec![pending[0].seq, pending[1].seq]).await.unwrap();
        let left = outbox.unsent(10).await.unwrap();
        assert_eq!(left.iter().map(|p| p.event_id.as_str()).collect::<Vec<_>>(), ["o1:3"]);
        let lag = outbox.lag(Timestamp::now()).await.unwrap();
        assert_eq!(lag.unsent, 1);
        assert!(lag.oldest_unsent_age_ms.is_some());
        outbox.mark_sent(vec![left[0].seq]).await.unwrap();
        assert_eq!(outbox.lag(Timestamp::now()).await.unwrap(), Lag { unsent: 0, oldest_unsent_age_ms: None });
    }

    #[test]
    fn the_payload_is_the_message_and_paid_without_user_breaks_only_order_paid() {
        let placed = placed("o1");
        let message =
            OrderEventMessage::of(&OrderEvent::Placed { user_id: "u7".into(), items: vec![] }, &placed).unwrap();
        let broken = Breakage::NONE.with(Switch::PaidWithoutUser);
        let json: serde_json::Value = serde_json::from_str(&message.payload(broken)).unwrap();
        assert_eq!(serde_json::from_value::<OrderEventMessage>(json).unwrap(), message, "placed keeps user_id");
        let paid = OrderEventMessage { kind: "ORDER_PAID".into(), ..message };
        let whole: serde_json::Value = serde_json::from_str(&paid.payload(Breakage::NONE)).unwrap();
        assert_eq!(whole["user_id"], "u7");
        let json: serde_json::Value = serde_json::from_str(&paid.payload(broken)).unwrap();
        assert_eq!(json.get("user_id").is_none(), cfg!(debug_assertions), "{json}");
        assert_eq!(json["type"], "ORDER_PAID");
    }

    #[tokio::test]
    async fn an_event_whose_append_fails_is_not_queued() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("orders.db"), Sync::Normal).unwrap();
        store.place(placed("o1"), None).await.unwrap();
        let s = store.load("o1").await.unwrap().unwrap();
        let started = OrderEvent::CompensationStarted { reason: "x".into(), in_doubt: false };
        let s = s.apply(&started, Timestamp::from_millis(2_000)).unwrap();
        store.append(&s, &started).await.unwrap();
        let cancelled = OrderEvent::Cancelled { reason: "x".into() };
        let s = s.apply(&cancelled, Timestamp::from_millis(3_000)).unwrap();
        store.append(&s, &cancelled).await.unwrap();
        // A second executor appending the same version loses, and queues nothing.
        assert!(store.append(&s, &cancelled).await.is_err());
        assert_eq!(Outbox::new(store.db().clone()).unsent(10).await.unwrap().len(), 2);
    }
}
