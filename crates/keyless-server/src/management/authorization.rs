//! `Microsoft.Authorization` at any scope: role definitions and role assignments,
//! and keyless's `access explain`.
//!
//! ARM addresses these below any scope (`{scope}/providers/Microsoft.Authorization/…`),
//! so requests reach them through the router's fallback, which parses the scope
//! out of the path.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::rbac::{AccessRequest, Decision, Permission, RoleDefinition};
use keyless_core::{ObjectId, ResourceId};
use keyless_store::{StoredRoleAssignment, StoredRoleDefinition};

use super::caller::{Caller, authenticate, authorize, subscription_of_caller};
use super::directory::{principal_json, resolve, timestamp};
use super::error::MgmtError;
use super::respond;
use crate::feed::Change;
use crate::state::SharedState;

const PROVIDER: &str = "/providers/microsoft.authorization/";

/// Serves `Microsoft.Authorization` paths; anything else is not found.
pub(crate) async fn dispatch(State(state): State<SharedState>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let Some(at) = path.to_ascii_lowercase().find(PROVIDER) else {
        return MgmtError::not_found(
            "NotFound",
            format!("no management operation `{method} {path}` exists"),
        )
        .into_response();
    };
    let scope_text = if at == 0 { "/" } else { &path[..at] };
    let rest: Vec<&str> = path[at + PROVIDER.len()..]
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let body = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return MgmtError::bad_request(
                "InvalidRequestContent",
                format!("the request body cannot be read: {e}"),
            )
            .into_response();
        }
    };
    let query: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap_or_default();
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    respond(async {
        if param("api-version").is_none_or(|v| v.is_empty()) {
            return Err(MgmtError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        let scope = ResourceId::parse(scope_text)
            .map_err(|e| MgmtError::bad_request("InvalidScope", e.message()))?;
        let caller = authenticate(&state, &headers).await?;
        let kind = rest.first().map(|s| s.to_ascii_lowercase());
        match (method, kind.as_deref(), rest.get(1).copied(), rest.len()) {
            (Method::GET, Some("roleassignments"), None, 1) => {
                list_assignments(&state, &caller, &scope, param("$filter")).await
            }
            (Method::PUT, Some("roleassignments"), Some(name), 2) => {
                create_assignment(&state, &caller, &scope, name, &body).await
            }
            (Method::GET, Some("roleassignments"), Some(name), 2) => {
                show_assignment(&state, &caller, &scope, name).await
            }
            (Method::DELETE, Some("roleassignments"), Some(name), 2) => {
                delete_assignment(&state, &caller, &scope, name).await
            }
            (Method::GET, Some("roledefinitions"), None, 1) => {
                list_definitions(&state, &caller, &scope, param("$filter")).await
            }
            (Method::GET, Some("roledefinitions"), Some(id), 2) => {
                show_definition(&state, &caller, &scope, id).await
            }
            (Method::PUT, Some("roledefinitions"), Some(id), 2) => {
                put_definition(&state, &caller, &scope, id, &body).await
            }
            (Method::DELETE, Some("roledefinitions"), Some(id), 2) => {
                delete_definition(&state, &caller, &scope, id).await
            }
            (method, _, _, _) => Err(MgmtError::not_found(
                "NotFound",
                format!("no management operation `{method} {path}` exists"),
            )),
        }
    })
    .await
}

/// Checks a scope for a new assignment or definition: a subscription of the
/// caller's tenant, and its resource group when it names one.
async fn existing_scope(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
) -> Result<(), MgmtError> {
    let Some(sub) = scope.subscription_id() else {
        return Err(MgmtError::bad_request(
            "InvalidScope",
            format!(
                "the scope `{scope}` must lie in a subscription: `/subscriptions/<id>[/resourceGroups/<name>[/providers/…]]`"
            ),
        ));
    };
    subscription_of_caller(state, caller, sub).await?;
    let parts: Vec<&str> = scope.as_str().split('/').collect();
    if let (Some(kind), Some(rg)) = (parts.get(3), parts.get(4)) {
        if !kind.eq_ignore_ascii_case("resourceGroups") {
            return Err(MgmtError::bad_request(
                "InvalidScope",
                format!("the scope `{scope}` is malformed after the subscription"),
            ));
        }
        if state.store.resource_group(sub, rg).await?.is_none() {
            return Err(MgmtError::not_found(
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            ));
        }
    }
    Ok(())
}

fn definition_id(scope: &ResourceId, role: &RoleDefinition) -> String {
    match scope.subscription_id() {
        Some(sub) => format!(
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{}",
            role.id
        ),
        None => format!(
            "/providers/Microsoft.Authorization/roleDefinitions/{}",
            role.id
        ),
    }
}

fn definition_json(scope: &ResourceId, role: &RoleDefinition) -> Value {
    json!({
        "id": definition_id(scope, role),
        "name": role.id,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": role.name,
            "description": role.description,
            "type": if role.builtin { "BuiltInRole" } else { "CustomRole" },
            "permissions": [{
                "actions": role.actions,
                "notActions": role.not_actions,
                "dataActions": role.data_actions,
                "notDataActions": role.not_data_actions,
            }],
            "assignableScopes": if role.builtin { vec!["/".to_owned()] } else { role.assignable_scopes.clone() },
        },
    })
}

