//! The directory API: users, groups, service principals and their credentials,
//! directory roles. Shaped after Microsoft Graph's objects; governed by directory
//! roles, not by Azure RBAC.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::secret;
use keyless_core::directory::{DirectoryOperation, DirectoryRole};
use keyless_core::principal::validate_upn;
use keyless_core::{ClientId, ObjectId, Principal, PrincipalKind, TenantId};
use keyless_store::{Credential, CredentialKind};

use super::caller::{Caller, authenticate, require_directory};
use super::error::MgmtError;
use super::{Body, respond};
use crate::feed::Change;
use crate::http::set;
use crate::state::SharedState;

/// The audience of federated assertions, as Entra's workload identity uses it.
pub(crate) const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/directory/me", get(me))
        .route("/directory/users", get(list_users).post(create_user))
        .route(
            "/directory/users/{key}",
            get(show_user).patch(update_user).delete(delete_principal),
        )
        .route("/directory/groups", get(list_groups).post(create_group))
        .route(
            "/directory/groups/{key}",
            get(show_group).delete(delete_group),
        )
        .route(
            "/directory/groups/{key}/members",
            get(list_members).post(add_member),
        )
        .route(
            "/directory/groups/{key}/members/{member}",
            axum::routing::delete(remove_member),
        )
        .route(
            "/directory/servicePrincipals",
            get(list_sps).post(super::applications::create_sp),
        )
        .route(
            "/directory/servicePrincipals/{key}",
            get(show_sp).patch(update_sp).delete(delete_principal),
        )
        .route("/directory/roles/{role}/members", post(grant_role))
        .route("/directory/objects/{key}", get(show_object))
}

/// Finds a principal of the caller's tenant by object id, app id, user principal
/// name, or (groups, service principals) display name.
pub(crate) async fn resolve(
    state: &SharedState,
    tenant: TenantId,
    key: &str,
) -> Result<Principal, MgmtError> {
    let found = if let Ok(id) = ObjectId::parse(key) {
        match state.store.principal(id).await? {
            Some(p) => Some(p),
            None => {
                state
                    .store
                    .principal_by_app_id(ClientId::parse(key)?)
                    .await?
            }
        }
    } else if key.contains('@') {
        state.store.principal_by_upn(key).await?
    } else {
        let mut named: Vec<Principal> = state
            .store
            .principals(tenant, None)
            .await?
            .into_iter()
            .filter(|p| p.kind != PrincipalKind::User && p.display_name.eq_ignore_ascii_case(key))
            .collect();
        if named.len() > 1 {
            return Err(MgmtError::bad_request(
                "AmbiguousName",
                format!("`{key}` names several principals; use an object id"),
            ));
        }
        named.pop()
    };
    found.filter(|p| p.tenant_id == tenant).ok_or_else(|| {
        MgmtError::not_found("Request_ResourceNotFound", format!("no principal `{key}` exists in this tenant (give an object id, app id, user principal name or group name)"))
    })
}

pub(crate) fn principal_json(p: &Principal) -> Value {
    let mut v = json!({
        "id": p.object_id.to_string(),
        "objectType": match p.kind { PrincipalKind::ManagedIdentity => "ServicePrincipal", k => k.as_str() },
        "displayName": p.display_name,
        "createdDateTime": timestamp(p.created_at),
    });
    match p.kind {
        PrincipalKind::User => {
            set(&mut v, "userPrincipalName", json!(p.user_principal_name));
            set(&mut v, "accountEnabled", json!(p.enabled));
        }
        PrincipalKind::Group => {}
        PrincipalKind::ServicePrincipal | PrincipalKind::ManagedIdentity => {
            set(&mut v, "appId", json!(p.app_id.map(|a| a.to_string())));
            set(&mut v, "accountEnabled", json!(p.enabled));
            let kind = if p.kind == PrincipalKind::ManagedIdentity {
                "ManagedIdentity"
            } else {
                "Application"
            };
            set(&mut v, "servicePrincipalType", json!(kind));
            if let Some(r) = &p.resource_id {
                set(&mut v, "alternativeNames", json!(["isExplicit=True", r]));
            }
        }
    }
    v
}

