//! The notifications database: the notifications recorded, the ids of the events
//! already acted on, and the messages given up on (dead letters).
//!
//! Effectively once: a redelivered event (at-least-once delivery) finds its id in
//! `processed_events`, written in the same transaction as its notification, and does
//! nothing. The message is acknowledged only after that transaction commits, so a crash
//! in between redelivers an event that is then recognised.
//!
//! Writes go through the kit's [`SingleWriter`] (one at a time, in arrival order); reads
//! go straight to the pool.

use serde::Serialize;
use shop_kit::breakage::{Breakage, Switch};
use shop_kit::db::sqlite::{params, OptionalExtension};
use shop_kit::db::{Db, DbError, SingleWriter};

use crate::event::OrderEvent;

/// The schema, one migration per entry.
pub const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    order_id    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX notifications_by_user ON notifications (user_id, id);

CREATE TABLE processed_events (
    event_id     TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    processed_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_seq INTEGER NOT NULL UNIQUE,
    subject    TEXT NOT NULL,
    payload    TEXT NOT NULL,
    reason     TEXT NOT NULL,
    attempts   INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
",
    "
-- The stream sequence an event was first acted on under, to recognise a repeat the
-- producer published twice (the broker holds it under a second sequence).
ALTER TABLE processed_events ADD COLUMN stream_seq INTEGER;

CREATE TABLE repeated_events (
    event_id   TEXT NOT NULL,
    stream_seq INTEGER NOT NULL,
    first_seq  INTEGER NOT NULL,
    order_id   TEXT NOT NULL,
    kind       TEXT NOT NULL,
    seen_ms    INTEGER NOT NULL,
    PRIMARY KEY (event_id, stream_seq)
) WITHOUT ROWID;
",
];

/// One notification sent to a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub user_id: String,
    pub order_id: String,
    /// The event it tells of.
    pub event_id: String,
    /// `ORDER_PAID` or `ORDER_CANCELLED`.
    pub kind: String,
    pub text: String,
    /// When it was recorded, in milliseconds since the epoch.
    pub created_ms: i64,
}

/// A message given up on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    pub stream_seq: i64,
    pub subject: String,
    pub payload: String,
    pub reason: String,
    pub attempts: i64,
    pub created_ms: i64,
}

/// An event the broker holds more than once: the producer published it twice and the
/// broker kept both (a repeat its message id should have dropped).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepeatedEvent {
    pub event_id: String,
    pub order_id: String,
    pub kind: String,
    /// The stream sequence it was first acted on under.
    pub first_seq: i64,
    /// The sequence of the repeat.
    pub stream_seq: i64,
}

/// What acting on an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A notification was recorded.
    Notified,
    /// Nothing to tell (the order is not terminal yet); the event is marked processed.
    NothingToTell,
    /// The event was acted on before (a redelivery): nothing done.
    Duplicate,
}

/// The notifications database.
#[derive(Clone)]
pub struct Store {
    db: Db,
    writer: SingleWriter,
    breakage: Breakage,
}

impl Store {
    /// The store over `db` (migrated with [`MIGRATIONS`]).
    pub fn new(db: Db) -> Self {
        Self { writer: SingleWriter::new(db.clone()), db, breakage: Breakage::NONE }
    }

    /// The same store with break switches (debug builds only): [`Switch::SkipDedup`]
    /// acts on a redelivered event again.
    pub fn with_breakage(self, breakage: Breakage) -> Self {
        Self { breakage, ..self }
    }

    /// True when `event_id` was acted on already (so a slow sender need not send it
    /// again); always false in the build with [`Switch::SkipDedup`].
    pub async fn is_processed(&self, event_id: &str) -> Result<bool, DbError> {
        if self.breakage.is_broken(Switch::SkipDedup) {
            return Ok(false);
        }
        let event_id = event_id.to_string();
        self.db
            .read(move |c| {
                let seen: Option<i64> = c
                    .query_row("SELECT 1 FROM processed_events WHERE event_id = ?1", [&event_id], |r| r.get(0))
                    .optional()?;
                Ok(seen.is_some())
            })
            .await
    }

    /// Acts on `event` once: records its notification (if it is terminal) and its id
    /// as processed, in one transaction.
    pub async fn apply(&self, event: OrderEvent, now_ms: i64) -> Result<Applied, DbError> {
        self.apply_at(event, None, now_ms).await
    }

