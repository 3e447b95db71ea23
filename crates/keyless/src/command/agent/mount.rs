//! The job's mounts: `ro_mount` inputs and `rw_mount` outputs, served by the
//! agent as one FUSE file system on the connection the sandbox mounted at
//! `<job>/mounts` and handed over as the agent's standard input.
//!
//! Every byte goes through the storage listener with the job's own access
//! (the identity's token, or a SAS keyless signed for the job), asked of the
//! agent API again before it expires, so the storage log names the job for
//! every read and write:
//! - the tree of each mount is listed when the job starts (List Blobs, every
//!   page), folders of hierarchical accounts included;
//! - a file is read by ranges of [`BLOCK`] bytes, kept in a bounded cache on
//!   the node's disk ([`CACHE_BUDGET`]), with the next blocks fetched ahead
//!   while a file is read in order;
//! - a file written in an `rw_mount` is staged on the node's disk and reaches
//!   the storage when it is closed (one Put Blob, or blocks when large);
//!   removals and renames are the storage's deletes and writes; what is still
//!   unwritten when the command ends is written before the job finishes.
//!
//! A refusal of the storage is `EACCES` for the command, and the storage's
//! explanation goes to the job's log.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, Failure, STORAGE_VERSION};

/// The bytes fetched by one range read, and the unit of the cache.
const BLOCK: u64 = 4 * 1024 * 1024;
/// How many blocks past the one read are fetched while a file is read in order.
const READ_AHEAD: u64 = 8;
/// How many block fetches run at once, for all files.
const FETCHES: usize = 8;
/// The most the block cache keeps on the node's disk.
const CACHE_BUDGET: u64 = 1024 * 1024 * 1024;
/// The most it keeps in the agent's memory.
const MEMORY_BUDGET: u64 = 64 * 1024 * 1024;
/// How far from the end of the last read of a file a read may start and
/// still count as reading in order.
const IN_ORDER_SLACK: u64 = 1024 * 1024;
/// The access to a mount is asked for again this long before it expires.
const RENEW_BEFORE: i64 = 300;
/// How long the kernel may keep what it was told of a read-only tree.
const RO_TTL: Duration = Duration::from_secs(60);
/// …and of a read-write one, which the agent itself changes.
const RW_TTL: Duration = Duration::from_secs(1);

/// One mount of the job's plan.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct MountSpec {
    pub(super) port: String,
    /// `input` or `output`.
    pub(super) direction: String,
    /// Its folder under the mounts (`inputs/<port>`, `outputs/<port>`).
    pub(super) dir: String,
    /// A `uri_file`: the one file the mount shows.
    pub(super) file: Option<String>,
}

/// What the agent API answers for a mount.
#[derive(Debug, Deserialize)]
struct Grant {
    container: String,
    prefix: String,
    authorization: Option<String>,
    sas: Option<String>,
}

/// The access in use for one mount, and when it must be renewed.
#[derive(Debug, Clone)]
struct Access {
    authorization: Option<String>,
    sas: Option<String>,
    expires: i64,
}

/// One mounted port: where its blobs lie and how they are reached.
struct Port {
    spec: MountSpec,
    container: String,
    prefix: String,
    access: tokio::sync::Mutex<Access>,
}

#[derive(Debug)]
struct Node {
    parent: u64,
    name: String,
    /// The port it belongs to; `None` for the folders above the ports.
    port: Option<usize>,
    kind: Kind,
    mtime: SystemTime,
}

#[derive(Debug)]
enum Kind {
    Dir(BTreeMap<String, u64>),
    File(FileState),
}

#[derive(Debug, Default)]
struct FileState {
    /// The blob's name, under the port's prefix.
    blob: String,
    size: u64,
    /// The blob exists on the storage (as `size` bytes, unless staged).
    stored: bool,
    /// The local copy the file is written in, when it is being written.
    staged: Option<PathBuf>,
    /// The staged copy differs from the blob.
    dirty: bool,
}

struct Tree {
    nodes: HashMap<u64, Node>,
    next: u64,
}

/// The mounts' file system.
pub(super) struct Mounts {
    api: Arc<Api>,
    rt: tokio::runtime::Handle,
    ports: Vec<Port>,
    tree: Mutex<Tree>,
    cache: Cache,
    staging: PathBuf,
    uid: u32,
    gid: u32,
    /// For each file: where its last read ended, to see reading in order,
    /// and the block read-ahead has reached.
    reads: Mutex<HashMap<u64, (u64, u64)>>,
    /// Read-only files are opened for direct I/O (the kernel can map them).
    direct_io: std::sync::atomic::AtomicBool,
}

/// A storage request's failure, as the command sees it and as the log explains it.
#[derive(Debug)]
struct Refusal {
    errno: Errno,
    why: String,
}

impl Refusal {
    fn io(why: impl Into<String>) -> Self {
        Self {
            errno: Errno::EIO,
            why: why.into(),
        }
    }
}

