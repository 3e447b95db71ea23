//! ACR's own metadata API beside the distribution API, as the registry SDK
//! (`ContainerRegistryClient`) reads it: `/acr/v1/_catalog`, a repository's
//! properties, its tags and manifests with their times, and deleting a
//! repository or a tag. The same token service and roles decide: reading
//! metadata is a pull, deleting needs AcrDelete.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use keyless_store::{Manifest, Tag};

use super::content::valid_repository;
use super::{Action, Ctx, Need, RegError, Seen, token};

fn time(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// What the SDK reads as a repository's, tag's or manifest's writeable flags:
/// keyless does not lock content, so every flag is on.
fn changeable() -> Value {
    json!({ "deleteEnabled": true, "writeEnabled": true, "readEnabled": true, "listEnabled": true })
}

fn tag_json(t: &Tag) -> Value {
    json!({
        "name": t.name,
        "digest": t.digest,
        "createdTime": time(t.updated_at),
        "lastUpdateTime": time(t.updated_at),
        "signed": false,
        "changeableAttributes": changeable(),
    })
}

/// The size of an image: its config and layers, as the manifest gives them.
fn image_size(m: &Manifest) -> u64 {
    let parsed: Value = serde_json::from_slice(&m.body).unwrap_or_default();
    let size = |d: &Value| d.get("size").and_then(Value::as_u64).unwrap_or(0);
    let layers: u64 = parsed
        .get("layers")
        .and_then(Value::as_array)
        .map_or(0, |ls| ls.iter().map(size).sum());
    parsed.get("config").map_or(0, size) + layers + m.body.len() as u64
}

fn manifest_json(m: &Manifest, tags: &[Tag]) -> Value {
    let names: Vec<&str> = tags
        .iter()
        .filter(|t| t.digest == m.digest)
        .map(|t| t.name.as_str())
        .collect();
    json!({
        "digest": m.digest,
        "imageSize": image_size(m),
        "createdTime": time(m.created_at),
        "lastUpdateTime": time(m.created_at),
        "mediaType": m.media_type,
        "tags": names,
        "changeableAttributes": changeable(),
    })
}

fn answer(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [
            ("content-type", "application/json; charset=utf-8"),
            (super::API_VERSION.0, super::API_VERSION.1),
        ],
        v.to_string(),
    )
        .into_response()
}

fn unknown_repository(name: &str) -> RegError {
    RegError::not_found(
        "NAME_UNKNOWN",
        format!("repository {name} is not in the registry"),
    )
}

