//! Blob operations: Put Blob, Get Blob with ranges, properties, metadata and
//! tags (blocks are in [`super::block`], deletion in [`super::delete`], the
//! listing in [`super::list`]).

use std::io;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;

use keyless_core::Error;
use keyless_store::{Blob, BlobProperties, BlobState, ByteStream, Content};

use super::Ctx;
use super::checksum::{self, Sent, Tap};
use super::conditions::{Conditions, Range, condition_error, new_etag};
use super::error::StorageError;
use super::hns;
use super::names;
use super::protection::Protection;
use super::xml::http_date;

const MAX_PUT_BLOB: u64 = 5000 * 1024 * 1024;
/// Put Blob bodies up to this size keep their bytes in the metadata row: one
/// commit makes them durable, with no file to write, sync and rename.
const INLINE_MAX: usize = 64 * 1024;

/// Blob names: 1–1024 characters, no control characters.
pub(crate) fn validate_name(name: &str) -> Result<(), StorageError> {
    let chars = name.chars().count();
    if (1..=1024).contains(&chars) && !name.chars().any(char::is_control) {
        return Ok(());
    }
    Err(StorageError::bad(
        "InvalidResourceName",
        format!(
            "The specified resource name contains invalid characters or is too long: a blob name has 1–1024 characters ({chars} given)"
        ),
    ))
}

/// The files a blob's content holds (none when inline), for releasing.
pub(crate) fn files(content: &Content) -> Vec<String> {
    content.file_id().map(str::to_owned).into_iter().collect()
}

/// Reads `len` bytes of a blob from `offset` (a range already checked against its size).
pub(crate) async fn read(ctx: &Ctx, b: &Blob, offset: u64, len: u64) -> Result<ByteStream, Error> {
    match &b.content {
        Content::File(id) => ctx.state.blobs.read(id, offset, len).await,
        Content::Inline(bytes) => {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
            let part = bytes
                .get(start..end)
                .map(|_| bytes.slice(start..end))
                .ok_or_else(|| Error::internal("a range beyond an inline blob"))?;
            Ok(Box::pin(futures_util::stream::once(
                async move { Ok(part) },
            )))
        }
    }
}

/// The content of a small Put Blob, whole (unframed, checked against what the
/// request sent), with its MD5.
pub(super) async fn small_body(
    body: Body,
    sent: &Sent,
) -> Result<(bytes::Bytes, [u8; 16]), StorageError> {
    // Room for a structured message's framing around INLINE_MAX of content.
    let bytes = axum::body::to_bytes(body, INLINE_MAX + 64)
        .await
        .map_err(|e| Error::invalid(format!("the request body could not be read: {e}")))?;
    let bytes = sent.content(bytes)?;
    let md5: [u8; 16] =
        md5::Digest::finalize(<md5::Md5 as md5::Digest>::new_with_prefix(&bytes)).into();
    sent.check_whole(&bytes, Some(&md5))?;
    Ok((bytes, md5))
}

/// Why a streamed write failed: its framing, when the tap saw a fault, else the backend's error.
pub(super) fn write_failed(tap: Option<&Tap>, e: Error) -> StorageError {
    tap.and_then(Tap::fault).unwrap_or_else(|| too_large(e))
}

pub(super) fn stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map(|r| r.map_err(io::Error::other)))
}

pub(super) async fn container_exists(ctx: &Ctx) -> Result<(), StorageError> {
    match ctx
        .state
        .store
        .container(&ctx.account.name, &ctx.container)
        .await?
    {
        Some(_) => Ok(()),
        None => Err(StorageError::container_not_found()),
    }
}

