//! The managed-identity endpoint (plain HTTP on loopback, like Azure's IMDS).
//!
//! Each job gets its own endpoint, `/jobs/<key>/token`, and its own secret, which
//! the job finds in `MSI_ENDPOINT`/`MSI_SECRET` (the Azure ML compute protocol)
//! and `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` (the App Service protocol). The
//! endpoint issues only the job's identity: the submitting user's tokens for a
//! `user_identity` job, otherwise the compute's managed identities. Its tokens
//! name the job and stop working, with the secret, when the job ends.
//!
//! Every other caller — the IMDS path, a request without the job's secret — is
//! told, with a status the clients do not retry, that no managed identity is
//! available to it. That lets `DefaultAzureCredential` on a developer's machine
//! move on to the next credential instead of probing the public IMDS address.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use keyless_auth::secret;
use keyless_core::Principal;

use crate::jobs::{Grant, Issues};
use crate::login::issue::{Subject, TokenRequest, access_token};
use crate::state::SharedState;

/// The application id tokens issued to a `user_identity` job carry: the ML
/// service that acts on the user's behalf.
pub(crate) const ML_SERVICE_APP_ID: &str = "0736f41a-0425-4b46-bdb5-1563eff02385";

/// The router of the identity listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", get(no_identity))
        .route("/msi/token", get(no_identity))
        .route("/jobs/{key}/token", get(job_token))
        .with_state(state)
}

async fn no_identity() -> Response {
    refuse(
        "no managed identity is available to this caller: keyless issues managed-identity tokens only to jobs running on its computes",
    )
}

fn refuse(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": "invalid_request",
            "error_description": message,
            "statusCode": 400,
            "message": message,
        })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    resource: Option<String>,
    clientid: Option<String>,
    client_id: Option<String>,
    object_id: Option<String>,
    principal_id: Option<String>,
    mi_res_id: Option<String>,
    msi_res_id: Option<String>,
}

pub(crate) async fn job_token(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let presented = ["secret", "x-identity-header"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()));
    if let Some(refusal) =
        crate::management::ml::runner::agent::not_here(&state, &key, &headers, presented).await
    {
        return refusal;
    }
    let Some(grant) = state.jobs.grant_of(&key) else {
        return refuse(
            "this job identity endpoint is closed: the job it belonged to has ended (or never existed)",
        );
    };
    let Some(presented) = presented else {
        return refuse(
            "the request carries no job secret: send MSI_SECRET in the `secret` header or IDENTITY_HEADER in `X-IDENTITY-HEADER`",
        );
    };
    if !secret::secret_matches(presented, &grant.secret_digest) {
        return refuse("the job secret is not valid for this endpoint");
    }
    match issue(&state, &grant, &q).await {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(message) => refuse(&message),
    }
}

async fn issue(
    state: &SharedState,
    grant: &Grant,
    q: &TokenQuery,
) -> Result<serde_json::Value, String> {
    let resource = q
        .resource
        .as_deref()
        .filter(|r| !r.is_empty())
        .ok_or("the request must name a `resource`, e.g. https://storage.azure.com")?;
    let named = q
        .clientid
        .as_deref()
        .or(q.client_id.as_deref())
        .map(|c| ("client id", c))
        .or_else(|| {
            q.object_id
                .as_deref()
                .or(q.principal_id.as_deref())
                .map(|o| ("object id", o))
        })
        .or_else(|| {
            q.mi_res_id
                .as_deref()
                .or(q.msi_res_id.as_deref())
                .map(|r| ("resource id", r))
        })
        .filter(|(_, v)| !v.is_empty());
    let Some(issues) = &grant.issues else {
        return Err(
            "this job has no identity to issue: its compute has no managed identity and the job does not run as its submitter (identity: user_identity)".into(),
        );
    };
    let principal: Principal = match (issues, named) {
        (Issues::User(user), None) => user.clone(),
        (Issues::User(_), Some((what, value))) => {
            return Err(format!(
                "this job runs with identity: user_identity, so it receives the submitting user's tokens only; it cannot obtain the managed identity with {what} {value} (a job never mixes user and managed identities)"
            ));
        }
        (Issues::Managed { default, .. }, None) => default.clone(),
        (Issues::Managed { attached, .. }, Some((what, value))) => attached
            .iter()
            .find(|p| matches(p, what, value))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "no managed identity with {what} {value} is attached to this job's compute; the job may use only its compute's identities"
                )
            })?,
    };
    let target = crate::login::resource::from_resource(state, principal.tenant_id, resource)
        .await
        .map_err(|e| e.description())?;
    let is_user = matches!(issues, Issues::User(_));
    let client_id = if is_user {
        ML_SERVICE_APP_ID.to_owned()
    } else {
        principal
            .app_id
            .map(|a| a.to_string())
            .unwrap_or_else(|| principal.object_id.to_string())
    };
    let subject = Subject::load(state, principal.clone())
        .await
        .map_err(|e| e.to_string())?;
    let request = TokenRequest {
        resource: target.clone(),
        client_id: client_id.clone(),
        client_auth: "2",
        job: Some(grant.job.clone()),
    };
    let (token, lifetime) = access_token(state, &subject, &request).map_err(|e| e.to_string())?;
    let now = state.now();
    tracing::info!(job = %grant.job, principal = %principal.object_id, audience = %target.audience, "job identity token issued");
    Ok(json!({
        "access_token": token,
        "expires_in": lifetime.to_string(),
        "expires_on": (now + lifetime).to_string(),
        "not_before": now.to_string(),
        "token_type": "Bearer",
        "resource": resource,
        "client_id": client_id,
    }))
}

fn matches(p: &Principal, what: &str, value: &str) -> bool {
    match what {
        "client id" => p
            .app_id
            .is_some_and(|a| a.to_string().eq_ignore_ascii_case(value)),
        "object id" => p.object_id.to_string().eq_ignore_ascii_case(value),
        // Resource ids compare case-insensitively, as ARM's do.
        _ => p
            .resource_id
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case(value)),
    }
}
