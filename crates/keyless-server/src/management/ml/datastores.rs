//! Datastores. A stored credential goes sealed into the workspace's key vault —
//! written there by the workspace's identity through the vault listener — and the
//! datastore keeps only the secret's name. `show` and `list` never return it;
//! `listSecrets` returns it to callers holding
//! `Microsoft.MachineLearningServices/workspaces/datastores/listsecrets/action`,
//! which Reader does not (keyless's stance where Azure's documents disagree).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use keyless_ml::datastore::{Datastore, Secret};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::workspaces::{acting_identity, vault_name};
use super::{Child, DATASTORES, children, not_found, open};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

const SYSTEM_DATASTORES: [&str; 2] = ["workspaceblobstore", "workspaceartifactstore"];
const VAULT_API: &str = "api-version=7.4";

fn datastore_id(ws: &Resource, name: &str) -> String {
    format!("{}/datastores/{name}", ws.id)
}

fn json_of(r: &Resource) -> Value {
    json!({
        "id": r.id,
        "name": r.name,
        "type": DATASTORES,
        "properties": r.body.get("properties").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Loads a datastore of a workspace.
pub(super) async fn load(
    state: &SharedState,
    ws: &Resource,
    name: &str,
) -> Result<Resource, MgmtError> {
    state
        .store
        .resource(&datastore_id(ws, name))
        .await?
        .filter(|r| r.kind == DATASTORES)
        .ok_or_else(|| not_found("datastore", name, &ws.name))
}

/// The datastore a stored resource describes.
pub(super) fn parse(r: &Resource) -> Result<Datastore, MgmtError> {
    let props = r
        .body
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    Ok(Datastore::from_stored(&r.name, &props)?)
}

async fn vault_request(
    state: &SharedState,
    ws: &Resource,
    method: Method,
    secret: &str,
    body: Vec<u8>,
) -> Result<(u16, Value), MgmtError> {
    let vault = vault_name(ws).ok_or_else(|| {
        MgmtError::bad_request(
            "WorkspaceHasNoKeyVault",
            format!("workspace '{}' has no key vault for credentials", ws.name),
        )
    })?;
    let actor = acting_identity(state, ws).await?;
    let acting = Acting::as_principal(state, actor.clone(), Service::Vault)
        .await?
        .trusted_service();
    let (response, bytes) = Acting::send(
        Some(&acting),
        state,
        Service::Vault,
        method,
        &format!("/{vault}/secrets/{secret}?{VAULT_API}"),
        &[("content-type", "application/json")],
        body,
    )
    .await?;
    let status = response.status();
    if !status.is_success() {
        return Err(MgmtError::new(
            StatusCode::FORBIDDEN,
            "DatastoreCredentialVaultDenied",
            format!(
                "the workspace identity {} could not reach secret '{secret}' in key vault '{vault}' ({status}): {} (a workspace with only user-assigned identities needs Key Vault Secrets Officer for its primary identity on the vault)",
                actor.object_id,
                crate::internal::refusal(&response, &bytes)
            ),
        ));
    }
    Ok((
        status.as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Validates and stores a datastore, sealing its secret into the workspace vault.
pub(super) async fn store(
    state: &SharedState,
    ws: &Resource,
    name: &str,
    properties: &Value,
    is_default: bool,
) -> Result<Resource, MgmtError> {
    let (datastore, secret) = Datastore::from_rest(name, properties)?;
    let id = datastore_id(ws, name);
    let previous = state.store.resource(&id).await?.and_then(|r| {
        r.body
            .get("secretName")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let secret_name = match &secret {
        Some(s) => Some(write_secret(state, ws, name, s).await?),
        None => None,
    };
    if let Some(old) = previous.filter(|old| Some(old) != secret_name.as_ref()) {
        // The replaced credential leaves the vault (soft-deleted, as the vault keeps it).
        if let Err(e) = vault_request(state, ws, Method::DELETE, &old, Vec::new()).await {
            tracing::warn!(datastore = %id, "the replaced credential stays in the vault: {e:?}");
        }
    }
    let mut body = json!({ "properties": datastore.to_rest(is_default) });
    if let Some(secret_name) = secret_name {
        crate::http::set(&mut body, "secretName", secret_name.into());
    }
    let resource = Resource {
        id,
        subscription_id: ws.subscription_id.clone(),
        resource_group: ws.resource_group.clone(),
        kind: DATASTORES.into(),
        name: name.to_owned(),
        location: ws.location.clone(),
        body,
        created_at: state.now(),
    };
    state.store.resource_put(&resource).await?;
    Ok(resource)
}

async fn write_secret(
    state: &SharedState,
    ws: &Resource,
    name: &str,
    secret: &Secret,
) -> Result<String, MgmtError> {
    let stem: String = name
        .chars()
        .take(80)
        .map(|c| if c == '_' { '-' } else { c })
        .collect();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let secret_name = format!("datastore-{stem}-{}", suffix.get(..8).unwrap_or_default());
    let body = json!({ "value": secret.to_rest().to_string(), "contentType": "application/json" });
    vault_request(
        state,
        ws,
        Method::PUT,
        &secret_name,
        body.to_string().into_bytes(),
    )
    .await?;
    Ok(secret_name)
}

pub(crate) async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "datastores",
                "Microsoft.MachineLearningServices/workspaces/datastores/write",
            )
            .await?;
        if SYSTEM_DATASTORES.contains(&p.name.as_str()) {
            return Err(MgmtError::bad_request(
                "SystemDatastore",
                format!(
                    "'{}' is a system datastore of the workspace and cannot be replaced",
                    p.name
                ),
            ));
        }
        let existed = state
            .store
            .resource(&datastore_id(&ws, &p.name))
            .await?
            .is_some();
        let properties = body.get("properties").cloned().unwrap_or_else(|| json!({}));
        let r = store(&state, &ws, &p.name, &properties, false).await?;
        Ok((
            if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            json_of(&r),
        ))
    })
    .await
}

pub(crate) async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "datastores",
                "Microsoft.MachineLearningServices/workspaces/datastores/read",
            )
            .await?;
        Ok((StatusCode::OK, json_of(&load(&state, &ws, &p.name).await?)))
    })
    .await
}

