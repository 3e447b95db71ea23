//! The job lifecycle: Queued → Preparing → Running → Finalizing → Completed |
//! Failed | Canceled.
//!
//! The server plans a job — where each input and output lies, who reads and
//! writes it by the rule of `keyless_core::identity_rule`, the command line —
//! and hands the compute backend one task: the job agent (`keyless job-agent`),
//! started on the compute as the job's unprivileged user with a handle file
//! that only that user can read. The agent does the data work through the
//! storage listener and reports back over the agent API ([`agent`]): it fetches
//! the code snapshot and checks its checksum, downloads the inputs, opens the
//! job's identity endpoint on the node's loopback, runs the command and streams
//! its output, and uploads the outputs. The server never touches a job's bytes;
//! it hands out access scoped to each blob (a job-tagged token of the chosen
//! identity, or a SAS it signs for that blob alone), and when the job ends the
//! tokens, the SAS and the agent's secret stop working together.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use keyless_core::identity_rule::{Compute, ManagedIdentity};
use keyless_core::{ObjectId, Principal};
use keyless_ml::backend::{Event, Exit, Task};
use keyless_ml::job::{Command, Job, substitute};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::user_assigned;
use super::workspaces::identities;
use crate::state::SharedState;

pub(crate) mod agent;
mod data;
mod env;

use data::{Planned, plan_data};
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
        run_command(&state, &job, None).await;
    });
}

