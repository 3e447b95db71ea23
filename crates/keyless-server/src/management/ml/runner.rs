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
mod image;
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
    state.config.jobs_dir().join(format!("{name}-{short}"))
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

/// How often a server sharing its store says that it lives, and looks for the
/// jobs of servers that no longer do.
pub(crate) const BEAT: std::time::Duration = std::time::Duration::from_secs(5);

/// A server silent this many seconds is lost: another takes its jobs over.
const LOST_AFTER: i64 = 20;

/// The setting a server's last beat is kept in.
fn beat_key(server: &str) -> String {
    format!("server.beat.{server}")
}

/// Says, in the shared store, that this server lives.
async fn beat(state: &SharedState) -> Result<(), keyless_core::Error> {
    state
        .store
        .setting_set(&beat_key(&state.server_id), &state.now().to_string())
        .await
}

/// The unfinished jobs of every workspace.
async fn unfinished_jobs(state: &SharedState) -> Result<Vec<Resource>, keyless_core::Error> {
    let mut out = Vec::new();
    for sub in state.store.subscriptions_all().await? {
        let sub_id = sub.id.to_string();
        for group in state.store.resource_groups(&sub_id).await? {
            out.extend(
                state
                    .store
                    .resources(&sub_id, &group.name, super::JOBS)
                    .await?
                    .into_iter()
                    .filter(|job| !super::jobs::TERMINAL.contains(&super::jobs::status_of(job))),
            );
        }
    }
    Ok(out)
}

/// The server that runs a job.
fn runner_of(job: &Resource) -> Option<&str> {
    job.body.get("runner").and_then(Value::as_str)
}

/// Takes over every job this server (or a server before it in its data dir) left
/// unfinished; jobs other servers sharing the store run are theirs, until they
/// are lost ([`keep_jobs`]).
pub(crate) async fn fail_interrupted(state: &SharedState) -> Result<(), keyless_core::Error> {
    if state.config.metadata.is_some() {
        beat(state).await?;
    }
    // Workspaces this server was making when it stopped are undone.
    for (ws, server) in super::workspaces::unfinished_creations(state).await? {
        if server == state.server_id {
            super::workspaces::undo_creation(state, &ws).await;
        }
    }
    for job in unfinished_jobs(state).await? {
        if runner_of(&job).is_some_and(|runner| runner != state.server_id) {
            continue;
        }
        // Claimed even so: another server may be taking the job over, having
        // found this one silent while it restarted.
        if let Some(job) = claim(state, &job).await? {
            adopt(
                state,
                job,
                (
                    "ServerRestarted",
                    "the keyless server stopped while the job was running",
                ),
            )
            .await;
        }
    }
    Ok(())
}

/// Makes this server the runner of `job` if nothing changed its claim since
/// `job` was read: the unfinished job as claimed, or `None` when another
/// server claimed it first (or it ended). Each claim counts up the job's
/// `claim`, so of two servers claiming from the same reading one alone wins.
async fn claim(
    state: &SharedState,
    job: &Resource,
) -> Result<Option<Resource>, keyless_core::Error> {
    let runner = job.body.get("runner").cloned();
    let count = job.body.get("claim").and_then(Value::as_u64).unwrap_or(0);
    let me = state.server_id.clone();
    let claimed = state
        .store
        .resource_update(&job.id, &mut |body| {
            let unfinished = body
                .pointer("/properties/status")
                .and_then(Value::as_str)
                .is_none_or(|s| !super::jobs::TERMINAL.contains(&s));
            if !body.is_object()
                || !unfinished
                || body.get("runner") != runner.as_ref()
                || body.get("claim").and_then(Value::as_u64).unwrap_or(0) != count
            {
                return false;
            }
            body["runner"] = me.clone().into();
            body["claim"] = (count + 1).into();
            if let Some(agent) = body.get_mut("agent").and_then(Value::as_object_mut) {
                agent.insert("server".into(), me.clone().into());
            }
            true
        })
        .await?;
    Ok(claimed.and_then(|(job, won)| won.then_some(job)))
}

