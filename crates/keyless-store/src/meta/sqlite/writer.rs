//! One writing connection with group commit.
//!
//! SQLite has one writer at a time, and a durable commit costs an fsync of the
//! WAL. Writers that take turns on pool connections also meet SQLite's busy
//! handler, which sleeps for milliseconds at a time. Here every write runs on one
//! connection, in arrival order (the mutex is fair), inside a savepoint of a shared
//! transaction; a committer task then commits everything that ran since the last
//! commit with one fsync. A write returns only after the commit that made it
//! durable, so an acknowledged write is never lost, and a write that fails rolls
//! back its savepoint without touching the others of its batch.
//!
//! The sync is taken out of SQLite's hands: the writing connection runs with
//! `synchronous = NORMAL`, so `COMMIT` only appends the batch to the WAL, and the
//! committer then syncs the WAL file itself, with the connection already free for
//! the next batch. A batch's writes are acknowledged after that sync. Batches thus
//! overlap: one executes while the one before it reaches the disk.
//!
//! A write whose task is cancelled midway leaves its savepoint open; the next
//! holder of the connection then rolls the whole batch back and its members fail
//! (a cancelled request is rare and costs its batch a retry, never a wrong commit).

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};

use sqlx::{Executor, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard, mpsc, watch};

use keyless_core::{Error, ErrorKind};

use super::db_error;

/// How a batch ended: `None` while it is open.
type Outcome = Option<Result<(), String>>;

pub(super) struct Writer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

struct Inner {
    state: Mutex<State>,
    commits: mpsc::UnboundedSender<()>,
}

struct State {
    conn: SqliteConnection,
    /// A transaction is open.
    open: bool,
    /// A write began its savepoint and has not finished it.
    dirty: bool,
    /// The last write succeeded and its savepoint is still open: the next write
    /// (or the commit) releases it, saving a round trip.
    held: bool,
    /// The current write's savepoint is not known to be open yet: its first query
    /// has not succeeded. If the write fails now, how far the prelude got is
    /// unknown, so the whole batch is rolled back.
    prelude: Option<&'static str>,
    /// The committer has been asked to commit the open transaction.
    requested: bool,
    /// Where the open batch's outcome will be published.
    batch: watch::Sender<Outcome>,
}

impl Writer {
    /// Takes over `conn` (already migrated, `synchronous = NORMAL`) and starts the
    /// committer task, which makes each commit durable by syncing `wal`.
    pub(super) fn new(conn: SqliteConnection, wal: std::fs::File) -> Self {
        let wal = Arc::new(wal);
        let (commits, mut requests) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                conn,
                open: false,
                dirty: false,
                held: false,
                prelude: None,
                requested: false,
                batch: watch::channel(None).0,
            }),
            commits,
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { break };
                let mut state = inner.state.lock().await;
                state.requested = false;
                let committed = state.close().await;
                drop(state);
                if let Some(batch) = committed {
                    let wal = Arc::clone(&wal);
                    let synced = tokio::task::spawn_blocking(move || wal.sync_data())
                        .await
                        .map_err(|e| e.to_string())
                        .and_then(|r| r.map_err(|e| format!("cannot sync the WAL: {e}")));
                    batch.send_replace(Some(synced));
                }
            }
        });
        Self { inner }
    }

    /// Begins a write: the returned guard is the connection, inside a savepoint.
    /// End it with [`Write::finish`].
    pub(super) async fn begin(&self) -> Result<Write<'_>, Error> {
        let (mut write, prelude) = self.begin_deferred().await;
        if let Err(e) = write.state.conn.execute(prelude).await {
            let error = db_error(e);
            write.state.abort(error.message()).await;
            return Err(error);
        }
        write.state.prelude = None;
        Ok(write)
    }

    /// Begins a write whose savepoint is opened by its first query: that query
    /// must start with the returned prelude and run through [`Write::first`].
    /// One round trip fewer than [`Writer::begin`].
    pub(super) async fn begin_deferred(&self) -> (Write<'_>, &'static str) {
        let mut state = self.inner.state.lock().await;
        if state.dirty {
            state
                .abort("an earlier write of the batch was interrupted")
                .await;
        }
        // The batch's transaction opens with its first write.
        let prelude = match (state.open, state.held) {
            (false, _) => "BEGIN IMMEDIATE; SAVEPOINT write;",
            (true, false) => "SAVEPOINT write;",
            (true, true) => "RELEASE write; SAVEPOINT write;",
        };
        state.prelude = Some(prelude);
        if !state.open {
            state.open = true;
            state.batch = watch::channel(None).0;
        }
        state.held = false;
        state.dirty = true;
        (
            Write {
                state,
                commits: &self.inner.commits,
            },
            prelude,
        )
    }

    /// Waits until everything written so far is committed (for shutdown).
    pub(super) async fn flush(&self) {
        let mut state = self.inner.state.lock().await;
        if let Some(batch) = state.close().await {
            // Closing the pool checkpoints the WAL with a sync; a failure shows there.
            batch.send_replace(Some(Ok(())));
        }
    }
}

