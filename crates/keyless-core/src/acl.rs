//! POSIX access control lists of a hierarchical namespace (ADLS Gen2), and the one
//! function that decides whether they let an identity do something.
//!
//! An ACL check runs only when RBAC did not already allow the request (ACLs add
//! access, they never take it away), and never for account keys or SAS. Per
//! path, the first class of entry that applies to the caller decides: the owner
//! (mask not applied), then a named user entry, then the owning group and named
//! groups (allowed if any one of them suffices, each limited by the mask), then
//! other (limited by the mask, as Azure's documentation has it). Every directory
//! above the target needs execute.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The most entries an access (or default) ACL may have, the four base ones included.
pub const MAX_ENTRIES: usize = 32;

/// The owner of paths created with an account key or SAS.
pub const SUPERUSER: &str = "$superuser";

/// Read, write and execute bits (`r` = 4, `w` = 2, `x` = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Perm(pub u8);

impl Perm {
    /// `r--`.
    pub const READ: Self = Self(4);
    /// `-w-`.
    pub const WRITE: Self = Self(2);
    /// `--x`.
    pub const EXECUTE: Self = Self(1);
    /// `rwx`.
    pub const ALL: Self = Self(7);
    /// `---`.
    pub const NONE: Self = Self(0);

    /// Whether every bit of `needed` is here.
    #[must_use]
    pub fn covers(self, needed: Self) -> bool {
        self.0 & needed.0 == needed.0
    }

    /// The bits of both.
    #[must_use]
    pub fn and(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// The bits of either.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// Parses `rwx`, `r-x`, `---`.
    ///
    /// # Errors
    /// When the text is not three permission characters.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let b = text.as_bytes();
        let bit = |i: usize, c: u8, v: u8| match b.get(i) {
            Some(&x) if x == c => Ok(v),
            Some(b'-') => Ok(0),
            _ => Err(Error::invalid(format!(
                "`{text}` is not a permission triple such as `r-x`"
            ))),
        };
        if b.len() != 3 {
            return Err(Error::invalid(format!(
                "`{text}` is not a permission triple such as `r-x`"
            )));
        }
        Ok(Self(bit(0, b'r', 4)? | bit(1, b'w', 2)? | bit(2, b'x', 1)?))
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |bit: u8, ch: char| if self.0 & bit != 0 { ch } else { '-' };
        write!(f, "{}{}{}", c(4, 'r'), c(2, 'w'), c(1, 'x'))
    }
}

/// One ACL (access or default): the base entries and the named ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// `user::`
    pub owner: Perm,
    /// `group::`
    pub group: Perm,
    /// `other::`
    pub other: Perm,
    /// `mask::`, present once there are named entries.
    #[serde(default)]
    pub mask: Option<Perm>,
    /// `user:<object id>:`
    #[serde(default)]
    pub users: Vec<(String, Perm)>,
    /// `group:<object id>:`
    #[serde(default)]
    pub groups: Vec<(String, Perm)>,
}

impl Acl {
    /// An ACL of base entries only.
    #[must_use]
    pub fn from_mode(owner: Perm, group: Perm, other: Perm) -> Self {
        Self {
            owner,
            group,
            other,
            mask: None,
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn entries(&self) -> usize {
        3 + usize::from(self.mask.is_some()) + self.users.len() + self.groups.len()
    }

    /// The mask in effect: the explicit one, or all bits.
    fn effective_mask(&self) -> Perm {
        self.mask.unwrap_or(Perm::ALL)
    }

    fn write_entries(&self, prefix: &str, out: &mut Vec<String>) {
        out.push(format!("{prefix}user::{}", self.owner));
        for (id, p) in &self.users {
            out.push(format!("{prefix}user:{id}:{p}"));
        }
        out.push(format!("{prefix}group::{}", self.group));
        for (id, p) in &self.groups {
            out.push(format!("{prefix}group:{id}:{p}"));
        }
        if let Some(m) = self.mask {
            out.push(format!("{prefix}mask::{m}"));
        }
        out.push(format!("{prefix}other::{}", self.other));
    }
}

/// The access control of one path: owner, owning group, sticky bit, access ACL and
/// (directories only) the default ACL its new children inherit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathAcl {
    /// The owning user's object id, or `$superuser`.
    pub owner: String,
    /// The owning group's object id, or `$superuser`.
    pub group: String,
    /// Only a child's owner, the directory's owner or a superuser may delete or
    /// rename children.
    #[serde(default)]
    pub sticky: bool,
    /// What decides access to this path.
    pub access: Acl,
    /// What new children start from (directories).
    #[serde(default)]
    pub default: Option<Acl>,
}

/// One entry of an `x-ms-acl` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclEntry {
    /// A `default:` entry.
    pub default: bool,
    /// `user`, `group`, `mask` or `other`.
    pub tag: Tag,
    /// The object id of a named entry.
    pub qualifier: Option<String>,
    /// The permissions (absent in a remove request).
    pub perm: Option<Perm>,
}

