//! One writing connection with group commit.
//!
//! SQLite has one writer at a time, and a durable commit costs an fsync of the
//! WAL. Writers that take turns on pool connections also meet SQLite's busy
//! handler, which sleeps for milliseconds at a time. Here every write runs on the
//! writer's connection (one of two, below), in arrival order (the mutex is fair),
//! inside a savepoint of a shared transaction; a committer task then commits everything that ran since the last
//! commit with one fsync. A write returns only after the commit that made it
//! durable, so an acknowledged write is never lost, and a write that fails rolls
//! back its savepoint without touching the others of its batch.
//!
//! The sync is taken out of SQLite's hands: the writing connection runs with
//! `synchronous = NORMAL`, so `COMMIT` only appends the batch to the WAL, and a
//! blocking thread then syncs the WAL file itself, with the connection already
//! free for the next batch. A batch's writes are acknowledged after that sync,
//! by that thread. Batches thus overlap: one executes while the one before it
//! reaches the disk. A batch of the direct connection (below) is committed and
//! synced by one blocking thread in one hop; the committer waits for its commit
//! only, then lets the writes of the next batch in.
//!
//! A write whose task is cancelled midway leaves its savepoint open; the next
//! holder of the connection then rolls the whole batch back and its members fail
//! (a cancelled request is rare and costs its batch a retry, never a wrong commit).
//!
//! The writer holds two connections to the file. Most writes run on sqlx's, whose
//! statements execute on sqlx's worker thread: each costs the calling task a hop
//! to that thread and back, two context switches. The hottest write, Put Blob,
//! runs on a second connection ([`Writer::direct`]) in the calling task's own
//! thread: its few statements take microseconds, cannot be interrupted midway,
//! and need no hop. Only one of the two holds a transaction at a time: a write for
//! the other one first has the committer close the open batch.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{Executor, SqliteConnection};
use tokio::sync::{Mutex, MutexGuard, Notify, mpsc, oneshot, watch};

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
    /// The WAL file, which the writer syncs.
    wal: Arc<std::fs::File>,
    commits: mpsc::UnboundedSender<()>,
    /// Told each time the committer has closed a batch (or found none open).
    closed: Notify,
}

/// One of the two writing connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// sqlx's, through its worker thread.
    Worker,
    /// rusqlite's, in the calling task's thread.
    Direct,
}

struct State {
    conn: SqliteConnection,
    /// The direct connection. Only the holder of the state's lock takes its
    /// mutex, which exists to lend it to a blocking thread for a commit.
    direct: Arc<std::sync::Mutex<rusqlite::Connection>>,
    /// The connection whose transaction is open, if one is.
    open: Option<Side>,
    /// A write began its savepoint and has not finished it.
    dirty: bool,
    /// The last write succeeded and its savepoint is still open: the next write
    /// (or the commit) releases it, saving a round trip.
    held: bool,
    /// The committer has been asked to commit the open transaction.
    requested: bool,
    /// Where the open batch's outcome will be published.
    batch: watch::Sender<Outcome>,
}

