//! The PostgreSQL metadata store: the same records as the SQLite store, for
//! several servers sharing one database.
//!
//! Every method runs as one statement or one transaction on a pooled
//! connection; PostgreSQL orders concurrent writers itself (row locks, and
//! `SELECT … FOR UPDATE` where a write reads what it replaces), so there is no
//! writer task and no row cache here: a row read is the row another server wrote.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Transaction};

use keyless_core::{Error, ErrorKind};

use crate::meta::rows::db_error;

mod directory;
mod logs;
#[cfg(test)]
mod races;
mod registry;
mod resources;
mod retained;
mod storage;
mod tokens;
mod vault;

pub use logs::{LogQuery, LogRow};

/// The PostgreSQL implementation of [`crate::MetaStore`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db?…`) and
    /// migrates it. Several servers may do so at once: the migrator takes an
    /// advisory lock.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] for a URL that is not PostgreSQL's;
    /// [`ErrorKind::Unavailable`] when the database cannot be reached or migrated.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options: PgConnectOptions = url.parse().map_err(|e| {
            Error::invalid(format!("`{}` is not a PostgreSQL URL: {e}", redact(url)))
        })?;
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot {what} the metadata database {}: {e}", redact(url)),
            )
        };
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| unavailable("reach", &e))?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| unavailable("migrate", &e))?;
        Ok(Self { pool })
    }

    /// Creates a new, empty database on the server `server_url` names (its user
    /// must be allowed to create databases) and connects to it: for tests and
    /// benchmarks that want a store of their own.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`], and when the database cannot be created.
    pub async fn connect_fresh(server_url: &str) -> Result<Self, Error> {
        let unavailable = |e: &dyn std::fmt::Display| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot create a database on {}: {e}", redact(server_url)),
            )
        };
        let name = format!("keyless_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(server_url)
            .await
            .map_err(|e| unavailable(&e))?;
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await
            .map_err(|e| unavailable(&e))?;
        let mut url = url::Url::parse(server_url).map_err(|e| unavailable(&e))?;
        url.set_path(&name);
        Self::connect(url.as_str()).await
    }

    /// The connection pool, for the change feed and for tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Begins a transaction.
    async fn begin(&self) -> Result<Transaction<'static, Postgres>, Error> {
        self.pool.begin().await.map_err(db_error)
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The channel of the change feed.
pub const CHANGES: &str = "keyless_changes";

#[async_trait::async_trait]
impl crate::meta::ChangeFeed for PostgresStore {
    async fn announce(&self, change: &str) -> Result<(), Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGES)
            .bind(change)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}

impl PostgresStore {
    /// A connection listening to the change feed. It reconnects by itself when the
    /// connection drops; what was announced meanwhile is lost, which
    /// [`PgListener::try_recv`] reports as `Ok(None)`.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the database cannot be reached.
    pub async fn listen(&self) -> Result<PgListener, Error> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot follow the change feed: {e}"),
            )
        })?;
        listener.listen(CHANGES).await.map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("cannot follow the change feed: {e}"),
            )
        })?;
        Ok(listener)
    }
}

/// A database URL fit for a message or a log: the password left out.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}