impl Mounts {
    /// Asks for each mount's access, lists its tree, and serves the mounts on
    /// the FUSE connection the agent was handed as its standard input. The
    /// session runs until the agent exits.
    pub(super) async fn serve(
        api: Arc<Api>,
        root: &Path,
        specs: &[MountSpec],
    ) -> Result<(Arc<Self>, fuser::BackgroundSession), Failure> {
        let connection = fuse_connection()?;
        let mut ports = Vec::with_capacity(specs.len());
        for spec in specs {
            let (grant, access) = grant(&api, spec).await?;
            ports.push(Port {
                spec: spec.clone(),
                container: grant.container.trim_end_matches('/').to_owned(),
                prefix: grant.prefix,
                access: tokio::sync::Mutex::new(access),
            });
        }
        let failed = |e: std::io::Error| Failure::new("MountFailed", e.to_string());
        let cache_dir = root.join(".mount-cache");
        let staging = root.join(".mount-staging");
        for d in [&cache_dir, &staging] {
            tokio::fs::create_dir_all(d).await.map_err(failed)?;
        }
        let mounts = Arc::new(Self {
            api,
            rt: tokio::runtime::Handle::current(),
            ports,
            tree: Mutex::new(Tree {
                nodes: HashMap::new(),
                next: 2,
            }),
            cache: Cache::new(cache_dir),
            staging,
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            reads: Mutex::new(HashMap::new()),
            direct_io: std::sync::atomic::AtomicBool::new(false),
        });
        mounts.build().await?;
        let fs = Fuse(Arc::clone(&mounts));
        let mut config = fuser::Config::default();
        config.n_threads = Some(4);
        let session = tokio::task::spawn_blocking(move || {
            fuser::Session::from_fd(fs, connection, fuser::SessionACL::Owner, config)
                .and_then(fuser::Session::spawn)
        })
        .await
        .map_err(|e| Failure::new("MountFailed", e.to_string()))?
        .map_err(|e| Failure::new("MountFailed", format!("the FUSE session failed: {e}")))?;
        // The session serves until the agent exits; the sandbox's namespace
        // takes the mount with it.
        Ok((mounts, session))
    }

