//! Code assets: the snapshot of a job's `code:` folder. The caller sends the
//! files with their checksum; keyless checks the checksum, writes the files into
//! the workspace's blob datastore (`LocalUpload/<checksum>/…`) as the workspace's
//! identity, and records the checksum, which the runner verifies before a job
//! runs.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_ml::snapshot;
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::reach::{Signer, put, resolve};
use super::workspaces::acting_identity;
use super::{CODE_VERSIONS, not_found, open};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// The datastore snapshots go to.
pub(super) const SNAPSHOT_DATASTORE: &str = "workspaceblobstore";

#[derive(Debug, Deserialize)]
pub(crate) struct VersionPath {
    sub: String,
    rg: String,
    ws: String,
    name: String,
    version: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CodeBody {
    properties: CodeProperties,
}

#[derive(Debug, Deserialize)]
struct CodeProperties {
    checksum: String,
    files: Vec<CodeFile>,
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CodeFile {
    path: String,
    content: String,
}

pub(super) fn version_id(ws: &Resource, name: &str, version: &str) -> String {
    format!("{}/codes/{name}/versions/{version}", ws.id)
}

fn json_of(r: &Resource) -> Value {
    json!({
        "id": r.id,
        "name": r.body.get("version").cloned().unwrap_or(Value::Null),
        "type": CODE_VERSIONS,
        "properties": r.body.get("properties").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Loads a code version by its id (as a job names it) within a workspace.
pub(super) async fn load_by_id(
    state: &SharedState,
    ws: &Resource,
    id: &str,
) -> Result<Resource, MgmtError> {
    let prefix = format!("{}/codes/", ws.id.to_ascii_lowercase());
    let found = if id.to_ascii_lowercase().starts_with(&prefix) {
        state.store.resource(id).await?
    } else {
        None
    };
    found
        .filter(|r| r.kind == CODE_VERSIONS)
        .ok_or_else(|| not_found("code version", id, &ws.name))
}

pub(crate) async fn put_version(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<CodeBody>,
) -> Response {
    respond(async {
        v.require()?;
        keyless_ml::names::asset(&p.name, "code name")?;
        keyless_ml::names::asset(&p.version, "code version")?;
        let (caller, ws) = open(
            &state,
            &headers,
            (&p.sub, &p.rg, &p.ws),
            &format!("codes/{}/versions/{}", p.name, p.version),
            "Microsoft.MachineLearningServices/workspaces/codes/versions/write",
        )
        .await?;
        let props = body.properties;
        let mut files = Vec::with_capacity(props.files.len());
        for f in &props.files {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&f.content)
                .map_err(|_| {
                    MgmtError::bad_request(
                        "InvalidCodeSnapshot",
                        format!("the content of `{}` is not base64", f.path),
                    )
                })?;
            files.push((f.path.clone(), bytes));
        }
        let computed =
            snapshot::checksum(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))?;
        if computed != props.checksum {
            return Err(MgmtError::bad_request(
                "CodeChecksumMismatch",
                format!(
                    "the snapshot's files hash to {computed}, not to the checksum sent ({}); the folder changed while it was read — submit again",
                    props.checksum
                ),
            ));
        }
        let id = version_id(&ws, &p.name, &p.version);
        if let Some(existing) = state.store.resource(&id).await? {
            let same = existing.body.pointer("/properties/checksum").and_then(Value::as_str)
                == Some(computed.as_str());
            if same {
                return Ok((StatusCode::OK, json_of(&existing)));
            }
            return Err(MgmtError::new(
                StatusCode::CONFLICT,
                "CodeVersionExists",
                format!(
                    "code {} version {} exists with other content; code versions cannot change — use a new version",
                    p.name, p.version
                ),
            ));
        }
        let hex = computed.trim_start_matches("sha256:");
        let folder = format!("LocalUpload/{hex}/");
        let uri = format!("azureml://datastores/{SNAPSHOT_DATASTORE}/paths/{folder}");
        let target = resolve(&state, &ws, &uri).await?;
        let actor = acting_identity(&state, &ws).await?;
        let acting = Acting::as_principal(&state, actor.clone(), Service::Storage).await?;
        let signer = Signer::Bearer(actor, "WorkspaceIdentity");
        let size: usize = files.iter().map(|(_, b)| b.len()).sum();
        let count = files.len();
        for (path, bytes) in files {
            let blob = format!("{}{path}", target.location.path);
            if let Err((status, why)) =
                put(&state, &signer, Some(&acting), &target.location, &blob, bytes).await?
            {
                return Err(MgmtError::new(
                    StatusCode::FORBIDDEN,
                    "CodeUploadRefused",
                    format!(
                        "the workspace identity could not write the snapshot to datastore {SNAPSHOT_DATASTORE} ({status}): {why}"
                    ),
                ));
            }
        }
        let mut properties = json!({
            "codeUri": uri,
            "checksum": computed,
            "fileCount": count,
            "size": size,
        });
        if let Some(d) = props.description {
            crate::http::set(&mut properties, "description", d.into());
        }
        let resource = Resource {
            id: id.clone(),
            subscription_id: ws.subscription_id.clone(),
            resource_group: ws.resource_group.clone(),
            kind: CODE_VERSIONS.into(),
            name: format!("{}/{}/{}", ws.name, p.name, p.version),
            location: ws.location.clone(),
            body: json!({ "version": p.version, "properties": properties }),
            created_at: state.now(),
        };
        state.store.resource_put(&resource).await?;
        tracing::info!(actor = %caller.principal.object_id, code = %id, "code snapshot stored");
        Ok((StatusCode::CREATED, json_of(&resource)))
    })
    .await
}

pub(crate) async fn show_version(
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
            &format!("codes/{}/versions/{}", p.name, p.version),
            "Microsoft.MachineLearningServices/workspaces/codes/versions/read",
        )
        .await?;
        let r = load_by_id(&state, &ws, &version_id(&ws, &p.name, &p.version)).await?;
        Ok((StatusCode::OK, json_of(&r)))
    })
    .await
}
