//! The hierarchical namespace of ADLS Gen2 accounts: real directories, owners
//! and POSIX ACLs, and the ACL half of authorization.
//!
//! A path's ancestors are directory rows (`is_dir`, `hdi_isfolder=true`, as blob
//! clients see them); the root directory's ACL lives on the container. Writes
//! through either API create missing parent directories, each inheriting from its
//! parent.

use axum::http::StatusCode;

use keyless_core::acl::{self, AclDecision, Caller, Need, PathAcl, Perm, Step};
use keyless_store::{Blob, BlobProperties, Content, Page};

use super::Ctx;
use super::auth::Auth;
use super::conditions::new_etag;
use super::error::StorageError;
use super::operation::Operation;
use crate::state::SharedState;

/// Metadata that marks a directory for blob clients.
pub(crate) const FOLDER: (&str, &str) = ("hdi_isfolder", "true");

/// The owner of what a request creates: the caller, or `$superuser` for keys and SAS.
pub(crate) fn creator(auth: &Auth) -> String {
    match auth {
        Auth::Bearer(identity) => identity.object_id().to_owned(),
        Auth::SharedKey | Auth::Sas(_) => acl::SUPERUSER.to_owned(),
        // Anonymous requests only read; nothing they do creates.
        Auth::Anonymous => "anonymous".to_owned(),
    }
}

/// `a/b/c` → `["a", "a/b"]`.
pub(crate) fn ancestors(name: &str) -> Vec<&str> {
    name.match_indices('/')
        .map(|(i, _)| name.get(..i).unwrap_or_default())
        .filter(|p| !p.is_empty())
        .collect()
}

pub(crate) fn parent(name: &str) -> &str {
    name.rsplit_once('/').map_or("", |(p, _)| p)
}

fn path_not_found(what: &str) -> StorageError {
    StorageError::new(StatusCode::NOT_FOUND, "PathNotFound", what.to_owned())
}

/// The root directory's ACL: the container's, or the default one for a
/// container made before the account had a namespace.
pub(crate) async fn root_acl(
    state: &SharedState,
    account: &str,
    container: &str,
) -> Result<PathAcl, StorageError> {
    let c = state
        .store
        .container(account, container)
        .await?
        .ok_or_else(StorageError::container_not_found)?;
    Ok(c.acl.unwrap_or_else(|| PathAcl::root(acl::SUPERUSER)))
}

/// A directory row as both APIs see it.
pub(crate) fn directory(ctx: &Ctx, name: &str, acl: PathAcl) -> Blob {
    let now = ctx.state.now();
    Blob {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        name: name.to_owned(),
        etag: new_etag(),
        created_at: now,
        last_modified: now,
        size: 0,
        content: Content::Inline(bytes::Bytes::new()),
        properties: BlobProperties::default(),
        metadata: vec![(FOLDER.0.to_owned(), FOLDER.1.to_owned())],
        committed_blocks: Vec::new(),
        is_dir: true,
        acl: Some(acl),
        state: keyless_store::BlobState::default(),
    }
}

