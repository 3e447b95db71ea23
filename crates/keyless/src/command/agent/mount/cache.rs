//! The mounts' block cache: the blocks last used in the agent's memory, and
//! those fetched more than once on the node's disk.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::{BoxFuture, Shared};

use super::{CACHE_BUDGET, FETCHES, MEMORY_BUDGET, Refusal};

/// A block of a file: (inode, index).
pub(super) type Key = (u64, u64);

/// Where a block is held.
pub(super) enum Held {
    Memory(Arc<Block>),
    Disk,
}

/// A block's bytes, in one piece: a read within it is answered with a slice
/// of it, not a copy.
pub(super) struct Block(pub(super) bytes::Bytes);

impl Block {
    /// Bytes `from..to` of the block (as much of them as it holds).
    pub(super) fn range(&self, from: u64, to: u64) -> bytes::Bytes {
        let len = self.0.len();
        let to = usize::try_from(to).map_or(len, |t| t.min(len));
        let from = usize::try_from(from).map_or(len, |f| f.min(to));
        self.0.slice(from..to)
    }

    pub(super) fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let part = path.with_extension("part");
        std::fs::write(&part, &self.0)?;
        std::fs::rename(&part, path)
    }
}

/// The block cache: the blocks last used in memory ([`MEMORY_BUDGET`]), and
/// those fetched more than once on the node's disk ([`CACHE_BUDGET`]).
pub(super) struct Cache {
    pub(super) dir: PathBuf,
    pub(super) state: Mutex<CacheState>,
    pub(super) fetches: tokio::sync::Semaphore,
}

pub(super) type Fetch = Shared<BoxFuture<'static, Result<Arc<Block>, Arc<Refusal>>>>;

pub(super) struct CacheState {
    pub(super) memory: Lru<Arc<Block>>,
    pub(super) disk: Lru<()>,
    /// Every block fetched so far.
    pub(super) fetched: std::collections::HashSet<Key>,
    pub(super) fetching: HashMap<Key, Fetch>,
}

impl Cache {
    pub(super) fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            state: Mutex::new(CacheState {
                memory: Lru::new(MEMORY_BUDGET),
                disk: Lru::new(CACHE_BUDGET),
                fetched: std::collections::HashSet::new(),
                fetching: HashMap::new(),
            }),
            fetches: tokio::sync::Semaphore::new(FETCHES),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn path(&self, (ino, index): Key) -> PathBuf {
        self.dir.join(format!("{ino}-{index}"))
    }

    /// Forgets every block of a file (its bytes changed).
    pub(super) fn forget_file(&self, ino: u64) {
        let mut state = self.lock();
        state.memory.remove_file(ino);
        for key in state.disk.remove_file(ino) {
            let _ = std::fs::remove_file(self.path(key));
        }
        state.fetched.retain(|k| k.0 != ino);
    }
}

/// Blocks in the order they were last used, within a budget of bytes.
pub(super) struct Lru<V> {
    pub(super) budget: u64,
    pub(super) used: u64,
    pub(super) tick: u64,
    /// Each block: when it was last used, its length, its value.
    pub(super) entries: HashMap<Key, (u64, u64, V)>,
    pub(super) by_use: BTreeMap<u64, Key>,
}

impl<V: Clone> Lru<V> {
    pub(super) fn new(budget: u64) -> Self {
        Self {
            budget,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// A block's value, marked used.
    pub(super) fn get(&mut self, key: Key) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (used, _, value) = self.entries.get_mut(&key)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, key);
        Some(value.clone())
    }

    /// Counts a block in; returns the blocks dropped to stay in the budget.
    pub(super) fn insert(&mut self, key: Key, len: u64, value: V) -> Vec<Key> {
        self.remove(key);
        self.tick += 1;
        self.entries.insert(key, (self.tick, len, value));
        self.by_use.insert(self.tick, key);
        self.used += len;
        let mut dropped = Vec::new();
        while self.used > self.budget {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((_, l, _)) = self.entries.remove(&oldest) {
                self.used -= l;
            }
            dropped.push(oldest);
        }
        dropped
    }

    pub(super) fn contains(&self, key: Key) -> bool {
        self.entries.contains_key(&key)
    }

    pub(super) fn remove(&mut self, key: Key) {
        if let Some((tick, len, _)) = self.entries.remove(&key) {
            self.by_use.remove(&tick);
            self.used -= len;
        }
    }

    /// Drops every block of a file; returns them.
    pub(super) fn remove_file(&mut self, ino: u64) -> Vec<Key> {
        let keys: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| k.0 == ino)
            .copied()
            .collect();
        for k in &keys {
            self.remove(*k);
        }
        keys
    }
}
