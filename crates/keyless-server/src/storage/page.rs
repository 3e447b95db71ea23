//! Page blobs: a size fixed at creation (resizable), written and cleared in
//! 512-byte pages at any offset, with the written ranges listed by Get Page
//! Ranges and a sequence number clients coordinate with.
//!
//! A page blob's bytes are one file of its full size, sparse where nothing was
//! written. A write composes the pages before the range, the new pages and the
//! pages after it into a new file and swaps it in under the ETag it was composed
//! from (as appends do): the blob is whole before and after a write, never in
//! between. Each write copies the blob, which is why keyless keeps page blobs to
//! [`MAX_SIZE`].

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};

use keyless_core::{Error, ErrorKind};
use keyless_store::{Blob, BlobKind, BlobState, Content};

use super::Ctx;
use super::append::{create_empty, file_of, invalid_blob_type};
use super::blob::{Modify, insert, load, modify, release, stream, write_failed, write_headers};
use super::checksum::Sent;
use super::conditions::{Conditions, condition_error, new_etag};
use super::error::StorageError;

/// The unit of page blobs.
pub(crate) const PAGE: u64 = 512;
/// The largest page blob keyless keeps: every write rewrites the blob.
pub(crate) const MAX_SIZE: u64 = 1024 * 1024 * 1024;
/// The most one Put Page writes.
const MAX_WRITE: u64 = 4 * 1024 * 1024;

fn bad_header(message: String) -> StorageError {
    StorageError::bad(
        "InvalidHeaderValue",
        format!("The value for one of the HTTP headers is not in the correct format: {message}"),
    )
}

fn invalid_range() -> StorageError {
    StorageError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "InvalidPageRange",
        "The page range specified is invalid.",
    )
}

fn number(ctx: &Ctx, name: &str) -> Result<Option<u64>, StorageError> {
    ctx.header(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .ok()
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| bad_header(format!("{name} is a number from 0 to 2^63 - 1")))
        })
        .transpose()
}

/// A page blob size: a multiple of 512 up to [`MAX_SIZE`].
fn size_of(value: u64) -> Result<u64, StorageError> {
    if !value.is_multiple_of(PAGE) {
        return Err(bad_header(format!(
            "x-ms-blob-content-length {value} is not a multiple of 512"
        )));
    }
    if value > MAX_SIZE {
        return Err(bad_header(format!(
            "x-ms-blob-content-length {value} is larger than the {MAX_SIZE} bytes keyless keeps in a page blob (each page write rewrites the blob)"
        )));
    }
    Ok(value)
}

/// Put Blob with `x-ms-blob-type: PageBlob`: a blob of `x-ms-blob-content-length`
/// zero bytes.
pub(crate) async fn create(ctx: &Ctx) -> Result<Response, StorageError> {
    if ctx.account.hns {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "FeatureNotSupportedForAccount",
            "Page blobs are not supported on accounts with a hierarchical namespace.",
        ));
    }
    if ctx
        .header("content-length")
        .is_some_and(|n| n.trim() != "0")
    {
        return Err(bad_header(
            "a page blob is created empty (Content-Length: 0); its pages come with Put Page".into(),
        ));
    }
    let size = number(ctx, "x-ms-blob-content-length")?.ok_or_else(|| {
        StorageError::bad(
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified: x-ms-blob-content-length",
        )
    })?;
    let state = BlobState {
        kind: BlobKind::PageBlob,
        tags: super::tags::from_request(ctx)?,
        sequence_number: number(ctx, "x-ms-blob-sequence-number")?.unwrap_or(0),
        ..BlobState::default()
    };
    create_empty(ctx, state, size_of(size)?).await
}

/// The page range of a request: `bytes=start-end`, both on page boundaries.
fn page_range(ctx: &Ctx) -> Result<(u64, u64), StorageError> {
    let text = ctx
        .header("x-ms-range")
        .or_else(|| ctx.header("range"))
        .ok_or_else(|| {
            StorageError::bad(
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified: x-ms-range",
            )
        })?;
    let r = super::conditions::Range::parse(text)
        .and_then(|r| Some((r.start, r.end?)))
        .ok_or_else(|| bad_header(format!("the range `{text}` is not `bytes=start-end`")))?;
    if !r.0.is_multiple_of(PAGE) || !(r.1 + 1).is_multiple_of(PAGE) {
        return Err(bad_header(format!(
            "the range `{text}` does not start and end on 512-byte page boundaries"
        )));
    }
    Ok(r)
}

