//! `Microsoft.MachineLearningServices`: workspaces, their computes, datastores and
//! data assets, and data preview, in the shapes of Azure ML's ARM API.
//!
//! The rules live in `keyless-ml` and `keyless_core::identity_rule`; this module
//! stores the resources, creates and deletes the managed identities that belong to
//! them, and reaches storage and vaults only through [`crate::internal`], as the
//! identity the rules choose.

mod codes;
mod computes;
mod data;
mod datastores;
mod environments;
mod explain;
mod history;
mod jobs;
mod preview;
mod reach;
pub(crate) mod runner;
mod workspaces;

use axum::Router;
use axum::routing::{get, post};

use keyless_core::rbac::{AccessRequest, Permission};
use keyless_core::{ObjectId, Principal, PrincipalKind, ResourceId, TenantId};
use keyless_store::{Resource, StoredRoleAssignment};

use super::caller::{Caller, authorize};
use super::error::MgmtError;
use crate::feed::Change;
use crate::state::SharedState;

pub(crate) const WORKSPACES: &str = "Microsoft.MachineLearningServices/workspaces";
const COMPUTES: &str = "Microsoft.MachineLearningServices/workspaces/computes";
const DATASTORES: &str = "Microsoft.MachineLearningServices/workspaces/datastores";
const DATA_VERSIONS: &str = "Microsoft.MachineLearningServices/workspaces/data/versions";
const CODE_VERSIONS: &str = "Microsoft.MachineLearningServices/workspaces/codes/versions";
const JOBS: &str = "Microsoft.MachineLearningServices/workspaces/jobs";
const ENVIRONMENT_VERSIONS: &str =
    "Microsoft.MachineLearningServices/workspaces/environments/versions";

/// Marks the jobs a previous run of the server left unfinished as failed.
pub(crate) async fn fail_interrupted_jobs(state: &SharedState) -> Result<(), keyless_core::Error> {
    runner::fail_interrupted(state).await
}

/// Built-in roles the resource provider grants on its own.
pub(crate) mod roles {
    pub(crate) const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
    pub(crate) const KEY_VAULT_SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
    pub(crate) const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
    pub(crate) const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
}

pub(crate) fn router() -> Router<SharedState> {
    let mut r = Router::new().route(
        &format!("/subscriptions/{{sub}}/providers/{WORKSPACES}"),
        get(workspaces::list_subscription),
    );
    for rg in ["resourceGroups", "resourcegroups"] {
        let base = format!("/subscriptions/{{sub}}/{rg}/{{rg}}/providers/{WORKSPACES}");
        let ws = format!("{base}/{{ws}}");
        r = r
            .route(&base, get(workspaces::list_group))
            .route(
                &ws,
                get(workspaces::show)
                    .put(workspaces::put)
                    .patch(workspaces::put)
                    .delete(workspaces::delete),
            )
            .route(&format!("{ws}/computes"), get(computes::list))
            .route(
                &format!("{ws}/computes/{{name}}"),
                get(computes::show)
                    .put(computes::put)
                    .delete(computes::delete),
            )
            .route(&format!("{ws}/datastores"), get(datastores::list))
            .route(
                &format!("{ws}/datastores/{{name}}"),
                get(datastores::show)
                    .put(datastores::put)
                    .delete(datastores::delete),
            )
            .route(
                &format!("{ws}/datastores/{{name}}/listSecrets"),
                post(datastores::list_secrets),
            )
            .route(&format!("{ws}/data"), get(data::list_names))
            .route(
                &format!("{ws}/data/{{name}}/versions"),
                get(data::list_versions),
            )
            .route(
                &format!("{ws}/data/{{name}}/versions/{{version}}"),
                get(data::show).put(data::put).delete(data::delete),
            )
            .route(
                &format!("{ws}/codes/{{name}}/versions"),
                get(codes::list_versions),
            )
            .route(
                &format!("{ws}/codes/{{name}}/versions/{{version}}/startPendingUpload"),
                post(codes::start_pending_upload),
            )
            .route(
                &format!("{ws}/codes/{{name}}/versions/{{version}}"),
                get(codes::show_version)
                    .put(codes::put_version)
                    .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024)),
            )
            .route(
                &format!("{ws}/environments/{{name}}/versions/{{version}}"),
                get(environments::show).put(environments::put),
            )
            .route(&format!("{ws}/jobs"), get(jobs::list))
            .route(
                &format!("{ws}/jobs/{{name}}"),
                get(jobs::show).put(jobs::put),
            )
            .route(&format!("{ws}/jobs/{{name}}/cancel"), post(jobs::cancel))
            .route(&format!("{ws}/jobs/{{name}}/log"), get(jobs::log))
            .route(
                &format!("/history/v1.0{ws}/runs/{{name}}/details"),
                get(history::details),
            )
            .route(
                &format!("/history/v1.0{ws}/runs/{{name}}/logs/user_logs/std_log.txt"),
                get(history::log),
            )
            .route(&format!("{ws}/previewData"), post(preview::preview))
            .route(&format!("{ws}/explainRead"), post(explain::explain));
        // The data readers' own routes, under the discovery's `api`.
        let v1 = format!("/subscriptions/{{sub}}/{rg}/{{rg}}/providers/{WORKSPACES}/{{ws}}");
        r = r
            .route(
                &format!("/datastore/v1.0{v1}/datastores/{{name}}"),
                get(datastores::show_v1),
            )
            .route(
                &format!("/data/v1.0{v1}/dataversion/{{name}}/versions/{{version}}"),
                get(data::show_v1),
            );
    }
    r
}

