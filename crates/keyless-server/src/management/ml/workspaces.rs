//! Workspaces: their identities, associated storage account and key vault, and the
//! default datastores.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use keyless_core::{Principal, ResourceId};
use keyless_ml::identity::WorkspaceIdentities;
use keyless_store::Resource;

use super::super::caller::{
    Caller, authenticate, authorize, authorized, readable, subscription_of_caller,
};
use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, registries, respond, storage_accounts, vaults};
use super::{
    COMPUTES, DATA_VERSIONS, DATASTORES, WORKSPACES, children, create_system_identity,
    delete_system_identity, grant, identity_json, require_assign, roles, system_identity,
    user_assigned, workspace, workspace_id,
};
use crate::feed::Change;
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// The ARM shape of a workspace.
pub(super) async fn json_of(state: &SharedState, r: &Resource) -> Value {
    let identity = match identities(r) {
        Ok(ids) => identity_json(state, &r.id, &ids.ids)
            .await
            .unwrap_or_else(|_| json!({ "type": "None" })),
        Err(_) => json!({ "type": "None" }),
    };
    let mut props = r
        .body
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(map) = props.as_object_mut() {
        let state_now = if r.body.get(MAKING).is_some() {
            "Creating"
        } else {
            "Succeeded"
        };
        map.insert("provisioningState".into(), state_now.into());
        // Where the ML SDK finds the run history (`jobs.stream`).
        map.insert(
            "discoveryUrl".into(),
            format!("{}/discovery", state.urls.management.trim_end_matches('/')).into(),
        );
        map.insert(
            "creationTime".into(),
            jiff::Timestamp::from_second(r.created_at)
                .map(|t| t.to_string())
                .unwrap_or_default()
                .into(),
        );
    }
    json!({
        "id": r.id,
        "name": r.name,
        "type": WORKSPACES,
        "location": r.location,
        "kind": r.body.get("kind").cloned().unwrap_or_else(|| "Default".into()),
        "tags": r.body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "identity": identity,
        "properties": props,
    })
}

/// The identities a stored workspace has.
pub(super) fn identities(r: &Resource) -> Result<WorkspaceIdentities, MgmtError> {
    let primary = r
        .body
        .pointer("/properties/primaryUserAssignedIdentity")
        .and_then(Value::as_str);
    Ok(WorkspaceIdentities::from_rest(
        r.body.get("identity"),
        primary,
    )?)
}

/// The identity the workspace acts as towards its storage and vault: its
/// system-assigned identity, else its primary user-assigned identity.
pub(super) async fn acting_identity(
    state: &SharedState,
    r: &Resource,
) -> Result<Principal, MgmtError> {
    if let Some(p) = system_identity(state, &r.id).await? {
        return Ok(p);
    }
    let ids = identities(r)?;
    match ids.primary {
        Some(primary) => Ok(user_assigned(state, &primary).await?.1),
        None => Err(MgmtError::bad_request(
            "WorkspaceHasNoIdentity",
            format!("workspace '{}' has no managed identity to act with", r.name),
        )),
    }
}

/// The vault a workspace keeps its datastore secrets in.
pub(super) fn vault_name(r: &Resource) -> Option<String> {
    r.body
        .pointer("/properties/keyVault")
        .and_then(Value::as_str)
        .and_then(|id| id.rsplit('/').next())
        .map(str::to_ascii_lowercase)
}

pub(crate) async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, r) = super::open(
            &state,
            &headers,
            (&sub, &rg, &ws),
            "",
            "Microsoft.MachineLearningServices/workspaces/read",
        )
        .await?;
        Ok((StatusCode::OK, json_of(&state, &r).await))
    })
    .await
}

async fn listed(state: &SharedState, caller: &Caller, found: Vec<Resource>) -> Value {
    let mut value = Vec::new();
    for r in readable(
        state,
        caller,
        "Microsoft.MachineLearningServices/workspaces/read",
        found,
        |r| &r.id,
    ) {
        value.push(json_of(state, &r).await);
    }
    json!({ "value": value })
}

