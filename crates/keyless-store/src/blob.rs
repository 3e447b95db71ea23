//! Blob bytes: [`BlobBackend`] and its local-file implementation.
//!
//! Every write goes to a staging file, is fsynced, then renamed into place under a
//! fresh id, so a file id names complete bytes or nothing. Metadata decides what
//! is visible; files no metadata row names are removed by [`BlobBackend::sweep`]
//! at start-up. Reads open the file by id: a reader keeps its open file even when
//! an overwrite or a delete removes the name.
//!
//! The one write into an existing file is [`BlobBackend::extend`], past its end:
//! the bytes a metadata row counts never change, and bytes past them are not
//! seen until a row counts them.
//!
//! A composition whose parts all start at the beginning of plain files (a block
//! list of staged blocks) is a directory of hard links to those files, one per
//! part, named `<index>.<length>`: it costs no copy of the bytes, which are
//! already durable, and the file system counts the links, so a part outlives the
//! name it was linked from (a staged block removed once its list commits). An
//! extend of a linked file writes past every length a link records; a linked
//! composition itself is never extended, and composing from one copies.

use std::collections::HashSet;
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use keyless_core::{Error, ErrorKind};

/// A stream of bytes going in or out.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The new file's id.
    pub file_id: String,
    /// Its length.
    pub size: u64,
    /// MD5 of its bytes.
    pub md5: [u8; 16],
}

/// What [`BlobBackend::extend`] did.
pub enum Extended {
    /// The body was appended at the offset asked and is durable; `file_id` is
    /// the extended file, `size` and `md5` those of the appended bytes alone.
    Appended(Written),
    /// The file is not as long as the caller thought (an interrupted extend
    /// left bytes past the end), or the backend cannot extend files: nothing
    /// was read from the body, which comes back.
    Declined(ByteStream),
}

impl Debug for Extended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Appended(w) => f.debug_tuple("Appended").field(w).finish(),
            Self::Declined(_) => f.write_str("Declined"),
        }
    }
}

/// Where blob bytes live.
#[async_trait]
pub trait BlobBackend: Send + Sync + Debug + 'static {
    /// Writes `body` to a new file; fails with `InvalidInput` past `limit` bytes,
    /// leaving nothing behind. The file is durable when this returns.
    async fn write(&self, body: ByteStream, limit: u64) -> Result<Written, Error> {
        self.write_digesting(body, limit, true).await
    }
    /// [`Self::write`], computing the MD5 of the body only with `md5` (else
    /// it comes back zero: hashing costs about as much as the write itself).
    async fn write_digesting(
        &self,
        body: ByteStream,
        limit: u64,
        md5: bool,
    ) -> Result<Written, Error>;
    /// Writes the concatenation of parts of existing files, each `(file id, offset,
    /// length)`, to a new one; with `md5`, computes the MD5 of the result (else
    /// it comes back zero: a block list's blob has none, and hashing hundreds of
    /// MiB for nothing costs more than writing them).
    async fn compose(&self, parts: &[(String, u64, u64)], md5: bool) -> Result<Written, Error>;
    /// Writes a file of `size` zero bytes (sparse where the file system allows);
    /// its `md5` is not computed and comes back zero.
    async fn zeros(&self, size: u64) -> Result<Written, Error>;
    /// Appends `body` to a file that is exactly `at` bytes long, in place; fails
    /// with `InvalidInput` past `limit` bytes, leaving the file as it was. The
    /// caller serializes extends of one file and makes the new bytes visible
    /// by recording the longer size, or undoes them with [`Self::truncate`].
    /// Backends whose objects are immutable decline, and the caller composes.
    async fn extend(
        &self,
        file_id: &str,
        at: u64,
        body: ByteStream,
        limit: u64,
    ) -> Result<Extended, Error> {
        let _ = (file_id, at, limit);
        Ok(Extended::Declined(body))
    }
    /// Cuts a file back to `len` bytes: undoes an extend nobody recorded.
    async fn truncate(&self, file_id: &str, len: u64) -> Result<(), Error> {
        let _ = (file_id, len);
        Ok(())
    }
    /// Reads `len` bytes from `offset` of a file.
    async fn read(&self, file_id: &str, offset: u64, len: u64) -> Result<ByteStream, Error>;
    /// Removes files; missing ones are ignored.
    async fn remove(&self, file_ids: &[String]);
    /// Removes staging leftovers and every file not in `referenced`; returns how many.
    async fn sweep(&self, referenced: &HashSet<String>) -> Result<usize, Error>;
}