/// The sequence number conditions of Put Page.
fn sequence_conditions(
    ctx: &Ctx,
) -> Result<impl Fn(u64) -> Result<(), StorageError> + use<>, StorageError> {
    let le = number(ctx, "x-ms-if-sequence-number-le")?;
    let lt = number(ctx, "x-ms-if-sequence-number-lt")?;
    let eq = number(ctx, "x-ms-if-sequence-number-eq")?;
    Ok(move |n: u64| {
        let met =
            le.is_none_or(|v| n <= v) && lt.is_none_or(|v| n < v) && eq.is_none_or(|v| n == v);
        if met {
            Ok(())
        } else {
            Err(StorageError::new(
                StatusCode::PRECONDITION_FAILED,
                "SequenceNumberConditionNotMet",
                "The sequence number condition specified was not met.",
            ))
        }
    })
}

/// `ranges` with `[start, end]` written over them: what it overlaps gives way,
/// and it stays a range of its own, as Azure lists writes.
fn with_range(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = without_range(ranges, start, end);
    out.push((start, end));
    out.sort_unstable();
    out
}

/// `ranges` without `[start, end]`.
fn without_range(ranges: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(s, e) in ranges {
        if e < start || s > end {
            out.push((s, e));
            continue;
        }
        if s < start {
            out.push((s, start - 1));
        }
        if e > end {
            out.push((end + 1, e));
        }
    }
    out
}

const MOVED: &str = "the page blob changed while its pages were being written";

/// Swaps in a new file for `b`: its bytes before `at`, `middle`, its bytes after
/// `at + middle's length` (up to `size`, zero-filled past the old end).
async fn rewrite(
    ctx: &Ctx,
    b: &Blob,
    at: u64,
    middle: Option<(&str, u64)>,
    size: u64,
) -> Result<keyless_store::Written, StorageError> {
    let base = file_of(ctx, b).await?;
    let mut parts = Vec::new();
    let mut zeros = Vec::new();
    if let Some(id) = &base {
        parts.push((id.clone(), 0, at.min(b.size)));
    }
    let mut end = at;
    if let Some((id, len)) = middle {
        parts.push((id.to_owned(), 0, len));
        end = at + len;
    }
    if let Some(id) = &base
        && end < b.size.min(size)
    {
        parts.push((id.clone(), end, b.size.min(size) - end));
    }
    if size > b.size.max(end) {
        let z = ctx.state.blobs.zeros(size - b.size.max(end)).await?;
        parts.push((z.file_id.clone(), 0, z.size));
        zeros.push(z.file_id);
    }
    parts.retain(|(_, _, len)| *len > 0);
    let composed = ctx.state.blobs.compose(&parts, false).await;
    release(ctx, zeros).await;
    if let (Some(id), Content::Inline(_)) = (base, &b.content) {
        release(ctx, vec![id]).await;
    }
    Ok(composed?)
}

/// Put Page: `x-ms-page-write: update` writes the body to the range,
/// `clear` zeroes it.
pub(crate) async fn put_page(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let (start, end) = page_range(ctx)?;
    let len = end - start + 1;
    let clear = match ctx
        .header("x-ms-page-write")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("update") => false,
        Some("clear") => true,
        Some(other) => {
            return Err(bad_header(format!(
                "x-ms-page-write `{other}` is update or clear"
            )));
        }
        None => {
            return Err(StorageError::bad(
                "MissingRequiredHeader",
                "An HTTP header that's mandatory for this request is not specified: x-ms-page-write",
            ));
        }
    };
    if !clear && len > MAX_WRITE {
        return Err(bad_header(format!(
            "one Put Page writes at most {MAX_WRITE} bytes"
        )));
    }
    let sequence = sequence_conditions(ctx)?;
    let conditions = Conditions::from(ctx)?;
    let judge = |b: &Blob| -> Result<(), StorageError> {
        if b.state.kind != BlobKind::PageBlob {
            return Err(invalid_blob_type());
        }
        conditions
            .blob(Some(b), false)
            .map_err(|e| condition_error(e, false))?;
        sequence(b.state.sequence_number)?;
        if end >= b.size {
            return Err(invalid_range());
        }
        Ok(())
    };
    judge(&load(ctx).await?)?;
    let sent = Sent::from(ctx)?;
    let (data, tap) = if clear {
        (ctx.state.blobs.zeros(len).await?, None)
    } else {
        let (body, tap) = sent.tap_computing(stream(body));
        let w = ctx
            .state
            .blobs
            .write(body, MAX_WRITE)
            .await
            .map_err(|e| write_failed(tap.as_ref(), e))?;
        if let Err(e) = sent.check_streamed(&w.md5, tap.as_ref()) {
            release(ctx, vec![w.file_id]).await;
            return Err(e);
        }
        if w.size != len {
            release(ctx, vec![w.file_id]).await;
            return Err(bad_header(format!(
                "the body has {} bytes where the range names {len}",
                w.size
            )));
        }
        (w, tap)
    };
    let result = async {
        for _ in 0..8 {
            let current = load(ctx).await?;
            judge(&current)?;
            let composed = rewrite(
                ctx,
                &current,
                start,
                Some((&data.file_id, len)),
                current.size,
            )
            .await?;
            let mut next = current.clone();
            next.etag = new_etag();
            next.last_modified = ctx.state.now();
            next.content = Content::File(composed.file_id.clone());
            next.state.pages = if clear {
                without_range(&current.state.pages, start, end)
            } else {
                with_range(&current.state.pages, start, end)
            };
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
                Err(e) => {
                    release(ctx, vec![composed.file_id]).await;
                    if e.message() != MOVED {
                        return Err(condition_error(e, false));
                    }
                }
            }
        }
        Err(StorageError::new(
            StatusCode::CONFLICT,
            "OperationTimedOut",
            "Other writes kept changing the page blob; retry.",
        ))
    }
    .await;
    release(ctx, vec![data.file_id.clone()]).await;
    let b = result?;
    let mut h = write_headers(&b, (!clear).then_some(&data.md5[..]));
    sequence_header(&mut h, &b);
    sent.echo_computed(&mut h, tap.as_ref());
    Ok((StatusCode::CREATED, h).into_response())
}

