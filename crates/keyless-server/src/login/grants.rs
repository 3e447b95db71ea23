//! The token endpoints and their grants.

use axum::extract::{Path, RawForm, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use keyless_auth::secret;
use keyless_core::{ObjectId, Principal, PrincipalKind};

use super::client_auth::{self, Presented};
use super::issue::{self, Shape, Subject, TokenRequest, UserExtras};
use super::{OAuthError, PUBLIC_CLIENTS, Resource, TenantRef, resolve_tenant, resource};
use crate::http::ClientAddr;
use crate::state::SharedState;

/// The form fields of every grant; each grant reads the ones it needs.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
    username: Option<String>,
    password: Option<String>,
    refresh_token: Option<String>,
    device_code: Option<String>,
    assertion: Option<String>,
    requested_token_use: Option<String>,
    client_info: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
}

pub(crate) async fn token_v2(
    state: State<SharedState>,
    tenant: Path<String>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    form: RawForm,
) -> Response {
    token(state, tenant, client, headers, form, Shape::V2).await
}

pub(crate) async fn token_v1(
    state: State<SharedState>,
    tenant: Path<String>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    form: RawForm,
) -> Response {
    token(state, tenant, client, headers, form, Shape::V1).await
}

async fn token(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    RawForm(body): RawForm,
    shape: Shape,
) -> Response {
    let address = client.map(|Extension(ClientAddr(a))| a.ip());
    let result = async {
        let mut form: TokenForm = serde_urlencoded::from_bytes(&body).map_err(|e| {
            OAuthError::invalid_request(
                900144,
                format!("The request body is not a valid form: {e}."),
            )
        })?;
        basic_client_credentials(&headers, &mut form);
        if form
            .scope
            .as_ref()
            .is_some_and(|s| s.len() > super::MAX_SCOPE)
        {
            return Err(OAuthError::invalid_scope(
                70011,
                format!("The scope is longer than {} characters.", super::MAX_SCOPE),
            ));
        }
        let tenant = resolve_tenant(&state, &tenant).await?;
        let issued = grant(&state, &tenant, &form, shape, address).await?;
        crate::metrics::token_issued(grant_label(form.grant_type.as_deref()));
        Ok(issued)
    }
    .await;
    match result {
        Ok(body) => ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The grant type as a metric label: one of those keyless serves, never what a
/// client made up.
fn grant_label(grant_type: Option<&str>) -> &'static str {
    match grant_type {
        Some("client_credentials") => "client_credentials",
        Some("password") => "password",
        Some("refresh_token") => "refresh_token",
        Some("authorization_code") => "authorization_code",
        Some("urn:ietf:params:oauth:grant-type:device_code" | "device_code") => "device_code",
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => "jwt_bearer",
        Some("urn:ietf:params:oauth:grant-type:token-exchange") => "token_exchange",
        _ => "other",
    }
}

/// `client_secret_basic`: the client id and secret in an `Authorization: Basic` header.
fn basic_client_credentials(headers: &HeaderMap, form: &mut TokenForm) {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return;
    };
    let Some(decoded) = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return;
    };
    if let Some((id, secret)) = decoded.split_once(':') {
        form.client_id.get_or_insert_with(|| id.to_owned());
        form.client_secret.get_or_insert_with(|| secret.to_owned());
    }
}