/// Files under a directory: `<root>/<2 hex>/<id>`, staging in `<root>/tmp`.
#[derive(Debug, Clone)]
pub struct LocalFiles {
    root: PathBuf,
}

/// The unit of streamed reads and copies. A chunk is a fresh buffer while the
/// one before it is still on its way out; at 1 MiB, the allocator reuses them
/// well (at 256 KiB, mimalloc made a 256 MiB download a quarter slower).
const CHUNK: usize = 1024 * 1024;

/// Reads up to this size are served from one buffer.
const SMALL_READ: u64 = 256 * 1024;

impl LocalFiles {
    /// Files under `root`, created if needed.
    ///
    /// # Errors
    /// [`ErrorKind::Unavailable`] when the directory cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, Error> {
        let root = root.into();
        std::fs::create_dir_all(root.join("tmp")).map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                format!("blob directory `{}`: {e}", root.display()),
            )
        })?;
        Ok(Self { root })
    }

    fn path(&self, file_id: &str) -> Result<PathBuf, Error> {
        let valid = file_id.len() == 32 && file_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(Error::internal(format!("malformed file id `{file_id}`")));
        }
        Ok(self
            .root
            .join(file_id.get(..2).unwrap_or("00"))
            .join(file_id))
    }

    /// Links a composition of parts that all start at offset 0 of plain files
    /// (see the module documentation) and returns its id and length; `None` when
    /// a part is not such a file, to be copied instead. Blocking.
    fn link(&self, parts: &[(String, u64, u64)]) -> Result<Option<(String, u64)>, Error> {
        let mut sources = Vec::with_capacity(parts.len());
        for (part, offset, len) in parts {
            let path = self.path(part)?;
            let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
            if *offset != 0 || !meta.is_file() || meta.len() < *len {
                return Ok(None);
            }
            sources.push((path, *len));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.root.join("tmp").join(&id);
        std::fs::create_dir(&tmp).map_err(|e| io_error(&tmp, e))?;
        let linked = (|| {
            let mut size = 0u64;
            for (index, (source, len)) in sources.iter().enumerate() {
                let name = tmp.join(format!("{index:06}.{len}"));
                std::fs::hard_link(source, &name).map_err(|e| io_error(source, e))?;
                size += len;
            }
            std::fs::File::open(&tmp)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(&tmp, e))?;
            let target = self.path(&id)?;
            if let Some(dir) = target.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
            }
            std::fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))?;
            if let Some(dir) = target.parent()
                && let Ok(d) = std::fs::File::open(dir)
            {
                let _ = d.sync_all();
            }
            Ok(size)
        })();
        match linked {
            Ok(size) => Ok(Some((id, size))),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// The first `len` bytes of a linked composition as `(path, length)`
    /// pieces. Blocking.
    fn pieces(&self, file_id: &str, len: u64) -> Result<Vec<(PathBuf, u64)>, Error> {
        let all = linked_pieces(&self.path(file_id)?)?;
        let mut out = Vec::new();
        let mut left = len;
        for (piece, piece_len) in all {
            if left == 0 {
                break;
            }
            let take = piece_len.min(left);
            if take > 0 {
                out.push((piece, take));
            }
            left -= take;
        }
        if left > 0 {
            return Err(Error::internal(format!(
                "blob file `{file_id}` is shorter than the {len} bytes asked"
            )));
        }
        Ok(out)
    }

    async fn stage(&self) -> Result<(String, PathBuf, tokio::fs::File), Error> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tmp = self.root.join("tmp").join(&id);
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_error(&tmp, e))?;
        Ok((id, tmp, file))
    }

    /// The parts of [`BlobBackend::compose`], written into a staged file.
    async fn compose_into(
        &self,
        parts: &[(String, u64, u64)],
        tmp: &Path,
        mut file: tokio::fs::File,
        digest: bool,
    ) -> Result<(tokio::fs::File, u64, [u8; 16]), Error> {
        let mut md5 = digest.then(Md5::new);
        let mut size = 0u64;
        for (part, offset, len) in parts {
            let path = self.path(part)?;
            let mut src = self.read(part, *offset, *len).await?;
            while let Some(chunk) = src.next().await {
                let chunk = chunk.map_err(|e| io_error(&path, e))?;
                let n = chunk.len();
                if let Some(md5) = md5.as_mut() {
                    md5.update(&chunk);
                }
                if chunk.iter().all(|b| *b == 0) {
                    // Zeros stay a hole (page blobs are mostly holes); the length
                    // is set at the end.
                    file.seek(io::SeekFrom::Current(i64::try_from(n).unwrap_or(i64::MAX)))
                        .await
                        .map_err(|e| io_error(tmp, e))?;
                } else {
                    file.write_all(&chunk).await.map_err(|e| io_error(tmp, e))?;
                }
                size += n as u64;
            }
        }
        file.set_len(size).await.map_err(|e| io_error(tmp, e))?;
        Ok((file, size, md5.map_or([0; 16], |m| m.finalize().into())))
    }

    async fn publish(&self, id: &str, tmp: &Path, mut file: tokio::fs::File) -> Result<(), Error> {
        file.flush().await.map_err(|e| io_error(tmp, e))?;
        file.sync_all().await.map_err(|e| io_error(tmp, e))?;
        drop(file);
        let target = self.path(id)?;
        if let Some(dir) = target.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io_error(dir, e))?;
        }
        tokio::fs::rename(tmp, &target)
            .await
            .map_err(|e| io_error(&target, e))?;
        if let Some(dir) = target.parent() {
            // The rename is durable once the directory is.
            if let Ok(d) = tokio::fs::File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BlobBackend for LocalFiles {
    async fn write_digesting(
        &self,
        body: ByteStream,
        limit: u64,
        md5: bool,
    ) -> Result<Written, Error> {
        let (id, tmp, file) = self.stage().await?;
        let mut file = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let (size, md5) = match pour(body, &mut file, limit, &tmp, md5).await {
            Ok(done) => done,
            Err(e) => {
                drop(file);
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        self.publish(&id, &tmp, file.into_inner()).await?;
        Ok(Written {
            file_id: id,
            size,
            md5,
        })
    }

    async fn extend(
        &self,
        file_id: &str,
        at: u64,
        body: ByteStream,
        limit: u64,
    ) -> Result<Extended, Error> {
        let path = self.path(file_id)?;
        let mut file = match tokio::fs::OpenOptions::new().write(true).open(&path).await {
            Ok(f) => f,
            // A linked composition is not extended in place: the caller composes.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
                ) =>
            {
                return Ok(Extended::Declined(body));
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        let len = file.metadata().await.map_err(|e| io_error(&path, e))?.len();
        if len != at {
            return Ok(Extended::Declined(body));
        }
        file.seek(io::SeekFrom::Start(at))
            .await
            .map_err(|e| io_error(&path, e))?;
        let mut file = tokio::io::BufWriter::with_capacity(CHUNK, file);
        let poured = pour(body, &mut file, limit, &path, true).await;
        let file = file.into_inner();
        let synced = match poured {
            Ok(done) => file
                .sync_data()
                .await
                .map(|()| done)
                .map_err(|e| io_error(&path, e)),
            Err(e) => Err(e),
        };
        match synced {
            Ok((size, md5)) => Ok(Extended::Appended(Written {
                file_id: file_id.to_owned(),
                size,
                md5,
            })),
            Err(e) => {
                if file.set_len(at).await.is_ok() {
                    let _ = file.sync_data().await;
                }
                Err(e)
            }
        }
    }

    async fn truncate(&self, file_id: &str, len: u64) -> Result<(), Error> {
        let path = self.path(file_id)?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        file.set_len(len).await.map_err(|e| io_error(&path, e))?;
        file.sync_data().await.map_err(|e| io_error(&path, e))
    }

    async fn compose(&self, parts: &[(String, u64, u64)], md5: bool) -> Result<Written, Error> {
        let linked = if !parts.is_empty() && parts.iter().all(|(_, offset, _)| *offset == 0) {
            let this = self.clone();
            let owned = parts.to_vec();
            tokio::task::spawn_blocking(move || this.link(&owned))
                .await
                .map_err(|e| Error::internal(format!("link task failed: {e}")))??
        } else {
            None
        };
        if let Some((id, size)) = linked {
            let mut digest = [0; 16];
            if md5 {
                let mut hasher = Md5::new();
                let mut bytes = self.read(&id, 0, size).await?;
                while let Some(chunk) = bytes.next().await {
                    hasher.update(&chunk.map_err(|e| Error::internal(e.to_string()))?);
                }
                digest = hasher.finalize().into();
            }
            return Ok(Written {
                file_id: id,
                size,
                md5: digest,
            });
        }
        let (id, tmp, file) = self.stage().await?;
        match self.compose_into(parts, &tmp, file, md5).await {
            Ok((file, size, md5)) => {
                self.publish(&id, &tmp, file).await?;
                Ok(Written {
                    file_id: id,
                    size,
                    md5,
                })
            }
            Err(e) => {
                // A part that cannot be read leaves no staging file behind.
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    async fn zeros(&self, size: u64) -> Result<Written, Error> {
        let (id, tmp, file) = self.stage().await?;
        file.set_len(size).await.map_err(|e| io_error(&tmp, e))?;
        self.publish(&id, &tmp, file).await?;
        Ok(Written {
            file_id: id,
            size,
            md5: [0; 16],
        })
    }

    async fn read(&self, file_id: &str, offset: u64, len: u64) -> Result<ByteStream, Error> {
        let path = self.path(file_id)?;
        if len <= SMALL_READ {
            // One blocking hop for open, seek and read instead of one each
            // (`None`: a linked composition, read piece by piece).
            let bytes = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek};
                let mut file = std::fs::File::open(&path).map_err(|e| io_error(&path, e))?;
                if file.metadata().is_ok_and(|m| m.is_dir()) {
                    return Ok(None);
                }
                file.seek(io::SeekFrom::Start(offset))
                    .map_err(|e| io_error(&path, e))?;
                let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
                file.read_exact(&mut buf).map_err(|e| io_error(&path, e))?;
                Ok::<_, Error>(Some(Bytes::from(buf)))
            })
            .await
            .map_err(|e| Error::internal(format!("read task failed: {e}")))??;
            return match bytes {
                Some(bytes) => Ok(Box::pin(futures_util::stream::once(
                    async move { Ok(bytes) },
                ))),
                None => self.read_linked(file_id, offset, len).await,
            };
        }
        if tokio::fs::symlink_metadata(&path)
            .await
            .is_ok_and(|m| m.is_dir())
        {
            return self.read_linked(file_id, offset, len).await;
        }
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(&path, e))?;
        Ok(chunks(file.into_std().await, offset, len))
    }

    async fn remove(&self, file_ids: &[String]) {
        for id in file_ids {
            let Ok(path) = self.path(id) else { continue };
            let linked = tokio::fs::symlink_metadata(&path)
                .await
                .is_ok_and(|m| m.is_dir());
            let removed = if linked {
                tokio::fs::remove_dir_all(&path).await
            } else {
                tokio::fs::remove_file(&path).await
            };
            if let Err(e) = removed
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(file = %path.display(), error = %e, "could not remove a released blob file");
            }
        }
    }

    async fn sweep(&self, referenced: &HashSet<String>) -> Result<usize, Error> {
        let root = self.root.clone();
        let referenced = referenced.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            let entries = std::fs::read_dir(&root).map_err(|e| io_error(&root, e))?;
            for dir in entries.flatten() {
                let is_tmp = dir.file_name() == "tmp";
                let Ok(files) = std::fs::read_dir(dir.path()) else {
                    continue;
                };
                for f in files.flatten() {
                    let name = f.file_name().to_string_lossy().into_owned();
                    let linked = f.file_type().is_ok_and(|t| t.is_dir());
                    let gone = |path| {
                        if linked {
                            std::fs::remove_dir_all(path)
                        } else {
                            std::fs::remove_file(path)
                        }
                    };
                    if (is_tmp || !referenced.contains(&name)) && gone(f.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await
        .map_err(|e| Error::internal(format!("sweep task failed: {e}")))?
    }
}

impl LocalFiles {
    /// Reads `len` bytes from `offset` of a linked composition, piece by piece.
    async fn read_linked(&self, file_id: &str, offset: u64, len: u64) -> Result<ByteStream, Error> {
        let this = self.clone();
        let id = file_id.to_owned();
        let pieces = tokio::task::spawn_blocking(move || this.pieces(&id, offset + len))
            .await
            .map_err(|e| Error::internal(format!("read task failed: {e}")))??;
        // The pieces the range covers: (path, offset in the piece, length).
        let mut segments = Vec::new();
        let mut at = 0u64;
        for (path, piece) in pieces {
            let start = offset.max(at);
            let end = (offset + len).min(at + piece);
            if start < end {
                segments.push((path, start - at, end - start));
            }
            at += piece;
        }
        let streams = segments.into_iter().map(|(path, from, n)| {
            futures_util::stream::once(async move {
                let file = tokio::fs::File::open(&path).await?;
                Ok::<_, io::Error>(chunks(file.into_std().await, from, n))
            })
            .try_flatten()
        });
        Ok(Box::pin(futures_util::stream::iter(streams).flatten()))
    }
}

/// `len` bytes of `file` from `offset`, a chunk at a time, each read on the
/// blocking pool straight into the buffer it is sent in. (`tokio::fs::File`
/// reads into a buffer of its own and copies from it: a second pass over
/// every byte of a download.) Fails with `UnexpectedEof` if the file ends
/// before `len` bytes.
fn chunks(file: std::fs::File, offset: u64, len: u64) -> ByteStream {
    let file = std::sync::Arc::new(file);
    let step = move |at: u64| {
        let file = std::sync::Arc::clone(&file);
        async move {
            if at >= len {
                return Ok(None);
            }
            let n = usize::try_from((len - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            let bytes = tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt as _;
                let mut buf = vec![0u8; n];
                file.read_exact_at(&mut buf, offset + at)?;
                Ok::<_, io::Error>(Bytes::from(buf))
            })
            .await
            .map_err(io::Error::other)??;
            Ok(Some((bytes, at + n as u64)))
        }
    };
    Box::pin(futures_util::stream::try_unfold(0u64, step))
}

/// The pieces of a linked composition in order, as `(path, length)`. Blocking.
fn linked_pieces(dir: &Path) -> Result<Vec<(PathBuf, u64)>, Error> {
    let mut pieces = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let parsed = name.to_str().and_then(|n| {
            let (index, len) = n.split_once('.')?;
            Some((index.parse::<u64>().ok()?, len.parse::<u64>().ok()?))
        });
        let (index, len) = parsed.ok_or_else(|| {
            Error::internal(format!("a stray piece in composition `{}`", dir.display()))
        })?;
        pieces.push((index, entry.path(), len));
    }
    pieces.sort_by_key(|(index, _, _)| *index);
    Ok(pieces
        .into_iter()
        .map(|(_, path, len)| (path, len))
        .collect())
}

/// Writes `body` through `file` (flushed at the end); fails with `InvalidInput`
/// past `limit` bytes. Returns the length and MD5 of what it wrote.
async fn pour(
    mut body: ByteStream,
    file: &mut tokio::io::BufWriter<tokio::fs::File>,
    limit: u64,
    path: &Path,
    digest: bool,
) -> Result<(u64, [u8; 16]), Error> {
    let mut md5 = digest.then(Md5::new);
    let mut size: u64 = 0;
    let mut behind = SyncBehind::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| Error::invalid(format!("the request body could not be read: {e}")))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Error::invalid(format!(
                "the body is larger than the {limit} bytes this operation accepts"
            )));
        }
        if let Some(md5) = md5.as_mut() {
            md5.update(&chunk);
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| io_error(path, e))?;
        behind
            .after(file, size)
            .await
            .map_err(|e| io_error(path, e))?;
    }
    file.flush().await.map_err(|e| io_error(path, e))?;
    behind.finish().await.map_err(|e| io_error(path, e))?;
    Ok((size, md5.map_or([0; 16], |m| m.finalize().into())))
}

