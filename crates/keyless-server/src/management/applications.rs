//! Applications: service principals with their secrets, certificates and
//! federated credentials, and the federated tokens keyless issues as their
//! trusted issuer. Governed by the Application Administrator directory role.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::cert::CertificateCredential;
use keyless_auth::{jwt, secret};
use keyless_core::directory::DirectoryOperation;
use keyless_core::{ClientId, ObjectId, Principal, PrincipalKind};
use keyless_store::{Credential, CredentialKind};

use super::caller::{Caller, authenticate, require_directory};
use super::directory::{TOKEN_EXCHANGE_AUDIENCE, credential_json, resolve};
use super::error::MgmtError;
use super::{Body, respond};
use crate::http::set;
use crate::state::SharedState;

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/directory/servicePrincipals/{key}/credentials/reset",
            post(reset_credentials),
        )
        .route(
            "/directory/servicePrincipals/{key}/federatedCredentials",
            get(list_federated).post(add_federated),
        )
        .route(
            "/directory/servicePrincipals/{key}/federatedTokens",
            post(federated_token),
        )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct NewSp {
    display_name: String,
    /// PEM certificate to register instead of generating a secret.
    #[serde(default)]
    certificate: Option<String>,
    /// Validity of the generated secret in years (default 1).
    #[serde(default)]
    years: Option<u32>,
}

pub(crate) async fn create_sp(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<NewSp>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let cert = body
            .certificate
            .as_deref()
            .map(|pem| CertificateCredential::parse(pem.as_bytes()))
            .transpose()?;
        let sp = new_application(&state, &caller, &body.display_name).await?;
        let mut out = json!({
            "appId": sp.app_id.map(|a| a.to_string()),
            "objectId": sp.object_id.to_string(),
            "displayName": sp.display_name,
            "tenant": sp.tenant_id.to_string(),
        });
        match cert {
            Some(cert) => {
                state
                    .store
                    .credential_add(&certificate_credential(&sp, cert))
                    .await?;
            }
            None => {
                let (credential, secret) =
                    new_secret(&state, &sp, "rbac", body.years.unwrap_or(1), None)?;
                state.store.credential_add(&credential).await?;
                set(&mut out, "password", json!(secret));
            }
        }
        Ok((StatusCode::CREATED, out))
    })
    .await
}

/// Creates an application with its service principal (one principal in keyless),
/// if a directory role lets the caller.
pub(crate) async fn new_application(
    state: &SharedState,
    caller: &Caller,
    name: &str,
) -> Result<Principal, MgmtError> {
    require_directory(state, caller, DirectoryOperation::ManageApplications).await?;
    let name = name.trim();
    if name.is_empty() || name.len() > 120 || ObjectId::parse(name).is_ok() || name.contains('@') {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            format!(
                "`{name}` is not a valid application name (1–120 characters, not a GUID, no `@`)"
            ),
        ));
    }
    let sp = Principal {
        object_id: ObjectId::new_random(),
        tenant_id: caller.principal.tenant_id,
        kind: PrincipalKind::ServicePrincipal,
        display_name: name.to_owned(),
        user_principal_name: None,
        app_id: Some(ClientId::new_random()),
        enabled: true,
        resource_id: None,
        created_at: state.now(),
    };
    state.store.principal_create(&sp, None).await?;
    tracing::info!(actor = %caller.principal.object_id, sp = %sp.object_id, "service principal created");
    Ok(sp)
}

pub(crate) fn certificate_credential(sp: &Principal, cert: CertificateCredential) -> Credential {
    Credential {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: sp.object_id,
        display_name: format!("CN={}", sp.display_name),
        kind: CredentialKind::Certificate {
            thumbprint: cert.thumbprint,
            public_key: cert.public_key_der,
        },
        starts_at: cert.not_before,
        expires_at: cert.not_after,
    }
}

pub(crate) fn new_secret(
    state: &SharedState,
    sp: &Principal,
    display_name: &str,
    years: u32,
    end: Option<i64>,
) -> Result<(Credential, String), MgmtError> {
    let now = state.now();
    if !(1..=100).contains(&years) {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            "`years` must lie between 1 and 100",
        ));
    }
    let expires_at = end.unwrap_or(now + i64::from(years) * 365 * 24 * 3600);
    if expires_at <= now {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            "the end date of a secret must lie in the future",
        ));
    }
    let secret = secret::new_client_secret()?;
    let credential = Credential {
        id: uuid::Uuid::new_v4().to_string(),
        principal_id: sp.object_id,
        display_name: display_name.to_owned(),
        kind: CredentialKind::Secret {
            digest: secret::digest_secret(&secret),
            hint: secret.chars().take(3).collect(),
        },
        starts_at: now,
        expires_at,
    };
    Ok((credential, secret))
}

