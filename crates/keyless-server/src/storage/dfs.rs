//! The DFS (ADLS Gen2) REST API on the storage listener: filesystems, paths,
//! append and flush, rename, recursive delete, access control.
//!
//! Appends stage blocks named by their position; a flush checks they line up
//! from the committed length to the flushed position and commits them, so a
//! file's ETag stays the same through appends until the flush.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use keyless_core::acl::{self, Change, PathAcl, parse_entries, parse_mode};
use keyless_core::rbac::Permission;
use keyless_core::{Error, ErrorKind};
use keyless_store::{Blob, BlobProperties, Block, Content, Page};

use super::Ctx;
use super::access;
use super::auth::Auth;
use super::blob::files;
use super::conditions::{Conditions, condition_error, new_etag};
use super::error::StorageError;
use super::hns;
use super::xml::http_date;

const MAX_APPEND: u64 = 4000 * 1024 * 1024;
/// The most paths one Set Access Control Recursive request changes (Azure's limit).
const MAX_ACL_BATCH: usize = 2000;

fn not_found() -> StorageError {
    StorageError::new(
        StatusCode::NOT_FOUND,
        "PathNotFound",
        "The specified path does not exist.",
    )
}

fn require_hns(ctx: &Ctx) -> Result<(), StorageError> {
    if ctx.account.hns {
        return Ok(());
    }
    Err(StorageError::new(
        StatusCode::CONFLICT,
        "FilesystemNotHierarchical",
        format!(
            "Account `{}` has no hierarchical namespace: create it with --hns to use the DFS API.",
            ctx.account.name
        ),
    ))
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(HeaderName::from_static(name), v);
    }
}

/// A continuation token: the last path a page held, opaque (base64, so that any
/// name fits a header).
fn continuation_token(last: &str) -> String {
    STANDARD.encode(last)
}

/// The path a request's `continuation` resumes after (empty on a first request).
fn continuation(ctx: &Ctx) -> Result<String, StorageError> {
    let Some(token) = ctx.param("continuation").filter(|t| !t.is_empty()) else {
        return Ok(String::new());
    };
    STANDARD
        .decode(token)
        .ok()
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(|| bad_query("the continuation token is not one keyless issued"))
}

fn path_headers(b: &Blob) -> HeaderMap {
    let mut h = HeaderMap::new();
    set(&mut h, "etag", &b.etag);
    set(&mut h, "last-modified", &http_date(b.last_modified));
    h
}

fn acl_headers(h: &mut HeaderMap, acl: &PathAcl) {
    set(h, "x-ms-owner", &acl.owner);
    set(h, "x-ms-group", &acl.group);
    set(h, "x-ms-permissions", &acl.permissions());
    set(h, "x-ms-acl", &acl.acl_text());
}

async fn path(ctx: &Ctx, name: &str) -> Result<Option<Blob>, StorageError> {
    Ok(ctx
        .state
        .store
        .blob(&ctx.account.name, &ctx.container, name)
        .await?)
}

fn bad_query(what: &str) -> StorageError {
    StorageError::bad("InvalidQueryParameterValue", what.to_owned())
}

fn invalid(e: &Error) -> StorageError {
    StorageError::bad("InvalidInput", e.message().to_owned())
}

/// The mode and umask headers of a create.
/// Owner, group and other bits.
type Mode = [acl::Perm; 3];

fn modes(ctx: &Ctx) -> Result<(Option<Mode>, Option<Mode>), StorageError> {
    let parse = |name: &str| {
        ctx.header(name)
            .map(|v| {
                parse_mode(v).map(|[o, g, t, _]| [o, g, t]).ok_or_else(|| {
                    StorageError::bad(
                        "InvalidHeaderValue",
                        format!("`{name}: {v}` is not a mode such as 0750 or rwxr-x---"),
                    )
                })
            })
            .transpose()
    };
    Ok((parse("x-ms-permissions")?, parse("x-ms-umask")?))
}

