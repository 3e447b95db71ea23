//! The FUSE side of the mounts: each call of the kernel answered from the
//! tree, or on the runtime when it waits for the storage.

use std::ffi::OsStr;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use super::{FileState, Kind, Mounts, Node, read_at, valid_name};

/// The FUSE side: every call answered from the tree, or on the runtime when
/// it waits for the storage.
pub(super) struct Fuse(pub(super) Arc<Mounts>);

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
