//! Append blobs: created empty by Put Blob, grown by Append Block, closed by Seal.
//!
//! An append writes the block past the end of the blob's own file, under that
//! file's lock, then records the longer blob under the ETag it was appended to:
//! readers see the bytes the row counts, which never change, so the blob is
//! whole before and after, and an acknowledged append is durable. An append
//! that is refused or loses its blob cuts the file back. When the file cannot
//! be extended (the blob has no file yet, an interrupted append left bytes past
//! the end, or the backend keeps files immutable), the block goes to a file of
//! its own and the blob's bytes and the block are composed into a new file.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use keyless_core::{Error, ErrorKind};
use keyless_store::{Blob, BlobKind, BlobState, ByteStream, Content, Extended};

use super::Ctx;
use super::blob::{
    Modify, container_exists, insert, load, modify, properties_from_headers, refuse_declared_above,
    release, stream, write_failed, write_headers,
};
use super::checksum::{Sent, Tap};
use super::conditions::{Conditions, condition_error, new_etag};
use super::error::StorageError;

/// The largest block one Append Block takes (service version 2022-11-02 on).
const MAX_APPEND_BLOCK: u64 = 100 * 1024 * 1024;
/// Azure's limit on the blocks of an append blob.
const MAX_BLOCKS: u64 = 50_000;

pub(super) fn invalid_blob_type() -> StorageError {
    StorageError::new(
        StatusCode::CONFLICT,
        "InvalidBlobType",
        "The blob type is invalid for this operation.",
    )
}

/// Put Blob with `x-ms-blob-type: AppendBlob`: an empty append blob, replacing
/// whatever blob had the name.
pub(crate) async fn create(ctx: &Ctx) -> Result<Response, StorageError> {
    let declared = ctx.header("content-length").unwrap_or("0");
    if declared.trim() != "0" {
        return Err(StorageError::bad(
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format: an append blob is created empty (Content-Length: 0); its bytes come with Append Block",
        ));
    }
    let state = BlobState {
        kind: BlobKind::AppendBlob,
        tags: super::tags::from_request(ctx)?,
        ..BlobState::default()
    };
    create_empty(ctx, state, 0).await
}

/// Writes an empty blob of `state`'s kind (a page blob: `size` zero bytes).
pub(super) async fn create_empty(
    ctx: &Ctx,
    state: BlobState,
    size: u64,
) -> Result<Response, StorageError> {
    container_exists(ctx).await?;
    let conditions = Conditions::from(ctx)?;
    let acl = super::hns::acl_for_write(ctx).await?;
    let content = if size == 0 {
        Content::Inline(bytes::Bytes::new())
    } else {
        Content::File(ctx.state.blobs.zeros(size).await?.file_id)
    };
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
        // The body is empty: only the x-ms-blob-content-* headers set properties.
        properties: properties_from_headers(ctx, false)?,
        metadata: ctx.metadata()?,
        committed_blocks: Vec::new(),
        is_dir: false,
        acl,
        state,
    };
    let check = |current: Option<&Blob>| conditions.blob(current, false);
    match super::blob::put_protected(ctx, &mut blob, &check).await {
        Ok(released) => release(ctx, released).await,
        Err(e) => {
            release(ctx, super::blob::files(&blob.content)).await;
            return Err(condition_error(e, true));
        }
    }
    Ok((StatusCode::CREATED, write_headers(&blob, None)).into_response())
}

/// The file holding a blob's bytes, writing inline bytes out to one if need be.
pub(super) async fn file_of(ctx: &Ctx, b: &Blob) -> Result<Option<String>, StorageError> {
    match &b.content {
        Content::File(id) => Ok(Some(id.clone())),
        Content::Inline(bytes) if bytes.is_empty() => Ok(None),
        Content::Inline(bytes) => {
            let bytes = bytes.clone();
            let body: keyless_store::ByteStream =
                Box::pin(futures_util::stream::once(async move { Ok(bytes) }));
            Ok(Some(ctx.state.blobs.write(body, u64::MAX).await?.file_id))
        }
    }
}

const MOVED: &str = "the blob changed while the block was being appended";