/// Create File / Create Directory (`?resource=file|directory`).
pub(crate) async fn create(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let directory = ctx.param("resource") == Some("directory");
    let conditions = Conditions::from(ctx)?;
    let existing = path(ctx, &ctx.blob).await?;
    if let Some(e) = &existing
        && e.is_dir != directory
    {
        {
            return Err(StorageError::new(
                StatusCode::CONFLICT,
                "PathConflict",
                "The path exists with another resource type.",
            ));
        }
    }
    let parent = hns::ensure_parents(ctx, &ctx.blob).await?;
    let (mode, umask) = modes(ctx)?;
    let mut acl = match existing.as_ref().and_then(|e| e.acl.clone()) {
        Some(kept) => kept,
        None => PathAcl::child(&parent, &hns::creator(&ctx.auth), directory, mode, umask),
    };
    if let Some(text) = ctx.header("x-ms-acl") {
        let entries = parse_entries(text, true).map_err(|e| invalid(&e))?;
        acl.apply(Change::Set, &entries, directory)
            .map_err(|e| invalid(&e))?;
    }
    let mut row = if directory {
        hns::directory(ctx, &ctx.blob, acl)
    } else {
        let now = ctx.state.now();
        Blob {
            account: ctx.account.name.clone(),
            container: ctx.container.clone(),
            name: ctx.blob.clone(),
            etag: new_etag(),
            created_at: now,
            last_modified: now,
            size: 0,
            content: Content::Inline(bytes::Bytes::new()),
            properties: BlobProperties {
                content_type: ctx.header("x-ms-content-type").map(str::to_owned),
                ..BlobProperties::default()
            },
            metadata: Vec::new(),
            committed_blocks: Vec::new(),
            is_dir: false,
            acl: Some(acl),
            state: keyless_store::BlobState::default(),
        }
    };
    if let Some(e) = &existing {
        row.created_at = e.created_at;
        if directory {
            // Creating an existing directory changes nothing but its ETag.
            row.metadata.clone_from(&e.metadata);
        }
    }
    let check = |c: Option<&Blob>| conditions.blob(c, false);
    let released = ctx
        .state
        .store
        .blob_put(&row, &check)
        .await
        .map_err(dfs_condition)?;
    ctx.state.blobs.remove(&released).await;
    let mut h = path_headers(&row);
    set(&mut h, "content-length", "0");
    Ok((StatusCode::CREATED, h).into_response())
}

fn dfs_condition(e: Error) -> StorageError {
    match e.kind() {
        ErrorKind::AlreadyExists => StorageError::new(
            StatusCode::CONFLICT,
            "PathAlreadyExists",
            "The specified path already exists.",
        ),
        ErrorKind::NotFound => not_found(),
        _ => condition_error(e, false),
    }
}

fn position(ctx: &Ctx) -> Result<u64, StorageError> {
    ctx.param("position")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| {
            StorageError::bad(
                "InvalidQueryParameterValue",
                "`position` must be the byte offset the data goes to",
            )
        })
}

/// Append Data: stages the body at `position` until a flush commits it.
pub(crate) async fn append(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let at = position(ctx)?;
    let file = path(ctx, &ctx.blob).await?.ok_or_else(not_found)?;
    if file.is_dir {
        return Err(StorageError::bad(
            "InvalidInput",
            "Data cannot be appended to a directory.",
        ));
    }
    if at < file.size {
        return Err(StorageError::bad(
            "InvalidFlushPosition",
            format!(
                "The position {at} lies inside the {} bytes already flushed.",
                file.size
            ),
        ));
    }
    super::blob::refuse_declared_above(ctx, MAX_APPEND, "an append")?;
    let sent = super::checksum::Sent::from(ctx)?;
    let stream = Box::pin(futures_util::StreamExt::map(body.into_data_stream(), |r| {
        r.map_err(std::io::Error::other)
    }));
    let (stream, tap) = sent.tap(stream);
    let written = ctx
        .state
        .blobs
        .write(stream, MAX_APPEND)
        .await
        .map_err(|e| {
            tap.as_ref()
                .and_then(super::checksum::Tap::fault)
                .unwrap_or_else(|| e.into())
        })?;
    if let Err(e) = sent.check_streamed(&written.md5, tap.as_ref()) {
        ctx.state.blobs.remove(&[written.file_id]).await;
        return Err(e);
    }
    let block = Block {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        blob: ctx.blob.clone(),
        block_id: format!("{at:020}"),
        size: written.size,
        file_id: written.file_id,
        created_at: ctx.state.now(),
    };
    if let Some(old) = ctx.state.store.block_put(&block).await? {
        ctx.state.blobs.remove(&[old]).await;
    }
    let mut h = HeaderMap::new();
    set(&mut h, "x-ms-request-server-encrypted", "true");
    sent.echo(&mut h);
    Ok((StatusCode::ACCEPTED, h).into_response())
}

