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
    /// The committer has been asked to commit the open transaction.
    requested: bool,
    /// Where the open batch's outcome will be published.
    batch: watch::Sender<Outcome>,
}

impl Writer {
    /// Takes over `conn` (already migrated) and starts the committer task.
    pub(super) fn new(conn: SqliteConnection) -> Self {
        let (commits, mut requests) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                conn,
                open: false,
                dirty: false,
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
                state.close().await;
            }
        });
        Self { inner }
    }

    /// Begins a write: the returned guard is the connection, inside a savepoint.
    /// End it with [`Write::finish`].
    pub(super) async fn begin(&self) -> Result<Write<'_>, Error> {
        let mut state = self.inner.state.lock().await;
        if state.dirty {
            state
                .abort("an earlier write of the batch was interrupted")
                .await;
        }
        if !state.open {
            state
                .conn
                .execute("BEGIN IMMEDIATE")
                .await
                .map_err(db_error)?;
            state.open = true;
            state.batch = watch::channel(None).0;
        }
        if let Err(e) = state.conn.execute("SAVEPOINT write").await {
            let error = db_error(e);
            state.abort(error.message()).await;
            return Err(error);
        }
        state.dirty = true;
        Ok(Write {
            state,
            commits: &self.inner.commits,
        })
    }

    /// Waits until everything written so far is committed (for shutdown).
    pub(super) async fn flush(&self) {
        let mut state = self.inner.state.lock().await;
        state.close().await;
    }
}

impl State {
    /// Commits the open transaction (or rolls it back when a write was
    /// interrupted) and tells the batch's members.
    async fn close(&mut self) {
        if self.dirty {
            self.abort("an earlier write of the batch was interrupted")
                .await;
            return;
        }
        if !self.open {
            return;
        }
        match self.conn.execute("COMMIT").await {
            Ok(_) => {
                self.open = false;
                self.batch.send_replace(Some(Ok(())));
            }
            Err(e) => self.abort(&format!("commit failed: {e}")).await,
        }
    }

    async fn abort(&mut self, why: &str) {
        let _ = self.conn.execute("ROLLBACK").await;
        self.open = false;
        self.dirty = false;
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
        let end = match &result {
            Ok(_) => "RELEASE write",
            Err(_) => "ROLLBACK TO write; RELEASE write",
        };
        if let Err(e) = self.state.conn.execute(end).await {
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