pub(super) fn properties_from_headers(
    ctx: &Ctx,
    fallback_content_type: bool,
) -> Result<BlobProperties, StorageError> {
    let h = |name: &HeaderName| ctx.header(name).map(str::to_owned);
    // A Put Blob's MD5 is checked against its body, so it must be one; elsewhere
    // the property is stored as given (base64 of any length), as Azure does.
    let md5 = ctx
        .header(&names::X_MS_BLOB_CONTENT_MD5)
        .map(|v| {
            if fallback_content_type {
                super::checksum::md5_header(v)
            } else {
                STANDARD.decode(v).map_err(|_| {
                    StorageError::bad(
                        "InvalidHeaderValue",
                        "The value for one of the HTTP headers is not in the correct format: x-ms-blob-content-md5 is base64",
                    )
                })
            }
        })
        .transpose()?;
    Ok(BlobProperties {
        content_type: h(&names::X_MS_BLOB_CONTENT_TYPE).or_else(|| {
            if fallback_content_type {
                h(&header::CONTENT_TYPE)
            } else {
                None
            }
        }),
        content_encoding: h(&names::X_MS_BLOB_CONTENT_ENCODING).or_else(|| {
            if fallback_content_type {
                h(&header::CONTENT_ENCODING)
            } else {
                None
            }
        }),
        content_language: h(&names::X_MS_BLOB_CONTENT_LANGUAGE).or_else(|| {
            if fallback_content_type {
                h(&header::CONTENT_LANGUAGE)
            } else {
                None
            }
        }),
        content_disposition: h(&names::X_MS_BLOB_CONTENT_DISPOSITION),
        cache_control: h(&names::X_MS_BLOB_CACHE_CONTROL).or_else(|| {
            if fallback_content_type {
                h(&header::CACHE_CONTROL)
            } else {
                None
            }
        }),
        content_md5: md5,
    })
}

pub(super) fn write_headers(b: &Blob, md5: Option<&[u8]>) -> HeaderMap {
    let mut h = HeaderMap::new();
    insert(&mut h, header::ETAG, &b.etag);
    insert(&mut h, header::LAST_MODIFIED, &http_date(b.last_modified));
    if let Some(md5) = md5 {
        insert(&mut h, names::CONTENT_MD5, &STANDARD.encode(md5));
    }
    h.insert(
        names::X_MS_REQUEST_SERVER_ENCRYPTED,
        HeaderValue::from_static("true"),
    );
    version_header(&mut h, b);
    h
}

/// `x-ms-version-id`, when the blob is a version.
pub(super) fn version_header(h: &mut HeaderMap, b: &Blob) {
    if let Some(v) = &b.state.version_id {
        insert(h, names::X_MS_VERSION_ID, v);
    }
}

/// Writes `blob` as the request's blob under `check`, keeping the blob it
/// replaces as the account's data protection says (a version, or a deleted
/// snapshot) and giving the new one a version id when the account keeps versions.
/// Returns the files released.
pub(super) async fn put_protected(
    ctx: &Ctx,
    blob: &mut Blob,
    check: keyless_store::Precondition<'_>,
) -> Result<Vec<String>, Error> {
    let protection = super::protection::Protection::of(&ctx.account);
    blob.state.version_id = protection.new_version();
    let keep = protection.on_overwrite(ctx.state.now());
    ctx.state
        .store
        .blob_put_keeping(blob, check, Some(&keep))
        .await
}

