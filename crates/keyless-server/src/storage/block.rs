//! Block blobs built in steps: Put Block stages a block, Put Block List commits
//! staged and committed blocks, in order, as the blob, and Get Block List shows both.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use keyless_store::{Blob, Block, Content};

use super::Ctx;
use super::blob::{
    container_exists, insert, properties_from_headers, refuse_declared_above, release, stream,
    write_failed, write_headers,
};
use super::checksum::Sent;
use super::conditions::{Conditions, condition_error, new_etag};
use super::error::StorageError;
use super::hns;
use super::xml::{BlockRef, escape, http_date, parse_block_list};

const MAX_BLOCK: u64 = 4000 * 1024 * 1024;
const MAX_BLOCKS: usize = 50_000;
const MAX_BLOCK_LIST_BODY: usize = 8 * 1024 * 1024;

fn block_id(ctx: &Ctx) -> Result<String, StorageError> {
    let id = ctx
        .param("blockid")
        .ok_or_else(|| StorageError::bad("MissingRequiredQueryParameter", "blockid is required"))?;
    validate_block_id(id)?;
    Ok(id.to_owned())
}

fn validate_block_id(id: &str) -> Result<(), StorageError> {
    match STANDARD.decode(id) {
        Ok(raw) if !raw.is_empty() && raw.len() <= 64 => Ok(()),
        _ => Err(StorageError::bad(
            "InvalidQueryParameterValue",
            format!("The block id `{id}` must be base64 of at most 64 bytes"),
        )),
    }
}