/// The kind of an ACL entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// `user`
    User,
    /// `group`
    Group,
    /// `mask`
    Mask,
    /// `other`
    Other,
}

/// Parses an `x-ms-acl` value: `[default:]user|group|mask|other:[id]:rwx`, comma-separated.
/// With `perms_required` false (a remove request), entries may omit the permissions.
///
/// # Errors
/// A malformed entry, named.
pub fn parse_entries(text: &str, perms_required: bool) -> Result<Vec<AclEntry>, Error> {
    let mut out = Vec::new();
    for raw in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let bad = |why: &str| Error::invalid(format!("the ACL entry `{raw}` is invalid: {why}"));
        let (default, rest) = match raw.strip_prefix("default:") {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let mut parts = rest.splitn(3, ':');
        let tag = match parts.next() {
            Some("user") => Tag::User,
            Some("group") => Tag::Group,
            Some("mask") => Tag::Mask,
            Some("other") => Tag::Other,
            _ => return Err(bad("it must start with user, group, mask or other")),
        };
        let qualifier = parts.next().filter(|q| !q.is_empty()).map(str::to_owned);
        if qualifier.is_some() && matches!(tag, Tag::Mask | Tag::Other) {
            return Err(bad("mask and other entries take no identity"));
        }
        let perm = match parts.next() {
            Some(p) => {
                Some(Perm::parse(p).map_err(|_| bad("the permissions must look like `r-x`"))?)
            }
            None if perms_required => return Err(bad("the permissions are missing")),
            None => None,
        };
        out.push(AclEntry {
            default,
            tag,
            qualifier,
            perm,
        });
    }
    Ok(out)
}

/// How `setAccessControlRecursive` and `setAccessControl` change an ACL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Replace the whole ACL (base entries required).
    Set,
    /// Add or update the given entries.
    Modify,
    /// Remove the given named entries (and default ACL entries).
    Remove,
}

