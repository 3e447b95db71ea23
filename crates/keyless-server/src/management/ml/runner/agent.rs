//! The agent API: what a job's agent asks of the server, on the management
//! listener (TLS), each call authenticated by the job's secret in
//! `x-keyless-job-secret`. It answers only while the job runs.
//!
//! - `GET  /keyless/jobs/{key}/spec`: the plan (command line, environment,
//!   folders of the inputs and outputs, timeout, whether an identity is issued).
//! - `POST /keyless/jobs/{key}/code`: the code snapshot's files, each with a
//!   URL to read it, and the checksum to verify.
//! - `POST /keyless/jobs/{key}/inputs/{port}`: an input's files and access.
//! - `POST /keyless/jobs/{key}/outputs/{port}`: `{"files": [{"path", "size"}]}`
//!   → where to write each file and with what access.
//! - `POST /keyless/jobs/{key}/image`: where the job's image is, and a pull
//!   token for the compute's identity.
//! - `POST /keyless/jobs/{key}/log`: bytes the command printed, appended to
//!   the job's log as they come.
//! - `POST /keyless/jobs/{key}/report`: `{"phase": "Preparing" | "Running" |
//!   "Finalizing"}`,
//!   `{"exit": {"code": n} | {"signal": n} | {"timedOut": true}}`,
//!   `{"done": true}` or `{"failed": {"code", "message"}}`.
//! - `GET  /keyless/jobs/{key}/token`: the job's identity endpoint, which the
//!   agent's node-local endpoint forwards to (secret in `X-IDENTITY-HEADER`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_ml::backend::Exit;

use super::data::{code_access, input_access, mount_access, output_access};
use keyless_ml::runner::{Status, Stop};

use super::{Session, set_status};
use crate::state::SharedState;

/// The header that carries the job's secret on agent calls.
pub(crate) const SECRET_HEADER: &str = "x-keyless-job-secret";

/// The header that names the job (its resource id) on agent calls, so that a
/// server that does not run it can say which do.
pub(crate) const JOB_HEADER: &str = "x-keyless-job";

/// The largest listing of an output folder an agent sends (about 300,000 files).
const MAX_OUTPUT_LISTING: usize = 64 * 1024 * 1024;

/// The most log bytes one call appends.
const MAX_LOG_CHUNK: usize = 1024 * 1024;

/// The agent API's routes.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new()
        .route("/keyless/jobs/{key}/token", get(crate::identity::job_token))
        .route("/keyless/jobs/{key}/spec", get(spec))
        .route("/keyless/jobs/{key}/code", post(code))
        .route("/keyless/jobs/{key}/inputs/{port}", post(input))
        .route(
            "/keyless/jobs/{key}/outputs/{port}",
            // A listing of every file of an output folder: large folders are large.
            post(output).layer(axum::extract::DefaultBodyLimit::max(MAX_OUTPUT_LISTING)),
        )
        .route("/keyless/jobs/{key}/mounts/{direction}/{port}", post(mount))
        .route("/keyless/jobs/{key}/image", post(image))
        .route("/keyless/jobs/{key}/log", post(log))
        .route("/keyless/jobs/{key}/report", post(report))
        .with_state(state)
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// The session of the job whose secret the call presents.
async fn session(
    state: &SharedState,
    key: &str,
    headers: &HeaderMap,
) -> Result<Arc<Session>, Box<Response>> {
    let closed = || {
        Box::new(refuse(
            StatusCode::FORBIDDEN,
            "JobEnded",
            "this job's agent endpoint is closed: the job has ended (or never existed)",
        ))
    };
    let presented = headers.get(SECRET_HEADER).and_then(|v| v.to_str().ok());
    if let Some(refusal) = not_here(state, key, headers, presented).await {
        return Err(Box::new(refusal));
    }
    let grant = state.jobs.grant_of(key).ok_or_else(closed)?;
    let presented = presented.ok_or_else(|| {
        Box::new(refuse(
            StatusCode::UNAUTHORIZED,
            "MissingJobSecret",
            "an agent call carries the job's secret in x-keyless-job-secret",
        ))
    })?;
    if !keyless_auth::secret::secret_matches(presented, &grant.secret_digest) {
        return Err(Box::new(refuse(
            StatusCode::FORBIDDEN,
            "InvalidJobSecret",
            "the job secret is not valid for this job",
        )));
    }
    // A server taking the job over knows its grant a moment before its
    // session: the agent retries until both are back.
    state.jobs.agent(key).ok_or_else(|| {
        if state.jobs.is_resuming(key) {
            Box::new(resuming())
        } else {
            closed()
        }
    })
}

fn resuming() -> Response {
    refuse(
        StatusCode::SERVICE_UNAVAILABLE,
        "JobResuming",
        "the keyless server is taking this job over; retry shortly",
    )
}

