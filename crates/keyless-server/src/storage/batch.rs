//! Blob Batch: a `multipart/mixed` body of Delete Blob and Set Blob Tier
//! sub-requests, on the account or on one container, answered part by part.
//!
//! Each sub-request is a request of its own: it goes through the same
//! dispatcher as any other — its own credentials (a SharedKey signature, a
//! token, a SAS on its URL), the account's network rules, its own authorization
//! and its own line in the storage log. The batch adds nothing it may do.

use std::future::Future;
use std::pin::Pin;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Ctx;
use super::error::StorageError;

const MAX_BODY: usize = 4 * 1024 * 1024;
const MAX_PARTS: usize = 256;

/// The dispatcher, boxed: a batch runs its parts through it.
fn dispatch(
    state: crate::state::SharedState,
    request: Request,
) -> Pin<Box<dyn Future<Output = Response> + Send>> {
    Box::pin(super::dispatch(state, request))
}

/// The boundary of `multipart/mixed; boundary=…` (its name in any case, its
/// value as given, quotes aside; the first `=` ends the name).
fn boundary(content_type: &str) -> Result<String, StorageError> {
    let invalid = |why: &str| {
        StorageError::bad(
            "InvalidHeaderValue",
            format!(
                "The value for one of the HTTP headers is not in the correct format: Content-Type {why}"
            ),
        )
    };
    let mut params = content_type.split(';');
    let media = params.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("multipart/mixed") {
        return Err(invalid("of a batch is multipart/mixed"));
    }
    let mut found = None;
    for param in params {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        if found.is_some() {
            return Err(StorageError::bad(
                "InvalidInput",
                "One of the request inputs is not valid: Content-Type names its boundary twice",
            ));
        }
        let value = value.trim().trim_matches('"');
        if value.is_empty() {
            return Err(invalid("has an empty boundary"));
        }
        found = Some(value.to_owned());
    }
    found.ok_or_else(|| invalid("names no boundary"))
}

/// A whole batch reply of one part per sub-response.
fn reply(parts: Vec<(String, Response, Vec<u8>)>) -> Response {
    let out_boundary = format!("batchresponse_{}", uuid::Uuid::new_v4());
    let mut out: Vec<u8> = Vec::new();
    for (id, response, body) in parts {
        out.extend_from_slice(
            format!(
                "--{out_boundary}\r\nContent-Type: application/http\r\nContent-ID: {id}\r\n\r\n"
            )
            .as_bytes(),
        );
        let status = response.status();
        out.extend_from_slice(
            format!(
                "HTTP/1.1 {} {}\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Status")
            )
            .as_bytes(),
        );
        if !response.headers().contains_key("x-ms-request-id") {
            out.extend_from_slice(
                format!("x-ms-request-id: {}\r\n", uuid::Uuid::new_v4()).as_bytes(),
            );
        }
        if !response.headers().contains_key(header::DATE) {
            // A part carries its own date, as the batch's reply carries hyper's.
            out.extend_from_slice(
                format!(
                    "Date: {}\r\n",
                    httpdate::fmt_http_date(std::time::SystemTime::now())
                )
                .as_bytes(),
            );
        }
        for (name, value) in response.headers() {
            if name == header::CONTENT_LENGTH {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{out_boundary}--\r\n").as_bytes());
    let mut response = (StatusCode::ACCEPTED, out).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("multipart/mixed; boundary={out_boundary}")) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    response
}

/// A failed part that never became a request.
fn refused_part(e: StorageError) -> (Response, Vec<u8>) {
    use crate::http::ApiError;
    let response = e.into_body();
    (response, Vec::new())
}

/// One sub-request, parsed: method, target, headers.
struct Part<'a> {
    id: String,
    method: &'a str,
    target: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

fn parse_part(part: &str) -> Option<Part<'_>> {
    let part = part.trim_start_matches(['\r', '\n']);
    let (mime, request) = part.split_once("\r\n\r\n")?;
    let id = mime
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-id"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    let (head, _body) = request.split_once("\r\n\r\n").unwrap_or((request, ""));
    let mut lines = head.split("\r\n");
    let mut words = lines.next()?.split_whitespace();
    let (method, target) = (words.next()?, words.next()?);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    Some(Part {
        id,
        method,
        target,
        headers,
    })
}

