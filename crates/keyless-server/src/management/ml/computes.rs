//! Computes: clusters, instances and Kubernetes targets with their managed
//! identities. A compute's system-assigned identity is named
//! `/<workspace>/computes/<compute>` and lives and dies with the compute.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use keyless_core::identity_rule::{Compute, ManagedIdentity};
use keyless_ml::identity::{ComputeType, Identities, Kind};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::{
    COMPUTES, Child, children, create_system_identity, delete_system_identity, grant, holds,
    identity_json, not_found, open, require_assign, roles, system_identity, user_assigned,
};
use crate::feed::Change;
use crate::state::SharedState;

fn compute_id(ws: &Resource, name: &str) -> String {
    format!("{}/computes/{name}", ws.id)
}

fn identities(r: &Resource) -> Result<Identities, MgmtError> {
    Ok(Identities::from_rest(r.body.get("identity"), Kind::None)?)
}

/// A compute as the identity rules see it.
pub(super) async fn rule_view(state: &SharedState, r: &Resource) -> Result<Compute, MgmtError> {
    let ids = identities(r)?;
    let system_assigned = system_identity(state, &r.id)
        .await?
        .map(|p| ManagedIdentity {
            object_id: p.object_id.to_string(),
            client_id: p.app_id.map(|a| a.to_string()).unwrap_or_default(),
            system_assigned: true,
        });
    let mut user = Vec::new();
    for id in &ids.user_assigned {
        let (_, p) = user_assigned(state, id).await?;
        user.push(ManagedIdentity {
            object_id: p.object_id.to_string(),
            client_id: p.app_id.map(|a| a.to_string()).unwrap_or_default(),
            system_assigned: false,
        });
    }
    Ok(Compute::Target {
        name: r.name.clone(),
        system_assigned,
        user_assigned: user,
    })
}

/// Loads a compute of a workspace.
pub(super) async fn load(
    state: &SharedState,
    ws: &Resource,
    name: &str,
) -> Result<Resource, MgmtError> {
    let name = name.strip_prefix("azureml:").unwrap_or(name);
    state
        .store
        .resource(&compute_id(ws, name))
        .await?
        .filter(|r| r.kind == COMPUTES)
        .ok_or_else(|| not_found("compute", name, &ws.name))
}

async fn json_of(state: &SharedState, ws: &Resource, r: &Resource) -> Result<Value, MgmtError> {
    let identity = identity_json(state, &r.id, &identities(r)?).await?;
    let mut props = r
        .body
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let view = rule_view(state, r).await?;
    if let Some(map) = props.as_object_mut() {
        map.insert("provisioningState".into(), "Succeeded".into());
        if let Some(default) = view.default_identity() {
            map.insert(
                "defaultIdentity".into(),
                json!({
                    "clientId": default.client_id,
                    "principalId": default.object_id,
                    "kind": if default.system_assigned { "SystemAssigned" } else { "UserAssigned" },
                }),
            );
        }
        let is_instance = map.get("computeType").and_then(Value::as_str) == Some("ComputeInstance");
        if is_instance {
            map.insert("idleShutdown".into(), idle_shutdown(state, ws, &view).await);
        }
    }
    Ok(json!({
        "id": r.id,
        "name": r.name,
        "type": COMPUTES,
        "location": r.location,
        "tags": r.body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "identity": identity,
        "properties": props,
    }))
}