impl Writer {
    /// Takes over `conn` and `direct` (the file already migrated, both with
    /// `synchronous = NORMAL`) and starts the committer task, which makes each
    /// commit durable by syncing `wal`.
    pub(super) fn new(
        conn: SqliteConnection,
        direct: rusqlite::Connection,
        wal: std::fs::File,
    ) -> Self {
        let (commits, mut requests) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                conn,
                direct: Arc::new(std::sync::Mutex::new(direct)),
                open: None,
                dirty: false,
                held: false,
                requested: false,
                batch: watch::channel(None).0,
            }),
            commits,
            closed: Notify::new(),
            wal: Arc::new(wal),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while requests.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { break };
                let mut state = inner.state.lock().await;
                state.requested = false;
                let synced = state.close(&inner.wal).await;
                drop(state);
                inner.closed.notify_waiters();
                // The next batch commits once this one is on the disk.
                if let Some(synced) = synced {
                    let _ = synced.await;
                }
            }
        });
        Self { inner }
    }

    /// Begins a write: the returned guard is the connection, inside a savepoint.
    /// End it with [`Write::finish`].
    pub(super) async fn begin(&self) -> Result<Write<'_>, Error> {
        let mut state = self.lock_for(Side::Worker).await;
        // The batch's transaction opens with its first write.
        let prelude = match (state.open, state.held) {
            (None, _) => "BEGIN IMMEDIATE; SAVEPOINT write;",
            (Some(_), false) => "SAVEPOINT write;",
            (Some(_), true) => "RELEASE write; SAVEPOINT write;",
        };
        state.open_batch(Side::Worker);
        state.held = false;
        state.dirty = true;
        let mut write = Write {
            state,
            commits: &self.inner.commits,
        };
        if let Err(e) = write.state.conn.execute(prelude).await {
            let error = db_error(e);
            write.state.abort(error.message()).await;
            return Err(error);
        }
        Ok(write)
    }

    /// Runs `work` as one write on the direct connection, in this task's thread:
    /// an error rolls back what it did, alone (see [`Direct::savepoint`]). A
    /// success returns after the commit that made it durable, as
    /// [`Write::finish`] does.
    pub(super) async fn direct<T>(
        &self,
        work: impl FnOnce(&Direct<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut state = self.lock_for(Side::Direct).await;
        let opening = state.open.is_none();
        state.open_batch(Side::Direct);
        // Cleared below; left set only when this task stops waiting for the
        // transaction's start, or by a panic in `work`: the next holder then
        // rolls the batch back.
        state.dirty = true;
        if opening && let Err(error) = begin_direct(&state.direct).await {
            state.abort(error.message()).await;
            return Err(error);
        }
        let ran = {
            let conn = lock(&state.direct);
            let write = Direct {
                conn: &conn,
                savepoint: std::cell::Cell::new(false),
            };
            let result = work(&write);
            let ended = match (write.savepoint.get(), &result) {
                (true, Ok(_)) => control(&conn, "RELEASE write").map_err(direct_error),
                (true, Err(_)) => conn
                    .execute_batch("ROLLBACK TO write; RELEASE write")
                    .map_err(direct_error),
                // Its one failed statement left nothing behind, unless SQLite
                // rolled back the whole transaction (a full disk, say).
                (false, Err(e)) if conn.is_autocommit() => Err(Error::internal(format!(
                    "the batch's transaction was rolled back: {}",
                    e.message()
                ))),
                (false, _) => Ok(()),
            };
            ended.map(|()| result)
        };
        state.dirty = false;
        let result = match ran {
            Ok(result) => result,
            // The savepoint's start or end failed, or the transaction is gone:
            // the batch is in doubt.
            Err(error) => {
                state.abort(error.message()).await;
                return Err(error);
            }
        };
        let outcome = state.batch.subscribe();
        state.request_commit(&self.inner.commits);
        drop(state);
        let value = result?;
        committed(outcome).await.map(|()| value)
    }

    /// The writing state, with no transaction open on the connection other than
    /// `side`'s: a batch open there is committed first, by the committer.
    async fn lock_for(&self, side: Side) -> MutexGuard<'_, State> {
        loop {
            let mut state = self.inner.state.lock().await;
            if state.dirty {
                state
                    .abort("an earlier write of the batch was interrupted")
                    .await;
            }
            if state.open.is_none_or(|open| open == side) {
                return state;
            }
            // Waits for the commit, not for its sync: the next batch may start
            // while the one before it reaches the disk, whichever its connection.
            let closed = self.inner.closed.notified();
            state.request_commit(&self.inner.commits);
            drop(state);
            closed.await;
        }
    }

    /// Waits until everything written so far is committed (for shutdown).
    /// The WAL is then checkpointed into the database file, which is synced, and
    /// emptied: the direct connection stays open, so closing the pool no longer
    /// does this as the file's last connection.
    pub(super) async fn flush(&self) {
        let mut state = self.inner.state.lock().await;
        if let Some(synced) = state.close(&self.inner.wal).await {
            let _ = synced.await;
        }
        let checkpointed = lock(&state.direct)
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(|e| e.to_string())
            .and_then(|busy| {
                (busy == 0)
                    .then_some(())
                    .ok_or_else(|| "the WAL's checkpoint was blocked".to_owned())
            });
        if let Err(why) = &checkpointed {
            tracing::warn!(error = %why, "the metadata database was not checkpointed at shutdown");
        }
    }
}