pub(crate) async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = open(
            &state,
            &headers,
            (&sub, &rg, &ws),
            "datastores",
            "Microsoft.MachineLearningServices/workspaces/datastores/read",
        )
        .await?;
        let value: Vec<Value> = children(&state, &ws, DATASTORES)
            .await?
            .iter()
            .map(json_of)
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

/// A datastore's stored credential, read from the workspace's vault as the
/// workspace's identity: the REST `secrets` object.
async fn stored_secrets(
    state: &SharedState,
    ws: &Resource,
    secret: &str,
) -> Result<Value, MgmtError> {
    let (_, bundle) = vault_request(state, ws, Method::GET, secret, Vec::new()).await?;
    let value = bundle
        .get("value")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(serde_json::from_str(value)
        .map_err(|_| keyless_core::Error::internal("a stored datastore credential is not JSON"))?)
}

pub(crate) async fn list_secrets(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "datastores",
                "Microsoft.MachineLearningServices/workspaces/datastores/listsecrets/action",
            )
            .await?;
        let r = load(&state, &ws, &p.name).await?;
        let Some(secret) = r.body.get("secretName").and_then(Value::as_str) else {
            return Ok((StatusCode::OK, json!({ "secretsType": "None" })));
        };
        Ok((StatusCode::OK, stored_secrets(&state, &ws, secret).await?))
    })
    .await
}

pub(crate) async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "datastores",
                "Microsoft.MachineLearningServices/workspaces/datastores/delete",
            )
            .await?;
        if SYSTEM_DATASTORES.contains(&p.name.as_str()) {
            return Err(MgmtError::bad_request(
                "SystemDatastore",
                format!(
                    "'{}' is a system datastore of the workspace and goes only with it",
                    p.name
                ),
            ));
        }
        let Ok(r) = load(&state, &ws, &p.name).await else {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        };
        if let Some(secret) = r.body.get("secretName").and_then(Value::as_str) {
            vault_request(&state, &ws, Method::DELETE, secret, Vec::new()).await?;
        }
        state.store.resource_delete(&r.id).await?;
        Ok((StatusCode::OK, Value::Null))
    })
    .await
}

