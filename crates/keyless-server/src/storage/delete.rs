//! Delete Blob and Undelete Blob: what a deletion takes with it (snapshots),
//! what the account's protection keeps deleted, and restoring it.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use keyless_core::Error;
use keyless_store::{Blob, RetainedKind};

use super::Ctx;
use super::blob::{container_exists, load, release};
use super::conditions::{Conditions, condition_error};
use super::error::StorageError;
use super::protection::Protection;

/// Delete Blob.
pub(crate) async fn delete(ctx: &Ctx) -> Result<Response, StorageError> {
    container_exists(ctx).await?;
    let with_snapshots = match ctx.header("x-ms-delete-snapshots") {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("include") => Some(true),
        Some(v) if v.eq_ignore_ascii_case("only") => Some(false),
        Some(v) => {
            return Err(StorageError::bad(
                "InvalidHeaderValue",
                format!(
                    "The value for one of the HTTP headers is not in the correct format: x-ms-delete-snapshots `{v}` is include or only"
                ),
            ));
        }
    };
    if let Some(earlier) = super::snapshot::requested(ctx)? {
        if with_snapshots.is_some() {
            return Err(StorageError::bad(
                "InvalidQueryParameterValue",
                "x-ms-delete-snapshots is for deleting a blob, not one of its snapshots",
            ));
        }
        super::snapshot::delete(ctx, earlier).await?;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    let conditions = Conditions::from(ctx)?;
    if with_snapshots == Some(false) {
        // The snapshots go; the blob stays, and its conditions still apply.
        let b = load(ctx).await?;
        conditions
            .blob(Some(&b), false)
            .map_err(|e| condition_error(e, false))?;
        let soft = Protection::of(&ctx.account).soft(ctx.state.now());
        let released = ctx
            .state
            .store
            .retained_delete(
                &ctx.account.name,
                &ctx.container,
                &ctx.blob,
                (Some(RetainedKind::Snapshot), None),
                soft,
            )
            .await?;
        release(ctx, released).await;
        return Ok(StatusCode::ACCEPTED.into_response());
    }
    delete_blob(
        ctx,
        &ctx.container,
        &ctx.blob,
        &conditions,
        with_snapshots == Some(true),
    )
    .await?;
    let protection = Protection::of(&ctx.account);
    let permanent = !protection.versioning && protection.blob_days.is_none();
    let mut h = HeaderMap::new();
    h.insert(
        "x-ms-delete-type-permanent",
        HeaderValue::from_static(if permanent { "true" } else { "false" }),
    );
    Ok((StatusCode::ACCEPTED, h).into_response())
}

/// Undelete Blob: restores what the account kept deleted of the blob (the blob
/// itself, its snapshots, its versions) while its retention lasts.
pub(crate) async fn undelete(ctx: &Ctx) -> Result<Response, StorageError> {
    if ctx.account.hns {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "FeatureNotSupportedForAccount",
            "keyless keeps no deleted paths on accounts with a hierarchical namespace.",
        ));
    }
    container_exists(ctx).await?;
    match ctx
        .state
        .store
        .undelete(&ctx.account.name, &ctx.container, &ctx.blob)
        .await
    {
        Ok(()) => Ok(StatusCode::OK.into_response()),
        Err(e) if e.kind() == keyless_core::ErrorKind::NotFound => {
            Err(StorageError::blob_not_found())
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes one blob of the request's account under `conditions`; a blob with
/// snapshots goes only `with_snapshots` (`SnapshotsPresent` otherwise).
async fn delete_blob(
    ctx: &Ctx,
    container: &str,
    name: &str,
    conditions: &Conditions,
    with_snapshots: bool,
) -> Result<(), StorageError> {
    let protection = Protection::of(&ctx.account);
    let now = ctx.state.now();
    let snapshots = if ctx.account.hns {
        Vec::new()
    } else {
        ctx.state
            .store
            .retained(&ctx.account.name, container, name)
            .await?
    };
    let has_snapshots = snapshots
        .iter()
        .any(|r| r.kind == RetainedKind::Snapshot && r.deleted.is_none());
    if has_snapshots && !with_snapshots {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "SnapshotsPresent",
            "This operation is not permitted because the blob has snapshots.",
        ));
    }
    let check = |c: Option<&Blob>| match c {
        None => Err(Error::not_found("the blob does not exist")),
        Some(c) => conditions.blob(Some(c), false),
    };
    let released = if ctx.account.hns {
        // A directory goes only when empty, and takes nothing else with it.
        ctx.state
            .store
            .path_delete(&ctx.account.name, container, name, false, &check)
            .await
            .map_err(|e| match e.kind() {
                keyless_core::ErrorKind::Conflict => StorageError::new(
                    StatusCode::CONFLICT,
                    "DirectoryIsNotEmpty",
                    "The directory is not empty.",
                ),
                _ => condition_error(e, false),
            })?
    } else {
        let keep = protection.on_delete(now);
        ctx.state
            .store
            .blob_delete_keeping(&ctx.account.name, container, name, &check, Some(&keep))
            .await
            .map_err(|e| condition_error(e, false))?
    };
    release(ctx, released).await;
    if with_snapshots && has_snapshots {
        // Kept deleted with the blob, or gone with it.
        let soft = protection.soft(now);
        let released = ctx
            .state
            .store
            .retained_delete(
                &ctx.account.name,
                container,
                name,
                (Some(RetainedKind::Snapshot), None),
                soft,
            )
            .await?;
        release(ctx, released).await;
    }
    Ok(())
}
