//! Data-access sessions: the on-behalf-of endpoint through which azureml-dataprep
//! (behind azureml-fsspec and mltable) gets a signed-in person's tokens without a
//! prompt, as it does from a compute instance's endpoint on Azure
//! (`AZUREML_OBO_ENABLED=True`, `OBO_ENDPOINT`, and `MSI_SECRET` sent as the
//! `secret` header).
//!
//! `keyless env`, run after `keyless login`, opens a session with the person's
//! own management token and exports its secret. The secret stands for that
//! person alone, for [`LIFETIME`] at most; only its digest is stored, in the
//! metadata store (so every server honours it); a principal disabled or removed
//! gets no more tokens from it; and each token it yields is the one the token
//! endpoint would issue, so roles and ACLs decide what it may read, as always.
//! Managed identities cannot open one.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::secret;
use keyless_core::{ObjectId, PrincipalKind};

use super::issue::{Subject, TokenRequest, access_token};
use crate::state::SharedState;

/// How long a session's secret is honoured.
pub(crate) const LIFETIME: i64 = 12 * 3600;
/// Where a session is kept, by the digest of its secret.
const KEY: &str = "data-access-session/";

fn refuse(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(
            json!({ "error": "invalid_request", "error_description": message, "message": message }),
        ),
    )
        .into_response()
}

/// `POST /keyless/data-access/sessions` with the caller's management token:
/// a new session for the caller; its secret is returned once.
pub(crate) async fn open(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    let caller = match crate::management::caller::authenticate(&state, &headers).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if caller.principal.kind == PrincipalKind::ManagedIdentity {
        return refuse(
            StatusCode::FORBIDDEN,
            "a managed identity opens no data-access session: its tokens come from the identity endpoint of its compute or job",
        );
    }
    let Ok(secret) = secret::random_token() else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the system's random generator failed",
        );
    };
    let expires_on = state.now() + LIFETIME;
    let record = json!({ "oid": caller.principal.object_id.to_string(), "exp": expires_on });
    let key = format!("{KEY}{}", secret::digest_secret(&secret));
    if let Err(e) = state.store.setting_set(&key, &record.to_string()).await {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string());
    }
    tracing::info!(principal = %caller.principal.object_id, "data-access session opened");
    (
        StatusCode::CREATED,
        Json(json!({ "secret": secret, "expires_on": expires_on })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    resource: Option<String>,
}

/// `GET /keyless/data-access/token?resource=…` with the session's secret in
/// the `secret` header: a token of the session's person for the resource, in
/// the shape azureml-dataprep reads (`expires_on` a number).
pub(crate) async fn token(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let Some(presented) = headers.get("secret").and_then(|v| v.to_str().ok()) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the request carries no session secret: `keyless env` exports it as MSI_SECRET, sent in the `secret` header",
        );
    };
    let key = format!("{KEY}{}", secret::digest_secret(presented));
    let record: Option<Value> = match state.store.setting(&key).await {
        Ok(v) => v.and_then(|t| serde_json::from_str(&t).ok()),
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let now = state.now();
    let Some((oid, exp)) = record.and_then(|r| {
        let oid = ObjectId::parse(r.get("oid")?.as_str()?).ok()?;
        Some((oid, r.get("exp")?.as_i64()?))
    }) else {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the session secret is not valid: run `keyless login` and `eval \"$(keyless env)\"` again",
        );
    };
    if exp <= now {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "the data-access session has expired: run `eval \"$(keyless env)\"` again",
        );
    }
    let principal = match state.store.principal(oid).await {
        Ok(Some(p)) if p.enabled => p,
        Ok(_) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "the session's principal is disabled or no longer exists",
            );
        }
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let Some(resource) = q.resource.as_deref().filter(|r| !r.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request must name a `resource`, e.g. https://storage.azure.com/",
        );
    };
    let target = match super::resource::from_resource(&state, principal.tenant_id, resource).await {
        Ok(t) => t,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.description()),
    };
    // A person's token names the client acting for them, as a job's does.
    let client_id = principal.app_id.map_or_else(
        || crate::identity::ML_SERVICE_APP_ID.to_owned(),
        |a| a.to_string(),
    );
    let subject = match Subject::load(&state, principal).await {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let request = TokenRequest {
        resource: target,
        client_id,
        client_auth: "2",
        job: None,
    };
    match access_token(&state, &subject, &request) {
        Ok((token, lifetime)) => (
            StatusCode::OK,
            Json(json!({
                "access_token": token,
                "expires_in": lifetime,
                "expires_on": now + lifetime,
                "token_type": "Bearer",
                "resource": resource,
            })),
        )
            .into_response(),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
