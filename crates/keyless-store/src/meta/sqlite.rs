//! The embedded SQLite metadata store (WAL mode, foreign keys on).

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection, SqlitePool};

use keyless_core::{Error, ErrorKind};

use crate::meta::rows::db_error;

mod cache;
mod direct;
mod directory;
mod listed;
mod paths;
mod registry;
mod resources;
mod retained;
mod storage;
mod tokens;
mod vault;
mod writer;

use cache::RowCache;
use writer::Writer;

/// The SQLite implementation of [`crate::MetaStore`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: std::sync::Arc<Writer>,
    cache: std::sync::Arc<RowCache>,
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
            // Prefix listings use LIKE, which must not fold `A` into `a`.
            .pragma("case_sensitive_like", "ON")
            .busy_timeout(writer::BUSY_TIMEOUT)
            // A listing's 1,000 rows come from the connection's thread with few
            // hand-offs (each wakes the reading task) instead of one per 50.
            .row_buffer_size(1024);
        Self::connect(options, 8).await
    }

    async fn connect(options: SqliteConnectOptions, readers: u32) -> Result<Self, Error> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot {what} the metadata database: {e}"),
            )
        };
        // The writing connection first: it switches the file to WAL and migrates it
        // alone. Several connections opening a new file at once race for the
        // journal-mode change, and SQLite answers the loser "database is locked"
        // without waiting.
        let mut first = SqliteConnection::connect_with(&options)
            .await
            .map_err(|e| unavailable("open", &e))?;
        sqlx::migrate!("migrations/sqlite")
            .run(&mut first)
            .await
            .map_err(|e| unavailable("migrate", &e))?;
        // The writer syncs the WAL itself after each commit (see `writer`).
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut first)
            .await
            .map_err(|e| unavailable("configure", &e))?;
        let wal = wal_file(options.get_filename()).map_err(|e| unavailable("open", &e))?;
        let direct =
            direct_connection(options.get_filename()).map_err(|e| unavailable("open", &e))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(readers)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(|e| unavailable("open", &e))?;
        Ok(Self {
            pool,
            writer: std::sync::Arc::new(Writer::new(first, direct, wal)),
            cache: std::sync::Arc::new(RowCache::new()),
        })
    }

    /// Begins a transaction that will write. `BEGIN IMMEDIATE` takes SQLite's write
    /// lock up front, waiting (busy timeout) for other writers, instead of failing
    /// with "database is locked" when a read transaction later tries to write.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Commits what is pending and closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.writer.flush().await;
        self.pool.close().await;
    }
}

/// One server per SQLite file (the data dir is locked): nobody to tell.
impl crate::meta::ChangeFeed for SqliteStore {}

/// The writer's second connection (see `writer`), set up as sqlx sets up the
/// first: the file is in WAL mode already, and the writer syncs the WAL itself.
fn direct_connection(db: &Path) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(db)?;
    // Its statements run in a task's thread, which must not sleep waiting for
    // the file's write lock (see `writer`).
    conn.busy_timeout(Duration::ZERO)?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = ON; PRAGMA synchronous = NORMAL;",
    )?;
    Ok(conn)
}

/// The database's WAL file, which exists while a connection in WAL mode is open.
fn wal_file(db: &Path) -> std::io::Result<std::fs::File> {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    std::fs::File::open(name)
}

#[cfg(test)]
mod tests;