/// While a large body is written, what has been written so far is synced in
/// the background every this many bytes, so that the disk works while the
/// body arrives and the sync that makes the whole durable finds little left
/// (what PostgreSQL's `*_flush_after` settings do).
const SYNC_BEHIND: u64 = 16 * 1024 * 1024;

/// The background syncs of one write: at most one at a time, and a failed one
/// fails the write (after a failed sync, a later one may succeed with the
/// bytes lost).
#[derive(Default)]
struct SyncBehind {
    file: Option<std::sync::Arc<std::fs::File>>,
    running: Option<tokio::task::JoinHandle<io::Result<()>>>,
    synced: u64,
}

impl SyncBehind {
    /// Starts a sync of the first `size` bytes when [`SYNC_BEHIND`] more have
    /// been written since the last one began and it has ended.
    async fn after(
        &mut self,
        file: &mut tokio::io::BufWriter<tokio::fs::File>,
        size: u64,
    ) -> io::Result<()> {
        if size - self.synced < SYNC_BEHIND
            || self.running.as_ref().is_some_and(|r| !r.is_finished())
        {
            return Ok(());
        }
        self.finish().await?;
        file.flush().await?;
        let shadow = match &self.file {
            Some(f) => std::sync::Arc::clone(f),
            None => {
                let dup = std::sync::Arc::new(file.get_ref().try_clone().await?.into_std().await);
                self.file = Some(std::sync::Arc::clone(&dup));
                dup
            }
        };
        self.running = Some(tokio::task::spawn_blocking(move || shadow.sync_data()));
        self.synced = size;
        Ok(())
    }

