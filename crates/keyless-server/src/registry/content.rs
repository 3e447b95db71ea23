//! The OCI distribution API of one registry: blobs by digest (monolithic,
//! chunked and cross-repository uploads, ranged reads), manifests by tag and
//! digest (kept exactly as pushed, their blobs checked to be in the
//! repository), tags, the catalog, and deletes. Every digest is computed here:
//! a blob whose bytes do not hash to the digest it was pushed under is refused
//! and dropped.

use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use keyless_store::{ByteStream, Manifest};

use super::{API_VERSION, Action, Ctx, Need, RegError, Seen, token};

/// The largest blob keyless takes in one push.
const MAX_BLOB: u64 = 16 * 1024 * 1024 * 1024;
/// The largest manifest (ACR's limit is 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// Uploads not finished within a day are dropped.
pub(crate) const UPLOAD_LIFETIME: i64 = 24 * 3600;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A repository name as the distribution spec allows it: lower-case path
/// components of letters and digits joined by `.`, `_`, `__` or dashes.
pub(crate) fn valid_repository(name: &str) -> bool {
    let component = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && b.first()
                .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
            && b.last()
                .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
            && b.iter()
                .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(x))
            && !c.contains("..")
            && !c.contains("___")
            && !c.contains("._")
            && !c.contains("_.")
    };
    name.len() <= 256 && name.split('/').all(component)
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    (1..=128).contains(&b.len())
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c))
}

/// A `sha256:<64 hex>` digest, checked.
fn parse_digest(d: &str) -> Result<String, RegError> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)) =>
        {
            Ok(d.to_owned())
        }
        Some((alg, _)) if alg != "sha256" => Err(RegError::bad(
            "DIGEST_INVALID",
            format!("digest `{d}`: keyless registries address content by sha256 only"),
        )),
        _ => Err(RegError::bad(
            "DIGEST_INVALID",
            format!("`{d}` is not a digest (sha256:<64 lower-case hex digits>)"),
        )),
    }
}

fn sha256_of(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(digest::digest(&digest::SHA256, bytes).as_ref())
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A body that hashes itself as it is read.
fn hashed(body: ByteStream) -> (ByteStream, Arc<Mutex<digest::Context>>) {
    let ctx = Arc::new(Mutex::new(digest::Context::new(&digest::SHA256)));
    let inner = Arc::clone(&ctx);
    let stream = body.map(move |chunk| {
        if let Ok(bytes) = &chunk {
            inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .update(bytes);
        }
        chunk
    });
    (Box::pin(stream), ctx)
}

fn finish_hash(ctx: &Arc<Mutex<digest::Context>>) -> String {
    let done = ctx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
        .finish();
    format!("sha256:{}", hex(done.as_ref()))
}

/// An answer with the distribution API's headers.
fn answer(status: StatusCode, headers: &[(&str, String)], body: Body) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, value);
        }
    }
    r
}

fn json_answer(v: &Value, extra: &[(&str, String)]) -> Response {
    let text = v.to_string();
    let mut headers = vec![
        ("content-type", "application/json; charset=utf-8".to_owned()),
        ("content-length", text.len().to_string()),
    ];
    headers.extend(extra.iter().cloned());
    answer(StatusCode::OK, &headers, Body::from(text))
}