impl PathAcl {
    /// The root directory of a new filesystem: `rwxr-x---`, owned by `owner`.
    #[must_use]
    pub fn root(owner: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            group: owner.to_owned(),
            sticky: false,
            access: Acl::from_mode(Perm::ALL, Perm(5), Perm::NONE),
            default: None,
        }
    }

    /// A path created under `parent` by `owner`. Without a default ACL on the
    /// parent, the mode (0777 for directories, 0666 for files unless `mode` is
    /// given) less the umask (0027 unless given) decides; with one, the child starts
    /// from it, limited by the mode, and a new directory also inherits it as its
    /// default ACL. The owning group is the parent's.
    #[must_use]
    pub fn child(
        parent: &Self,
        owner: &str,
        directory: bool,
        mode: Option<[Perm; 3]>,
        umask: Option<[Perm; 3]>,
    ) -> Self {
        let base = if directory { Perm::ALL } else { Perm(6) };
        let [o, g, t] = mode.unwrap_or([base, base, base]);
        let access = match &parent.default {
            Some(d) => {
                let mut a = d.clone();
                a.owner = a.owner.and(o);
                match &mut a.mask {
                    Some(m) => *m = m.and(g),
                    None => a.group = a.group.and(g),
                }
                a.other = a.other.and(t);
                a
            }
            None => {
                let [uo, ug, ut] = umask.unwrap_or([Perm::NONE, Perm::WRITE, Perm::ALL]);
                Acl::from_mode(
                    Perm(o.0 & !uo.0 & 7),
                    Perm(g.0 & !ug.0 & 7),
                    Perm(t.0 & !ut.0 & 7),
                )
            }
        };
        Self {
            owner: owner.to_owned(),
            group: parent.group.clone(),
            sticky: false,
            access,
            default: if directory {
                parent.default.clone()
            } else {
                None
            },
        }
    }

    /// `x-ms-permissions`: `rwxr-x---`, the group triad showing the mask when
    /// there is one, `t`/`T` for the sticky bit, `+` when named entries exist.
    #[must_use]
    pub fn permissions(&self) -> String {
        let a = &self.access;
        let group = a.mask.unwrap_or(a.group);
        let mut other = a.other.to_string();
        if self.sticky {
            other.pop();
            other.push(if a.other.covers(Perm::EXECUTE) {
                't'
            } else {
                'T'
            });
        }
        let plus = if a.users.is_empty() && a.groups.is_empty() {
            ""
        } else {
            "+"
        };
        format!("{}{group}{other}{plus}", a.owner)
    }

    /// `x-ms-acl`: the access entries, then the default ones.
    #[must_use]
    pub fn acl_text(&self) -> String {
        let mut out = Vec::new();
        self.access.write_entries("", &mut out);
        if let Some(d) = &self.default {
            d.write_entries("default:", &mut out);
        }
        out.join(",")
    }

    /// Applies `x-ms-permissions` (`rwxr-x---`, optionally with `t`/`T`, or octal `0750`/`1750`).
    ///
    /// # Errors
    /// When the text is neither form.
    pub fn set_permissions(&mut self, text: &str) -> Result<(), Error> {
        let bad = || {
            Error::invalid(format!(
                "`{text}` is not a permission string such as `rwxr-x---` or `0750`"
            ))
        };
        let [o, g, t, sticky] = parse_mode(text).ok_or_else(bad)?;
        self.access.owner = o;
        match &mut self.access.mask {
            Some(m) => *m = g,
            None => self.access.group = g,
        }
        self.access.other = t;
        self.sticky = sticky.0 != 0;
        Ok(())
    }

    /// Changes the ACL by `entries` as `change` says. Default entries on a file are refused.
    ///
    /// # Errors
    /// A `set` without the base entries, default entries on a file, more than
    /// [`MAX_ENTRIES`] entries.
    pub fn apply(
        &mut self,
        change: Change,
        entries: &[AclEntry],
        directory: bool,
    ) -> Result<(), Error> {
        if !directory && entries.iter().any(|e| e.default) {
            return Err(Error::invalid(
                "default ACL entries belong on directories, not files",
            ));
        }
        if change == Change::Set {
            let has = |tag: Tag| {
                entries
                    .iter()
                    .any(|e| !e.default && e.tag == tag && e.qualifier.is_none())
            };
            if !(has(Tag::User) && has(Tag::Group) && has(Tag::Other)) {
                return Err(Error::invalid(
                    "a full ACL needs the user::, group:: and other:: entries",
                ));
            }
            self.access = Acl::from_mode(Perm::NONE, Perm::NONE, Perm::NONE);
            self.default = None;
        }
        for e in entries {
            let target = if e.default {
                let owner = self.access.owner;
                let group = self.access.group;
                let other = self.access.other;
                self.default
                    .get_or_insert_with(|| Acl::from_mode(owner, group, other))
            } else {
                &mut self.access
            };
            apply_entry(target, e, change);
        }
        for acl in std::iter::once(&mut self.access).chain(self.default.as_mut()) {
            if (!acl.users.is_empty() || !acl.groups.is_empty()) && acl.mask.is_none() {
                // POSIX: the mask defaults to the union of the group-class entries.
                let union = acl
                    .users
                    .iter()
                    .chain(acl.groups.iter())
                    .fold(acl.group, |m, (_, p)| m.or(*p));
                acl.mask = Some(union);
            }
            if acl.entries() > MAX_ENTRIES {
                return Err(Error::invalid(format!(
                    "an ACL holds at most {MAX_ENTRIES} entries, the four base ones included"
                )));
            }
        }
        if change == Change::Remove
            && entries
                .iter()
                .any(|e| e.default && e.qualifier.is_none() && e.tag != Tag::Mask)
        {
            self.default = None;
        }
        Ok(())
    }
}

