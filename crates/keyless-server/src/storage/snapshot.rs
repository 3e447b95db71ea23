//! Snapshots: read-only copies of a blob, named by the moment they were taken
//! (`2026-12-03T09:40:00.1234567Z`) and addressed with `?snapshot=`.
//!
//! A snapshot keeps bytes of its own (a copy of the blob's file, or its inline
//! bytes), so a blob and its snapshots are deleted independently and no file is
//! ever shared between rows. What a snapshot may be asked: reads, its tags (set
//! and get), its deletion.

use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use keyless_store::{Blob, Content, Retained, RetainedKind};

use super::Ctx;
use super::blob::{insert, load, release};
use super::conditions::{Conditions, condition_error};
use super::error::StorageError;
use super::operation::Operation;
use super::xml::http_date;

/// A snapshot's name: the UTC time it was taken, to the 100 ns, as Azure writes it.
pub(crate) fn name_at(nanos: u128) -> String {
    let secs = i64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    let ticks = (nanos % 1_000_000_000) / 100;
    let day = super::delegation::iso(secs);
    format!("{}.{ticks:07}Z", day.trim_end_matches('Z'))
}

/// Whether `text` has the shape of a snapshot name.
pub(crate) fn valid(text: &str) -> bool {
    let b = text.as_bytes();
    text.len() == 28
        && b.get(4) == Some(&b'-')
        && b.get(10) == Some(&b'T')
        && b.get(19) == Some(&b'.')
        && b.get(27) == Some(&b'Z')
        && text
            .chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 27) || c.is_ascii_digit())
}

/// An earlier state a request names: `snapshot=` or `versionid=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Earlier<'a> {
    pub(crate) kind: RetainedKind,
    pub(crate) id: &'a str,
}

/// The request's `snapshot=` or `versionid=`, checked.
pub(crate) fn requested(ctx: &Ctx) -> Result<Option<Earlier<'_>>, StorageError> {
    let named = match (ctx.param("snapshot"), ctx.param("versionid")) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(StorageError::bad(
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid: a request names a snapshot or a version, not both",
            ));
        }
        (Some(s), None) => (RetainedKind::Snapshot, "snapshot", s),
        (None, Some(v)) => (RetainedKind::Version, "versionid", v),
    };
    let (kind, param, id) = named;
    if valid(id) {
        return Ok(Some(Earlier { kind, id }));
    }
    Err(StorageError::bad(
        "InvalidQueryParameterValue",
        format!(
            "Value for one of the query parameters specified in the request URI is invalid: {param} `{id}` is not a time such as 2026-12-03T09:40:00.1234567Z"
        ),
    ))
}

/// Refuses `snapshot=` and `versionid=` on operations an earlier state does not
/// take (it is read-only).
pub(crate) fn refuse_writes(op: Operation, query: &[(String, String)]) -> Result<(), StorageError> {
    use Operation as Op;
    let has = |name: &str| query.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let reads = matches!(
        op,
        Op::GetBlob
            | Op::GetBlobProperties
            | Op::GetBlobMetadata
            | Op::GetBlobTags
            | Op::SetBlobTags
            | Op::GetBlockList
            | Op::GetPageRanges
            | Op::DeleteBlob
            | Op::GetAccountInformation
    );
    if (has("snapshot") || has("versionid")) && !reads {
        return Err(StorageError::bad(
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid: a snapshot or an earlier version is read-only; it is read, tagged and deleted only",
        ));
    }
    Ok(())
}

/// Create Snapshot.
pub(crate) async fn create(ctx: &Ctx) -> Result<Response, StorageError> {
    if ctx.account.hns {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "FeatureNotSupportedForAccount",
            "keyless keeps no snapshots on accounts with a hierarchical namespace.",
        ));
    }
    let conditions = Conditions::from(ctx)?;
    let b = load(ctx).await?;
    // A snapshot reads the blob: a lease id, if given, must be the blob's.
    conditions
        .blob(Some(&b), true)
        .map_err(|e| condition_error(e, false))?;
    let metadata = ctx.metadata()?;
    let mut copy = b.clone();
    if !metadata.is_empty() {
        copy.metadata = metadata;
    }
    copy.state.lease = None;
    copy.content = match &b.content {
        Content::File(id) => Content::File(
            ctx.state
                .blobs
                .compose(&[(id.clone(), 0, b.size)], false)
                .await?
                .file_id,
        ),
        Content::Inline(bytes) => Content::Inline(bytes.clone()),
    };
    let name = super::protection::fresh_name();
    let kept = Retained {
        kind: RetainedKind::Snapshot,
        id: name.clone(),
        deleted: None,
        blob: copy,
    };
    if let Err(e) = ctx.state.store.retained_put(&kept).await {
        let copy = kept.blob;
        release(ctx, super::blob::files(&copy.content)).await;
        return Err(e.into());
    }
    let mut h = HeaderMap::new();
    insert(&mut h, HeaderName::from_static("x-ms-snapshot"), &name);
    insert(&mut h, axum::http::header::ETAG, &b.etag);
    insert(
        &mut h,
        axum::http::header::LAST_MODIFIED,
        &http_date(b.last_modified),
    );
    h.insert(
        "x-ms-request-server-encrypted",
        axum::http::HeaderValue::from_static("true"),
    );
    Ok((StatusCode::CREATED, h).into_response())
}

