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
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{Errno, FileAttr, FileType, INodeNo};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Api, Failure, STORAGE_VERSION};
use cache::Cache;
use fuse::Fuse;

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
        let response = self
            .send(port, reqwest::Method::GET, Some(blob), &[], &[], None)
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return tokio::fs::File::create(path)
                .await
                .map(drop)
                .map_err(|e| Refusal::io(e.to_string()));
        }
        super::transfer::save(response.bytes_stream(), path, |_| {})
            .await
            .map_err(Refusal::io)
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
        super::transfer::upload(
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

mod cache;
mod fuse;
mod read;
mod tree;

#[cfg(test)]
mod tests;
