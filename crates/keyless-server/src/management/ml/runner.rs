//! The job lifecycle: Queued → Preparing → Running → Finalizing → Completed |
//! Failed | Canceled.
//!
//! Preparing fetches the code snapshot (and verifies its checksum), materialises
//! every input as the identity the rule of `keyless_core::identity_rule` picks,
//! and opens the job's identity endpoint. Running hands the command to the
//! compute backend. Finalizing uploads the outputs with the same rule. Every read
//! and write goes through the storage listener with a token (or a stored
//! credential) tagged with the job, so the storage log names the job. When the
//! job ends its endpoint closes and every token issued to it stops working.

use std::path::PathBuf;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use keyless_core::identity_rule::{Compute, ManagedIdentity};
use keyless_core::{ObjectId, Principal};
use keyless_ml::backend::{Exit, Task};
use keyless_ml::job::{Command, Job, substitute};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::user_assigned;
use super::workspaces::identities;
use crate::state::SharedState;

mod data;
mod env;

use data::{fetch_code, materialise_inputs, upload_outputs};
use env::environment;

/// Jobs on serverless compute run this many at a time.
const SERVERLESS_INSTANCES: usize = 4;

/// The folder of a job under the data dir.
fn job_dir(state: &SharedState, job: &str) -> PathBuf {
    let digest = keyless_auth::secret::digest_secret(&job.to_ascii_lowercase());
    let short: String = digest
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(24)
        .collect();
    let name = job.rsplit('/').next().unwrap_or("job");
    state
        .config
        .data_dir
        .join("jobs")
        .join(format!("{name}-{short}"))
}

/// The job's log in the artifact store (`user_logs/std_log.txt`, as Azure names it).
pub(super) fn log_path(state: &SharedState, job: &str) -> PathBuf {
    job_dir(state, job).join("user_logs").join("std_log.txt")
}

/// Serverless compute, as the identity rule sees it: the workspace's
/// user-assigned identities, the primary one first.
pub(super) async fn serverless(state: &SharedState, ws: &Resource) -> Result<Compute, MgmtError> {
    let ids = identities(ws)?;
    let mut ordered: Vec<String> = ids.primary.iter().cloned().collect();
    ordered.extend(
        ids.ids
            .user_assigned
            .iter()
            .filter(|u| Some(*u) != ids.primary.as_ref())
            .cloned(),
    );
    let mut out = Vec::new();
    for id in ordered {
        let (_, p) = user_assigned(state, &id).await?;
        out.push(ManagedIdentity {
            object_id: p.object_id.to_string(),
            client_id: p.app_id.map(|a| a.to_string()).unwrap_or_default(),
            system_assigned: false,
        });
    }
    Ok(Compute::Serverless {
        workspace_user_assigned: out,
    })
}

/// Starts a command job in the background.
pub(super) fn start_command(state: SharedState, job: String) {
    tokio::spawn(async move {
        run_command(&state, &job).await;
    });
}

/// Starts a pipeline in the background: its steps run one after another.
pub(super) fn start_pipeline(state: SharedState, parent: String, steps: Vec<String>) {
    tokio::spawn(async move {
        let cancel = state.jobs.cancel_token(&parent);
        let _ = set_status(&state, &parent, "Running", None).await;
        let mut failed: Option<String> = None;
        for step in &steps {
            if let Some(why) = &failed {
                let _ = set_status(&state, step, "Canceled", Some(error("StepSkipped", why))).await;
                continue;
            }
            if cancel.is_cancelled() {
                let _ = set_status(
                    &state,
                    step,
                    "Canceled",
                    Some(error("Canceled", "the pipeline was canceled")),
                )
                .await;
                continue;
            }
            let end = run_command(&state, step).await;
            if end != "Completed" {
                let name = step.rsplit('/').next().unwrap_or(step);
                failed = Some(format!("step {name} ended {end}"));
            }
        }
        let (status, err) = match (&failed, cancel.is_cancelled()) {
            (_, true) => (
                "Canceled",
                Some(error("Canceled", "the pipeline was canceled")),
            ),
            (Some(why), false) => ("Failed", Some(error("PipelineStepFailed", why))),
            (None, false) => ("Completed", None),
        };
        let _ = set_status(&state, &parent, status, err).await;
        state.jobs.forget(&parent);
    });
}

