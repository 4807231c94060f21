//! The ledger in SQLite.
//!
//! A charge is decided and recorded in one write transaction that first looks its
//! idempotency key up; writers are serialised (`BEGIN IMMEDIATE`) and the key has a
//! unique index, so concurrent retries of one key can never charge twice. The schema
//! refuses partial or excess refunds and a declined charge without a reason.

use shop_kit::breakage::{Breakage, Switch};
use shop_kit::db::sqlite::{self, params, OptionalExtension, Row, Transaction};

use shop_kit::db::{DbError, SingleWriter};
use shop_kit::Db;

use crate::domain::{
    ByStatus, Charge, ChargeRequest, ChargeStatus, DeclineRule, IdempotencyKey, LedgerSummary, OrderRef,
};

/// The schema, one migration per entry, applied once each in order.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE charges (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        idempotency_key  TEXT NOT NULL,
        fingerprint      TEXT NOT NULL,
        order_id         TEXT NOT NULL,
        order_id_numeric INTEGER NOT NULL,
        amount_minor     INTEGER NOT NULL CHECK (amount_minor > 0),
        currency         TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('captured', 'refunded', 'declined')),
        refunded_minor   INTEGER NOT NULL DEFAULT 0,
        decline_reason   TEXT,
        created_at       TEXT NOT NULL,
        CHECK ((status = 'refunded') = (refunded_minor = amount_minor)),
        CHECK (refunded_minor IN (0, amount_minor)),
        CHECK ((status = 'declined') = (decline_reason IS NOT NULL))
    );
    CREATE UNIQUE INDEX charges_key ON charges (idempotency_key);
    CREATE INDEX charges_order ON charges (order_id);"];

/// Why a store operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the idempotency key was used for charge {0} with a different body")]
    KeyReused(i64),
    #[error("no charge with id {0}")]
    UnknownCharge(i64),
    #[error("charge {id} is {status} and cannot be refunded")]
    WrongState { id: i64, status: &'static str },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlite::Error> for StoreError {
    fn from(e: sqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// Whether a charge request made a new charge (captured or declined) or found the one
/// its key made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Charged {
    New(Charge),
    Existing(Charge),
}

impl Charged {
    /// The charge, new or found.
    pub fn charge(&self) -> &Charge {
        match self {
            Self::New(c) | Self::Existing(c) => c,
        }
    }
}

/// A charge with the key that made it, for the admin state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KeyedCharge {
    #[serde(flatten)]
    pub charge: Charge,
    pub idempotency_key: String,
}

/// The charges table.
#[derive(Clone)]
pub struct LedgerStore {
    db: Db,
    writer: SingleWriter,
    breakage: Breakage,
}

const CHARGE_COLUMNS: &str =
    "id, order_id, order_id_numeric, amount_minor, currency, status, refunded_minor, created_at, decline_reason";

impl LedgerStore {
    /// The ledger of `db` (already migrated with [`MIGRATIONS`]).
    pub fn new(db: Db) -> Self {
        Self { writer: SingleWriter::new(db.clone()), db, breakage: Breakage::NONE }
    }

