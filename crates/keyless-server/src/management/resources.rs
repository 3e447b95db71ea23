//! ARM resources: subscriptions, resource groups and user-assigned identities.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::{ClientId, ObjectId, Principal, PrincipalKind, ResourceId};
use keyless_store::{Resource, ResourceGroup};

use super::caller::{authenticate, authorize, authorized, may, subscription_of_caller};
use super::error::MgmtError;
use super::{Body, respond};
use crate::feed::Change;
use crate::state::SharedState;

const UAI_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/tenants", get(list_tenants))
        .route("/subscriptions", get(list_subscriptions))
        .route("/subscriptions/{sub}", get(show_subscription))
        .route("/subscriptions/{sub}/resources", get(list_resources))
        .route("/subscriptions/{sub}/resourcegroups", get(list_groups))
        .route("/subscriptions/{sub}/resourceGroups", get(list_groups))
        .route("/subscriptions/{sub}/resourcegroups/{rg}", get(show_group).put(put_group).delete(delete_group))
        .route("/subscriptions/{sub}/resourceGroups/{rg}", get(show_group).put(put_group).delete(delete_group))
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
            get(list_identities),
        )
        .route(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            get(show_identity).put(put_identity).delete(delete_identity),
        )
        .route(
            "/subscriptions/{sub}/resourcegroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
            get(show_identity).put(put_identity).delete(delete_identity),
        )
}

/// ARM requires `api-version` on every call; keyless accepts any value, since it
/// serves one shape per resource type.
#[derive(Debug, Deserialize)]
pub(crate) struct ApiVersion {
    #[serde(rename = "api-version")]
    pub(crate) api_version: Option<String>,
}

impl ApiVersion {
    pub(crate) fn require(&self) -> Result<(), MgmtError> {
        match self.api_version.as_deref() {
            Some(v) if !v.is_empty() => Ok(()),
            _ => Err(MgmtError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )),
        }
    }
}

fn subscription_json(id: &str, tenant: &str, name: &str) -> Value {
    json!({
        "id": format!("/subscriptions/{id}"),
        "subscriptionId": id,
        "tenantId": tenant,
        "displayName": name,
        "state": "Enabled",
    })
}

fn group_json(g: &ResourceGroup) -> Value {
    json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}", g.subscription_id, g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "properties": { "provisioningState": "Succeeded" },
    })
}

/// `GET /tenants`: the caller's own tenant (a keyless principal belongs to one),
/// which az lists after a user signs in.
async fn list_tenants(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        let tid = caller.principal.tenant_id.to_string();
        let tenant = state
            .store
            .tenant(&tid)
            .await?
            .ok_or_else(|| keyless_core::Error::internal("the caller's tenant vanished"))?;
        Ok((
            StatusCode::OK,
            json!({ "value": [{
                "id": format!("/tenants/{tid}"),
                "tenantId": tid,
                "tenantCategory": "Home",
                "displayName": tenant.display_name,
                "defaultDomain": tenant.domain,
                "domains": [tenant.domain],
                "tenantType": "AAD",
            }] }),
        ))
    })
    .await
}

/// The resource types `GET /subscriptions/{sub}/resources` lists, with the
/// action that makes one readable.
const LISTED: [(&str, &str); 2] = [
    (
        "Microsoft.KeyVault/vaults",
        "Microsoft.KeyVault/vaults/read",
    ),
    (
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/read",
    ),
];

