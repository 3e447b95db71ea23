//! Who is calling the management listener, and what they may do.

use std::sync::Arc;

use axum::http::HeaderMap;

use keyless_auth::{Claims, VerifyError};
use keyless_core::directory::{DirectoryOperation, DirectoryRole};
use keyless_core::rbac::{AccessRequest, Permission};
use keyless_core::{ObjectId, Principal, ResourceId};

use super::error::MgmtError;
use crate::http::bearer;
use crate::login::resource::MANAGEMENT;
use crate::state::SharedState;

/// The audiences the management listener accepts: ARM's two names, and Azure
/// ML's, which the ML SDK sends to its workspace operations.
pub(crate) const ACCEPTED: [&str; 3] = [MANAGEMENT[0], MANAGEMENT[1], crate::cloud::ML_AUDIENCE];

/// An authenticated caller.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) claims: Arc<Claims>,
    pub(crate) principal: Principal,
    pub(crate) groups: Vec<ObjectId>,
}

impl Caller {
    /// The caller's name for messages: its UPN, or its object id.
    pub(crate) fn name(&self) -> String {
        self.principal
            .user_principal_name
            .clone()
            .unwrap_or_else(|| self.principal.object_id.to_string())
    }

    pub(crate) fn ids(&self) -> Vec<ObjectId> {
        let mut ids = Vec::with_capacity(1 + self.groups.len());
        ids.push(self.principal.object_id);
        ids.extend(self.groups.iter().copied());
        ids
    }
}

/// Authenticates a management request by its bearer token.
pub(crate) async fn authenticate(
    state: &SharedState,
    headers: &HeaderMap,
) -> Result<Caller, MgmtError> {
    authenticate_for(state, headers, &ACCEPTED).await
}

/// Authenticates a request by a bearer token for one of `audiences`.
pub(crate) async fn authenticate_for(
    state: &SharedState,
    headers: &HeaderMap,
    audiences: &[&str],
) -> Result<Caller, MgmtError> {
    let Some(token) = bearer(headers) else {
        return Err(MgmtError::unauthenticated(
            "AuthenticationFailed",
            format!(
                "Authentication failed. The 'Authorization' header is missing. Sign in with `keyless login` and send a bearer token for {}.",
                audiences.first().copied().unwrap_or_default()
            ),
        ));
    };
    let claims = state
        .verifier
        .verify(token, audiences, state.now())
        .map_err(|e| match e {
            VerifyError::Expired(_) => MgmtError::unauthenticated(
                "ExpiredAuthenticationToken",
                format!("The access token expiry UTC time is in the past: {e}."),
            ),
            VerifyError::Audience { .. } => MgmtError::unauthenticated(
                "InvalidAuthenticationTokenAudience",
                format!("The access token has been obtained for wrong audience or resource: {e}."),
            ),
            other => MgmtError::unauthenticated(
                "InvalidAuthenticationToken",
                format!("The access token is invalid: {other}."),
            ),
        })?;
    let oid = ObjectId::parse(&claims.oid).map_err(|_| {
        MgmtError::unauthenticated(
            "InvalidAuthenticationToken",
            "The access token has a malformed 'oid'.",
        )
    })?;
    let principal = state
        .store
        .principal(oid)
        .await?
        .filter(|p| p.enabled)
        .ok_or_else(|| {
            MgmtError::unauthenticated(
                "InvalidAuthenticationToken",
                "The principal of the access token no longer exists or is disabled.",
            )
        })?;
    let groups = state.store.transitive_groups(oid).await?;
    Ok(Caller {
        claims,
        principal,
        groups,
    })
}