    /// Waits for the sync under way, if any, and gives its failure.
    async fn finish(&mut self) -> io::Result<()> {
        match self.running.take() {
            Some(running) => running.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

fn io_error(path: &Path, e: io::Error) -> Error {
    Error::internal(format!("blob file `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn read_all(files: &LocalFiles, id: &str, offset: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = files.read(id, offset, len).await.unwrap();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_body_past_several_background_syncs_is_written_whole() {
        // Past three SYNC_BEHIND marks, in chunks of an odd size, so that syncs
        // start mid-body and one may still run at its end.
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::new(dir.path()).unwrap();
        let mut data = Vec::with_capacity(50 << 20);
        let mut x: u32 = 7;
        while data.len() < (50 << 20) + 12_345 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            data.extend_from_slice(&x.to_le_bytes());
        }
        let chunks: Vec<io::Result<Bytes>> = data
            .chunks(777_777)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let written = files
            .write(Box::pin(futures_util::stream::iter(chunks)), u64::MAX)
            .await
            .unwrap();
        assert_eq!(written.size, data.len() as u64);
        assert_eq!(written.md5, <[u8; 16]>::from(Md5::digest(&data)));
        let back = read_all(&files, &written.file_id, 0, written.size).await;
        assert!(
            back == data,
            "the bytes read back differ from those written"
        );
    }

    #[tokio::test]
    async fn extends_a_file_in_place_only_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::new(dir.path()).unwrap();
        let a = files.write(body(&[b"log "]), 100).await.unwrap();
        let Extended::Appended(more) = files
            .extend(&a.file_id, 4, body(&[b"line ", b"one"]), 100)
            .await
            .unwrap()
        else {
            panic!("a file of the length asked is extended");
        };
        assert_eq!((more.file_id.as_str(), more.size), (a.file_id.as_str(), 8));
        assert_eq!(more.md5, <[u8; 16]>::from(Md5::digest(b"line one")));
        assert_eq!(read_all(&files, &a.file_id, 0, 12).await, b"log line one");
        // A caller that thinks the file shorter (or longer) gets its body back,
        // and the file is untouched.
        for at in [4, 13] {
            let Extended::Declined(mut back) = files
                .extend(&a.file_id, at, body(&[b"x"]), 100)
                .await
                .unwrap()
            else {
                panic!("an extend at {at} of a 12-byte file is declined");
            };
            assert_eq!(back.next().await.unwrap().unwrap(), &b"x"[..]);
        }
        // Too large: refused, and the file is as it was.
        let err = files
            .extend(&a.file_id, 12, body(&[b"0123", b"456789"]), 5)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let on_disk = std::fs::read(files.path(&a.file_id).unwrap()).unwrap();
        assert_eq!(on_disk, b"log line one");
        // An extend nobody recorded is cut off again.
        files.truncate(&a.file_id, 4).await.unwrap();
        assert_eq!(
            std::fs::read(files.path(&a.file_id).unwrap()).unwrap(),
            b"log "
        );
    }

    #[tokio::test]
    async fn writes_compose_reads_and_sweeps() {
        let dir = tempfile::tempdir().unwrap();
        let files = LocalFiles::new(dir.path()).unwrap();
        let a = files
            .write(body(&[b"hello ", b"world"]), 100)
            .await
            .unwrap();
        assert_eq!(a.size, 11);
        assert_eq!(a.md5, <[u8; 16]>::from(Md5::digest(b"hello world")));
        assert_eq!(read_all(&files, &a.file_id, 6, 5).await, b"world");
        let b = files.write(body(&[b"!"]), 100).await.unwrap();
        let c = files
            .compose(
                &[(a.file_id.clone(), 0, 11), (b.file_id.clone(), 0, 1)],
                true,
            )
            .await
            .unwrap();
        assert_eq!(
            read_all(&files, &c.file_id, 0, c.size).await,
            b"hello world!"
        );
        let d = files
            .compose(
                &[(a.file_id.clone(), 6, 5), (a.file_id.clone(), 0, 5)],
                true,
            )
            .await
            .unwrap();
        assert_eq!(read_all(&files, &d.file_id, 0, d.size).await, b"worldhello");
        let z = files.zeros(4096).await.unwrap();
        assert_eq!(read_all(&files, &z.file_id, 1000, 24).await, vec![0u8; 24]);
        files.remove(std::slice::from_ref(&z.file_id)).await;

        // Too large: refused, nothing staged is left.
        assert_eq!(
            files
                .write(body(&[b"0123456789"]), 5)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );

        std::fs::write(dir.path().join("tmp").join("leftover"), b"x").unwrap();
        let keep: HashSet<String> = [c.file_id.clone()].into();
        assert_eq!(
            files.sweep(&keep).await.unwrap(),
            4,
            "a, b, d and the staging leftover"
        );
        assert_eq!(read_all(&files, &c.file_id, 0, 12).await, b"hello world!");
        assert!(files.read(&a.file_id, 0, 1).await.is_err());
    }
}
