//! Blob Batch: a `multipart/mixed` body of Delete Blob sub-requests, answered
//! part by part. Only deletes are accepted, all in the request's container.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use super::Ctx;
use super::conditions::Conditions;
use super::error::StorageError;

const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_PARTS: usize = 256;

pub(crate) async fn run(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let content_type = ctx.header("content-type").unwrap_or_default();
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"').to_owned())
        .ok_or_else(|| {
            StorageError::bad(
                "InvalidHeaderValue",
                "a batch needs Content-Type: multipart/mixed; boundary=…",
            )
        })?;
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        StorageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            "a batch body is at most 4 MiB",
        )
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| StorageError::bad("InvalidInput", "the batch body is not UTF-8"))?;
    let marker = format!("--{boundary}");
    let parts: Vec<&str> = text
        .split(&marker)
        .skip(1)
        .take_while(|p| !p.starts_with("--"))
        .collect();
    if parts.is_empty() || parts.len() > MAX_PARTS {
        return Err(StorageError::bad(
            "InvalidInput",
            format!("a batch holds 1–{MAX_PARTS} sub-requests"),
        ));
    }
    let out_boundary = format!("batchresponse_{}", uuid::Uuid::new_v4());
    let mut out = String::new();
    for part in parts {
        let (part_headers, request) = part
            .trim_start_matches("\r\n")
            .split_once("\r\n\r\n")
            .unwrap_or((part, ""));
        let id = part_headers
            .lines()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-id"))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_default();
        let status = sub_request(ctx, request).await;
        out.push_str(&format!(
            "--{out_boundary}\r\nContent-Type: application/http\r\nContent-ID: {id}\r\n\r\n"
        ));
        match status {
            Ok(()) => out.push_str("HTTP/1.1 202 Accepted\r\nx-ms-delete-type-permanent: true\r\nx-ms-version: 2026-10-06\r\n\r\n"),
            Err((code, reason, error)) => out.push_str(&format!(
                "HTTP/1.1 {} {reason}\r\nx-ms-error-code: {error}\r\nx-ms-version: 2026-10-06\r\nContent-Length: 0\r\n\r\n",
                code.as_u16()
            )),
        }
    }
    out.push_str(&format!("--{out_boundary}--\r\n"));
    let mut response = (StatusCode::ACCEPTED, out).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary={out_boundary}")) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(response)
}

/// Runs one sub-request; on failure, its status, reason phrase and error code.
async fn sub_request(ctx: &Ctx, request: &str) -> Result<(), (StatusCode, String, String)> {
    let bad = |why: &str| {
        (
            StatusCode::BAD_REQUEST,
            why.to_owned(),
            "InvalidInput".to_owned(),
        )
    };
    let line = request.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(bad("The sub-request line is malformed."));
    };
    if method != "DELETE" {
        return Err(bad("keyless batches accept Delete Blob sub-requests only."));
    }
    let path = target.split('?').next().unwrap_or_default();
    let path = path
        .strip_prefix(&format!("/{}/", ctx.account.name))
        .map(|p| format!("/{p}"))
        .unwrap_or_else(|| path.to_owned());
    let path = percent_decode_str(&path).decode_utf8_lossy().into_owned();
    let Some((container, blob)) = path.trim_start_matches('/').split_once('/') else {
        return Err(bad("The sub-request must name a blob."));
    };
    if container != ctx.container {
        return Err(bad(
            "A container batch may only delete blobs of its container.",
        ));
    }
    super::blob::delete_blob(ctx, container, blob, &Conditions::default())
        .await
        .map_err(|e| {
            let (status, code) = (e.status(), e.code());
            (
                status,
                status.canonical_reason().unwrap_or("Error").to_owned(),
                code.to_owned(),
            )
        })
}
