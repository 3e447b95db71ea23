//! Blob uploads: monolithic (`POST …?digest=`), chunked (`PATCH`, then `PUT
//! …?digest=`) and mounted from another repository; a blob is kept only once
//! its bytes hash to the digest it was pushed under.

use axum::body::Body;
use axum::http::{Method, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt as _;
use serde_json::json;

use keyless_store::{ByteStream, Extended, RegistryBlob, Upload};

use super::{
    MAX_BLOB, UPLOAD_LIFETIME, answer, finish_hash, hashed, parse_digest, valid_repository,
};
use crate::registry::{Ctx, RegError, Seen, stream};

fn upload_headers(name: &str, u: &Upload) -> Vec<(&'static str, String)> {
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{}", u.id)),
        ("docker-upload-uuid", u.id.clone()),
        ("range", format!("0-{}", u.size.saturating_sub(1))),
        ("content-length", "0".into()),
    ]
}

fn upload_unknown(id: &str) -> RegError {
    RegError::not_found(
        "BLOB_UPLOAD_UNKNOWN",
        format!("upload {id} is not in progress"),
    )
}

/// Whether a request carries a body to append.
fn has_body(ctx: &Ctx) -> bool {
    match ctx
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
    {
        Some(n) => n.trim() != "0",
        None => ctx.headers.contains_key(header::TRANSFER_ENCODING),
    }
}

pub(super) async fn upload(
    ctx: &Ctx,
    name: &str,
    id: &str,
    body: Body,
    may_pull: bool,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    let store = &ctx.state.store;
    if id.is_empty() {
        if ctx.method != Method::POST {
            return Err(RegError::unsupported(
                "begin an upload with POST /v2/<name>/blobs/uploads/",
            ));
        }
        if let (Some(from), Some(mount)) = (ctx.param("from"), ctx.param("mount")) {
            let digest = parse_digest(mount)?;
            let there = valid_repository(from)
                && may_pull
                && store
                    .registry_repository_blob(&ctx.registry.name, from, &digest)
                    .await?
                    .is_some();
            if there
                && store
                    .registry_blob_link(&ctx.registry.name, name, &digest)
                    .await?
            {
                seen.operation = "MountBlob";
                seen.path = format!("{name}@{digest} from {from}");
                return Ok(created(name, &digest));
            }
        }
        if let Some(digest) = ctx.param("digest") {
            let digest = parse_digest(digest)?;
            seen.path = format!("{name}@{digest}");
            let (stream, hash) = hashed(stream(body));
            // The digest is SHA-256, computed as the bytes pass: no MD5.
            let written = ctx
                .state
                .blobs
                .write_digesting(stream, MAX_BLOB, false)
                .await?;
            seen.bytes_in = written.size;
            return commit(
                ctx,
                name,
                &written.file_id,
                written.size,
                &digest,
                &finish_hash(&hash),
            )
            .await;
        }
        let u = Upload {
            id: uuid::Uuid::new_v4().to_string(),
            registry: ctx.registry.name.clone(),
            repository: name.to_owned(),
            file_id: String::new(),
            size: 0,
            created_at: ctx.state.now(),
        };
        store.registry_upload_create(&u).await?;
        return Ok(answer(
            StatusCode::ACCEPTED,
            &upload_headers(name, &u),
            Body::empty(),
        ));
    }
    let u = store
        .registry_upload(&ctx.registry.name, id)
        .await?
        .filter(|u| u.repository == name && u.created_at + UPLOAD_LIFETIME > ctx.state.now())
        .ok_or_else(|| upload_unknown(id))?;
    match ctx.method {
        Method::GET => Ok(answer(
            StatusCode::NO_CONTENT,
            &upload_headers(name, &u),
            Body::empty(),
        )),
        Method::DELETE => {
            if let Some(u) = store.registry_upload_delete(&ctx.registry.name, id).await?
                && !u.file_id.is_empty()
            {
                ctx.state.blobs.remove(&[u.file_id]).await;
            }
            Ok(answer(
                StatusCode::NO_CONTENT,
                &[("content-length", "0".into())],
                Body::empty(),
            ))
        }
        Method::PATCH => {
            if let Some(r) = ctx
                .headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
            {
                let start = r
                    .trim()
                    .trim_start_matches("bytes ")
                    .split('-')
                    .next()
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(u.size) {
                    return Err(RegError::out_of_range(
                        "BLOB_UPLOAD_INVALID",
                        format!(
                            "the chunk begins at `{r}`, the upload holds {} bytes: send the next chunk from there",
                            u.size
                        ),
                        u.size,
                    ));
                }
            }
            let u = append(ctx, &u, stream(body)).await?;
            seen.bytes_in = u.size;
            Ok(answer(
                StatusCode::ACCEPTED,
                &upload_headers(name, &u),
                Body::empty(),
            ))
        }
        Method::PUT => {
            let Some(digest) = ctx.param("digest") else {
                return Err(RegError::bad(
                    "DIGEST_INVALID",
                    "finish an upload with PUT …?digest=sha256:<hex>",
                ));
            };
            let digest = parse_digest(digest)?;
            seen.path = format!("{name}@{digest}");
            let u = if has_body(ctx) {
                append(ctx, &u, stream(body)).await?
            } else {
                u
            };
            seen.bytes_in = u.size;
            let file_id = if u.file_id.is_empty() {
                ctx.state
                    .blobs
                    .write_digesting(Box::pin(futures_util::stream::empty()), 0, false)
                    .await?
                    .file_id
            } else {
                u.file_id.clone()
            };
            let (bytes, hash) = hashed(ctx.state.blobs.read(&file_id, 0, u.size).await?);
            bytes.for_each(|_| async {}).await;
            let computed = finish_hash(&hash);
            let response = commit(ctx, name, &file_id, u.size, &digest, &computed).await;
            // The file belongs to the blob now (or was dropped with a wrong digest).
            store.registry_upload_delete(&ctx.registry.name, id).await?;
            response
        }
        _ => Err(RegError::unsupported(
            "uploads take GET, PATCH, PUT and DELETE",
        )),
    }
}

