//! One SQLite database per service: WAL mode, migrations at start-up, a connection pool.
//!
//! Durability: WAL with `synchronous=NORMAL` makes a committed transaction durable
//! against a crash of the process (`kill -9`): the commit has reached the WAL file in the
//! OS before `COMMIT` returns. Only a power loss could undo the last commits, which
//! `SHOP_DB_SYNC=full` prevents at the price of an fsync per commit.
//!
//! All database work runs on tokio's blocking pool ([`Db::read`], [`Db::write`]) so a
//! slow query never stalls the async workers; in a simulated cluster it runs inline on
//! the calling task instead ([`crate::platform::inline_db`]), where a blocking thread
//! would finish at a moment the simulator does not choose. The files stay real, one per
//! node, so a simulated crash keeps exactly what was committed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::rusqlite::{self, Connection, Transaction, TransactionBehavior};
use r2d2_sqlite::SqliteConnectionManager;

pub use r2d2_sqlite::rusqlite as sqlite;

/// A database failure, with the database it happened in.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open database {path}: {source}")]
    Open { path: PathBuf, source: r2d2::Error },
    #[error("migration {version} of {path} failed: {source}")]
    Migration { path: PathBuf, version: usize, source: rusqlite::Error },
    #[error("no database connection available: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database task failed: {0}")]
    Join(String),
}

/// How hard commits are pushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sync {
    /// Durable against a process crash (the default).
    Normal,
    /// Durable against power loss too.
    Full,
}

impl Sync {
    /// `SHOP_DB_SYNC`: `normal` (the default) or `full`, in any case.
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        match env.raw("SHOP_DB_SYNC").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None | Some("normal") => Ok(Self::Normal),
            Some("full") => Ok(Self::Full),
            Some(other) => Err(crate::config::ConfigError::Malformed {
                var: "SHOP_DB_SYNC".into(),
                value: other.into(),
                expected: "normal or full".into(),
            }),
        }
    }
}

/// A pooled SQLite database with its migrations applied.
#[derive(Clone)]
pub struct Db {
    pool: Pool<SqliteConnectionManager>,
    path: PathBuf,
    /// The queue of its [`SingleWriter`]s: one per opened database, shared by its clones.
    writer_turn: Arc<tokio::sync::Mutex<()>>,
}

/// Connections in a pool: SQLite serialises writers anyway, so a few serve readers.
const POOL_SIZE: u32 = 8;
/// How long a writer waits for the write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

impl Db {
    /// Opens (creating if needed) the database at `path` and applies `migrations`, each
    /// a SQL batch applied once, in order, tracked by `PRAGMA user_version`.
    pub fn open(path: &Path, migrations: &[&str], sync: Sync) -> Result<Self, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let sync_pragma = match sync {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        };
        let manager = SqliteConnectionManager::file(path).with_init(move |c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync_pragma}; PRAGMA foreign_keys=ON;"
            ))
        });
        let pool = Pool::builder()
            .max_size(POOL_SIZE)
            .connection_timeout(Duration::from_secs(10))
            .build(manager)
            .map_err(|source| DbError::Open { path: path.to_path_buf(), source })?;
        let db = Self { pool, path: path.to_path_buf(), writer_turn: Arc::default() };
        db.migrate(migrations)?;
        Ok(db)
    }

    fn migrate(&self, migrations: &[&str]) -> Result<(), DbError> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let current = usize::try_from(current).unwrap_or(0);
        for (i, sql) in migrations.iter().enumerate().skip(current) {
            let version = i + 1;
            tx.execute_batch(sql)
                .and_then(|_| tx.execute_batch(&format!("PRAGMA user_version = {version}")))
                .map_err(|source| DbError::Migration { path: self.path.clone(), version, source })?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a pooled connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let work = move || {
            let conn = pool.get()?;
            f(&conn)
        };
        if crate::platform::inline_db() {
            return work();
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| DbError::Join(e.to_string()))?
    }

    /// Runs `f` in a write transaction (`BEGIN IMMEDIATE`, so two writers never deadlock
    /// upgrading read locks); commits when `f` returns `Ok`, rolls back otherwise.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        let work = move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(DbError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(DbError::from)?;
            Ok(out)
        };
        if crate::platform::inline_db() {
            return work();
        }
        tokio::task::spawn_blocking(work).await.map_err(|e| E::from(DbError::Join(e.to_string())))?
    }

    /// True when a connection can be had and answers a query.
    pub async fn is_ready(&self) -> bool {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).await.is_ok()
    }

    /// Checkpoints the WAL into the main file; called on graceful shutdown so the
    /// database is left as one clean file.
    pub async fn close(&self) -> Result<(), DbError> {
        self.read(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }
}