/// Append Block.
pub(crate) async fn append_block(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    refuse_declared_above(ctx, MAX_APPEND_BLOCK, "an appended block")?;
    if ctx.header("content-length").map(str::trim) == Some("0") {
        return Err(StorageError::bad(
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format: Content-Length of an appended block is 1 byte to 100 MiB",
        ));
    }
    let number = |name: &str| -> Result<Option<u64>, StorageError> {
        ctx.header(name)
            .map(|v| {
                v.trim().parse::<u64>().map_err(|_| {
                    StorageError::bad(
                        "InvalidHeaderValue",
                        format!("The value for one of the HTTP headers is not in the correct format: {name} is a number of bytes"),
                    )
                })
            })
            .transpose()
    };
    let max_size = number("x-ms-blob-condition-maxsize")?;
    let position = number("x-ms-blob-condition-appendpos")?;
    let conditions = Conditions::from(ctx)?;
    // Refusals that need no body come first.
    let first = load(ctx).await?;
    judge(&first, &conditions, max_size, position, None)?;
    let sent = Sent::from(ctx)?;
    let (body, tap) = sent.tap_computing(stream(body));
    let limits = Limits {
        conditions: &conditions,
        max_size,
        position,
    };
    let (b, offset, md5) = match in_place(ctx, &first, &limits, &sent, tap.as_ref(), body).await? {
        Ok(done) => done,
        Err(body) => {
            let block = ctx
                .state
                .blobs
                .write(body, MAX_APPEND_BLOCK)
                .await
                .map_err(|e| write_failed(tap.as_ref(), e))?;
            if let Err(e) = sent.check_streamed(&block.md5, tap.as_ref()) {
                release(ctx, vec![block.file_id]).await;
                return Err(e);
            }
            let (b, offset, adopted) = match commit(ctx, &limits, &block).await {
                Ok(done) => done,
                Err(e) => {
                    release(ctx, vec![block.file_id]).await;
                    return Err(e);
                }
            };
            if !adopted {
                release(ctx, vec![block.file_id]).await;
            }
            (b, offset, block.md5)
        }
    };
    let mut h = write_headers(&b, Some(&md5));
    insert(
        &mut h,
        HeaderName::from_static("x-ms-blob-append-offset"),
        &offset.to_string(),
    );
    insert(
        &mut h,
        HeaderName::from_static("x-ms-blob-committed-block-count"),
        &b.state.appended_blocks.to_string(),
    );
    sent.echo_computed(&mut h, tap.as_ref());
    Ok((StatusCode::CREATED, h).into_response())
}

/// What an append asks of the blob besides the request's conditions.
struct Limits<'a> {
    conditions: &'a Conditions,
    max_size: Option<u64>,
    position: Option<u64>,
}

impl Limits<'_> {
    fn judge(&self, b: &Blob, len: Option<u64>) -> Result<(), StorageError> {
        judge(b, self.conditions, self.max_size, self.position, len)
    }
}

/// The blob with the block appended, its offset and the block's MD5.
type Appended = (Blob, u64, [u8; 16]);

/// Appends the block past the end of the blob's own file and records the
/// longer blob, under the file's lock. The body comes back, unread, when the
/// file cannot be extended in place.
async fn in_place(
    ctx: &Ctx,
    first: &Blob,
    limits: &Limits<'_>,
    sent: &Sent,
    tap: Option<&Tap>,
    body: ByteStream,
) -> Result<Result<Appended, ByteStream>, StorageError> {
    let Content::File(file) = &first.content else {
        return Ok(Err(body));
    };
    let _lock = ctx.state.lock_appends(file).await;
    let current = load(ctx).await?;
    limits.judge(&current, None)?;
    if current.content != first.content {
        return Ok(Err(body));
    }
    let at = current.size;
    let block = match ctx
        .state
        .blobs
        .extend(file, at, body, MAX_APPEND_BLOCK)
        .await
        .map_err(|e| write_failed(tap, e))?
    {
        Extended::Appended(w) => w,
        Extended::Declined(body) => return Ok(Err(body)),
    };
    let recorded = match sent.check_streamed(&block.md5, tap) {
        Ok(()) => record(ctx, limits, current, &block).await,
        Err(e) => Err(e),
    };
    match recorded {
        Ok(b) => Ok(Ok((b, at, block.md5))),
        Err(e) => {
            if let Err(cut) = ctx.state.blobs.truncate(file, at).await {
                tracing::warn!(file = %file, error = %cut, "an unrecorded append could not be cut off; the blob's next append composes a new file");
            }
            Err(e)
        }
    }
}

