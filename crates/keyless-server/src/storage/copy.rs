//! Copy Blob from a URL on this server: synchronous, whole-blob.
//!
//! The source is readable when it lies in the request's own account and the
//! request is signed with the account key, or when its URL carries a SAS that
//! grants read on it.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use keyless_core::rbac::Permission;
use keyless_store::{Blob, Content};

use super::Ctx;
use super::access;
use super::auth::Auth;
use super::blob::files;
use super::conditions::{Conditions, condition_error, new_etag};
use super::error::StorageError;
use super::operation::Operation;
use super::sas::verify_sas_with_policy;
use super::xml::http_date;

pub(crate) async fn run(ctx: &Ctx) -> Result<Response, StorageError> {
    let source = ctx
        .header("x-ms-copy-source")
        .unwrap_or_default()
        .to_owned();
    let cannot = |why: &str| {
        StorageError::new(
            StatusCode::FORBIDDEN,
            "CannotVerifyCopySource",
            format!("Cannot verify the copy source: {why}"),
        )
    };
    if url::Url::parse(&source).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
        return Err(StorageError::bad(
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format: x-ms-copy-source must be an absolute http(s) URL",
        ));
    }
    let storage = ctx.state.urls.storage.trim_end_matches('/');
    // A source elsewhere is not one keyless can find (it fetches nothing from
    // other hosts): 404, as for a missing blob.
    let rest = source.strip_prefix(storage).ok_or_else(|| {
        StorageError::new(
            StatusCode::NOT_FOUND,
            "CannotVerifyCopySource",
            format!("The specified resource does not exist: keyless copies only from URLs on this server ({storage}/…)"),
        )
    })?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let (Some(account), Some(container), Some(blob)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(StorageError::bad(
            "InvalidHeaderValue",
            "x-ms-copy-source must name a blob",
        ));
    };
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (container, blob) = (decode(container), decode(blob));
    let query: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap_or_default();
    let same_account = account == ctx.account.name;
    let source_account = ctx
        .state
        .account(account)
        .await?
        .ok_or_else(|| cannot("the source account does not exist"))?;
    // The source account's firewall applies to the copy as to a read.
    super::admit(&source_account, ctx.client, ctx.auth.identity(), false)?;
    let readable = if query.iter().any(|(k, _)| k == "sig") {
        // A SAS on the source URL decides, whatever signed the request.
        let keys = ctx.state.account_keys(&source_account)?;
        let policy = super::auth::stored_policy(&ctx.state, account, &container, &query).await?;
        let sas = verify_sas_with_policy(
            account,
            (&container, &blob),
            &keys,
            &query,
            ctx.state.now(),
            ctx.client,
            policy.as_ref(),
        )
        .map_err(|_| cannot("the source SAS is not valid"))?;
        sas.authorize(Operation::GetBlob, &container, &blob)
            .map_err(|_| {
                StorageError::new(
                    StatusCode::FORBIDDEN,
                    "CannotVerifyCopySource",
                    "This request is not authorized to perform this operation using this permission. The source SAS does not grant read.",
                )
            })?;
        if let Some((oid, tid)) = &sas.delegator {
            // A user delegation SAS is bounded by its delegator's roles now, here too.
            super::delegator_may(
                &ctx.state,
                &source_account,
                oid,
                tid,
                Operation::GetBlob,
                &container,
            )
            .await
            .map_err(|_| {
                cannot("the identity that signed the source's user delegation SAS may no longer read it")
            })?;
        }
        true
    } else {
        match (&ctx.auth, same_account) {
            (Auth::SharedKey, true) => true,
            (Auth::Bearer(identity), _) => {
                // The caller's own read permission on the source, as Azure checks it.
                if source_account.tenant_id != identity.tenant {
                    return Err(cannot("the source account belongs to another tenant"));
                }
                access::authorize(
                    &ctx.state,
                    &source_account,
                    identity,
                    Permission::DataAction(access::BLOB_READ),
                    &container,
                )?;
                true
            }
            // Otherwise only a source anyone may read.
            _ => {
                super::policy::public_read(
                    &ctx.state,
                    &source_account,
                    Operation::GetBlob,
                    &container,
                )
                .await?
            }
        }
    };
    if !readable {
        return Err(cannot(
            "sign the source URL with a SAS that grants read, or copy within the account with its key",
        ));
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let earlier = match (param("snapshot"), param("versionid")) {
        (Some(id), _) => Some((keyless_store::RetainedKind::Snapshot, id)),
        (None, Some(id)) => Some((keyless_store::RetainedKind::Version, id)),
        (None, None) => None,
    };
    let src = match earlier {
        Some((kind, id)) => {
            let earlier = super::snapshot::Earlier { kind, id };
            super::snapshot::find_earlier(ctx, (account, &container, &blob), earlier).await?
        }
        None => ctx.state.store.blob(account, &container, &blob).await?,
    }
    .ok_or_else(|| {
        StorageError::new(
            StatusCode::NOT_FOUND,
            "CannotVerifyCopySource",
            "The specified blob does not exist.",
        )
    })?;
    // An archived source is copied only within its account, into an online tier.
    if super::tier::archived(&src) {
        if !same_account {
            return Err(StorageError::new(
                StatusCode::CONFLICT,
                "CannotVerifyCopySource",
                "Cannot verify the copy source: the source blob is archived.",
            ));
        }
        if ctx.header("x-ms-access-tier").is_none() {
            super::tier::refuse_archived(&src)?;
        }
    }
    if ctx
        .state
        .store
        .container(&ctx.account.name, &ctx.container)
        .await?
        .is_none()
    {
        return Err(StorageError::container_not_found());
    }
    let content = match &src.content {
        Content::File(id) => Content::File(
            ctx.state
                .blobs
                .compose(&[(id.clone(), 0, src.size)], false)
                .await?
                .file_id,
        ),
        Content::Inline(bytes) => Content::Inline(bytes.clone()),
    };
    let metadata = ctx.metadata()?;
    let tags = match ctx.header("x-ms-copy-source-tag-option") {
        Some(o) if o.eq_ignore_ascii_case("copy") && ctx.header("x-ms-tags").is_some() => {
            return Err(StorageError::bad(
                "InvalidHeaderValue",
                "x-ms-tags cannot be given with x-ms-copy-source-tag-option COPY, which takes the source's tags",
            ));
        }
        Some(o) if o.eq_ignore_ascii_case("copy") => src.state.tags.clone(),
        Some(o) if !o.eq_ignore_ascii_case("replace") => {
            return Err(StorageError::bad(
                "InvalidHeaderValue",
                format!("x-ms-copy-source-tag-option `{o}` is COPY or REPLACE"),
            ));
        }
        _ => super::tags::from_request(ctx)?,
    };
    // Copy Blob From URL checks the source against the MD5 the client sent, and
    // echoes it.
    let source_md5 = ctx
        .header("x-ms-source-content-md5")
        .map(super::checksum::md5_header)
        .transpose()?;
    if let (Some(sent), Some(actual)) = (&source_md5, &src.properties.content_md5)
        && sent != actual
    {
        return Err(StorageError::bad(
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
        ));
    }
    let now = ctx.state.now();
    let copy_id = uuid::Uuid::new_v4().to_string();
    let mut copy = Blob {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        name: ctx.blob.clone(),
        etag: new_etag(),
        created_at: now,
        last_modified: now,
        size: src.size,
        content,
        properties: src.properties.clone(),
        metadata: if metadata.is_empty() {
            src.metadata.clone()
        } else {
            metadata
        },
        committed_blocks: src.committed_blocks.clone(),
        is_dir: false,
        acl: super::hns::acl_for_write(ctx).await?,
        // The copy is of the source's type, with its pages; tags as asked.
        state: keyless_store::BlobState {
            kind: src.state.kind,
            pages: src.state.pages.clone(),
            appended_blocks: src.state.appended_blocks,
            tier: super::tier::from_request(ctx)?,
            tags,
            copy: Some(keyless_store::CopyState {
                id: copy_id.clone(),
                source: source.clone(),
                completed_at: now,
                size: src.size,
            }),
            ..keyless_store::BlobState::default()
        },
    };
    let conditions = Conditions::from(ctx)?;
    let check = |c: Option<&Blob>| conditions.blob(c, false);
    match super::blob::put_protected(ctx, &mut copy, &check).await {
        Ok(released) => ctx.state.blobs.remove(&released).await,
        Err(e) => {
            ctx.state.blobs.remove(&files(&copy.content)).await;
            return Err(condition_error(e, true));
        }
    }
    let mut h = HeaderMap::new();
    for (name, value) in [
        (header::ETAG.as_str(), copy.etag.clone()),
        (
            header::LAST_MODIFIED.as_str(),
            http_date(copy.last_modified),
        ),
        ("x-ms-copy-id", copy_id),
        ("x-ms-copy-status", "success".to_owned()),
    ]
    .into_iter()
    .chain(source_md5.map(|m| {
        (
            "content-md5",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, m),
        )
    }))
    .chain(
        copy.state
            .version_id
            .clone()
            .map(|v| ("x-ms-version-id", v)),
    ) {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
    Ok((StatusCode::ACCEPTED, h).into_response())
}

/// The copy properties of a blob a copy made, as Get Blob Properties gives them.
pub(crate) fn headers(h: &mut HeaderMap, b: &Blob) {
    let Some(c) = &b.state.copy else {
        return;
    };
    for (name, value) in [
        ("x-ms-copy-id", c.id.clone()),
        ("x-ms-copy-source", c.source.clone()),
        ("x-ms-copy-status", "success".to_owned()),
        ("x-ms-copy-progress", format!("{}/{}", c.size, c.size)),
        ("x-ms-copy-completion-time", http_date(c.completed_at)),
    ] {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            h.insert(n, v);
        }
    }
}

/// The copy properties of a listed blob (`include=copy`).
pub(crate) fn xml(b: &Blob) -> String {
    b.state.copy.as_ref().map_or_else(String::new, |c| {
        format!(
            "<CopyId>{}</CopyId><CopyStatus>success</CopyStatus><CopySource>{}</CopySource><CopyProgress>{}/{}</CopyProgress><CopyCompletionTime>{}</CopyCompletionTime>",
            super::xml::escape(&c.id),
            super::xml::escape(&c.source),
            c.size,
            c.size,
            http_date(c.completed_at)
        )
    })
}