async fn grant(
    state: &SharedState,
    tenant: &TenantRef,
    form: &TokenForm,
    shape: Shape,
    address: Option<std::net::IpAddr>,
) -> Result<serde_json::Value, OAuthError> {
    let presented = Presented {
        client_id: form.client_id.as_deref(),
        client_secret: form.client_secret.as_deref(),
        client_assertion: form.client_assertion.as_deref(),
        client_assertion_type: form.client_assertion_type.as_deref(),
    };
    let extras = UserExtras {
        id_token: form
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|x| x == "openid")),
        client_info: form.client_info.as_deref() == Some("1"),
        nonce: None,
    };
    match form.grant_type.as_deref() {
        Some("client_credentials") => {
            let client = client_auth::authenticate(state, tenant, presented).await?;
            let resource =
                requested_resource(state, client.principal.tenant_id, form, shape).await?;
            let request = TokenRequest {
                resource,
                client_id: app_id(&client.principal),
                client_auth: client.acr,
                job: None,
            };
            let subject = Subject::load(state, client.principal).await?;
            issue::respond(state, &subject, &request, shape, None).await
        }
        Some("password") => {
            let (client_id, acr) = public_or_confidential_client(state, tenant, presented).await?;
            let user = password_user(state, tenant, form, address).await?;
            let resource = requested_resource(state, user.tenant_id, form, shape).await?;
            let request = TokenRequest {
                resource,
                client_id,
                client_auth: acr,
                job: None,
            };
            let subject = Subject::load(state, user).await?;
            issue::respond(state, &subject, &request, shape, Some(&extras)).await
        }
        Some("refresh_token") => {
            let (client_id, acr) = public_or_confidential_client(state, tenant, presented).await?;
            let user = refresh_user(state, tenant, form, &client_id).await?;
            let resource = requested_resource(state, user.tenant_id, form, shape).await?;
            let request = TokenRequest {
                resource,
                client_id,
                client_auth: acr,
                job: None,
            };
            let subject = Subject::load(state, user).await?;
            issue::respond(state, &subject, &request, shape, Some(&extras)).await
        }
        Some("urn:ietf:params:oauth:grant-type:device_code" | "device_code") => {
            let (client_id, acr) = public_or_confidential_client(state, tenant, presented).await?;
            let (user, scope) =
                super::device::redeem(state, tenant, form.device_code.as_deref(), &client_id)
                    .await?;
            let resource = resource::from_scope(state, user.tenant_id, &scope).await?;
            let request = TokenRequest {
                resource,
                client_id,
                client_auth: acr,
                job: None,
            };
            let subject = Subject::load(state, user).await?;
            let extras = UserExtras {
                id_token: scope.split_whitespace().any(|x| x == "openid"),
                ..extras
            };
            issue::respond(state, &subject, &request, shape, Some(&extras)).await
        }
        Some("authorization_code") => {
            let (client_id, acr) = public_or_confidential_client(state, tenant, presented).await?;
            let (user, code) = super::authorize::redeem(
                state,
                tenant,
                &client_id,
                form.code.as_deref(),
                form.redirect_uri.as_deref(),
                form.code_verifier.as_deref(),
            )
            .await?;
            let resource = resource::from_scope(state, user.tenant_id, &code.scope).await?;
            let request = TokenRequest {
                resource,
                client_id,
                client_auth: acr,
                job: None,
            };
            let subject = Subject::load(state, user).await?;
            let extras = UserExtras {
                id_token: code.scope.split_whitespace().any(|x| x == "openid"),
                nonce: code.nonce.as_deref(),
                ..extras
            };
            issue::respond(state, &subject, &request, shape, Some(&extras)).await
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            if form.requested_token_use.as_deref() != Some("on_behalf_of") {
                return Err(OAuthError::invalid_request(
                    50034,
                    "jwt-bearer grants need requested_token_use=on_behalf_of; keyless supports the on-behalf-of flow only.",
                ));
            }
            let client = client_auth::authenticate(state, tenant, presented).await?;
            let user =
                on_behalf_of_user(state, &client.principal, form.assertion.as_deref()).await?;
            let resource = requested_resource(state, user.tenant_id, form, shape).await?;
            let request = TokenRequest {
                resource,
                client_id: app_id(&client.principal),
                client_auth: client.acr,
                job: None,
            };
            let subject = Subject::load(state, user).await?;
            issue::respond(
                state,
                &subject,
                &request,
                shape,
                Some(&UserExtras {
                    id_token: false,
                    client_info: false,
                    nonce: None,
                }),
            )
            .await
        }
        Some(other) => Err(OAuthError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!(
                "The app requested an unsupported grant type '{other}'. Supported: client_credentials, password, authorization_code, refresh_token, urn:ietf:params:oauth:grant-type:device_code, urn:ietf:params:oauth:grant-type:jwt-bearer."
            ),
        )),
        None => Err(OAuthError::invalid_request(
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        )),
    }
}

async fn requested_resource(
    state: &SharedState,
    tenant: keyless_core::TenantId,
    form: &TokenForm,
    shape: Shape,
) -> Result<Resource, OAuthError> {
    match (shape, form.resource.as_deref(), form.scope.as_deref()) {
        (Shape::V1, Some(r), _) => resource::from_resource(state, tenant, r).await,
        (_, _, Some(scope)) => resource::from_scope(state, tenant, scope).await,
        (_, Some(r), None) => resource::from_resource(state, tenant, r).await,
        (_, None, None) => Err(OAuthError::invalid_scope(
            70011,
            "The request must name a resource: `scope=<resource>/.default` (v2) or `resource=<resource>` (v1).",
        )),
    }
}

/// A public client (a well-known first-party id, or an application of the tenant
/// that presents no credential) or a confidential one that authenticates.
async fn public_or_confidential_client(
    state: &SharedState,
    tenant: &TenantRef,
    presented: Presented<'_>,
) -> Result<(String, &'static str), OAuthError> {
    let client_id = presented.client_id.unwrap_or_default();
    if PUBLIC_CLIENTS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(client_id))
    {
        return Ok((client_id.to_ascii_lowercase(), "0"));
    }
    if presented.client_secret.is_some() || presented.client_assertion.is_some() {
        let client = client_auth::authenticate(state, tenant, presented).await?;
        return Ok((app_id(&client.principal), client.acr));
    }
    let app = client_auth::find_app(state, tenant, presented.client_id).await?;
    // An application with a credential is confidential: its id alone proves
    // nothing, and would let anyone put it in `appid` of tokens and logs.
    if !state.store.credentials(app.object_id).await?.is_empty() {
        return Err(OAuthError::invalid_client(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'. The application has credentials, so it must present one.",
        ));
    }
    Ok((app_id(&app), "0"))
}

