//! Recently read containers and blobs (with the bytes of small blobs), so that a
//! read of a hot blob costs no database round trip.
//!
//! Only this process writes the database (the data dir is locked), and every
//! write invalidates what it changed after its commit. A reader that raced a write
//! must not put the old row back: each reader notes the generation before its
//! query and inserts only if no invalidation happened since.

use std::sync::{Arc, Mutex};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::storage::{Blob, Container, Content};

/// Weight budget: roughly the bytes the cached rows hold.
const CAPACITY: u64 = 64 * 1024 * 1024;
/// The number of rows the cache is sized for (its shards and tables).
const ROWS: usize = 100_000;

#[derive(Clone)]
enum Row {
    Container(Box<Container>),
    /// Shared: a reader that only reads takes the row itself (see
    /// [`RowCache::blob_shared`]).
    Blob(Arc<Blob>),
}

/// Weighs a row by the bytes it holds.
#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Row> for ByBytes {
    fn weight(&self, key: &String, row: &Row) -> u64 {
        key.len() as u64 + u64::from(weight(row))
    }
}

// A read of a hot blob is a lookup here: quick_cache's sharded tables cost a
// fraction of what a policy-tracking cache spends per read on the GET path.
pub(super) struct RowCache {
    rows: Cache<String, Row, ByBytes>,
    generation: Mutex<u64>,
    lookups: std::sync::OnceLock<Lookups>,
}

impl std::fmt::Debug for RowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowCache")
            .field("entries", &self.rows.len())
            .finish()
    }
}

/// The generation a reader noted before its query.
#[derive(Clone, Copy)]
pub(super) struct Ticket(u64);

fn weight(row: &Row) -> u32 {
    let size = match row {
        Row::Container(c) => 128 + c.metadata.len() * 64,
        Row::Blob(b) => {
            let inline = match &b.content {
                Content::Inline(bytes) => bytes.len(),
                Content::File(_) => 0,
            };
            256 + b.name.len() + inline + b.metadata.len() * 64 + b.committed_blocks.len() * 80
        }
    };
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// The lookups of the cache (`keyless_store_row_cache_total`), by row kind and
/// whether the row was found: handles taken once, at the first lookup (after
/// the server installed its recorder), instead of the recorder's lookup by
/// labels on every read.
struct Lookups {
    container: Outcomes,
    blob: Outcomes,
}

/// The two counters of one row kind.
struct Outcomes {
    hit: metrics::Counter,
    miss: metrics::Counter,
}

impl Outcomes {
    fn of(row: &'static str) -> Self {
        let counter = |result: &'static str| metrics::counter!("keyless_store_row_cache_total", "row" => row, "result" => result);
        Self {
            hit: counter("hit"),
            miss: counter("miss"),
        }
    }

    /// Counts a lookup and passes its result on.
    fn count<T>(&self, found: Option<T>) -> Option<T> {
        match found {
            Some(_) => self.hit.increment(1),
            None => self.miss.increment(1),
        }
        found
    }
}

fn container_key(account: &str, name: &str) -> String {
    key('c', &[account, name])
}

fn blob_key(account: &str, container: &str, name: &str) -> String {
    key('b', &[account, container, name])
}

/// `kind/part/part…`: unambiguous, since no account or container name holds a `/`.
/// Built by hand, as every read of a cached row builds one.
fn key(kind: char, parts: &[&str]) -> String {
    let mut key = String::with_capacity(1 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    key.push(kind);
    for part in parts {
        key.push('/');
        key.push_str(part);
    }
    key
}

impl RowCache {
    pub(super) fn new() -> Self {
        Self {
            rows: Cache::with_weighter(ROWS, CAPACITY, ByBytes),
            generation: Mutex::new(0),
            lookups: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        self.generation
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn ticket(&self) -> Ticket {
        Ticket(*self.lock())
    }

    fn insert(&self, ticket: Ticket, key: String, row: Row) {
        let generation = self.lock();
        if *generation == ticket.0 {
            self.rows.insert(key, row);
        }
    }

    fn lookups(&self) -> &Lookups {
        self.lookups.get_or_init(|| Lookups {
            container: Outcomes::of("container"),
            blob: Outcomes::of("blob"),
        })
    }

    pub(super) fn container(&self, account: &str, name: &str) -> Option<Container> {
        let found = match self.rows.get(&container_key(account, name)) {
            Some(Row::Container(c)) => Some(*c),
            _ => None,
        };
        self.lookups().container.count(found)
    }

    pub(super) fn put_container(&self, ticket: Ticket, c: &Container) {
        self.insert(
            ticket,
            container_key(&c.account, &c.name),
            Row::Container(Box::new(c.clone())),
        );
    }

    pub(super) fn blob(&self, account: &str, container: &str, name: &str) -> Option<Blob> {
        self.blob_shared(account, container, name)
            .map(Arc::unwrap_or_clone)
    }

    pub(super) fn blob_shared(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Option<Arc<Blob>> {
        let found = match self.rows.get(&blob_key(account, container, name)) {
            Some(Row::Blob(b)) => Some(b),
            _ => None,
        };
        self.lookups().blob.count(found)
    }

    pub(super) fn put_blob(&self, ticket: Ticket, b: &Blob) {
        self.insert(
            ticket,
            blob_key(&b.account, &b.container, &b.name),
            Row::Blob(Arc::new(b.clone())),
        );
    }

    pub(super) fn forget_container(&self, account: &str, name: &str) {
        let mut generation = self.lock();
        *generation += 1;
        self.rows.remove(&container_key(account, name));
    }

    pub(super) fn forget_blob(&self, account: &str, container: &str, name: &str) {
        let mut generation = self.lock();
        *generation += 1;
        self.rows.remove(&blob_key(account, container, name));
    }

    /// After a change to many rows (a container or an account deleted).
    pub(super) fn forget_all(&self) {
        let mut generation = self.lock();
        *generation += 1;
        self.rows.clear();
    }
}
