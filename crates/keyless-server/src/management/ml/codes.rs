//! Code assets: the snapshot of a job's `code:` folder, frozen by its checksum,
//! which the runner verifies before a job runs. A snapshot arrives by one of two
//! doors, and both end in the workspace's storage, written by an identity:
//!
//! - the keyless CLI sends the files with their checksum; keyless checks it and
//!   writes them into the workspace's blob datastore (`LocalUpload/<checksum>/…`)
//!   as the workspace's identity;
//! - azure-ai-ml asks for a pending upload: keyless creates a container in the
//!   workspace's storage and hands out a user delegation SAS for it, signed on
//!   behalf of the workspace's identity (its roles bound the SAS at use time);
//!   the SDK uploads and then PUTs the version with the `codeUri`. keyless reads
//!   what was uploaded, checks the SDK's content hash against it, and records both
//!   hashes. A lookup by hash (the SDK's first question) finds only code whose
//!   bytes were hashed by keyless.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use keyless_core::Principal;
use keyless_ml::snapshot;
use keyless_ml::uri::{DataUri, Location};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::data::storage_host;
use super::reach::{Call, Refused, Signer, blob_path, put, resolve, send};
use super::workspaces::acting_identity;
use super::{CODE_VERSIONS, VersionPath, children, not_found, open, version_json};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// The datastore snapshots go to.
pub(super) const SNAPSHOT_DATASTORE: &str = "workspaceblobstore";
/// The records of containers handed out for uploads.
const PENDING_UPLOADS: &str = "Microsoft.MachineLearningServices/workspaces/pendingUploads";
/// How long an upload SAS lives.
const UPLOAD_SAS_LIFETIME: i64 = 3600;
/// What an upload SAS allows: read, add, create, write, list; never delete.
const UPLOAD_SAS_PERMISSIONS: &str = "racwl";