/// Requires a directory role that permits `operation`.
pub(crate) async fn require_directory(
    state: &SharedState,
    caller: &Caller,
    operation: DirectoryOperation,
) -> Result<(), MgmtError> {
    for id in caller.ids() {
        for role in state.store.directory_roles(id).await? {
            if DirectoryRole::parse(&role).is_ok_and(|r| r.permits(operation)) {
                return Ok(());
            }
        }
    }
    Err(MgmtError::forbidden(
        "Authorization_RequestDenied",
        format!(
            "Insufficient privileges to complete the operation: '{}' needs the directory role '{}' (or Global Administrator). A Global Administrator can grant it with `keyless ad role assign`.",
            caller.name(),
            operation.least_role().as_str()
        ),
    ))
}

/// Whether the caller holds `action` at `scope`: the check alone, without the
/// explanation a refusal carries, for filtering lists.
pub(crate) fn may(state: &SharedState, caller: &Caller, action: &str, scope: &ResourceId) -> bool {
    let ids = caller.ids();
    state
        .rbac()
        .check(&AccessRequest {
            tenant: caller.principal.tenant_id,
            principals: &ids,
            permission: Permission::Action(action),
            scope,
        })
        .is_allowed()
}

/// The items of an ARM list the caller may read: ARM shows each resource to those
/// holding its read action and leaves the others out.
pub(crate) fn readable<T>(
    state: &SharedState,
    caller: &Caller,
    action: &str,
    items: impl IntoIterator<Item = T>,
    id: impl Fn(&T) -> &str,
) -> Vec<T> {
    items
        .into_iter()
        .filter(|item| {
            ResourceId::parse(id(item)).is_ok_and(|scope| may(state, caller, action, &scope))
        })
        .collect()
}

/// A principal's object id with its groups (transitively), as RBAC matches them.
pub(crate) async fn principal_ids(
    state: &SharedState,
    principal: &Principal,
) -> Result<Vec<ObjectId>, MgmtError> {
    let mut ids = vec![principal.object_id];
    if principal.kind != keyless_core::PrincipalKind::Group {
        ids.extend(state.store.transitive_groups(principal.object_id).await?);
    }
    Ok(ids)
}

/// Requires an Azure RBAC `action` at `scope`, which must lie in the caller's tenant.
pub(crate) async fn authorize(
    state: &SharedState,
    caller: &Caller,
    action: &str,
    scope: &ResourceId,
) -> Result<(), MgmtError> {
    let index = state.rbac();
    let ids = caller.ids();
    let request = AccessRequest {
        tenant: caller.principal.tenant_id,
        principals: &ids,
        permission: Permission::Action(action),
        scope,
    };
    if index.allows(&request) {
        return Ok(());
    }
    let explanation = index.explain(&request).explanation();
    Err(MgmtError::forbidden(
        "AuthorizationFailed",
        format!(
            "The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials. ({explanation})",
            caller.name(),
            caller.principal.object_id
        ),
    ))
}

/// Checks that a subscription exists and belongs to the caller's tenant.
pub(crate) async fn subscription_of_caller(
    state: &SharedState,
    caller: &Caller,
    subscription_id: &str,
) -> Result<(), MgmtError> {
    let Some(sub) = state.store.subscription(subscription_id).await? else {
        return Err(MgmtError::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{subscription_id}' could not be found."),
        ));
    };
    if sub.tenant_id != caller.principal.tenant_id {
        return Err(MgmtError::unauthenticated(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{}'. It must match the tenant '{}' associated with this subscription. Please use the authority for that tenant to obtain a new token.",
                caller.claims.iss, sub.tenant_id
            ),
        ));
    }
    Ok(())
}

/// Authenticates the caller, checks the subscription is of its tenant, and
/// requires `action` at `scope`: the common opening of ARM handlers.
pub(crate) async fn authorized(
    state: &SharedState,
    headers: &HeaderMap,
    subscription_id: &str,
    action: &str,
    scope: &ResourceId,
) -> Result<Caller, MgmtError> {
    let caller = authenticate(state, headers).await?;
    subscription_of_caller(state, &caller, subscription_id).await?;
    authorize(state, &caller, action, scope).await?;
    Ok(caller)
}
