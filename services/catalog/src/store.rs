//! Products, stock and reservations in SQLite.
//!
//! Every change to stock happens inside one write transaction (`BEGIN IMMEDIATE`, so
//! writers are serialised), and the schema itself refuses negative stock and any row
//! where `initial_stock != available + reserved + sold`: a bug becomes a failed
//! transaction, never a wrong number. The unique index on the idempotency key means a
//! key can hold stock at most once, even if two requests with it race.

use std::collections::BTreeMap;

use shop_kit::db::sqlite::{self, params, OptionalExtension, Row, Transaction};
use shop_kit::db::{DbError, SingleWriter};
use shop_kit::money::Minor;
use shop_kit::Db;

use crate::domain::{
    IdempotencyKey, NewProduct, OrderRef, Product, Reservation, ReservationRequest, ReservationStatus, ReservedItem,
    StockLevel,
};

/// The schema, one migration per entry, applied once each in order.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE products (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        sku           TEXT NOT NULL UNIQUE,
        name          TEXT NOT NULL,
        price_minor   INTEGER NOT NULL CHECK (price_minor > 0),
        currency      TEXT NOT NULL,
        initial_stock INTEGER NOT NULL CHECK (initial_stock >= 0),
        available     INTEGER NOT NULL CHECK (available >= 0),
        reserved      INTEGER NOT NULL CHECK (reserved >= 0),
        sold          INTEGER NOT NULL CHECK (sold >= 0),
        CHECK (initial_stock = available + reserved + sold)
    );
    CREATE TABLE reservations (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key  TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        order_id         TEXT NOT NULL,
        order_id_numeric INTEGER NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('held', 'committed', 'released')),
        total_minor      INTEGER NOT NULL CHECK (total_minor >= 0),
        currency         TEXT NOT NULL
    );
    CREATE UNIQUE INDEX reservations_key ON reservations (idempotency_key);
    CREATE TABLE reservation_items (
        reservation_id   INTEGER NOT NULL REFERENCES reservations (id),
        line             INTEGER NOT NULL,
        product_id       INTEGER NOT NULL REFERENCES products (id),
        quantity         INTEGER NOT NULL CHECK (quantity > 0),
        unit_price_minor INTEGER NOT NULL,
        PRIMARY KEY (reservation_id, line)
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"];

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no product with id {0}")]
    UnknownProduct(i64),
    #[error("product {product_id}: {requested} requested, {available} available")]
    OutOfStock { product_id: i64, requested: i64, available: i64 },
    #[error("the items are priced in different currencies ({0} and {1}); reserve them separately")]
    MixedCurrencies(String, String),
    #[error("the reservation total overflows")]
    TotalTooLarge,
    #[error("the idempotency key was used for reservation {0} with a different body")]
    KeyReused(i64),
    #[error("no reservation with id {0}")]
    UnknownReservation(i64),
    #[error("reservation {id} is {status}")]
    WrongState { id: i64, status: &'static str },
    #[error("a product with SKU {0} already exists")]
    DuplicateSku(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlite::Error> for StoreError {
    fn from(e: sqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// Whether a reservation request made a new reservation or found the one its key made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    New(Reservation),
    Existing(Reservation),
}

/// A page of products.
#[derive(Clone, Debug)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub total: i64,
}

/// How the sample product set is made on first start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seed {
    pub products: i64,
    pub stock_each: i64,
}

impl Seed {
    /// The price of seeded product `id`, in EUR minor units.
    pub fn price_of(id: i64) -> i64 {
        (id * 137) % 9000 + 100
    }
}

/// The catalog's tables.
#[derive(Clone)]
pub struct CatalogStore {
    db: Db,
    writer: SingleWriter,
}

const PRODUCT_COLUMNS: &str = "id, sku, name, price_minor, currency, available";

impl CatalogStore {
    /// The catalog tables of `db` (already migrated with [`MIGRATIONS`]).
    pub fn new(db: Db) -> Self {
        Self { writer: SingleWriter::new(db.clone()), db }
    }

    /// Runs `f` in a write transaction, one writer of this process at a time (the kit's
    /// [`SingleWriter`]).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.writer.write(f).await
    }

    /// Creates the seed products (ids 1..=n) unless this database was seeded before.
    /// Returns whether it seeded now.
    pub async fn seed_once(&self, seed: Seed) -> Result<bool, StoreError> {
        self.write(move |tx| {
            let seeded = tx.query_row("SELECT 1 FROM meta WHERE key = 'seeded'", [], |_| Ok(())).optional()?;
            if seeded.is_some() {
                return Ok(false);
            }
            let mut insert = tx.prepare(
                "INSERT INTO products (id, sku, name, price_minor, currency, initial_stock, available, reserved, sold)
                     VALUES (?1, ?2, ?3, ?4, 'EUR', ?5, ?5, 0, 0)",
            )?;
            for id in 1..=seed.products {
                let (sku, name) = (format!("SKU-{id:05}"), format!("Sample product {id}"));
                insert.execute(params![id, sku, name, Seed::price_of(id), seed.stock_each])?;
            }
            tx.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?1)", [seed.products.to_string()])?;
            Ok(true)
        })
        .await
    }

    /// Products ordered by id.
    pub async fn list(&self, limit: i64, offset: i64) -> Result<ProductPage, DbError> {
        self.db
            .read(move |c| {
                let tx = c.unchecked_transaction()?;
                let total = tx.query_row("SELECT count(*) FROM products", [], |r| r.get(0))?;
                let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY id LIMIT ?1 OFFSET ?2");
                let items =
                    tx.prepare(&sql)?.query_map([limit, offset], product_from_row)?.collect::<Result<_, _>>()?;
                tx.finish()?;
                Ok(ProductPage { items, total })
            })
            .await
    }

    /// The product with this id.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, DbError> {
        self.db
            .read(move |c| {
                let sql = format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?1");
                Ok(c.query_row(&sql, [id], product_from_row).optional()?)
            })
            .await
    }

    /// Creates a product whose SKU is new.
    pub async fn create_product(&self, p: NewProduct) -> Result<Product, StoreError> {
        self.write(move |tx| {
            let inserted = tx.execute(
                "INSERT INTO products (sku, name, price_minor, currency, initial_stock, available, reserved, sold)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5, 0, 0)",
                params![p.sku, p.name, p.price.get(), p.currency.as_str(), p.stock],
            );
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateSku(p.sku)),
                Err(e) => return Err(e.into()),
            }
            Ok(Product {
                id: tx.last_insert_rowid(),
                sku: p.sku,
                name: p.name,
                price_minor: p.price.get(),
                currency: p.currency.as_str().into(),
                stock: p.stock,
            })
        })
        .await
    }

    /// Holds stock for `request` under `key`, all lines or none. A key seen before with
    /// the same request answers the reservation it made; with another, `KeyReused`.
    pub async fn reserve(&self, key: IdempotencyKey, request: ReservationRequest) -> Result<Reserved, StoreError> {
        self.write(move |tx| reserve_in(tx, &key, &request)).await
    }

    /// The reservation with this id, with its items.
    pub async fn reservation(&self, id: i64) -> Result<Option<Reservation>, DbError> {
        self.db.read(move |c| Ok(load_reservation(c, id)?)).await
    }

    /// Turns held units into sold ones; a repeat is a no-op, a released one a conflict.
    pub async fn commit(&self, id: i64) -> Result<Reservation, StoreError> {
        self.write(move |tx| settle(tx, id, ReservationStatus::Committed)).await
    }

    /// Returns held units to available; a repeat is a no-op, a committed one a conflict.
    pub async fn release(&self, id: i64) -> Result<Reservation, StoreError> {
        self.write(move |tx| settle(tx, id, ReservationStatus::Released)).await
    }

    /// Every product's stock levels and every reservation, read in one snapshot.
    pub async fn state(&self) -> Result<(Vec<StockLevel>, Vec<Reservation>), DbError> {
        self.db
            .read(|c| {
                let tx = c.unchecked_transaction()?;
                let levels = tx
                    .prepare("SELECT id, initial_stock, available, reserved, sold FROM products ORDER BY id")?
                    .query_map([], |r| {
                        Ok(StockLevel {
                            id: r.get(0)?,
                            initial_stock: r.get(1)?,
                            available: r.get(2)?,
                            reserved: r.get(3)?,
                            sold: r.get(4)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                let reservations = load_all_reservations(&tx)?;
                tx.finish()?;
                Ok((levels, reservations))
            })
            .await
    }
}

fn reserve_in(
    tx: &Transaction<'_>,
    key: &IdempotencyKey,
    request: &ReservationRequest,
) -> Result<Reserved, StoreError> {
    let fingerprint = request.fingerprint();
    let earlier = tx
        .query_row("SELECT id, fingerprint FROM reservations WHERE idempotency_key = ?1", [key.as_str()], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?;
    if let Some((id, earlier_fingerprint)) = earlier {
        if earlier_fingerprint != fingerprint {
            return Err(StoreError::KeyReused(id));
        }
        let existing = load_reservation(tx, id)?.ok_or(StoreError::UnknownReservation(id))?;
        return Ok(Reserved::Existing(existing));
    }

    let demand = request.demand();
    let mut prices = BTreeMap::new();
    let mut currency: Option<String> = None;
    for &(product_id, _) in &demand {
        let (price, cur): (i64, String) = tx
            .query_row("SELECT price_minor, currency FROM products WHERE id = ?1", [product_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?
            .ok_or(StoreError::UnknownProduct(product_id))?;
        match &currency {
            Some(c) if *c != cur => return Err(StoreError::MixedCurrencies(c.clone(), cur)),
            _ => currency = Some(cur),
        }
        prices.insert(product_id, price);
    }
    for &(product_id, requested) in &demand {
        let held = tx.execute(
            "UPDATE products SET available = available - ?1, reserved = reserved + ?1 WHERE id = ?2 AND available >= ?1",
            [requested, product_id],
        )?;
        if held == 0 {
            let available = tx.query_row("SELECT available FROM products WHERE id = ?1", [product_id], |r| r.get(0))?;
            return Err(StoreError::OutOfStock { product_id, requested, available });
        }
    }

    let items: Vec<ReservedItem> = request
        .lines
        .iter()
        .map(|l| ReservedItem {
            product_id: l.product_id,
            quantity: l.quantity,
            unit_price_minor: prices[&l.product_id],
        })
        .collect();
    let total = line_total(&items).ok_or(StoreError::TotalTooLarge)?;
    let currency = currency.expect("a parsed request has at least one item");
    tx.execute(
        "INSERT INTO reservations (idempotency_key, fingerprint, order_id, order_id_numeric, status, total_minor, currency)
         VALUES (?1, ?2, ?3, ?4, 'held', ?5, ?6)",
        params![key.as_str(), fingerprint, request.order_id.as_text(), request.order_id.is_number(), total, currency],
    )?;
    let id = tx.last_insert_rowid();
    let mut insert_item = tx.prepare(
        "INSERT INTO reservation_items (reservation_id, line, product_id, quantity, unit_price_minor) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for (line, item) in items.iter().enumerate() {
        insert_item.execute(params![id, line as i64, item.product_id, item.quantity, item.unit_price_minor])?;
    }
    Ok(Reserved::New(Reservation {
        id,
        order_id: request.order_id.clone(),
        status: ReservationStatus::Held,
        items,
        total_minor: total,
        currency,
    }))
}

fn line_total(items: &[ReservedItem]) -> Option<i64> {
    let lines = items.iter().map(|i| {
        let quantity = u32::try_from(i.quantity).ok()?;
        Minor::from_stored(i.unit_price_minor).times(quantity).ok()
    });
    Minor::sum(lines.collect::<Option<Vec<_>>>()?).ok().map(Minor::get)
}

/// Moves a held reservation to `target` (committed or released) and its units with it.
fn settle(tx: &Transaction<'_>, id: i64, target: ReservationStatus) -> Result<Reservation, StoreError> {
    let mut reservation = load_reservation(tx, id)?.ok_or(StoreError::UnknownReservation(id))?;
    match reservation.status {
        s if s == target => return Ok(reservation),
        ReservationStatus::Held => {}
        other => return Err(StoreError::WrongState { id, status: other.as_str() }),
    }
    let move_units = match target {
        ReservationStatus::Committed => "UPDATE products SET reserved = reserved - ?1, sold = sold + ?1 WHERE id = ?2",
        ReservationStatus::Released => {
            "UPDATE products SET reserved = reserved - ?1, available = available + ?1 WHERE id = ?2"
        }
        ReservationStatus::Held => unreachable!("a reservation is never settled back to held"),
    };
    for item in &reservation.items {
        tx.execute(move_units, [item.quantity, item.product_id])?;
    }
    tx.execute("UPDATE reservations SET status = ?1 WHERE id = ?2", params![target.as_str(), id])?;
    reservation.status = target;
    Ok(reservation)
}

const RESERVATION_COLUMNS: &str = "id, order_id, order_id_numeric, status, total_minor, currency";

fn load_reservation(c: &sqlite::Connection, id: i64) -> sqlite::Result<Option<Reservation>> {
    let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations WHERE id = ?1");
    let Some(mut reservation) = c.query_row(&sql, [id], reservation_from_row).optional()? else {
        return Ok(None);
    };
    reservation.items = c
        .prepare(
            "SELECT product_id, quantity, unit_price_minor FROM reservation_items WHERE reservation_id = ?1 ORDER BY line",
        )?
        .query_map([id], item_from_row)?
        .collect::<Result<_, _>>()?;
    Ok(Some(reservation))
}

fn load_all_reservations(c: &sqlite::Connection) -> sqlite::Result<Vec<Reservation>> {
    let sql = format!("SELECT {RESERVATION_COLUMNS} FROM reservations ORDER BY id");
    let mut reservations: Vec<Reservation> =
        c.prepare(&sql)?.query_map([], reservation_from_row)?.collect::<Result<_, _>>()?;
    let index: BTreeMap<i64, usize> = reservations.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let mut stmt = c.prepare(
        "SELECT reservation_id, product_id, quantity, unit_price_minor FROM reservation_items ORDER BY reservation_id, line",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let reservation_id: i64 = row.get(0)?;
        let item = ReservedItem { product_id: row.get(1)?, quantity: row.get(2)?, unit_price_minor: row.get(3)? };
        if let Some(&i) = index.get(&reservation_id) {
            reservations[i].items.push(item);
        }
    }
    Ok(reservations)
}

fn product_from_row(r: &Row<'_>) -> sqlite::Result<Product> {
    Ok(Product {
        id: r.get(0)?,
        sku: r.get(1)?,
        name: r.get(2)?,
        price_minor: r.get(3)?,
        currency: r.get(4)?,
        stock: r.get(5)?,
    })
}

fn reservation_from_row(r: &Row<'_>) -> sqlite::Result<Reservation> {
    let status: String = r.get(3)?;
    let status = ReservationStatus::parse(&status).ok_or_else(|| {
        sqlite::Error::FromSqlConversionFailure(3, sqlite::types::Type::Text, format!("unknown status {status}").into())
    })?;
    Ok(Reservation {
        id: r.get(0)?,
        order_id: OrderRef::from_stored(r.get(1)?, r.get(2)?),
        status,
        items: Vec::new(),
        total_minor: r.get(4)?,
        currency: r.get(5)?,
    })
}

fn item_from_row(r: &Row<'_>) -> sqlite::Result<ReservedItem> {
    Ok(ReservedItem { product_id: r.get(0)?, quantity: r.get(1)?, unit_price_minor: r.get(2)? })
}

fn is_unique_violation(e: &sqlite::Error) -> bool {
    matches!(e.sqlite_error(), Some(f) if f.extended_code == sqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}