/// The ARM shape of one version of an asset (code, data, environment): the
/// version is its name.
fn version_json(kind: &str, r: &Resource) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "name": r.body.get("version").cloned().unwrap_or(serde_json::Value::Null),
        "type": kind,
        "properties": r.body.get("properties").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

/// The ARM id of a workspace.
pub(crate) fn workspace_id(sub: &str, rg: &str, ws: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{WORKSPACES}/{ws}")
}

/// The form Entra puts in `xms_mirid`: `resourcegroups` in lowercase.
fn mirid(id: &str) -> String {
    match id.to_ascii_lowercase().find("/resourcegroups/") {
        Some(at) => {
            let (head, tail) = id.split_at(at);
            format!(
                "{head}/resourcegroups/{}",
                tail.get(16..).unwrap_or_default()
            )
        }
        None => id.to_owned(),
    }
}

/// The path parameters of a workspace child.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Child {
    sub: String,
    rg: String,
    ws: String,
    name: String,
}

impl Child {
    /// The opening of a handler of one child: the caller must hold `action` at
    /// `<workspace>/<kind>/<name>`, and the workspace must exist.
    async fn open(
        &self,
        state: &SharedState,
        headers: &axum::http::HeaderMap,
        kind: &str,
        action: &str,
    ) -> Result<(Caller, Resource), MgmtError> {
        open(
            state,
            headers,
            (&self.sub, &self.rg, &self.ws),
            &format!("{kind}/{}", self.name),
            action,
        )
        .await
    }
}

/// The path parameters of one version of an asset (code, data, environment).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct VersionPath {
    sub: String,
    rg: String,
    ws: String,
    name: String,
    version: String,
}

impl VersionPath {
    /// The opening of a handler of one version: the caller must hold `action` at
    /// `<workspace>/<kind>/<name>/versions/<version>`, and the workspace must exist.
    async fn open(
        &self,
        state: &SharedState,
        headers: &axum::http::HeaderMap,
        kind: &str,
        action: &str,
    ) -> Result<(Caller, Resource), MgmtError> {
        open(
            state,
            headers,
            (&self.sub, &self.rg, &self.ws),
            &format!("{kind}/{}/versions/{}", self.name, self.version),
            action,
        )
        .await
    }
}

/// Loads a workspace; `404` in ARM's words when there is none.
async fn workspace(
    state: &SharedState,
    sub: &str,
    rg: &str,
    ws: &str,
) -> Result<Resource, MgmtError> {
    state
        .store
        .resource(&workspace_id(sub, rg, ws))
        .await?
        .filter(|r| r.kind == WORKSPACES)
        .ok_or_else(|| {
            MgmtError::not_found(
                "ResourceNotFound",
                format!(
                    "The Resource '{WORKSPACES}/{ws}' under resource group '{rg}' was not found."
                ),
            )
        })
}

/// The opening of every handler below a workspace: the caller must hold `action`
/// at `<workspace>/<child>` (the workspace itself when `child` is empty), and the
/// workspace must exist.
async fn open(
    state: &SharedState,
    headers: &axum::http::HeaderMap,
    (sub, rg, ws): (&str, &str, &str),
    child: &str,
    action: &str,
) -> Result<(Caller, Resource), MgmtError> {
    let id = workspace_id(sub, rg, ws);
    let scope = ResourceId::parse(&if child.is_empty() {
        id
    } else {
        format!("{id}/{child}")
    })?;
    let caller = super::caller::authorized(state, headers, sub, action, &scope).await?;
    Ok((caller, workspace(state, sub, rg, ws).await?))
}

/// A workspace's children of one type.
async fn children(
    state: &SharedState,
    ws: &Resource,
    kind: &str,
) -> Result<Vec<Resource>, MgmtError> {
    let prefix = format!("{}/", ws.id.to_ascii_lowercase());
    Ok(state
        .store
        .resources(&ws.subscription_id, &ws.resource_group, kind)
        .await?
        .into_iter()
        .filter(|r| r.id.to_ascii_lowercase().starts_with(&prefix))
        .collect())
}

/// A user-assigned identity by resource id, with its principal.
async fn user_assigned(state: &SharedState, id: &str) -> Result<(Resource, Principal), MgmtError> {
    let missing = || {
        MgmtError::bad_request(
            "UserAssignedIdentityNotFound",
            format!(
                "The user-assigned identity '{id}' does not exist; create it with `keyless identity create`."
            ),
        )
    };
    let resource = state
        .store
        .resource(id)
        .await?
        .filter(|r| r.kind == "Microsoft.ManagedIdentity/userAssignedIdentities")
        .ok_or_else(missing)?;
    let principal = state
        .store
        .principal_by_resource_id(&resource.id)
        .await?
        .ok_or_else(missing)?;
    Ok((resource, principal))
}