/// Get Page Ranges: the written ranges, within the request's range if it names one.
pub(crate) async fn ranges(ctx: &Ctx) -> Result<Response, StorageError> {
    if ctx.param("prevsnapshot").is_some() || ctx.header("x-ms-previous-snapshot-url").is_some() {
        return Err(StorageError::bad(
            "UnsupportedQueryParameter",
            "keyless keeps no snapshots, so it has no page range differences to give",
        ));
    }
    let b = load(ctx).await?;
    if b.state.kind != BlobKind::PageBlob {
        return Err(invalid_blob_type());
    }
    Conditions::from(ctx)?
        .blob(Some(&b), true)
        .map_err(|e| condition_error(e, false))?;
    let window = match ctx.header("x-ms-range").or_else(|| ctx.header("range")) {
        None => None,
        Some(text) => {
            let r = super::conditions::Range::parse(text).ok_or_else(|| {
                bad_header(format!("the range `{text}` is not `bytes=start-end`"))
            })?;
            if r.start >= b.size {
                return Err(invalid_range());
            }
            // Whole pages: the window widens to the pages it touches.
            let first = r.start / PAGE * PAGE;
            let last = r
                .end
                .map_or(b.size - 1, |e| ((e / PAGE + 1) * PAGE - 1).min(b.size - 1));
            Some((first, last))
        }
    };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><PageList>");
    for &(s, e) in &b.state.pages {
        let (s, e) = match window {
            Some((ws, we)) if e < ws || s > we => continue,
            Some((ws, we)) => (s.max(ws), e.min(we)),
            None => (s, e),
        };
        xml.push_str(&format!(
            "<PageRange><Start>{s}</Start><End>{e}</End></PageRange>"
        ));
    }
    xml.push_str("</PageList>");
    let mut h = HeaderMap::new();
    insert(&mut h, header::ETAG, &b.etag);
    insert(
        &mut h,
        header::LAST_MODIFIED,
        &super::xml::http_date(b.last_modified),
    );
    insert(
        &mut h,
        HeaderName::from_static("x-ms-blob-content-length"),
        &b.size.to_string(),
    );
    insert(&mut h, header::CONTENT_TYPE, "application/xml");
    Ok((StatusCode::OK, h, xml).into_response())
}

/// Whether a Set Blob Properties request resizes a page blob or changes its
/// sequence number (then [`set_properties`] answers it).
pub(crate) fn asks_page_properties(ctx: &Ctx) -> bool {
    ctx.header("x-ms-blob-content-length").is_some()
        || ctx.header("x-ms-sequence-number-action").is_some()
}