fn apply_entry(acl: &mut Acl, e: &AclEntry, change: Change) {
    let named = |list: &mut Vec<(String, Perm)>, id: &str| {
        if change == Change::Remove {
            list.retain(|(x, _)| x != id);
        } else if let Some(p) = e.perm {
            match list.iter_mut().find(|(x, _)| x == id) {
                Some(slot) => slot.1 = p,
                None => list.push((id.to_owned(), p)),
            }
        }
    };
    match (&e.tag, e.qualifier.as_deref()) {
        (Tag::User, Some(id)) => named(&mut acl.users, id),
        (Tag::Group, Some(id)) => named(&mut acl.groups, id),
        _ if change == Change::Remove => {
            if e.tag == Tag::Mask {
                acl.mask = None;
            }
        }
        (Tag::User, None) => acl.owner = e.perm.unwrap_or(acl.owner),
        (Tag::Group, None) => acl.group = e.perm.unwrap_or(acl.group),
        (Tag::Mask, _) => acl.mask = e.perm.or(acl.mask),
        (Tag::Other, _) => acl.other = e.perm.unwrap_or(acl.other),
    }
}

/// Parses `rwxr-x---` (with an optional `t`/`T` and `+`) or octal `0750`/`1750`
/// into owner, group, other and the sticky bit.
#[must_use]
pub fn parse_mode(text: &str) -> Option<[Perm; 4]> {
    let text = text.trim_end_matches('+');
    if text.len() == 4 && text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let d: Vec<u8> = text.bytes().map(|b| b - b'0').collect();
        return Some([
            Perm(*d.get(1)?),
            Perm(*d.get(2)?),
            Perm(*d.get(3)?),
            Perm(*d.first()? & 1),
        ]);
    }
    if text.len() != 9 {
        return None;
    }
    let (o, g, t) = (text.get(0..3)?, text.get(3..6)?, text.get(6..9)?);
    let (t, sticky) = match t.as_bytes().get(2) {
        Some(b't') => (format!("{}x", t.get(..2)?), 1),
        Some(b'T') => (format!("{}-", t.get(..2)?), 1),
        _ => (t.to_owned(), 0),
    };
    Some([
        Perm::parse(o).ok()?,
        Perm::parse(g).ok()?,
        Perm::parse(&t).ok()?,
        Perm(sticky),
    ])
}

/// The caller of an ACL check: its object id and the groups it belongs to
/// (transitively).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The caller's object id.
    pub object_id: &'a str,
    /// Its groups' object ids.
    pub groups: &'a [String],
}

/// Which entry class decided a check on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The owning user.
    Owner,
    /// A named user entry.
    NamedUser,
    /// The owning group or a named group.
    Group,
    /// Everyone else.
    Other,
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Owner => "the owner entry",
            Self::NamedUser => "its named user entry",
            Self::Group => "its group entries",
            Self::Other => "the other entry",
        })
    }
}

/// Whether `acl` lets `caller` have `desired` on this one path; on refusal, the
/// class of entry that decided.
pub fn allows(acl: &PathAcl, caller: Caller<'_>, desired: Perm) -> Result<(), Class> {
    let a = &acl.access;
    let mask = a.effective_mask();
    if acl.owner == caller.object_id {
        return if a.owner.covers(desired) {
            Ok(())
        } else {
            Err(Class::Owner)
        };
    }
    if let Some((_, p)) = a.users.iter().find(|(id, _)| id == caller.object_id) {
        return if p.and(mask).covers(desired) {
            Ok(())
        } else {
            Err(Class::NamedUser)
        };
    }
    let member = |id: &str| caller.groups.iter().any(|g| g == id);
    let mut groups = std::iter::once((acl.group.as_str(), a.group))
        .chain(a.groups.iter().map(|(id, p)| (id.as_str(), *p)))
        .filter(|(id, _)| member(id))
        .peekable();
    // A member of some group whose entries do not suffice falls through to
    // `other`, as Azure's documentation describes.
    if groups.peek().is_some() && groups.any(|(_, p)| p.and(mask).covers(desired)) {
        return Ok(());
    }
    if a.other.and(mask).covers(desired) {
        Ok(())
    } else {
        Err(Class::Other)
    }
}

