//! The browser sign-in: the authorization code grant with PKCE (RFC 7636) on a
//! loopback redirect URI (RFC 8252), which `az login`, azure-identity's
//! `InteractiveBrowserCredential` and MSAL's `acquire_token_interactive` use.
//!
//! `GET /{tenant}/oauth2/v2.0/authorize` checks the request and shows a sign-in
//! page; its form posts back to the same address with the user's name and
//! password; a good sign-in redirects the browser to the client's loopback
//! address with a code, which the client redeems at the token endpoint with its
//! PKCE verifier. keyless keeps no browser session, so every sign-in asks for
//! the password and `prompt=none` is answered with `login_required`.
//!
//! Nothing is ever redirected to an address that was not checked: a request with
//! an unknown client or a redirect URI that is not loopback gets an error page.

use axum::extract::{Path, RawForm, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use keyless_auth::secret;
use keyless_core::Principal;
use keyless_store::AuthorizationCode;

use super::device::{check_password, escape};
use super::{OAuthError, PUBLIC_CLIENTS, TenantRef, client_auth, resolve_tenant};
use crate::state::SharedState;

/// How long a code may wait for its redemption.
const CODE_LIFETIME: i64 = 300;

/// The parameters of an authorization request (and, in the sign-in form, the
/// same again with the user's credentials). Parameters keyless does not use,
/// such as MSAL's `x-client-*` telemetry or `client_info`, are ignored.
#[derive(Debug, Default, Deserialize)]
struct Request {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    login_hint: Option<String>,
    response_mode: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// A checked request.
struct Checked {
    tenant: TenantRef,
    client_id: String,
    redirect_uri: String,
    form_post: bool,
    scope: String,
    challenge: String,
}

/// Why a request is refused: on a page when its redirect URI cannot be trusted,
/// else by redirecting the error to the client as OAuth does.
enum Refusal {
    Page(StatusCode, String),
    Redirect {
        redirect_uri: String,
        form_post: bool,
        error: &'static str,
        description: String,
    },
}

impl From<keyless_core::Error> for Refusal {
    fn from(e: keyless_core::Error) -> Self {
        tracing::error!(error = %e, "authorization request failed");
        Refusal::Page(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into())
    }
}

/// Whether a redirect URI is a loopback address of a native client:
/// `http://localhost`, `http://127.0.0.1` or `http://[::1]`, any port and path,
/// no fragment.
fn loopback(uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    url.scheme() == "http"
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
        && match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(a)) => a.is_loopback(),
            Some(url::Host::Ipv6(a)) => a.is_loopback(),
            None => false,
        }
}

async fn check(state: &SharedState, tenant: &str, r: &Request) -> Result<Checked, Refusal> {
    let page = |message: String| Refusal::Page(StatusCode::BAD_REQUEST, message);
    let resolved = resolve_tenant(state, tenant)
        .await
        .map_err(|e| page(e.description()))?;
    let client_id = r.client_id.clone().unwrap_or_default().to_ascii_lowercase();
    if !PUBLIC_CLIENTS
        .iter()
        .any(|c| c.eq_ignore_ascii_case(&client_id))
    {
        client_auth::find_app(state, &resolved, Some(&client_id))
            .await
            .map_err(|e| page(e.description()))?;
    }
    let redirect_uri = r.redirect_uri.clone().unwrap_or_default();
    if !loopback(&redirect_uri) {
        return Err(page(format!(
            "The redirect URI '{redirect_uri}' is not a loopback address (http://localhost:<port>, http://127.0.0.1:<port>); keyless sends codes to the signing-in machine only."
        )));
    }
    let form_post = match r.response_mode.as_deref() {
        None | Some("query") => false,
        Some("form_post") => true,
        Some(other) => {
            return Err(page(format!(
                "keyless answers authorization requests in the query or by form_post, not by {other}."
            )));
        }
    };
    let back = |error, description: &str| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        form_post,
        error,
        description: description.to_owned(),
    };
    if r.response_type.as_deref() != Some("code") {
        return Err(back(
            "unsupported_response_type",
            "keyless supports response_type=code only.",
        ));
    }
    let challenge = r.code_challenge.clone().unwrap_or_default();
    if challenge.len() < 43 || challenge.len() > 128 {
        return Err(back(
            "invalid_request",
            "A code_challenge (PKCE, 43 to 128 characters) is required.",
        ));
    }
    if r.code_challenge_method.as_deref() != Some("S256") {
        return Err(back(
            "invalid_request",
            "The code_challenge_method must be S256.",
        ));
    }
    let scope = r.scope.clone().unwrap_or_default();
    if scope.len() > super::MAX_SCOPE {
        return Err(back("invalid_scope", "The scope is too long."));
    }
    let tenant_id = match &resolved {
        TenantRef::One(t) => t.id,
        TenantRef::Any => keyless_core::TenantId::parse(
            &state
                .store
                .setting("bootstrap.tenant")
                .await?
                .unwrap_or_default(),
        )?,
    };
    if let Err(e) = super::resource::from_scope(state, tenant_id, &scope).await {
        return Err(back("invalid_scope", &e.description()));
    }
    if r.prompt.as_deref() == Some("none") {
        return Err(back(
            "login_required",
            "keyless keeps no browser session: the user must sign in.",
        ));
    }
    Ok(Checked {
        tenant: resolved,
        client_id,
        redirect_uri,
        form_post,
        scope,
        challenge,
    })
}