pub(crate) async fn run(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        StorageError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            "a batch body is at most 4 MiB",
        )
    })?;
    let content_type = ctx.header("content-type").unwrap_or_default();
    if content_type.trim().is_empty() {
        return Err(StorageError::bad(
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified: Content-Type (multipart/mixed; boundary=…)",
        ));
    }
    let boundary = match boundary(content_type) {
        Ok(b) => b,
        // Azure answers a batch it cannot split with one failed part.
        Err(e) => {
            let (response, body) = refused_part(e);
            return Ok(reply(vec![(String::new(), response, body)]));
        }
    };
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
    let mut answers = Vec::with_capacity(parts.len());
    for raw in parts {
        let Some(part) = parse_part(raw) else {
            let (r, b) = refused_part(StorageError::bad(
                "InvalidInput",
                "a sub-request is malformed",
            ));
            answers.push((String::new(), r, b));
            continue;
        };
        let id = part.id.clone();
        let (response, body) = match sub_request(ctx, &part) {
            Ok(request) => {
                let response = dispatch(ctx.state.clone(), request).await;
                let (parts, body) = response.into_parts();
                let body = axum::body::to_bytes(body, MAX_BODY)
                    .await
                    .unwrap_or_default()
                    .to_vec();
                (Response::from_parts(parts, Body::empty()), body)
            }
            Err(e) => refused_part(e),
        };
        answers.push((id, response, body));
    }
    Ok(reply(answers))
}

/// Builds the request a part describes, refusing what a batch may not hold.
fn sub_request(ctx: &Ctx, part: &Part<'_>) -> Result<Request, StorageError> {
    let bad = |why: &str| {
        StorageError::bad(
            "InvalidInput",
            format!("One of the request inputs is not valid: {why}"),
        )
    };
    let (path, query) = part.target.split_once('?').unwrap_or((part.target, ""));
    let is_tier = query
        .split('&')
        .any(|kv| kv.eq_ignore_ascii_case("comp=tier"));
    let has_comp = query.split('&').any(|kv| {
        kv.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("comp"))
    });
    match part.method {
        "DELETE" if !has_comp => {}
        "PUT" if is_tier => {}
        _ => {
            return Err(bad(
                "a batch holds Delete Blob and Set Blob Tier sub-requests only",
            ));
        }
    }
    // Sub-request paths name the account (path style) or not (host style).
    let account_prefix = format!("/{}/", ctx.account.name);
    let (full, host_path) = match path.strip_prefix(&account_prefix) {
        Some(_) => (path.to_owned(), None),
        None => (
            format!("/{}{path}", ctx.account.name),
            Some(path.to_owned()),
        ),
    };
    let rest = full.strip_prefix(&account_prefix).unwrap_or_default();
    let container = rest.split('/').next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(container).decode_utf8_lossy();
    if !rest.contains('/') {
        return Err(bad("a sub-request names a blob"));
    }
    if !ctx.container.is_empty() && decoded != ctx.container {
        return Err(bad(
            "a container's batch holds requests for its own blobs only",
        ));
    }
    let uri = if query.is_empty() {
        full
    } else {
        format!("{full}?{query}")
    };
    let method = if part.method == "DELETE" {
        Method::DELETE
    } else {
        Method::PUT
    };
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in &part.headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder
        .body(Body::empty())
        .map_err(|_| bad("a sub-request's line or headers are malformed"))?;
    if let Some(client) = ctx.client {
        request
            .extensions_mut()
            .insert(crate::http::ClientAddr(std::net::SocketAddr::new(
                client, 0,
            )));
    }
    if let Some(p) = host_path {
        request.extensions_mut().insert(super::HostStyle(p));
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_are_read_as_azure_reads_them() {
        assert_eq!(
            boundary("multipart/mixed; boundary=batch_1").unwrap(),
            "batch_1"
        );
        assert_eq!(boundary("multipart/mixed; Boundary=x==").unwrap(), "x==");
        assert_eq!(boundary("multipart/mixed; boundary= \"q\"").unwrap(), "q");
        assert_eq!(
            boundary("multipart/mixed").unwrap_err().code(),
            "InvalidHeaderValue"
        );
        assert_eq!(
            boundary("multipart/mixed; boundary=").unwrap_err().code(),
            "InvalidHeaderValue"
        );
        assert_eq!(
            boundary("multipart/mixed; boundary=a; boundary=b")
                .unwrap_err()
                .code(),
            "InvalidInput"
        );
        assert!(boundary("text/plain; boundary=a").is_err());
    }

    #[test]
    fn parts_carry_their_own_request() {
        let raw = "\r\nContent-Type: application/http\r\nContent-ID: 3\r\n\r\nDELETE /acct/c/b%20c HTTP/1.1\r\nx-ms-date: now\r\nAuthorization: SharedKey acct:sig\r\n\r\n";
        let p = parse_part(raw).unwrap();
        assert_eq!(
            (p.id.as_str(), p.method, p.target),
            ("3", "DELETE", "/acct/c/b%20c")
        );
        assert_eq!(
            p.headers,
            vec![
                ("x-ms-date", "now"),
                ("Authorization", "SharedKey acct:sig")
            ]
        );
    }
}