/// Records `current` grown by `block`, written in place past its end; other
/// changes to the blob meanwhile (its metadata, properties, lease) are kept.
async fn record(
    ctx: &Ctx,
    limits: &Limits<'_>,
    mut current: Blob,
    block: &keyless_store::Written,
) -> Result<Blob, StorageError> {
    for _ in 0..8 {
        limits.judge(&current, Some(block.size))?;
        if current.content.file_id() != Some(block.file_id.as_str()) {
            return Err(replaced());
        }
        let mut next = current.clone();
        next.etag = new_etag();
        next.last_modified = ctx.state.now();
        next.size = current.size + block.size;
        next.state.appended_blocks += 1;
        let check = |c: Option<&Blob>| match c {
            Some(c) if c.etag == current.etag && c.state == current.state => Ok(()),
            Some(_) => Err(Error::new(ErrorKind::Conflict, MOVED)),
            None => Err(Error::not_found("the blob does not exist")),
        };
        match ctx.state.store.blob_put(&next, &check).await {
            Ok(released) => {
                release(ctx, released).await;
                return Ok(next);
            }
            Err(e) if e.message() == MOVED => current = load(ctx).await?,
            Err(e) => return Err(condition_error(e, false)),
        }
    }
    Err(busy())
}

fn replaced() -> StorageError {
    StorageError::new(
        StatusCode::CONFLICT,
        "OperationTimedOut",
        "The blob was replaced while the block was being appended; retry.",
    )
}

fn busy() -> StorageError {
    StorageError::new(
        StatusCode::CONFLICT,
        "OperationTimedOut",
        "Other writers kept changing the blob; retry.",
    )
}

/// Whether a block of `len` bytes (unknown before the body is read) may be
/// appended to `b`.
fn judge(
    b: &Blob,
    conditions: &Conditions,
    max_size: Option<u64>,
    position: Option<u64>,
    len: Option<u64>,
) -> Result<(), StorageError> {
    if b.state.kind != BlobKind::AppendBlob {
        return Err(invalid_blob_type());
    }
    conditions
        .blob(Some(b), false)
        .map_err(|e| condition_error(e, false))?;
    if b.state.sealed {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "BlobIsSealed",
            "The specified blob is sealed, and its contents can't be modified unless the blob is re-created after a delete.",
        ));
    }
    if position.is_some_and(|p| p != b.size) {
        return Err(StorageError::new(
            StatusCode::PRECONDITION_FAILED,
            "AppendPositionConditionNotMet",
            "The append position condition specified was not met.",
        ));
    }
    if max_size.is_some_and(|m| b.size + len.unwrap_or(0) > m) {
        return Err(StorageError::new(
            StatusCode::PRECONDITION_FAILED,
            "MaxBlobSizeConditionNotMet",
            "The max blob size condition specified was not met.",
        ));
    }
    if b.state.appended_blocks >= MAX_BLOCKS {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "BlockCountExceedsLimit",
            "The committed block count cannot exceed the maximum limit of 50,000 blocks.",
        ));
    }
    Ok(())
}