fn refuse(refusal: Refusal, r: &Request) -> Response {
    match refusal {
        Refusal::Page(status, message) => (
            status,
            Html(format!(
                "<!doctype html><title>keyless sign-in</title><h1>Sign-in refused</h1><p>{}</p>",
                escape(&message)
            )),
        )
            .into_response(),
        Refusal::Redirect {
            redirect_uri,
            form_post,
            error,
            description,
        } => {
            let mut pairs = vec![
                ("error", error.to_owned()),
                ("error_description", description),
            ];
            if let Some(s) = &r.state {
                pairs.push(("state", s.clone()));
            }
            answer(&redirect_uri, form_post, &pairs)
        }
    }
}

/// Sends the answer to the client's redirect URI: in its query (a redirect), or
/// as a form the browser posts there (`response_mode=form_post`, what MSAL asks).
fn answer(uri: &str, form_post: bool, pairs: &[(&str, String)]) -> Response {
    if !form_post {
        return redirect(uri, pairs);
    }
    let fields: String = pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=hidden name={name} value=\"{}\">",
                escape(value)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><title>keyless sign-in</title><body onload=\"document.forms[0].submit()\">\
         <form method=post action=\"{}\">{fields}<noscript><button>Continue</button></noscript></form>",
        escape(uri)
    ))
    .into_response()
}

fn redirect(uri: &str, pairs: &[(&str, String)]) -> Response {
    let mut url = match url::Url::parse(uri) {
        Ok(u) => u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    url.query_pairs_mut().extend_pairs(pairs);
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// The request's parameters, or the page that says why they cannot be read.
fn parse(bytes: &[u8]) -> Result<Request, Html<String>> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| {
        Html(format!(
            "<!doctype html><title>keyless sign-in</title><p>The request is not valid: {}</p>",
            escape(&e.to_string())
        ))
    })
}

/// `GET …/oauth2/v2.0/authorize`: the sign-in page.
pub(crate) async fn page(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let r = match parse(query.unwrap_or_default().as_bytes()) {
        Ok(r) => r,
        Err(page) => return (StatusCode::BAD_REQUEST, page).into_response(),
    };
    match check(&state, &tenant, &r).await {
        Ok(_) => Html(sign_in_page(&r, "")).into_response(),
        Err(refusal) => refuse(refusal, &r),
    }
}

/// `POST …/oauth2/v2.0/authorize`: the sign-in form. The request's parameters
/// come back from hidden fields and are checked again, as if new.
pub(crate) async fn sign_in(
    State(state): State<SharedState>,
    Path(tenant): Path<String>,
    client: Option<axum::Extension<crate::http::ClientAddr>>,
    RawForm(body): RawForm,
) -> Response {
    let address = client.map(|axum::Extension(crate::http::ClientAddr(a))| a.ip());
    let r = match parse(&body) {
        Ok(r) => r,
        Err(page) => return (StatusCode::BAD_REQUEST, page).into_response(),
    };
    let checked = match check(&state, &tenant, &r).await {
        Ok(c) => c,
        Err(refusal) => return refuse(refusal, &r),
    };
    let user = match check_password(
        &state,
        r.username.as_deref().unwrap_or_default(),
        r.password.as_deref().unwrap_or_default(),
        address,
    )
    .await
    {
        Ok(user) => user,
        Err((status, message)) => {
            return (status, Html(sign_in_page(&r, &message))).into_response();
        }
    };
    if !checked.tenant.admits(user.tenant_id) {
        let message =
            "Your account belongs to another tenant than the one the application asked for.";
        return (StatusCode::FORBIDDEN, Html(sign_in_page(&r, message))).into_response();
    }
    match issue(&state, &checked, &user, r.nonce.clone()).await {
        Ok(code) => {
            tracing::info!(user = %user.object_id, client = %checked.client_id, "browser sign-in");
            let mut pairs = vec![("code", code)];
            if let Some(s) = &r.state {
                pairs.push(("state", s.clone()));
            }
            answer(&checked.redirect_uri, checked.form_post, &pairs)
        }
        Err(e) => refuse(e.into(), &r),
    }
}