fn error(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// Marks every job the previous server left unfinished as failed.
pub(crate) async fn fail_interrupted(state: &SharedState) -> Result<(), keyless_core::Error> {
    for sub in state.store.subscriptions_all().await? {
        let sub_id = sub.id.to_string();
        for group in state.store.resource_groups(&sub_id).await? {
            for job in state
                .store
                .resources(&sub_id, &group.name, super::JOBS)
                .await?
            {
                if !super::jobs::TERMINAL.contains(&super::jobs::status_of(&job)) {
                    let _ = set_status(
                        state,
                        &job.id,
                        "Failed",
                        Some(error(
                            "ServerRestarted",
                            "the keyless server stopped while the job was running",
                        )),
                    )
                    .await;
                }
            }
        }
    }
    Ok(())
}

/// Records a status change (with its time) on a job.
async fn set_status(
    state: &SharedState,
    job: &str,
    status: &str,
    err: Option<Value>,
) -> Result<(), MgmtError> {
    let Some(mut r) = state.store.resource(job).await? else {
        return Ok(());
    };
    let time = jiff::Timestamp::from_second(state.now())
        .map(|t| t.to_string())
        .unwrap_or_default();
    if let Some(props) = r.body.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("status".into(), status.into());
        if let Some(Value::Array(history)) = props.get_mut("statusHistory") {
            history.push(json!({ "status": status, "time": time }));
        }
        if let Some(e) = err {
            props.insert("error".into(), e);
        }
    }
    state.store.resource_put(&r).await?;
    Ok(())
}

async fn set_property(state: &SharedState, job: &str, key: &str, value: Value) {
    if let Ok(Some(mut r)) = state.store.resource(job).await {
        if let Some(props) = r.body.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(key.into(), value);
        }
        let _ = state.store.resource_put(&r).await;
    }
}

/// Appends keyless's own lines to the job log.
struct Log(PathBuf);

impl Log {
    async fn line(&self, text: &str) {
        use tokio::io::AsyncWriteExt as _;
        if let Ok(mut f) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.0)
            .await
        {
            let _ = f.write_all(format!("[keyless] {text}\n").as_bytes()).await;
        }
    }
}

/// Why a job stops early: its final status and error.
struct Stop {
    status: &'static str,
    code: &'static str,
    message: String,
}

impl Stop {
    fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: "Failed",
            code,
            message: message.into(),
        }
    }
}

impl From<MgmtError> for Stop {
    fn from(e: MgmtError) -> Self {
        Self::failed("JobPreparationFailed", e.message())
    }
}

impl From<keyless_core::Error> for Stop {
    fn from(e: keyless_core::Error) -> Self {
        Self::failed("JobPreparationFailed", e.to_string())
    }
}

/// Everything a running job holds.
struct Context {
    job: String,
    ws: Resource,
    command: Command,
    submitter: Principal,
    compute: Compute,
    /// The job's folder on this machine.
    workdir: PathBuf,
    /// Where the command sees `workdir`.
    visible: PathBuf,
    log: Log,
    grant_key: Option<String>,
}

impl Context {
    /// How the command sees a path under the job's folder.
    fn seen(&self, path: &std::path::Path) -> String {
        path.strip_prefix(&self.workdir)
            .map_or_else(|_| path.to_path_buf(), |rel| self.visible.join(rel))
            .display()
            .to_string()
    }
}

/// Runs one command job to its end; returns its final status.
async fn run_command(state: &SharedState, job: &str) -> &'static str {
    let cancel = state.jobs.cancel_token(job);
    let dir = job_dir(state, job);
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let log = Log(log_path(state, job));
    if let Some(parent) = log.0.parent() {
        let _ = tokio::fs::create_dir_all(parent).await;
    }
    state.verifier.open_job(job);
    let mut ctx: Option<Context> = None;
    let outcome = lifecycle(state, job, &cancel, &mut ctx).await;
    if let Some(key) = ctx.as_ref().and_then(|c| c.grant_key.clone()) {
        state.jobs.revoke(&key);
    }
    state.verifier.close_job(job);
    state.jobs.forget(job);
    let (status, err) = match outcome {
        Ok(()) => ("Completed", None),
        Err(stop) => {
            log.line(&format!("{}: {}", stop.code, stop.message)).await;
            (stop.status, Some(error(stop.code, &stop.message)))
        }
    };
    log.line(&format!("job {status}")).await;
    let _ = set_status(state, job, status, err).await;
    if let Some(c) = ctx {
        let _ = tokio::fs::remove_dir_all(&c.workdir).await;
    }
    status
}

