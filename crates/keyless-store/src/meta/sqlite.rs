//! The embedded SQLite metadata store (WAL mode, foreign keys on).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use keyless_core::{Error, ErrorKind};

mod directory;
mod resources;
mod storage;
mod tokens;

/// The SQLite implementation of [`crate::MetaStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        Self::connect(options, 8).await
    }

    /// A private in-memory database, for tests.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when SQLite cannot start.
    pub async fn open_in_memory() -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("sqlite: {e}")))?
            .foreign_keys(true);
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, max: u32) -> Result<Self, Error> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot open the metadata database: {e}"),
                )
            })?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("cannot migrate the metadata database: {e}"),
                )
            })?;
        Ok(Self { pool })
    }

    /// Begins a transaction that will write. `BEGIN IMMEDIATE` takes SQLite's write
    /// lock up front, waiting (busy timeout) for other writers, instead of failing
    /// with "database is locked" when a read transaction later tries to write.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Converts a driver error at the boundary: constraint violations keep their
/// meaning, everything else is internal.
fn db_error(err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return Error::exists("a record with the same key exists already");
        }
        if db.is_foreign_key_violation() {
            return Error::not_found("a record this one refers to does not exist");
        }
    }
    Error::internal(format!("metadata store: {err}"))
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("metadata store holds a malformed {what}: {e}"))
}