async fn password_user(
    state: &SharedState,
    tenant: &TenantRef,
    form: &TokenForm,
    address: Option<std::net::IpAddr>,
) -> Result<Principal, OAuthError> {
    let (Some(username), Some(password)) = (form.username.as_deref(), form.password.as_deref())
    else {
        return Err(OAuthError::invalid_request(
            900144,
            "The request body must contain the parameters 'username' and 'password'.",
        ));
    };
    if state
        .sign_ins
        .locked(state.store.as_ref(), username, address, state.now())
        .await?
    {
        return Err(locked_out());
    }
    let invalid = || {
        OAuthError::invalid_grant(
            50126,
            "Error validating credentials due to invalid username or password.",
        )
    };
    let user = state
        .store
        .principal_by_upn(username)
        .await?
        .filter(|u| u.kind == PrincipalKind::User && tenant.admits(u.tenant_id));
    let hash = match &user {
        Some(u) => state.store.password_hash(u.object_id).await?,
        None => None,
    };
    // Hashed even when the user does not exist, so timing does not reveal which names exist.
    let matches = state.sign_ins.verify(password, hash).await;
    let Some(user) = user.filter(|_| matches) else {
        state
            .sign_ins
            .failed(state.store.as_ref(), username, address, state.now())
            .await?;
        return Err(invalid());
    };
    state
        .sign_ins
        .succeeded(state.store.as_ref(), username)
        .await?;
    ensure_enabled(&user)?;
    Ok(user)
}

/// Entra's smart lockout answer.
pub(super) fn locked_out() -> OAuthError {
    OAuthError::invalid_grant(
        50053,
        format!(
            "Your account is locked because you tried to sign in too many times with an incorrect user ID or password. Wait {} seconds and try again.",
            super::lockout::LOCKOUT
        ),
    )
}

async fn refresh_user(
    state: &SharedState,
    tenant: &TenantRef,
    form: &TokenForm,
    client_id: &str,
) -> Result<Principal, OAuthError> {
    let token = form.refresh_token.as_deref().unwrap_or_default();
    let invalid = |why: &str| {
        OAuthError::invalid_grant(
            9002313,
            format!("Invalid request: the refresh token {why}. Sign in again (`keyless login`)."),
        )
    };
    let grant = state
        .store
        .refresh_token_take(&secret::digest_secret(token), client_id)
        .await?
        .ok_or_else(|| invalid("is unknown, was already used, or was issued to another client"))?;
    if grant.expires_at <= state.now() {
        return Err(OAuthError::invalid_grant(
            700082,
            "The refresh token has expired due to inactivity. Sign in again (`keyless login`).",
        ));
    }
    if !tenant.admits(grant.tenant_id) {
        return Err(invalid("belongs to another tenant"));
    }
    let user = state
        .store
        .principal(grant.principal_id)
        .await?
        .ok_or_else(|| invalid("belongs to a deleted user"))?;
    ensure_enabled(&user)?;
    Ok(user)
}

async fn on_behalf_of_user(
    state: &SharedState,
    client: &Principal,
    assertion: Option<&str>,
) -> Result<Principal, OAuthError> {
    let app = app_id(client);
    let audiences = [format!("api://{app}"), app.clone()];
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    let assertion = assertion.ok_or_else(|| {
        OAuthError::invalid_request(
            900144,
            "The request body must contain the following parameter: 'assertion'.",
        )
    })?;
    let claims = state
        .verifier
        .verify(assertion, &audiences, state.now())
        .map_err(|e| OAuthError::invalid_grant(50013, format!("Assertion failed validation: {e}. The assertion must be a user's token for `api://{app}`.")))?;
    if claims.tid != client.tenant_id.to_string() {
        return Err(OAuthError::invalid_grant(
            50013,
            "The assertion belongs to another tenant than the application.",
        ));
    }
    let oid = ObjectId::parse(&claims.oid)?;
    let user = state
        .store
        .principal(oid)
        .await?
        .filter(|p| p.kind == PrincipalKind::User)
        .ok_or_else(|| {
            OAuthError::invalid_grant(
                50013,
                "The on-behalf-of flow needs a user's token as the assertion.",
            )
        })?;
    ensure_enabled(&user)?;
    Ok(user)
}

fn ensure_enabled(user: &Principal) -> Result<(), OAuthError> {
    if user.enabled {
        return Ok(());
    }
    Err(OAuthError::invalid_grant(
        50057,
        "The user account is disabled. An administrator can enable it with `keyless ad user update --account-enabled true`.",
    ))
}

fn app_id(p: &Principal) -> String {
    p.app_id.map(|a| a.to_string()).unwrap_or_default()
}
