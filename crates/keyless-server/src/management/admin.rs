//! Server administration: tenants and signing keys. Reserved to Global
//! Administrators of the bootstrap tenant, since both reach across tenants.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use keyless_core::directory::DirectoryOperation;

use super::caller::{Caller, authenticate, require_directory};
use super::error::MgmtError;
use super::{Body, respond};
use crate::feed::Change;
use crate::state::SharedState;
use crate::{signing, tenancy};

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/admin/tenants", post(create_tenant))
        .route("/admin/signingKeys/rotate", post(rotate_keys))
        .route("/admin/masterKey/rotate", post(rotate_master))
}

async fn require_server_admin(
    state: &SharedState,
    caller: &Caller,
    op: DirectoryOperation,
) -> Result<(), MgmtError> {
    let bootstrap = state
        .store
        .setting("bootstrap.tenant")
        .await?
        .unwrap_or_default();
    if !caller
        .principal
        .tenant_id
        .to_string()
        .eq_ignore_ascii_case(&bootstrap)
    {
        return Err(MgmtError::forbidden(
            "Authorization_RequestDenied",
            "server administration is reserved to Global Administrators of the bootstrap tenant",
        ));
    }
    require_directory(state, caller, op).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    domain: String,
}

async fn create_tenant(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<NewTenant>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_server_admin(&state, &caller, DirectoryOperation::ManageRoles).await?;
        let domain = body.domain.trim().to_ascii_lowercase();
        let valid = domain.len() <= 253
            && domain.contains('.')
            && domain.split('.').all(|l| !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return Err(MgmtError::bad_request("InvalidDomain", format!("`{domain}` is not a valid domain name such as `contoso.local`")));
        }
        if state.store.tenant(&domain).await?.is_some() {
            return Err(MgmtError::new(StatusCode::CONFLICT, "TenantExists", format!("a tenant with the domain `{domain}` exists already")));
        }
        let plan = tenancy::plan(&domain)?;
        tenancy::create_tenant(state.store.as_ref(), &plan, &domain, state.now()).await?;
        state.changed(Change::Tenant(plan.tenant.clone())).await?;
        tracing::info!(actor = %caller.principal.object_id, tenant = %plan.tenant, "tenant created");
        Ok((StatusCode::CREATED, serde_json::to_value(&plan).map_err(|e| keyless_core::Error::internal(e.to_string()))?))
    })
    .await
}

/// `POST /admin/rotate-master-key`: reseals everything under a new master key.
async fn rotate_master(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_server_admin(&state, &caller, DirectoryOperation::ManageSigningKeys).await?;
        let resealed = crate::master::rotate(&state).await?;
        tracing::info!(actor = %caller.principal.object_id, "master key rotated");
        Ok((StatusCode::OK, json!({ "resealed": resealed })))
    })
    .await
}

async fn rotate_keys(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_server_admin(&state, &caller, DirectoryOperation::ManageSigningKeys).await?;
        let kid = signing::rotate(&state).await?;
        Ok((StatusCode::OK, json!({ "kid": kid })))
    })
    .await
}