/// Flush Data: commits the appends that line up to `position`.
pub(crate) async fn flush(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let to = position(ctx)?;
    let conditions = Conditions::from(ctx)?;
    let file = path(ctx, &ctx.blob).await?.ok_or_else(not_found)?;
    let mut staged = ctx
        .state
        .store
        .blocks(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?;
    staged.sort_by(|a, b| a.block_id.cmp(&b.block_id));
    let mut parts: Vec<(String, u64, u64)> = Vec::new();
    let mut temporary = Vec::new();
    if file.size > 0 && to > file.size {
        match &file.content {
            Content::File(id) => parts.push((id.clone(), 0, file.size)),
            Content::Inline(bytes) => {
                let data = bytes.clone();
                let once = Box::pin(futures_util::stream::once(async move { Ok(data) }));
                let w = ctx.state.blobs.write(once, file.size).await?;
                parts.push((w.file_id.clone(), 0, file.size));
                temporary.push(w.file_id);
            }
        }
    }
    let mut cursor = file.size;
    for b in &staged {
        if cursor >= to {
            break;
        }
        let at: u64 = b.block_id.parse().unwrap_or(u64::MAX);
        if at != cursor {
            break;
        }
        let len = b.size.min(to - cursor);
        parts.push((b.file_id.clone(), 0, len));
        cursor += len;
    }
    if cursor != to {
        ctx.state.blobs.remove(&temporary).await;
        return Err(StorageError::bad(
            "InvalidFlushPosition",
            format!(
                "The uploaded data is not contiguous or the position query parameter value is not equal to the length of the file after appending the uploaded data: {cursor} bytes line up, the flush names {to}."
            ),
        ));
    }
    if to == file.size {
        ctx.state.blobs.remove(&temporary).await;
        return Ok((StatusCode::OK, path_headers(&file)).into_response());
    }
    let written = ctx.state.blobs.compose(&parts, true).await?;
    ctx.state.blobs.remove(&temporary).await;
    let mut row = file.clone();
    row.etag = new_etag();
    row.last_modified = ctx.state.now();
    row.size = written.size;
    row.content = Content::File(written.file_id);
    if let Some(t) = ctx.header("x-ms-content-type") {
        row.properties.content_type = Some(t.to_owned());
    }
    row.properties.content_md5 = Some(written.md5.to_vec());
    let check = |c: Option<&Blob>| match c {
        None => Err(Error::not_found("the path does not exist")),
        Some(c) => conditions.blob(Some(c), false),
    };
    match ctx.state.store.blob_put(&row, &check).await {
        Ok(released) => ctx.state.blobs.remove(&released).await,
        Err(e) => {
            ctx.state.blobs.remove(&files(&row.content)).await;
            return Err(dfs_condition(e));
        }
    }
    let mut h = path_headers(&row);
    set(&mut h, "content-length", "0");
    set(&mut h, "x-ms-request-server-encrypted", "true");
    Ok((StatusCode::OK, h).into_response())
}

/// The access control of the request's path, or of the root directory.
async fn current_acl(ctx: &Ctx) -> Result<(Option<Blob>, PathAcl), StorageError> {
    if ctx.blob.is_empty() {
        let acl = hns::root_acl(&ctx.state, &ctx.account.name, &ctx.container).await?;
        return Ok((None, acl));
    }
    let row = path(ctx, &ctx.blob).await?.ok_or_else(not_found)?;
    let acl = row
        .acl
        .clone()
        .unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
    Ok((Some(row), acl))
}

/// Get Properties with `action=getAccessControl` or `action=getStatus`.
pub(crate) async fn status(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let (row, acl) = current_acl(ctx).await?;
    let mut h = row.as_ref().map(path_headers).unwrap_or_default();
    acl_headers(&mut h, &acl);
    let directory = row.as_ref().is_none_or(|r| r.is_dir);
    set(
        &mut h,
        "x-ms-resource-type",
        if directory { "directory" } else { "file" },
    );
    if let Some(r) = &row {
        set(&mut h, "content-length", &r.size.to_string());
    }
    Ok((StatusCode::OK, h).into_response())
}

/// Who may change access control in this request: a superuser (account key,
/// SAS, or an RBAC role with `modifyPermissions`, decided once per request), or
/// the owner of each path.
struct Changer<'a> {
    superuser: bool,
    object_id: Option<&'a str>,
    /// The groups the caller belongs to (transitively), for chgrp.
    groups: Vec<String>,
}