/// The earlier state of a blob `earlier` names: a live snapshot, or a version
/// (the current blob when it is the version named).
pub(crate) async fn find_earlier(
    ctx: &Ctx,
    (account, container, name): (&str, &str, &str),
    earlier: Earlier<'_>,
) -> Result<Option<Blob>, StorageError> {
    let store = &ctx.state.store;
    if earlier.kind == RetainedKind::Version
        && let Some(b) = store.blob(account, container, name).await?
        && b.state.version_id.as_deref() == Some(earlier.id)
    {
        return Ok(Some(b));
    }
    Ok(store
        .retained_one(account, container, name, earlier.kind, earlier.id)
        .await?
        .filter(|r| r.deleted.is_none())
        .map(|r| r.blob))
}

/// Whether `earlier` names the version the request's blob is now.
async fn is_current_version(ctx: &Ctx, earlier: Earlier<'_>) -> Result<bool, StorageError> {
    if earlier.kind != RetainedKind::Version {
        return Ok(false);
    }
    let current = ctx
        .state
        .store
        .blob(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?;
    Ok(current.is_some_and(|c| c.state.version_id.as_deref() == Some(earlier.id)))
}

/// Loads the earlier state a request names.
pub(crate) async fn load_earlier(ctx: &Ctx, earlier: Earlier<'_>) -> Result<Blob, StorageError> {
    let at = (
        ctx.account.name.as_str(),
        ctx.container.as_str(),
        ctx.blob.as_str(),
    );
    match find_earlier(ctx, at, earlier).await? {
        Some(b) => Ok(b),
        None => {
            super::blob::container_exists(ctx).await?;
            Err(StorageError::blob_not_found())
        }
    }
}

/// Writes an earlier state's changed tags.
pub(crate) async fn update(ctx: &Ctx, b: &Blob, earlier: Earlier<'_>) -> Result<(), StorageError> {
    if is_current_version(ctx, earlier).await? {
        // The current version is the blob.
        let check = |c: Option<&Blob>| match c {
            Some(c) if c.state.version_id == b.state.version_id => Ok(()),
            _ => Err(keyless_core::Error::not_found("the blob does not exist")),
        };
        ctx.state.store.blob_update(b, &check).await?;
        return Ok(());
    }
    let kept = Retained {
        kind: earlier.kind,
        id: earlier.id.to_owned(),
        deleted: None,
        blob: b.clone(),
    };
    if let Some(old) = ctx.state.store.retained_put(&kept).await? {
        release(ctx, vec![old]).await;
    }
    Ok(())
}

/// Delete Blob with `snapshot=` or `versionid=`: that state alone, kept deleted
/// for the account's retention days when it has them.
pub(crate) async fn delete(ctx: &Ctx, earlier: Earlier<'_>) -> Result<(), StorageError> {
    let b = load_earlier(ctx, earlier).await?;
    if is_current_version(ctx, earlier).await? {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "OperationNotAllowedOnCurrentVersion",
            "The current version of a blob is deleted by Delete Blob without versionid; that keeps it as a previous version.",
        ));
    }
    Conditions::from(ctx)?
        .blob_without_lease(Some(&b), false)
        .map_err(|e| condition_error(e, false))?;
    let soft = super::protection::Protection::of(&ctx.account).soft(ctx.state.now());
    let released = ctx
        .state
        .store
        .retained_delete(
            &ctx.account.name,
            &ctx.container,
            &ctx.blob,
            (Some(earlier.kind), Some(earlier.id)),
            soft,
        )
        .await?;
    release(ctx, released).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_iso_times_to_the_100_ns() {
        let name = name_at(1_764_754_800_123_456_789);
        assert_eq!(name, "2025-12-03T09:40:00.1234567Z");
        assert!(valid(&name));
        assert_eq!(name_at(0), "1970-01-01T00:00:00.0000000Z");
        assert_eq!(
            name_at(951_782_400_000_000_000),
            "2000-02-29T00:00:00.0000000Z"
        );
        for bad in [
            "2025-12-03T09:40:00Z",
            "2025-12-03T09:40:00.123456xZ",
            "",
            "../etc",
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }
}