pub(super) fn insert(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub(super) async fn release(ctx: &Ctx, files: Vec<String>) {
    ctx.state.blobs.remove(&files).await;
}

/// Put Blob: the whole body becomes the blob, atomically.
pub(crate) async fn put(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    match ctx.header("x-ms-blob-type") {
        Some("BlockBlob") => {}
        Some("AppendBlob") => return super::append::create(ctx).await,
        Some("PageBlob") => return super::page::create(ctx).await,
        Some(other) => {
            return Err(StorageError::bad(
                "InvalidHeaderValue",
                format!(
                    "The value for one of the HTTP headers is not in the correct format: x-ms-blob-type `{other}` is BlockBlob, AppendBlob or PageBlob"
                ),
            ));
        }
        None => {
            return Err(StorageError::bad(
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified: x-ms-blob-type",
            ));
        }
    }
    refuse_declared_above(ctx, MAX_PUT_BLOB, "a Put Blob body")?;
    container_exists(ctx).await?;
    let conditions = Conditions::from(ctx)?;
    let acl = hns::acl_for_write(ctx).await?;
    let mut properties = properties_from_headers(ctx, true)?;
    let metadata = ctx.metadata()?;
    let tags = super::tags::from_request(ctx)?;
    let sent = Sent::from(ctx)?;
    let small = sent
        .content_length(ctx.header("content-length").and_then(|n| n.parse().ok()))
        .is_some_and(|n| n <= INLINE_MAX as u64);
    let (content, size, md5) = if small {
        let (bytes, md5) = small_body(body, &sent).await?;
        let size = bytes.len() as u64;
        (Content::Inline(bytes), size, md5)
    } else {
        let (body, tap) = sent.tap(stream(body));
        let w = ctx
            .state
            .blobs
            .write(body, MAX_PUT_BLOB)
            .await
            .map_err(|e| write_failed(tap.as_ref(), e))?;
        if let Err(e) = sent.check_streamed(&w.md5, tap.as_ref()) {
            release(ctx, vec![w.file_id]).await;
            return Err(e);
        }
        (Content::File(w.file_id), w.size, w.md5)
    };
    properties.content_md5.get_or_insert_with(|| md5.to_vec());
    let now = ctx.state.now();
    let mut blob = Blob {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        name: ctx.blob.clone(),
        etag: new_etag(),
        created_at: now,
        last_modified: now,
        size,
        content,
        properties,
        metadata,
        committed_blocks: Vec::new(),
        is_dir: false,
        acl,
        state: BlobState {
            tags,
            tier: super::tier::from_request(ctx)?,
            ..BlobState::default()
        },
    };
    let check = |current: Option<&Blob>| conditions.blob(current, false);
    match put_protected(ctx, &mut blob, &check).await {
        Ok(released) => release(ctx, released).await,
        Err(e) => {
            release(ctx, files(&blob.content)).await;
            return Err(condition_error(e, true));
        }
    }
    let mut headers = write_headers(&blob, Some(&md5));
    sent.echo(&mut headers);
    Ok((StatusCode::CREATED, headers).into_response())
}

/// Refuses, before reading a byte of it, a body whose declared length exceeds `max`.
pub(crate) fn refuse_declared_above(ctx: &Ctx, max: u64, what: &str) -> Result<(), StorageError> {
    // A structured body declares its content's length besides its own.
    let declared = ctx
        .header(&names::X_MS_STRUCTURED_CONTENT_LENGTH)
        .or_else(|| ctx.header(&header::CONTENT_LENGTH))
        .and_then(|n| n.parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(StorageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            format!(
                "The request body is too large: {what} holds at most {max} bytes ({} MiB); this one declares {n}.",
                max / (1024 * 1024)
            ),
        )),
        _ => Ok(()),
    }
}

pub(super) fn too_large(e: Error) -> StorageError {
    match e.kind() {
        keyless_core::ErrorKind::InvalidInput => StorageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            e.message(),
        ),
        _ => e.into(),
    }
}