impl<'a> Changer<'a> {
    fn of(ctx: &'a Ctx) -> Self {
        match &ctx.auth {
            Auth::Anonymous => Self {
                superuser: false,
                object_id: None,
                groups: Vec::new(),
            },
            Auth::SharedKey | Auth::Sas(_) => Self {
                superuser: true,
                object_id: None,
                groups: Vec::new(),
            },
            Auth::Bearer(identity) => Self {
                superuser: access::authorize(
                    &ctx.state,
                    &ctx.account,
                    identity,
                    Permission::DataAction(access::MODIFY_PERMISSIONS),
                    &ctx.container,
                )
                .is_ok(),
                object_id: Some(identity.object_id()),
                groups: identity.groups(),
            },
        }
    }

    fn may_change(&self, acl: &PathAcl) -> bool {
        self.superuser || self.object_id == Some(acl.owner.as_str())
    }
}

fn changed(
    ctx: &Ctx,
    changer: &Changer<'_>,
    mut acl: PathAcl,
    directory: bool,
) -> Result<PathAcl, StorageError> {
    if let Some(owner) = ctx.header("x-ms-owner") {
        if !changer.superuser && owner != acl.owner {
            return Err(StorageError::new(
                StatusCode::FORBIDDEN,
                "AuthorizationPermissionMismatch",
                "Only a superuser may change the owner of a path.",
            ));
        }
        owner.clone_into(&mut acl.owner);
    }
    if let Some(group) = ctx.header("x-ms-group") {
        // The owner may hand the path to a group it belongs to, nothing else.
        if !changer.superuser && group != acl.group && !changer.groups.iter().any(|g| g == group) {
            return Err(StorageError::new(
                StatusCode::FORBIDDEN,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
            )
            .explained(format!(
                "the owner may make only a group it belongs to the owning group of `/{}`; it is not a member of `{group}`",
                ctx.blob
            )));
        }
        group.clone_into(&mut acl.group);
    }
    if let Some(text) = ctx.header("x-ms-permissions") {
        acl.set_permissions(text).map_err(|e| invalid(&e))?;
    }
    if let Some(text) = ctx.header("x-ms-acl") {
        let entries = parse_entries(text, true).map_err(|e| invalid(&e))?;
        acl.apply(Change::Set, &entries, directory)
            .map_err(|e| invalid(&e))?;
    }
    Ok(acl)
}