impl State {
    /// Commits the open transaction to the WAL and has a blocking thread sync
    /// it and tell the batch's members; rolls it back instead (telling them)
    /// when a write was interrupted or the commit fails. Returns once the
    /// commit is done, with what resolves when the sync is.
    ///
    /// The direct connection's batch is committed and synced by one blocking
    /// thread, in one hop: a commit may checkpoint the WAL into the database
    /// file, with syncs, which is no work for a task's thread.
    async fn close(&mut self, wal: &Arc<std::fs::File>) -> Option<oneshot::Receiver<()>> {
        if self.dirty {
            self.abort("an earlier write of the batch was interrupted")
                .await;
            return None;
        }
        let side = self.open?;
        // The writes waiting for this commit: the group it commits, counted
        // before the syncing thread can tell them and they stop waiting.
        let writes = u32::try_from(self.batch.receiver_count()).unwrap_or(u32::MAX);
        let batch = self.batch.clone();
        let (wal, (done, synced)) = (Arc::clone(wal), oneshot::channel());
        let committed = match side {
            Side::Worker => {
                let committed = self.conn.execute("COMMIT").await;
                if committed.is_ok() {
                    tokio::task::spawn_blocking(move || sync(&wal, &batch, done));
                }
                committed.map(drop).map_err(|e| e.to_string())
            }
            Side::Direct => {
                let direct = Arc::clone(&self.direct);
                let (told, commit) = oneshot::channel();
                tokio::task::spawn_blocking(move || {
                    let committed = control(&lock(&direct), "COMMIT");
                    let ok = committed.is_ok();
                    let _ = told.send(committed);
                    if ok {
                        sync(&wal, &batch, done);
                    }
                });
                match commit.await {
                    Ok(committed) => committed.map_err(|e| e.to_string()),
                    Err(_) => Err("the commit's thread stopped".to_owned()),
                }
            }
        };
        match committed {
            Ok(()) => {
                metrics::histogram!("keyless_store_commit_batch_writes").record(f64::from(writes));
                self.open = None;
                self.held = false;
                self.batch = watch::channel(None).0;
                Some(synced)
            }
            Err(e) => {
                self.abort(&format!("commit failed: {e}")).await;
                None
            }
        }
    }

    async fn abort(&mut self, why: &str) {
        if self.open == Some(Side::Direct) {
            // On a blocking thread: an interrupted write's `BEGIN` may still hold
            // the connection there, waiting for the file's write lock.
            let direct = Arc::clone(&self.direct);
            let _ =
                tokio::task::spawn_blocking(move || lock(&direct).execute_batch("ROLLBACK")).await;
        } else {
            let _ = self.conn.execute("ROLLBACK").await;
        }
        self.open = None;
        self.dirty = false;
        self.held = false;
        self.batch.send_replace(Some(Err(why.to_owned())));
    }

    /// Opens a batch on `side` unless one is open.
    fn open_batch(&mut self, side: Side) {
        if self.open.is_none() {
            self.open = Some(side);
            self.batch = watch::channel(None).0;
        }
    }

    fn request_commit(&mut self, commits: &mpsc::UnboundedSender<()>) {
        if !self.requested {
            self.requested = true;
            let _ = commits.send(());
        }
    }
}

/// Syncs the WAL after a batch's commit, in a blocking thread, and tells the
/// batch's writes and then the committer (`done`).
fn sync(wal: &std::fs::File, batch: &watch::Sender<Outcome>, done: oneshot::Sender<()>) {
    let synced = wal
        .sync_data()
        .map_err(|e| format!("cannot sync the WAL: {e}"));
    batch.send_replace(Some(synced));
    let _ = done.send(());
}