/// `GET /subscriptions/{sub}/resources?$filter=resourceType eq '…' [and name eq '…']`:
/// ARM's generic list, which az uses to find a vault or an account by name alone.
/// keyless answers it for the types in [`LISTED`]; a list without a resource type,
/// or of another type, is refused rather than answered incompletely.
async fn list_resources(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    use super::graph::filter::{Filter, Literal};
    respond(async {
        if !query.contains_key("api-version") {
            return Err(MgmtError::bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            ));
        }
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let refuse = || {
            MgmtError::bad_request(
                "InvalidFilterInQueryString",
                format!(
                    "keyless lists resources by type only: $filter=resourceType eq '<type>' (optionally `and name eq '<name>'`), for {}",
                    LISTED.map(|(t, _)| t).join(" or ")
                ),
            )
        };
        let filter = query
            .get("$filter")
            .map(|f| Filter::parse(f))
            .transpose()
            .map_err(|_| refuse())?
            .ok_or_else(refuse)?;
        let mut terms = vec![&filter];
        let mut kind = None;
        while let Some(term) = terms.pop() {
            match term {
                Filter::And(a, b) => terms.extend([a.as_ref(), b.as_ref()]),
                Filter::Eq(p, Literal::Text(t)) if p.eq_ignore_ascii_case("resourceType") => {
                    kind = LISTED.iter().find(|(k, _)| k.eq_ignore_ascii_case(t));
                    if kind.is_none() {
                        return Err(refuse());
                    }
                }
                _ => {}
            }
        }
        let (kind, action) = kind.ok_or_else(refuse)?;
        let found: Vec<(String, String, String, Value)> = if kind.starts_with("Microsoft.KeyVault") {
            state
                .store
                .vaults(&sub, None, false)
                .await?
                .into_iter()
                .map(|v| (v.id, v.name, v.location, v.body.get("tags").cloned().unwrap_or_else(|| json!({}))))
                .collect()
        } else {
            state
                .store
                .accounts(&sub, None)
                .await?
                .into_iter()
                .map(|a| (a.id, a.name, a.location, a.body.get("tags").cloned().unwrap_or_else(|| json!({}))))
                .collect()
        };
        let value: Vec<Value> = found
            .into_iter()
            .filter(|(id, ..)| {
                ResourceId::parse(id).is_ok_and(|scope| may(&state, &caller, action, &scope))
            })
            .map(|(id, name, location, tags)| {
                let group = id.split('/').nth(4).unwrap_or_default().to_owned();
                json!({ "id": id, "name": name, "type": kind, "location": location, "tags": tags,
                        "resourceType": kind, "resourceGroup": group })
            })
            .filter(|v| filter.matches(v))
            .map(|mut v| {
                if let Some(map) = v.as_object_mut() {
                    map.remove("resourceType");
                    map.remove("resourceGroup");
                }
                v
            })
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

async fn list_subscriptions(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        // As in Azure, a subscription is listed to anyone holding a role anywhere in
        // it, not only to readers of the subscription itself.
        let ids = caller.ids();
        let assignments = state
            .store
            .role_assignments(caller.principal.tenant_id)
            .await?;
        let mut value = Vec::new();
        for s in state
            .store
            .subscriptions(caller.principal.tenant_id)
            .await?
        {
            let prefix = format!("/subscriptions/{}", s.id.to_ascii_lowercase());
            let inside = assignments.iter().any(|a| {
                ids.contains(&a.principal_id) && a.scope.to_ascii_lowercase().starts_with(&prefix)
            });
            if inside
                || may(
                    &state,
                    &caller,
                    "Microsoft.Resources/subscriptions/read",
                    &ResourceId::subscription(&s.id),
                )
            {
                value.push(subscription_json(
                    &s.id,
                    &s.tenant_id.to_string(),
                    &s.display_name,
                ));
            }
        }
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

async fn show_subscription(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        authorize(
            &state,
            &caller,
            "Microsoft.Resources/subscriptions/read",
            &ResourceId::subscription(&sub),
        )
        .await?;
        let s = state
            .store
            .subscription(&sub)
            .await?
            .ok_or_else(|| keyless_core::Error::not_found("subscription vanished"))?;
        Ok((
            StatusCode::OK,
            subscription_json(&s.id, &s.tenant_id.to_string(), &s.display_name),
        ))
    })
    .await
}

async fn list_groups(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let groups = state.store.resource_groups(&sub).await?;
        let mut value = Vec::new();
        for g in groups {
            let scope = ResourceId::subscription(&sub).child("resourceGroups", &g.name)?;
            if may(
                &state,
                &caller,
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                &scope,
            ) {
                value.push(group_json(&g));
            }
        }
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

async fn show_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg)): Path<(String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::subscription(&sub).child("resourceGroups", &rg)?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            &scope,
        )
        .await?;
        let g = state
            .store
            .resource_group(&sub, &rg)
            .await?
            .ok_or_else(|| group_not_found(&rg))?;
        Ok((StatusCode::OK, group_json(&g)))
    })
    .await
}