fn assignment_json(a: &StoredRoleAssignment, principal_type: &str) -> Value {
    let sub = ResourceId::parse(&a.scope)
        .ok()
        .and_then(|s| s.subscription_id().map(str::to_owned))
        .unwrap_or_default();
    json!({
        "id": format!("{}/providers/Microsoft.Authorization/roleAssignments/{}", a.scope.trim_end_matches('/'), a.name),
        "name": a.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{}", a.role_definition_id),
            "principalId": a.principal_id.to_string(),
            "principalType": principal_type,
            "scope": a.scope,
            "createdOn": timestamp(a.created_at),
        },
    })
}

/// Roles visible to the caller: the built-ins and its tenant's custom roles.
fn visible_role(
    caller: &Caller,
    name_or_id: &str,
    custom: &[StoredRoleDefinition],
) -> Option<RoleDefinition> {
    let key = name_or_id.rsplit('/').next().unwrap_or(name_or_id);
    if let Some(r) = keyless_core::rbac::builtin_role(key) {
        return Some(r.clone());
    }
    custom
        .iter()
        .filter(|d| d.tenant_id == caller.principal.tenant_id)
        .map(|d| &d.role)
        .find(|r| r.id.eq_ignore_ascii_case(key) || r.name.eq_ignore_ascii_case(key))
        .cloned()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentBody {
    properties: AssignmentProperties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentProperties {
    role_definition_id: String,
    principal_id: String,
    #[serde(default)]
    principal_type: Option<String>,
}

async fn create_assignment(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    name: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), MgmtError> {
    let body: AssignmentBody = serde_json::from_slice(body).map_err(|e| {
        MgmtError::bad_request(
            "InvalidRequestContent",
            format!("the role assignment body is not valid: {e}"),
        )
    })?;
    let name = uuid::Uuid::parse_str(name)
        .map_err(|_| MgmtError::bad_request("InvalidRoleAssignmentId", format!("The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.")))?
        .to_string();
    existing_scope(state, caller, scope).await?;
    authorize(
        state,
        caller,
        "Microsoft.Authorization/roleAssignments/write",
        scope,
    )
    .await?;
    let custom = state.store.role_definitions_all().await?;
    let role =
        visible_role(caller, &body.properties.role_definition_id, &custom).ok_or_else(|| {
            MgmtError::bad_request(
                "RoleDefinitionDoesNotExist",
                format!(
                    "The specified role definition with ID '{}' does not exist.",
                    body.properties.role_definition_id
                ),
            )
        })?;
    if !role.assignable_at(scope) {
        return Err(MgmtError::bad_request(
            "InvalidRoleAssignmentScope",
            format!(
                "the role `{}` may be assigned only within {:?}, not at `{scope}`",
                role.name, role.assignable_scopes
            ),
        ));
    }
    let principal_id = ObjectId::parse(&body.properties.principal_id)
        .map_err(|e| MgmtError::bad_request("InvalidPrincipalId", e.message()))?;
    let principal = state
        .store
        .principal(principal_id)
        .await?
        .filter(|p| p.tenant_id == caller.principal.tenant_id)
        .ok_or_else(|| {
            MgmtError::bad_request(
                "PrincipalNotFound",
                format!(
                    "Principal {principal_id} does not exist in the directory {}.",
                    caller.principal.tenant_id
                ),
            )
        })?;
    if let Some(t) = &body.properties.principal_type
        && !t.eq_ignore_ascii_case(principal.kind.arm_principal_type())
    {
        return Err(MgmtError::bad_request(
            "PrincipalTypeNotSupported",
            format!(
                "principalType `{t}` does not match the principal, which is a `{}`",
                principal.kind.arm_principal_type()
            ),
        ));
    }
    let existing = state
        .store
        .role_assignments(caller.principal.tenant_id)
        .await?;
    let same = |a: &StoredRoleAssignment| {
        a.principal_id == principal_id
            && a.role_definition_id.eq_ignore_ascii_case(&role.id)
            && a.scope.eq_ignore_ascii_case(scope.as_str())
    };
    if existing.iter().any(same) {
        return Err(MgmtError::new(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    if existing.iter().any(|a| a.name.eq_ignore_ascii_case(&name)) {
        return Err(MgmtError::bad_request(
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        ));
    }
    let assignment = StoredRoleAssignment {
        name,
        tenant_id: caller.principal.tenant_id,
        scope: scope.to_string(),
        role_definition_id: role.id.clone(),
        principal_id,
        created_at: state.now(),
    };
    state.store.role_assignment_create(&assignment).await?;
    state.changed(Change::Rbac).await?;
    tracing::info!(actor = %caller.principal.object_id, principal = %principal_id, role = %role.name, scope = %scope, "role assignment created");
    Ok((
        StatusCode::CREATED,
        assignment_json(&assignment, principal.kind.arm_principal_type()),
    ))
}

async fn principal_type(state: &SharedState, id: ObjectId) -> Result<&'static str, MgmtError> {
    Ok(state
        .store
        .principal(id)
        .await?
        .map_or("Unknown", |p| p.kind.arm_principal_type()))
}

async fn show_assignment(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    name: &str,
) -> Result<(StatusCode, Value), MgmtError> {
    authorize(
        state,
        caller,
        "Microsoft.Authorization/roleAssignments/read",
        scope,
    )
    .await?;
    let a = state
        .store
        .role_assignment(name)
        .await?
        .filter(|a| {
            a.tenant_id == caller.principal.tenant_id
                && a.scope.eq_ignore_ascii_case(scope.as_str())
        })
        .ok_or_else(|| {
            MgmtError::not_found(
                "RoleAssignmentNotFound",
                format!("The role assignment '{name}' is not found."),
            )
        })?;
    let kind = principal_type(state, a.principal_id).await?;
    Ok((StatusCode::OK, assignment_json(&a, kind)))
}

async fn delete_assignment(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    name: &str,
) -> Result<(StatusCode, Value), MgmtError> {
    authorize(
        state,
        caller,
        "Microsoft.Authorization/roleAssignments/delete",
        scope,
    )
    .await?;
    let Some(a) = state.store.role_assignment(name).await?.filter(|a| {
        a.tenant_id == caller.principal.tenant_id && a.scope.eq_ignore_ascii_case(scope.as_str())
    }) else {
        return Ok((StatusCode::NO_CONTENT, Value::Null));
    };
    state.store.role_assignment_delete(&a.name).await?;
    state.changed(Change::Rbac).await?;
    tracing::info!(actor = %caller.principal.object_id, assignment = %a.name, "role assignment deleted");
    let kind = principal_type(state, a.principal_id).await?;
    Ok((StatusCode::OK, assignment_json(&a, kind)))
}

/// The principal ids a `$filter` names: `principalId eq '…'` or `assignedTo('…')`.
fn filter_principal(filter: &str) -> Option<(String, bool)> {
    let quoted = |s: &str| s.split('\'').nth(1).map(str::to_owned);
    let lower = filter.to_ascii_lowercase();
    if lower.starts_with("principalid eq") {
        return quoted(filter).map(|p| (p, false));
    }
    if lower.starts_with("assignedto(") {
        return quoted(filter).map(|p| (p, true));
    }
    None
}

async fn list_assignments(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    filter: Option<String>,
) -> Result<(StatusCode, Value), MgmtError> {
    if scope.as_str() != "/" {
        existing_scope(state, caller, scope).await?;
    }
    let read_scope = if scope.as_str() == "/" {
        ResourceId::subscription(scope.subscription_id().unwrap_or_default())
    } else {
        scope.clone()
    };
    authorize(
        state,
        caller,
        "Microsoft.Authorization/roleAssignments/read",
        &read_scope,
    )
    .await?;
    let filter = filter.unwrap_or_default();
    let at_scope_only = filter.to_ascii_lowercase().contains("atscope()");
    let principals: Option<Vec<ObjectId>> = match filter_principal(&filter) {
        Some((id, transitive)) => {
            let id = ObjectId::parse(&id)
                .map_err(|e| MgmtError::bad_request("InvalidFilter", e.message()))?;
            let mut ids = vec![id];
            if transitive {
                ids.extend(state.store.transitive_groups(id).await?);
            }
            Some(ids)
        }
        None if filter.is_empty() || at_scope_only => None,
        None => {
            return Err(MgmtError::bad_request(
                "InvalidFilter",
                format!(
                    "unsupported $filter `{filter}`: use atScope(), principalId eq '<id>' or assignedTo('<id>')"
                ),
            ));
        }
    };
    let mut value = Vec::new();
    for a in state
        .store
        .role_assignments(caller.principal.tenant_id)
        .await?
    {
        let Ok(assigned) = ResourceId::parse(&a.scope) else {
            continue;
        };
        let related = if at_scope_only {
            assigned.contains(scope)
        } else {
            assigned.contains(scope) || scope.contains(&assigned)
        };
        if !related
            || principals
                .as_ref()
                .is_some_and(|p| !p.contains(&a.principal_id))
        {
            continue;
        }
        let kind = principal_type(state, a.principal_id).await?;
        value.push(assignment_json(&a, kind));
    }
    Ok((StatusCode::OK, json!({ "value": value })))
}

async fn list_definitions(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    filter: Option<String>,
) -> Result<(StatusCode, Value), MgmtError> {
    let custom = state.store.role_definitions_all().await?;
    let wanted = filter.as_deref().and_then(|f| {
        f.to_ascii_lowercase()
            .starts_with("rolename eq")
            .then(|| f.split('\'').nth(1).map(str::to_owned))
            .flatten()
    });
    let mine = custom
        .iter()
        .filter(|d| d.tenant_id == caller.principal.tenant_id)
        .map(|d| &d.role);
    let value: Vec<Value> = keyless_core::rbac::builtin_roles()
        .iter()
        .chain(mine)
        .filter(|r| {
            wanted
                .as_deref()
                .is_none_or(|w| r.name.eq_ignore_ascii_case(w))
        })
        .map(|r| definition_json(scope, r))
        .collect();
    Ok((StatusCode::OK, json!({ "value": value })))
}

async fn show_definition(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    id: &str,
) -> Result<(StatusCode, Value), MgmtError> {
    let custom = state.store.role_definitions_all().await?;
    let role = visible_role(caller, id, &custom).ok_or_else(|| {
        MgmtError::not_found(
            "RoleDefinitionDoesNotExist",
            format!("The specified role definition with ID '{id}' does not exist."),
        )
    })?;
    Ok((StatusCode::OK, definition_json(scope, &role)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionBody {
    properties: DefinitionProperties,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DefinitionProperties {
    role_name: String,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    permissions: Vec<PermissionSet>,
    assignable_scopes: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PermissionSet {
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    not_actions: Vec<String>,
    #[serde(default)]
    data_actions: Vec<String>,
    #[serde(default)]
    not_data_actions: Vec<String>,
}

async fn put_definition(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    id: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), MgmtError> {
    let body: DefinitionBody = serde_json::from_slice(body).map_err(|e| {
        MgmtError::bad_request(
            "InvalidRequestContent",
            format!("the role definition body is not valid: {e}"),
        )
    })?;
    let id = uuid::Uuid::parse_str(id)
        .map_err(|_| {
            MgmtError::bad_request(
                "InvalidRoleDefinitionId",
                format!("The role definition ID '{id}' is not valid; it must be a GUID."),
            )
        })?
        .to_string();
    let p = body.properties;
    if p.kind
        .as_deref()
        .is_some_and(|k| !k.eq_ignore_ascii_case("CustomRole"))
    {
        return Err(MgmtError::bad_request(
            "InvalidRoleDefinition",
            "only custom roles can be created",
        ));
    }
    if p.role_name.trim().is_empty() || p.role_name.len() > 512 {
        return Err(MgmtError::bad_request(
            "InvalidRoleDefinition",
            "`roleName` must have 1–512 characters",
        ));
    }
    if p.assignable_scopes.is_empty() {
        return Err(MgmtError::bad_request(
            "InvalidRoleDefinition",
            "`assignableScopes` must name at least one scope",
        ));
    }
    let mut scopes = Vec::new();
    for text in &p.assignable_scopes {
        let s = ResourceId::parse(text)
            .map_err(|e| MgmtError::bad_request("InvalidAssignableScope", e.message()))?;
        existing_scope(state, caller, &s).await?;
        authorize(
            state,
            caller,
            "Microsoft.Authorization/roleDefinitions/write",
            &s,
        )
        .await?;
        scopes.push(s);
    }
    let _ = scope;
    if keyless_core::rbac::builtin_role(&p.role_name).is_some() {
        return Err(MgmtError::new(
            StatusCode::CONFLICT,
            "RoleDefinitionWithSameNameExists",
            format!("A built-in role named '{}' exists already.", p.role_name),
        ));
    }
    let custom = state.store.role_definitions_all().await?;
    if custom.iter().any(|d| {
        d.tenant_id == caller.principal.tenant_id
            && d.role.name.eq_ignore_ascii_case(&p.role_name)
            && !d.role.id.eq_ignore_ascii_case(&id)
    }) {
        return Err(MgmtError::new(
            StatusCode::CONFLICT,
            "RoleDefinitionWithSameNameExists",
            format!("A custom role named '{}' exists already.", p.role_name),
        ));
    }
    if custom
        .iter()
        .any(|d| d.role.id.eq_ignore_ascii_case(&id) && d.tenant_id != caller.principal.tenant_id)
    {
        return Err(MgmtError::new(
            StatusCode::CONFLICT,
            "RoleDefinitionExists",
            "that role definition id is taken",
        ));
    }
    let existed = custom.iter().any(|d| d.role.id.eq_ignore_ascii_case(&id));
    let perms = p.permissions.into_iter().next().unwrap_or_default();
    let role = RoleDefinition {
        id: id.clone(),
        name: p.role_name,
        description: p.description,
        actions: perms.actions,
        not_actions: perms.not_actions,
        data_actions: perms.data_actions,
        not_data_actions: perms.not_data_actions,
        assignable_scopes: scopes.iter().map(ToString::to_string).collect(),
        builtin: false,
    };
    state
        .store
        .role_definition_put(&StoredRoleDefinition {
            tenant_id: caller.principal.tenant_id,
            role: role.clone(),
            created_at: state.now(),
        })
        .await?;
    state.changed(Change::Rbac).await?;
    let first = scopes
        .first()
        .cloned()
        .unwrap_or_else(|| ResourceId::subscription(""));
    Ok((
        if existed {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        },
        definition_json(&first, &role),
    ))
}

async fn delete_definition(
    state: &SharedState,
    caller: &Caller,
    scope: &ResourceId,
    id: &str,
) -> Result<(StatusCode, Value), MgmtError> {
    let custom = state.store.role_definitions_all().await?;
    let Some(d) = custom
        .iter()
        .find(|d| d.tenant_id == caller.principal.tenant_id && d.role.id.eq_ignore_ascii_case(id))
    else {
        if keyless_core::rbac::builtin_role(id).is_some() {
            return Err(MgmtError::bad_request(
                "InvalidRoleDefinition",
                "built-in roles cannot be deleted",
            ));
        }
        return Ok((StatusCode::NO_CONTENT, Value::Null));
    };
    for s in &d.role.assignable_scopes {
        authorize(
            state,
            caller,
            "Microsoft.Authorization/roleDefinitions/delete",
            &ResourceId::parse(s)?,
        )
        .await?;
    }
    state.store.role_definition_delete(&d.role.id).await?;
    state.changed(Change::Rbac).await?;
    Ok((StatusCode::OK, definition_json(scope, &d.role)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ExplainBody {
    principal: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    data_action: Option<String>,
    /// An RBAC scope; or, instead, a data path below.
    #[serde(default)]
    scope: Option<String>,
    /// `abfss://fs@account.dfs.core.windows.net/dir/file`, `abfss://fs@account/dir/file`
    /// or `https://host/account/fs/dir/file`: the container is the scope, and on an
    /// HNS account the ACLs of the path are evaluated too.
    #[serde(default)]
    path: Option<String>,
}

/// Splits a data path into (account, container, path inside).
fn data_path(text: &str) -> Option<(String, String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    if let Some(rest) = text
        .strip_prefix("abfss://")
        .or_else(|| text.strip_prefix("abfs://"))
    {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (fs, host) = authority.split_once('@')?;
        let account = host.split('.').next()?;
        return Some((
            account.to_owned(),
            fs.to_owned(),
            decode(path.trim_matches('/')),
        ));
    }
    let rest = text.strip_prefix("https://")?;
    let (_, path) = rest.split_once('/')?;
    let mut parts = path.splitn(3, '/');
    let account = parts.next()?.to_owned();
    let container = parts.next()?.to_owned();
    let inside = decode(parts.next().unwrap_or_default().trim_matches('/'));
    Some((account, container, inside))
}

/// `POST /access/explain`: the decision the server would make, and why.
pub(crate) async fn explain(
    state: State<SharedState>,
    headers: axum::http::HeaderMap,
    body: super::Body<ExplainBody>,
) -> Response {
    let (State(state), super::Body(body)) = (state, body);
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let target = match &body.path {
            Some(p) => Some(data_path(p).ok_or_else(|| {
                MgmtError::bad_request("InvalidPath", format!("`{p}` is not abfss://fs@account/path or https://host/account/fs/path"))
            })?),
            None => None,
        };
        let account = match &target {
            Some((name, _, _)) => Some(state.account(name).await?.ok_or_else(|| {
                MgmtError::not_found("ResourceNotFound", format!("The storage account `{name}` does not exist on this server."))
            })?),
            None => None,
        };
        let scope_text = match (&body.scope, &account, &target) {
            (_, Some(a), Some((_, container, _))) => format!("{}/blobServices/default/containers/{container}", a.id),
            (Some(s), _, _) => s.clone(),
            _ => return Err(MgmtError::bad_request("InvalidRequestContent", "give `scope` or `path`")),
        };
        let scope = ResourceId::parse(&scope_text).map_err(|e| MgmtError::bad_request("InvalidScope", e.message()))?;
        let principal = resolve(&state, caller.principal.tenant_id, &body.principal).await?;
        if principal.object_id != caller.principal.object_id {
            authorize(&state, &caller, "Microsoft.Authorization/roleAssignments/read", &scope).await?;
        }
        let permission = match (&body.action, &body.data_action) {
            (Some(a), None) => Permission::Action(a),
            (None, Some(d)) => Permission::DataAction(d),
            _ => return Err(MgmtError::bad_request("InvalidRequestContent", "give exactly one of `action` and `dataAction`")),
        };
        let ids = super::caller::principal_ids(&state, &principal).await?;
        let decision = state.rbac().explain(&AccessRequest { tenant: principal.tenant_id, principals: &ids, permission, scope: &scope });
        let mut out = json!({
            "allowed": decision.is_allowed(),
            "principal": principal_json(&principal),
            "permission": permission.as_str(),
            "kind": if matches!(permission, Permission::Action(_)) { "action" } else { "dataAction" },
            "scope": scope.to_string(),
            "explanation": decision.explanation(),
        });
        if let (Decision::Allow { assignment, role_name, scope, principal_id }, Some(map)) = (&decision, out.as_object_mut()) {
            map.insert(
                "grantedBy".into(),
                json!({ "roleAssignment": assignment, "role": role_name, "scope": scope, "principalId": principal_id.to_string() }),
            );
        }
        // RBAC first; on a hierarchical namespace, the path's ACLs may still allow.
        if let (false, Some(a), Some((_, container, inside)), Some(action)) = (decision.is_allowed(), &account, &target, &body.data_action)
            && a.hns
        {
            let groups: Vec<String> = ids.iter().skip(1).map(ToString::to_string).collect();
            let oid = principal.object_id.to_string();
            let who = keyless_core::acl::Caller { object_id: &oid, groups: &groups };
            let acl = crate::storage::hns::check_acl_for(&state, &a.name, container, who, inside, crate::storage::hns::needs_of(action))
                .await
                .map_err(|e| MgmtError::bad_request("InvalidPath", format!("the path cannot be evaluated: {}", e.code())))?;
            let allowed = acl == keyless_core::acl::AclDecision::Allow;
            if let Some(map) = out.as_object_mut() {
                map.insert("allowed".into(), json!(allowed));
                map.insert("acl".into(), json!({ "allowed": allowed, "path": format!("/{inside}"), "explanation": acl.explanation() }));
                map.insert("explanation".into(), json!(format!("{}; {}", decision.explanation(), acl.explanation())));
            }
        }
        Ok((StatusCode::OK, out))
    })
    .await
}