/// Starts a pipeline in the background. Each step runs once every step it
/// reads from has completed; independent steps run at once (within their
/// computes' slots). After a failure the running steps are canceled and the
/// others skipped, as Azure stops a pipeline at its first failure, unless
/// `continue_on_step_failure`: then only the steps that read from a failed
/// one are skipped.
pub(super) fn start_pipeline(
    state: SharedState,
    parent: String,
    steps: Vec<(String, Vec<String>)>,
    continue_on_step_failure: bool,
) {
    tokio::spawn(async move {
        let cancel = state.jobs.cancel_token(&parent);
        let _ = set_status(&state, &parent, "Running", None).await;
        let failed = run_steps(&state, steps, &cancel, continue_on_step_failure).await;
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

/// Runs a pipeline's steps by their dependencies; returns why it failed, if it did.
async fn run_steps(
    state: &SharedState,
    steps: Vec<(String, Vec<String>)>,
    cancel: &CancellationToken,
    continue_on_step_failure: bool,
) -> Option<String> {
    let short = |id: &str| id.rsplit('/').next().unwrap_or(id).to_owned();
    let mut ended: std::collections::HashMap<String, &'static str> =
        std::collections::HashMap::new();
    let mut failed: Option<String> = None;
    let mut pending = steps;
    let mut running: tokio::task::JoinSet<(String, &'static str)> = tokio::task::JoinSet::new();
    let mut started: Vec<String> = Vec::new();
    loop {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(_, deps)| deps.iter().all(|d| ended.contains_key(d)));
        pending = waiting;
        let progress = !ready.is_empty();
        for (step, deps) in ready {
            let skipped = if cancel.is_cancelled() {
                Some(("Canceled", "the pipeline was canceled".to_owned()))
            } else if let Some(dep) = deps.iter().find(|d| ended.get(*d) != Some(&"Completed")) {
                Some((
                    "StepSkipped",
                    format!("step {} it reads from did not complete", short(dep)),
                ))
            } else if let (Some(why), false) = (&failed, continue_on_step_failure) {
                Some(("StepSkipped", why.clone()))
            } else {
                None
            };
            match skipped {
                Some((code, why)) => {
                    let _ = set_status(state, &step, "Canceled", Some(error(code, &why))).await;
                    ended.insert(step, "Canceled");
                }
                None => {
                    started.push(step.clone());
                    let state = state.clone();
                    running.spawn(async move {
                        let end = run_command(&state, &step, None).await;
                        (step, end)
                    });
                }
            }
        }
        // Skipping a step may have made others ready.
        if running.is_empty() {
            if pending.is_empty() {
                break;
            }
            if !progress {
                // Nothing runs and nothing can start: what is left waits on a
                // step that never ended (its runner failed).
                for (step, _) in std::mem::take(&mut pending) {
                    let why = "a step it reads from never ended";
                    let _ =
                        set_status(state, &step, "Canceled", Some(error("StepSkipped", why))).await;
                }
                break;
            }
            continue;
        }
        match running.join_next().await {
            Some(Ok((step, end))) => {
                if end != "Completed" && failed.is_none() {
                    failed = Some(format!("step {} ended {end}", short(&step)));
                    if !continue_on_step_failure {
                        for other in started.iter().filter(|o| !ended.contains_key(*o)) {
                            state.jobs.cancel_token(other).cancel();
                        }
                    }
                }
                ended.insert(step, end);
            }
            Some(Err(e)) => {
                failed.get_or_insert_with(|| format!("a step's runner failed: {e}"));
            }
            None => break,
        }
    }
    failed
}

fn error(code: &str, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// Takes over every job the previous server left unfinished: a command job
/// whose backend can follow it across a restart (Slurm) is followed again with
/// the agent it already has; every other one (local jobs, which died with the
/// server, and pipelines) is marked failed.
pub(crate) async fn fail_interrupted(state: &SharedState) -> Result<(), keyless_core::Error> {
    for sub in state.store.subscriptions_all().await? {
        let sub_id = sub.id.to_string();
        for group in state.store.resource_groups(&sub_id).await? {
            for job in state
                .store
                .resources(&sub_id, &group.name, super::JOBS)
                .await?
            {
                if super::jobs::TERMINAL.contains(&super::jobs::status_of(&job)) {
                    continue;
                }
                if let Some(resume) = Resume::of(&job) {
                    tracing::info!(job = %job.id, handle = %resume.handle, "following an interrupted job again");
                    state.jobs.set_resuming(&resume.key, true);
                    let state = state.clone();
                    tokio::spawn(async move {
                        run_command(&state, &job.id, Some(resume)).await;
                    });
                    continue;
                }
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
    Ok(())
}

/// What a restarted server needs to follow a job its predecessor started.
#[derive(Debug, Clone)]
struct Resume {
    key: String,
    secret_digest: String,
    /// The backend's id of the task (the Slurm job id).
    handle: String,
    reports: Reports,
    /// The SAS signed for the job: digests of their signatures and expiries.
    minted: Vec<(String, i64)>,
}

impl Resume {
    /// The agent record of a command job that a backend can follow again.
    fn of(job: &Resource) -> Option<Self> {
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
            .map(Reports::from_json)
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

/// How long the runner waits between two heartbeats of a job's claim.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(30);

/// Changes a job's record under the runtime's lock of job records, so that
/// changes made at once (the agent's reports, the backend's events, the
/// heartbeat) do not overwrite each other.
async fn update_job(
    state: &SharedState,
    job: &str,
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Result<(), MgmtError> {
    let _writing = state.jobs.writes.lock().await;
    let Some(mut r) = state.store.resource(job).await? else {
        return Ok(());
    };
    if let Some(body) = r.body.as_object_mut() {
        change(body);
    }
    state.store.resource_put(&r).await?;
    Ok(())
}

fn props_of(
    body: &mut serde_json::Map<String, Value>,
) -> Option<&mut serde_json::Map<String, Value>> {
    body.get_mut("properties").and_then(Value::as_object_mut)
}

/// Records a status change (with its time) on a job.
async fn set_status(
    state: &SharedState,
    job: &str,
    status: &str,
    err: Option<Value>,
) -> Result<(), MgmtError> {
    let time = jiff::Timestamp::from_second(state.now())
        .map(|t| t.to_string())
        .unwrap_or_default();
    update_job(state, job, |body| {
        if let Some(props) = props_of(body) {
            props.insert("status".into(), status.into());
            if let Some(Value::Array(history)) = props.get_mut("statusHistory") {
                history.push(json!({ "status": status, "time": time }));
            }
            if let Some(e) = err {
                props.insert("error".into(), e);
            }
        }
    })
    .await
}

async fn set_property(state: &SharedState, job: &str, key: &str, value: Value) {
    let _ = update_job(state, job, |body| {
        if let Some(props) = props_of(body) {
            props.insert(key.into(), value);
        }
    })
    .await;
}

/// Sets a key of the job's `properties.properties`, the bag azure-ai-ml shows
/// as the job's properties.
async fn set_inner_property(state: &SharedState, job: &str, key: &str, value: Value) {
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

/// Sets a key of the job's agent record: what a restarted server needs to
/// follow the job (its endpoint key and secret digest, the backend's handle,
/// the agent's reports, which server runs it and when it last said so). It
/// lies outside `properties`, so no API returns it.
async fn set_agent(state: &SharedState, job: &str, key: &str, value: Value) {
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

/// Appends keyless's own lines to the job log.
#[derive(Debug)]
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
#[derive(Debug, Clone)]
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
#[derive(Debug)]
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

/// A running job's agent session: what the agent API answers from, and what
/// the agent reported.
#[derive(Debug)]
pub(crate) struct Session {
    ctx: Context,
    /// The code version the job runs, if any.
    code_id: Option<String>,
    /// Where each `download` input and each output lies, by port.
    inputs: BTreeMap<String, Planned>,
    outputs: BTreeMap<String, Planned>,
    /// What the agent is told to do.
    spec: Value,
    reports: Mutex<Reports>,
}

/// What a job's agent said, and why the server stopped it.
#[derive(Debug, Default, Clone)]
struct Reports {
    /// How the command ended.
    exit: Option<Exit>,
    /// Every output was uploaded.
    done: bool,
    /// The first reason the job failed, from the server or the agent.
    stop: Option<Stop>,
    /// Which data went where as whom (`dataAccess` on the job).
    access: Vec<Value>,
}

impl Reports {
    fn to_json(&self) -> Value {
        json!({
            "exit": self.exit.map(exit_json),
            "done": self.done,
            "stop": self.stop.as_ref().map(|s| json!({ "status": s.status, "code": s.code, "message": s.message })),
        })
    }

    fn from_json(v: &Value) -> Self {
        let stop = v.get("stop").filter(|s| !s.is_null()).map(|s| {
            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
            let status = if text("status") == "Canceled" {
                "Canceled"
            } else {
                "Failed"
            };
            Stop {
                status,
                code: known_code(text("code")),
                message: text("message").to_owned(),
            }
        });
        Self {
            exit: v.get("exit").and_then(exit_from_json),
            done: v.get("done").and_then(Value::as_bool).unwrap_or(false),
            stop,
            access: Vec::new(),
        }
    }
}

/// An error code read back from a job's record, as one of the codes keyless
/// uses (`AgentFailed` for any other).
fn known_code(code: &str) -> &'static str {
    const CODES: [&str; 14] = [
        "Canceled",
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

fn exit_json(e: Exit) -> Value {
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

impl Session {
    /// Writes the agent's reports to the job's record, for a restarted server.
    async fn persist(&self, state: &SharedState) {
        let reports = self.reports().to_json();
        set_agent(state, &self.ctx.job, "reports", reports).await;
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records why the job fails; the first reason wins.
    fn fail(&self, stop: &Stop) {
        let mut reports = self.reports();
        if reports.stop.is_none() {
            reports.stop = Some(stop.clone());
        }
    }
}

/// The file, in the job's folder, that hands the agent its endpoint and secret.
const HANDLE_FILE: &str = ".job-handle";
/// The agent's own diagnostics, next to the job's folder.
const AGENT_LOG: &str = "agent.log";

/// Runs one command job to its end, or follows it again after a restart;
/// returns its final status.
async fn run_command(state: &SharedState, job: &str, resume: Option<Resume>) -> &'static str {
    let cancel = state.jobs.cancel_token(job);
    let dir = job_dir(state, job);
    if resume.is_none() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    let log = Log(log_path(state, job));
    if let Some(parent) = log.0.parent() {
        let _ = tokio::fs::create_dir_all(parent).await;
    }
    state.verifier.open_job(job);
    let mut slot: Option<std::sync::Arc<Session>> = None;
    let resume_key = resume.as_ref().map(|r| r.key.clone());
    let outcome = lifecycle(state, job, &cancel, &mut slot, resume).await;
    if let Some(key) = slot.as_ref().and_then(|s| s.ctx.grant_key.clone()) {
        state.jobs.revoke(&key);
        state.jobs.detach_agent(&key);
    }
    if let Some(r) = &resume_key {
        state.jobs.set_resuming(r, false);
    }
    state.jobs.revoke_minted(job);
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
    if let Some(s) = slot {
        let _ = tokio::fs::remove_dir_all(&s.ctx.workdir).await;
    }
    status
}

async fn lifecycle(
    state: &SharedState,
    job: &str,
    cancel: &CancellationToken,
    slot: &mut Option<std::sync::Arc<Session>>,
    resume: Option<Resume>,
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
    let (compute, instances, backend) = match props.get("computeId").and_then(Value::as_str) {
        Some(id) => {
            let c = state.store.resource(id).await?.ok_or_else(|| {
                Stop::failed("ComputeNotFound", format!("compute {id} was deleted"))
            })?;
            let max = c
                .body
                .pointer("/properties/properties/scaleSettings/maxNodeCount")
                .and_then(Value::as_u64)
                .unwrap_or(1);
            let spec = keyless_ml::backend::BackendSpec::from_compute(
                c.body.get("properties").unwrap_or(&Value::Null),
            )?;
            (
                super::computes::rule_view(state, &c).await?,
                usize::try_from(max).unwrap_or(1),
                state.jobs.backend_for(&spec),
            )
        }
        None => (
            serverless(state, &ws).await?,
            SERVERLESS_INSTANCES,
            std::sync::Arc::clone(&state.jobs.backend),
        ),
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
    let dir = job_dir(state, job);
    let workdir = dir.join("wd");
    tokio::fs::create_dir_all(workdir.join("code"))
        .await
        .map_err(|e| {
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
        backend.name(),
        submitter
            .user_principal_name
            .clone()
            .unwrap_or_else(|| submitter.object_id.to_string())
    ))
    .await;
    let visible = backend.job_root(&workdir);
    let mut ctx = Context {
        job: job.to_owned(),
        ws,
        command,
        submitter,
        compute,
        workdir,
        visible,
        log,
        grant_key: None,
    };
    let plan = plan_data(state, &ctx).await?;
    let resumed = resume
        .as_ref()
        .map(|r| (r.key.as_str(), r.secret_digest.as_str()));
    let prepared = environment(state, &mut ctx, &plan.inputs, &plan.outputs, resumed).await?;
    let line = substitute(&ctx.command.command, &plan.inputs, &plan.outputs)?;
    let key = ctx.grant_key.clone().unwrap_or_default();
    let spec = json!({
        "job": job.rsplit('/').next().unwrap_or(job),
        "command": line,
        "cwd": "code",
        "env": prepared.env,
        "timeout": ctx.command.timeout,
        "code": props.get("codeId").and_then(Value::as_str).is_some(),
        "inputs": plan.spec_inputs,
        "outputs": plan.spec_outputs,
        "identity": prepared.identity,
    });
    let ca = state
        .jobs
        .ca_file
        .get()
        .map(|_| ctx.seen(&ctx.workdir.join("ca.pem")));
    let handle = json!({
        "endpoint": state.urls.management,
        "key": key,
        "secret": prepared.secret,
        "ca": ca,
    });
    if resume.is_none() {
        write_private(&ctx.workdir.join(HANDLE_FILE), &handle.to_string()).await?;
        let claim = json!({
            "key": key,
            "secretDigest": keyless_auth::secret::digest_secret(
                handle.get("secret").and_then(Value::as_str).unwrap_or_default()
            ),
            "backend": backend.name(),
            "server": state.jobs.server_id,
            "heartbeat": state.now(),
        });
        let _ = update_job(state, job, |body| {
            body.insert("agent".into(), claim);
        })
        .await;
    } else {
        set_agent(state, job, "server", json!(state.jobs.server_id)).await;
    }
    for (digest, expiry) in resume.iter().flat_map(|r| &r.minted) {
        state.jobs.minted(digest, job, *expiry, state.now());
    }
    let handle_seen = ctx.seen(&ctx.workdir.join(HANDLE_FILE));
    let session = std::sync::Arc::new(Session {
        code_id: props
            .get("codeId")
            .and_then(Value::as_str)
            .map(str::to_owned),
        inputs: plan.planned_inputs,
        outputs: plan.planned_outputs,
        spec,
        reports: Mutex::new(
            resume
                .as_ref()
                .map(|r| r.reports.clone())
                .unwrap_or_default(),
        ),
        ctx,
    });
    *slot = Some(std::sync::Arc::clone(&session));
    state
        .jobs
        .attach_agent(&key, std::sync::Arc::clone(&session));
    state.jobs.set_resuming(&key, false);
    let ctx = &session.ctx;
    let (events, follower) = follow_events(state, job);
    let agent = backend.agent_path(&state.jobs.agent_exe);
    let task = Task {
        job: job.to_owned(),
        command: format!(
            "exec {} job-agent",
            keyless_ml::job::shell_word(&agent.display().to_string())
        ),
        root: ctx.workdir.clone(),
        cwd: PathBuf::new(),
        env: vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("HOME".into(), ctx.visible.display().to_string()),
            ("KEYLESS_JOB_HANDLE".into(), handle_seen),
        ],
        log: dir.join(AGENT_LOG),
        timeout: None,
        events: Some(events),
    };
    let heartbeat = {
        let (state, job) = (state.clone(), job.to_owned());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                set_agent(&state, &job, "heartbeat", json!(state.now())).await;
            }
        })
    };
    let exit = match &resume {
        Some(r) => {
            ctx.log
                .line(&format!(
                    "the keyless server restarted; following Slurm job {} again",
                    r.handle
                ))
                .await;
            backend.reattach(&r.handle, task, cancel.clone()).await
        }
        None => backend.run(task, cancel.clone()).await,
    }
    .map_err(|e| Stop::failed("JobStartFailed", e.to_string()));
    heartbeat.abort();
    follower.abort();
    let exit = exit?;
    let reports = session.reports().clone();
    if let Some(e) = reports.exit {
        set_property(state, job, "exit", json!(e.to_string())).await;
    }
    if exit == Exit::Canceled {
        return Err(canceled());
    }
    if let Some(stop) = reports.stop {
        return Err(stop);
    }
    match reports.exit {
        Some(Exit::TimedOut) => Err(Stop::failed(
            "JobTimedOut",
            format!(
                "the command ran longer than limits.timeout ({}s)",
                ctx.command.timeout.unwrap_or(0)
            ),
        )),
        Some(e) if !e.succeeded() => Err(Stop::failed(
            "UserError",
            format!("the command ended with {e}"),
        )),
        Some(_) if reports.done => Ok(()),
        _ => {
            let tail = agent_log_tail(&dir.join(AGENT_LOG)).await;
            Err(Stop::failed(
                "AgentFailed",
                format!("the job agent ended ({exit}) before the job finished: {tail}"),
            ))
        }
    }
}

/// Records what the backend tells about the job while it runs: the
/// scheduler's id on the job (`properties.slurmJobId`), its waiting in the log.
fn follow_events(
    state: &SharedState,
    job: &str,
) -> (
    tokio::sync::mpsc::UnboundedSender<Event>,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (state, job) = (state.clone(), job.to_owned());
    let follower = tokio::spawn(async move {
        let log = Log(log_path(&state, &job));
        while let Some(event) = rx.recv().await {
            match event {
                Event::Submitted(id) => {
                    log.line(&format!("submitted to Slurm as job {id}")).await;
                    set_agent(&state, &job, "handle", json!(id)).await;
                    set_inner_property(&state, &job, "slurmJobId", json!(id)).await;
                }
                Event::Pending(reason) => {
                    log.line(&format!("waiting in the Slurm queue ({reason})"))
                        .await;
                }
                Event::Started => log.line("started by Slurm").await,
            }
        }
    });
    (tx, follower)
}

/// The last lines the agent wrote about itself.
async fn agent_log_tail(path: &std::path::Path) -> String {
    let text = tokio::fs::read_to_string(path).await.unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines
        .get(lines.len().saturating_sub(5)..)
        .unwrap_or_default()
        .join(" | ");
    if tail.is_empty() {
        "it wrote nothing".into()
    } else {
        tail
    }
}

/// Writes a file only its owner can read.
async fn write_private(path: &std::path::Path, text: &str) -> Result<(), Stop> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = path.to_path_buf();
    let text = text.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(text.as_bytes())
    })
    .await
    .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?
    .map_err(|e| {
        Stop::failed(
            "JobPreparationFailed",
            format!("cannot write the job's handle: {e}"),
        )
    })
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