async fn sp_of(state: &SharedState, caller: &Caller, key: &str) -> Result<Principal, MgmtError> {
    let p = resolve(state, caller.principal.tenant_id, key).await?;
    if p.kind != PrincipalKind::ServicePrincipal {
        return Err(MgmtError::not_found(
            "Request_ResourceNotFound",
            format!("`{key}` is not an application's service principal"),
        ));
    }
    Ok(p)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Reset {
    #[serde(default)]
    append: bool,
    #[serde(default)]
    years: Option<u32>,
    /// RFC 3339 end of validity, instead of `years`.
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    certificate: Option<String>,
}

async fn reset_credentials(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Reset>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let sp = sp_of(&state, &caller, &key).await?;
        let mut out = json!({ "appId": sp.app_id.map(|a| a.to_string()), "tenant": sp.tenant_id.to_string() });
        if let Some(pem) = body.certificate.as_deref() {
            let cert = CertificateCredential::parse(pem.as_bytes())?;
            state.store.credential_add(&certificate_credential(&sp, cert)).await?;
            return Ok((StatusCode::OK, out));
        }
        let end = body
            .end_date
            .as_deref()
            .map(|d| d.parse::<jiff::Timestamp>().map(|t| t.as_second()))
            .transpose()
            .map_err(|e| MgmtError::bad_request("Request_BadRequest", format!("`endDate` is not an RFC 3339 time: {e}")))?;
        let (credential, secret) = new_secret(&state, &sp, "rbac", body.years.unwrap_or(1), end)?;
        if body.append {
            state.store.credential_add(&credential).await?;
        } else {
            state.store.credential_replace_secrets(sp.object_id, &credential).await?;
        }
        set(&mut out, "password", json!(secret));
        Ok((StatusCode::OK, out))
    })
    .await
}

async fn list_federated(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        let sp = sp_of(&state, &caller, &key).await?;
        let creds = state.store.credentials(sp.object_id).await?;
        let value: Vec<Value> = creds
            .iter()
            .filter(|c| matches!(c.kind, CredentialKind::Federated { .. }))
            .map(credential_json)
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewFederated {
    name: String,
    issuer: String,
    subject: String,
    #[serde(default)]
    audiences: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

async fn add_federated(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<NewFederated>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let sp = sp_of(&state, &caller, &key).await?;
        let _ = body.description;
        if !body.issuer.starts_with("https://") {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                format!("the issuer `{}` must be an https URL", body.issuer),
            ));
        }
        if body.subject.is_empty() || body.subject.len() > 600 {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "the subject must have 1–600 characters",
            ));
        }
        let audiences = body
            .audiences
            .unwrap_or_else(|| vec![TOKEN_EXCHANGE_AUDIENCE.to_owned()]);
        if audiences.len() != 1 {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "a federated credential has exactly one audience",
            ));
        }
        let existing = state.store.credentials(sp.object_id).await?;
        if existing
            .iter()
            .filter(|c| matches!(c.kind, CredentialKind::Federated { .. }))
            .any(|c| c.display_name == body.name)
        {
            return Err(MgmtError::new(
                StatusCode::CONFLICT,
                "Request_BadRequest",
                format!("a federated credential `{}` exists already", body.name),
            ));
        }
        let credential = Credential {
            id: uuid::Uuid::new_v4().to_string(),
            principal_id: sp.object_id,
            display_name: body.name,
            kind: CredentialKind::Federated {
                issuer: body.issuer,
                subject: body.subject,
                audiences,
            },
            starts_at: state.now(),
            expires_at: i64::MAX,
        };
        state.store.credential_add(&credential).await?;
        Ok((StatusCode::CREATED, credential_json(&credential)))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewFederatedToken {
    subject: String,
    #[serde(default)]
    lifetime_seconds: Option<i64>,
}

/// Issues a federated assertion under the tenant's own issuer, to be written to a
/// workload's `AZURE_FEDERATED_TOKEN_FILE`.
async fn federated_token(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<NewFederatedToken>,
) -> Response {
    respond(async {
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let sp = sp_of(&state, &caller, &key).await?;
        let lifetime = body.lifetime_seconds.unwrap_or(24 * 3600);
        if !(60..=30 * 24 * 3600).contains(&lifetime) {
            return Err(MgmtError::bad_request("Request_BadRequest", "`lifetimeSeconds` must lie between 60 and 2592000"));
        }
        let now = state.now();
        let issuer = state.verifier.issuer(&sp.tenant_id.to_string());
        let claims = json!({
            "iss": issuer,
            "sub": body.subject,
            "aud": TOKEN_EXCHANGE_AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let token = jwt::sign(state.verifier.ring().current(), &claims)?;
        Ok((StatusCode::OK, json!({ "token": token, "issuer": issuer, "subject": body.subject, "audience": TOKEN_EXCHANGE_AUDIENCE, "expiresOn": now + lifetime })))
    })
    .await
}
