//! A job's record while it runs: its status and timeline, its properties, and
//! the agent claim another server follows it again by. Every change goes
//! through [`update_job`], one transaction of the store each, so that changes
//! made at once (the agent's reports, the backend's events, a cancel through
//! another server, a take-over) do not overwrite each other.

use serde_json::{Value, json};

use keyless_ml::backend::Exit;
use keyless_ml::runner::{Reports, Status, Stop};
use keyless_store::Resource;

use super::super::super::error::MgmtError;
use crate::state::SharedState;

/// Changes a job's record in one transaction of the store.
pub(super) async fn update_job(
    state: &SharedState,
    job: &str,
    change: impl FnOnce(&mut serde_json::Map<String, Value>) + Send,
) -> Result<(), MgmtError> {
    let mut change = Some(change);
    state
        .store
        .resource_update(
            job,
            &mut |body| match (body.as_object_mut(), change.take()) {
                (Some(body), Some(change)) => {
                    change(body);
                    true
                }
                _ => false,
            },
        )
        .await?;
    Ok(())
}

fn props_of(
    body: &mut serde_json::Map<String, Value>,
) -> Option<&mut serde_json::Map<String, Value>> {
    body.get_mut("properties").and_then(Value::as_object_mut)
}

/// Records a status change (with its time) on a job.
pub(super) async fn set_status(
    state: &SharedState,
    job: &str,
    status: Status,
    err: Option<Value>,
) -> Result<(), MgmtError> {
    let time = jiff::Timestamp::from_second(state.now())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut before = None;
    update_job(state, job, |body| {
        if let Some(props) = props_of(body) {
            before = props
                .get("status")
                .and_then(Value::as_str)
                .map(str::to_owned);
            props.insert("status".into(), status.as_str().into());
            if let Some(Value::Array(history)) = props.get_mut("statusHistory") {
                history.push(json!({ "status": status.as_str(), "time": time }));
            }
            if let Some(e) = err {
                props.insert("error".into(), e);
            }
        }
    })
    .await?;
    if let Some(before) = before.filter(|b| b != status.as_str()) {
        crate::metrics::job_status(Some(&before), status.as_str());
    }
    Ok(())
}

pub(super) async fn set_property(state: &SharedState, job: &str, key: &str, value: Value) {
    let _ = update_job(state, job, |body| {
        if let Some(props) = props_of(body) {
            props.insert(key.into(), value);
        }
    })
    .await;
}

/// Sets a key of the job's `properties.properties`, the bag azure-ai-ml shows
/// as the job's properties.
pub(super) async fn set_inner_property(state: &SharedState, job: &str, key: &str, value: Value) {
    let _ = update_job(state, job, |body| {
        if let Some(bag) = props_of(body)
            .map(|p| p.entry("properties").or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut)
        {
            bag.insert(key.into(), value);
        }
    })
    .await;
}

/// Sets a key of the job's agent claim: what a restarted server needs to
/// follow the job (its endpoint key and secret digest, the backend's handle,
/// the agent's reports, the SAS signed for it, which server runs it and when it
/// last said so). It lies outside `properties`, so no API returns it.
pub(super) async fn set_agent(state: &SharedState, job: &str, key: &str, value: Value) {
    let _ = update_job(state, job, |body| {
        if let Some(agent) = body
            .entry("agent")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            agent.insert(key.into(), value);
        }
    })
    .await;
}

/// The error of a job's record.
pub(super) fn error(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// What a restarted server needs to follow a job its predecessor started.
#[derive(Debug, Clone)]
pub(super) struct Resume {
    pub(super) key: String,
    pub(super) secret_digest: String,
    /// The backend's id of the task (the Slurm job id).
    pub(super) handle: String,
    pub(super) reports: Reports,
    /// The SAS signed for the job: digests of their signatures and expiries.
    pub(super) minted: Vec<(String, i64)>,
}

impl Resume {
    /// The agent record of a command job that a backend can follow again.
    pub(super) fn of(job: &Resource) -> Option<Self> {
        let agent = job.body.get("agent")?;
        let text = |k: &str| agent.get(k).and_then(Value::as_str).map(str::to_owned);
        let pipeline = job
            .body
            .pointer("/properties/jobType")
            .and_then(Value::as_str)
            == Some("Pipeline");
        let step = job.body.pointer("/properties/parentJobName").is_some();
        if pipeline || step || text("backend").as_deref() != Some("slurm") {
            return None;
        }
        let reports = agent
            .get("reports")
            .map(reports_from_json)
            .unwrap_or_default();
        let minted = agent
            .get("minted")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| Some((m.get(0)?.as_str()?.to_owned(), m.get(1)?.as_i64()?)))
            .collect();
        Some(Self {
            minted,
            key: text("key")?,
            secret_digest: text("secretDigest")?,
            handle: text("handle")?,
            reports,
        })
    }
}

pub(super) fn reports_json(r: &Reports) -> Value {
    json!({
        "exit": r.exit.map(exit_json),
        "done": r.done,
        "stop": r.stop.as_ref().map(|s| json!({ "status": s.status.as_str(), "code": s.code, "message": s.message })),
    })
}

fn reports_from_json(v: &Value) -> Reports {
    let stop = v.get("stop").filter(|s| !s.is_null()).map(|s| {
        let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
        Stop {
            status: if text("status") == "Canceled" {
                Status::Canceled
            } else {
                Status::Failed
            },
            code: known_code(text("code")),
            message: text("message").to_owned(),
        }
    });
    Reports {
        exit: v.get("exit").and_then(exit_from_json),
        done: v.get("done").and_then(Value::as_bool).unwrap_or(false),
        stop,
    }
}

/// An error code read back from a job's record, as one of the codes keyless
/// uses (`AgentFailed` for any other).
fn known_code(code: &str) -> &'static str {
    const CODES: [&str; 16] = [
        "Canceled",
        "ServerStopped",
        "AgentProtocol",
        "JobPreparationFailed",
        "InputAccessDenied",
        "OutputAccessDenied",
        "OutputOutsideJob",
        "OutputUploadFailed",
        "InputDownloadFailed",
        "CodeChecksumMismatch",
        "CodeSnapshotUnreadable",
        "JobIdentityRefused",
        "JobStartFailed",
        "JobTimedOut",
        "UserError",
        "AgentFailed",
    ];
    CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("AgentFailed")
}

pub(super) fn exit_json(e: Exit) -> Value {
    match e {
        Exit::Code(c) => json!({ "code": c }),
        Exit::Signal(s) => json!({ "signal": s }),
        Exit::TimedOut => json!({ "timedOut": true }),
        Exit::Canceled => json!({ "canceled": true }),
    }
}

fn exit_from_json(v: &Value) -> Option<Exit> {
    let int = |k: &str| {
        v.get(k)
            .and_then(Value::as_i64)
            .and_then(|n| i32::try_from(n).ok())
    };
    if let Some(c) = int("code") {
        Some(Exit::Code(c))
    } else if let Some(s) = int("signal") {
        Some(Exit::Signal(s))
    } else if v.get("timedOut").and_then(Value::as_bool) == Some(true) {
        Some(Exit::TimedOut)
    } else if v.get("canceled").and_then(Value::as_bool) == Some(true) {
        Some(Exit::Canceled)
    } else {
        None
    }
}
