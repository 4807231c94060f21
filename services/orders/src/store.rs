//! The orders database: the event log (the truth), the `orders` projection (for reads),
//! the idempotency keys of place-order, and the outbox of published events
//! ([`crate::outbox`]), queued in the transaction that appends them.
//!
//! Appends are optimistic: an event is written as version `n + 1` of its order only if
//! nobody wrote it first; `PRIMARY KEY (order_id, version)` decides, so two executors
//! can never both extend the same version. The projection row is rewritten in the same
//! transaction, so it never disagrees with the log.
//!
//! The key a client placed an order under is a fact of the request, not of the saga: it
//! lives beside the log, in `idempotency_keys` (key → the order it made) and on the
//! projection row (`orders.idempotency_key`, written once when the order is placed), where
//! the admin state reads it.
//!
//! Writes go through the kit's [`SingleWriter`], one at a time in arrival order (the
//! outbox's marks share the queue: it is the database's); each is still one transaction
//! holding the event, its projection and its outbox row.

use std::path::Path;

use shop_kit::breakage::{Breakage, Switch};
use shop_kit::db::sqlite::{self, params, OptionalExtension};
use shop_kit::db::{Db, DbError, SingleWriter, Sync};

use crate::events::{LineItem, Order, OrderEvent, OrderState, Status, Timestamp};
use crate::outbox;

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE events (
    order_id TEXT NOT NULL,
    version  INTEGER NOT NULL,
    type     TEXT NOT NULL,
    data     TEXT NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (order_id, version)
) WITHOUT ROWID;

CREATE TABLE orders (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL,
    status         TEXT NOT NULL,
    stage          TEXT NOT NULL,
    items          TEXT NOT NULL,
    total_minor    INTEGER,
    currency       TEXT,
    reservation_id TEXT,
    charge_id      TEXT,
    reason         TEXT,
    version        INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, created_at);
CREATE INDEX orders_by_status ON orders (status, updated_at);

CREATE TABLE idempotency_keys (
    key      TEXT PRIMARY KEY,
    request  TEXT NOT NULL,
    order_id TEXT NOT NULL REFERENCES orders (id)
);
",
    "
ALTER TABLE orders ADD COLUMN idempotency_key TEXT;
UPDATE orders SET idempotency_key = (SELECT key FROM idempotency_keys k WHERE k.order_id = orders.id);
",
    // Events recorded before the outbox existed are not published.
    crate::outbox::MIGRATION,
];

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("order {order_id} already has a version {version}: another executor got there first")]
    Conflict { order_id: String, version: u64 },
    #[error("order {order_id} is corrupt: {reason}")]
    Corrupt { order_id: String, reason: String },
}

impl From<sqlite::Error> for StoreError {
    fn from(e: sqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// What placing an order under an idempotency key found.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// A new order was recorded.
    Created,
    /// The key was used before with the same request, for this order.
    Repeated(String),
    /// The key was used before with a different request.
    KeyReused,
}

/// An order with the idempotency key it was placed under, for the admin state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyedOrder {
    #[serde(flatten)]
    pub order: Order,
    /// The client's `Idempotency-Key` of the `POST /v1/orders` that created the order.
    pub idempotency_key: Option<String>,
}

