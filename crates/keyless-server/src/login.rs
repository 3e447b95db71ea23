//! The token service at Entra's paths: OIDC discovery, JWKS, the v1 and v2 token
//! endpoints, device code sign-in and the discovery documents MSAL reads.

mod authorize;
mod client_auth;
pub(crate) mod data_access;
mod device;
mod error;
mod grants;
pub(crate) mod issue;
pub(crate) mod lockout;

/// Entry points of the fuzz targets (feature `fuzzing`).
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    /// Reads a token endpoint's form body, as the endpoint does.
    pub(crate) fn token_form(body: &[u8]) {
        let _ = serde_urlencoded::from_bytes::<super::grants::TokenForm>(body);
    }
}
pub(crate) mod resource;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use keyless_core::TenantId;
use keyless_store::Tenant;

pub(crate) use error::OAuthError;
pub(crate) use resource::Resource;

use crate::state::SharedState;

/// Public clients every tenant knows: the Azure CLI (which keyless's own CLI and
/// azure-identity's developer credentials use) and Azure PowerShell.
pub(crate) const PUBLIC_CLIENTS: [&str; 2] = [
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
    "1950a258-227b-4e31-a9cf-717495945fc2",
];

/// The longest `scope` the token and device-code endpoints take.
pub(crate) const MAX_SCOPE: usize = 2048;

/// The largest form body the login listener reads: forms are small, and a large
/// one is refused before it is read.
const MAX_BODY: usize = 64 * 1024;

/// The router of the login listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new()
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route(
            "/{tenant}/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .route("/common/discovery/instance", get(instance_discovery))
        .route("/common/userrealm/{username}", get(user_realm))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            get(authorize::page).post(authorize::sign_in),
        )
        .route(
            "/{tenant}/oauth2/authorize",
            get(authorize::page).post(authorize::sign_in),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(grants::token_v2))
        .route("/{tenant}/oauth2/token", post(grants::token_v1))
        .route(
            "/{tenant}/oauth2/v2.0/devicecode",
            post(device::device_code),
        )
        .route("/{tenant}/oauth2/devicecode", post(device::device_code))
        .route("/devicelogin", get(device::page).post(device::approve))
        .route("/keyless/data-access/sessions", post(data_access::open))
        .route("/keyless/data-access/token", get(data_access::token))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Which tenant a path segment names.
#[derive(Debug, Clone)]
pub(crate) enum TenantRef {
    /// One tenant.
    One(Tenant),
    /// `common` or `organizations`: the principal's own tenant.
    Any,
}

impl TenantRef {
    pub(crate) fn admits(&self, tenant_id: TenantId) -> bool {
        match self {
            Self::One(t) => t.id == tenant_id,
            Self::Any => true,
        }
    }
}

/// Resolves a tenant path segment: an id, a domain, `adfs` (the bootstrap
/// tenant), or `common`/`organizations`.
pub(crate) async fn resolve_tenant(
    state: &SharedState,
    segment: &str,
) -> Result<TenantRef, OAuthError> {
    if segment.eq_ignore_ascii_case("common") || segment.eq_ignore_ascii_case("organizations") {
        return Ok(TenantRef::Any);
    }
    let key = if segment.eq_ignore_ascii_case("adfs") {
        state
            .store
            .setting("bootstrap.tenant")
            .await?
            .unwrap_or_default()
    } else {
        segment.to_owned()
    };
    match state.store.tenant(&key).await? {
        Some(t) => Ok(TenantRef::One(t)),
        None => Err(OAuthError::invalid_request(
            90002,
            format!(
                "Tenant '{segment}' not found. Check the tenant id or domain; `keyless account show` prints yours."
            ),
        )),
    }
}

async fn openid_configuration(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
) -> Response {
    let resolved = match resolve_tenant(&state, &tenant).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let base = &state.urls.login;
    let issuer = match &resolved {
        TenantRef::One(t) if !tenant.eq_ignore_ascii_case("adfs") => {
            state.verifier.issuer(&t.id.to_string())
        }
        _ => format!("{base}/{tenant}"),
    };
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "grant_types_supported": [
            "client_credentials", "password", "authorization_code", "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "name", "preferred_username", "upn"],
        "tenant_region_scope": null,
        "cloud_instance_name": "keyless",
        "cloud_graph_host_name": "",
        "msgraph_host": "",
    }))
    .into_response()
}

async fn jwks(State(state): State<SharedState>, Path(tenant): Path<String>) -> Response {
    if let Err(e) = resolve_tenant(&state, &tenant).await {
        return e.into_response();
    }
    let ring = state.verifier.ring();
    Json(json!({ "keys": ring.jwks() })).into_response()
}

async fn instance_discovery(State(state): State<SharedState>) -> Response {
    let host = state.urls.login.trim_start_matches("https://").to_owned();
    Json(json!({
        "tenant_discovery_endpoint": format!("{}/common/v2.0/.well-known/openid-configuration", state.urls.login),
        "api-version": "1.1",
        "metadata": [{ "preferred_network": host, "preferred_cache": host, "aliases": [host] }],
    }))
    .into_response()
}

/// MSAL asks where a user's account lives before a password sign-in; keyless
/// accounts are always managed by keyless itself.
async fn user_realm(State(state): State<SharedState>, Path(username): Path<String>) -> Response {
    let domain = username
        .rsplit_once('@')
        .map(|(_, d)| d.to_owned())
        .unwrap_or_default();
    let _ = state;
    Json(json!({
        "ver": "1.0",
        "account_type": "Managed",
        "domain_name": domain,
        "cloud_instance_name": "keyless",
        "cloud_audience_urn": "urn:federation:MicrosoftOnline",
    }))
    .into_response()
}