/// Follows a job this server now runs, left by a server that stopped: a
/// command job whose backend can follow it (Slurm) is followed again with the
/// agent it already has, a job that never left the queue starts afresh, and
/// every other one (a local job, which died with its server, a pipeline) fails
/// with `why` (its error code and message).
async fn adopt(state: &SharedState, job: Resource, why: (&str, &str)) {
    crate::metrics::job_status(None, super::jobs::status_of(&job));
    // A cancel asked for while no server ran the job: canceled as it is taken.
    if job.body.get("cancelRequested").and_then(Value::as_bool) == Some(true) {
        state.jobs.cancel_token(&job.id).cancel();
    }
    if let Some(resume) = Resume::of(&job) {
        tracing::info!(job = %job.id, handle = %resume.handle, "following an interrupted job again");
        state.jobs.set_resuming(&resume.key, true);
        let task_state = state.clone();
        state.jobs.tasks.spawn(async move {
            run_command(&task_state, &job.id, Some(resume)).await;
        });
        return;
    }
    let queued = super::jobs::status_of(&job) == Status::Queued.as_str();
    let command = job
        .body
        .pointer("/properties/jobType")
        .and_then(Value::as_str)
        == Some("Command")
        && job.body.pointer("/properties/parentJobName").is_none();
    if queued && command && job.body.get("agent").is_none() {
        tracing::info!(job = %job.id, "starting a job another server queued");
        start_command(state.clone(), job.id);
        return;
    }
    let _ = set_status(state, &job.id, Status::Failed, Some(error(why.0, why.1))).await;
}

/// While the server runs on a shared store: says every [`BEAT`] that it lives,
/// and takes over the jobs of servers silent for [`LOST_AFTER`] seconds. Each
/// lost job is claimed in one transaction, so one server alone takes it.
pub(crate) async fn keep_jobs(state: SharedState, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(BEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if let Err(e) = beat(&state).await {
            tracing::warn!(error = %e, "could not say that this server lives");
            continue;
        }
        if let Err(e) = take_over_lost(&state).await {
            tracing::warn!(error = %e, "could not look for the jobs of lost servers");
        }
    }
}

/// Which servers sharing the store are lost, asked once per server.
struct Liveness {
    now: i64,
    seen: BTreeMap<String, bool>,
}

impl Liveness {
    /// Whether `server` (another than this one) has been silent too long.
    async fn lost(
        &mut self,
        state: &SharedState,
        server: &str,
    ) -> Result<bool, keyless_core::Error> {
        if server == state.server_id {
            return Ok(false);
        }
        if let Some(lost) = self.seen.get(server) {
            return Ok(*lost);
        }
        let last = state
            .store
            .setting(&beat_key(server))
            .await?
            .and_then(|t| t.parse::<i64>().ok());
        let lost = last.is_none_or(|t| self.now - t > LOST_AFTER);
        self.seen.insert(server.to_owned(), lost);
        Ok(lost)
    }
}

async fn take_over_lost(state: &SharedState) -> Result<(), keyless_core::Error> {
    let mut liveness = Liveness {
        now: state.now(),
        seen: BTreeMap::new(),
    };
    for (ws, server) in super::workspaces::unfinished_creations(state).await? {
        if liveness.lost(state, &server).await? {
            tracing::warn!(workspace = %ws, lost = %server, "undoing a workspace a lost server was making");
            super::workspaces::undo_creation(state, &ws).await;
        }
    }
    for job in unfinished_jobs(state).await? {
        let Some(runner) = runner_of(&job).map(str::to_owned) else {
            continue;
        };
        if !liveness.lost(state, &runner).await? {
            continue;
        }
        let claimed = claim(state, &job).await?;
        if let Some(job) = claimed {
            tracing::warn!(job = %job.id, lost = %runner, "taking over a job of a lost server");
            Log(log_path(state, &job.id))
                .line("the keyless server running the job was lost; another server takes it over")
                .await;
            adopt(
                state,
                job,
                (
                    "ServerLost",
                    "the keyless server running the job was lost, and the job cannot be followed from another server",
                ),
            )
            .await;
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
