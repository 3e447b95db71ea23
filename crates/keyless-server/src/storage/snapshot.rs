//! Snapshots: read-only copies of a blob, named by the moment they were taken
//! (`2026-12-03T09:40:00.1234567Z`) and addressed with `?snapshot=`.
//!
//! A snapshot keeps bytes of its own (a copy of the blob's file, or its inline
//! bytes), so a blob and its snapshots are deleted independently and no file is
//! ever shared between rows. What a snapshot may be asked: reads, its tags (set
//! and get), its deletion.

use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};

use keyless_store::{Blob, Content};

use super::Ctx;
use super::blob::{insert, load, release};
use super::conditions::{Conditions, condition_error};
use super::error::StorageError;
use super::operation::Operation;
use super::xml::http_date;

/// A snapshot's name: the UTC time it was taken, to the 100 ns, as Azure writes it.
fn name_at(nanos: u128) -> String {
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

/// The request's `snapshot=`, checked.
pub(crate) fn requested(ctx: &Ctx) -> Result<Option<&str>, StorageError> {
    match ctx.param("snapshot") {
        None => Ok(None),
        Some(s) if valid(s) => Ok(Some(s)),
        Some(s) => Err(StorageError::bad(
            "InvalidQueryParameterValue",
            format!(
                "Value for one of the query parameters specified in the request URI is invalid: snapshot `{s}` is not a snapshot time such as 2026-12-03T09:40:00.1234567Z"
            ),
        )),
    }
}

/// Refuses `snapshot=` on operations a snapshot does not take (it is read-only),
/// and `versionid=`, which keyless does not keep.
pub(crate) fn refuse_writes(op: Operation, query: &[(String, String)]) -> Result<(), StorageError> {
    use Operation as Op;
    let has = |name: &str| query.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if has("versionid") {
        return Err(StorageError::bad(
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid: keyless keeps no blob versions (versionid); snapshots (snapshot=) are kept",
        ));
    }
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
    if has("snapshot") && !reads {
        return Err(StorageError::bad(
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid: a snapshot is read-only; it is read, tagged and deleted only",
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
                .compose(&[(id.clone(), 0, b.size)])
                .await?
                .file_id,
        ),
        Content::Inline(bytes) => Content::Inline(bytes.clone()),
    };
    let mut nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut name = name_at(nanos);
    while ctx
        .state
        .store
        .snapshot(&ctx.account.name, &ctx.container, &ctx.blob, &name)
        .await?
        .is_some()
    {
        nanos += 100;
        name = name_at(nanos);
    }
    if let Err(e) = ctx.state.store.snapshot_put(&copy, &name).await {
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

/// Loads the snapshot a request names.
pub(crate) async fn load_snapshot(ctx: &Ctx, snapshot: &str) -> Result<Blob, StorageError> {
    match ctx
        .state
        .store
        .snapshot(&ctx.account.name, &ctx.container, &ctx.blob, snapshot)
        .await?
    {
        Some(b) => Ok(b),
        None => {
            super::blob::container_exists(ctx).await?;
            Err(StorageError::blob_not_found())
        }
    }
}

/// Writes a snapshot's changed tags.
pub(crate) async fn update(ctx: &Ctx, b: &Blob, snapshot: &str) -> Result<(), StorageError> {
    if let Some(old) = ctx.state.store.snapshot_put(b, snapshot).await? {
        release(ctx, vec![old]).await;
    }
    Ok(())
}

/// Delete Blob with `snapshot=`: that snapshot alone.
pub(crate) async fn delete(ctx: &Ctx, snapshot: &str) -> Result<(), StorageError> {
    let b = load_snapshot(ctx, snapshot).await?;
    Conditions::from(ctx)?
        .blob_without_lease(Some(&b), false)
        .map_err(|e| condition_error(e, false))?;
    let released = ctx
        .state
        .store
        .snapshots_delete(&ctx.account.name, &ctx.container, &ctx.blob, Some(snapshot))
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