pub(crate) async fn list_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg)): Path<(String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let found = state.store.resources(&sub, &rg, WORKSPACES).await?;
        Ok((StatusCode::OK, listed(&state, &caller, found).await))
    })
    .await
}

pub(crate) async fn list_subscription(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let mut found = Vec::new();
        for g in state.store.resource_groups(&sub).await? {
            found.extend(state.store.resources(&sub, &g.name, WORKSPACES).await?);
        }
        Ok((StatusCode::OK, listed(&state, &caller, found).await))
    })
    .await
}

/// A name for an associated resource: the workspace's letters and digits and a
/// random suffix, within Azure's 24 characters.
fn associated_name(prefix: &str, ws: &str) -> String {
    let stem: String = ws
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(12)
        .collect();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{prefix}{stem}{}", suffix.get(..8).unwrap_or_default());
    name.chars().take(24).collect()
}

pub(crate) async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        keyless_ml::names::workspace(&ws)?;
        let id = workspace_id(&sub, &rg, &ws);
        let scope = ResourceId::parse(&id)?;
        let caller = authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.MachineLearningServices/workspaces/write",
            &scope,
        )
        .await?;
        if state.store.resource_group(&sub, &rg).await?.is_none() {
            return Err(MgmtError::not_found(
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            ));
        }
        let existing = state
            .store
            .resource(&id)
            .await?
            .filter(|r| r.kind == WORKSPACES);
        let props = body
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let primary = props
            .get("primaryUserAssignedIdentity")
            .and_then(Value::as_str);
        match existing {
            Some(current) => update(&state, &caller, current, &body).await,
            None => {
                let next = WorkspaceIdentities::from_rest(body.get("identity"), primary)?;
                create(
                    &state,
                    &caller,
                    New {
                        sub: &sub,
                        rg: &rg,
                        ws: &ws,
                        body: &body,
                        props,
                        ids: next,
                    },
                )
                .await
            }
        }
    })
    .await
}

struct New<'a> {
    sub: &'a str,
    rg: &'a str,
    ws: &'a str,
    body: &'a Value,
    props: Map<String, Value>,
    ids: WorkspaceIdentities,
}

async fn check_uais(
    state: &SharedState,
    caller: &Caller,
    ids: &[String],
    before: &[String],
) -> Result<(), MgmtError> {
    for id in ids {
        user_assigned(state, id).await?;
        if !before.iter().any(|b| b.eq_ignore_ascii_case(id)) {
            require_assign(state, caller, id).await?;
        }
    }
    Ok(())
}

/// Where a workspace being created says so: the server creating it, since
/// when, and what it has made so far (`storageAccount`, `keyVault`). A
/// workspace whose creation fails is undone at once; one whose server stopped
/// or was lost midway is undone by [`undo_unfinished`].
const MAKING: &str = "making";

/// Creates a workspace whole, or nothing of it: the record goes first, marked
/// as being made, and whatever fails undoes what was made.
async fn create(
    state: &SharedState,
    caller: &Caller,
    new: New<'_>,
) -> Result<(StatusCode, Value), MgmtError> {
    let id = workspace_id(new.sub, new.rg, new.ws);
    let marker = Resource {
        id: id.clone(),
        subscription_id: new.sub.to_owned(),
        resource_group: new.rg.to_owned(),
        kind: WORKSPACES.into(),
        name: new.ws.to_owned(),
        location: new
            .body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("local")
            .to_owned(),
        body: json!({
            "properties": {},
            MAKING: { "server": state.server_id, "since": state.now(), "made": {} },
        }),
        created_at: state.now(),
    };
    state.store.resource_put(&marker).await?;
    match make(state, caller, new).await {
        Ok(made) => Ok(made),
        Err(e) => {
            undo_creation(state, &id).await;
            Err(e)
        }
    }
}