/// Stores the root directory's ACL on the container.
async fn set_root_acl(ctx: &Ctx, acl: PathAcl) -> Result<keyless_store::Container, StorageError> {
    let mut c = ctx
        .state
        .store
        .container(&ctx.account.name, &ctx.container)
        .await?
        .ok_or_else(StorageError::container_not_found)?;
    let loaded = c.clone();
    c.acl = Some(acl);
    // Written over the container as loaded only: nothing else may be lost.
    let check = |current: &keyless_store::Container| {
        if current.etag == loaded.etag
            && current.state == loaded.state
            && current.metadata == loaded.metadata
        {
            Ok(())
        } else {
            Err(keyless_core::Error::new(
                keyless_core::ErrorKind::Conflict,
                "the filesystem changed while its access control was being set; retry",
            ))
        }
    };
    ctx.state.store.container_update(&c, &check).await?;
    Ok(c)
}

fn owner_only(ctx: &Ctx, acl: &PathAcl) -> StorageError {
    StorageError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
    )
    .explained(format!(
        "only the owner ({}) or a superuser (Storage Blob Data Owner) may change the access control of `/{}`",
        acl.owner, ctx.blob
    ))
}

/// Set Access Control: owner, group, permissions or a whole ACL.
pub(crate) async fn set_access(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let (row, acl) = current_acl(ctx).await?;
    let changer = Changer::of(ctx);
    if !changer.may_change(&acl) {
        return Err(owner_only(ctx, &acl));
    }
    let directory = row.as_ref().is_none_or(|r| r.is_dir);
    let acl = changed(ctx, &changer, acl, directory)?;
    let Some(mut row) = row else {
        let c = set_root_acl(ctx, acl).await?;
        let mut h = HeaderMap::new();
        set(&mut h, "etag", &c.etag);
        return Ok((StatusCode::OK, h).into_response());
    };
    row.acl = Some(acl);
    row.etag = new_etag();
    row.last_modified = ctx.state.now();
    let conditions = Conditions::from(ctx)?;
    let check = |c: Option<&Blob>| conditions.blob(c, false);
    ctx.state
        .store
        .blob_update(&row, &check)
        .await
        .map_err(dfs_condition)?;
    Ok((StatusCode::OK, path_headers(&row)).into_response())
}

