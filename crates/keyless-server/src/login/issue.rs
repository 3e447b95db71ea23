//! Minting tokens: access tokens shaped like Entra's, id tokens for user
//! sign-ins, and refresh tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use keyless_auth::{Claims, jwt, secret};
use keyless_core::{Error, ObjectId, Principal, PrincipalKind};
use keyless_store::RefreshGrant;

use super::{OAuthError, Resource};
use crate::http::set;
use crate::state::{AppState, SharedState};

/// Refresh tokens live as long as Entra's default: 90 days.
const REFRESH_LIFETIME: i64 = 90 * 24 * 3600;

/// Who a token is for.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) principal: Principal,
    pub(crate) groups: Vec<ObjectId>,
}

impl Subject {
    /// Loads the principal's transitive groups.
    pub(crate) async fn load(state: &AppState, principal: Principal) -> Result<Self, Error> {
        let groups = state.store.transitive_groups(principal.object_id).await?;
        Ok(Self { principal, groups })
    }
}

/// The parts of a token request that shape the token.
#[derive(Debug, Clone)]
pub(crate) struct TokenRequest {
    pub(crate) resource: Resource,
    /// The client application the token is issued to.
    pub(crate) client_id: String,
    /// How the client authenticated: `0` public, `1` secret, `2` certificate or assertion.
    pub(crate) client_auth: &'static str,
    /// The job the token is issued to, if any: it stops working when the job ends.
    pub(crate) job: Option<String>,
}

/// Signs an access token; returns it with its lifetime in seconds.
pub(crate) fn access_token(
    state: &AppState,
    subject: &Subject,
    request: &TokenRequest,
) -> Result<(String, i64), Error> {
    let now = state.now();
    let lifetime = match state.config.token_lifetime {
        Some(d) => i64::try_from(d.as_secs()).unwrap_or(3600).max(1),
        // Entra picks 60–90 minutes at random; so does keyless.
        None => {
            3600 + i64::from(
                secret::random_bytes(2)?
                    .iter()
                    .fold(0u16, |a, b| a.wrapping_mul(256).wrapping_add(u16::from(*b)))
                    % 1800,
            )
        }
    };
    let p = &subject.principal;
    let tid = p.tenant_id.to_string();
    let oid = p.object_id.to_string();
    let is_user = p.kind == PrincipalKind::User;
    let claims = Claims {
        aud: request.resource.audience.clone(),
        iss: state.verifier.issuer(&tid),
        iat: now,
        nbf: now,
        exp: now + lifetime,
        tid,
        sub: oid.clone(),
        oid,
        appid: Some(request.client_id.clone()),
        azp: Some(request.client_id.clone()),
        appidacr: Some(request.client_auth.to_owned()),
        idtyp: Some(if is_user { "user" } else { "app" }.to_owned()),
        upn: p.user_principal_name.clone(),
        unique_name: p.user_principal_name.clone(),
        name: is_user.then(|| p.display_name.clone()),
        scp: is_user.then(|| "user_impersonation".to_owned()),
        xms_mirid: p.resource_id.clone(),
        groups: subject.groups.iter().map(ToString::to_string).collect(),
        xms_job: request.job.clone(),
        uti: URL_SAFE_NO_PAD.encode(secret::random_bytes(16)?),
        ver: "2.0".into(),
    };
    let token = jwt::sign(state.verifier.ring().current(), &claims)?;
    Ok((token, lifetime))
}

/// An id token for a user sign-in, as MSAL expects to find one.
fn id_token(
    state: &AppState,
    user: &Principal,
    client_id: &str,
    nonce: Option<&str>,
) -> Result<String, Error> {
    let now = state.now();
    let tid = user.tenant_id.to_string();
    let mut claims = json!({
        "aud": client_id,
        "iss": state.verifier.issuer(&tid),
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": tid,
        "oid": user.object_id.to_string(),
        "sub": user.object_id.to_string(),
        "name": user.display_name,
        "preferred_username": user.user_principal_name,
        "ver": "2.0",
    });
    if let Some(nonce) = nonce {
        set(&mut claims, "nonce", json!(nonce));
    }
    jwt::sign(state.verifier.ring().current(), &claims)
}

/// How to shape a successful response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `/oauth2/v2.0/token`.
    V2,
    /// `/oauth2/token`, with `resource`, `expires_on` and `not_before`.
    V1,
}

/// Issues the tokens of a successful grant and shapes the JSON reply.
pub(crate) async fn respond(
    state: &SharedState,
    subject: &Subject,
    request: &TokenRequest,
    shape: Shape,
    user_extras: Option<&UserExtras<'_>>,
) -> Result<Value, OAuthError> {
    let (token, lifetime) = access_token(state, subject, request)?;
    let now = state.now();
    let mut body = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": token,
    });
    match shape {
        Shape::V2 => set(&mut body, "scope", json!(request.resource.scope)),
        Shape::V1 => {
            set(&mut body, "resource", json!(request.resource.audience));
            set(&mut body, "expires_on", json!((now + lifetime).to_string()));
            set(&mut body, "not_before", json!(now.to_string()));
        }
    }
    if let Some(extras) = user_extras {
        let user = &subject.principal;
        let refresh = secret::random_token()?;
        let grant = RefreshGrant {
            principal_id: user.object_id,
            tenant_id: user.tenant_id,
            client_id: request.client_id.clone(),
            expires_at: now + REFRESH_LIFETIME,
        };
        state
            .store
            .refresh_token_add(&secret::digest_secret(&refresh), &grant)
            .await?;
        set(&mut body, "refresh_token", json!(refresh));
        if extras.id_token {
            set(
                &mut body,
                "id_token",
                json!(id_token(state, user, &request.client_id, extras.nonce)?),
            );
        }
        if extras.client_info {
            let info =
                json!({ "uid": user.object_id.to_string(), "utid": user.tenant_id.to_string() });
            set(
                &mut body,
                "client_info",
                json!(URL_SAFE_NO_PAD.encode(info.to_string())),
            );
        }
    }
    Ok(body)
}

/// What a user sign-in adds to the reply beyond the access and refresh tokens.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserExtras<'a> {
    pub(crate) id_token: bool,
    pub(crate) client_info: bool,
    /// The nonce of a browser sign-in, echoed in the ID token.
    pub(crate) nonce: Option<&'a str>,
}