pub(super) async fn serve(ctx: &Ctx, path: &str, seen: &mut Seen) -> Result<Response, RegError> {
    let path = path.trim_matches('/');
    let store = &ctx.state.store;
    let reg = ctx.registry.name.as_str();
    if path == "_catalog" {
        seen.operation = "Catalog";
        token::authenticate(ctx, Some(&Need::Catalog), seen)?;
        let repositories = store.registry_repositories(reg).await?;
        return Ok(answer(
            StatusCode::OK,
            &json!({ "repositories": repositories }),
        ));
    }
    let (name, rest) = match ["/_tags", "/_manifests"]
        .iter()
        .find_map(|m| path.find(m).map(|i| (i, *m)))
    {
        Some((i, _)) => (
            path.get(..i).unwrap_or_default(),
            path.get(i..).unwrap_or_default(),
        ),
        None => (path, ""),
    };
    if !valid_repository(name) {
        return Err(RegError::bad(
            "NAME_INVALID",
            format!("invalid repository name `{name}`"),
        ));
    }
    seen.path = name.to_owned();
    let need = |a| Need::Repository(name.to_owned(), a);
    let method = ctx.method.clone();
    let tags = || async { store.registry_tags(reg, name).await };
    match (
        &method,
        rest.split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .as_slice(),
    ) {
        (&Method::GET, []) => {
            seen.operation = "RepositoryProperties";
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            let manifests = store.registry_manifests(reg, name).await?;
            let tags = tags().await?;
            if manifests.is_empty() {
                return Err(unknown_repository(name));
            }
            let first = manifests
                .iter()
                .map(|m| m.created_at)
                .min()
                .unwrap_or_default();
            let last = manifests
                .iter()
                .map(|m| m.created_at)
                .chain(tags.iter().map(|t| t.updated_at))
                .max()
                .unwrap_or_default();
            Ok(answer(
                StatusCode::OK,
                &json!({
                    "registry": ctx.login_server,
                    "imageName": name,
                    "createdTime": time(first),
                    "lastUpdateTime": time(last),
                    "manifestCount": manifests.len(),
                    "tagCount": tags.len(),
                    "changeableAttributes": changeable(),
                }),
            ))
        }
        (&Method::DELETE, []) => {
            seen.operation = "DeleteRepository";
            token::authenticate(ctx, Some(&need(Action::Delete)), seen)?;
            let manifests: Vec<String> = store
                .registry_manifests(reg, name)
                .await?
                .into_iter()
                .map(|m| m.digest)
                .collect();
            let tags: Vec<String> = tags().await?.into_iter().map(|t| t.name).collect();
            if !store.registry_repository_delete(reg, name).await? {
                return Err(unknown_repository(name));
            }
            Ok(answer(
                StatusCode::ACCEPTED,
                &json!({ "manifestsDeleted": manifests, "tagsDeleted": tags }),
            ))
        }
        (&Method::GET, ["_tags"]) => {
            seen.operation = "ListTags";
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            let list: Vec<Value> = tags().await?.iter().map(tag_json).collect();
            Ok(answer(
                StatusCode::OK,
                &json!({ "registry": ctx.login_server, "imageName": name, "tags": list }),
            ))
        }
        (&Method::GET, ["_tags", tag]) => {
            seen.operation = "TagProperties";
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            let t = store.registry_tag(reg, name, tag).await?.ok_or_else(|| {
                RegError::not_found(
                    "TAG_UNKNOWN",
                    format!("tag {tag} is not in repository {name}"),
                )
            })?;
            Ok(answer(
                StatusCode::OK,
                &json!({ "registry": ctx.login_server, "imageName": name, "tag": tag_json(&t) }),
            ))
        }
        (&Method::DELETE, ["_tags", tag]) => {
            seen.operation = "DeleteTag";
            token::authenticate(ctx, Some(&need(Action::Delete)), seen)?;
            if !store.registry_tag_delete(reg, name, tag).await? {
                return Err(RegError::not_found(
                    "TAG_UNKNOWN",
                    format!("tag {tag} is not in repository {name}"),
                ));
            }
            Ok(answer(StatusCode::ACCEPTED, &json!({})))
        }
        (&Method::GET, ["_manifests"]) => {
            seen.operation = "ListManifests";
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            let tags = tags().await?;
            let list: Vec<Value> = store
                .registry_manifests(reg, name)
                .await?
                .iter()
                .map(|m| manifest_json(m, &tags))
                .collect();
            Ok(answer(
                StatusCode::OK,
                &json!({ "registry": ctx.login_server, "imageName": name, "manifests": list }),
            ))
        }
        (&Method::GET, ["_manifests", digest]) => {
            seen.operation = "ManifestProperties";
            token::authenticate(ctx, Some(&need(Action::Pull)), seen)?;
            let m = store
                .registry_manifest(reg, name, digest)
                .await?
                .ok_or_else(|| {
                    RegError::not_found(
                        "MANIFEST_UNKNOWN",
                        format!("manifest {digest} is not in repository {name}"),
                    )
                })?;
            let tags = tags().await?;
            Ok(answer(
                StatusCode::OK,
                &json!({ "registry": ctx.login_server, "imageName": name, "manifest": manifest_json(&m, &tags) }),
            ))
        }
        _ => Err(RegError::unsupported(format!(
            "`{method} /acr/v1/{path}` is not served: keyless serves reading and deleting repositories, tags and manifests"
        ))),
    }
}
