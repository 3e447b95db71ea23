//! Run history, as azure-ai-ml's `jobs.stream` reads it: a job's details (its
//! status, error and times) and the URLs of its log files.
//!
//! The SDK fetches log URLs verbatim, without an Authorization header, so each
//! URL carries its own proof: an HMAC over the job and an expiry, under a key
//! that lives in the server's memory. Only a caller allowed to read the job gets
//! the URL (from the details, which need a token); the URL reads that job's log
//! and nothing else, and stops working after [`LOG_URL_LIFETIME`] or a restart.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::shared_key::{sign, verify};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::respond;
use super::jobs::{READ, load, status_of};
use super::{Child, workspace};
use crate::state::SharedState;

/// How long a log URL works.
const LOG_URL_LIFETIME: i64 = 3600;
/// The name the SDK looks for (`user_logs/std_log*.txt`).
const STD_LOG: &str = "user_logs/std_log.txt";

#[derive(Debug, Deserialize)]
pub(crate) struct LogQuery {
    se: Option<i64>,
    sig: Option<String>,
}

fn text_to_sign(job_id: &str, expiry: i64) -> String {
    format!("{}\n{STD_LOG}\n{expiry}", job_id.to_ascii_lowercase())
}

fn base(state: &SharedState) -> &str {
    state.urls.management.trim_end_matches('/')
}

/// The signed URL of a job's log.
fn log_url(state: &SharedState, job: &Resource) -> String {
    let expiry = state.now() + LOG_URL_LIFETIME;
    let sig = sign(state.jobs.log_key(), &text_to_sign(&job.id, expiry));
    let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
    format!(
        "{}/history/v1.0{}/logs/{STD_LOG}?se={expiry}&sig={sig}",
        base(state),
        run_path(&job.id)
    )
}

/// `…/workspaces/{ws}/jobs/{name}` → `…/workspaces/{ws}/runs/{name}`.
fn run_path(job_id: &str) -> String {
    match job_id.rsplit_once("/jobs/") {
        Some((ws, name)) => format!("{ws}/runs/{name}"),
        None => job_id.to_owned(),
    }
}

/// The time of the first entry of the status history with one of `statuses`.
fn time_of(props: &Value, statuses: &[&str]) -> Value {
    props
        .get("statusHistory")
        .and_then(Value::as_array)
        .and_then(|h| {
            h.iter().find(|e| {
                e.get("status")
                    .and_then(Value::as_str)
                    .is_some_and(|s| statuses.contains(&s))
            })
        })
        .and_then(|e| e.get("time"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `GET /history/v1.0/…/runs/{name}/details`.
pub(crate) async fn details(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
) -> Response {
    respond(async {
        let (_, ws) = p.open(&state, &headers, "jobs", READ).await?;
        let job = load(&state, &ws, &p.name).await?;
        let props = job.body.get("properties").cloned().unwrap_or_default();
        let status = status_of(&job).to_owned();
        let error = props.get("error").map(|e| {
            json!({ "error": {
                "code": e.get("code").cloned().unwrap_or(Value::Null),
                "message": e.get("message").cloned().unwrap_or(Value::Null),
            }})
        });
        let submitter = props.get("submittedBy").cloned().unwrap_or_default();
        let mut details = json!({
            "runId": p.name,
            "runUuid": p.name,
            "status": status,
            "target": props.get("computeId").and_then(Value::as_str).and_then(|c| c.rsplit('/').next()),
            "parentRunId": props.get("parentJobName"),
            "createdTimeUtc": time_of(&props, &["Queued", "NotStarted"]),
            "startTimeUtc": time_of(&props, &["Running"]),
            "endTimeUtc": time_of(&props, &["Completed", "Failed", "Canceled"]),
            "createdBy": {
                "userObjectId": submitter.get("objectId"),
                "userTenantId": submitter.get("tenantId"),
                "userName": submitter.get("userPrincipalName"),
                "upn": submitter.get("userPrincipalName"),
            },
            "warnings": [],
            "logFiles": { STD_LOG: log_url(&state, &job) },
        });
        if let (Some(e), Some(map)) = (error, details.as_object_mut()) {
            map.insert("error".into(), e);
        }
        Ok((StatusCode::OK, details))
    })
    .await
}

/// `GET /history/v1.0/…/runs/{name}/logs/user_logs/std_log.txt?se=&sig=`: the
/// log's bytes, for the holder of a URL the details handed out.
pub(crate) async fn log(
    State(state): State<SharedState>,
    Path(p): Path<Child>,
    Query(q): Query<LogQuery>,
) -> Response {
    let refused = |why: &str| {
        MgmtError::new(StatusCode::FORBIDDEN, "AuthorizationFailed", why.to_owned()).into_response()
    };
    let (Some(expiry), Some(sig)) = (q.se, q.sig) else {
        return refused(
            "a log URL carries `se` and `sig`; take it from the run's details (logFiles)",
        );
    };
    let ws = match workspace(&state, &p.sub, &p.rg, &p.ws).await {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let job_id = format!("{}/jobs/{}", ws.id, p.name);
    if !verify(state.jobs.log_key(), &text_to_sign(&job_id, expiry), &sig) {
        return refused(
            "the log URL's signature does not verify; take a fresh one from the run's details",
        );
    }
    if state.now() >= expiry {
        return refused("the log URL expired; take a fresh one from the run's details");
    }
    let path = super::runner::log_path(&state, &job_id);
    let bytes = tokio::fs::read(&path).await.unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        bytes,
    )
        .into_response()
}
