//! Accounts in SQLite. The unique index on `email_key` is what decides a duplicate
//! registration, so two concurrent registrations of one address cannot both succeed.

use shop_kit::db::sqlite::{self, params, OptionalExtension, Row, Transaction};

use shop_kit::db::{DbError, SingleWriter};
use shop_kit::Db;

use crate::domain::{Email, Name, User};

/// The schema, one migration per entry, applied once each in order.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE users (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        email         TEXT NOT NULL,
        email_key     TEXT NOT NULL,
        name          TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created_at    TEXT NOT NULL
    );
    CREATE UNIQUE INDEX users_email_key ON users (email_key);"];

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("an account with this email already exists")]
    DuplicateEmail,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlite::Error> for StoreError {
    fn from(e: sqlite::Error) -> Self {
        Self::Db(DbError::Sqlite(e))
    }
}

/// A user with the hash of their password, for login.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
}

/// The accounts table.
#[derive(Clone)]
pub struct UserStore {
    db: Db,
    writer: SingleWriter,
}

const USER_COLUMNS: &str = "id, email, name, created_at";

impl UserStore {
    /// The accounts table of `db` (already migrated with [`MIGRATIONS`]).
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

    /// Inserts a new account, or fails with [`StoreError::DuplicateEmail`].
    pub async fn insert(&self, email: &Email, name: &Name, password_hash: String) -> Result<User, StoreError> {
        let (email, key, name) = (email.as_str().to_string(), email.key().to_string(), name.as_str().to_string());
        let created_at = now_rfc3339();
        self.write(move |tx| {
            let inserted = tx.execute(
                "INSERT INTO users (email, email_key, name, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![email, key, name, password_hash, created_at],
            );
            match inserted {
                Ok(_) => Ok(User { id: tx.last_insert_rowid(), email, name, created_at }),
                Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateEmail),
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    /// True when an account uses this email key (a cheap early check; the unique index
    /// still decides under a race).
    pub async fn email_taken(&self, key: &str) -> Result<bool, DbError> {
        let key = key.to_string();
        self.db
            .read(move |c| {
                Ok(c.query_row("SELECT 1 FROM users WHERE email_key = ?1", [key], |_| Ok(())).optional()?.is_some())
            })
            .await
    }

    /// The user with this id.
    pub async fn get(&self, id: i64) -> Result<Option<User>, DbError> {
        self.db
            .read(move |c| {
                let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
                Ok(c.query_row(&sql, [id], user_from_row).optional()?)
            })
            .await
    }

    /// The account and password hash for an email key, for login.
    pub async fn credentials(&self, key: &str) -> Result<Option<Credentials>, DbError> {
        let key = key.to_string();
        self.db
            .read(move |c| {
                let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE email_key = ?1");
                Ok(c.query_row(&sql, [key], |r| Ok(Credentials { user: user_from_row(r)?, password_hash: r.get(4)? }))
                    .optional()?)
            })
            .await
    }

    /// The number of accounts.
    pub async fn count(&self) -> Result<i64, DbError> {
        self.db.read(|c| Ok(c.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)).await
    }
}

fn user_from_row(r: &Row<'_>) -> sqlite::Result<User> {
    Ok(User { id: r.get(0)?, email: r.get(1)?, name: r.get(2)?, created_at: r.get(3)? })
}

fn is_unique_violation(e: &sqlite::Error) -> bool {
    matches!(e.sqlite_error(), Some(f) if f.extended_code == sqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(shop_kit::platform::now()).to_string()
}