/// A path of the chain an ACL check walks: its name (`/` for the root) and ACL.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// `/`, `/raw`, `/raw/team-a`, …
    pub path: &'a str,
    /// Its access control.
    pub acl: &'a PathAcl,
}

/// What an operation needs of the path it names and of its parent directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// Bits on the target itself (when it exists), e.g. `r--` to read a file.
    pub target: Perm,
    /// Bits on the parent directory beyond execute, e.g. `-w-` to create or delete.
    pub parent: Perm,
}

/// The outcome of an ACL check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclDecision {
    /// Every path allowed what the operation needs.
    Allow,
    /// `path` did not grant `missing` to the caller; `class` decided.
    Deny {
        /// The path that refused.
        path: String,
        /// The bits needed there, e.g. `--x`.
        missing: String,
        /// The entry class that decided, in words.
        decided_by: String,
    },
    /// `parent` has the sticky bit, and the caller owns neither it nor `path`,
    /// which the operation would delete or rename.
    Sticky {
        /// The path the operation would remove from its directory.
        path: String,
        /// Its directory.
        parent: String,
    },
}

impl AclDecision {
    /// In words, for the 403 and `keyless access explain`.
    #[must_use]
    pub fn explanation(&self) -> String {
        match self {
            Self::Allow => "the ACLs of every path on the way allow it".to_owned(),
            Self::Deny {
                path,
                missing,
                decided_by,
            } => format!("the ACL of `{path}` does not grant `{missing}` ({decided_by} decided)"),
            Self::Sticky { path, parent } => format!(
                "`{parent}` has the sticky bit: only the owner of `{path}` or of `{parent}` may delete or rename it"
            ),
        }
    }
}

/// Checks a whole operation: execute on every directory above the target,
/// `need.parent` (with execute) on the parent, `need.target` on the target.
/// `ancestors` runs from the root to the parent; `target` is `None` when the
/// operation creates it.
#[must_use]
pub fn check(
    ancestors: &[Step<'_>],
    target: Option<Step<'_>>,
    caller: Caller<'_>,
    need: Need,
) -> AclDecision {
    let last = ancestors.len().saturating_sub(1);
    for (i, step) in ancestors.iter().enumerate() {
        let desired = if i == last {
            need.parent.or(Perm::EXECUTE)
        } else {
            Perm::EXECUTE
        };
        if let Err(class) = allows(step.acl, caller, desired) {
            return AclDecision::Deny {
                path: step.path.to_owned(),
                missing: desired.to_string(),
                decided_by: class.to_string(),
            };
        }
    }
    // In a sticky directory, only the owner of an entry or of the directory
    // may remove the entry from it (delete, rename away, replace by a rename).
    if let (Some(step), Some(parent)) = (target, ancestors.last())
        && need.parent.covers(Perm::WRITE)
        && parent.acl.sticky
        && caller.object_id != step.acl.owner
        && caller.object_id != parent.acl.owner
    {
        return AclDecision::Sticky {
            path: step.path.to_owned(),
            parent: parent.path.to_owned(),
        };
    }
    if let Some(step) = target
        && need.target != Perm::NONE
        && let Err(class) = allows(step.acl, caller, need.target)
    {
        return AclDecision::Deny {
            path: step.path.to_owned(),
            missing: need.target.to_string(),
            decided_by: class.to_string(),
        };
    }
    AclDecision::Allow
}

#[cfg(test)]
mod tests;