async fn delete_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg)): Path<(String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let scope = ResourceId::subscription(&sub).child("resourceGroups", &rg)?;
        authorize(&state, &caller, "Microsoft.Resources/subscriptions/resourceGroups/delete", &scope).await?;
        let existed = state.store.resource_group_delete(&sub, &rg).await?;
        state.changed(Change::Rbac).await?;
        if existed {
            tracing::info!(actor = %caller.principal.object_id, group = %scope, "resource group deleted with its resources and role assignments");
        }
        Ok((if existed { StatusCode::OK } else { StatusCode::NO_CONTENT }, Value::Null))
    })
    .await
}

fn group_not_found(rg: &str) -> MgmtError {
    MgmtError::not_found(
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

#[derive(Debug, Deserialize)]
struct GroupBody {
    location: Option<String>,
}

async fn put_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg)): Path<(String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<GroupBody>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        validate_name(&rg, 90, "resource group")?;
        let scope = ResourceId::subscription(&sub).child("resourceGroups", &rg)?;
        authorize(
            &state,
            &caller,
            "Microsoft.Resources/subscriptions/resourceGroups/write",
            &scope,
        )
        .await?;
        let existed = state.store.resource_group(&sub, &rg).await?.is_some();
        let g = state
            .store
            .resource_group_upsert(&ResourceGroup {
                subscription_id: sub.clone(),
                name: rg.clone(),
                location: body.location.unwrap_or_else(|| "local".into()),
                created_at: state.now(),
            })
            .await?;
        Ok((
            if existed {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            group_json(&g),
        ))
    })
    .await
}

fn validate_name(name: &str, max: usize, what: &str) -> Result<(), MgmtError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
        && !name.ends_with('.');
    if ok {
        return Ok(());
    }
    Err(MgmtError::bad_request(
        "InvalidResourceName",
        format!(
            "the {what} name `{name}` is invalid: use 1–{max} letters, digits, `-`, `_`, `.`, `(`, `)`, not ending in `.`"
        ),
    ))
}

fn identity_id(sub: &str, rg: &str, name: &str) -> String {
    // The form Entra puts in `xms_mirid`: lowercase `resourcegroups`.
    format!("/subscriptions/{sub}/resourcegroups/{rg}/providers/{UAI_TYPE}/{name}")
}

fn identity_json(r: &Resource, p: &Principal) -> Value {
    json!({
        "id": format!("/subscriptions/{}/resourceGroups/{}/providers/{UAI_TYPE}/{}", r.subscription_id, r.resource_group, r.name),
        "name": r.name,
        "type": UAI_TYPE,
        "location": r.location,
        "tags": r.body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "properties": {
            "tenantId": p.tenant_id.to_string(),
            "principalId": p.object_id.to_string(),
            "clientId": p.app_id.map(|a| a.to_string()),
        },
    })
}

async fn identity_scope(
    state: &SharedState,
    headers: &HeaderMap,
    sub: &str,
    rg: &str,
    name: &str,
    action: &str,
) -> Result<super::caller::Caller, MgmtError> {
    let scope = ResourceId::parse(&identity_id(sub, rg, name))?;
    let caller = authorized(state, headers, sub, action, &scope).await?;
    if state.store.resource_group(sub, rg).await?.is_none() {
        return Err(group_not_found(rg));
    }
    Ok(caller)
}