/// Set Access Control Recursive: `mode=set|modify|remove` over a directory tree.
/// Paths the caller may not change count as failures, as Azure reports them.
pub(crate) async fn set_access_recursive(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let change = match ctx.param("mode") {
        Some("set") => Change::Set,
        Some("modify") => Change::Modify,
        Some("remove") => Change::Remove,
        _ => {
            return Err(StorageError::bad(
                "InvalidQueryParameterValue",
                "`mode` must be set, modify or remove",
            ));
        }
    };
    let text = ctx.header("x-ms-acl").ok_or_else(|| {
        StorageError::bad(
            "MissingRequiredHeader",
            "x-ms-acl names the entries to change",
        )
    })?;
    let entries = parse_entries(text, change != Change::Remove).map_err(|e| invalid(&e))?;
    let (root_row, root_acl) = current_acl(ctx).await?;
    let mut targets: Vec<(String, bool, PathAcl)> = Vec::new();
    if let Some(r) = &root_row
        && !r.is_dir
    {
        targets.push((r.name.clone(), false, root_acl.clone()));
    }
    let directory = root_row.as_ref().is_none_or(|r| r.is_dir);
    // A batch holds at most `maxRecords` paths below the directory; the directory
    // itself is changed by the first batch, and `continuation` resumes after the
    // last path of the batch before.
    let max = match ctx.param("maxRecords") {
        None => MAX_ACL_BATCH,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ACL_BATCH).contains(n))
            .ok_or_else(|| bad_query(&format!("maxRecords must be 1 to {MAX_ACL_BATCH}")))?,
    };
    let resume = continuation(ctx)?;
    let mut next = None;
    if directory {
        let prefix = if ctx.blob.is_empty() {
            String::new()
        } else {
            format!("{}/", ctx.blob)
        };
        if !resume.is_empty() && !resume.starts_with(&prefix) {
            return Err(bad_query(
                "the continuation token is not one of this directory's",
            ));
        }
        let page = ctx
            .state
            .store
            .blobs(
                &ctx.account.name,
                &ctx.container,
                Page {
                    prefix: &prefix,
                    marker: &resume,
                    max,
                },
            )
            .await?;
        if page.len() == max {
            next = page.last().map(|b| b.name.clone());
        }
        for b in page {
            let acl = b
                .acl
                .clone()
                .unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
            targets.push((b.name, b.is_dir, acl));
        }
    }
    let changer = Changer::of(ctx);
    let (mut dirs, mut files_ok, mut failures) = (0u64, 0u64, Vec::new());
    let mut updates = Vec::new();
    if directory && resume.is_empty() {
        let mut acl = root_acl.clone();
        if changer.may_change(&acl) && acl.apply(change, &entries, true).is_ok() {
            dirs += 1;
            if root_row.is_none() {
                set_root_acl(ctx, acl).await?;
            } else {
                updates.push((ctx.blob.clone(), acl));
            }
        } else {
            failures.push(
                json!({"name": ctx.blob, "type": "DIRECTORY", "errorMessage": "not permitted"}),
            );
        }
    }
    for (name, is_dir, mut acl) in targets {
        if !changer.may_change(&acl) {
            failures.push(json!({"name": name, "type": if is_dir { "DIRECTORY" } else { "FILE" }, "errorMessage": "This request is not authorized to perform this operation using this permission."}));
            continue;
        }
        // Default entries apply to directories only; files take the access entries.
        let own: Vec<_> = entries
            .iter()
            .filter(|e| is_dir || !e.default)
            .cloned()
            .collect();
        match acl.apply(change, &own, is_dir) {
            Ok(()) => {
                if is_dir {
                    dirs += 1;
                } else {
                    files_ok += 1;
                }
                updates.push((name, acl));
            }
            Err(e) => {
                failures.push(json!({"name": name, "type": "FILE", "errorMessage": e.message()}))
            }
        }
    }
    ctx.state
        .store
        .acl_update(&ctx.account.name, &ctx.container, &updates)
        .await?;
    let body = json!({
        "directoriesSuccessful": dirs,
        "filesSuccessful": files_ok,
        "failureCount": failures.len(),
        "failedEntries": failures,
    });
    let mut h = HeaderMap::new();
    set(&mut h, "content-type", "application/json");
    if let Some(next) = &next {
        set(&mut h, "x-ms-continuation", &continuation_token(next));
    }
    Ok((StatusCode::OK, h, body.to_string()).into_response())
}

/// Delete Path (`recursive=true|false`).
pub(crate) async fn delete(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let recursive = ctx.param("recursive") == Some("true");
    let conditions = Conditions::from(ctx)?;
    let check = |c: Option<&Blob>| conditions.blob(c, false);
    let released = ctx
        .state
        .store
        .path_delete(
            &ctx.account.name,
            &ctx.container,
            &ctx.blob,
            recursive,
            &check,
        )
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Conflict => StorageError::new(
                StatusCode::CONFLICT,
                "DirectoryNotEmpty",
                "The recursive query parameter value must be true to delete a non-empty directory.",
            ),
            _ => dfs_condition(e),
        })?;
    ctx.state.blobs.remove(&released).await;
    Ok(StatusCode::OK.into_response())
}

/// The path a rename names as its source: `/{filesystem}/{path}`, optionally
/// with a SAS after `?`.
pub(crate) fn rename_source(ctx: &Ctx) -> Result<(String, String), StorageError> {
    super::rename_source(&ctx.headers)
        .map(|s| (s.filesystem, s.path))
        .ok_or_else(|| {
            StorageError::bad(
                "InvalidSourceUri",
                "x-ms-rename-source must be /{filesystem}/{path}",
            )
        })
}