pub(super) async fn serve(
    ctx: &Ctx,
    path: &str,
    body: Body,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    if path.is_empty() || path == "/" {
        seen.operation = "Base";
        token::authenticate(ctx, None, seen)?;
        return Ok(json_answer(&json!({}), &[]));
    }
    if path == "/_catalog" {
        seen.operation = "Catalog";
        token::authenticate(ctx, Some(&Need::Catalog), seen)?;
        return catalog(ctx).await;
    }
    let path = path.trim_start_matches('/');
    let (name, kind, reference) = if let Some(name) = path.strip_suffix("/tags/list") {
        (name, "tags", "")
    } else if let Some((name, r)) = path.rsplit_once("/manifests/") {
        (name, "manifests", r)
    } else if let Some(name) = path
        .strip_suffix("/blobs/uploads")
        .or_else(|| path.strip_suffix("/blobs/uploads/"))
    {
        (name, "uploads", "")
    } else if let Some((name, r)) = path.rsplit_once("/blobs/uploads/") {
        (name, "uploads", r)
    } else if let Some((name, r)) = path.rsplit_once("/blobs/") {
        (name, "blobs", r)
    } else {
        return Err(RegError::not_found(
            "UNSUPPORTED",
            format!(
                "`{} /v2/{path}` is not part of the distribution API",
                ctx.method
            ),
        ));
    };
    if !valid_repository(name) {
        return Err(RegError::bad(
            "NAME_INVALID",
            format!(
                "invalid repository name `{name}`: lower-case letters, digits and . _ - separators, / between components"
            ),
        ));
    }
    let need = |action| Need::Repository(name.to_owned(), action);
    let method = ctx.method.clone();
    match (kind, &method) {
        ("tags", &Method::GET) => {
            seen.operation = "ListTags";
            seen.path = name.to_owned();
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            tags(ctx, name).await
        }
        ("manifests", &Method::GET | &Method::HEAD) => {
            seen.operation = "PullManifest";
            seen.path = at(name, reference);
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            get_manifest(ctx, name, reference, method == Method::HEAD, seen).await
        }
        ("manifests", &Method::PUT) => {
            seen.operation = "PushManifest";
            seen.path = at(name, reference);
            token::authenticate(ctx, Some(&need(Action::Push)), seen)?;
            put_manifest(ctx, name, reference, body, seen).await
        }
        ("manifests", &Method::DELETE) => {
            seen.operation = "DeleteManifest";
            seen.path = at(name, reference);
            token::authenticate(ctx, Some(&need(Action::Delete)), seen)?;
            delete_manifest(ctx, name, reference).await
        }
        ("blobs", &Method::GET | &Method::HEAD) => {
            seen.operation = "PullBlob";
            seen.path = format!("{name}@{reference}");
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            get_blob(ctx, name, reference, method == Method::HEAD, seen).await
        }
        ("blobs", &Method::DELETE) => {
            seen.operation = "DeleteBlob";
            seen.path = format!("{name}@{reference}");
            token::authenticate(ctx, Some(&need(Action::Delete)), seen)?;
            let digest = parse_digest(reference)?;
            if ctx
                .state
                .store
                .registry_blob_unlink(&ctx.registry.name, name, &digest)
                .await?
            {
                Ok(answer(
                    StatusCode::ACCEPTED,
                    &[("content-length", "0".into())],
                    Body::empty(),
                ))
            } else {
                Err(blob_unknown(name, &digest))
            }
        }
        ("uploads", _) => {
            seen.operation = "PushBlob";
            seen.path = name.to_owned();
            let who = token::authenticate(ctx, Some(&need(Action::Push)), seen)?;
            let may_pull = token::permits(ctx, &who, Action::Pull).is_ok();
            upload::upload(ctx, name, reference, body, may_pull, seen).await
        }
        _ => Err(RegError::unsupported(format!(
            "`{method} /v2/{path}` is not part of the distribution API"
        ))),
    }
}

fn at(name: &str, reference: &str) -> String {
    if reference.contains(':') {
        format!("{name}@{reference}")
    } else {
        format!("{name}:{reference}")
    }
}

fn blob_unknown(name: &str, digest: &str) -> RegError {
    let mut e = RegError::not_found(
        "BLOB_UNKNOWN",
        format!("blob {digest} is not in repository {name}"),
    );
    e.detail = Some(json!({ "digest": digest }));
    e
}

fn manifest_unknown(name: &str, reference: &str) -> RegError {
    let mut e = RegError::not_found(
        "MANIFEST_UNKNOWN",
        format!("manifest {reference} is not in repository {name}"),
    );
    e.detail = Some(json!({ "Tag": reference }));
    e
}

/// `n` names from after `last`, and the `Link` to the next page when there is one.
fn page(
    mut names: Vec<String>,
    ctx: &Ctx,
    base: &str,
) -> Result<(Vec<String>, Option<String>), RegError> {
    if let Some(last) = ctx.param("last") {
        names.retain(|n| n.as_str() > last);
    }
    let Some(n) = ctx.param("n") else {
        return Ok((names, None));
    };
    let n: usize = n.parse().map_err(|_| {
        RegError::bad(
            "PAGINATION_NUMBER_INVALID",
            format!("n=`{n}` is not a number"),
        )
    })?;
    if names.len() <= n {
        return Ok((names, None));
    }
    names.truncate(n);
    let link = names
        .last()
        .map(|last| format!("<{base}?last={last}&n={n}>; rel=\"next\""));
    Ok((names, link))
}

async fn catalog(ctx: &Ctx) -> Result<Response, RegError> {
    let all = ctx
        .state
        .store
        .registry_repositories(&ctx.registry.name)
        .await?;
    let (names, link) = page(all, ctx, "/v2/_catalog")?;
    let extra: Vec<(&str, String)> = link.into_iter().map(|l| ("link", l)).collect();
    Ok(json_answer(&json!({ "repositories": names }), &extra))
}