async fn identity_pair(
    state: &SharedState,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<(Resource, Principal), MgmtError> {
    let id = identity_id(sub, rg, name);
    let not_found = || {
        MgmtError::not_found(
            "ResourceNotFound",
            format!("The Resource '{UAI_TYPE}/{name}' under resource group '{rg}' was not found."),
        )
    };
    let resource = state.store.resource(&id).await?.ok_or_else(not_found)?;
    let principal = state
        .store
        .principal_by_resource_id(&id)
        .await?
        .ok_or_else(not_found)?;
    Ok((resource, principal))
}

async fn show_identity(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        identity_scope(
            &state,
            &headers,
            &sub,
            &rg,
            &name,
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
        )
        .await?;
        let (r, p) = identity_pair(&state, &sub, &rg, &name).await?;
        Ok((StatusCode::OK, identity_json(&r, &p)))
    })
    .await
}

async fn list_identities(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg)): Path<(String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::subscription(&sub).child("resourceGroups", &rg)?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            &scope,
        )
        .await?;
        let mut value = Vec::new();
        for r in state.store.resources(&sub, &rg, UAI_TYPE).await? {
            if let Some(p) = state.store.principal_by_resource_id(&r.id).await? {
                value.push(identity_json(&r, &p));
            }
        }
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct IdentityBody {
    location: Option<String>,
    tags: Option<Value>,
}

async fn put_identity(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<IdentityBody>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = identity_scope(&state, &headers, &sub, &rg, &name, "Microsoft.ManagedIdentity/userAssignedIdentities/write").await?;
        let name_ok = name.len() >= 3
            && name.len() <= 128
            && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(MgmtError::bad_request(
                "InvalidResourceName",
                format!("the identity name `{name}` is invalid: 3–128 letters, digits, `-` or `_`, starting with a letter or digit"),
            ));
        }
        let id = identity_id(&sub, &rg, &name);
        let now = state.now();
        let existing = state.store.resource(&id).await?;
        let resource = Resource {
            id: id.clone(),
            subscription_id: sub.clone(),
            resource_group: existing.as_ref().map_or_else(|| rg.clone(), |r| r.resource_group.clone()),
            kind: UAI_TYPE.into(),
            name: existing.as_ref().map_or_else(|| name.clone(), |r| r.name.clone()),
            location: body.location.unwrap_or_else(|| "local".into()),
            body: json!({ "tags": body.tags.unwrap_or_else(|| json!({})) }),
            created_at: existing.as_ref().map_or(now, |r| r.created_at),
        };
        let principal = match state.store.principal_by_resource_id(&id).await? {
            Some(p) => p,
            None => {
                let p = Principal {
                    object_id: ObjectId::new_random(),
                    tenant_id: caller.principal.tenant_id,
                    kind: PrincipalKind::ManagedIdentity,
                    display_name: name.clone(),
                    user_principal_name: None,
                    app_id: Some(ClientId::new_random()),
                    enabled: true,
                    resource_id: Some(id.clone()),
                    created_at: now,
                };
                state.store.principal_create(&p, None).await?;
                p
            }
        };
        state.store.resource_put(&resource).await?;
        let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
        Ok((status, identity_json(&resource, &principal)))
    })
    .await
}

async fn delete_identity(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        identity_scope(
            &state,
            &headers,
            &sub,
            &rg,
            &name,
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
        )
        .await?;
        let id = identity_id(&sub, &rg, &name);
        if let Some(p) = state.store.principal_by_resource_id(&id).await? {
            state.store.principal_delete(p.object_id).await?;
            state
                .changed(Change::Principal {
                    object_id: p.object_id.to_string(),
                    disabled: true,
                })
                .await?;
        }
        let existed = state.store.resource_delete(&id).await?;
        state.changed(Change::Rbac).await?;
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