/// Appends a chunk to an upload and records it; two chunks sent at once do
/// not both land.
async fn append(ctx: &Ctx, u: &Upload, body: ByteStream) -> Result<Upload, RegError> {
    let blobs = &ctx.state.blobs;
    let limit = MAX_BLOB.saturating_sub(u.size);
    let (file_id, size, in_place) = if u.file_id.is_empty() {
        let w = blobs.write_digesting(body, limit, false).await?;
        (w.file_id, w.size, false)
    } else {
        match blobs.extend(&u.file_id, u.size, body, limit).await? {
            Extended::Appended(w) => (u.file_id.clone(), u.size + w.size, true),
            Extended::Declined(body) => {
                let part = blobs.write_digesting(body, limit, false).await?;
                let whole = blobs
                    .compose(
                        &[
                            (u.file_id.clone(), 0, u.size),
                            (part.file_id.clone(), 0, part.size),
                        ],
                        false,
                    )
                    .await?;
                blobs.remove(&[part.file_id]).await;
                (whole.file_id, whole.size, false)
            }
        }
    };
    let advanced = ctx
        .state
        .store
        .registry_upload_advance(&ctx.registry.name, &u.id, u.size, &file_id, size)
        .await?;
    if !advanced {
        if in_place {
            blobs.truncate(&file_id, u.size).await?;
        } else {
            blobs.remove(&[file_id]).await;
        }
        return Err(RegError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "BLOB_UPLOAD_INVALID",
            "another chunk of this upload landed first: ask for the upload's range (GET) and go on from there",
        ));
    }
    if !in_place && !u.file_id.is_empty() {
        blobs.remove(std::slice::from_ref(&u.file_id)).await;
    }
    Ok(Upload {
        file_id,
        size,
        ..u.clone()
    })
}

fn created(name: &str, digest: &str) -> Response {
    answer(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{digest}")),
            ("docker-content-digest", digest.to_owned()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

/// Keeps a written blob under its digest, once the bytes are known to hash to it.
async fn commit(
    ctx: &Ctx,
    name: &str,
    file_id: &str,
    size: u64,
    claimed: &str,
    computed: &str,
) -> Result<Response, RegError> {
    if claimed != computed {
        ctx.state.blobs.remove(&[file_id.to_owned()]).await;
        let mut e = RegError::bad(
            "DIGEST_INVALID",
            format!("the {size} bytes sent hash to {computed}, not to {claimed}; nothing was kept"),
        );
        e.detail = Some(json!({ "digest": claimed }));
        return Err(e);
    }
    let kept = ctx
        .state
        .store
        .registry_blob_add(
            &RegistryBlob {
                registry: ctx.registry.name.clone(),
                digest: claimed.to_owned(),
                file_id: file_id.to_owned(),
                size,
                created_at: ctx.state.now(),
            },
            name,
        )
        .await?;
    if kept.file_id != file_id {
        ctx.state.blobs.remove(&[file_id.to_owned()]).await;
    }
    Ok(created(name, claimed))
}