/// The blob of the request; a blob implies its container, which is looked up only
/// to tell a missing container from a missing blob.
pub(super) async fn load(ctx: &Ctx) -> Result<Blob, StorageError> {
    if let Some(earlier) = super::snapshot::requested(ctx)? {
        return super::snapshot::load_earlier(ctx, earlier).await;
    }
    match ctx
        .state
        .store
        .blob(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?
    {
        Some(b) => Ok(b),
        None => {
            container_exists(ctx).await?;
            Err(StorageError::blob_not_found())
        }
    }
}

/// [`load`] for a reader that only reads: the row cache's own copy.
async fn load_shared(ctx: &Ctx) -> Result<std::sync::Arc<Blob>, StorageError> {
    if super::snapshot::requested(ctx)?.is_some() {
        return load(ctx).await.map(std::sync::Arc::new);
    }
    match ctx
        .state
        .store
        .blob_shared(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?
    {
        Some(b) => Ok(b),
        None => {
            container_exists(ctx).await?;
            Err(StorageError::blob_not_found())
        }
    }
}

fn blob_headers(b: &Blob, now: i64) -> HeaderMap {
    // Room for a GET's usual headers at once, instead of growing (and rehashing) four times.
    let mut h = HeaderMap::with_capacity(24);
    insert(&mut h, header::ETAG, &b.etag);
    insert(&mut h, header::LAST_MODIFIED, &http_date(b.last_modified));
    insert(&mut h, names::X_MS_CREATION_TIME, &http_date(b.created_at));
    h.insert(
        names::X_MS_BLOB_TYPE,
        HeaderValue::from_static(b.state.kind.as_str()),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        names::X_MS_SERVER_ENCRYPTED,
        HeaderValue::from_static("true"),
    );
    super::lease::headers(&mut h, b.state.lease.as_ref(), now);
    super::append::headers(&mut h, b);
    super::page::sequence_header(&mut h, b);
    if !b.state.tags.is_empty() {
        insert(
            &mut h,
            HeaderName::from_static("x-ms-tag-count"),
            &b.state.tags.len().to_string(),
        );
    }
    super::tier::headers(&mut h, b);
    version_header(&mut h, b);
    super::copy::headers(&mut h, b);
    let p = &b.properties;
    // Empty: cleared by Set Blob Properties, so none is sent; absent: a blob
    // stored without one, which Azure types as application/octet-stream.
    match p.content_type.as_deref() {
        Some("") => {}
        Some(t) => insert(&mut h, header::CONTENT_TYPE, t),
        None => insert(&mut h, header::CONTENT_TYPE, "application/octet-stream"),
    }
    for (name, value) in [
        (header::CONTENT_ENCODING, &p.content_encoding),
        (header::CONTENT_LANGUAGE, &p.content_language),
        (header::CONTENT_DISPOSITION, &p.content_disposition),
        (header::CACHE_CONTROL, &p.cache_control),
    ] {
        if let Some(v) = value {
            insert(&mut h, name, v);
        }
    }
    for (k, v) in &b.metadata {
        if let Ok(name) = HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()) {
            insert(&mut h, name, v);
        }
    }
    h
}

/// Get Blob (with `body`) or Get Blob Properties.
pub(crate) async fn get(ctx: &Ctx, body: bool) -> Result<Response, StorageError> {
    let range = if body { Range::from(ctx)? } else { None };
    let conditions = Conditions::from(ctx)?;
    let b = load_shared(ctx).await?;
    conditions
        .blob(Some(&*b), true)
        .map_err(|e| condition_error(e, false))?;
    if body {
        super::tier::refuse_archived(&b)?;
    }
    let mut headers = blob_headers(&b, super::lease::now(&ctx.state));
    if b.state.version_id.is_some()
        && ctx
            .param("versionid")
            .is_none_or(|v| Some(v) == b.state.version_id.as_deref())
    {
        headers.insert(
            names::X_MS_IS_CURRENT_VERSION,
            HeaderValue::from_static("true"),
        );
    }
    let (status, offset, len) = match range {
        None => {
            if let Some(md5) = &b.properties.content_md5 {
                let md5 = STANDARD.encode(md5);
                insert(&mut headers, names::CONTENT_MD5, &md5);
                // As Azure's emulator does: the whole blob's MD5 is named apart
                // from the body's on every read, not only on ranges.
                insert(&mut headers, names::X_MS_BLOB_CONTENT_MD5, &md5);
            }
            (StatusCode::OK, 0, b.size)
        }
        Some(r) => {
            let (offset, len) = r.resolve(b.size).ok_or_else(|| {
                StorageError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    "The range specified is invalid for the current size of the resource.",
                )
                .with_range_of(b.size)
            })?;
            insert(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes {}-{}/{}", offset, offset + len - 1, b.size),
            );
            // A part's reply names the whole blob's MD5 apart from its own.
            if let Some(md5) = &b.properties.content_md5 {
                insert(
                    &mut headers,
                    HeaderName::from_static("x-ms-blob-content-md5"),
                    &STANDARD.encode(md5),
                );
            }
            if ctx.header("x-ms-range-get-content-md5") == Some("true") {
                if len > 4 * 1024 * 1024 {
                    return Err(StorageError::bad(
                        "OutOfRangeInput",
                        "x-ms-range-get-content-md5 needs a range of at most 4 MiB",
                    ));
                }
                let mut hasher = <md5::Md5 as md5::Digest>::new();
                let mut s = read(ctx, &b, offset, len).await?;
                while let Some(chunk) = s.next().await {
                    md5::Digest::update(
                        &mut hasher,
                        &chunk.map_err(|e| Error::internal(e.to_string()))?,
                    );
                }
                insert(
                    &mut headers,
                    HeaderName::from_static("content-md5"),
                    &STANDARD.encode(md5::Digest::finalize(hasher)),
                );
            }
            (StatusCode::PARTIAL_CONTENT, offset, len)
        }
    };
    for (name, value) in &ctx.overrides {
        insert(&mut headers, HeaderName::from_static(name), value);
    }
    if let Some(asked) = ctx.header("x-ms-structured-body").filter(|_| body) {
        // The content framed with CRC-64s, for the SDK's `validate_content="crc64"`.
        let framed = checksum::structured_len(len)
            .filter(|_| asked.eq_ignore_ascii_case(checksum::STRUCTURED_CRC64))
            .ok_or_else(|| {
                StorageError::bad(
                    "InvalidHeaderValue",
                    format!(
                        "x-ms-structured-body must be `{}`, on a blob of fewer than 65,536 segments of 4 MiB",
                        checksum::STRUCTURED_CRC64
                    ),
                )
            })?;
        insert(&mut headers, header::CONTENT_LENGTH, &framed.to_string());
        insert(
            &mut headers,
            HeaderName::from_static("x-ms-structured-content-length"),
            &len.to_string(),
        );
        headers.insert(
            "x-ms-structured-body",
            HeaderValue::from_static(checksum::STRUCTURED_CRC64),
        );
        let content: ByteStream = if len == 0 {
            Box::pin(futures_util::stream::empty())
        } else {
            read(ctx, &b, offset, len).await?
        };
        let stream = checksum::encode_structured(content, len);
        return Ok((status, headers, Body::from_stream(stream)).into_response());
    }
    insert(&mut headers, header::CONTENT_LENGTH, &len.to_string());
    let content = match &b.content {
        _ if !body || len == 0 => Body::empty(),
        // A small blob's bytes are at hand: one frame, sent with the header.
        Content::Inline(_) => match read(ctx, &b, offset, len).await?.next().await {
            Some(part) => Body::from(part.map_err(|e| Error::internal(e.to_string()))?),
            None => Body::empty(),
        },
        Content::File(_) => Body::from_stream(read(ctx, &b, offset, len).await?),
    };
    let mut response = Response::new(content);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// Get Blob Metadata.
pub(crate) async fn metadata(ctx: &Ctx) -> Result<Response, StorageError> {
    let b = load(ctx).await?;
    Conditions::from(ctx)?
        .blob(Some(&b), true)
        .map_err(|e| condition_error(e, false))?;
    let all = blob_headers(&b, super::lease::now(&ctx.state));
    let mut h = HeaderMap::new();
    for (name, value) in &all {
        if name.as_str().starts_with("x-ms-meta-")
            || name == header::ETAG
            || name == header::LAST_MODIFIED
        {
            h.insert(name.clone(), value.clone());
        }
    }
    Ok((StatusCode::OK, h).into_response())
}

/// What [`modify`] changes besides what its closure does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Modify {
    /// Properties or metadata: a new ETag and time; writes need the lease id.
    Content,
    /// Tags or tier: ETag and time stay; writes need the lease id.
    Quiet,
    /// The lease itself: nothing else changes, no lease id is asked.
    Lease,
}

