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

use serde_json::Value;

use keyless_core::Principal;
use keyless_core::identity_rule::{Compute, ManagedIdentity};
use keyless_ml::job::Command;
use keyless_ml::runner::{Reports, Status, Stop};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::user_assigned;
use super::workspaces::identities;
use crate::state::SharedState;

pub(crate) mod agent;
mod data;
mod env;
mod host;
mod pipeline;
mod record;

use data::Planned;
pub(super) use pipeline::start_pipeline;
use record::{Resume, error, set_agent, set_status};

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
    let tracker = state.jobs.tasks.clone();
    tracker.spawn(async move {
        run_command(&state, &job, None).await;
    });
}

/// Takes over every job this server (or a server before it in its data dir) left
/// unfinished; jobs other servers sharing the store run are theirs. A command job
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
                // Another server sharing the store runs it.
                if job
                    .body
                    .get("runner")
                    .and_then(Value::as_str)
                    .is_some_and(|runner| runner != state.server_id)
                {
                    continue;
                }
                if let Some(resume) = Resume::of(&job) {
                    tracing::info!(job = %job.id, handle = %resume.handle, "following an interrupted job again");
                    state.jobs.set_resuming(&resume.key, true);
                    let task_state = state.clone();
                    state.jobs.tasks.spawn(async move {
                        run_command(&task_state, &job.id, Some(resume)).await;
                    });
                    continue;
                }
                let _ = set_status(
                    state,
                    &job.id,
                    Status::Failed,
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

impl From<MgmtError> for Stop {
    fn from(e: MgmtError) -> Self {
        Self::failed("JobPreparationFailed", e.message())
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
    /// What the agent reported, and why the server stopped the job.
    reports: Mutex<Reports>,
    /// Which data went where as whom (`dataAccess` on the job).
    access: Mutex<Vec<Value>>,
}

impl Session {
    /// Writes the agent's reports to the job's record, for a restarted server.
    async fn persist(&self, state: &SharedState) {
        let reports = record::reports_json(&self.reports());
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
async fn run_command(state: &SharedState, job: &str, resume: Option<Resume>) -> Status {
    let cancel = state.jobs.cancel_token(job);
    let dir = job_dir(state, job);
    if resume.is_none() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
    }
    if let Some(parent) = log_path(state, job).parent() {
        let _ = tokio::fs::create_dir_all(parent).await;
    }
    // Every server honours the job's tokens while it runs, whichever one a
    // request of the job reaches.
    if let Err(e) = state
        .changed(crate::feed::Change::Job {
            id: job.to_owned(),
            live: true,
        })
        .await
    {
        tracing::warn!(job, error = %e, "could not announce the job's start");
    }
    crate::metrics::job(if resume.is_some() {
        "followed"
    } else {
        "started"
    });
    let handle = resume.as_ref().map(|r| r.handle.clone());
    let run = host::JobRun::new(state.clone(), resume);
    let outcome =
        keyless_ml::runner::run(&run, job, handle.as_deref(), &cancel, &state.jobs.stopping).await;
    outcome.status().unwrap_or(Status::Running)
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

fn compute_label(c: &Compute) -> String {
    match c {
        Compute::Target { name, .. } => format!("compute {name}"),
        Compute::Serverless { .. } => "serverless compute".into(),
    }
}
