//! Authenticating confidential clients: client secrets, certificate assertions
//! (`private_key_jwt`) and federated assertions (workload identity).

use std::time::Duration;

use serde_json::Value;

use keyless_auth::{cert, jwt, secret, verify::SKEW_SECONDS};
use keyless_core::{ClientId, Principal, PrincipalKind};
use keyless_store::{Credential, CredentialKind};

use super::{OAuthError, TenantRef};
use crate::state::SharedState;

/// The only client assertion type OAuth defines for JWTs.
pub(crate) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What a confidential client presented.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    pub(crate) client_id: Option<&'a str>,
    pub(crate) client_secret: Option<&'a str>,
    pub(crate) client_assertion: Option<&'a str>,
    pub(crate) client_assertion_type: Option<&'a str>,
}

/// A client that proved who it is.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) principal: Principal,
    /// `1` for a secret, `2` for a certificate or federated assertion.
    pub(crate) acr: &'static str,
}

/// Finds the application a `client_id` names in the tenant.
pub(crate) async fn find_app(
    state: &SharedState,
    tenant: &TenantRef,
    client_id: Option<&str>,
) -> Result<Principal, OAuthError> {
    let Some(client_id) = client_id.filter(|c| !c.is_empty()) else {
        return Err(OAuthError::invalid_request(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let not_found = || {
        OAuthError::unauthorized_client(
            700016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory. Check the client id (`keyless ad sp list`) and the tenant."
            ),
        )
    };
    let app_id = ClientId::parse(client_id).map_err(|_| not_found())?;
    let principal = state
        .store
        .principal_by_app_id(app_id)
        .await?
        .ok_or_else(not_found)?;
    if !tenant.admits(principal.tenant_id) {
        return Err(not_found());
    }
    match principal.kind {
        PrincipalKind::ServicePrincipal => {}
        PrincipalKind::ManagedIdentity => {
            return Err(OAuthError::unauthorized_client(
                700016,
                format!(
                    "'{client_id}' is a managed identity; managed identities cannot sign in. Their tokens come from the identity endpoint of the compute or job they are attached to."
                ),
            ));
        }
        PrincipalKind::User | PrincipalKind::Group => return Err(not_found()),
    }
    if !principal.enabled {
        return Err(OAuthError::unauthorized_client(
            7000112,
            format!(
                "Application '{client_id}' is disabled. An administrator can enable it with `keyless ad sp update --enabled true`."
            ),
        ));
    }
    Ok(principal)
}

/// Authenticates a confidential client by its secret or assertion.
pub(crate) async fn authenticate(
    state: &SharedState,
    tenant: &TenantRef,
    presented: Presented<'_>,
) -> Result<Client, OAuthError> {
    let principal = find_app(state, tenant, presented.client_id).await?;
    let credentials = state.store.credentials(principal.object_id).await?;
    let now = state.now();
    if let Some(secret) = presented.client_secret {
        return check_secret(principal, &credentials, secret, now);
    }
    let Some(assertion) = presented.client_assertion else {
        return Err(OAuthError::invalid_client(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    if presented.client_assertion_type != Some(JWT_BEARER_ASSERTION) {
        return Err(OAuthError::invalid_request(
            900144,
            format!("client_assertion_type must be '{JWT_BEARER_ASSERTION}'."),
        ));
    }
    let parts = jwt::split(assertion).map_err(|_| {
        OAuthError::invalid_client(50027, "The client assertion is not a well-formed JWT.")
    })?;
    if parts.header.alg != "RS256" {
        return Err(OAuthError::invalid_client(
            700027,
            format!(
                "Client assertion algorithm '{}' is not supported; sign it with RS256.",
                parts.header.alg
            ),
        ));
    }
    let claims: Value = jwt::claims(&parts).map_err(|_| {
        OAuthError::invalid_client(50027, "The client assertion's claims are malformed.")
    })?;
    // A certificate assertion is issued by the client itself (`iss` = client id);
    // anything else is a federated assertion from a trusted issuer.
    let self_issued = claims
        .get("iss")
        .and_then(Value::as_str)
        .is_some_and(|iss| iss.eq_ignore_ascii_case(&app_id(&principal)));
    if !self_issued {
        return check_federated(state, principal, &credentials, &parts, &claims, now);
    }
    let Some(x5t) = parts.header.x5t.as_deref() else {
        return Err(OAuthError::invalid_client(
            700027,
            "A certificate assertion must name its certificate in the `x5t` header.",
        ));
    };
    let app = app_id(&principal);
    let client = check_certificate(state, principal, &credentials, x5t, &parts, &claims, now)?;
    // Each assertion is presented once, to whichever server sharing the store.
    if let Some(jti) = claims.get("jti").and_then(Value::as_str) {
        let key = keyless_auth::secret::digest_secret(&format!("client-assertion:{app}:{jti}"));
        let until = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map_or(now + 24 * 3600, |exp| exp.saturating_add(SKEW_SECONDS));
        if !state.store.use_once(&key, now, until).await? {
            return Err(OAuthError::invalid_client(
                700025,
                "The client assertion has been used before; sign a new one for every request.",
            ));
        }
    }
    Ok(client)
}

fn check_secret(
    principal: Principal,
    credentials: &[Credential],
    secret: &str,
    now: i64,
) -> Result<Client, OAuthError> {
    let matching = credentials.iter().find(|c| matches!(&c.kind, CredentialKind::Secret { digest, .. } if secret::secret_matches(secret, digest)));
    match matching {
        Some(c) if c.expires_at <= now => Err(OAuthError::invalid_client(
            7000222,
            format!(
                "The provided client secret keys for app '{}' are expired. Create a new secret with `keyless ad sp credential reset --id {}`.",
                app_id(&principal),
                app_id(&principal)
            ),
        )),
        Some(_) => Ok(Client {
            principal,
            acr: "1",
        }),
        None => Err(OAuthError::invalid_client(
            7000215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{}'.",
                app_id(&principal)
            ),
        )),
    }
}

fn check_certificate(
    state: &SharedState,
    principal: Principal,
    credentials: &[Credential],
    x5t: &str,
    parts: &jwt::Parts<'_>,
    claims: &Value,
    now: i64,
) -> Result<Client, OAuthError> {
    let app = app_id(&principal);
    let credential = credentials
        .iter()
        .find(|c| matches!(&c.kind, CredentialKind::Certificate { thumbprint, .. } if cert::x5t_matches(x5t, thumbprint)))
        .ok_or_else(|| {
            OAuthError::invalid_client(700027, format!("The certificate with identifier used to sign the client assertion is not registered on application '{app}'. Upload it with `keyless ad sp credential reset --id {app} --cert FILE`."))
        })?;
    let CredentialKind::Certificate { public_key, .. } = &credential.kind else {
        return Err(OAuthError::invalid_client(
            700027,
            "Client assertion failed signature validation.",
        ));
    };
    if !cert::verify_rs256(public_key, parts.signed.as_bytes(), &parts.signature) {
        return Err(OAuthError::invalid_client(
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    if credential.expires_at <= now || credential.starts_at > now + SKEW_SECONDS {
        return Err(OAuthError::invalid_client(
            700027,
            format!(
                "The certificate used to sign the client assertion is outside its validity period for application '{app}'."
            ),
        ));
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let token_endpoint = aud.starts_with(&state.urls.login)
        && (aud.ends_with("/oauth2/v2.0/token") || aud.ends_with("/oauth2/token"));
    if !token_endpoint {
        return Err(OAuthError::invalid_client(
            700212,
            format!(
                "The client assertion's audience '{aud}' is not this token endpoint; it must be `{}/<tenant>/oauth2/v2.0/token`.",
                state.urls.login
            ),
        ));
    }
    let (iss, sub) = (
        claims.get("iss").and_then(Value::as_str),
        claims.get("sub").and_then(Value::as_str),
    );
    if !iss.is_some_and(|i| i.eq_ignore_ascii_case(&app))
        || !sub.is_some_and(|s| s.eq_ignore_ascii_case(&app))
    {
        return Err(OAuthError::invalid_client(
            700021,
            format!(
                "The client assertion's 'iss' and 'sub' claims must both be the client id '{app}'."
            ),
        ));
    }
    check_window(claims, now)?;
    Ok(Client {
        principal,
        acr: "2",
    })
}

fn check_federated(
    state: &SharedState,
    principal: Principal,
    credentials: &[Credential],
    parts: &jwt::Parts<'_>,
    claims: &Value,
    now: i64,
) -> Result<Client, OAuthError> {
    let app = app_id(&principal);
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let auds: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let federated: Vec<(&String, &String, &Vec<String>)> = credentials
        .iter()
        .filter_map(|c| match &c.kind {
            CredentialKind::Federated {
                issuer,
                subject,
                audiences,
            } => Some((issuer, subject, audiences)),
            _ => None,
        })
        .collect();
    let by_issuer: Vec<_> = federated
        .iter()
        .filter(|(i, _, _)| i.trim_end_matches('/') == iss.trim_end_matches('/'))
        .collect();
    if by_issuer.is_empty() {
        return Err(OAuthError::invalid_client(
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Add a federated credential for this issuer to application '{app}' (`keyless ad app federated-credential create`)."
            ),
        ));
    }
    let by_subject: Vec<_> = by_issuer
        .iter()
        .filter(|(_, s, _)| s.as_str() == sub)
        .collect();
    if by_subject.is_empty() {
        return Err(OAuthError::invalid_client(
            700213,
            format!(
                "No matching federated identity record found for presented assertion subject '{sub}'. Check the subject of the federated credentials of application '{app}'."
            ),
        ));
    }
    if !by_subject
        .iter()
        .any(|(_, _, audiences)| auds.iter().any(|a| audiences.iter().any(|x| x == a)))
    {
        return Err(OAuthError::invalid_client(
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'.",
                auds.join(" ")
            ),
        ));
    }
    // keyless verifies assertions of the issuers it runs itself: each hosted
    // tenant's issuer, whose keys it holds.
    let own_issuer = iss
        .strip_prefix(&state.urls.login)
        .is_some_and(|rest| rest.ends_with("/v2.0"));
    if !own_issuer {
        return Err(OAuthError::invalid_client(
            700211,
            format!(
                "The assertion issuer '{iss}' is not one whose signing keys keyless can verify; use a token file issued by keyless (`keyless ad app federated-token`)."
            ),
        ));
    }
    let ring = state.verifier.ring();
    let key = parts.header.kid.as_deref().and_then(|kid| ring.find(kid));
    if !key.is_some_and(|k| k.verify(parts.signed.as_bytes(), &parts.signature)) {
        return Err(OAuthError::invalid_client(
            700027,
            "Client assertion failed signature validation.",
        ));
    }
    check_window(claims, now)?;
    Ok(Client {
        principal,
        acr: "2",
    })
}

fn check_window(claims: &Value, now: i64) -> Result<(), OAuthError> {
    let number = |name: &str| claims.get(name).and_then(Value::as_f64);
    let outside = || {
        OAuthError::invalid_client(
            700024,
            "Client assertion is not within its valid time range; check the clock and sign a fresh assertion.",
        )
    };
    let exp = number("exp").ok_or_else(outside)?;
    if exp + SKEW_SECONDS as f64 <= now as f64 {
        return Err(outside());
    }
    if number("nbf").is_some_and(|nbf| nbf > (now + SKEW_SECONDS) as f64) {
        return Err(outside());
    }
    Ok(())
}

fn app_id(p: &Principal) -> String {
    p.app_id.map(|a| a.to_string()).unwrap_or_default()
}

/// How long a device code stays valid.
pub(crate) const DEVICE_CODE_LIFETIME: Duration = Duration::from_secs(900);