/// Composes the blob as it is now with the block and swaps it in; a blob that
/// changed meanwhile is composed again. An empty blob takes the block's file
/// as its own. Returns the new blob, the block's offset and whether the
/// block's file became the blob's.
async fn commit(
    ctx: &Ctx,
    limits: &Limits<'_>,
    block: &keyless_store::Written,
) -> Result<(Blob, u64, bool), StorageError> {
    // Composing appends to one blob take turns in this server: each composes the
    // blob the one before it left, instead of all of them composing the same
    // blob and all but one starting over (with bytes in an object store, every
    // append composes). Only writers on other servers, and other writes to the
    // blob, still make a composition start over.
    let _turn = ctx
        .state
        .lock_appends(&format!(
            "compose:{}/{}/{}",
            ctx.account.name, ctx.container, ctx.blob
        ))
        .await;
    for _ in 0..8 {
        let loaded = load(ctx).await?;
        // Under the lock of the file it replaces: an append in place into that
        // file waits, and then finds the blob in a new file (and composes too),
        // instead of recording bytes in a file this swap has released.
        let _lock = match &loaded.content {
            Content::File(file) => Some(ctx.state.lock_appends(file).await),
            Content::Inline(_) => None,
        };
        // The blob as it is now that no append in place can change it.
        let current = load(ctx).await?;
        if current.content != loaded.content {
            continue;
        }
        limits.judge(&current, Some(block.size))?;
        let base = if current.size > 0 {
            file_of(ctx, &current).await?
        } else {
            None
        };
        let file = match &base {
            Some(id) => {
                let parts = [
                    (id.clone(), 0, current.size),
                    (block.file_id.clone(), 0, block.size),
                ];
                ctx.state.blobs.compose(&parts, false).await?.file_id
            }
            None => block.file_id.clone(),
        };
        let adopted = base.is_none();
        let offset = current.size;
        let mut next = current.clone();
        next.etag = new_etag();
        next.last_modified = ctx.state.now();
        next.size = offset + block.size;
        next.content = Content::File(file.clone());
        next.state.appended_blocks += 1;
        let check = |c: Option<&Blob>| match c {
            Some(c) if c.etag == current.etag && c.state == current.state => Ok(()),
            Some(_) => Err(Error::new(ErrorKind::Conflict, MOVED)),
            None => Err(Error::not_found("the blob does not exist")),
        };
        let outcome = ctx.state.store.blob_put(&next, &check).await;
        // Inline bytes written out for the composition are nobody's now.
        if let (Some(id), Content::Inline(_)) = (&base, &current.content) {
            release(ctx, vec![id.clone()]).await;
        }
        match outcome {
            Ok(released) => {
                release(ctx, released).await;
                return Ok((next, offset, adopted));
            }
            Err(e) => {
                if !adopted {
                    release(ctx, vec![file]).await;
                }
                if e.message() != MOVED {
                    return Err(condition_error(e, false));
                }
            }
        }
    }
    Err(busy())
}

/// Seal: the append blob takes no more blocks.
pub(crate) async fn seal(ctx: &Ctx) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let position = ctx
        .header("x-ms-blob-condition-appendpos")
        .map(|v| v.trim().parse::<u64>())
        .transpose()
        .map_err(|_| {
            StorageError::bad(
                "InvalidHeaderValue",
                "x-ms-blob-condition-appendpos is a number of bytes",
            )
        })?;
    let (b, ()) = modify(ctx, &conditions, Modify::Content, |b| {
        if b.state.kind != BlobKind::AppendBlob {
            return Err(invalid_blob_type());
        }
        if b.state.sealed {
            return Err(StorageError::new(
                StatusCode::CONFLICT,
                "BlobAlreadySealed",
                "The blob is already sealed.",
            ));
        }
        if position.is_some_and(|p| p != b.size) {
            return Err(StorageError::new(
                StatusCode::PRECONDITION_FAILED,
                "AppendPositionConditionNotMet",
                "The append position condition specified was not met.",
            ));
        }
        b.state.sealed = true;
        Ok(())
    })
    .await?;
    let mut h: HeaderMap = write_headers(&b, None);
    h.insert("x-ms-blob-sealed", HeaderValue::from_static("true"));
    Ok((StatusCode::OK, h).into_response())
}

/// An append blob's headers on Get Blob and Get Blob Properties.
pub(super) fn headers(h: &mut HeaderMap, b: &Blob) {
    if b.state.kind == BlobKind::AppendBlob {
        insert(
            h,
            HeaderName::from_static("x-ms-blob-committed-block-count"),
            &b.state.appended_blocks.to_string(),
        );
        let sealed = if b.state.sealed { "true" } else { "false" };
        h.insert("x-ms-blob-sealed", HeaderValue::from_static(sealed));
    }
}