/// Records, in the workspace being made, a resource made for it.
async fn record_made(
    state: &SharedState,
    id: &str,
    kind: &str,
    name: &str,
) -> Result<(), MgmtError> {
    state
        .store
        .resource_update(id, &mut |body| match body
            .pointer_mut("/making/made")
            .and_then(Value::as_object_mut)
        {
            Some(made) => {
                made.insert(kind.to_owned(), name.into());
                true
            }
            None => false,
        })
        .await?;
    Ok(())
}

/// Removes a workspace whose creation did not finish, with everything made for
/// it: its datastores, its identity (and with it the identity's role
/// assignments), the storage account and key vault made for it (and the role
/// assignments on them). What cannot be removed is logged.
pub(super) async fn undo_creation(state: &SharedState, id: &str) {
    let ws = match state.store.resource(id).await {
        Ok(Some(ws)) => ws,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(workspace = %id, error = %e, "a half-made workspace could not be read to undo it");
            return;
        }
    };
    let Some(making) = ws.body.get(MAKING) else {
        return;
    };
    let made = |kind: &str| {
        making
            .pointer(&format!("/made/{kind}"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut failures: Vec<String> = Vec::new();
    let mut gone: Vec<String> = children(state, &ws, DATASTORES)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    if let Err(e) = delete_system_identity(state, id).await {
        failures.push(format!("its identity: {}", e.message()));
    }
    let mut scopes = Vec::new();
    if let Some(name) = made("storageAccount") {
        match state.store.account(&name).await {
            Ok(Some(account)) => {
                scopes.push(account.id.clone());
                match state.store.account_delete(&name).await {
                    Ok(files) => {
                        if let Some(files) = files {
                            state.blobs.remove(&files).await;
                        }
                        let _ = state.changed(Change::Account(name)).await;
                    }
                    Err(e) => failures.push(format!("storage account {name}: {e}")),
                }
            }
            Ok(None) => {}
            Err(e) => failures.push(format!("storage account {name}: {e}")),
        }
    }
    if let Some(name) = made("keyVault") {
        match state.store.vault(&name).await {
            Ok(Some(vault)) => {
                scopes.push(vault.id.clone());
                if let Err(e) = state.store.vault_purge(&name).await {
                    failures.push(format!("key vault {name}: {e}"));
                }
            }
            Ok(None) => {}
            Err(e) => failures.push(format!("key vault {name}: {e}")),
        }
    }
    if let Some(name) = made("containerRegistry") {
        match state.store.registry(&name).await {
            Ok(Some(registry)) => {
                scopes.push(registry.id.clone());
                match state.store.registry_delete(&name).await {
                    Ok(files) => state.blobs.remove(&files.unwrap_or_default()).await,
                    Err(e) => failures.push(format!("container registry {name}: {e}")),
                }
            }
            Ok(None) => {}
            Err(e) => failures.push(format!("container registry {name}: {e}")),
        }
    }
    if !scopes.is_empty() {
        let tenant = ws_tenant(state, &ws).await;
        for assignment in tenant.iter().flat_map(|t| t.iter()) {
            let lower = assignment.scope.to_ascii_lowercase();
            if scopes.iter().any(|s| {
                let s = s.to_ascii_lowercase();
                lower == s || lower.starts_with(&format!("{s}/"))
            }) && let Err(e) = state.store.role_assignment_delete(&assignment.name).await
            {
                failures.push(format!("role assignment {}: {e}", assignment.name));
            }
        }
    }
    gone.push(ws.id.clone());
    if let Err(e) = state.store.resources_delete(&gone).await {
        failures.push(format!("its resources: {e}"));
    }
    let _ = state.changed(Change::Rbac).await;
    if failures.is_empty() {
        tracing::info!(workspace = %id, "a workspace whose creation did not finish was removed with what was made for it");
    } else {
        tracing::warn!(workspace = %id, failures = %failures.join("; "), "a half-made workspace could not be removed whole");
    }
}

/// The role assignments of the tenant that owns the workspace's subscription.
async fn ws_tenant(
    state: &SharedState,
    ws: &Resource,
) -> Option<Vec<keyless_store::StoredRoleAssignment>> {
    let sub = state.store.subscription(&ws.subscription_id).await.ok()??;
    state.store.role_assignments(sub.tenant_id).await.ok()
}

/// The workspaces being made, with the server making each.
pub(super) async fn unfinished_creations(
    state: &SharedState,
) -> Result<Vec<(String, String)>, keyless_core::Error> {
    let mut out = Vec::new();
    for sub in state.store.subscriptions_all().await? {
        let sub_id = sub.id.to_string();
        for group in state.store.resource_groups(&sub_id).await? {
            for ws in state
                .store
                .resources(&sub_id, &group.name, WORKSPACES)
                .await?
            {
                if let Some(making) = ws.body.get(MAKING) {
                    let server = making
                        .get("server")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    out.push((ws.id.clone(), server.to_owned()));
                }
            }
        }
    }
    Ok(out)
}

async fn make(
    state: &SharedState,
    caller: &Caller,
    new: New<'_>,
) -> Result<(StatusCode, Value), MgmtError> {
    let New {
        sub,
        rg,
        ws,
        body,
        mut props,
        ids,
    } = new;
    let tenant = caller.principal.tenant_id;
    check_uais(state, caller, &ids.ids.user_assigned, &[]).await?;
    let id = workspace_id(sub, rg, ws);
    let location = body
        .get("location")
        .and_then(Value::as_str)
        .unwrap_or("local")
        .to_owned();
    let group = ResourceId::subscription(sub).child("resourceGroups", rg)?;

    let mode = props
        .get("systemDatastoresAuthMode")
        .and_then(Value::as_str)
        .unwrap_or("AccessKey")
        .to_owned();
    if !["AccessKey", "Identity"].contains(&mode.as_str()) {
        return Err(MgmtError::bad_request(
            "InvalidSystemDatastoresAuthMode",
            format!(
                "systemDatastoresAuthMode '{mode}' is not supported: use AccessKey or Identity"
            ),
        ));
    }
    props.insert("systemDatastoresAuthMode".into(), mode.clone().into());
    // The associated storage account and key vault: given, or created here.
    // What keyless creates for the workspace, and the role its identity needs there.
    let mut made: Vec<(String, &str)> = Vec::new();
    let account = match props.get("storageAccount").and_then(Value::as_str) {
        Some(given) => {
            let name = given.rsplit('/').next().unwrap_or_default();
            let account = state.store.account(name).await?.ok_or_else(|| {
                MgmtError::bad_request(
                    "StorageAccountNotFound",
                    format!("the storage account '{given}' does not exist"),
                )
            })?;
            authorize(
                state,
                caller,
                "Microsoft.Storage/storageAccounts/read",
                &ResourceId::parse(&account.id)?,
            )
            .await?;
            account
        }
        None => {
            authorize(
                state,
                caller,
                "Microsoft.Storage/storageAccounts/write",
                &group,
            )
            .await?;
            let name = associated_name("st", ws);
            let created = storage_accounts::create(
                state,
                storage_accounts::NewAccount {
                    tenant,
                    subscription: sub,
                    group: rg,
                    name: &name,
                    location: Some(&location),
                    hns: false,
                    allow_shared_key: true,
                    body: json!({ "tags": { "createdBy": id } }),
                },
            )
            .await?;
            record_made(state, &id, "storageAccount", &created.name).await?;
            props.insert("storageAccount".into(), created.id.clone().into());
            made.push((created.id.clone(), roles::STORAGE_BLOB_DATA_CONTRIBUTOR));
            created
        }
    };
    let vault = match props.get("keyVault").and_then(Value::as_str) {
        Some(given) => {
            let name = given
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let vault = state
                .store
                .vault(&name)
                .await?
                .filter(|v| v.deleted_at.is_none())
                .ok_or_else(|| {
                    MgmtError::bad_request(
                        "KeyVaultNotFound",
                        format!("the key vault '{given}' does not exist"),
                    )
                })?;
            authorize(
                state,
                caller,
                "Microsoft.KeyVault/vaults/read",
                &ResourceId::parse(&vault.id)?,
            )
            .await?;
            vault
        }
        None => {
            authorize(state, caller, "Microsoft.KeyVault/vaults/write", &group).await?;
            let name = associated_name("kv", ws);
            let created = vaults::create(
                state,
                tenant,
                sub,
                rg,
                &name,
                json!({ "properties": {}, "tags": { "createdBy": id } }),
                location.clone(),
            )
            .await?;
            record_made(state, &id, "keyVault", &created.name).await?;
            props.insert("keyVault".into(), created.id.clone().into());
            made.push((created.id.clone(), roles::KEY_VAULT_SECRETS_OFFICER));
            created
        }
    };
    // The container registry: given (it must exist, and the caller see it), or
    // made here with the admin user on, as Azure ML makes one; the document's
    // `az acr update --admin-enabled false` turns it off.
    let registry = match props.get("containerRegistry").and_then(Value::as_str) {
        Some(given) => {
            let name = given
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let registry = state.store.registry(&name).await?.ok_or_else(|| {
                MgmtError::bad_request(
                    "ContainerRegistryNotFound",
                    format!("the container registry '{given}' does not exist: create it first (az acr create)"),
                )
            })?;
            authorize(
                state,
                caller,
                "Microsoft.ContainerRegistry/registries/read",
                &ResourceId::parse(&registry.id)?,
            )
            .await?;
            props.insert("containerRegistry".into(), registry.id.clone().into());
            registry
        }
        None => {
            authorize(
                state,
                caller,
                "Microsoft.ContainerRegistry/registries/write",
                &group,
            )
            .await?;
            let name = associated_name("cr", ws);
            let created = registries::create(
                state,
                tenant,
                sub,
                rg,
                &name,
                json!({ "properties": { "adminUserEnabled": true }, "sku": { "name": "Basic" }, "tags": { "createdBy": id } }),
                location.clone(),
            )
            .await?;
            record_made(state, &id, "containerRegistry", &created.name).await?;
            props.insert("containerRegistry".into(), created.id.clone().into());
            made.push((created.id.clone(), roles::CONTRIBUTOR));
            created
        }
    };
    let workspace_guid = uuid::Uuid::new_v4().to_string();
    props.insert("workspaceId".into(), workspace_guid.clone().into());
    if let Some(primary) = &ids.primary {
        props.insert("primaryUserAssignedIdentity".into(), primary.clone().into());
    }
    let identity = keyless_ml::identity::identity_rest(ids.ids.kind, &ids.ids.user_assigned);
    let resource = Resource {
        id: id.clone(),
        subscription_id: sub.to_owned(),
        resource_group: rg.to_owned(),
        kind: WORKSPACES.into(),
        name: ws.to_owned(),
        location,
        body: json!({
            "identity": identity,
            "properties": props,
            "tags": body.get("tags").cloned().unwrap_or_else(|| json!({})),
            "kind": body.get("kind").cloned().unwrap_or_else(|| "Default".into()),
        }),
        created_at: state.now(),
    };
    // The system-assigned identity is born with the workspace, and the resource
    // provider grants it what it needs on the associated resources. A workspace with
    // only user-assigned identities gets the grants for its primary identity on the
    // resources keyless made for it; on resources the user brought, the user grants
    // them (as Azure requires).
    if ids.ids.kind.has_system() {
        let p = create_system_identity(state, tenant, &id, ws).await?;
        grant(
            state,
            tenant,
            &account.id,
            roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
            p.object_id,
        )
        .await?;
        grant(
            state,
            tenant,
            &vault.id,
            roles::KEY_VAULT_SECRETS_OFFICER,
            p.object_id,
        )
        .await?;
        grant(state, tenant, &registry.id, roles::CONTRIBUTOR, p.object_id).await?;
    } else if let Some(primary) = &ids.primary {
        let (_, p) = user_assigned(state, primary).await?;
        for (scope, role) in &made {
            grant(state, tenant, scope, role, p.object_id).await?;
        }
    }
    // The whole record, still marked as being made.
    let whole = resource.body.clone();
    state
        .store
        .resource_update(&id, &mut |body| {
            let making = body.get(MAKING).cloned();
            *body = whole.clone();
            if let (Some(making), Some(body)) = (making, body.as_object_mut()) {
                body.insert(MAKING.into(), making);
            }
            true
        })
        .await?;
    default_datastores(state, &resource, &account.name, &workspace_guid, &mode).await?;
    // Made whole: no longer marked.
    state
        .store
        .resource_update(&id, &mut |body| {
            body.as_object_mut()
                .is_some_and(|b| b.remove(MAKING).is_some())
        })
        .await?;
    tracing::info!(actor = %caller.principal.object_id, workspace = %id, "workspace created");
    Ok((StatusCode::CREATED, json_of(state, &resource).await))
}

/// Creates the default containers (as the workspace's identity, through the
/// storage listener) and the datastores `workspaceblobstore` and
/// `workspaceartifactstore`.
async fn default_datastores(
    state: &SharedState,
    ws: &Resource,
    account: &str,
    guid: &str,
    mode: &str,
) -> Result<(), MgmtError> {
    let actor = acting_identity(state, ws).await?;
    let acting = Acting::as_principal(state, actor.clone(), Service::Storage)
        .await?
        .trusted_service();
    let blob_container = format!("azureml-blobstore-{guid}");
    for container in [blob_container.as_str(), "azureml"] {
        let (response, bytes) = Acting::send(
            Some(&acting),
            state,
            Service::Storage,
            Method::PUT,
            &format!("/{account}/{container}?restype=container"),
            &[("x-ms-version", crate::storage::SERVICE_VERSION)],
            Vec::new(),
        )
        .await?;
        let status = response.status();
        if !status.is_success() && status != StatusCode::CONFLICT {
            return Err(MgmtError::bad_request(
                "WorkspaceStorageAccessDenied",
                format!(
                    "the workspace identity {} cannot create container '{container}' in storage account '{account}': {} (a workspace with only user-assigned identities needs Storage Blob Data Contributor for its primary identity on the account)",
                    actor.object_id,
                    crate::internal::refusal(&response, &bytes)
                ),
            ));
        }
    }
    let credentials = if mode == "Identity" {
        json!({ "credentialsType": "None" })
    } else {
        let stored = state.store.account(account).await?.ok_or_else(|| {
            keyless_core::Error::not_found(format!("storage account {account} vanished"))
        })?;
        let keys = state.account_keys(&stored)?;
        let key = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            keys.first().map(Vec::as_slice).unwrap_or_default(),
        );
        json!({ "credentialsType": "AccountKey", "secrets": { "secretsType": "AccountKey", "key": key } })
    };
    for (name, container) in [
        ("workspaceblobstore", blob_container.as_str()),
        ("workspaceartifactstore", "azureml"),
    ] {
        let properties = json!({
            "datastoreType": "AzureBlob",
            "accountName": account,
            "containerName": container,
            "credentials": credentials,
        });
        super::datastores::store(state, ws, name, &properties, name == "workspaceblobstore")
            .await?;
    }
    Ok(())
}

async fn update(
    state: &SharedState,
    caller: &Caller,
    mut current: Resource,
    body: &Value,
) -> Result<(StatusCode, Value), MgmtError> {
    let before = identities(&current)?;
    let props = body
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, what) in [
        ("storageAccount", "storage account"),
        ("keyVault", "key vault"),
    ] {
        let given = props.get(key).and_then(Value::as_str);
        let stored = current
            .body
            .pointer(&format!("/properties/{key}"))
            .and_then(Value::as_str);
        if let (Some(g), Some(s)) = (given, stored)
            && !g.eq_ignore_ascii_case(s)
        {
            return Err(MgmtError::bad_request(
                "CannotChangeAssociatedResource",
                format!("the workspace's {what} cannot be changed once set (it is {s})"),
            ));
        }
    }
    // A workspace may be given another registry (`--update-dependent-resources`):
    // one that exists, that the caller sees.
    if let Some(given) = props.get("containerRegistry").and_then(Value::as_str) {
        let name = given
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let registry = state.store.registry(&name).await?.ok_or_else(|| {
            MgmtError::bad_request(
                "ContainerRegistryNotFound",
                format!("the container registry '{given}' does not exist: create it first (az acr create)"),
            )
        })?;
        authorize(
            state,
            caller,
            "Microsoft.ContainerRegistry/registries/read",
            &ResourceId::parse(&registry.id)?,
        )
        .await?;
    }
    let next = match body.get("identity").filter(|v| !v.is_null()) {
        Some(identity) => {
            let primary = props
                .get("primaryUserAssignedIdentity")
                .and_then(Value::as_str);
            WorkspaceIdentities::from_rest(Some(identity), primary)?
        }
        // Absent (or null) keeps the identities as they are, for PUT and PATCH alike.
        None => before.clone(),
    };
    before.check_transition(&next)?;
    check_uais(
        state,
        caller,
        &next.ids.user_assigned,
        &before.ids.user_assigned,
    )
    .await?;
    let tenant = caller.principal.tenant_id;
    if next.ids.kind.has_system() && !before.ids.kind.has_system() {
        let p = create_system_identity(state, tenant, &current.id, &current.name).await?;
        if let Some(account) = current
            .body
            .pointer("/properties/storageAccount")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            grant(
                state,
                tenant,
                &account,
                roles::STORAGE_BLOB_DATA_CONTRIBUTOR,
                p.object_id,
            )
            .await?;
        }
        if let Some(vault) = current
            .body
            .pointer("/properties/keyVault")
            .and_then(Value::as_str)
            .map(str::to_owned)
        {
            grant(
                state,
                tenant,
                &vault,
                roles::KEY_VAULT_SECRETS_OFFICER,
                p.object_id,
            )
            .await?;
        }
    }
    if let Some(map) = current.body.as_object_mut() {
        let identity = keyless_ml::identity::identity_rest(next.ids.kind, &next.ids.user_assigned);
        map.insert("identity".into(), identity);
        if let Some(tags) = body.get("tags") {
            map.insert("tags".into(), tags.clone());
        }
        let stored = map.entry("properties").or_insert_with(|| json!({}));
        if let Some(stored) = stored.as_object_mut() {
            for (k, v) in props {
                if ![
                    "workspaceId",
                    "storageAccount",
                    "keyVault",
                    "provisioningState",
                ]
                .contains(&k.as_str())
                {
                    stored.insert(k, v);
                }
            }
            match &next.primary {
                Some(p) => stored.insert("primaryUserAssignedIdentity".into(), p.clone().into()),
                None => stored.remove("primaryUserAssignedIdentity"),
            };
        }
    }
    state.store.resource_put(&current).await?;
    Ok((StatusCode::OK, json_of(state, &current).await))
}

pub(crate) async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let id = workspace_id(&sub, &rg, &ws);
        let caller = authorized(&state, &headers, &sub, "Microsoft.MachineLearningServices/workspaces/delete", &ResourceId::parse(&id)?).await?;
        let Ok(r) = workspace(&state, &sub, &rg, &ws).await else {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        };
        // Children go with it: computes (and their identities), datastores, data.
        // The identities go first; the resources then go together.
        let mut gone = Vec::new();
        for compute in children(&state, &r, COMPUTES).await? {
            delete_system_identity(&state, &compute.id).await?;
            gone.push(compute.id);
        }
        for kind in [DATASTORES, DATA_VERSIONS] {
            gone.extend(children(&state, &r, kind).await?.into_iter().map(|c| c.id));
        }
        delete_system_identity(&state, &r.id).await?;
        gone.push(r.id.clone());
        state.store.resources_delete(&gone).await?;
        state.changed(Change::Rbac).await?;
        tracing::info!(actor = %caller.principal.object_id, workspace = %r.id, "workspace deleted with its computes, datastores and identities");
        Ok((StatusCode::OK, Value::Null))
    })
    .await
}