    /// The same ledger with the break switches `breakage` (debug builds only):
    /// [`Switch::SkipIdempotency`] makes a repeated key charge again, so the harness can
    /// show that its money checker catches a double charge.
    pub fn with_breakage(self, breakage: Breakage) -> Self {
        Self { breakage, ..self }
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

    /// Charges `request` under `key`, once: the decline rule decides a new charge; a key
    /// seen before with the same request answers the charge it made, with another
    /// request `KeyReused`.
    pub async fn charge(
        &self,
        key: IdempotencyKey,
        request: ChargeRequest,
        rule: DeclineRule,
    ) -> Result<Charged, StoreError> {
        let skip_idempotency = self.breakage.is_broken(Switch::SkipIdempotency);
        self.write(move |tx| charge_in(tx, &key, &request, rule, skip_idempotency)).await
    }

    /// The charge with this id.
    pub async fn get(&self, id: i64) -> Result<Option<Charge>, DbError> {
        self.db
            .read(move |c| {
                let sql = format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = ?1");
                Ok(c.query_row(&sql, [id], charge_from_row).optional()?)
            })
            .await
    }

    /// The charges of an order (matched on its id as text), oldest first.
    pub async fn by_order(&self, order_id: String) -> Result<Vec<Charge>, DbError> {
        self.db
            .read(move |c| {
                let sql = format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE order_id = ?1 ORDER BY id");
                Ok(c.prepare(&sql)?.query_map([order_id], charge_from_row)?.collect::<Result<_, _>>()?)
            })
            .await
    }

    /// Refunds a captured charge in full; a repeat is a no-op, a declined one a conflict.
    pub async fn refund(&self, id: i64) -> Result<Charge, StoreError> {
        self.write(move |tx| {
            let sql = format!("SELECT {CHARGE_COLUMNS} FROM charges WHERE id = ?1");
            let mut charge =
                tx.query_row(&sql, [id], charge_from_row).optional()?.ok_or(StoreError::UnknownCharge(id))?;
            match charge.status {
                ChargeStatus::Refunded => return Ok(charge),
                ChargeStatus::Declined => return Err(StoreError::WrongState { id, status: "declined" }),
                ChargeStatus::Captured => {}
            }
            tx.execute("UPDATE charges SET status = 'refunded', refunded_minor = amount_minor WHERE id = ?1", [id])?;
            charge.status = ChargeStatus::Refunded;
            charge.refunded_minor = charge.amount_minor;
            Ok(charge)
        })
        .await
    }

    /// Totals and counts over the whole ledger.
    pub async fn summary(&self) -> Result<LedgerSummary, DbError> {
        self.db.read(|c| Ok(summary_of(c)?)).await
    }

    /// Every charge with its key, and the summary, read in one snapshot.
    pub async fn state(&self) -> Result<(Vec<KeyedCharge>, LedgerSummary), DbError> {
        self.db
            .read(|c| {
                let tx = c.unchecked_transaction()?;
                let sql = format!("SELECT {CHARGE_COLUMNS}, idempotency_key FROM charges ORDER BY id");
                let charges = tx
                    .prepare(&sql)?
                    .query_map([], |r| Ok(KeyedCharge { charge: charge_from_row(r)?, idempotency_key: r.get(9)? }))?
                    .collect::<Result<_, _>>()?;
                let summary = summary_of(&tx)?;
                tx.finish()?;
                Ok((charges, summary))
            })
            .await
    }
}

fn charge_in(
    tx: &Transaction<'_>,
    key: &IdempotencyKey,
    request: &ChargeRequest,
    rule: DeclineRule,
    skip_idempotency: bool,
) -> Result<Charged, StoreError> {
    let fingerprint = request.fingerprint();
    if skip_idempotency {
        // The deliberately broken build: no lookup, no unique index; a key charges again.
        tx.execute_batch("DROP INDEX IF EXISTS charges_key")?;
    } else if let Some(existing) = by_key(tx, key, &fingerprint)? {
        return Ok(Charged::Existing(existing));
    }
    let decline_reason = rule.judge(request);
    let status = if decline_reason.is_some() { ChargeStatus::Declined } else { ChargeStatus::Captured };
    let created_at = humantime::format_rfc3339_millis(shop_kit::platform::now()).to_string();
    let inserted = tx.execute(
        "INSERT INTO charges (idempotency_key, fingerprint, order_id, order_id_numeric, amount_minor, currency, status,
                              decline_reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            key.as_str(),
            fingerprint,
            request.order_id.as_text(),
            request.order_id.is_number(),
            request.amount.get(),
            request.currency.as_str(),
            status.as_str(),
            decline_reason,
            created_at,
        ],
    );
    match inserted {
        Ok(_) => {}
        // Only if writers were ever not serialised: the index decides, the winner answers.
        Err(e) if is_unique_violation(&e) => {
            return by_key(tx, key, &fingerprint)?.map(Charged::Existing).ok_or(StoreError::Db(DbError::Sqlite(e)));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Charged::New(Charge {
        id: tx.last_insert_rowid(),
        order_id: request.order_id.clone(),
        amount_minor: request.amount.get(),
        currency: request.currency.as_str().into(),
        status,
        refunded_minor: 0,
        created_at,
        decline_reason,
    }))
}

/// The charge `key` made, if any; `KeyReused` if it was made for another request.
fn by_key(tx: &Transaction<'_>, key: &IdempotencyKey, fingerprint: &str) -> Result<Option<Charge>, StoreError> {
    let sql = format!("SELECT {CHARGE_COLUMNS}, fingerprint FROM charges WHERE idempotency_key = ?1");
    let found = tx.query_row(&sql, [key.as_str()], |r| Ok((charge_from_row(r)?, r.get::<_, String>(9)?))).optional()?;
    match found {
        Some((charge, earlier)) if earlier == fingerprint => Ok(Some(charge)),
        Some((charge, _)) => Err(StoreError::KeyReused(charge.id)),
        None => Ok(None),
    }
}

fn summary_of(c: &sqlite::Connection) -> sqlite::Result<LedgerSummary> {
    c.query_row(
        "SELECT coalesce(sum(CASE WHEN status IN ('captured', 'refunded') THEN amount_minor END), 0),
                coalesce(sum(refunded_minor), 0),
                coalesce(sum(status = 'captured'), 0),
                coalesce(sum(status = 'refunded'), 0),
                coalesce(sum(status = 'declined'), 0)
         FROM charges",
        [],
        |r| {
            let (captured_minor, refunded_minor): (i64, i64) = (r.get(0)?, r.get(1)?);
            Ok(LedgerSummary {
                captured_minor,
                refunded_minor,
                net_minor: captured_minor - refunded_minor,
                by_status: ByStatus { captured: r.get(2)?, refunded: r.get(3)?, declined: r.get(4)? },
            })
        },
    )
}

fn charge_from_row(r: &Row<'_>) -> sqlite::Result<Charge> {
    let status: String = r.get(5)?;
    let status = ChargeStatus::parse(&status).ok_or_else(|| {
        sqlite::Error::FromSqlConversionFailure(5, sqlite::types::Type::Text, format!("unknown status {status}").into())
    })?;
    Ok(Charge {
        id: r.get(0)?,
        order_id: OrderRef::from_stored(r.get(1)?, r.get(2)?),
        amount_minor: r.get(3)?,
        currency: r.get(4)?,
        status,
        refunded_minor: r.get(6)?,
        created_at: r.get(7)?,
        decline_reason: r.get(8)?,
    })
}

fn is_unique_violation(e: &sqlite::Error) -> bool {
    matches!(e.sqlite_error(), Some(f) if f.extended_code == sqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}