#[derive(Debug, Deserialize)]
pub(crate) struct NamePath {
    sub: String,
    rg: String,
    ws: String,
    name: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    hash: Option<String>,
    #[serde(rename = "hashVersion")]
    hash_version: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InlineFile {
    path: String,
    content: String,
}

pub(super) fn version_id(ws: &Resource, name: &str, version: &str) -> String {
    format!("{}/codes/{name}/versions/{version}", ws.id)
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

/// The files of a snapshot at `at`: the blobs below `at.path/`, named relative
/// to it, or the one blob `at.path` when the snapshot is a single file.
pub(super) async fn snapshot_files(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    at: &Location,
) -> Result<Result<Vec<(String, Bytes)>, Refused>, MgmtError> {
    let folder = match at.path.trim_end_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let names = match super::reach::list(state, signer, acting, at, &folder).await? {
        Ok(names) => names,
        Err(refused) => return Ok(Err(refused)),
    };
    let mut wanted: Vec<(String, String)> = names
        .into_iter()
        .map(|(name, _)| {
            let rel = name.strip_prefix(&folder).unwrap_or(&name).to_owned();
            (name, rel)
        })
        .collect();
    if wanted.is_empty() && !folder.is_empty() {
        let file = folder.trim_end_matches('/');
        let rel = file.rsplit('/').next().unwrap_or(file).to_owned();
        wanted.push((file.to_owned(), rel));
    }
    let mut files = Vec::with_capacity(wanted.len());
    for (name, rel) in wanted {
        match super::reach::get(state, signer, acting, at, &name).await? {
            Ok(bytes) => files.push((rel, bytes)),
            Err((StatusCode::NOT_FOUND, _)) if files.is_empty() => return Ok(Ok(Vec::new())),
            Err(refused) => return Ok(Err(refused)),
        }
    }
    Ok(Ok(files))
}

/// The workspace identity, as a signer and with its tokens (tagged with `job`
/// when a job's runner acts, for the storage log).
pub(super) async fn workspace_identity(
    state: &SharedState,
    ws: &Resource,
    job: Option<&str>,
) -> Result<(Principal, Signer, Acting), MgmtError> {
    let actor = acting_identity(state, ws).await?;
    let acting = Acting::for_job(state, actor.clone(), Service::Storage, job)
        .await?
        .trusted_service();
    let signer = Signer::Bearer(actor.clone(), "WorkspaceIdentity");
    Ok((actor, signer, acting))
}

fn bad(code: &'static str, message: impl Into<String>) -> MgmtError {
    MgmtError::bad_request(code, message)
}

/// `PUT …/codes/{name}/versions/{version}`: a snapshot by either door.
pub(crate) async fn put_version(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        keyless_ml::names::asset(&p.name, "code name")?;
        keyless_ml::names::asset(&p.version, "code version")?;
        let (caller, ws) = p.open(&state, &headers, "codes", "Microsoft.MachineLearningServices/workspaces/codes/versions/write").await?;
        let props = body
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("InvalidRequestContent", "the code version needs `properties`"))?;
        let stored = if props.contains_key("files") {
            inline_snapshot(&state, &ws, props).await?
        } else if props.contains_key("codeUri") {
            uploaded_snapshot(&state, &ws, props).await?
        } else {
            return Err(bad(
                "InvalidRequestContent",
                "the code version needs `properties.codeUri` (a location from startPendingUpload) or `properties.files`",
            ));
        };
        let id = version_id(&ws, &p.name, &p.version);
        if let Some(existing) = state.store.resource(&id).await? {
            let same = existing.body.pointer("/properties/checksum")
                == stored.get("checksum");
            if same {
                return Ok((StatusCode::OK, version_json(CODE_VERSIONS, &existing)));
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
        let resource = Resource {
            id: id.clone(),
            subscription_id: ws.subscription_id.clone(),
            resource_group: ws.resource_group.clone(),
            kind: CODE_VERSIONS.into(),
            name: format!("{}/{}/{}", ws.name, p.name, p.version),
            location: ws.location.clone(),
            body: json!({ "version": p.version, "properties": stored }),
            created_at: state.now(),
        };
        state.store.resource_put(&resource).await?;
        tracing::info!(actor = %caller.principal.object_id, code = %id, "code snapshot stored");
        Ok((StatusCode::CREATED, version_json(CODE_VERSIONS, &resource)))
    })
    .await
}

/// A snapshot's two hashes: keyless's checksum and azure-ai-ml's content hash,
/// each computed once.
struct Hashes {
    checksum: String,
    content: String,
}

impl Hashes {
    fn of(files: &[(String, Bytes)]) -> Result<Self, MgmtError> {
        let entries = || files.iter().map(|(p, b)| (p.as_str(), b.as_ref()));
        Ok(Self {
            checksum: snapshot::checksum(entries())?,
            content: snapshot::content_hash(entries()),
        })
    }
}

/// The properties every stored version carries: both hashes, the file count and
/// the size, beside what the caller sent.
fn recorded(mut props: Map<String, Value>, files: &[(String, Bytes)], hashes: Hashes) -> Value {
    let mut inner = props
        .remove("properties")
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    inner.insert("hash_sha256".into(), hashes.content.into());
    inner.insert("hash_version".into(), snapshot::CONTENT_HASH_VERSION.into());
    props.insert("properties".into(), Value::Object(inner));
    props.insert("checksum".into(), hashes.checksum.into());
    props.insert("fileCount".into(), files.len().into());
    props.insert(
        "size".into(),
        files.iter().map(|(_, b)| b.len()).sum::<usize>().into(),
    );
    Value::Object(props)
}

/// The CLI's door: the files are in the body with their checksum.
async fn inline_snapshot(
    state: &SharedState,
    ws: &Resource,
    props: &Map<String, Value>,
) -> Result<Value, MgmtError> {
    let inline: Vec<InlineFile> =
        serde_json::from_value(props.get("files").cloned().unwrap_or_default())
            .map_err(|e| bad("InvalidRequestContent", format!("`properties.files`: {e}")))?;
    let mut files = Vec::with_capacity(inline.len());
    for f in &inline {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&f.content)
            .map_err(|_| {
                bad(
                    "InvalidCodeSnapshot",
                    format!("the content of `{}` is not base64", f.path),
                )
            })?;
        files.push((f.path.clone(), Bytes::from(bytes)));
    }
    let hashes = Hashes::of(&files)?;
    let computed = &hashes.checksum;
    let sent = props
        .get("checksum")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if computed != sent {
        return Err(bad(
            "CodeChecksumMismatch",
            format!(
                "the snapshot's files hash to {computed}, not to the checksum sent ({sent}); the folder changed while it was read — submit again"
            ),
        ));
    }
    let hex = computed.trim_start_matches("sha256:");
    let folder = format!("LocalUpload/{hex}/");
    let uri = format!("azureml://datastores/{SNAPSHOT_DATASTORE}/paths/{folder}");
    let target = resolve(state, ws, &uri).await?;
    let (_, signer, acting) = workspace_identity(state, ws, None).await?;
    for (path, bytes) in &files {
        let blob = format!("{}{path}", target.location.path);
        if let Err((status, why)) = put(
            state,
            &signer,
            Some(&acting),
            &target.location,
            &blob,
            bytes.to_vec(),
        )
        .await?
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
    let mut kept = Map::new();
    kept.insert("codeUri".into(), uri.into());
    if let Some(d) = props.get("description") {
        kept.insert("description".into(), d.clone());
    }
    Ok(recorded(kept, &files, hashes))
}

/// The SDK's door: the files were uploaded to a container keyless handed out.
async fn uploaded_snapshot(
    state: &SharedState,
    ws: &Resource,
    props: &Map<String, Value>,
) -> Result<Value, MgmtError> {
    let uri = props
        .get("codeUri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let host = storage_host(state);
    let location = match DataUri::parse(uri, &[host.as_str()]) {
        Ok(DataUri::Storage(location)) => location,
        _ => {
            return Err(bad(
                "InvalidCodeUri",
                format!(
                    "codeUri `{uri}` is not a storage location keyless handed out; ask for one with startPendingUpload"
                ),
            ));
        }
    };
    let pending = state
        .store
        .resource(&pending_id(ws, &location.container))
        .await?
        .filter(|r| r.kind == PENDING_UPLOADS)
        .filter(|r| {
            r.body.get("account").and_then(Value::as_str) == Some(location.account.as_str())
        });
    if pending.is_none() {
        return Err(bad(
            "InvalidCodeUri",
            format!(
                "codeUri `{uri}` is not in a container that startPendingUpload handed out for workspace {}",
                ws.name
            ),
        ));
    }
    let (_, signer, acting) = workspace_identity(state, ws, None).await?;
    let files = snapshot_files(state, &signer, Some(&acting), &location)
        .await?
        .map_err(|(status, why)| {
            MgmtError::new(
                StatusCode::FORBIDDEN,
                "CodeSnapshotUnreadable",
                format!("the workspace identity could not read {uri} ({status}): {why}"),
            )
        })?;
    if files.is_empty() {
        return Err(bad(
            "CodeSnapshotEmpty",
            format!("nothing was uploaded at {uri}: upload the files, then create the version"),
        ));
    }
    let claimed = props
        .get("properties")
        .and_then(|p| p.get("hash_sha256"))
        .and_then(Value::as_str);
    let hashes = Hashes::of(&files)?;
    let actual = &hashes.content;
    if let Some(claimed) = claimed
        && !claimed.eq_ignore_ascii_case(actual)
    {
        return Err(bad(
            "CodeHashMismatch",
            format!(
                "the files at {uri} hash to {actual}, not to the hash_sha256 sent ({claimed}): the upload is incomplete or was changed"
            ),
        ));
    }
    let mut kept = Map::new();
    for key in [
        "codeUri",
        "isAnonymous",
        "description",
        "tags",
        "properties",
    ] {
        if let Some(v) = props.get(key) {
            kept.insert(key.to_owned(), v.clone());
        }
    }
    Ok(recorded(kept, &files, hashes))
}

pub(crate) async fn show_version(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "codes",
                "Microsoft.MachineLearningServices/workspaces/codes/versions/read",
            )
            .await?;
        let r = load_by_id(&state, &ws, &version_id(&ws, &p.name, &p.version)).await?;
        Ok((StatusCode::OK, version_json(CODE_VERSIONS, &r)))
    })
    .await
}