/// Rename Path: moves a file or a whole directory, metadata only, atomically.
pub(crate) async fn rename(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    let (fs, source) = rename_source(ctx)?;
    if fs != ctx.container {
        return Err(StorageError::bad(
            "InvalidSourceUri",
            "keyless renames within one filesystem only",
        ));
    }
    if source == ctx.blob || ctx.blob.starts_with(&format!("{source}/")) {
        return Err(StorageError::bad(
            "InvalidDestinationPath",
            "A path cannot be renamed onto itself or into itself.",
        ));
    }
    let dest_parent = hns::parent(&ctx.blob);
    if !dest_parent.is_empty() {
        match path(ctx, dest_parent).await? {
            Some(p) if p.is_dir => {}
            _ => {
                return Err(StorageError::new(
                    StatusCode::NOT_FOUND,
                    "RenameDestinationParentPathNotFound",
                    "The parent directory of the destination path does not exist.",
                ));
            }
        }
    }
    let conditions = Conditions::from(ctx)?;
    let check = |c: Option<&Blob>| conditions.blob(c, false);
    let released = ctx
        .state
        .store
        .path_rename(
            &ctx.account.name,
            &ctx.container,
            &source,
            &ctx.blob,
            &check,
        )
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => StorageError::new(
                StatusCode::NOT_FOUND,
                "SourcePathNotFound",
                "The source path for a rename operation does not exist.",
            ),
            _ => dfs_condition(e),
        })?;
    ctx.state.blobs.remove(&released).await;
    let mut h = HeaderMap::new();
    set(&mut h, "content-length", "0");
    Ok((StatusCode::CREATED, h).into_response())
}

/// List Paths: JSON, `recursive`, `directory`, `maxResults`, `continuation`.
pub(crate) async fn list(ctx: &Ctx) -> Result<Response, StorageError> {
    require_hns(ctx)?;
    if ctx
        .state
        .store
        .container(&ctx.account.name, &ctx.container)
        .await?
        .is_none()
    {
        return Err(StorageError::container_not_found());
    }
    let recursive = ctx.param("recursive") == Some("true");
    let directory = ctx
        .param("directory")
        .map(|d| d.trim_matches('/').to_owned())
        .filter(|d| !d.is_empty());
    if let Some(d) = &directory {
        match path(ctx, d).await? {
            Some(p) if p.is_dir => {}
            _ => return Err(not_found()),
        }
    }
    let max = ctx
        .param("maxResults")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(5000)
        .clamp(1, 5000);
    let mut view = hns::ListingView::new(ctx, directory.as_deref().unwrap_or_default());
    let prefix = directory.map(|d| format!("{d}/")).unwrap_or_default();
    let mut marker = continuation(ctx)?;
    let mut paths: Vec<Value> = Vec::new();
    let mut more = false;
    'pages: loop {
        let page = ctx
            .state
            .store
            .blobs(
                &ctx.account.name,
                &ctx.container,
                Page {
                    prefix: &prefix,
                    marker: &marker,
                    max: 1000,
                },
            )
            .await?;
        let full = page.len() == 1000;
        for b in page {
            marker.clone_from(&b.name);
            let rest = b.name.get(prefix.len()..).unwrap_or_default();
            if !recursive && rest.contains('/') {
                continue;
            }
            if let Some(v) = view.as_mut()
                && !v.shows(&b.name).await?
            {
                continue;
            }
            if paths.len() == max {
                more = true;
                break 'pages;
            }
            let acl = b
                .acl
                .clone()
                .unwrap_or_else(|| PathAcl::root(acl::SUPERUSER));
            let mut entry = json!({
                "name": b.name,
                "contentLength": b.size.to_string(),
                "lastModified": http_date(b.last_modified),
                "etag": b.etag,
                "owner": acl.owner,
                "group": acl.group,
                "permissions": acl.permissions(),
            });
            if let (true, Some(map)) = (b.is_dir, entry.as_object_mut()) {
                map.insert("isDirectory".into(), json!("true"));
            }
            paths.push(entry);
        }
        if !full {
            break;
        }
    }
    let mut h = HeaderMap::new();
    set(&mut h, "content-type", "application/json");
    if more {
        // The last name returned: the next page starts after it.
        if let Some(last) = paths
            .last()
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
        {
            set(&mut h, "x-ms-continuation", &continuation_token(last));
        }
    }
    Ok((StatusCode::OK, h, json!({ "paths": paths }).to_string()).into_response())
}