const CHANGED_MEANWHILE: &str = "the blob changed while it was being modified";

/// The precondition of a read-modify-write: the blob is still as `loaded`.
fn unchanged(loaded: &Blob, current: Option<&Blob>) -> Result<(), Error> {
    match current {
        Some(c) if c.etag == loaded.etag && c.state == loaded.state => Ok(()),
        Some(_) => Err(Error::new(
            keyless_core::ErrorKind::Conflict,
            CHANGED_MEANWHILE,
        )),
        None => Err(Error::not_found("the blob does not exist")),
    }
}

/// Loads the request's blob, applies `change` and writes it back if the blob is
/// still as loaded; a blob changed in between is loaded again (a few times).
pub(super) async fn modify<T>(
    ctx: &Ctx,
    conditions: &Conditions,
    kind: Modify,
    mut change: impl FnMut(&mut Blob) -> Result<T, StorageError>,
) -> Result<(Blob, T), StorageError> {
    if let Some(earlier) = super::snapshot::requested(ctx)? {
        // A snapshot or an earlier version takes new tags, nothing else.
        let mut b = load(ctx).await?;
        if kind != Modify::Quiet {
            return Err(StorageError::bad(
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid: a snapshot is read-only",
            ));
        }
        conditions
            .blob_without_lease(Some(&b), false)
            .map_err(|e| condition_error(e, false))?;
        let out = change(&mut b)?;
        super::snapshot::update(ctx, &b, earlier).await?;
        return Ok((b, out));
    }
    for _ in 0..5 {
        let loaded = load(ctx).await?;
        match kind {
            Modify::Lease => conditions.blob_without_lease(Some(&loaded), false),
            _ => conditions.blob(Some(&loaded), false),
        }
        .map_err(|e| condition_error(e, false))?;
        let mut b = loaded.clone();
        let out = change(&mut b)?;
        if kind == Modify::Content {
            b.etag = new_etag();
            b.last_modified = ctx.state.now();
        }
        let check = |c: Option<&Blob>| unchanged(&loaded, c);
        match ctx.state.store.blob_update(&b, &check).await {
            Ok(()) => return Ok((b, out)),
            Err(e) if e.message() == CHANGED_MEANWHILE => {}
            Err(e) => return Err(condition_error(e, false)),
        }
    }
    Err(StorageError::new(
        StatusCode::CONFLICT,
        "OperationTimedOut",
        "The blob kept changing while this request tried to modify it; retry.",
    ))
}

