//! The embedded SQLite metadata store (WAL mode, foreign keys on).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

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
        Self::connect(options, 8, true).await
    }

    /// A private in-memory database, for tests.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when SQLite cannot start.
    pub async fn open_in_memory() -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("sqlite: {e}")))?
            .foreign_keys(true);
        Self::connect(options, 1, false).await
    }

    async fn connect(options: SqliteConnectOptions, max: u32, file: bool) -> Result<Self, Error> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot {what} the metadata database: {e}"),
            )
        };
        // One connection first: it switches the file to WAL and migrates it alone.
        // Several connections opening a new file at once race for the journal-mode
        // change, and SQLite answers the loser "database is locked" without waiting.
        if file {
            let mut first = SqliteConnection::connect_with(&options)
                .await
                .map_err(|e| unavailable("open", &e))?;
            sqlx::migrate!("migrations/sqlite")
                .run(&mut first)
                .await
                .map_err(|e| unavailable("migrate", &e))?;
            first.close().await.map_err(|e| unavailable("open", &e))?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| unavailable("open", &e))?;
        if !file {
            // A private in-memory database lives in the pool's one connection.
            sqlx::migrate!("migrations/sqlite")
                .run(&pool)
                .await
                .map_err(|e| unavailable("migrate", &e))?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::TokenStore;

    #[tokio::test]
    async fn new_files_open_and_migrate_every_time() {
        // Opening a new file used to race pool connections for the WAL switch.
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(&dir.path().join("meta.sqlite"))
                .await
                .unwrap();
            store.setting_set("k", "v").await.unwrap();
            assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
            store.close().await;
        }
        let memory = SqliteStore::open_in_memory().await.unwrap();
        memory.setting_set("k", "w").await.unwrap();
        assert_eq!(memory.setting("k").await.unwrap().as_deref(), Some("w"));
    }
}