/// The orders database.
#[derive(Clone)]
pub struct Store {
    db: Db,
    writer: SingleWriter,
    breakage: Breakage,
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path, sync: Sync) -> Result<Self, DbError> {
        let db = Db::open(path, MIGRATIONS, sync)?;
        Ok(Self { writer: SingleWriter::new(db.clone()), db, breakage: Breakage::NONE })
    }

    /// The same store with the break switches `breakage` (debug builds only):
    /// [`Switch::DuplicateOrder`] makes a repeated key place a new order.
    pub fn with_breakage(self, breakage: Breakage) -> Self {
        Self { breakage, ..self }
    }

    /// The underlying database (for readiness and shutdown).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Records a new order (its `Placed` event, version 1) and, when given, its
    /// idempotency key with the canonical form of the request.
    pub async fn place(&self, state: OrderState, key: Option<(String, String)>) -> Result<Placement, StoreError> {
        let event = OrderEvent::Placed { user_id: state.user_id.clone(), items: state.items.clone() };
        let duplicate = self.breakage.is_broken(Switch::DuplicateOrder);
        let breakage = self.breakage;
        self.writer
            .write(move |tx| {
                let mut key_is_new = true;
                if let Some((key, request)) = &key {
                    let found: Option<(String, String)> = tx
                        .query_row("SELECT request, order_id FROM idempotency_keys WHERE key = ?1", [key], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?;
                    match found {
                        None => {}
                        Some((stored, _)) if &stored != request => return Ok(Placement::KeyReused),
                        // The deliberately broken build: the repeat places an order of its own.
                        Some(_) if duplicate => key_is_new = false,
                        Some((_, order_id)) => return Ok(Placement::Repeated(order_id)),
                    }
                }
                insert_event(tx, &state.id, 1, &event, state.created_at)?;
                write_projection(tx, &state)?;
                outbox::enqueue(tx, &event, &state, breakage)?;
                if let Some((key, request)) = &key {
                    tx.execute("UPDATE orders SET idempotency_key = ?1 WHERE id = ?2", params![key, state.id])?;
                    if key_is_new {
                        tx.execute(
                            "INSERT INTO idempotency_keys (key, request, order_id) VALUES (?1, ?2, ?3)",
                            params![key, request, state.id],
                        )?;
                    }
                }
                Ok(Placement::Created)
            })
            .await
    }

    /// Appends `event` as version `next.version` of its order, where `next` is the state
    /// after it; fails with [`StoreError::Conflict`] if that version exists already.
    pub async fn append(&self, next: &OrderState, event: &OrderEvent) -> Result<(), StoreError> {
        let (next, event, breakage) = (next.clone(), event.clone(), self.breakage);
        self.writer
            .write(move |tx| {
                match insert_event(tx, &next.id, next.version, &event, next.updated_at) {
                    Err(StoreError::Db(DbError::Sqlite(e)))
                        if e.sqlite_error_code() == Some(sqlite::ErrorCode::ConstraintViolation) =>
                    {
                        return Err(StoreError::Conflict { order_id: next.id.clone(), version: next.version });
                    }
                    r => r?,
                }
                write_projection(tx, &next)?;
                outbox::enqueue(tx, &event, &next, breakage)?;
                Ok(())
            })
            .await
    }

    /// Folds the event log of `order_id`; `None` if there is no such order.
    pub async fn load(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        let id = order_id.to_string();
        let rows: Vec<(String, String)> = self
            .db
            .read(move |c| {
                let mut stmt = c.prepare_cached("SELECT data, at FROM events WHERE order_id = ?1 ORDER BY version")?;
                let rows = stmt.query_map([&id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let corrupt = |reason: String| StoreError::Corrupt { order_id: order_id.to_string(), reason };
        let mut events = Vec::with_capacity(rows.len());
        for (data, at) in rows {
            let event: OrderEvent = serde_json::from_str(&data).map_err(|e| corrupt(format!("event {data}: {e}")))?;
            let at = Timestamp::parse(&at).ok_or_else(|| corrupt(format!("bad time {at:?}")))?;
            events.push((event, at));
        }
        OrderState::fold(order_id, events.iter().map(|(e, at)| (e, *at))).map(Some).map_err(|e| corrupt(e.to_string()))
    }

    /// The projected order `order_id`.
    pub async fn get(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        let id = order_id.to_string();
        self.query_orders(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"), vec![id])
            .await
            .map(|mut v| v.pop())
    }

    /// A user's orders, newest first, at most `limit`.
    pub async fn list_by_user(&self, user_id: &str, limit: u32) -> Result<Vec<Order>, StoreError> {
        self.query_orders(
            format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ?1 ORDER BY created_at DESC, id DESC LIMIT {limit}"
            ),
            vec![user_id.to_string()],
        )
        .await
    }

    /// Every order, oldest first.
    pub async fn list_all(&self) -> Result<Vec<Order>, StoreError> {
        Ok(self.list_all_keyed().await?.into_iter().map(|k| k.order).collect())
    }

    /// Every order with the idempotency key it was placed under, oldest first.
    pub async fn list_all_keyed(&self) -> Result<Vec<KeyedOrder>, StoreError> {
        self.query_keyed(format!("SELECT {ORDER_COLUMNS} FROM orders ORDER BY created_at, id"), vec![]).await
    }

    /// Ids of orders not yet terminal whose last change is not after `updated_before`,
    /// least recently changed first, at most `limit`.
    pub async fn open_orders(&self, updated_before: Timestamp, limit: u32) -> Result<Vec<String>, StoreError> {
        let before = updated_before.to_string();
        Ok(self
            .db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id FROM orders WHERE status = 'PENDING' AND updated_at <= ?1 ORDER BY updated_at LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![before, limit], |r| r.get::<_, String>(0))?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?)
    }

    async fn query_orders(&self, sql: String, args: Vec<String>) -> Result<Vec<Order>, StoreError> {
        Ok(self.query_keyed(sql, args).await?.into_iter().map(|k| k.order).collect())
    }

    async fn query_keyed(&self, sql: String, args: Vec<String>) -> Result<Vec<KeyedOrder>, StoreError> {
        let rows: Vec<OrderRow> = self
            .db
            .read(move |c| {
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt.query_map(sqlite::params_from_iter(args.iter()), OrderRow::read)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
            .await?;
        rows.into_iter().map(OrderRow::into_keyed).collect()
    }
}

fn insert_event(
    tx: &sqlite::Transaction<'_>,
    order_id: &str,
    version: u64,
    event: &OrderEvent,
    at: Timestamp,
) -> Result<(), StoreError> {
    let data = serde_json::to_string(event).expect("events are plain data");
    tx.execute(
        "INSERT INTO events (order_id, version, type, data, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![order_id, version as i64, event.kind(), data, at.to_string()],
    )?;
    Ok(())
}

fn write_projection(tx: &sqlite::Transaction<'_>, s: &OrderState) -> Result<(), StoreError> {
    let items = serde_json::to_string(&s.items).expect("items are plain data");
    tx.execute(
        "INSERT INTO orders (id, user_id, status, stage, items, total_minor, currency, reservation_id, charge_id,
                             reason, version, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (id) DO UPDATE SET
             status = excluded.status, stage = excluded.stage, total_minor = excluded.total_minor,
             currency = excluded.currency, reservation_id = excluded.reservation_id,
             charge_id = excluded.charge_id, reason = excluded.reason, version = excluded.version,
             updated_at = excluded.updated_at",
        params![
            s.id,
            s.user_id,
            s.stage.status().as_str(),
            s.stage.as_str(),
            items,
            s.total_minor,
            s.currency,
            s.reservation_id,
            s.charge_id,
            s.reason,
            s.version as i64,
            s.created_at.to_string(),
            s.updated_at.to_string(),
        ],
    )?;
    Ok(())
}

const ORDER_COLUMNS: &str = "id, user_id, status, items, total_minor, currency, reservation_id, charge_id, reason, \
                             version, created_at, updated_at, idempotency_key";

struct OrderRow {
    id: String,
    user_id: String,
    status: String,
    items: String,
    total_minor: Option<i64>,
    currency: Option<String>,
    reservation_id: Option<String>,
    charge_id: Option<String>,
    reason: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
    idempotency_key: Option<String>,
}

impl OrderRow {
    fn read(r: &sqlite::Row<'_>) -> sqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            user_id: r.get(1)?,
            status: r.get(2)?,
            items: r.get(3)?,
            total_minor: r.get(4)?,
            currency: r.get(5)?,
            reservation_id: r.get(6)?,
            charge_id: r.get(7)?,
            reason: r.get(8)?,
            version: r.get(9)?,
            created_at: r.get(10)?,
            updated_at: r.get(11)?,
            idempotency_key: r.get(12)?,
        })
    }

    fn into_keyed(self) -> Result<KeyedOrder, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt { order_id: self.id.clone(), reason };
        let status = match self.status.as_str() {
            "PENDING" => Status::Pending,
            "PAID" => Status::Paid,
            "CANCELLED" => Status::Cancelled,
            other => return Err(corrupt(format!("unknown status {other:?}"))),
        };
        let items: Vec<LineItem> = serde_json::from_str(&self.items).map_err(|e| corrupt(format!("items: {e}")))?;
        let created_at = Timestamp::parse(&self.created_at).ok_or_else(|| corrupt("bad created_at".into()))?;
        let updated_at = Timestamp::parse(&self.updated_at).ok_or_else(|| corrupt("bad updated_at".into()))?;
        let version = u64::try_from(self.version).map_err(|_| corrupt("negative version".into()))?;
        let order = Order {
            id: self.id,
            user_id: self.user_id,
            status,
            items,
            total_minor: self.total_minor,
            currency: self.currency,
            reservation_id: self.reservation_id,
            charge_id: self.charge_id,
            reason: self.reason,
            version,
            created_at,
            updated_at,
        };
        Ok(KeyedOrder { order, idempotency_key: self.idempotency_key })
    }
}

/// The stage stored for an order, for tests of the projection.
#[cfg(test)]
async fn stage_of(store: &Store, id: &str) -> Option<String> {
    let id = id.to_string();
    store
        .db
        .read(move |c| Ok(c.query_row("SELECT stage FROM orders WHERE id = ?1", [id], |r| r.get(0)).optional()?))
        .await
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_order(id: &str, at: u64) -> OrderState {
        OrderState::placed(id, "u1", vec![LineItem { product_id: 1, quantity: 2 }], Timestamp::from_millis(at))
    }

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("orders.db"), Sync::Normal).unwrap()
    }

    #[tokio::test]
    async fn appends_are_optimistic_and_the_projection_follows() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let s1 = new_order("o1", 1_000);
        assert_eq!(store.place(s1.clone(), None).await.unwrap(), Placement::Created);
        let ev = OrderEvent::StockReserved { reservation_id: "r".into(), total_minor: 10, currency: "EUR".into() };
        let s2 = s1.apply(&ev, Timestamp::from_millis(2_000)).unwrap();
        store.append(&s2, &ev).await.unwrap();
        // A second executor working from the same version loses.
        let err = store.append(&s2, &ev).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { version: 2, .. }), "{err}");
        let loaded = store.load("o1").await.unwrap().unwrap();
        assert_eq!(loaded, s2);
        let order = store.get("o1").await.unwrap().unwrap();
        assert_eq!(order, s2.to_order());
        assert_eq!(stage_of(&store, "o1").await.as_deref(), Some("STOCK_RESERVED"));
        assert_eq!(store.load("nope").await.unwrap(), None);
        assert_eq!(store.get("nope").await.unwrap(), None);
    }

    #[tokio::test]
    async fn idempotency_keys_find_the_first_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let key = |req: &str| Some(("k1".to_string(), req.to_string()));
        assert_eq!(store.place(new_order("o1", 1), key("A")).await.unwrap(), Placement::Created);
        assert_eq!(store.place(new_order("o2", 2), key("A")).await.unwrap(), Placement::Repeated("o1".into()));
        assert_eq!(store.place(new_order("o3", 3), key("B")).await.unwrap(), Placement::KeyReused);
        assert_eq!(store.list_all().await.unwrap().len(), 1, "a repeated key creates nothing");
    }

    #[tokio::test]
    async fn each_order_keeps_the_key_it_was_placed_under() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let key = Some(("k-1".to_string(), "A".to_string()));
        store.place(new_order("o1", 1), key.clone()).await.unwrap();
        store.place(new_order("o2", 2), None).await.unwrap();
        assert_eq!(store.place(new_order("o3", 3), key).await.unwrap(), Placement::Repeated("o1".into()));
        let keys: Vec<_> =
            store.list_all_keyed().await.unwrap().into_iter().map(|k| (k.order.id, k.idempotency_key)).collect();
        assert_eq!(keys, [("o1".to_string(), Some("k-1".to_string())), ("o2".to_string(), None)]);
        // Later events rewrite the projection row, never its key.
        let s = store.load("o1").await.unwrap().unwrap();
        let ev = OrderEvent::CompensationStarted { reason: "x".into(), in_doubt: false };
        store.append(&s.apply(&ev, Timestamp::from_millis(9)).unwrap(), &ev).await.unwrap();
        assert_eq!(store.list_all_keyed().await.unwrap()[0].idempotency_key.as_deref(), Some("k-1"));
    }

    #[tokio::test]
    async fn orders_placed_before_keys_were_projected_get_theirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("orders.db");
        let v1 = Db::open(&path, &MIGRATIONS[..1], Sync::Normal).unwrap();
        v1.write(|tx| {
            tx.execute_batch(
                "INSERT INTO orders (id, user_id, status, stage, items, version, created_at, updated_at)
                 VALUES ('o1', 'u1', 'PENDING', 'PLACED', '[]', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),
                        ('o2', 'u1', 'PENDING', 'PLACED', '[]', 1, '2026-01-01T00:00:01.000Z', '2026-01-01T00:00:01.000Z');
                 INSERT INTO idempotency_keys (key, request, order_id) VALUES ('old-key', 'A', 'o1');",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
        drop(v1);
        let keys: Vec<_> = Store::open(&path, Sync::Normal)
            .unwrap()
            .list_all_keyed()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.idempotency_key)
            .collect();
        assert_eq!(keys, [Some("old-key".to_string()), None]);
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    async fn the_duplicate_order_switch_places_a_second_order_under_a_used_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).with_breakage(Breakage::NONE.with(Switch::DuplicateOrder));
        let key = |req: &str| Some(("k1".to_string(), req.to_string()));
        assert_eq!(store.place(new_order("o1", 1), key("A")).await.unwrap(), Placement::Created);
        assert_eq!(store.place(new_order("o2", 2), key("A")).await.unwrap(), Placement::Created);
        assert_eq!(store.place(new_order("o3", 3), key("B")).await.unwrap(), Placement::KeyReused, "only repeats");
        let all = store.list_all_keyed().await.unwrap();
        let ids: Vec<_> = all.iter().map(|k| (k.order.id.as_str(), k.idempotency_key.as_deref())).collect();
        assert_eq!(ids, [("o1", Some("k1")), ("o2", Some("k1"))]);
    }

    #[tokio::test]
    async fn open_orders_are_the_pending_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            store.place(new_order(id, 1_000 + i as u64), None).await.unwrap();
        }
        let s = store.load("b").await.unwrap().unwrap();
        let ev = OrderEvent::CompensationStarted { reason: "x".into(), in_doubt: false };
        let s = s.apply(&ev, Timestamp::from_millis(5_000)).unwrap();
        store.append(&s, &ev).await.unwrap();
        let ev = OrderEvent::Cancelled { reason: "x".into() };
        let s = s.apply(&ev, Timestamp::from_millis(6_000)).unwrap();
        store.append(&s, &ev).await.unwrap();
        let open = store.open_orders(Timestamp::from_millis(10_000), 10).await.unwrap();
        assert_eq!(open, vec!["a".to_string(), "c".to_string()]);
        assert_eq!(store.open_orders(Timestamp::from_millis(1_000), 10).await.unwrap(), vec!["a".to_string()]);
        assert_eq!(store.open_orders(Timestamp::from_millis(10_000), 1).await.unwrap().len(), 1);
        let mine = store.list_by_user("u1", 2).await.unwrap();
        assert_eq!(mine.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["c", "b"]);
        assert_eq!(stage_of(&store, "b").await.as_deref(), Some("CANCELLED"));
    }
}