    /// Lists every mount's blobs and builds the tree.
    async fn build(&self) -> Result<(), Failure> {
        let now = SystemTime::now();
        let mut tree = Tree {
            nodes: HashMap::new(),
            next: 2,
        };
        tree.nodes.insert(
            INodeNo::ROOT.0,
            Node {
                parent: INodeNo::ROOT.0,
                name: String::new(),
                port: None,
                kind: Kind::Dir(BTreeMap::new()),
                mtime: now,
            },
        );
        for (index, port) in self.ports.iter().enumerate() {
            let mut parent = INodeNo::ROOT.0;
            let parts: Vec<&str> = port.spec.dir.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let is_port = i + 1 == parts.len();
                parent = tree.dir(parent, part, is_port.then_some(index), now);
            }
            let listed = self.list(index).await.map_err(|r| {
                Failure::new(
                    if port.spec.direction == "output" {
                        "OutputAccessDenied"
                    } else {
                        "InputAccessDenied"
                    },
                    format!("{} `{}`: {}", port.spec.direction, port.spec.port, r.why),
                )
            })?;
            for (name, size, mtime, folder) in listed {
                let Some(rel) = name.strip_prefix(&port.prefix) else {
                    continue;
                };
                if let Some(only) = &port.spec.file
                    && rel != only
                {
                    continue;
                }
                if keyless_ml::snapshot::check_path(rel).is_err() {
                    continue;
                }
                let mut at = parent;
                let segments: Vec<&str> = rel.split('/').collect();
                for (i, seg) in segments.iter().enumerate() {
                    let last = i + 1 == segments.len();
                    if last && !folder {
                        tree.file(
                            at,
                            seg,
                            index,
                            FileState {
                                blob: name.clone(),
                                size,
                                stored: true,
                                ..FileState::default()
                            },
                            mtime,
                        );
                    } else {
                        at = tree.dir(at, seg, Some(index), mtime);
                    }
                }
            }
        }
        *self.tree.lock().unwrap_or_else(PoisonError::into_inner) = tree;
        Ok(())
    }

    /// Every blob under a port's prefix: name, size, last change, whether it is
    /// a folder of a hierarchical account.
    async fn list(&self, port: usize) -> Result<Vec<(String, u64, SystemTime, bool)>, Refusal> {
        let p = self.port(port)?;
        let prefix = match &p.spec.file {
            Some(f) => format!("{}{f}", p.prefix),
            None => p.prefix.clone(),
        };
        let mut out = Vec::new();
        let mut marker = String::new();
        loop {
            let mut query = vec![
                ("restype", "container"),
                ("comp", "list"),
                ("include", "metadata"),
                ("maxresults", "5000"),
                ("prefix", prefix.as_str()),
            ];
            if !marker.is_empty() {
                query.push(("marker", marker.as_str()));
            }
            let response = self
                .send(port, reqwest::Method::GET, None, &query, &[], None)
                .await?;
            let text = response
                .text()
                .await
                .map_err(|e| Refusal::io(format!("the listing broke off: {e}")))?;
            for blob in text.split("<Blob>").skip(1) {
                let value = |tag: &str| crate::command::storage::data::xml_values(blob, tag).pop();
                let Some(name) = value("Name") else { continue };
                let size = value("Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mtime = value("Last-Modified")
                    .and_then(|v| httpdate::parse_http_date(&v).ok())
                    .unwrap_or_else(SystemTime::now);
                let folder = value("hdi_isfolder").is_some_and(|v| v == "true");
                out.push((name, size, mtime, folder));
            }
            marker = crate::command::storage::data::xml_values(&text, "NextMarker")
                .pop()
                .unwrap_or_default();
            if marker.is_empty() {
                return Ok(out);
            }
        }
    }

    /// Sends one storage request for a port, with its access (renewed first
    /// when it is about to expire): `blob` names the blob, or the container
    /// when `None`. A refusal comes back with the storage's explanation.
    async fn send(
        &self,
        port: usize,
        method: reqwest::Method,
        blob: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, Refusal> {
        let access = self.access(port).await?;
        let p = self.port(port)?;
        let mut url = p.container.clone();
        if let Some(b) = blob {
            url.push('/');
            url.push_str(&encode_blob(b));
        }
        let mut pairs: Vec<String> = query
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
            .collect();
        if let Some(sas) = &access.sas {
            pairs.push(sas.clone());
        }
        if !pairs.is_empty() {
            url.push('?');
            url.push_str(&pairs.join("&"));
        }
        let mut request = self
            .api
            .http
            .request(method, url)
            .header("x-ms-version", STORAGE_VERSION);
        if let Some(a) = &access.authorization {
            request = request.header("authorization", a);
        }
        for (k, v) in headers {
            request = request.header(*k, v);
        }
        if let Some(b) = body {
            request = request.body(b);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Refusal::io(format!("the storage cannot be reached: {e}")))?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(response);
        }
        let errno = match status.as_u16() {
            401 | 403 => Errno::EACCES,
            409 | 412 => Errno::EBUSY,
            _ => Errno::EIO,
        };
        Err(Refusal {
            errno,
            why: super::refusal(&response),
        })
    }

    /// A port's access, asked of the agent API again when it is about to expire.
    async fn access(&self, port: usize) -> Result<Access, Refusal> {
        let p = self.port(port)?;
        let mut access = p.access.lock().await;
        if access.expires - now() < RENEW_BEFORE {
            let (_, renewed) = grant(&self.api, &p.spec).await.map_err(|f| {
                Refusal::io(format!("the mount's access was not renewed: {}", f.message))
            })?;
            *access = renewed;
        }
        Ok(access.clone())
    }

    /// Tells the job's log why a mount refused the command something.
    fn explain(&self, what: &str, refusal: &Refusal) {
        let api = Arc::clone(&self.api);
        let line = format!("mount: {what}: {}\n", refusal.why);
        self.rt.spawn(async move {
            let _ = api
                .send("log", |url| {
                    api.http
                        .post(url)
                        .header("x-keyless-job-secret", &api.secret)
                        .body(line.clone())
                })
                .await;
        });
    }

    fn port(&self, index: usize) -> Result<&Port, Refusal> {
        self.ports
            .get(index)
            .ok_or_else(|| Refusal::io(format!("the agent serves no mount {index}")))
    }

    /// Whether port `index` is an output, which the command may change.
    fn writes(&self, index: usize) -> bool {
        self.ports
            .get(index)
            .is_some_and(|p| p.spec.direction == "output")
    }

    /// The one file port `index` shows, for a `uri_file`.
    fn only(&self, index: usize) -> Option<&str> {
        self.ports.get(index).and_then(|p| p.spec.file.as_deref())
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn attr(&self, ino: u64, node: &Node) -> FileAttr {
        let writable = node.port.is_some_and(|p| self.writes(p));
        let (kind, size, perm, nlink) = match &node.kind {
            Kind::Dir(_) => (
                FileType::Directory,
                0,
                if writable { 0o755 } else { 0o555 },
                2,
            ),
            Kind::File(f) => (
                FileType::RegularFile,
                f.size,
                if writable { 0o644 } else { 0o444 },
                1,
            ),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    fn ttl(&self, node: &Node) -> Duration {
        match node.port {
            Some(p) if self.writes(p) => RW_TTL,
            _ => RO_TTL,
        }
    }

    /// The port of a folder the command may change, or why not.
    fn writable_dir(&self, tree: &Tree, ino: u64) -> Result<usize, Errno> {
        let node = tree.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        let Kind::Dir(_) = node.kind else {
            return Err(Errno::ENOTDIR);
        };
        match node.port {
            Some(p) if self.writes(p) => Ok(p),
            _ => Err(Errno::EROFS),
        }
    }

    /// The blob name of `name` in the folder `parent` of port `port`.
    fn blob_of(&self, tree: &Tree, port: usize, parent: u64, name: &str) -> String {
        let mut parts = vec![name.to_owned()];
        let mut at = parent;
        while let Some(node) = tree.nodes.get(&at) {
            if node.port != Some(port) || tree.is_port_root(at) {
                break;
            }
            parts.push(node.name.clone());
            at = node.parent;
        }
        parts.reverse();
        let prefix = self.ports.get(port).map_or("", |p| p.prefix.as_str());
        format!("{prefix}{}", parts.join("/"))
    }

    /// Block `index` of file `ino` (blob `blob`, `size` bytes): in memory, on
    /// the node's disk, or fetched now (once, however many reads wait for it).
    async fn block(
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
            if let Some(chunks) = state.memory.get(key) {
                return Ok(Held::Memory(chunks));
            }
            if state.disk.get(key).is_some() {
                return Ok(Held::Disk);
            }
            if let Some(f) = state.fetching.get(&key) {
                f.clone()
            } else {
                let me = Arc::clone(self);
                let blob = blob.to_owned();
                let f: BoxFuture<'static, Result<Arc<Chunks>, Arc<Refusal>>> = async move {
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
    async fn fetch(
        &self,
        port: usize,
        key: Key,
        blob: &str,
        size: u64,
    ) -> Result<Arc<Chunks>, Refusal> {
        use futures_util::StreamExt as _;
        let _slot = self.cache.fetches.acquire().await;
        let start = key.1 * BLOCK;
        let end = (start + BLOCK).min(size);
        if start >= end {
            return Ok(Arc::new(Chunks(Vec::new())));
        }
        let response = self.get_range(port, blob, (start, end)).await?;
        let mut chunks = Vec::new();
        let mut len = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Refusal::io(format!("the read broke off: {e}")))?;
            len += chunk.len() as u64;
            chunks.push(chunk);
        }
        if len != end - start {
            return Err(Refusal::io(format!(
                "the storage sent {len} bytes of {blob} at {start} where {} were asked for",
                end - start
            )));
        }
        let chunks = Arc::new(Chunks(chunks));
        let again = !self.cache.lock().fetched.insert(key);
        if again {
            let path = self.cache.path(key);
            let kept = Arc::clone(&chunks);
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
            .insert(key, len, Arc::clone(&chunks));
        Ok(chunks)
    }

    /// Notes a read of `offset..end` of file `ino` and, when the file is read
    /// in order (where the last read ended, give or take the reads the kernel
    /// has in flight at once, which arrive in any order), starts fetching the
    /// [`READ_AHEAD`] blocks after it that no read asked for yet.
    fn read_ahead(
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
    fn on_disk(&self, ino: u64, (offset, end): (u64, u64)) -> bool {
        let state = self.cache.lock();
        (offset / BLOCK..=end.saturating_sub(1) / BLOCK).all(|i| state.disk.contains((ino, i)))
    }

    /// Asks the storage for `start..end` of a blob; the body is the caller's
    /// to read.
    async fn get_range(
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
    async fn read_range(
        &self,
        port: usize,
        blob: &str,
        (offset, end): (u64, u64),
    ) -> Result<Vec<u8>, Refusal> {
        if offset >= end {
            return Ok(Vec::new());
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
        Ok(bytes.to_vec())
    }

    /// `offset..end` of file `ino` when every block of it is in memory.
    fn read_held(&self, ino: u64, (offset, end): (u64, u64)) -> Option<Vec<u8>> {
        if offset >= end {
            return Some(Vec::new());
        }
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        let mut state = self.cache.lock();
        for index in offset / BLOCK..=(end - 1) / BLOCK {
            let chunks = state.memory.get((ino, index))?;
            let from = offset.max(index * BLOCK) - index * BLOCK;
            let to = end.min((index + 1) * BLOCK) - index * BLOCK;
            chunks.copy_range(from, to, &mut out);
        }
        Some(out)
    }

    /// Reads `len` bytes at `offset` of a stored file through the cache,
    /// fetching what is missing.
    async fn read_stored(
        self: Arc<Self>,
        (port, ino): (usize, u64),
        blob: String,
        size: u64,
        (offset, len): (u64, u64),
    ) -> Result<Vec<u8>, Arc<Refusal>> {
        let end = (offset + len).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut out = Vec::with_capacity(usize::try_from(end - offset).unwrap_or(0));
        for index in first..=last {
            let from = offset.max(index * BLOCK) - index * BLOCK;
            let to = end.min((index + 1) * BLOCK) - index * BLOCK;
            // A block dropped from the disk between its lookup and its read is
            // fetched again.
            let mut tries = 0;
            loop {
                match self.block(port, ino, &blob, size, index).await? {
                    Held::Memory(chunks) => {
                        chunks.copy_range(from, to, &mut out);
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
        Ok(out)
    }

    /// Gives file `ino` a staged copy to write in: empty when `truncate`,
    /// else the blob's bytes.
    fn stage(&self, ino: u64, truncate: bool) -> Result<(), Errno> {
        let (port, blob, stored, staged) = {
            let tree = self.tree();
            let node = tree.nodes.get(&ino).ok_or(Errno::ENOENT)?;
            let Kind::File(f) = &node.kind else {
                return Err(Errno::EISDIR);
            };
            (
                node.port.ok_or(Errno::EROFS)?,
                f.blob.clone(),
                f.stored,
                f.staged.clone(),
            )
        };
        let path = match staged {
            Some(p) => {
                if truncate {
                    std::fs::File::create(&p).map_err(|_| Errno::EIO)?;
                    self.update(ino, |f| {
                        f.size = 0;
                        f.dirty = true;
                    });
                }
                return Ok(());
            }
            None => self.staging.join(ino.to_string()),
        };
        if truncate || !stored {
            std::fs::File::create(&path).map_err(|_| Errno::EIO)?;
        } else {
            let result = self.rt.block_on(self.download(port, &blob, &path));
            if let Err(r) = result {
                self.explain(&format!("reading {blob} to change it"), &r);
                return Err(r.errno);
            }
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        self.update(ino, |f| {
            f.staged = Some(path.clone());
            f.size = size;
            f.dirty = f.dirty || truncate;
        });
        self.cache.forget_file(ino);
        Ok(())
    }

    async fn download(&self, port: usize, blob: &str, path: &Path) -> Result<(), Refusal> {
        use futures_util::StreamExt as _;
        use tokio::io::AsyncWriteExt as _;
        let response = self
            .send(port, reqwest::Method::GET, Some(blob), &[], &[], None)
            .await?;
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| Refusal::io(e.to_string()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Refusal::io(format!("the read broke off: {e}")))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| Refusal::io(e.to_string()))?;
        }
        file.flush().await.map_err(|e| Refusal::io(e.to_string()))
    }

    fn update(&self, ino: u64, change: impl FnOnce(&mut FileState)) {
        if let Some(Node {
            kind: Kind::File(f),
            mtime,
            ..
        }) = self.tree().nodes.get_mut(&ino)
        {
            change(f);
            *mtime = SystemTime::now();
        }
    }

    /// Writes a staged file's bytes to its blob, if they changed.
    async fn commit(&self, ino: u64) -> Result<(), Refusal> {
        let (port, blob, path, size) = {
            let tree = self.tree();
            let Some(Node {
                kind: Kind::File(f),
                port: Some(port),
                ..
            }) = tree.nodes.get(&ino)
            else {
                return Ok(());
            };
            match (&f.staged, f.dirty) {
                (Some(p), true) => (*port, f.blob.clone(), p.clone(), f.size),
                _ => return Ok(()),
            }
        };
        let url_access = self.access(port).await?;
        let p = self.port(port)?;
        let mut url = format!("{}/{}", p.container, encode_blob(&blob));
        if let Some(sas) = &url_access.sas {
            url.push('?');
            url.push_str(sas);
        }
        super::upload(
            &self.api.http,
            &url,
            url_access.authorization.as_deref(),
            &path,
            size,
        )
        .await
        .map_err(|why| Refusal {
            errno: if why.contains(" 403 ") || why.contains(" 401 ") {
                Errno::EACCES
            } else {
                Errno::EIO
            },
            why,
        })?;
        self.update(ino, |f| {
            f.dirty = false;
            f.stored = true;
        });
        Ok(())
    }

    /// Deletes a file's blob, when it has one.
    async fn delete(&self, port: usize, blob: &str) -> Result<(), Refusal> {
        self.send(port, reqwest::Method::DELETE, Some(blob), &[], &[], None)
            .await
            .map(drop)
    }

    /// Writes every file still unwritten (the command ended with it open, or
    /// its close failed): the end of the job's mounts.
    pub(super) async fn finish(&self) -> Result<(), Failure> {
        let dirty: Vec<(u64, String)> = self
            .tree()
            .nodes
            .iter()
            .filter_map(|(ino, n)| match &n.kind {
                Kind::File(f) if f.dirty => Some((*ino, f.blob.clone())),
                _ => None,
            })
            .collect();
        for (ino, blob) in dirty {
            self.commit(ino).await.map_err(|r| {
                Failure::new(
                    "OutputUploadFailed",
                    format!("{blob} could not be written: {}", r.why),
                )
            })?;
        }
        Ok(())
    }

    /// Moves the file `ino` to the blob `to`: its bytes are written there and
    /// the old blob deleted.
    fn move_file(&self, ino: u64, to: String) -> Result<(), Refusal> {
        let (port, from, stored) = {
            let tree = self.tree();
            let Some(Node {
                kind: Kind::File(f),
                port: Some(port),
                ..
            }) = tree.nodes.get(&ino)
            else {
                return Ok(());
            };
            (*port, f.blob.clone(), f.stored)
        };
        if stored {
            self.stage(ino, false).map_err(|errno| Refusal {
                errno,
                why: format!("{from} could not be read to move it"),
            })?;
        }
        self.update(ino, |f| {
            f.blob = to;
            f.dirty = true;
        });
        self.rt.block_on(async {
            self.commit(ino).await?;
            if stored {
                self.delete(port, &from).await?;
            }
            Ok(())
        })
    }
}

impl Tree {
    /// The folder `name` under `parent`, made when missing.
    fn dir(&mut self, parent: u64, name: &str, port: Option<usize>, mtime: SystemTime) -> u64 {
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = self.nodes.get(&parent)
            && let Some(ino) = children.get(name)
        {
            return *ino;
        }
        self.insert(parent, name, port, Kind::Dir(BTreeMap::new()), mtime)
    }

    fn file(
        &mut self,
        parent: u64,
        name: &str,
        port: usize,
        f: FileState,
        mtime: SystemTime,
    ) -> u64 {
        self.insert(parent, name, Some(port), Kind::File(f), mtime)
    }

    fn insert(
        &mut self,
        parent: u64,
        name: &str,
        port: Option<usize>,
        kind: Kind,
        mtime: SystemTime,
    ) -> u64 {
        let ino = self.next;
        self.next += 1;
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = self.nodes.get_mut(&parent)
        {
            children.insert(name.to_owned(), ino);
        }
        self.nodes.insert(
            ino,
            Node {
                parent,
                name: name.to_owned(),
                port,
                kind,
                mtime,
            },
        );
        ino
    }

    fn child(&self, parent: u64, name: &str) -> Option<u64> {
        match &self.nodes.get(&parent)?.kind {
            Kind::Dir(children) => children.get(name).copied(),
            Kind::File(_) => None,
        }
    }

    /// Whether `ino` is the folder of a port (its parent belongs to none).
    fn is_port_root(&self, ino: u64) -> bool {
        self.nodes
            .get(&ino)
            .and_then(|n| self.nodes.get(&n.parent))
            .is_some_and(|p| p.port.is_none())
    }

    fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = match &mut self.nodes.get_mut(&parent)?.kind {
            Kind::Dir(children) => children.remove(name)?,
            Kind::File(_) => return None,
        };
        self.nodes.remove(&ino);
        Some(ino)
    }

    /// The files at or under `ino`.
    fn files_under(&self, ino: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let mut pending = vec![ino];
        while let Some(at) = pending.pop() {
            match self.nodes.get(&at).map(|n| &n.kind) {
                Some(Kind::Dir(children)) => pending.extend(children.values()),
                Some(Kind::File(_)) => out.push(at),
                None => {}
            }
        }
        out
    }

    /// The path of `ino` below its port's folder.
    fn rel(&self, ino: u64) -> String {
        let mut parts = Vec::new();
        let mut at = ino;
        while let Some(node) = self.nodes.get(&at) {
            if self.is_port_root(at) || node.port.is_none() {
                break;
            }
            parts.push(node.name.clone());
            at = node.parent;
        }
        parts.reverse();
        parts.join("/")
    }
}

/// A block of a file: (inode, index).
type Key = (u64, u64);

/// Where a block is held.
enum Held {
    Memory(Arc<Chunks>),
    Disk,
}

/// A block's bytes as they came from the storage.
struct Chunks(Vec<bytes::Bytes>);

impl Chunks {
    /// Appends bytes `from..to` of the block to `out`.
    fn copy_range(&self, from: u64, to: u64, out: &mut Vec<u8>) {
        let mut at = 0u64;
        for c in &self.0 {
            let (start, end) = (at, at + c.len() as u64);
            if end > from && start < to {
                let a = usize::try_from(from.max(start) - start).unwrap_or(0);
                let b = usize::try_from(to.min(end) - start).unwrap_or(0);
                out.extend_from_slice(c.get(a..b).unwrap_or_default());
            }
            at = end;
            if at >= to {
                break;
            }
        }
    }

    fn write_to(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        let part = path.with_extension("part");
        let mut file = std::fs::File::create(&part)?;
        for c in &self.0 {
            file.write_all(c)?;
        }
        drop(file);
        std::fs::rename(&part, path)
    }
}

/// The block cache: the blocks last used in memory ([`MEMORY_BUDGET`]), and
/// those fetched more than once on the node's disk ([`CACHE_BUDGET`]).
struct Cache {
    dir: PathBuf,
    state: Mutex<CacheState>,
    fetches: tokio::sync::Semaphore,
}

type Fetch = Shared<BoxFuture<'static, Result<Arc<Chunks>, Arc<Refusal>>>>;

struct CacheState {
    memory: Lru<Arc<Chunks>>,
    disk: Lru<()>,
    /// Every block fetched so far.
    fetched: std::collections::HashSet<Key>,
    fetching: HashMap<Key, Fetch>,
}

impl Cache {
    fn new(dir: PathBuf) -> Self {
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

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, (ino, index): Key) -> PathBuf {
        self.dir.join(format!("{ino}-{index}"))
    }

    /// Forgets every block of a file (its bytes changed).
    fn forget_file(&self, ino: u64) {
        let mut state = self.lock();
        state.memory.remove_file(ino);
        for key in state.disk.remove_file(ino) {
            let _ = std::fs::remove_file(self.path(key));
        }
        state.fetched.retain(|k| k.0 != ino);
    }
}

/// Blocks in the order they were last used, within a budget of bytes.
struct Lru<V> {
    budget: u64,
    used: u64,
    tick: u64,
    /// Each block: when it was last used, its length, its value.
    entries: HashMap<Key, (u64, u64, V)>,
    by_use: BTreeMap<u64, Key>,
}

impl<V: Clone> Lru<V> {
    fn new(budget: u64) -> Self {
        Self {
            budget,
            used: 0,
            tick: 0,
            entries: HashMap::new(),
            by_use: BTreeMap::new(),
        }
    }

    /// A block's value, marked used.
    fn get(&mut self, key: Key) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (used, _, value) = self.entries.get_mut(&key)?;
        self.by_use.remove(used);
        *used = tick;
        self.by_use.insert(tick, key);
        Some(value.clone())
    }

    /// Counts a block in; returns the blocks dropped to stay in the budget.
    fn insert(&mut self, key: Key, len: u64, value: V) -> Vec<Key> {
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

    fn contains(&self, key: Key) -> bool {
        self.entries.contains_key(&key)
    }

    fn remove(&mut self, key: Key) {
        if let Some((tick, len, _)) = self.entries.remove(&key) {
            self.by_use.remove(&tick);
            self.used -= len;
        }
    }

    /// Drops every block of a file; returns them.
    fn remove_file(&mut self, ino: u64) -> Vec<Key> {
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

/// The FUSE side: every call answered from the tree, or on the runtime when
/// it waits for the storage.
struct Fuse(Arc<Mounts>);

impl Filesystem for Fuse {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        let mmap = config
            .add_capabilities(fuser::InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_ok();
        self.0
            .direct_io
            .store(mmap, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let m = &self.0;
        let tree = m.tree();
        let found = name
            .to_str()
            .and_then(|n| tree.child(parent.0, n))
            .and_then(|ino| tree.nodes.get(&ino).map(|node| (ino, node)));
        match found {
            Some((ino, node)) => reply.entry(&m.ttl(node), &m.attr(ino, node), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let m = &self.0;
        let tree = m.tree();
        match tree.nodes.get(&ino.0) {
            Some(node) => reply.attr(&m.ttl(node), &m.attr(ino.0, node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let m = &self.0;
        if let Some(size) = size {
            let writable = {
                let tree = m.tree();
                tree.nodes
                    .get(&ino.0)
                    .and_then(|n| n.port)
                    .is_some_and(|p| m.writes(p))
            };
            if !writable {
                return reply.error(Errno::EROFS);
            }
            if let Err(e) = m.stage(ino.0, size == 0) {
                return reply.error(e);
            }
            let staged = {
                let tree = m.tree();
                match tree.nodes.get(&ino.0).map(|n| &n.kind) {
                    Some(Kind::File(f)) => f.staged.clone(),
                    _ => None,
                }
            };
            let Some(path) = staged else {
                return reply.error(Errno::EIO);
            };
            let resized = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(size));
            if resized.is_err() {
                return reply.error(Errno::EIO);
            }
            m.update(ino.0, |f| {
                f.size = size;
                f.dirty = true;
            });
        }
        let tree = m.tree();
        match tree.nodes.get(&ino.0) {
            Some(node) => reply.attr(&m.ttl(node), &m.attr(ino.0, node)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let m = &self.0;
        let mut tree = m.tree();
        let port = match m.writable_dir(&tree, parent.0) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let Some(name) = name.to_str().filter(|n| valid_name(n)) else {
            return reply.error(Errno::EINVAL);
        };
        if m.only(port).is_some() {
            return reply.error(Errno::EACCES);
        }
        if tree.child(parent.0, name).is_some() {
            return reply.error(Errno::EEXIST);
        }
        let ino = tree.dir(parent.0, name, Some(port), SystemTime::now());
        match tree.nodes.get(&ino) {
            Some(node) => reply.entry(&m.ttl(node), &m.attr(ino, node), Generation(0)),
            None => reply.error(Errno::EIO),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let m = &self.0;
        let Some(name) = name.to_str() else {
            return reply.error(Errno::ENOENT);
        };
        let (port, ino, blob, stored, staged) = {
            let tree = m.tree();
            let port = match m.writable_dir(&tree, parent.0) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            let Some(ino) = tree.child(parent.0, name) else {
                return reply.error(Errno::ENOENT);
            };
            match tree.nodes.get(&ino).map(|n| &n.kind) {
                Some(Kind::File(f)) => (port, ino, f.blob.clone(), f.stored, f.staged.clone()),
                _ => return reply.error(Errno::EISDIR),
            }
        };
        if stored && let Err(r) = m.rt.block_on(m.delete(port, &blob)) {
            m.explain(&format!("deleting {blob} was refused"), &r);
            return reply.error(r.errno);
        }
        m.tree().unlink(parent.0, name);
        m.cache.forget_file(ino);
        if let Some(p) = staged {
            let _ = std::fs::remove_file(p);
        }
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let m = &self.0;
        let mut tree = m.tree();
        if let Err(e) = m.writable_dir(&tree, parent.0) {
            return reply.error(e);
        }
        let Some(ino) = name.to_str().and_then(|n| tree.child(parent.0, n)) else {
            return reply.error(Errno::ENOENT);
        };
        match tree.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::Dir(children)) if children.is_empty() => {}
            Some(Kind::Dir(_)) => return reply.error(Errno::ENOTEMPTY),
            _ => return reply.error(Errno::ENOTDIR),
        }
        if let Some(name) = name.to_str() {
            tree.unlink(parent.0, name);
        }
        reply.ok();
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let m = &self.0;
        let (Some(name), Some(newname)) =
            (name.to_str(), newname.to_str().filter(|n| valid_name(n)))
        else {
            return reply.error(Errno::EINVAL);
        };
        let (ino, moves, replaced) = {
            let tree = m.tree();
            let (from_port, to_port) = match (
                m.writable_dir(&tree, parent.0),
                m.writable_dir(&tree, newparent.0),
            ) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => return reply.error(e),
            };
            if from_port != to_port {
                return reply.error(Errno::EXDEV);
            }
            if m.only(to_port).is_some_and(|f| f != newname) {
                return reply.error(Errno::EACCES);
            }
            let Some(ino) = tree.child(parent.0, name) else {
                return reply.error(Errno::ENOENT);
            };
            let replaced = tree.child(newparent.0, newname);
            if let Some(r) = replaced
                && matches!(tree.nodes.get(&r).map(|n| &n.kind), Some(Kind::Dir(c)) if !c.is_empty())
            {
                return reply.error(Errno::ENOTEMPTY);
            }
            let base = m.blob_of(&tree, to_port, newparent.0, newname);
            let from_rel = tree.rel(ino);
            let moves: Vec<(u64, String)> = tree
                .files_under(ino)
                .into_iter()
                .map(|f| {
                    let rel = tree.rel(f);
                    let tail = rel.strip_prefix(&from_rel).unwrap_or("");
                    (f, format!("{base}{tail}"))
                })
                .collect();
            (ino, moves, replaced)
        };
        for (file, to) in moves {
            if let Err(r) = m.move_file(file, to.clone()) {
                m.explain(&format!("moving a file to {to} was refused"), &r);
                return reply.error(r.errno);
            }
        }
        let mut tree = m.tree();
        if let Some(r) = replaced
            && r != ino
        {
            tree.unlink(newparent.0, newname);
        }
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = tree.nodes.get_mut(&parent.0)
        {
            children.remove(name);
        }
        if let Some(Node {
            kind: Kind::Dir(children),
            ..
        }) = tree.nodes.get_mut(&newparent.0)
        {
            children.insert(newname.to_owned(), ino);
        }
        if let Some(node) = tree.nodes.get_mut(&ino) {
            node.parent = newparent.0;
            newname.clone_into(&mut node.name);
        }
        reply.ok();
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let m = &self.0;
        let writes = flags.acc_mode() != fuser::OpenAccMode::O_RDONLY;
        if writes {
            let writable = {
                let tree = m.tree();
                tree.nodes
                    .get(&ino.0)
                    .and_then(|n| n.port)
                    .is_some_and(|p| m.writes(p))
            };
            if !writable {
                return reply.error(Errno::EROFS);
            }
            if let Err(e) = m.stage(ino.0, flags.0 & nix::libc::O_TRUNC != 0) {
                return reply.error(e);
            }
            return reply.opened(FileHandle(0), FopenFlags::empty());
        }
        // Reads go straight to the agent, which caches and reads ahead itself:
        // through the kernel's page cache they would be copied once more and
        // cut into its small read-ahead windows. Where the kernel cannot map
        // such files (no FUSE_DIRECT_IO_ALLOW_MMAP), they use the page cache.
        let flags = if m.direct_io.load(std::sync::atomic::Ordering::Relaxed) {
            FopenFlags::FOPEN_DIRECT_IO
        } else {
            FopenFlags::FOPEN_KEEP_CACHE
        };
        reply.opened(FileHandle(0), flags)
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let m = &self.0;
        let (port, f) = {
            let tree = m.tree();
            match tree.nodes.get(&ino.0) {
                Some(Node {
                    kind: Kind::File(f),
                    port: Some(port),
                    ..
                }) => (*port, (f.blob.clone(), f.size, f.staged.clone())),
                Some(_) => return reply.error(Errno::EISDIR),
                None => return reply.error(Errno::ENOENT),
            }
        };
        let (blob, file_size, staged) = f;
        if let Some(path) = staged {
            return match read_at(&path, offset, u64::from(size)) {
                Ok(bytes) => reply.data(&bytes),
                Err(_) => reply.error(Errno::EIO),
            };
        }
        let end = (offset + u64::from(size)).min(file_size);
        let in_order = m.read_ahead((port, ino.0), &blob, file_size, (offset, end));
        // What is in memory is answered here; what must be fetched, once it is:
        // whole blocks through the cache while the file is read in order, else
        // the bytes asked for alone.
        if let Some(bytes) = m.read_held(ino.0, (offset, end)) {
            return reply.data(&bytes);
        }
        let exact = !in_order && !m.on_disk(ino.0, (offset, end));
        let me = Arc::clone(m);
        m.rt.spawn(async move {
            let result = if exact {
                me.read_range(port, &blob, (offset, end))
                    .await
                    .map_err(Arc::new)
            } else {
                Arc::clone(&me)
                    .read_stored(
                        (port, ino.0),
                        blob.clone(),
                        file_size,
                        (offset, u64::from(size)),
                    )
                    .await
            };
            match result {
                Ok(bytes) => reply.data(&bytes),
                Err(r) => {
                    me.explain(&format!("reading {blob}"), &r);
                    reply.error(r.errno);
                }
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let m = &self.0;
        let staged = {
            let tree = m.tree();
            match tree.nodes.get(&ino.0).map(|n| &n.kind) {
                Some(Kind::File(f)) => f.staged.clone(),
                _ => None,
            }
        };
        let Some(path) = staged else {
            return reply.error(Errno::EBADF);
        };
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.write_all_at(data, offset));
        if written.is_err() {
            return reply.error(Errno::EIO);
        }
        let end = offset + data.len() as u64;
        m.update(ino.0, |f| {
            f.size = f.size.max(end);
            f.dirty = true;
        });
        reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX));
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        let m = Arc::clone(&self.0);
        self.0.rt.spawn(async move {
            match m.commit(ino.0).await {
                Ok(()) => reply.ok(),
                Err(r) => {
                    let rel = m.tree().rel(ino.0);
                    m.explain(&format!("writing {rel} was refused"), &r);
                    reply.error(r.errno);
                }
            }
        });
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.flush(req, ino, fh, fuser::LockOwner(0), reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let m = &self.0;
        let tree = m.tree();
        let Some(node) = tree.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        let Kind::Dir(children) = &node.kind else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut entries: Vec<(u64, FileType, &str)> = vec![
            (ino.0, FileType::Directory, "."),
            (node.parent, FileType::Directory, ".."),
        ];
        for (name, child) in children {
            let kind = match tree.nodes.get(child).map(|n| &n.kind) {
                Some(Kind::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            entries.push((*child, kind, name));
        }
        for (i, (child, kind, name)) in entries
            .into_iter()
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.0.tree().nodes.len() as u64;
        reply.statfs(1 << 40, 1 << 40, 1 << 40, files, 1 << 20, 4096, 1024, 4096);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let m = &self.0;
        let Some(name) = name.to_str().filter(|n| valid_name(n)) else {
            return reply.error(Errno::EINVAL);
        };
        let ino = {
            let mut tree = m.tree();
            let port = match m.writable_dir(&tree, parent.0) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            if let Some(only) = m.only(port)
                && (only != name || !tree.is_port_root(parent.0))
            {
                return reply.error(Errno::EACCES);
            }
            if let Some(existing) = tree.child(parent.0, name) {
                drop(tree);
                if let Err(e) = m.stage(existing, true) {
                    return reply.error(e);
                }
                existing
            } else {
                let blob = m.blob_of(&tree, port, parent.0, name);
                let path = m.staging.join(tree.next.to_string());
                if std::fs::File::create(&path).is_err() {
                    return reply.error(Errno::EIO);
                }
                tree.file(
                    parent.0,
                    name,
                    port,
                    FileState {
                        blob,
                        staged: Some(path),
                        dirty: true,
                        ..FileState::default()
                    },
                    SystemTime::now(),
                )
            }
        };
        let tree = m.tree();
        match tree.nodes.get(&ino) {
            Some(node) => reply.created(
                &m.ttl(node),
                &m.attr(ino, node),
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            None => reply.error(Errno::EIO),
        }
    }
}

/// Asks the agent API for a mount's access.
async fn grant(api: &Api, spec: &MountSpec) -> Result<(Grant, Access), Failure> {
    let rel = format!("mounts/{}s/{}", spec.direction, super::segment(&spec.port));
    let grant: Grant = api.ask(&rel, &json!({}), "MountFailed").await?;
    let expires = grant
        .authorization
        .as_deref()
        .and_then(token_expiry)
        .or_else(|| grant.sas.as_deref().and_then(sas_expiry))
        .unwrap_or_else(|| now() + 600);
    let access = Access {
        authorization: grant.authorization.clone(),
        sas: grant.sas.clone(),
        expires,
    };
    Ok((grant, access))
}

/// The FUSE connection the sandbox mounted, which the agent has as its
/// standard input.
fn fuse_connection() -> Result<std::os::fd::OwnedFd, Failure> {
    use std::os::fd::AsFd as _;
    let stdin = std::io::stdin();
    let fd = stdin.as_fd();
    let is_fuse = nix::sys::stat::fstat(fd).is_ok_and(|st| {
        st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFCHR
            && nix::sys::stat::major(st.st_rdev) == 10
            && nix::sys::stat::minor(st.st_rdev) == 229
    });
    if !is_fuse {
        return Err(Failure::new(
            "MountFailed",
            "the job mounts data, but the agent was not handed a FUSE connection (its standard input is not /dev/fuse): mounts need the job sandbox",
        ));
    }
    fd.try_clone_to_owned()
        .map_err(|e| Failure::new("MountFailed", format!("the FUSE connection: {e}")))
}

/// The `exp` of a bearer token (`Bearer <jwt>`).
fn token_expiry(authorization: &str) -> Option<i64> {
    use base64::Engine as _;
    let jwt = authorization.strip_prefix("Bearer ")?;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()
}

/// The `se` of a SAS query.
fn sas_expiry(sas: &str) -> Option<i64> {
    let se = sas.split('&').find_map(|p| p.strip_prefix("se="))?;
    let text = percent_encoding::percent_decode_str(se)
        .decode_utf8()
        .ok()?;
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// A blob name as a URL path, each segment percent-encoded.
fn encode_blob(blob: &str) -> String {
    blob.split('/')
        .map(super::segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// A name the command may give a file or folder in a mount.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name.len() <= 1024
}

/// `len` bytes at `offset` of the file at `path` (fewer at its end).
fn read_at(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
    let mut filled = 0;
    while filled < buf.len() {
        let Some(rest) = buf.get_mut(filled..) else {
            break;
        };
        match file.read_at(rest, offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

#[cfg(test)]
mod tests;