/// `GET …/codes/{name}/versions[?hash=&hashVersion=]`: the versions of a code
/// asset, or, with `hash`, every version in the workspace with that content
/// hash, whatever its name (the SDK asks under a fresh random name).
pub(crate) async fn list_versions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<NamePath>,
    Query(q): Query<ListQuery>,
) -> Response {
    respond(async {
        ApiVersion {
            api_version: q.api_version.clone(),
        }
        .require()?;
        let (_, ws) = open(
            &state,
            &headers,
            (&p.sub, &p.rg, &p.ws),
            &format!("codes/{}", p.name),
            "Microsoft.MachineLearningServices/workspaces/codes/versions/read",
        )
        .await?;
        let versions = children(&state, &ws, CODE_VERSIONS).await?;
        let prefix = format!("{}/codes/{}/versions/", ws.id, p.name).to_ascii_lowercase();
        let hash_version = q
            .hash_version
            .as_deref()
            .unwrap_or(snapshot::CONTENT_HASH_VERSION);
        let mut found: Vec<&Resource> = versions
            .iter()
            .filter(|r| match &q.hash {
                Some(hash) => {
                    let inner = r.body.pointer("/properties/properties");
                    let field = |k: &str| inner.and_then(|i| i.get(k)).and_then(Value::as_str);
                    field("hash_sha256").is_some_and(|h| h.eq_ignore_ascii_case(hash))
                        && field("hash_version") == Some(hash_version)
                }
                None => r.id.to_ascii_lowercase().starts_with(&prefix),
            })
            .collect();
        found.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        let value: Vec<Value> = found
            .into_iter()
            .map(|r| version_json(CODE_VERSIONS, r))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

fn pending_id(ws: &Resource, container: &str) -> String {
    format!("{}/pendingUploads/{container}", ws.id)
}

/// `POST …/codes/{name}/versions/{version}/startPendingUpload`: a fresh container
/// in the workspace's storage and a SAS to upload into it.
pub(crate) async fn start_pending_upload(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        let (caller, ws) = p.open(&state, &headers, "codes", "Microsoft.MachineLearningServices/workspaces/codes/versions/write").await?;
        match body.get("pendingUploadType").and_then(Value::as_str) {
            None | Some("TemporaryBlobReference") => {}
            Some(other) => {
                return Err(bad(
                    "UnsupportedPendingUploadType",
                    format!("pendingUploadType `{other}` is not supported; keyless hands out TemporaryBlobReference"),
                ));
            }
        }
        let store = resolve(
            &state,
            &ws,
            &format!("azureml://datastores/{SNAPSHOT_DATASTORE}/paths/"),
        )
        .await?;
        let account_name = store.location.account.clone();
        let container = format!("code-{}", uuid::Uuid::new_v4().simple());
        let (actor, signer, acting) = workspace_identity(&state, &ws, None).await?;
        let path = blob_path(&account_name, &container, "");
        let (response, bytes) = send(
            &state,
            &signer,
            Some(&acting),
            &account_name,
            Call {
                method: Method::PUT,
                path: &path,
                query: &[("restype", "container")],
                headers: &[],
                body: Vec::new(),
            },
        )
        .await?;
        if !response.status().is_success() {
            return Err(MgmtError::new(
                StatusCode::FORBIDDEN,
                "CodeUploadRefused",
                format!(
                    "the workspace identity could not create an upload container in {account_name} ({}): {}",
                    response.status(),
                    crate::internal::refusal(&response, &bytes)
                ),
            ));
        }
        let account = state.account(&account_name).await?.ok_or_else(|| {
            keyless_core::Error::internal(format!("storage account {account_name} vanished"))
        })?;
        let keys = state.account_keys(&account)?;
        let [key1, _] = &*keys;
        let now = state.now();
        let oid = actor.object_id.to_string();
        let tid = actor.tenant_id.to_string();
        let sas = crate::storage::sas::sign_container_delegation(
            key1,
            crate::storage::sas::ContainerGrant {
                account: &account_name,
                container: &container,
                oid: &oid,
                tid: &tid,
                permissions: UPLOAD_SAS_PERMISSIONS,
                start: now - 300,
                expiry: now + UPLOAD_SAS_LIFETIME,
            },
        );
        let record = Resource {
            id: pending_id(&ws, &container),
            subscription_id: ws.subscription_id.clone(),
            resource_group: ws.resource_group.clone(),
            kind: PENDING_UPLOADS.into(),
            name: format!("{}/{container}", ws.name),
            location: ws.location.clone(),
            body: json!({
                "account": account_name,
                "container": container,
                "code": format!("{}/{}", p.name, p.version),
                "createdBy": caller.principal.object_id.to_string(),
            }),
            created_at: now,
        };
        state.store.resource_put(&record).await?;
        let blob_uri = format!("{}{path}", state.urls.storage.trim_end_matches('/'));
        tracing::info!(actor = %caller.principal.object_id, container = %container, "code upload container handed out");
        Ok((
            StatusCode::OK,
            json!({
                "blobReferenceForConsumption": {
                    "blobUri": blob_uri,
                    "storageAccountArmId": account.id,
                    "credential": {
                        "credentialType": "SAS",
                        "sasUri": format!("{blob_uri}?{sas}"),
                    },
                },
                "pendingUploadId": container,
                "pendingUploadType": "TemporaryBlobReference",
            }),
        ))
    })
    .await
}