/// The endpoint suffix a reader is told: keyless's own storage suffix for a
/// datastore that names Azure's (keyless serves its accounts, never Azure's).
fn reader_endpoint(state: &SharedState, endpoint: &str) -> String {
    if endpoint.is_empty() || endpoint.eq_ignore_ascii_case("core.windows.net") {
        crate::cloud::storage_suffix(&state.urls.storage)
    } else {
        endpoint.to_owned()
    }
}

/// `GET /datastore/v1.0/subscriptions/{sub}/resourceGroups/{rg}/providers/
/// Microsoft.MachineLearningServices/workspaces/{ws}/datastores/{name}`: a
/// datastore as the data readers (azureml-dataprep's, behind azureml-fsspec,
/// mltable and the SDK's mounts) ask for it, from the discovery's `api`. A
/// credential-less datastore needs `datastores/read`; one holding a credential
/// is answered with it, so only to a caller who may list its secrets
/// (`datastores/listsecrets/action`, as `listSecrets` asks), and refused to
/// anyone else with the reason.
pub(crate) async fn show_v1(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
) -> Response {
    respond(async {
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "datastores",
                "Microsoft.MachineLearningServices/workspaces/datastores/read",
            )
            .await?;
        let r = load(&state, &ws, &p.name).await?;
        let d = parse(&r)?;
        let identity = match d.workspace_access {
            keyless_core::identity_rule::WorkspaceAccess::Off => "None",
            keyless_core::identity_rule::WorkspaceAccess::SystemAssigned => {
                "WorkspaceSystemAssignedIdentity"
            }
            keyless_core::identity_rule::WorkspaceAccess::UserAssigned => {
                "WorkspaceUserAssignedIdentity"
            }
        };
        let mut section = json!({
            "accountName": d.account,
            "containerName": d.container,
            "endpoint": reader_endpoint(&state, &d.endpoint),
            "protocol": d.protocol,
            "credentialType": d.credential.rest_name(),
            "credential": null,
            "accountKey": null,
            "sasToken": null,
            "isSas": d.credential == keyless_core::identity_rule::StoredCredential::Sas,
            "clientCredentials": null,
            "serviceDataAccessAuthIdentity": identity,
            "subscriptionId": ws.subscription_id,
            "resourceGroup": ws.resource_group,
            "blobCacheTimeout": 0,
        });
        if let Some(secret) = r.body.get("secretName").and_then(Value::as_str) {
            p.open(
                &state,
                &headers,
                "datastores",
                "Microsoft.MachineLearningServices/workspaces/datastores/listsecrets/action",
            )
            .await?;
            let secrets = stored_secrets(&state, &ws, secret).await?;
            let value = |k: &str| secrets.get(k).cloned().unwrap_or(Value::Null);
            match d.credential {
                keyless_core::identity_rule::StoredCredential::AccountKey => {
                    crate::http::set(&mut section, "credential", value("key"));
                    crate::http::set(&mut section, "accountKey", value("key"));
                }
                keyless_core::identity_rule::StoredCredential::Sas => {
                    crate::http::set(&mut section, "credential", value("sasToken"));
                    crate::http::set(&mut section, "sasToken", value("sasToken"));
                }
                _ => {
                    let mut client = d.credential_fields.clone();
                    if let Some(s) = secrets.get("clientSecret") {
                        client.insert("clientSecret".into(), s.clone());
                    }
                    crate::http::set(&mut section, "clientCredentials", Value::Object(client));
                }
            }
        }
        let body = json!({
            "name": r.name,
            "dataStoreType": d.store_type.rest_name(),
            "hasBeenValidated": true,
            "tags": r.body.pointer("/properties/tags").cloned().unwrap_or_else(|| json!({})),
            "azureStorageSection": section,
        });
        Ok((StatusCode::OK, body))
    })
    .await
}