/// Put Block: stages a block for a later Put Block List.
pub(crate) async fn put_block(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let id = block_id(ctx)?;
    refuse_declared_above(ctx, MAX_BLOCK, "a block")?;
    container_exists(ctx).await?;
    let sent = Sent::from(ctx)?;
    // A leased blob takes blocks from the lease holder only.
    let current = ctx
        .state
        .store
        .blob(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?;
    super::lease::check(
        current.as_ref().and_then(|b| b.state.lease.as_ref()),
        ctx.header("x-ms-lease-id"),
        super::lease::now(&ctx.state),
        true,
    )
    .map_err(|e| condition_error(e, false))?;
    if current
        .as_ref()
        .is_some_and(|b| b.state.kind != keyless_store::BlobKind::BlockBlob)
    {
        return Err(super::append::invalid_blob_type());
    }
    // Every block id of a blob has the same length (decoded: `MQ==` and `MTIz`
    // differ); checked before the body is read.
    let staged = ctx
        .state
        .store
        .staged_block_id(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?;
    let decoded_len = |id: &str| STANDARD.decode(id).map_or(0, |raw| raw.len());
    if staged.is_some_and(|other| decoded_len(&other) != decoded_len(&id)) {
        return Err(StorageError::bad(
            "InvalidBlobOrBlock",
            "The specified blob or block content is invalid: all block ids of a blob must have the same length",
        ));
    }
    // Since version 2019-02-02 Azure answers with the block's MD5 only when the
    // request sent one (and otherwise with the CRC-64 it computes): hashing a
    // block for nothing costs about as much as storing it.
    let answer_md5 = sent.has_md5()
        || ctx
            .header(&super::names::X_MS_VERSION)
            .is_some_and(|v| v < "2019-02-02");
    let (body, tap) = sent.tap_computing(stream(body));
    let written = ctx
        .state
        .blobs
        .write_digesting(body, MAX_BLOCK, answer_md5)
        .await
        .map_err(|e| write_failed(tap.as_ref(), e))?;
    if let Err(e) = sent.check_streamed(&written.md5, tap.as_ref()) {
        release(ctx, vec![written.file_id]).await;
        return Err(e);
    }
    let block = Block {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        blob: ctx.blob.clone(),
        block_id: id,
        size: written.size,
        file_id: written.file_id,
        created_at: ctx.state.now(),
    };
    if let Some(old) = ctx.state.store.block_put(&block).await? {
        release(ctx, vec![old]).await;
    }
    let mut h = HeaderMap::new();
    if answer_md5 {
        insert(
            &mut h,
            HeaderName::from_static("content-md5"),
            &STANDARD.encode(written.md5),
        );
    }
    h.insert(
        "x-ms-request-server-encrypted",
        HeaderValue::from_static("true"),
    );
    sent.echo_computed(&mut h, tap.as_ref());
    Ok((StatusCode::CREATED, h).into_response())
}

/// Put Block List: commits staged and committed blocks, in order, as the blob.
pub(crate) async fn put_block_list(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    container_exists(ctx).await?;
    let bytes = axum::body::to_bytes(body, MAX_BLOCK_LIST_BODY)
        .await
        .map_err(|_| {
            StorageError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestBodyTooLarge",
                "the block list is too large",
            )
        })?;
    let sent = Sent::from(ctx)?;
    let bytes = sent.content(bytes)?;
    sent.check_whole(&bytes, None)?;
    let list = parse_block_list(&bytes)?;
    if list.len() > MAX_BLOCKS {
        return Err(StorageError::bad(
            "BlockListTooLong",
            format!("The block list may not contain more than {MAX_BLOCKS} blocks."),
        ));
    }
    let conditions = Conditions::from(ctx)?;
    let staged = ctx
        .state
        .store
        .blocks(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?;
    let current = ctx
        .state
        .store
        .blob(&ctx.account.name, &ctx.container, &ctx.blob)
        .await?;
    // Each committed block of the current blob, with its offset in the current file.
    let mut committed = Vec::new();
    let mut offset = 0u64;
    if let Some(c) = &current {
        for (id, size) in &c.committed_blocks {
            committed.push((id.as_str(), offset, *size));
            offset += size;
        }
    }
    let mut parts: Vec<(String, u64, u64)> = Vec::with_capacity(list.len());
    let mut blocks: Vec<(String, u64)> = Vec::with_capacity(list.len());
    for (kind, id) in &list {
        validate_block_id(id).map_err(|_| invalid_block_list())?;
        let from_staged = || {
            staged
                .iter()
                .find(|b| &b.block_id == id)
                .map(|b| (b.file_id.clone(), 0, b.size))
        };
        let from_committed = || {
            let c = current.as_ref()?;
            committed
                .iter()
                .find(|(cid, _, _)| cid == id)
                .map(|(_, off, size)| Some((c.content.file_id()?.to_owned(), *off, *size)))?
        };
        let part = match kind {
            BlockRef::Latest => from_staged().or_else(from_committed),
            BlockRef::Uncommitted => from_staged(),
            BlockRef::Committed => from_committed(),
        }
        .ok_or_else(invalid_block_list)?;
        blocks.push((id.clone(), part.2));
        parts.push(part);
    }
    let written = ctx.state.blobs.compose(&parts, false).await?;
    let now = ctx.state.now();
    let mut properties = properties_from_headers(ctx, false)?;
    if properties.content_md5.is_none() && ctx.header("x-ms-blob-content-md5").is_none() {
        properties.content_md5 = None;
    }
    let mut blob = Blob {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        name: ctx.blob.clone(),
        etag: new_etag(),
        created_at: now,
        last_modified: now,
        size: written.size,
        content: Content::File(written.file_id.clone()),
        properties,
        metadata: ctx.metadata()?,
        committed_blocks: blocks,
        is_dir: false,
        acl: hns::acl_for_write(ctx).await?,
        state: keyless_store::BlobState {
            tags: super::tags::from_request(ctx)?,
            tier: super::tier::from_request(ctx)?,
            ..keyless_store::BlobState::default()
        },
    };
    let check = |c: Option<&Blob>| conditions.blob(c, false);
    match super::blob::put_protected(ctx, &mut blob, &check).await {
        Ok(released) => release(ctx, released).await,
        Err(e) => {
            release(ctx, vec![written.file_id]).await;
            return Err(condition_error(e, true));
        }
    }
    let mut headers = write_headers(&blob, None);
    sent.echo(&mut headers);
    Ok((StatusCode::CREATED, headers).into_response())
}

fn invalid_block_list() -> StorageError {
    StorageError::bad("InvalidBlockList", "The specified block list is invalid.")
}

/// Get Block List.
pub(crate) async fn block_list(ctx: &Ctx) -> Result<Response, StorageError> {
    container_exists(ctx).await?;
    let kind = ctx
        .param("blocklisttype")
        .unwrap_or("committed")
        .to_ascii_lowercase();
    // A snapshot's list is its committed blocks as they were; it stages none.
    let (current, staged) = if super::snapshot::requested(ctx)?.is_some() {
        (Some(super::blob::load(ctx).await?), Vec::new())
    } else {
        let current = ctx
            .state
            .store
            .blob(&ctx.account.name, &ctx.container, &ctx.blob)
            .await?;
        let staged = ctx
            .state
            .store
            .blocks(&ctx.account.name, &ctx.container, &ctx.blob)
            .await?;
        (current, staged)
    };
    if current.is_none() && staged.is_empty() {
        return Err(StorageError::blob_not_found());
    }
    if let Some(b) = &current {
        Conditions::from(ctx)?
            .blob(Some(b), true)
            .map_err(|e| condition_error(e, false))?;
    }
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    if kind == "committed" || kind == "all" {
        xml.push_str("<CommittedBlocks>");
        for (id, size) in current.iter().flat_map(|c| c.committed_blocks.iter()) {
            xml.push_str(&format!(
                "<Block><Name>{}</Name><Size>{size}</Size></Block>",
                escape(id)
            ));
        }
        xml.push_str("</CommittedBlocks>");
    }
    if kind == "uncommitted" || kind == "all" {
        xml.push_str("<UncommittedBlocks>");
        for b in &staged {
            xml.push_str(&format!(
                "<Block><Name>{}</Name><Size>{}</Size></Block>",
                escape(&b.block_id),
                b.size
            ));
        }
        xml.push_str("</UncommittedBlocks>");
    }
    xml.push_str("</BlockList>");
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Some(c) = &current {
        insert(&mut h, header::ETAG, &c.etag);
        insert(&mut h, header::LAST_MODIFIED, &http_date(c.last_modified));
        insert(
            &mut h,
            HeaderName::from_static("x-ms-blob-content-length"),
            &c.size.to_string(),
        );
    }
    Ok((StatusCode::OK, h, xml).into_response())
}