/// Set Blob Properties on a page blob: resize (`x-ms-blob-content-length`) and
/// the sequence number (`x-ms-sequence-number-action`: max, update, increment);
/// content headers sent along are set as on any blob.
pub(crate) async fn set_properties(ctx: &Ctx) -> Result<Response, StorageError> {
    let new_size = number(ctx, "x-ms-blob-content-length")?
        .map(size_of)
        .transpose()?;
    let given = number(ctx, "x-ms-blob-sequence-number")?;
    let action = ctx
        .header("x-ms-sequence-number-action")
        .map(str::to_ascii_lowercase);
    let next_sequence = |current: u64| -> Result<u64, StorageError> {
        let need = || {
            given.ok_or_else(|| {
                StorageError::bad(
                    "MissingRequiredHeader",
                    "An HTTP header that's mandatory for this request is not specified: x-ms-blob-sequence-number",
                )
            })
        };
        match action.as_deref() {
            None => Ok(current),
            Some("max") => Ok(current.max(need()?)),
            Some("update") => need(),
            Some("increment") if given.is_some() => Err(bad_header(
                "x-ms-blob-sequence-number is not sent with the increment action".into(),
            )),
            Some("increment") => current
                .checked_add(1)
                .filter(|n| i64::try_from(*n).is_ok())
                .ok_or_else(|| bad_header("the sequence number is at its largest".into())),
            Some(other) => Err(bad_header(format!(
                "x-ms-sequence-number-action `{other}` is max, update or increment"
            ))),
        }
    };
    let properties = content_headers_sent(ctx)
        .then(|| super::blob::properties_from_headers(ctx, false))
        .transpose()?;
    let conditions = Conditions::from(ctx)?;
    if new_size.is_none() {
        let (b, ()) = modify(ctx, &conditions, Modify::Content, |b| {
            if b.state.kind != BlobKind::PageBlob {
                return Err(invalid_blob_type());
            }
            b.state.sequence_number = next_sequence(b.state.sequence_number)?;
            if let Some(p) = &properties {
                b.properties.clone_from(p);
            }
            Ok(())
        })
        .await?;
        let mut h = write_headers(&b, None);
        sequence_header(&mut h, &b);
        return Ok((StatusCode::OK, h).into_response());
    }
    let size = new_size.unwrap_or(0);
    for _ in 0..8 {
        let current = load(ctx).await?;
        if current.state.kind != BlobKind::PageBlob {
            return Err(invalid_blob_type());
        }
        conditions
            .blob(Some(&current), false)
            .map_err(|e| condition_error(e, false))?;
        let mut next = current.clone();
        next.state.sequence_number = next_sequence(current.state.sequence_number)?;
        if let Some(p) = &properties {
            next.properties.clone_from(p);
        }
        let composed = if size == 0 {
            None
        } else {
            Some(rewrite(ctx, &current, size.min(current.size), None, size).await?)
        };
        next.content = composed
            .as_ref()
            .map_or(Content::Inline(bytes::Bytes::new()), |c| {
                Content::File(c.file_id.clone())
            });
        next.size = size;
        next.state.pages = if size == 0 {
            Vec::new()
        } else {
            without_range(&current.state.pages, size, u64::MAX - 1)
        };
        next.etag = new_etag();
        next.last_modified = ctx.state.now();
        let check = |c: Option<&Blob>| match c {
            Some(c) if c.etag == current.etag && c.state == current.state => Ok(()),
            Some(_) => Err(Error::new(ErrorKind::Conflict, MOVED)),
            None => Err(Error::not_found("the blob does not exist")),
        };
        match ctx.state.store.blob_put(&next, &check).await {
            Ok(released) => {
                release(ctx, released).await;
                let mut h = write_headers(&next, None);
                sequence_header(&mut h, &next);
                return Ok((StatusCode::OK, h).into_response());
            }
            Err(e) => {
                if let Some(c) = composed {
                    release(ctx, vec![c.file_id]).await;
                }
                if e.message() != MOVED {
                    return Err(condition_error(e, false));
                }
            }
        }
    }
    Err(StorageError::new(
        StatusCode::CONFLICT,
        "OperationTimedOut",
        "Other writes kept changing the page blob; retry.",
    ))
}

/// Whether the request sets any of a blob's content headers.
fn content_headers_sent(ctx: &Ctx) -> bool {
    ctx.headers.keys().any(|k| {
        k.as_str().starts_with("x-ms-blob-content-") && k.as_str() != "x-ms-blob-content-length"
            || k.as_str() == "x-ms-blob-cache-control"
    })
}

/// `x-ms-blob-sequence-number`, on a page blob.
pub(crate) fn sequence_header(h: &mut HeaderMap, b: &Blob) {
    if b.state.kind == BlobKind::PageBlob {
        insert(
            h,
            HeaderName::from_static("x-ms-blob-sequence-number"),
            &b.state.sequence_number.to_string(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_ranges_are_overwritten_and_split() {
        let r = with_range(&[], 0, 1535);
        let r = with_range(&r, 512, 1023);
        assert_eq!(
            r,
            vec![(0, 511), (512, 1023), (1024, 1535)],
            "a write splits what it overlaps"
        );
        let r = with_range(&r, 256 * 2, 2559);
        assert_eq!(r, vec![(0, 511), (512, 2559)]);
        let r = with_range(&r, 0, 2559);
        assert_eq!(
            r,
            vec![(0, 2559)],
            "a write over everything leaves one range"
        );
        let r = without_range(&r, 512, 1023);
        assert_eq!(r, vec![(0, 511), (1024, 2559)]);
        assert_eq!(without_range(&r, 0, 4095), vec![]);
        assert_eq!(
            without_range(&r, 2048, u64::MAX - 1),
            vec![(0, 511), (1024, 2047)]
        );
    }
}
