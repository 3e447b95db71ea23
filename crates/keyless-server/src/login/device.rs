//! Device-code sign-in: a client asks for a code, a person approves it on the
//! verification page, and the client redeems it for tokens.

use axum::Json;
use axum::extract::{Path, RawForm, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use keyless_auth::secret;
use keyless_core::{Principal, PrincipalKind};
use keyless_store::DeviceCode;

use super::client_auth::DEVICE_CODE_LIFETIME;
use super::{OAuthError, PUBLIC_CLIENTS, TenantRef, client_auth, resolve_tenant};
use crate::state::SharedState;

#[derive(Debug, Deserialize)]
struct CodeForm {
    client_id: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/devicecode`.
pub(crate) async fn device_code(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    RawForm(body): RawForm,
) -> Response {
    match start(&state, &tenant, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn start(
    state: &SharedState,
    tenant: &str,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let form: CodeForm = serde_urlencoded::from_bytes(body).map_err(|e| {
        OAuthError::invalid_request(
            900144,
            format!("The request body is not a valid form: {e}."),
        )
    })?;
    let resolved = resolve_tenant(state, tenant).await?;
    let client_id = form.client_id.clone().unwrap_or_default();
    if !PUBLIC_CLIENTS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&client_id))
    {
        client_auth::find_app(state, &resolved, form.client_id.as_deref()).await?;
    }
    let tenant_id = match resolved {
        TenantRef::One(t) => t.id,
        TenantRef::Any => {
            let bootstrap = state
                .store
                .setting("bootstrap.tenant")
                .await?
                .unwrap_or_default();
            keyless_core::TenantId::parse(&bootstrap)?
        }
    };
    let scope = match (form.scope, form.resource) {
        (Some(s), _) => s,
        (None, Some(r)) => format!(
            "{}/.default openid profile offline_access",
            r.trim_end_matches('/')
        ),
        (None, None) => {
            return Err(OAuthError::invalid_scope(
                70011,
                "The request must include a 'scope' naming a resource.",
            ));
        }
    };
    if scope.len() > super::MAX_SCOPE {
        return Err(OAuthError::invalid_scope(
            70011,
            format!("The scope is longer than {} characters.", super::MAX_SCOPE),
        ));
    }
    // Codes nobody approved in time are deleted, so unanswered requests cannot pile up.
    state.store.device_codes_expire(state.now()).await?;
    let device_code = secret::random_token()?;
    let user_code = user_code()?;
    let lifetime = i64::try_from(DEVICE_CODE_LIFETIME.as_secs()).unwrap_or(900);
    state
        .store
        .device_code_add(&DeviceCode {
            digest: secret::digest_secret(&device_code),
            user_code: user_code.clone(),
            tenant_id,
            client_id: client_id.to_ascii_lowercase(),
            scope,
            expires_at: state.now() + lifetime,
            approved_by: None,
        })
        .await?;
    let uri = format!("{}/devicelogin", state.urls.login);
    Ok(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": uri,
        "verification_url": uri,
        "expires_in": lifetime,
        "interval": state.config.device_code_interval,
        "message": format!("To sign in, use a web browser to open the page {uri} and enter the code {user_code} to authenticate."),
    }))
}

fn user_code() -> Result<String, keyless_core::Error> {
    // Letters that cannot be confused with each other or with digits.
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    let bytes = secret::random_bytes(9)?;
    Ok(bytes
        .iter()
        .map(|b| {
            char::from(
                ALPHABET
                    .get(usize::from(*b) % ALPHABET.len())
                    .copied()
                    .unwrap_or(b'B'),
            )
        })
        .collect())
}

/// Redeems an approved device code; `authorization_pending` until a person approves it.
pub(crate) async fn redeem(
    state: &SharedState,
    tenant: &TenantRef,
    device_code: Option<&str>,
    client_id: &str,
) -> Result<(Principal, String), OAuthError> {
    let code = device_code.ok_or_else(|| {
        OAuthError::invalid_request(
            900144,
            "The request body must contain the following parameter: 'device_code'.",
        )
    })?;
    let Some(pending) = state
        .store
        .device_code_poll(&secret::digest_secret(code))
        .await?
    else {
        return Err(OAuthError::invalid_grant(
            70000,
            "The device code is unknown or was already redeemed; start the sign-in again.",
        ));
    };
    if pending.expires_at <= state.now() {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "expired_token",
            70020,
            "The device code expired before anyone approved it; start the sign-in again.",
        ));
    }
    if !pending.client_id.eq_ignore_ascii_case(client_id) || !tenant.admits(pending.tenant_id) {
        return Err(OAuthError::invalid_grant(
            70000,
            "The device code was issued to another client or tenant.",
        ));
    }
    let Some(user_id) = pending.approved_by else {
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ));
    };
    let user =
        state.store.principal(user_id).await?.ok_or_else(|| {
            OAuthError::invalid_grant(70000, "The approving user no longer exists.")
        })?;
    Ok((user, pending.scope))
}

/// `GET /devicelogin`: the verification page.
pub(crate) async fn page() -> Html<String> {
    Html(form_page(""))
}

#[derive(Debug, Deserialize)]
struct ApproveForm {
    user_code: String,
    username: String,
    password: String,
}

/// `POST /devicelogin`: a person approves a code with their credentials.
pub(crate) async fn approve(
    State(state): State<SharedState>,
    client: Option<axum::Extension<crate::http::ClientAddr>>,
    RawForm(body): RawForm,
) -> Response {
    let address = client.map(|axum::Extension(crate::http::ClientAddr(a))| a.ip());
    let Ok(form) = serde_urlencoded::from_bytes::<ApproveForm>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(form_page(
                "Fill in the code, your user name and your password.",
            )),
        )
            .into_response();
    };
    match approve_code(&state, &form, address).await {
        Ok(name) => Html(format!(
            "<!doctype html><title>keyless sign-in</title><h1>Signed in</h1><p>You have signed in as {} on the device. You may close this page.</p>",
            escape(&name)
        ))
        .into_response(),
        Err((status, message)) => (status, Html(form_page(&message))).into_response(),
    }
}

async fn approve_code(
    state: &SharedState,
    form: &ApproveForm,
    address: Option<std::net::IpAddr>,
) -> Result<String, (StatusCode, String)> {
    let internal = |e: keyless_core::Error| {
        tracing::error!(error = %e, "device approval failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error".to_owned(),
        )
    };
    let code = form.user_code.trim().to_ascii_uppercase().replace('-', "");
    let pending = state
        .store
        .device_code_by_user_code(&code)
        .await
        .map_err(internal)?;
    let pending = pending
        .filter(|p| p.expires_at > state.now() && p.approved_by.is_none())
        .ok_or((
            StatusCode::BAD_REQUEST,
            "That code is unknown or has expired. Start the sign-in on your device again."
                .to_owned(),
        ))?;
    let user = check_password(state, &form.username, &form.password, address).await?;
    if user.tenant_id != pending.tenant_id {
        return Err((
            StatusCode::FORBIDDEN,
            "Your account belongs to another tenant than the one the device asked for.".to_owned(),
        ));
    }
    state
        .store
        .device_code_approve(&code, user.object_id)
        .await
        .map_err(internal)?;
    Ok(user.user_principal_name.unwrap_or(user.display_name))
}

/// Checks a user's name and password typed into a sign-in page, under the
/// lockout rules of every password sign-in; the refusal is a page's message.
pub(super) async fn check_password(
    state: &SharedState,
    username: &str,
    password: &str,
    address: Option<std::net::IpAddr>,
) -> Result<keyless_core::Principal, (StatusCode, String)> {
    let internal = |e: keyless_core::Error| {
        tracing::error!(error = %e, "sign-in failed");
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error".to_owned(),
        )
    };
    let username = username.trim();
    if state
        .sign_ins
        .locked(state.store.as_ref(), username, address, state.now())
        .await
        .map_err(internal)?
    {
        return Err((
            StatusCode::TOO_MANY_REQUESTS,
            "Your account is locked because of too many sign-ins with a wrong password. Wait a minute and try again.".to_owned(),
        ));
    }
    let refused = (
        StatusCode::UNAUTHORIZED,
        "The user name or password is incorrect.".to_owned(),
    );
    let user = state
        .store
        .principal_by_upn(username)
        .await
        .map_err(internal)?
        .filter(|u| u.kind == PrincipalKind::User);
    let hash = match &user {
        Some(u) => state
            .store
            .password_hash(u.object_id)
            .await
            .map_err(internal)?,
        None => None,
    };
    // Hashed whether or not the user exists: the answer takes as long either way.
    let ok = state.sign_ins.verify(password, hash).await;
    let Some(user) = user.filter(|_| ok) else {
        state
            .sign_ins
            .failed(state.store.as_ref(), username, address, state.now())
            .await
            .map_err(internal)?;
        return Err(refused);
    };
    state
        .sign_ins
        .succeeded(state.store.as_ref(), username)
        .await
        .map_err(internal)?;
    if !user.enabled {
        return Err((
            StatusCode::FORBIDDEN,
            "Your account is disabled.".to_owned(),
        ));
    }
    Ok(user)
}

fn form_page(message: &str) -> String {
    format!(
        "<!doctype html><title>keyless sign-in</title><h1>Sign in to a device</h1><p>{}</p>\
         <form method=post action=/devicelogin>\
         <label>Code <input name=user_code autocomplete=off></label><br>\
         <label>User name <input name=username></label><br>\
         <label>Password <input name=password type=password></label><br>\
         <button>Sign in</button></form>",
        escape(message)
    )
}

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