async fn issue(
    state: &SharedState,
    checked: &Checked,
    user: &Principal,
    nonce: Option<String>,
) -> Result<String, keyless_core::Error> {
    // Codes nobody redeemed in time are deleted, so abandoned sign-ins cannot pile up.
    state.store.authorization_codes_expire(state.now()).await?;
    let code = secret::random_token()?;
    state
        .store
        .authorization_code_add(&AuthorizationCode {
            digest: secret::digest_secret(&code),
            tenant_id: user.tenant_id,
            principal_id: user.object_id,
            client_id: checked.client_id.clone(),
            scope: checked.scope.clone(),
            redirect_uri: checked.redirect_uri.clone(),
            code_challenge: checked.challenge.clone(),
            nonce,
            expires_at: state.now() + CODE_LIFETIME,
        })
        .await?;
    Ok(code)
}

fn sign_in_page(r: &Request, message: &str) -> String {
    let hidden: String = [
        ("client_id", &r.client_id),
        ("response_type", &r.response_type),
        ("redirect_uri", &r.redirect_uri),
        ("scope", &r.scope),
        ("state", &r.state),
        ("nonce", &r.nonce),
        ("code_challenge", &r.code_challenge),
        ("code_challenge_method", &r.code_challenge_method),
        ("response_mode", &r.response_mode),
    ]
    .iter()
    .filter_map(|(name, value)| {
        value
            .as_ref()
            .map(|v| format!("<input type=hidden name={name} value=\"{}\">", escape(v)))
    })
    .collect();
    let hint = r.username.as_ref().or(r.login_hint.as_ref());
    format!(
        "<!doctype html><title>keyless sign-in</title><h1>Sign in</h1>\
         <p>An application on this computer ({}) asks to sign you in.</p><p>{}</p>\
         <form method=post>{hidden}\
         <label>User name <input name=username value=\"{}\" autocomplete=username></label><br>\
         <label>Password <input name=password type=password autocomplete=current-password></label><br>\
         <button>Sign in</button></form>",
        escape(r.client_id.as_deref().unwrap_or_default()),
        escape(message),
        escape(hint.map(String::as_str).unwrap_or_default()),
    )
}

/// Redeems a code at the token endpoint: the client, the redirect URI and the
/// PKCE verifier must match what the sign-in was for. The code is spent whether
/// or not the redemption succeeds.
pub(crate) async fn redeem(
    state: &SharedState,
    tenant: &TenantRef,
    client_id: &str,
    code: Option<&str>,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<(Principal, AuthorizationCode), OAuthError> {
    let code = code.filter(|c| !c.is_empty()).ok_or_else(|| {
        OAuthError::invalid_request(
            900144,
            "The request body must contain the following parameter: 'code'.",
        )
    })?;
    let expired = || {
        OAuthError::invalid_grant(
            70008,
            "The provided authorization code has expired or was already redeemed. Sign in again.",
        )
    };
    let grant = state
        .store
        .authorization_code_take(&secret::digest_secret(code))
        .await?
        .filter(|g| g.expires_at > state.now())
        .ok_or_else(expired)?;
    if !grant.client_id.eq_ignore_ascii_case(client_id) {
        return Err(OAuthError::invalid_grant(
            70002,
            "The authorization code was issued to another client.",
        ));
    }
    if redirect_uri != Some(grant.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            50148,
            "The redirect_uri does not match the one of the authorization request.",
        ));
    }
    let verifier = verifier.unwrap_or_default();
    let derived = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    let matches = aws_lc_rs::constant_time::verify_slices_are_equal(
        derived.as_bytes(),
        grant.code_challenge.as_bytes(),
    )
    .is_ok();
    if verifier.len() < 43 || !matches {
        return Err(OAuthError::invalid_grant(
            501481,
            "The code_verifier does not match the code_challenge of the authorization request.",
        ));
    }
    if !tenant.admits(grant.tenant_id) {
        return Err(expired());
    }
    let user = state
        .store
        .principal(grant.principal_id)
        .await?
        .filter(|u| u.enabled)
        .ok_or_else(|| {
            OAuthError::invalid_grant(70000, "The user no longer exists or is disabled.")
        })?;
    Ok((user, grant))
}