impl State {
    /// Commits the open transaction to the WAL and returns where to tell the
    /// batch's members once it is synced; rolls it back instead (telling them)
    /// when a write was interrupted or the commit fails.
    async fn close(&mut self) -> Option<watch::Sender<Outcome>> {
        if self.dirty {
            self.abort("an earlier write of the batch was interrupted")
                .await;
            return None;
        }
        if !self.open {
            return None;
        }
        match self.conn.execute("COMMIT").await {
            Ok(_) => {
                // The writes waiting for this commit: the group it commits.
                metrics::histogram!("keyless_store_commit_batch_writes").record(f64::from(
                    u32::try_from(self.batch.receiver_count()).unwrap_or(u32::MAX),
                ));
                self.open = false;
                self.held = false;
                Some(std::mem::replace(&mut self.batch, watch::channel(None).0))
            }
            Err(e) => {
                self.abort(&format!("commit failed: {e}")).await;
                None
            }
        }
    }

    async fn abort(&mut self, why: &str) {
        let _ = self.conn.execute("ROLLBACK").await;
        self.open = false;
        self.dirty = false;
        self.held = false;
        self.prelude = None;
        self.batch.send_replace(Some(Err(why.to_owned())));
    }
}

/// A write in progress: derefs to the writing connection.
pub(super) struct Write<'a> {
    state: MutexGuard<'a, State>,
    commits: &'a mpsc::UnboundedSender<()>,
}

impl Write<'_> {
    /// Ends the write with its result: a success waits for the commit of its
    /// batch (and fails if that commit fails); a failure is rolled back alone.
    pub(super) async fn finish<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
        if self.state.prelude.is_some() {
            self.state
                .abort("a write of the batch failed before its savepoint was known")
                .await;
            return result.and(Err(Error::new(
                ErrorKind::Unavailable,
                "the write was not committed",
            )));
        }
        if result.is_ok() {
            self.state.held = true;
        } else if let Err(e) = self
            .state
            .conn
            .execute("ROLLBACK TO write; RELEASE write")
            .await
        {
            let error = db_error(e);
            self.state.abort(error.message()).await;
            return Err(error);
        }
        self.state.dirty = false;
        let mut outcome = self.state.batch.subscribe();
        self.request_commit();
        drop(self);
        let value = result?;
        match outcome.wait_for(Option::is_some).await.as_deref() {
            Ok(Some(Ok(()))) => Ok(value),
            Ok(Some(Err(why))) => Err(Error::new(
                ErrorKind::Unavailable,
                format!("the write was not committed: {why}"),
            )),
            _ => Err(Error::new(
                ErrorKind::Unavailable,
                "the write was not committed",
            )),
        }
    }

    /// Runs the write's first query, which opens its savepoint (its text starts
    /// with the prelude [`Writer::begin_deferred`] gave), and returns its rows.
    pub(super) async fn first<'q>(
        &mut self,
        query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>,
    ) -> Result<Vec<sqlx::sqlite::SqliteRow>, Error> {
        let rows = query.fetch_all(&mut self.state.conn).await;
        let savepoint_open = match &rows {
            Ok(_) => true,
            // A constraint is never broken by the prelude: it ran.
            Err(sqlx::Error::Database(db)) => !matches!(db.kind(), sqlx::error::ErrorKind::Other),
            Err(_) => false,
        };
        if savepoint_open {
            self.state.prelude = None;
        }
        rows.map_err(db_error)
    }

    fn request_commit(&mut self) {
        if !self.state.requested {
            self.state.requested = true;
            let _ = self.commits.send(());
        }
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        // Dropped unfinished (its task was cancelled): the committer rolls the batch back.
        if self.state.dirty {
            self.request_commit();
        }
    }
}

impl Deref for Write<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.state.conn
    }
}

impl DerefMut for Write<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.state.conn
    }
}
