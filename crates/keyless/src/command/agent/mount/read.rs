//! Reading stored files through the mounts: blocks while a file is read in
//! order (fetched once however many reads wait, the next ones ahead), the
//! bytes asked for alone when it is not.

use std::sync::{Arc, PoisonError};

use fuser::Errno;
use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;

use super::cache::{Block, Held, Key};
use super::{BLOCK, IN_ORDER_SLACK, Mounts, READ_AHEAD, Refusal, read_at};

impl Mounts {
    /// Block `index` of file `ino` (blob `blob`, `size` bytes): in memory, on
    /// the node's disk, or fetched now (once, however many reads wait for it).
    pub(super) async fn block(
        self: &Arc<Self>,
        port: usize,
        ino: u64,
        blob: &str,
        size: u64,
        index: u64,
    ) -> Result<Held, Arc<Refusal>> {
        let key = (ino, index);
        let fetch = {
            let mut state = self.cache.lock();
            if let Some(block) = state.memory.get(key) {
                return Ok(Held::Memory(block));
            }
            if state.disk.get(key).is_some() {
                return Ok(Held::Disk);
            }
            if let Some(f) = state.fetching.get(&key) {
                f.clone()
            } else {
                let me = Arc::clone(self);
                let blob = blob.to_owned();
                let f: BoxFuture<'static, Result<Arc<Block>, Arc<Refusal>>> = async move {
                    let result = me.fetch(port, key, &blob, size).await.map_err(Arc::new);
                    me.cache.lock().fetching.remove(&key);
                    result
                }
                .boxed();
                let shared = f.shared();
                state.fetching.insert(key, shared.clone());
                shared
            }
        };
        fetch.await.map(Held::Memory)
    }

    /// Reads one block from the storage into memory; a block fetched before
    /// (evicted since) is also kept on the node's disk, so a file read once
    /// costs no disk writes and one read again (an epoch after another) does
    /// not go to the storage a third time.
    pub(super) async fn fetch(
        &self,
        port: usize,
        key: Key,
        blob: &str,
        size: u64,
    ) -> Result<Arc<Block>, Refusal> {
        use futures_util::StreamExt as _;
        let _slot = self.cache.fetches.acquire().await;
        let start = key.1 * BLOCK;
        let end = (start + BLOCK).min(size);
        if start >= end {
            return Ok(Arc::new(Block(bytes::Bytes::new())));
        }
        let response = self.get_range(port, blob, (start, end)).await?;
        // Gathered into one piece here, on the runtime, so that the reads the
        // kernel sends are answered with slices of it.
        let mut bytes = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Refusal::io(format!("the read broke off: {e}")))?;
            bytes.extend_from_slice(&chunk);
        }
        let len = bytes.len() as u64;
        if len != end - start {
            return Err(Refusal::io(format!(
                "the storage sent {len} bytes of {blob} at {start} where {} were asked for",
                end - start
            )));
        }
        let block = Arc::new(Block(bytes.into()));
        let again = !self.cache.lock().fetched.insert(key);
        if again {
            let path = self.cache.path(key);
            let kept = Arc::clone(&block);
            let written = tokio::task::spawn_blocking(move || kept.write_to(&path)).await;
            if matches!(written, Ok(Ok(()))) {
                let evicted = self.cache.lock().disk.insert(key, len, ());
                for k in evicted {
                    let _ = std::fs::remove_file(self.cache.path(k));
                }
            }
        }
        self.cache
            .lock()
            .memory
            .insert(key, len, Arc::clone(&block));
        Ok(block)
    }

    /// Notes a read of `offset..end` of file `ino` and, when the file is read
    /// in order (where the last read ended, give or take the reads the kernel
    /// has in flight at once, which arrive in any order), starts fetching the
    /// [`READ_AHEAD`] blocks after it that no read asked for yet.
    pub(super) fn read_ahead(
        self: &Arc<Self>,
        (port, ino): (usize, u64),
        blob: &str,
        size: u64,
        (offset, end): (u64, u64),
    ) -> bool {
        let last = end.saturating_sub(1) / BLOCK;
        let blocks = size.div_ceil(BLOCK);
        let start = {
            let mut reads = self.reads.lock().unwrap_or_else(PoisonError::into_inner);
            let seen = reads.entry(ino).or_insert((0, 0));
            let in_order = offset == 0 || seen.0.abs_diff(offset) <= IN_ORDER_SLACK;
            seen.0 = end;
            if !in_order {
                return false;
            }
            let start = seen.1.max(last + 1);
            seen.1 = (last + 1 + READ_AHEAD).min(blocks);
            start
        };
        for ahead in start..(last + 1 + READ_AHEAD).min(blocks) {
            let me = Arc::clone(self);
            let blob = blob.to_owned();
            self.rt.spawn(async move {
                let _ = me.block(port, ino, &blob, size, ahead).await;
            });
        }
        true
    }

    /// Whether every block of `offset..end` of file `ino` is on the node's disk.
    pub(super) fn on_disk(&self, ino: u64, (offset, end): (u64, u64)) -> bool {
        let state = self.cache.lock();
        (offset / BLOCK..=end.saturating_sub(1) / BLOCK).all(|i| state.disk.contains((ino, i)))
    }

    /// Asks the storage for `start..end` of a blob; the body is the caller's
    /// to read.
    pub(super) async fn get_range(
        &self,
        port: usize,
        blob: &str,
        (start, end): (u64, u64),
    ) -> Result<reqwest::Response, Refusal> {
        let range = format!("bytes={start}-{}", end - 1);
        let response = self
            .send(
                port,
                reqwest::Method::GET,
                Some(blob),
                &[],
                &[("x-ms-range", range)],
                None,
            )
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Err(Refusal {
                errno: Errno::ENOENT,
                why: format!("{blob} is no longer on the storage"),
            });
        }
        Ok(response)
    }

    /// Reads exactly `offset..end` of a blob from the storage, past the cache:
    /// a read out of order, which would otherwise fetch whole blocks for a few
    /// bytes of them.
    pub(super) async fn read_range(
        &self,
        port: usize,
        blob: &str,
        (offset, end): (u64, u64),
    ) -> Result<bytes::Bytes, Refusal> {
        if offset >= end {
            return Ok(bytes::Bytes::new());
        }
        let response = self.get_range(port, blob, (offset, end)).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Refusal::io(format!("the read broke off: {e}")))?;
        if bytes.len() as u64 != end - offset {
            return Err(Refusal::io(format!(
                "the storage sent {} bytes of {blob} at {offset} where {} were asked for",
                bytes.len(),
                end - offset
            )));
        }
        Ok(bytes)
    }

    /// `offset..end` of file `ino` when every block of it is in memory: a
    /// slice of the block when it lies in one.
    pub(super) fn read_held(&self, ino: u64, (offset, end): (u64, u64)) -> Option<bytes::Bytes> {
        if offset >= end {
            return Some(bytes::Bytes::new());
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut state = self.cache.lock();
        if first == last {
            let block = state.memory.get((ino, first))?;
            return Some(block.range(offset - first * BLOCK, end - first * BLOCK));
        }
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        for index in first..=last {
            let block = state.memory.get((ino, index))?;
            let from = offset.max(index * BLOCK) - index * BLOCK;
            let to = end.min((index + 1) * BLOCK) - index * BLOCK;
            out.extend_from_slice(&block.range(from, to));
        }
        Some(out.into())
    }

    /// Reads `len` bytes at `offset` of a stored file through the cache,
    /// fetching what is missing (a slice of the block when the bytes lie in
    /// one held in memory).
    pub(super) async fn read_stored(
        self: Arc<Self>,
        (port, ino): (usize, u64),
        blob: String,
        size: u64,
        (offset, len): (u64, u64),
    ) -> Result<bytes::Bytes, Arc<Refusal>> {
        let end = (offset + len).min(size);
        if offset >= end {
            return Ok(bytes::Bytes::new());
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        if first == last
            && let Held::Memory(block) = self.block(port, ino, &blob, size, first).await?
        {
            return Ok(block.range(offset - first * BLOCK, end - first * BLOCK));
        }
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        for index in first..=last {
            let from = offset.max(index * BLOCK) - index * BLOCK;
            let to = end.min((index + 1) * BLOCK) - index * BLOCK;
            // A block dropped from the disk between its lookup and its read is
            // fetched again.
            let mut tries = 0;
            loop {
                match self.block(port, ino, &blob, size, index).await? {
                    Held::Memory(block) => {
                        out.extend_from_slice(&block.range(from, to));
                        break;
                    }
                    Held::Disk => match read_at(&self.cache.path((ino, index)), from, to - from) {
                        Ok(bytes) => {
                            out.extend_from_slice(&bytes);
                            break;
                        }
                        Err(e) if tries == 0 && e.kind() == std::io::ErrorKind::NotFound => {
                            self.cache.lock().disk.remove((ino, index));
                            tries += 1;
                        }
                        Err(e) => {
                            return Err(Arc::new(Refusal::io(format!("the mount's cache: {e}"))));
                        }
                    },
                }
            }
        }
        Ok(out.into())
    }
}