    /// [`Store::apply`] for the message at `stream_seq` in the broker's stream: an event
    /// seen before under another sequence was published twice, and is recorded as a
    /// [`RepeatedEvent`] (a redelivery comes under the same sequence and is not).
    pub async fn apply_at(&self, event: OrderEvent, stream_seq: Option<u64>, now_ms: i64) -> Result<Applied, DbError> {
        let skip_dedup = self.breakage.is_broken(Switch::SkipDedup);
        let stream_seq = stream_seq.and_then(|s| i64::try_from(s).ok());
        self.writer
            .write(move |tx| {
                let seen: Option<Option<i64>> = tx
                    .query_row("SELECT stream_seq FROM processed_events WHERE event_id = ?1", [&event.event_id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if let (Some(Some(first)), Some(seq)) = (seen, stream_seq) {
                    if first != seq {
                        tx.execute(
                            "INSERT OR IGNORE INTO repeated_events (event_id, stream_seq, first_seq, order_id, kind, seen_ms)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![event.event_id, seq, first, event.order_id, event.kind.as_str(), now_ms],
                        )?;
                    }
                }
                // The deliberately broken build acts on a redelivery again.
                if seen.is_some() && !skip_dedup {
                    return Ok(Applied::Duplicate);
                }
                tx.execute(
                    "INSERT OR IGNORE INTO processed_events (event_id, order_id, kind, processed_ms, stream_seq)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![event.event_id, event.order_id, event.kind.as_str(), now_ms, stream_seq],
                )?;
                if !event.kind.is_terminal() {
                    return Ok(Applied::NothingToTell);
                }
                tx.execute(
                    "INSERT INTO notifications (user_id, order_id, event_id, kind, text, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![event.user_id, event.order_id, event.event_id, event.kind.as_str(), event.text(), now_ms],
                )?;
                Ok::<_, DbError>(Applied::Notified)
            })
            .await
    }

    /// Records a message given up on; a second record of the same stream message is a no-op.
    pub async fn dead_letter(&self, letter: DeadLetter) -> Result<(), DbError> {
        self.writer
            .write(move |tx| {
                tx.execute(
                    "INSERT OR IGNORE INTO dead_letters (stream_seq, subject, payload, reason, attempts, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        letter.stream_seq,
                        letter.subject,
                        letter.payload,
                        letter.reason,
                        letter.attempts,
                        letter.created_ms
                    ],
                )?;
                Ok::<_, DbError>(())
            })
            .await
    }

    /// A user's notifications, newest first, at most `limit`.
    pub async fn for_user(&self, user_id: &str, limit: u32) -> Result<Vec<Notification>, DbError> {
        self.notifications("WHERE user_id = ?1 ORDER BY id DESC LIMIT ?2", vec![user_id.to_string(), limit.to_string()])
            .await
    }

    /// Everything, for the admin state, read in one transaction: every notification
    /// (oldest first), how many events were processed, every dead letter.
    pub async fn state(&self) -> Result<(Vec<Notification>, i64, Vec<DeadLetter>), DbError> {
        self.db
            .read(|c| {
                let tx = c.unchecked_transaction()?;
                let notifications = read_notifications(&tx, "ORDER BY id", &[])?;
                let processed: i64 = tx.query_row("SELECT count(*) FROM processed_events", [], |r| r.get(0))?;
                let mut stmt = tx.prepare(
                    "SELECT stream_seq, subject, payload, reason, attempts, created_ms FROM dead_letters ORDER BY id",
                )?;
                let letters = stmt
                    .query_map([], |r| {
                        Ok(DeadLetter {
                            stream_seq: r.get(0)?,
                            subject: r.get(1)?,
                            payload: r.get(2)?,
                            reason: r.get(3)?,
                            attempts: r.get(4)?,
                            created_ms: r.get(5)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                drop(stmt);
                tx.commit()?;
                Ok((notifications, processed, letters))
            })
            .await
    }

    /// Every event the broker held more than once, in the order they were seen.
    pub async fn repeats(&self) -> Result<Vec<RepeatedEvent>, DbError> {
        self.db
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT event_id, order_id, kind, first_seq, stream_seq FROM repeated_events ORDER BY seen_ms, stream_seq",
                )?;
                let rows = stmt.query_map([], |r| {
                    Ok(RepeatedEvent {
                        event_id: r.get(0)?,
                        order_id: r.get(1)?,
                        kind: r.get(2)?,
                        first_seq: r.get(3)?,
                        stream_seq: r.get(4)?,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await
    }

    async fn notifications(&self, clause: &'static str, args: Vec<String>) -> Result<Vec<Notification>, DbError> {
        self.db.read(move |c| Ok(read_notifications(c, clause, &args)?)).await
    }
}

fn read_notifications(
    c: &shop_kit::db::sqlite::Connection,
    clause: &str,
    args: &[String],
) -> shop_kit::db::sqlite::Result<Vec<Notification>> {
    let mut stmt = c.prepare(&format!(
        "SELECT id, user_id, order_id, event_id, kind, text, created_ms FROM notifications {clause}"
    ))?;
    let rows = stmt.query_map(shop_kit::db::sqlite::params_from_iter(args.iter()), |r| {
        Ok(Notification {
            id: r.get(0)?,
            user_id: r.get(1)?,
            order_id: r.get(2)?,
            event_id: r.get(3)?,
            kind: r.get(4)?,
            text: r.get(5)?,
            created_ms: r.get(6)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_kit::db::Sync;

    fn event(id: &str, kind: &str, order: &str) -> OrderEvent {
        let body = format!(r#"{{"event_id":"{id}","type":"{kind}","order_id":"{order}","user_id":"u1"}}"#);
        OrderEvent::parse(body.as_bytes()).unwrap()
    }

    fn open(dir: &tempfile::TempDir, breakage: Breakage) -> Store {
        Store::new(Db::open(&dir.path().join("n.db"), MIGRATIONS, Sync::Normal).unwrap()).with_breakage(breakage)
    }

    #[tokio::test]
    async fn a_terminal_event_notifies_once_however_often_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Breakage::NONE);
        assert_eq!(store.apply(event("o1:1", "ORDER_PLACED", "o1"), 1).await.unwrap(), Applied::NothingToTell);
        assert_eq!(store.apply(event("o1:4", "ORDER_PAID", "o1"), 2).await.unwrap(), Applied::Notified);
        assert_eq!(store.apply(event("o1:4", "ORDER_PAID", "o1"), 3).await.unwrap(), Applied::Duplicate);
        assert_eq!(store.apply(event("o2:3", "ORDER_CANCELLED", "o2"), 4).await.unwrap(), Applied::Notified);
        let mine = store.for_user("u1", 10).await.unwrap();
        assert_eq!(mine.iter().map(|n| n.order_id.as_str()).collect::<Vec<_>>(), ["o2", "o1"], "newest first");
        assert!(store.for_user("u2", 10).await.unwrap().is_empty());
        let (all, processed, letters) = store.state().await.unwrap();
        assert_eq!((all.len(), processed, letters.len()), (2, 3, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_deliveries_of_one_event_notify_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Breakage::NONE);
        let deliveries: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.apply(event("o1:4", "ORDER_PAID", "o1"), i).await.unwrap() })
            })
            .collect();
        let mut applied = Vec::new();
        for d in deliveries {
            applied.push(d.await.unwrap());
        }
        assert_eq!(applied.iter().filter(|&&a| a == Applied::Notified).count(), 1, "{applied:?}");
        assert_eq!(applied.iter().filter(|&&a| a == Applied::Duplicate).count(), 7, "{applied:?}");
        assert_eq!(store.state().await.unwrap().0.len(), 1);
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    async fn the_skip_dedup_switch_notifies_again_on_a_redelivery() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Breakage::NONE.with(Switch::SkipDedup));
        assert_eq!(store.apply(event("o1:4", "ORDER_PAID", "o1"), 1).await.unwrap(), Applied::Notified);
        assert_eq!(store.apply(event("o1:4", "ORDER_PAID", "o1"), 2).await.unwrap(), Applied::Notified);
        assert_eq!(store.state().await.unwrap().0.len(), 2);
    }

    #[tokio::test]
    async fn a_dead_letter_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Breakage::NONE);
        let letter = DeadLetter {
            stream_seq: 9,
            subject: "orders.paid".into(),
            payload: "junk".into(),
            reason: "not an order event".into(),
            attempts: 3,
            created_ms: 1,
        };
        store.dead_letter(letter.clone()).await.unwrap();
        store.dead_letter(letter.clone()).await.unwrap();
        assert_eq!(store.state().await.unwrap().2, vec![letter]);
    }

    #[tokio::test]
    async fn an_event_under_a_second_stream_sequence_is_recorded_as_repeated_and_a_redelivery_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir, Breakage::NONE);
        let paid = || event("o1:4", "ORDER_PAID", "o1");
        assert_eq!(store.apply_at(paid(), Some(7), 1).await.unwrap(), Applied::Notified);
        // A redelivery: the same message, the same sequence.
        assert_eq!(store.apply_at(paid(), Some(7), 2).await.unwrap(), Applied::Duplicate);
        assert!(store.repeats().await.unwrap().is_empty(), "a redelivery is not a repeat");
        // Published twice: the broker holds it again under sequence 9.
        assert_eq!(store.apply_at(paid(), Some(9), 3).await.unwrap(), Applied::Duplicate);
        assert_eq!(store.apply_at(paid(), Some(9), 4).await.unwrap(), Applied::Duplicate);
        let repeats = store.repeats().await.unwrap();
        assert_eq!(repeats.len(), 1, "{repeats:?}");
        assert_eq!((repeats[0].event_id.as_str(), repeats[0].first_seq, repeats[0].stream_seq), ("o1:4", 7, 9));
        assert_eq!(store.state().await.unwrap().0.len(), 1, "still notified once");
        // Without a sequence (a test, a contract) nothing can be told.
        assert_eq!(store.apply(paid(), 5).await.unwrap(), Applied::Duplicate);
        assert_eq!(store.repeats().await.unwrap().len(), 1);
    }
}