pub(crate) fn credential_json(c: &Credential) -> Value {
    let mut v = json!({
        "keyId": c.id,
        "displayName": c.display_name,
        "startDateTime": timestamp(c.starts_at),
        "endDateTime": timestamp(c.expires_at),
    });
    match &c.kind {
        CredentialKind::Secret { hint, .. } => set(&mut v, "hint", json!(hint)),
        CredentialKind::Certificate { thumbprint, .. } => {
            set(&mut v, "type", json!("AsymmetricX509Cert"));
            set(&mut v, "customKeyIdentifier", json!(thumbprint));
        }
        CredentialKind::Federated {
            issuer,
            subject,
            audiences,
        } => {
            v = json!({ "id": c.id, "name": c.display_name, "issuer": issuer, "subject": subject, "audiences": audiences });
        }
    }
    v
}

pub(crate) fn timestamp(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

async fn me(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let mut v = principal_json(&caller.principal);
        set(
            &mut v,
            "tenantId",
            json!(caller.principal.tenant_id.to_string()),
        );
        let mut roles = state
            .store
            .directory_roles(caller.principal.object_id)
            .await?;
        roles.sort();
        set(&mut v, "directoryRoles", json!(roles));
        Ok((StatusCode::OK, v))
    })
    .await
}

async fn list_of_kind(
    state: &SharedState,
    headers: &HeaderMap,
    kinds: &[PrincipalKind],
) -> Result<(StatusCode, Value), MgmtError> {
    let caller = authenticate(state, headers).await?;
    let all = state
        .store
        .principals(caller.principal.tenant_id, None)
        .await?;
    let value: Vec<Value> = all
        .iter()
        .filter(|p| kinds.contains(&p.kind))
        .map(principal_json)
        .collect();
    Ok((StatusCode::OK, json!({ "value": value })))
}

async fn list_users(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(list_of_kind(&state, &headers, &[PrincipalKind::User])).await
}

async fn list_groups(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(list_of_kind(&state, &headers, &[PrincipalKind::Group])).await
}

async fn list_sps(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(list_of_kind(
        &state,
        &headers,
        &[
            PrincipalKind::ServicePrincipal,
            PrincipalKind::ManagedIdentity,
        ],
    ))
    .await
}

async fn show_of_kind(
    state: &SharedState,
    headers: &HeaderMap,
    key: &str,
    kinds: &[PrincipalKind],
) -> Result<(StatusCode, Value), MgmtError> {
    let caller = authenticate(state, headers).await?;
    let p = resolve(state, caller.principal.tenant_id, key).await?;
    if !kinds.contains(&p.kind) {
        return Err(MgmtError::not_found(
            "Request_ResourceNotFound",
            format!(
                "`{key}` is a {}, not a {}",
                p.kind.as_str(),
                kinds.first().map(|k| k.as_str()).unwrap_or_default()
            ),
        ));
    }
    let mut v = principal_json(&p);
    if matches!(p.kind, PrincipalKind::ServicePrincipal) {
        let creds = state.store.credentials(p.object_id).await?;
        let pick = |f: fn(&CredentialKind) -> bool| {
            creds
                .iter()
                .filter(|c| f(&c.kind))
                .map(credential_json)
                .collect::<Vec<_>>()
        };
        set(
            &mut v,
            "passwordCredentials",
            json!(pick(|k| matches!(k, CredentialKind::Secret { .. }))),
        );
        set(
            &mut v,
            "keyCredentials",
            json!(pick(|k| matches!(k, CredentialKind::Certificate { .. }))),
        );
    }
    Ok((StatusCode::OK, v))
}

async fn show_object(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let p = resolve(&state, caller.principal.tenant_id, &key).await?;
        Ok((StatusCode::OK, principal_json(&p)))
    })
    .await
}

async fn show_user(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(show_of_kind(&state, &headers, &key, &[PrincipalKind::User])).await
}

async fn show_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(show_of_kind(
        &state,
        &headers,
        &key,
        &[PrincipalKind::Group],
    ))
    .await
}

async fn show_sp(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(show_of_kind(
        &state,
        &headers,
        &key,
        &[
            PrincipalKind::ServicePrincipal,
            PrincipalKind::ManagedIdentity,
        ],
    ))
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewUser {
    display_name: String,
    user_principal_name: String,
    password: String,
    #[serde(default = "yes")]
    account_enabled: bool,
}

fn yes() -> bool {
    true
}

async fn create_user(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<NewUser>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let user = new_user(
            &state,
            &caller,
            body.display_name,
            &body.user_principal_name,
            &body.password,
            body.account_enabled,
        )
        .await?;
        Ok((StatusCode::CREATED, principal_json(&user)))
    })
    .await
}

