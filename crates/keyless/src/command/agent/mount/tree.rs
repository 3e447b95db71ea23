//! The mounts' tree: folders and files by inode, as listed at start and as
//! the command changes an output.

use std::collections::BTreeMap;
use std::time::SystemTime;

use super::{FileState, Kind, Node, Tree};

impl Tree {
    /// The folder `name` under `parent`, made when missing.
    pub(super) fn dir(
        &mut self,
        parent: u64,
        name: &str,
        port: Option<usize>,
        mtime: SystemTime,
    ) -> u64 {
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

    pub(super) fn file(
        &mut self,
        parent: u64,
        name: &str,
        port: usize,
        f: FileState,
        mtime: SystemTime,
    ) -> u64 {
        self.insert(parent, name, Some(port), Kind::File(f), mtime)
    }

    pub(super) fn insert(
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

    pub(super) fn child(&self, parent: u64, name: &str) -> Option<u64> {
        match &self.nodes.get(&parent)?.kind {
            Kind::Dir(children) => children.get(name).copied(),
            Kind::File(_) => None,
        }
    }

    /// Whether `ino` is the folder of a port (its parent belongs to none).
    pub(super) fn is_port_root(&self, ino: u64) -> bool {
        self.nodes
            .get(&ino)
            .and_then(|n| self.nodes.get(&n.parent))
            .is_some_and(|p| p.port.is_none())
    }

    pub(super) fn unlink(&mut self, parent: u64, name: &str) -> Option<u64> {
        let ino = match &mut self.nodes.get_mut(&parent)?.kind {
            Kind::Dir(children) => children.remove(name)?,
            Kind::File(_) => return None,
        };
        self.nodes.remove(&ino);
        Some(ino)
    }

    /// The files at or under `ino`.
    pub(super) fn files_under(&self, ino: u64) -> Vec<u64> {
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
    pub(super) fn rel(&self, ino: u64) -> String {
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
