//! Access tiers of block blobs: Hot (inferred until one is set), Cool, Cold and
//! Archive. keyless keeps every tier's bytes on the same storage, so a tier is a
//! label with Azure's rules: an archived blob's bytes cannot be read or changed,
//! and rehydration (setting an online tier on an archived blob) completes at once.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use keyless_store::{Blob, BlobKind};

use super::Ctx;
use super::blob::{Modify, insert, modify};
use super::conditions::Conditions;
use super::error::StorageError;
use super::names;
use super::xml::http_date;

const TIERS: [&str; 4] = ["Hot", "Cool", "Cold", "Archive"];

/// `x-ms-access-tier` as Azure spells it; anything else is refused.
pub(crate) fn parse(value: &str) -> Result<&'static str, StorageError> {
    TIERS
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(value.trim()))
        .ok_or_else(|| {
            StorageError::bad(
                "InvalidHeaderValue",
                format!("The value for one of the HTTP headers is not in the correct format: x-ms-access-tier `{value}` is one of Hot, Cool, Cold, Archive"),
            )
        })
}

/// The tier a write asks for (`x-ms-access-tier`), with the time it is set at.
pub(crate) fn from_request(ctx: &Ctx) -> Result<Option<(String, i64)>, StorageError> {
    ctx.header("x-ms-access-tier")
        .map(|v| Ok((parse(v)?.to_owned(), ctx.state.now())))
        .transpose()
}

/// Whether the blob's bytes are offline.
pub(crate) fn archived(b: &Blob) -> bool {
    b.state.tier.as_ref().is_some_and(|(t, _)| t == "Archive")
}

/// Refuses to read or change the bytes of an archived blob.
pub(crate) fn refuse_archived(b: &Blob) -> Result<(), StorageError> {
    if archived(b) {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "BlobArchived",
            "This operation is not permitted on an archived blob.",
        ));
    }
    Ok(())
}

/// A block blob's tier headers on Get Blob and Get Blob Properties.
pub(crate) fn headers(h: &mut HeaderMap, b: &Blob) {
    if b.state.kind != BlobKind::BlockBlob {
        return;
    }
    match &b.state.tier {
        None => {
            h.insert(names::X_MS_ACCESS_TIER, HeaderValue::from_static("Hot"));
            h.insert(
                names::X_MS_ACCESS_TIER_INFERRED,
                HeaderValue::from_static("true"),
            );
        }
        Some((tier, at)) => {
            insert(h, names::X_MS_ACCESS_TIER, tier);
            h.insert(
                "x-ms-access-tier-inferred",
                HeaderValue::from_static("false"),
            );
            insert(
                h,
                HeaderName::from_static("x-ms-access-tier-change-time"),
                &http_date(*at),
            );
        }
    }
}

/// The tier elements of a listing's `<Properties>`.
pub(crate) fn xml(b: &Blob) -> String {
    if b.state.kind != BlobKind::BlockBlob {
        return String::new();
    }
    match &b.state.tier {
        None => {
            "<AccessTier>Hot</AccessTier><AccessTierInferred>true</AccessTierInferred>".to_owned()
        }
        Some((tier, at)) => format!(
            "<AccessTier>{tier}</AccessTier><AccessTierChangeTime>{}</AccessTierChangeTime>",
            http_date(*at)
        ),
    }
}

/// Set Blob Tier: 200, or 202 when an archived blob is brought back online.
pub(crate) async fn set(ctx: &Ctx) -> Result<Response, StorageError> {
    let tier = parse(ctx.header("x-ms-access-tier").ok_or_else(|| {
        StorageError::bad(
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified: x-ms-access-tier",
        )
    })?)?;
    let conditions = Conditions::from(ctx)?;
    let now = ctx.state.now();
    let (_, rehydrated) = modify(ctx, &conditions, Modify::Quiet, |b| {
        if b.state.kind != BlobKind::BlockBlob {
            return Err(StorageError::bad(
                "InvalidBlobType",
                "The blob type is invalid for this operation: access tiers apply to block blobs",
            ));
        }
        let rehydrated = archived(b) && tier != "Archive";
        b.state.tier = Some((tier.to_owned(), now));
        Ok(rehydrated)
    })
    .await?;
    let status = if rehydrated {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, [(header::CONTENT_LENGTH, "0")]).into_response())
}