/// Makes sure every directory above `name` exists (creating the missing ones as
/// the caller) and returns the ACL of its parent. A file in the way is a conflict.
pub(crate) async fn ensure_parents(ctx: &Ctx, name: &str) -> Result<PathAcl, StorageError> {
    let mut parent_acl = root_acl(&ctx.state, &ctx.account.name, &ctx.container).await?;
    let owner = creator(&ctx.auth);
    for dir in ancestors(name) {
        match ctx
            .state
            .store
            .blob(&ctx.account.name, &ctx.container, dir)
            .await?
        {
            Some(existing) if existing.is_dir => {
                parent_acl = existing
                    .acl
                    .unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
            }
            Some(_) => {
                return Err(StorageError::new(
                    StatusCode::CONFLICT,
                    "PathConflict",
                    format!("`{dir}` is a file, so it cannot hold `{name}`."),
                ));
            }
            None => {
                let acl = PathAcl::child(&parent_acl, &owner, true, None, None);
                let row = directory(ctx, dir, acl.clone());
                // Another request may create it at the same time: either is fine.
                let absent = |c: Option<&Blob>| match c {
                    None => Ok(()),
                    Some(_) => Err(keyless_core::Error::exists("exists")),
                };
                match ctx.state.store.blob_put(&row, &absent).await {
                    Ok(_) => parent_acl = acl,
                    Err(e) if e.kind() == keyless_core::ErrorKind::AlreadyExists => {
                        if let Some(now) = ctx
                            .state
                            .store
                            .blob(&ctx.account.name, &ctx.container, dir)
                            .await?
                        {
                            parent_acl = now.acl.unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(parent_acl)
}

/// The ACL a path written through the blob API gets on an HNS account: an
/// existing file keeps its own; a new one inherits from its parent. `None` on
/// accounts without a namespace.
pub(crate) async fn acl_for_write(ctx: &Ctx) -> Result<Option<PathAcl>, StorageError> {
    if !ctx.account.hns {
        return Ok(None);
    }
    if let Some(existing) = ctx
        .state
        .store
        .blob(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?
    {
        if existing.is_dir {
            return Err(StorageError::new(
                StatusCode::CONFLICT,
                "PathConflict",
                "The path is a directory; a blob cannot replace it.",
            ));
        }
        if existing.acl.is_some() {
            return Ok(existing.acl);
        }
    }
    let parent = ensure_parents(ctx, &ctx.blob).await?;
    Ok(Some(PathAcl::child(
        &parent,
        &creator(&ctx.auth),
        false,
        None,
        None,
    )))
}

/// The ACL check of a request RBAC did not allow (and of `keyless access explain
/// --path`): walks the root and every directory above `name`, then `name` itself
/// if it exists, for `caller`. `needs`
/// is what the operation needs when the path exists, and when it does not.
pub(crate) async fn check_acl_for(
    state: &SharedState,
    account: &str,
    container: &str,
    caller: Caller<'_>,
    name: &str,
    (exists, missing): (Need, Need),
) -> Result<AclDecision, StorageError> {
    let root = root_acl(state, account, container).await?;
    let mut chain: Vec<(String, PathAcl)> = vec![("/".to_owned(), root)];
    let names = if name.is_empty() {
        Vec::new()
    } else {
        let mut all = ancestors(name);
        all.push(name);
        all
    };
    let mut target = None;
    for (i, n) in names.iter().enumerate() {
        let Some(row) = state.store.blob(account, container, n).await? else {
            if i + 1 == names.len() {
                break; // the target does not exist yet
            }
            return Err(path_not_found("The parent directory does not exist."));
        };
        let acl = row.acl.unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
        if i + 1 == names.len() {
            target = Some((format!("/{n}"), acl));
        } else {
            chain.push((format!("/{n}"), acl));
        }
    }
    if name.is_empty() {
        // The root itself is the target.
        target = chain.pop();
    }
    let steps: Vec<Step<'_>> = chain.iter().map(|(path, acl)| Step { path, acl }).collect();
    let need = if target.is_some() { exists } else { missing };
    let target = target.as_ref().map(|(path, acl)| Step { path, acl });
    Ok(acl::check(&steps, target, caller, need))
}

/// What a data action needs under ACLs, when the path exists and when it does not.
pub(crate) fn needs_of(data_action: &str) -> (Need, Need) {
    match data_action.rsplit('/').next().unwrap_or_default() {
        "read" => (READ, NOTHING),
        "write" | "add" => WRITE,
        "delete" | "action" => (UNLINK, UNLINK),
        _ => (NOTHING, NOTHING),
    }
}

/// Nothing beyond execute on the way.
const NOTHING: Need = Need {
    target: Perm::NONE,
    parent: Perm::NONE,
};
/// Read the target.
const READ: Need = Need {
    target: Perm::READ,
    parent: Perm::NONE,
};
/// List a directory: read and execute on it.
const LIST: Need = Need {
    target: Perm(5),
    parent: Perm::NONE,
};
/// Remove the target from its directory (delete, rename away): write on the parent.
const UNLINK: Need = Need {
    target: Perm::NONE,
    parent: Perm::WRITE,
};
/// Write the target when it exists; create it (write on the parent) when not.
const WRITE: (Need, Need) = (
    Need {
        target: Perm::WRITE,
        parent: Perm::NONE,
    },
    UNLINK,
);

/// The parts of a request the ACL check looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AclRequest<'a> {
    pub(crate) op: Operation,
    pub(crate) container: &'a str,
    pub(crate) blob: &'a str,
    pub(crate) query: &'a [(String, String)],
    /// The source path of a rename.
    pub(crate) rename_source: Option<&'a str>,
}

/// The ACL half of authorizing a bearer request on an HNS account, when RBAC
/// did not allow it: `None` when ACLs have no say (filesystem operations).
pub(crate) async fn authorize_by_acl(
    state: &SharedState,
    account: &str,
    caller: Caller<'_>,
    request: AclRequest<'_>,
) -> Result<Option<AclDecision>, StorageError> {
    use Operation as Op;
    let AclRequest {
        op,
        container,
        blob,
        query,
        rename_source,
    } = request;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let (name, needs): (String, (Need, Need)) = match op {
        Op::GetBlob | Op::GetBlobMetadata | Op::GetBlockList => (blob.to_owned(), (READ, NOTHING)),
        Op::GetBlobProperties | Op::GetPathStatus | Op::GetAccessControl => {
            (blob.to_owned(), (NOTHING, NOTHING))
        }
        Op::SetAccessControl | Op::SetAccessControlRecursive => {
            (blob.to_owned(), (NOTHING, NOTHING))
        }
        Op::ListBlobs => {
            let prefix = param("prefix").unwrap_or_default();
            let dir = prefix.rsplit_once('/').map_or("", |(d, _)| d);
            (dir.to_owned(), (LIST, LIST))
        }
        Op::ListPaths => {
            let dir = param("directory").unwrap_or_default().trim_matches('/');
            (dir.to_owned(), (LIST, LIST))
        }
        Op::PutBlob
        | Op::PutBlock
        | Op::PutBlockList
        | Op::SetBlobMetadata
        | Op::SetBlobProperties
        | Op::CopyBlob
        | Op::AppendBlock
        | Op::SealBlob
        | Op::LeaseBlob
        | Op::SetBlobTier
        | Op::CreateSnapshot
        | Op::UndeleteBlob
        | Op::CreatePath
        | Op::AppendData
        | Op::FlushData => (blob.to_owned(), WRITE),
        Op::DeletePath if param("recursive") == Some("true") => {
            let decision =
                check_acl_for(state, account, container, caller, blob, (UNLINK, UNLINK)).await?;
            if decision != AclDecision::Allow {
                return Ok(Some(decision));
            }
            return inner_directories_allow(state, account, container, caller, blob)
                .await
                .map(Some);
        }
        Op::DeleteBlob | Op::DeletePath => (blob.to_owned(), (UNLINK, UNLINK)),
        Op::RenamePath => {
            if let Some(source) = rename_source {
                let decision =
                    check_acl_for(state, account, container, caller, source, (UNLINK, UNLINK))
                        .await?;
                if decision != AclDecision::Allow {
                    return Ok(Some(decision));
                }
            }
            (blob.to_owned(), (UNLINK, UNLINK))
        }
        _ => return Ok(None),
    };
    check_acl_for(state, account, container, caller, &name, needs)
        .await
        .map(Some)
}

/// A recursive delete under ACLs: every directory it empties, the target
/// included, must grant the caller `rwx`.
async fn inner_directories_allow(
    state: &SharedState,
    account: &str,
    container: &str,
    caller: Caller<'_>,
    dir: &str,
) -> Result<AclDecision, StorageError> {
    const PAGE: usize = 1000;
    let need = Need {
        target: Perm::ALL,
        parent: Perm::NONE,
    };
    let judge = |row: &Blob| {
        let acl = row
            .acl
            .clone()
            .unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
        let path = format!("/{}", row.name);
        acl::check(
            &[],
            Some(Step {
                path: &path,
                acl: &acl,
            }),
            caller,
            need,
        )
    };
    match state.store.blob(account, container, dir).await? {
        Some(row) if row.is_dir => {
            let decision = judge(&row);
            if decision != AclDecision::Allow {
                return Ok(decision);
            }
        }
        _ => return Ok(AclDecision::Allow),
    }
    let prefix = format!("{dir}/");
    let mut marker = String::new();
    loop {
        let page = Page {
            prefix: &prefix,
            marker: &marker,
            max: PAGE,
        };
        let rows = state.store.blobs(account, container, page).await?;
        for row in rows.iter().filter(|r| r.is_dir) {
            let decision = judge(row);
            if decision != AclDecision::Allow {
                return Ok(decision);
            }
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE => marker.clone_from(&last.name),
            _ => return Ok(AclDecision::Allow),
        }
    }
}

/// What a caller that only ACLs let list may see of a listing of `listed`: an
/// entry beneath a deeper directory shows only when the caller has `r-x` on
/// every directory from `listed` (exclusive, already checked) down to the
/// entry's parent, as POSIX `ls -R` would. Decisions are kept per directory.
#[derive(Debug)]
pub(crate) struct ListingView<'a> {
    ctx: &'a Ctx,
    caller: &'a (String, Vec<String>),
    listed: String,
    /// `listed/`, or "" for the root.
    under: String,
    seen: std::collections::HashMap<String, bool>,
}

impl<'a> ListingView<'a> {
    /// The view of `ctx`'s listing of the directory `listed` ("" for the root),
    /// or `None` when the caller sees everything (RBAC, a key or a SAS allowed it).
    pub(crate) fn new(ctx: &'a Ctx, listed: &str) -> Option<Self> {
        let listed = listed.trim_matches('/').to_owned();
        let under = if listed.is_empty() {
            String::new()
        } else {
            format!("{listed}/")
        };
        ctx.acl_listing.as_ref().map(|caller| Self {
            ctx,
            caller,
            listed,
            under,
            seen: std::collections::HashMap::new(),
        })
    }

    /// Whether the entry `name` may be shown.
    pub(crate) async fn shows(&mut self, name: &str) -> Result<bool, StorageError> {
        let Some(rest) = name.strip_prefix(self.under.as_str()) else {
            return Ok(false);
        };
        let mut dir = self.listed.clone();
        let mut parts: Vec<&str> = rest.split('/').collect();
        parts.pop();
        for part in parts {
            if !dir.is_empty() {
                dir.push('/');
            }
            dir.push_str(part);
            if !self.open(&dir).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn open(&mut self, dir: &str) -> Result<bool, StorageError> {
        if let Some(known) = self.seen.get(dir) {
            return Ok(*known);
        }
        let path = self
            .ctx
            .state
            .store
            .blob(&self.ctx.account.name, &self.ctx.container, dir)
            .await?;
        let caller = keyless_core::acl::Caller {
            object_id: &self.caller.0,
            groups: &self.caller.1,
        };
        let needed = keyless_core::acl::Perm::READ.or(keyless_core::acl::Perm::EXECUTE);
        let open = path
            .and_then(|p| p.acl)
            .is_some_and(|acl| keyless_core::acl::allows(&acl, caller, needed).is_ok());
        self.seen.insert(dir.to_owned(), open);
        Ok(open)
    }
}
