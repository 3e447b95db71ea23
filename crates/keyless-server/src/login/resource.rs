//! Which resource (audience) a requested scope names.

use keyless_core::{ClientId, PrincipalKind, TenantId};

use super::OAuthError;
use crate::state::SharedState;

/// Resources every tenant can request tokens for, by their identifier URIs.
pub(crate) const STORAGE: &str = "https://storage.azure.com";
/// The key vault resource.
pub(crate) const VAULT: &str = "https://vault.azure.net";
/// Container registries' token exchange: the audience ACR's clients ask for
/// (the resource manager's names are taken too).
pub(crate) const CONTAINER_REGISTRY: &str = "https://containerregistry.azure.net";
/// Microsoft Graph, which keyless serves on the management listener under
/// `/graph` (the cloud document's `microsoftGraphResourceId`).
pub(crate) const GRAPH: &str = "https://graph.microsoft.com";
/// The management resource, under both of its names.
pub(crate) const MANAGEMENT: [&str; 2] = [
    "https://management.azure.com",
    "https://management.core.windows.net",
];

/// The resource a token is for, and the delegated scope of a user token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    /// The `aud` claim.
    pub(crate) audience: String,
    /// The scope as the client spelled it, echoed in v2 responses.
    pub(crate) scope: String,
}

const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "offline_access", "email"];

/// Finds the resource of a v2 `scope` parameter (space-separated; OIDC scopes ignored).
pub(crate) async fn from_scope(
    state: &SharedState,
    tenant: TenantId,
    scope: &str,
) -> Result<Resource, OAuthError> {
    let mut wanted = scope
        .split_whitespace()
        .filter(|s| !OIDC_SCOPES.iter().any(|o| o.eq_ignore_ascii_case(s)));
    let Some(first) = wanted.next() else {
        return Err(OAuthError::invalid_scope(
            70011,
            "The provided request must include a 'scope' input parameter naming a resource, e.g. `https://storage.azure.com/.default`.",
        ));
    };
    if wanted.next().is_some() {
        return Err(OAuthError::invalid_scope(
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid: ask for one resource at a time, not `{scope}`."
            ),
        ));
    }
    let resource = match first.strip_suffix("/.default") {
        Some(r) => r,
        None => first
            .rsplit_once('/')
            .map(|(r, _)| r)
            .filter(|r| !r.ends_with(':') && !r.ends_with('/'))
            .unwrap_or(first),
    };
    let audience = canonical(state, tenant, resource).await?;
    Ok(Resource {
        audience,
        scope: first.to_owned(),
    })
}

/// Finds the resource of a v1 `resource` parameter.
pub(crate) async fn from_resource(
    state: &SharedState,
    tenant: TenantId,
    resource: &str,
) -> Result<Resource, OAuthError> {
    let audience = canonical(state, tenant, resource).await?;
    Ok(Resource {
        audience,
        scope: format!("{}/.default", resource.trim_end_matches('/')),
    })
}

async fn canonical(
    state: &SharedState,
    tenant: TenantId,
    resource: &str,
) -> Result<String, OAuthError> {
    let trimmed = resource.trim_end_matches('/');
    let same = |known: &str| known.eq_ignore_ascii_case(trimmed);
    if same(STORAGE) || same(VAULT) || same(CONTAINER_REGISTRY) {
        return Ok(trimmed.to_ascii_lowercase());
    }
    if MANAGEMENT.iter().any(|m| same(m)) {
        return Ok(format!("{}/", trimmed.to_ascii_lowercase()));
    }
    // The resource manager of the keyless cloud document is the management
    // listener itself; its tokens are management tokens.
    if same(state.urls.management.trim_end_matches('/')) {
        return Ok(format!("{}/", MANAGEMENT[0]));
    }
    // Graph, by its public name or by the keyless cloud's, which is its URL.
    if same(GRAPH) || same(crate::cloud::graph_url(&state.urls).trim_end_matches('/')) {
        return Ok(GRAPH.to_owned());
    }
    // Azure ML's audience: the SDK checks `aud` for exactly this string.
    if same(crate::cloud::ML_AUDIENCE) {
        return Ok(crate::cloud::ML_AUDIENCE.to_owned());
    }
    // An application of the tenant, by `api://<appId>` or its bare app id: the
    // audience of tokens that middle-tier services exchange on behalf of users.
    let app = trimmed.strip_prefix("api://").unwrap_or(trimmed);
    if let Ok(app_id) = ClientId::parse(app)
        && let Some(p) = state.store.principal_by_app_id(app_id).await?
        && p.tenant_id == tenant
        && p.kind == PrincipalKind::ServicePrincipal
    {
        return Ok(format!("api://{app_id}"));
    }
    Err(OAuthError::invalid_scope(
        500011,
        format!(
            "The resource principal named {resource} was not found in the tenant. Known resources: {STORAGE}, {VAULT}, {CONTAINER_REGISTRY}, {}, {GRAPH}, {}, and api://<appId> of the tenant's applications.",
            MANAGEMENT[0],
            crate::cloud::ML_AUDIENCE
        ),
    ))
}