/// A write on the direct connection (see [`Writer::direct`]): the connection,
/// inside the batch's transaction.
pub(super) struct Direct<'c> {
    conn: &'c rusqlite::Connection,
    /// The write opened its savepoint.
    savepoint: std::cell::Cell<bool>,
}

impl Direct<'_> {
    /// Opens the write's savepoint (once), which an error then rolls back
    /// without touching the rest of the batch. A write opens it before the
    /// first of several statements that change the database. One that changes
    /// it with a single statement, and has no fallible step after it, need
    /// not: SQLite undoes a failed statement by itself, and the savepoint and
    /// its release were two of a new blob's five statements.
    pub(super) fn savepoint(&self) -> Result<(), Error> {
        if self.savepoint.replace(true) {
            return Ok(());
        }
        // Marked open first: when it fails, the write's end fails to release
        // it, and the batch is rolled back as in doubt.
        control(self.conn, "SAVEPOINT write").map_err(direct_error)
    }
}

impl Deref for Direct<'_> {
    type Target = rusqlite::Connection;
    fn deref(&self) -> &rusqlite::Connection {
        self.conn
    }
}

/// Runs a statement of transaction control on the direct connection, prepared
/// once: parsing them again for each Put Blob cost a twentieth of its
/// instructions.
fn control(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// How long a write waits for the database's write lock, which connections
/// outside the writer also take.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// `BEGIN IMMEDIATE` on the direct connection, whose busy timeout is zero: at
/// once when the file's write lock is free, else waiting for it in a blocking
/// thread, where SQLite's busy handler may sleep.
async fn begin_direct(direct: &Arc<std::sync::Mutex<rusqlite::Connection>>) -> Result<(), Error> {
    let begun = control(&lock(direct), "BEGIN IMMEDIATE");
    match begun {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::DatabaseBusy => {}
        other => return other.map_err(direct_error),
    }
    let direct = Arc::clone(direct);
    tokio::task::spawn_blocking(move || {
        let conn = lock(&direct);
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let begun = control(&conn, "BEGIN IMMEDIATE");
        conn.busy_timeout(Duration::ZERO)?;
        begun
    })
    .await
    .map_err(|e| Error::internal(e.to_string()))?
    .map_err(direct_error)
}

fn lock(
    direct: &std::sync::Mutex<rusqlite::Connection>,
) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
    direct
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Converts an error of the direct connection at the boundary, as `db_error`
/// does sqlx's.
pub(super) fn direct_error(err: rusqlite::Error) -> Error {
    use rusqlite::ffi;
    if let rusqlite::Error::SqliteFailure(e, _) = &err {
        match e.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                return Error::exists("a record with the same key exists already");
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => {
                return Error::not_found("a record this one refers to does not exist");
            }
            _ => {}
        }
    }
    Error::internal(format!("metadata store: {err}"))
}

/// Waits for the commit of a batch a write is in.
async fn committed(mut outcome: watch::Receiver<Outcome>) -> Result<(), Error> {
    match outcome.wait_for(Option::is_some).await.as_deref() {
        Ok(Some(Ok(()))) => Ok(()),
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

/// A write in progress: derefs to the writing connection.
pub(super) struct Write<'a> {
    state: MutexGuard<'a, State>,
    commits: &'a mpsc::UnboundedSender<()>,
}

impl Write<'_> {
    /// Ends the write with its result: a success waits for the commit of its
    /// batch (and fails if that commit fails); a failure is rolled back alone.
    pub(super) async fn finish<T>(mut self, result: Result<T, Error>) -> Result<T, Error> {
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
        let outcome = self.state.batch.subscribe();
        self.state.request_commit(self.commits);
        drop(self);
        let value = result?;
        committed(outcome).await.map(|()| value)
    }
}

impl Drop for Write<'_> {
    fn drop(&mut self) {
        // Dropped unfinished (its task was cancelled): the committer rolls the batch back.
        if self.state.dirty {
            self.state.request_commit(self.commits);
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