/// A database whose writes this process makes one at a time, in the order they came:
/// waiting here is fair and wakes on time, where SQLite's busy handler sleeps and
/// retries, which stretches the latency tail under contention. Reads go straight to the
/// pool ([`SingleWriter::db`]).
///
/// There is one queue per opened [`Db`]: every `SingleWriter` made from it or from a clone
/// of it waits in the same line, so two parts of a service (orders' store and its outbox
/// relay) cannot write past each other by holding writers of their own.
#[derive(Clone)]
pub struct SingleWriter {
    db: Db,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl SingleWriter {
    /// The single-writer queue of `db` (the same queue for every clone of `db`).
    pub fn new(db: Db) -> Self {
        Self { turn: db.writer_turn.clone(), db }
    }

    /// The database, for reads.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Runs `f` in a write transaction (as [`Db::write`]) when every write queued before
    /// it has finished.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, E> + Send + 'static,
    {
        let _turn = self.turn.lock().await;
        self.db.write(f).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATIONS: &[&str] = &[
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        "ALTER TABLE t ADD COLUMN n INTEGER NOT NULL DEFAULT 0;",
    ];

    #[tokio::test]
    async fn migrations_apply_once_and_data_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.db");
        let db = Db::open(&path, MIGRATIONS, Sync::Normal).unwrap();
        db.write(|tx| Ok::<_, DbError>(tx.execute("INSERT INTO t (v, n) VALUES ('a', 1)", [])?)).await.unwrap();
        drop(db);
        let db = Db::open(&path, MIGRATIONS, Sync::Normal).unwrap();
        let (v, n): (String, i64) =
            db.read(|c| Ok(c.query_row("SELECT v, n FROM t", [], |r| Ok((r.get(0)?, r.get(1)?)))?)).await.unwrap();
        assert_eq!((v.as_str(), n), ("a", 1));
        let mode: String = db.read(|c| Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(mode, "wal");
        assert!(db.is_ready().await);
    }

    #[tokio::test]
    async fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("x.db"), MIGRATIONS, Sync::Normal).unwrap();
        let r: Result<(), DbError> = db
            .write(|tx| {
                tx.execute("INSERT INTO t (v) VALUES ('a')", [])?;
                tx.execute("INSERT INTO nope VALUES (1)", [])?;
                Ok(())
            })
            .await;
        assert!(r.is_err());
        let n: i64 = db.read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn bad_migration_names_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::open(&dir.path().join("x.db"), &["CREATE TABLE a (x);", "NOT SQL"], Sync::Normal).err().unwrap();
        assert!(err.to_string().contains("migration 2"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_single_writer_keeps_every_concurrent_write_and_rolls_back_a_failed_one() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SingleWriter::new(Db::open(&dir.path().join("w.db"), MIGRATIONS, Sync::Normal).unwrap());
        let writes = (0..16).map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                writer
                    .write(move |tx| {
                        tx.execute("INSERT INTO t (id, v) VALUES (?1, 'x')", [i])?;
                        Ok::<_, DbError>(())
                    })
                    .await
            })
        });
        for w in writes.collect::<Vec<_>>() {
            w.await.unwrap().unwrap();
        }
        let n: i64 = writer.db().read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(n, 16);
        let failed: Result<(), DbError> = writer
            .write(|tx| {
                tx.execute("INSERT INTO t (id, v) VALUES (100, 'y')", [])?;
                tx.execute("INSERT INTO t (id, v) VALUES (100, 'y')", [])?;
                Ok(())
            })
            .await;
        assert!(failed.is_err());
        let n: i64 = writer.db().read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)).await.unwrap();
        assert_eq!(n, 16, "a failed write is rolled back whole");
    }

    #[test]
    fn writers_of_one_database_share_its_queue() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("w.db"), MIGRATIONS, Sync::Normal).unwrap();
        let (a, b) = (SingleWriter::new(db.clone()), SingleWriter::new(db));
        assert!(Arc::ptr_eq(&a.turn, &b.turn));
        let other = SingleWriter::new(Db::open(&dir.path().join("v.db"), MIGRATIONS, Sync::Normal).unwrap());
        assert!(!Arc::ptr_eq(&a.turn, &other.turn));
    }
}