async fn lifecycle(
    state: &SharedState,
    job: &str,
    cancel: &CancellationToken,
    slot: &mut Option<Context>,
) -> Result<(), Stop> {
    let r = state
        .store
        .resource(job)
        .await?
        .ok_or_else(|| Stop::failed("JobNotFound", "the job record vanished"))?;
    let props = r.body.get("properties").cloned().unwrap_or(Value::Null);
    let Job::Command(command) = Job::from_rest(&props)? else {
        return Err(Stop::failed(
            "JobNotRunnable",
            "a pipeline is not run as a command",
        ));
    };
    let ws_id = job.split("/jobs/").next().unwrap_or_default();
    let ws = state
        .store
        .resource(ws_id)
        .await?
        .ok_or_else(|| Stop::failed("WorkspaceNotFound", "the job's workspace was deleted"))?;
    let (compute, instances) = match props.get("computeId").and_then(Value::as_str) {
        Some(id) => {
            let c = state.store.resource(id).await?.ok_or_else(|| {
                Stop::failed("ComputeNotFound", format!("compute {id} was deleted"))
            })?;
            let max = c
                .body
                .pointer("/properties/properties/scaleSettings/maxNodeCount")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            (
                super::computes::rule_view(state, &c).await?,
                usize::try_from(max).unwrap_or(1),
            )
        }
        None => (serverless(state, &ws).await?, SERVERLESS_INSTANCES),
    };
    let submitter_id = props
        .pointer("/submittedBy/objectId")
        .and_then(Value::as_str)
        .and_then(|o| ObjectId::parse(o).ok())
        .ok_or_else(|| Stop::failed("JobNotRunnable", "the job does not say who submitted it"))?;
    let submitter = state
        .store
        .principal(submitter_id)
        .await?
        .filter(|p| p.enabled)
        .ok_or_else(|| {
            Stop::failed(
                "SubmitterGone",
                "the identity that submitted the job no longer exists or is disabled",
            )
        })?;
    let compute_key = props
        .get("computeId")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{ws_id}/serverless"), str::to_owned);
    let slots = state.jobs.slots(&compute_key, instances);
    let _permit = tokio::select! {
        p = slots.acquire_owned() => p.map_err(|_| Stop::failed("ComputeUnavailable", "the compute's slots were closed"))?,
        () = cancel.cancelled() => return Err(canceled()),
    };
    set_status(state, job, "Preparing", None).await?;
    let workdir = job_dir(state, job).join("wd");
    tokio::fs::create_dir_all(&workdir).await.map_err(|e| {
        Stop::failed(
            "JobPreparationFailed",
            format!("cannot create the working directory: {e}"),
        )
    })?;
    let log = Log(log_path(state, job));
    log.line(&format!(
        "job {} on {} (backend {}), submitted by {}",
        job.rsplit('/').next().unwrap_or(job),
        compute_label(&compute),
        state.jobs.backend.name(),
        submitter
            .user_principal_name
            .clone()
            .unwrap_or_else(|| submitter.object_id.to_string())
    ))
    .await;
    let visible = state.jobs.backend.job_root(&workdir);
    let ctx = slot.insert(Context {
        job: job.to_owned(),
        ws,
        command,
        submitter,
        compute,
        workdir,
        visible,
        log,
        grant_key: None,
    });
    let preparing = async {
        fetch_code(state, ctx, &props).await?;
        materialise_inputs(state, ctx).await
    };
    let (inputs, outputs) = tokio::select! {
        r = preparing => r?,
        () = cancel.cancelled() => return Err(canceled()),
    };
    let env = environment(state, ctx, &inputs, &outputs).await?;
    let line = substitute(&ctx.command.command, &inputs, &outputs)?;
    set_status(state, job, "Running", None).await?;
    ctx.log.line(&format!("running: {line}")).await;
    let task = Task {
        job: job.to_owned(),
        command: line,
        root: ctx.workdir.clone(),
        cwd: PathBuf::from("code"),
        env,
        log: ctx.log.0.clone(),
        timeout: ctx.command.timeout.map(std::time::Duration::from_secs),
    };
    let exit = state
        .jobs
        .backend
        .run(task, cancel.clone())
        .await
        .map_err(|e| Stop::failed("JobStartFailed", e.to_string()))?;
    set_property(state, job, "exit", json!(exit.to_string())).await;
    match exit {
        Exit::Canceled => return Err(canceled()),
        Exit::TimedOut => {
            return Err(Stop::failed(
                "JobTimedOut",
                format!(
                    "the command ran longer than limits.timeout ({}s)",
                    ctx.command.timeout.unwrap_or(0)
                ),
            ));
        }
        e if !e.succeeded() => {
            return Err(Stop::failed(
                "UserError",
                format!("the command ended with {e}"),
            ));
        }
        _ => {}
    }
    set_status(state, job, "Finalizing", None).await?;
    upload_outputs(state, ctx).await
}

fn canceled() -> Stop {
    Stop {
        status: "Canceled",
        code: "Canceled",
        message: "the job was canceled".into(),
    }
}

fn compute_label(c: &Compute) -> String {
    match c {
        Compute::Target { name, .. } => format!("compute {name}"),
        Compute::Serverless { .. } => "serverless compute".into(),
    }
}