/// Creates a user of the caller's tenant, if a directory role lets the caller.
pub(crate) async fn new_user(
    state: &SharedState,
    caller: &Caller,
    display_name: String,
    upn: &str,
    password: &str,
    enabled: bool,
) -> Result<Principal, MgmtError> {
    require_directory(state, caller, DirectoryOperation::ManageUsers).await?;
    let tenant = tenant_of(state, caller).await?;
    validate_upn(upn, &tenant.domain)?;
    secret::check_password_policy(password)?;
    if state.store.principal_by_upn(upn).await?.is_some() {
        return Err(MgmtError::new(
            StatusCode::CONFLICT,
            "Request_BadRequest",
            format!(
                "Another object with the same value for property userPrincipalName already exists: a user `{upn}` exists already"
            ),
        ));
    }
    let password = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || secret::hash_password(&password))
        .await
        .map_err(|e| keyless_core::Error::internal(format!("hashing task failed: {e}")))??;
    let user = Principal {
        object_id: ObjectId::new_random(),
        tenant_id: tenant.id,
        kind: PrincipalKind::User,
        display_name,
        user_principal_name: Some(upn.to_ascii_lowercase()),
        app_id: None,
        enabled,
        resource_id: None,
        created_at: state.now(),
    };
    state.store.principal_create(&user, Some(&hash)).await?;
    tracing::info!(actor = %caller.principal.object_id, user = %user.object_id, "user created");
    Ok(user)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Update {
    account_enabled: Option<bool>,
}

async fn update_principal(
    state: &SharedState,
    headers: &HeaderMap,
    key: &str,
    body: Update,
    op: DirectoryOperation,
) -> Result<(StatusCode, Value), MgmtError> {
    let caller = authenticate(state, headers).await?;
    require_directory(state, &caller, op).await?;
    let p = resolve(state, caller.principal.tenant_id, key).await?;
    if let Some(enabled) = body.account_enabled {
        set_enabled(state, &p, enabled).await?;
    }
    let p = state
        .store
        .principal(p.object_id)
        .await?
        .ok_or_else(|| keyless_core::Error::not_found("the principal vanished"))?;
    Ok((StatusCode::OK, principal_json(&p)))
}

/// Enables or disables a principal; every listener refuses a disabled
/// principal's tokens at once, not at their expiry.
pub(crate) async fn set_enabled(
    state: &SharedState,
    p: &Principal,
    enabled: bool,
) -> Result<(), MgmtError> {
    state
        .store
        .principal_set_enabled(p.object_id, enabled)
        .await?;
    state
        .changed(Change::Principal {
            object_id: p.object_id.to_string(),
            disabled: !enabled,
        })
        .await?;
    Ok(())
}

async fn update_user(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Update>,
) -> Response {
    respond(update_principal(
        &state,
        &headers,
        &key,
        body,
        DirectoryOperation::ManageUsers,
    ))
    .await
}

async fn update_sp(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Update>,
) -> Response {
    respond(update_principal(
        &state,
        &headers,
        &key,
        body,
        DirectoryOperation::ManageApplications,
    ))
    .await
}

async fn delete_principal(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let p = resolve(&state, caller.principal.tenant_id, &key).await?;
        remove_principal(&state, &caller, &p).await?;
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

/// Deletes a principal, if a directory role lets the caller; managed identities
/// go with their resource, and nobody deletes themselves.
pub(crate) async fn remove_principal(
    state: &SharedState,
    caller: &Caller,
    p: &Principal,
) -> Result<(), MgmtError> {
    let op = match p.kind {
        PrincipalKind::User => DirectoryOperation::ManageUsers,
        PrincipalKind::Group => DirectoryOperation::ManageGroups,
        PrincipalKind::ServicePrincipal => DirectoryOperation::ManageApplications,
        PrincipalKind::ManagedIdentity => {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "a managed identity is deleted with its resource: `keyless identity delete`",
            ));
        }
    };
    require_directory(state, caller, op).await?;
    if p.object_id == caller.principal.object_id {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            "you cannot delete yourself",
        ));
    }
    state.store.principal_delete(p.object_id).await?;
    state
        .changed(Change::Principal {
            object_id: p.object_id.to_string(),
            disabled: true,
        })
        .await?;
    state.changed(Change::Rbac).await?;
    tracing::info!(actor = %caller.principal.object_id, principal = %p.object_id, "principal deleted");
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewGroup {
    display_name: String,
    #[serde(default)]
    mail_nickname: Option<String>,
}