async fn update(
    ctx: &Ctx,
    mut change: impl FnMut(&mut Blob) -> Result<(), StorageError>,
) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let (b, ()) = modify(ctx, &conditions, Modify::Content, |b| {
        super::tier::refuse_archived(b)?;
        change(b)
    })
    .await?;
    Ok((StatusCode::OK, write_headers(&b, None)).into_response())
}

/// Get Blob Tags.
pub(crate) async fn get_tags(ctx: &Ctx) -> Result<Response, StorageError> {
    super::tags::refuse_on_hns(ctx)?;
    let b = load(ctx).await?;
    Conditions::from(ctx)?
        .blob(Some(&b), true)
        .map_err(|e| condition_error(e, false))?;
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>{}",
        super::tags::to_xml(&b.state.tags)
    );
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
}

/// Set Blob Tags: replaces the tag set; the blob's ETag and time stay.
pub(crate) async fn set_tags(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    super::tags::refuse_on_hns(ctx)?;
    let body = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
        StorageError::bad(
            "InvalidXmlDocument",
            "the tags document is larger than 64 KiB or could not be read",
        )
    })?;
    let tags = super::tags::from_xml(&body)?;
    let conditions = Conditions::from(ctx)?;
    modify(ctx, &conditions, Modify::Quiet, |b| {
        b.state.tags.clone_from(&tags);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Set Blob Metadata.
pub(crate) async fn set_metadata(ctx: &Ctx) -> Result<Response, StorageError> {
    let metadata = ctx.metadata()?;
    if Protection::of(&ctx.account).versioning && super::snapshot::requested(ctx)?.is_none() {
        return set_metadata_versioned(ctx, metadata).await;
    }
    update(ctx, |b| {
        b.metadata.clone_from(&metadata);
        Ok(())
    })
    .await
}

/// Set Blob Metadata on an account that keeps versions: like a write, it
/// leaves the blob as it was as a version, with bytes of its own.
async fn set_metadata_versioned(
    ctx: &Ctx,
    metadata: Vec<(String, String)>,
) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let loaded = load(ctx).await?;
    conditions
        .blob(Some(&loaded), false)
        .map_err(|e| condition_error(e, false))?;
    super::tier::refuse_archived(&loaded)?;
    let mut next = loaded.clone();
    next.metadata = metadata;
    next.etag = new_etag();
    next.last_modified = ctx.state.now();
    next.content = match &loaded.content {
        Content::File(id) => Content::File(
            ctx.state
                .blobs
                .compose(&[(id.clone(), 0, loaded.size)], false)
                .await?
                .file_id,
        ),
        Content::Inline(bytes) => Content::Inline(bytes.clone()),
    };
    let check = |c: Option<&Blob>| unchanged(&loaded, c);
    match put_protected(ctx, &mut next, &check).await {
        Ok(released) => release(ctx, released).await,
        Err(e) => {
            release(ctx, files(&next.content)).await;
            return Err(condition_error(e, false));
        }
    }
    Ok((StatusCode::OK, write_headers(&next, None)).into_response())
}

/// Set Blob Properties: every `x-ms-blob-*` property is replaced (absent ones cleared).
pub(crate) async fn set_properties(ctx: &Ctx) -> Result<Response, StorageError> {
    if super::page::asks_page_properties(ctx) {
        return super::page::set_properties(ctx).await;
    }
    let mut properties = properties_from_headers(ctx, false)?;
    // Azure replaces every content header; one not sent is cleared, Content-Type too.
    properties.content_type.get_or_insert_with(String::new);
    update(ctx, |b| {
        b.properties.clone_from(&properties);
        Ok(())
    })
    .await
}