/// Attaching a user-assigned identity to a resource needs `assign/action` on it
/// (Managed Identity Operator, or Owner).
async fn require_assign(state: &SharedState, caller: &Caller, id: &str) -> Result<(), MgmtError> {
    let scope = ResourceId::parse(id)?;
    authorize(
        state,
        caller,
        "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
        &scope,
    )
    .await
}

/// Creates the system-assigned identity of a resource.
async fn create_system_identity(
    state: &SharedState,
    tenant: TenantId,
    resource_id: &str,
    display_name: &str,
) -> Result<Principal, MgmtError> {
    if let Some(p) = state
        .store
        .principal_by_resource_id(&mirid(resource_id))
        .await?
    {
        return Ok(p);
    }
    let p = Principal {
        object_id: ObjectId::new_random(),
        tenant_id: tenant,
        kind: PrincipalKind::ManagedIdentity,
        display_name: display_name.to_owned(),
        user_principal_name: None,
        app_id: Some(keyless_core::ClientId::new_random()),
        enabled: true,
        resource_id: Some(mirid(resource_id)),
        created_at: state.now(),
    };
    state.store.principal_create(&p, None).await?;
    Ok(p)
}

/// The system-assigned identity of a resource, if it has one.
async fn system_identity(
    state: &SharedState,
    resource_id: &str,
) -> Result<Option<Principal>, MgmtError> {
    Ok(state
        .store
        .principal_by_resource_id(&mirid(resource_id))
        .await?)
}

/// Deletes the system-assigned identity of a resource, if any.
async fn delete_system_identity(state: &SharedState, resource_id: &str) -> Result<(), MgmtError> {
    if let Some(p) = system_identity(state, resource_id).await? {
        state.store.principal_delete(p.object_id).await?;
        state
            .changed(Change::Principal {
                object_id: p.object_id.to_string(),
                disabled: true,
            })
            .await?;
    }
    Ok(())
}

/// A role assignment the resource provider makes on its own.
async fn grant(
    state: &SharedState,
    tenant: TenantId,
    scope: &str,
    role: &str,
    principal: ObjectId,
) -> Result<(), MgmtError> {
    let held = state.store.role_assignments(tenant).await?.iter().any(|a| {
        a.principal_id == principal
            && a.role_definition_id == role
            && a.scope.eq_ignore_ascii_case(scope)
    });
    if !held {
        state
            .store
            .role_assignment_create(&StoredRoleAssignment {
                name: uuid::Uuid::new_v4().to_string(),
                tenant_id: tenant,
                scope: scope.to_owned(),
                role_definition_id: role.to_owned(),
                principal_id: principal,
                created_at: state.now(),
            })
            .await?;
        state.changed(Change::Rbac).await?;
    }
    Ok(())
}

/// Whether `principal` holds `action` at `scope` (for rules about identities, not callers).
fn holds(state: &SharedState, principal: &Principal, action: &str, scope: &str) -> bool {
    let Ok(scope) = ResourceId::parse(scope) else {
        return false;
    };
    let ids = [principal.object_id];
    state
        .rbac()
        .check(&AccessRequest {
            tenant: principal.tenant_id,
            principals: &ids,
            permission: Permission::Action(action),
            scope: &scope,
        })
        .is_allowed()
}

/// A resource's ARM `identity` block: its system-assigned identity's ids and
/// each user-assigned identity's principal and client ids.
async fn identity_json(
    state: &SharedState,
    resource_id: &str,
    ids: &keyless_ml::identity::Identities,
) -> Result<serde_json::Value, MgmtError> {
    let system = system_identity(state, resource_id).await?;
    let mut described = serde_json::Map::new();
    for id in &ids.user_assigned {
        if let Ok((_, p)) = user_assigned(state, id).await {
            let ids = serde_json::json!({
                "principalId": p.object_id.to_string(),
                "clientId": p.app_id.map(|a| a.to_string()),
            });
            described.insert(id.clone(), ids);
        }
    }
    Ok(ids.to_rest(system.as_ref(), &described))
}

/// One version of an asset of `ws`: `segment` is its path segment (`data`,
/// `environments`), `kind` its resource type, `what` how a not-found names it.
async fn load_version(
    state: &SharedState,
    ws: &Resource,
    p: &VersionPath,
    (segment, kind, what): (&str, &str, &str),
) -> Result<Resource, MgmtError> {
    let id = format!("{}/{segment}/{}/versions/{}", ws.id, p.name, p.version);
    state
        .store
        .resource(&id)
        .await?
        .filter(|r| r.kind == kind)
        .ok_or_else(|| not_found(what, &format!("{}:{}", p.name, p.version), &ws.name))
}

fn not_found(kind: &str, name: &str, ws: &str) -> MgmtError {
    MgmtError::not_found(
        "ResourceNotFound",
        format!("The {kind} '{name}' was not found in workspace '{ws}'."),
    )
}