async fn create_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<NewGroup>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let _ = body.mail_nickname;
        let group = new_group(&state, &caller, &body.display_name).await?;
        Ok((StatusCode::CREATED, principal_json(&group)))
    })
    .await
}

/// Creates a group of the caller's tenant, if a directory role lets the caller.
/// Group names are unique in a tenant (keyless resolves groups by name).
pub(crate) async fn new_group(
    state: &SharedState,
    caller: &Caller,
    name: &str,
) -> Result<Principal, MgmtError> {
    require_directory(state, caller, DirectoryOperation::ManageGroups).await?;
    let name = name.trim();
    if name.is_empty() || name.len() > 256 || ObjectId::parse(name).is_ok() || name.contains('@') {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            format!("`{name}` is not a valid group name (1–256 characters, not a GUID, no `@`)"),
        ));
    }
    let tenant = caller.principal.tenant_id;
    let taken = state
        .store
        .principals(tenant, Some(PrincipalKind::Group))
        .await?
        .iter()
        .any(|g| g.display_name.eq_ignore_ascii_case(name));
    if taken {
        return Err(MgmtError::new(
            StatusCode::CONFLICT,
            "Request_BadRequest",
            format!("a group named `{name}` exists already"),
        ));
    }
    let group = Principal {
        object_id: ObjectId::new_random(),
        tenant_id: tenant,
        kind: PrincipalKind::Group,
        display_name: name.to_owned(),
        user_principal_name: None,
        app_id: None,
        enabled: true,
        resource_id: None,
        created_at: state.now(),
    };
    state.store.principal_create(&group, None).await?;
    Ok(group)
}

async fn delete_group(
    state: State<SharedState>,
    headers: HeaderMap,
    key: Path<String>,
) -> Response {
    delete_principal(state, headers, key).await
}

pub(crate) async fn group_of(
    state: &SharedState,
    caller: &Caller,
    key: &str,
) -> Result<Principal, MgmtError> {
    let g = resolve(state, caller.principal.tenant_id, key).await?;
    if g.kind != PrincipalKind::Group {
        return Err(MgmtError::not_found(
            "Request_ResourceNotFound",
            format!("`{key}` is not a group"),
        ));
    }
    Ok(g)
}

async fn list_members(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let group = group_of(&state, &caller, &key).await?;
        let mut value = Vec::new();
        for id in state.store.group_members(group.object_id).await? {
            if let Some(p) = state.store.principal(id).await? {
                value.push(principal_json(&p));
            }
        }
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberRef {
    member: String,
}

async fn add_member(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<MemberRef>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageGroups).await?;
        let group = group_of(&state, &caller, &key).await?;
        let member = resolve(&state, caller.principal.tenant_id, &body.member).await?;
        state
            .store
            .group_add_member(group.object_id, member.object_id)
            .await?;
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

async fn remove_member(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((key, member)): Path<(String, String)>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageGroups).await?;
        let group = group_of(&state, &caller, &key).await?;
        let member = resolve(&state, caller.principal.tenant_id, &member).await?;
        state
            .store
            .group_remove_member(group.object_id, member.object_id)
            .await?;
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleMember {
    principal: String,
}

async fn grant_role(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(role): Path<String>,
    Body(body): Body<RoleMember>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageRoles).await?;
        let role = DirectoryRole::parse(&role)?;
        let p = resolve(&state, caller.principal.tenant_id, &body.principal).await?;
        state.store.directory_role_grant(p.object_id, role.as_str()).await?;
        tracing::info!(actor = %caller.principal.object_id, principal = %p.object_id, role = role.as_str(), "directory role granted");
        Ok((StatusCode::OK, json!({ "principal": p.object_id.to_string(), "role": role.as_str() })))
    })
    .await
}

async fn tenant_of(
    state: &SharedState,
    caller: &Caller,
) -> Result<keyless_store::Tenant, MgmtError> {
    Ok(state
        .store
        .tenant(&caller.principal.tenant_id.to_string())
        .await?
        .ok_or_else(|| keyless_core::Error::internal("the caller's tenant vanished"))?)
}
