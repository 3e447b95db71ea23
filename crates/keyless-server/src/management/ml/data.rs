//! Data assets: named, versioned pointers at `uri_file` or `uri_folder` data.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_ml::uri::DataUri;
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::{DATA_VERSIONS, VersionPath, children, load_version, open, version_json};
use crate::state::SharedState;

/// The `host[:port]` of keyless's own storage endpoint, whose URLs are path-style.
pub(super) fn storage_host(state: &SharedState) -> String {
    state
        .urls
        .storage
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

pub(crate) async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = open(&state, &headers, (&p.sub, &p.rg, &p.ws), "data", "Microsoft.MachineLearningServices/workspaces/data/write").await?;
        keyless_ml::names::asset(&p.name, "data asset name")?;
        keyless_ml::names::asset(&p.version, "data asset version")?;
        let props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
        let kind = props.get("dataType").and_then(Value::as_str).unwrap_or("uri_folder");
        if !["uri_file", "uri_folder"].contains(&kind) {
            return Err(MgmtError::bad_request("UnsupportedDataType", format!("data type '{kind}' is not one keyless stores: uri_file or uri_folder")));
        }
        let uri = props.get("dataUri").and_then(Value::as_str).ok_or_else(|| MgmtError::bad_request("MissingDataUri", "a data version needs properties.dataUri"))?;
        let host = storage_host(&state);
        match DataUri::parse(uri, &[host.as_str()])? {
            DataUri::Datastore { workspace: named, datastore, .. } => {
                if let Some((s, g, w)) = named
                    && !(s.eq_ignore_ascii_case(&p.sub) && g.eq_ignore_ascii_case(&p.rg) && w.eq_ignore_ascii_case(&p.ws))
                {
                    return Err(MgmtError::bad_request("DatastoreInOtherWorkspace", format!("'{uri}' names workspace {w}; a data asset points at datastores of its own workspace")));
                }
                super::datastores::load(&state, &ws, &datastore).await?;
            }
            DataUri::Asset { .. } => {
                return Err(MgmtError::bad_request("InvalidDataUri", "a data asset cannot point at another data asset"));
            }
            DataUri::Storage(_) => {}
        }
        let id = format!("{}/data/{}/versions/{}", ws.id, p.name, p.version);
        let mut stored = json!({ "dataType": kind, "dataUri": uri });
        for key in ["description", "tags", "properties"] {
            if let Some(v) = props.get(key) {
                crate::http::set(&mut stored, key, v.clone());
            }
        }
        let existing = state.store.resource(&id).await?;
        if let Some(e) = &existing {
            let same = |k: &str| e.body.pointer(&format!("/properties/{k}")) == stored.get(k);
            if !same("dataUri") || !same("dataType") {
                return Err(MgmtError::new(StatusCode::CONFLICT, "DataVersionImmutable", format!("data asset {}:{} exists with another path or type; versions are immutable, create a new version", p.name, p.version)));
            }
        }
        let resource = Resource {
            id,
            subscription_id: ws.subscription_id.clone(),
            resource_group: ws.resource_group.clone(),
            kind: DATA_VERSIONS.into(),
            name: p.name.clone(),
            location: ws.location.clone(),
            body: json!({ "version": p.version, "properties": stored }),
            created_at: existing.as_ref().map_or_else(|| state.now(), |r| r.created_at),
        };
        state.store.resource_put(&resource).await?;
        Ok((if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED }, version_json(DATA_VERSIONS, &resource)))
    })
    .await
}

pub(crate) async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = open(
            &state,
            &headers,
            (&p.sub, &p.rg, &p.ws),
            "data",
            "Microsoft.MachineLearningServices/workspaces/data/read",
        )
        .await?;
        let r = load_version(
            &state,
            &ws,
            &p,
            ("data", DATA_VERSIONS, "data asset version"),
        )
        .await?;
        Ok((StatusCode::OK, version_json(DATA_VERSIONS, &r)))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct Named {
    sub: String,
    rg: String,
    ws: String,
    name: String,
}

/// `GET /data/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/
/// Microsoft.MachineLearningServices/workspaces/{ws}/dataversion/{name}/versions/{version}`:
/// a data asset version as the data readers ask for it, its URI in the long
/// `azureml://subscriptions/…/datastores/…/paths/…` form they accept.
pub(crate) async fn show_v1(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
) -> Response {
    respond(async {
        let (_, ws) = open(
            &state,
            &headers,
            (&p.sub, &p.rg, &p.ws),
            "data",
            "Microsoft.MachineLearningServices/workspaces/data/read",
        )
        .await?;
        let r = load_version(
            &state,
            &ws,
            &p,
            ("data", DATA_VERSIONS, "data asset version"),
        )
        .await?;
        let props = r
            .body
            .get("properties")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let uri = props
            .get("dataUri")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let long = match uri.strip_prefix("azureml://datastores/") {
            Some(rest) => format!(
                "azureml://subscriptions/{}/resourcegroups/{}/workspaces/{}/datastores/{rest}",
                ws.subscription_id, ws.resource_group, ws.name
            ),
            None => uri.to_owned(),
        };
        Ok((
            StatusCode::OK,
            json!({ "dataVersion": {
                "dataContainerName": p.name,
                "versionId": p.version,
                "dataType": props.get("dataType").cloned().unwrap_or(Value::Null),
                "dataUri": long,
                "description": props.get("description").cloned().unwrap_or(Value::Null),
                "tags": props.get("tags").cloned().unwrap_or_else(|| json!({})),
            }}),
        ))
    })
    .await
}

pub(crate) async fn list_versions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Named>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = open(
            &state,
            &headers,
            (&p.sub, &p.rg, &p.ws),
            "data",
            "Microsoft.MachineLearningServices/workspaces/data/read",
        )
        .await?;
        let value: Vec<Value> = children(&state, &ws, DATA_VERSIONS)
            .await?
            .iter()
            .filter(|r| r.name == p.name)
            .map(|r| version_json(DATA_VERSIONS, r))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

pub(crate) async fn list_names(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = open(&state, &headers, (&sub, &rg, &ws), "data", "Microsoft.MachineLearningServices/workspaces/data/read").await?;
        let mut names: Vec<String> = children(&state, &ws, DATA_VERSIONS).await?.into_iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        let value: Vec<Value> = names
            .iter()
            .map(|n| json!({ "id": format!("{}/data/{n}", ws.id), "name": n, "type": "Microsoft.MachineLearningServices/workspaces/data" }))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

pub(crate) async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = open(
            &state,
            &headers,
            (&p.sub, &p.rg, &p.ws),
            "data",
            "Microsoft.MachineLearningServices/workspaces/data/delete",
        )
        .await?;
        let existed = state
            .store
            .resource_delete(&format!("{}/data/{}/versions/{}", ws.id, p.name, p.version))
            .await?;
        Ok((
            if existed {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            },
            Value::Null,
        ))
    })
    .await
}