/// A compute instance with a managed identity shuts down on idle only when that
/// identity holds Contributor (here: `workspaces/write`) on the workspace.
async fn idle_shutdown(state: &SharedState, ws: &Resource, view: &Compute) -> Value {
    let Some(mi) = view.default_identity() else {
        return json!({ "enabled": true, "reason": "the instance has no managed identity, so idle shutdown applies" });
    };
    let principal = match keyless_core::ObjectId::parse(&mi.object_id) {
        Ok(oid) => state.store.principal(oid).await.ok().flatten(),
        Err(_) => None,
    };
    let contributor = principal.as_ref().is_some_and(|p| {
        holds(
            state,
            p,
            "Microsoft.MachineLearningServices/workspaces/write",
            &ws.id,
        )
    });
    if contributor {
        json!({ "enabled": true, "reason": format!("the instance's managed identity {} holds Contributor on the workspace, so idle shutdown applies", mi.object_id) })
    } else {
        json!({ "enabled": false, "reason": format!("the instance's managed identity {} lacks Contributor on the workspace, so the instance does not shut down on idle; grant it Contributor on {} to enable idle shutdown", mi.object_id, ws.id) })
    }
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
        let (caller, ws) = p.open(&state, &headers, "computes", "Microsoft.MachineLearningServices/workspaces/computes/write").await?;
        let props = body.get("properties").cloned().unwrap_or_else(|| json!({}));
        let kind = ComputeType::parse(props.get("computeType").and_then(Value::as_str).unwrap_or_default())?;
        keyless_ml::backend::BackendSpec::from_compute(&props)?;
        keyless_ml::names::compute(&p.name, kind.max_name())?;
        let ids = Identities::from_rest(body.get("identity"), Kind::None)?;
        kind.check(&ids)?;
        let id = compute_id(&ws, &p.name);
        let existing = state.store.resource(&id).await?.filter(|r| r.kind == COMPUTES);
        let before = match &existing {
            Some(r) => {
                let stored_kind = r.body.pointer("/properties/computeType").and_then(Value::as_str);
                if stored_kind != Some(kind.rest_name()) {
                    return Err(MgmtError::bad_request("ComputeTypeCannotChange", format!("compute '{}' is a {}; its type cannot change", p.name, stored_kind.unwrap_or("?"))));
                }
                identities(r)?.user_assigned
            }
            None => Vec::new(),
        };
        // Attaching a user-assigned identity needs Managed Identity Operator on it.
        for uai in &ids.user_assigned {
            user_assigned(&state, uai).await?;
            if !before.iter().any(|b| b.eq_ignore_ascii_case(uai)) {
                require_assign(&state, &caller, uai).await?;
            }
        }
        let tenant = caller.principal.tenant_id;
        if ids.kind.has_system() {
            create_system_identity(&state, tenant, &id, &format!("/{}/computes/{}", ws.name, p.name)).await?;
        } else {
            delete_system_identity(&state, &id).await?;
        }
        let identity = keyless_ml::identity::identity_rest(ids.kind, &ids.user_assigned);
        let resource = Resource {
            id: id.clone(),
            subscription_id: ws.subscription_id.clone(),
            resource_group: ws.resource_group.clone(),
            kind: COMPUTES.into(),
            name: p.name.clone(),
            location: body.get("location").and_then(Value::as_str).unwrap_or(&ws.location).to_owned(),
            body: json!({ "identity": identity, "properties": props, "tags": body.get("tags").cloned().unwrap_or_else(|| json!({})) }),
            created_at: existing.as_ref().map_or_else(|| state.now(), |r| r.created_at),
        };
        state.store.resource_put(&resource).await?;
        // The rule of the reference: a compute's default identity pulls images from
        // the workspace's container registry. Registries arrive later; the grant is
        // made as soon as the workspace names one.
        if let Some(registry) = ws.body.pointer("/properties/containerRegistry").and_then(Value::as_str)
            && let Some(default) = rule_view(&state, &resource).await?.default_identity()
            && let Ok(oid) = keyless_core::ObjectId::parse(&default.object_id)
        {
            grant(&state, tenant, registry, roles::ACR_PULL, oid).await?;
        }
        let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
        Ok((status, json_of(&state, &ws, &resource).await?))
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
                "computes",
                "Microsoft.MachineLearningServices/workspaces/computes/read",
            )
            .await?;
        let r = load(&state, &ws, &p.name).await?;
        Ok((StatusCode::OK, json_of(&state, &ws, &r).await?))
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
            "computes",
            "Microsoft.MachineLearningServices/workspaces/computes/read",
        )
        .await?;
        let mut value = Vec::new();
        for r in children(&state, &ws, COMPUTES).await? {
            value.push(json_of(&state, &ws, &r).await?);
        }
        Ok((StatusCode::OK, json!({ "value": value })))
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
                "computes",
                "Microsoft.MachineLearningServices/workspaces/computes/delete",
            )
            .await?;
        let Ok(r) = load(&state, &ws, &p.name).await else {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        };
        delete_system_identity(&state, &r.id).await?;
        state.store.resource_delete(&r.id).await?;
        state.changed(Change::Rbac).await?;
        Ok((StatusCode::OK, Value::Null))
    })
    .await
}