async fn tags(ctx: &Ctx, name: &str) -> Result<Response, RegError> {
    let all: Vec<String> = ctx
        .state
        .store
        .registry_tags(&ctx.registry.name, name)
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    if all.is_empty()
        && ctx
            .state
            .store
            .registry_manifests(&ctx.registry.name, name)
            .await?
            .is_empty()
    {
        let mut e = RegError::not_found(
            "NAME_UNKNOWN",
            format!("repository {name} is not in the registry"),
        );
        e.detail = Some(json!({ "name": name }));
        return Err(e);
    }
    let (tags, link) = page(all, ctx, &format!("/v2/{name}/tags/list"))?;
    let extra: Vec<(&str, String)> = link.into_iter().map(|l| ("link", l)).collect();
    Ok(json_answer(&json!({ "name": name, "tags": tags }), &extra))
}

/// The digest a reference names: itself, or the tag's manifest.
async fn resolve(ctx: &Ctx, name: &str, reference: &str) -> Result<String, RegError> {
    if reference.contains(':') {
        return parse_digest(reference);
    }
    if !valid_tag(reference) {
        return Err(RegError::bad(
            "TAG_INVALID",
            format!("invalid tag `{reference}`"),
        ));
    }
    ctx.state
        .store
        .registry_tag(&ctx.registry.name, name, reference)
        .await?
        .map(|t| t.digest)
        .ok_or_else(|| manifest_unknown(name, reference))
}

async fn get_manifest(
    ctx: &Ctx,
    name: &str,
    reference: &str,
    head: bool,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    let digest = resolve(ctx, name, reference).await?;
    let m = ctx
        .state
        .store
        .registry_manifest(&ctx.registry.name, name, &digest)
        .await?
        .ok_or_else(|| manifest_unknown(name, reference))?;
    seen.path = format!("{name}@{digest}");
    let headers = [
        ("content-type", m.media_type.clone()),
        ("content-length", m.body.len().to_string()),
        ("docker-content-digest", digest.clone()),
        ("etag", format!("\"{digest}\"")),
    ];
    if head {
        return Ok(answer(StatusCode::OK, &headers, Body::empty()));
    }
    seen.bytes_out = m.body.len() as u64;
    Ok(answer(StatusCode::OK, &headers, Body::from(m.body)))
}

/// The blobs and manifests a manifest refers to.
fn references(media_type: &str, body: &[u8]) -> Result<(Vec<String>, Vec<String>), RegError> {
    let invalid = |why: String| RegError::bad("MANIFEST_INVALID", why);
    let digests = |ds: Vec<&oci_spec::image::Descriptor>| -> Result<Vec<String>, RegError> {
        ds.into_iter()
            .filter(|d| d.urls().as_ref().is_none_or(Vec::is_empty))
            .map(|d| parse_digest(d.digest().as_ref()))
            .collect()
    };
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m = oci_spec::image::ImageManifest::from_reader(body)
                .map_err(|e| invalid(format!("not an image manifest: {e}")))?;
            let mut all = vec![m.config()];
            all.extend(m.layers().iter());
            Ok((digests(all)?, Vec::new()))
        }
        OCI_INDEX | DOCKER_LIST => {
            let i = oci_spec::image::ImageIndex::from_reader(body)
                .map_err(|e| invalid(format!("not an image index: {e}")))?;
            Ok((Vec::new(), digests(i.manifests().iter().collect())?))
        }
        other => Err(invalid(format!(
            "manifests of media type `{other}` are not served: push an OCI image manifest or index, or a Docker v2 manifest or list"
        ))),
    }
}