/// Why a call for a job this server does not run now should be retried: the
/// server is taking the job over again (503), or another server sharing the
/// store runs it (421, and the agent turns to its next endpoint). `None` when
/// this server runs the job, or nobody does.
pub(crate) async fn not_here(
    state: &SharedState,
    key: &str,
    headers: &HeaderMap,
    presented: Option<&str>,
) -> Option<Response> {
    if state.jobs.grant_of(key).is_some() {
        return None;
    }
    if state.jobs.is_resuming(key) {
        return Some(resuming());
    }
    // Only a caller that holds the job's secret learns where the job is.
    let job = headers.get(JOB_HEADER).and_then(|v| v.to_str().ok())?;
    let presented = presented?;
    let record = state.store.resource(job).await.ok().flatten()?;
    let claim = record.body.get("agent")?;
    let live = !super::super::jobs::TERMINAL.contains(&super::super::jobs::status_of(&record));
    let ours = claim.get("key").and_then(Value::as_str) == Some(key)
        && claim
            .get("secretDigest")
            .and_then(Value::as_str)
            .is_some_and(|d| keyless_auth::secret::secret_matches(presented, d));
    (live && ours).then(|| {
        refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "JobHeldElsewhere",
            "another keyless server runs this job (or is about to take it over); turn to the next endpoint",
        )
    })
}

/// Answers a data-access call; a refusal fails the job with its reason.
async fn answer(state: &SharedState, session: &Session, result: Result<Value, Stop>) -> Response {
    match result {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(stop) => {
            session.fail(&stop);
            session.persist(state).await;
            refuse(StatusCode::FORBIDDEN, stop.code, &stop.message)
        }
    }
}

async fn spec(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    match session(&state, &key, &headers).await {
        Ok(s) => (StatusCode::OK, Json(s.spec.clone())).into_response(),
        Err(r) => *r,
    }
}

async fn code(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = code_access(&state, &s).await;
    answer(&state, &s, result).await
}

async fn input(
    State(state): State<SharedState>,
    Path((key, port)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = input_access(&state, &s, &port).await;
    answer(&state, &s, result).await
}

async fn mount(
    State(state): State<SharedState>,
    Path((key, direction, port)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = mount_access(&state, &s, &direction, &port).await;
    answer(&state, &s, result).await
}

async fn image(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let result = super::image::access(&state, &s).await;
    answer(&state, &s, result).await
}

#[derive(Debug, Deserialize)]
struct OutputFiles {
    files: Vec<OutputFile>,
}

#[derive(Debug, Deserialize)]
struct OutputFile {
    path: String,
    size: u64,
}

async fn output(
    State(state): State<SharedState>,
    Path((key, port)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Ok(files) = serde_json::from_slice::<OutputFiles>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "the body is {\"files\": [{\"path\": …, \"size\": …}]}",
        );
    };
    let names = files.files.into_iter().map(|f| (f.path, f.size)).collect();
    let result = output_access(&state, &s, &port, names).await;
    answer(&state, &s, result).await
}

async fn log(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    use tokio::io::AsyncWriteExt as _;
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    if body.len() > MAX_LOG_CHUNK {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "LogChunkTooLarge",
            "send the log in chunks of at most 1 MiB",
        );
    }
    let appended = async {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&s.ctx.log.0)
            .await?;
        f.write_all(&body).await
    };
    match appended.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "LogWriteFailed",
            &format!("the job log could not be written: {e}"),
        ),
    }
}

/// A report of the agent.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Report {
    phase: Option<String>,
    exit: Option<ExitReport>,
    done: Option<bool>,
    failed: Option<Failure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExitReport {
    code: Option<i32>,
    signal: Option<i32>,
    timed_out: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Failure {
    code: String,
    message: String,
}

/// The failures an agent may report, as the job's error codes.
const AGENT_FAILURES: [&str; 7] = [
    "CodeChecksumMismatch",
    "CodeSnapshotUnreadable",
    "InputDownloadFailed",
    "OutputUploadFailed",
    "OutputOutsideJob",
    "JobStartFailed",
    "AgentFailed",
];

async fn report(
    State(state): State<SharedState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let s = match session(&state, &key, &headers).await {
        Ok(s) => s,
        Err(r) => return *r,
    };
    let Ok(report) = serde_json::from_slice::<Report>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "a report is {\"phase\"}, {\"exit\"}, {\"done\"} or {\"failed\"}",
        );
    };
    let job = s.ctx.job.clone();
    match report.phase.as_deref() {
        Some("Preparing") => {
            let _ = set_status(&state, &job, Status::Preparing, None).await;
        }
        Some("Running") => {
            let line = s.spec.get("command").and_then(Value::as_str).unwrap_or("");
            s.ctx.log.line(&format!("running: {line}")).await;
            let _ = set_status(&state, &job, Status::Running, None).await;
        }
        Some("Finalizing") => {
            let _ = set_status(&state, &job, Status::Finalizing, None).await;
        }
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidPhase",
                &format!(
                    "`{other}` is not a phase an agent reports (Preparing, Running, Finalizing)"
                ),
            );
        }
        None => {}
    }
    if let Some(e) = report.exit {
        let exit = match (e.code, e.signal, e.timed_out) {
            (Some(c), None, None) => Exit::Code(c),
            (None, Some(sig), None) => Exit::Signal(sig),
            (None, None, Some(true)) => Exit::TimedOut,
            _ => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    "InvalidExit",
                    "an exit is one of {\"code\"}, {\"signal\"}, {\"timedOut\": true}",
                );
            }
        };
        s.reports().exit = Some(exit);
    }
    if report.done == Some(true) {
        s.reports().done = true;
    }
    if let Some(f) = report.failed {
        let Some(code) = AGENT_FAILURES.iter().find(|c| **c == f.code) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidFailure",
                &format!("`{}` is not a failure an agent reports", f.code),
            );
        };
        let message: String = f.message.chars().take(4096).collect();
        s.fail(&Stop::failed(code, message));
    }
    s.persist(&state).await;
    StatusCode::NO_CONTENT.into_response()
}