async fn put_manifest(
    ctx: &Ctx,
    name: &str,
    reference: &str,
    body: Body,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    let bytes = axum::body::to_bytes(body, MAX_MANIFEST)
        .await
        .map_err(|_| RegError::bad("SIZE_INVALID", "a manifest may be 4 MiB at most"))?;
    seen.bytes_in = bytes.len() as u64;
    let digest = sha256_of(&bytes);
    let tag = if reference.contains(':') {
        if parse_digest(reference)? != digest {
            return Err(RegError::bad(
                "DIGEST_INVALID",
                format!("the manifest hashes to {digest}, not to {reference}"),
            ));
        }
        None
    } else if valid_tag(reference) {
        Some(reference)
    } else {
        return Err(RegError::bad(
            "TAG_INVALID",
            format!("invalid tag `{reference}`"),
        ));
    };
    let declared: Value = serde_json::from_slice(&bytes)
        .map_err(|e| RegError::bad("MANIFEST_INVALID", format!("the manifest is not JSON: {e}")))?;
    let content_type = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned());
    let media_type = declared
        .get("mediaType")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or(content_type)
        .unwrap_or_else(|| OCI_MANIFEST.to_owned());
    let (blobs, manifests) = references(&media_type, &bytes)?;
    let store = &ctx.state.store;
    for b in &blobs {
        if store
            .registry_repository_blob(&ctx.registry.name, name, b)
            .await?
            .is_none()
        {
            let mut e = RegError::bad(
                "MANIFEST_BLOB_UNKNOWN",
                format!(
                    "the manifest refers to blob {b}, which is not in repository {name}: push it first"
                ),
            );
            e.detail = Some(json!({ "digest": b }));
            return Err(e);
        }
    }
    for m in &manifests {
        if store
            .registry_manifest(&ctx.registry.name, name, m)
            .await?
            .is_none()
        {
            let mut e = RegError::bad(
                "MANIFEST_BLOB_UNKNOWN",
                format!(
                    "the index refers to manifest {m}, which is not in repository {name}: push it first"
                ),
            );
            e.detail = Some(json!({ "digest": m }));
            return Err(e);
        }
    }
    store
        .registry_manifest_put(
            &Manifest {
                registry: ctx.registry.name.clone(),
                repository: name.to_owned(),
                digest: digest.clone(),
                media_type,
                body: bytes.to_vec(),
                created_at: ctx.state.now(),
            },
            tag,
        )
        .await?;
    seen.path = match tag {
        Some(t) => format!("{name}:{t}@{digest}"),
        None => format!("{name}@{digest}"),
    };
    Ok(answer(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/manifests/{digest}")),
            ("docker-content-digest", digest),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    ))
}

async fn delete_manifest(ctx: &Ctx, name: &str, reference: &str) -> Result<Response, RegError> {
    let store = &ctx.state.store;
    let done = if reference.contains(':') {
        let digest = parse_digest(reference)?;
        store
            .registry_manifest_delete(&ctx.registry.name, name, &digest)
            .await?
    } else {
        store
            .registry_tag_delete(&ctx.registry.name, name, reference)
            .await?
    };
    if !done {
        return Err(manifest_unknown(name, reference));
    }
    Ok(answer(
        StatusCode::ACCEPTED,
        &[("content-length", "0".into())],
        Body::empty(),
    ))
}

/// `bytes=a-b` or `bytes=a-` of a blob of `size` bytes: the first byte and length.
fn range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end: u64 = match b.trim() {
        "" => size.checked_sub(1)?,
        e => e.parse::<u64>().ok()?.min(size.checked_sub(1)?),
    };
    (start <= end && start < size).then(|| (start, end - start + 1))
}

async fn get_blob(
    ctx: &Ctx,
    name: &str,
    reference: &str,
    head: bool,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    let digest = parse_digest(reference)?;
    let blob = ctx
        .state
        .store
        .registry_repository_blob(&ctx.registry.name, name, &digest)
        .await?
        .ok_or_else(|| blob_unknown(name, &digest))?;
    let mut headers = vec![
        ("content-type", "application/octet-stream".to_owned()),
        ("docker-content-digest", digest.clone()),
        ("etag", format!("\"{digest}\"")),
        ("accept-ranges", "bytes".to_owned()),
    ];
    let wanted = ctx.headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, offset, len) = match wanted {
        Some(r) => {
            let Some((offset, len)) = range(r, blob.size) else {
                return Err(RegError::out_of_range(
                    "RANGE_INVALID",
                    format!(
                        "range `{r}` does not lie within the blob's {} bytes",
                        blob.size
                    ),
                    blob.size,
                ));
            };
            headers.push((
                "content-range",
                format!("bytes {offset}-{}/{}", offset + len - 1, blob.size),
            ));
            (StatusCode::PARTIAL_CONTENT, offset, len)
        }
        None => (StatusCode::OK, 0, blob.size),
    };
    headers.push(("content-length", len.to_string()));
    if head {
        return Ok(answer(status, &headers, Body::empty()));
    }
    let bytes = ctx.state.blobs.read(&blob.file_id, offset, len).await?;
    seen.bytes_out = len;
    Ok(answer(status, &headers, Body::from_stream(bytes)))
}

mod upload;

#[cfg(test)]
mod tests;
