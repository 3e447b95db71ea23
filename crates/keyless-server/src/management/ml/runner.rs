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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use keyless_core::identity_rule::{Compute, JobIdentity, ManagedIdentity, Reader, job_data_reader};
use keyless_core::{ObjectId, Principal};
use keyless_ml::backend::{Exit, Task};
use keyless_ml::job::{Command, DataKind, Input, InputMode, Job, substitute};
use keyless_ml::snapshot;
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::reach::{self, Signer, Target, resolve};
use super::user_assigned;
use super::workspaces::{acting_identity, identities};
use crate::internal::{Acting, Service};
use crate::jobs::{Grant, Issues};
use crate::state::SharedState;

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
    workdir: PathBuf,
    log: Log,
    grant_key: Option<String>,
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
    let ctx = slot.insert(Context {
        job: job.to_owned(),
        ws,
        command,
        submitter,
        compute,
        workdir,
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
        workdir: ctx.workdir.join("code"),
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

/// Downloads the code snapshot as the workspace's identity and checks it.
async fn fetch_code(state: &SharedState, ctx: &Context, props: &Value) -> Result<(), Stop> {
    let code_dir = ctx.workdir.join("code");
    tokio::fs::create_dir_all(&code_dir)
        .await
        .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?;
    let Some(code_id) = props.get("codeId").and_then(Value::as_str) else {
        return Ok(());
    };
    let code = super::codes::load_by_id(state, &ctx.ws, code_id).await?;
    let uri = code
        .body
        .pointer("/properties/codeUri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let recorded = code
        .body
        .pointer("/properties/checksum")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let target = resolve(state, &ctx.ws, uri).await?;
    let actor = acting_identity(state, &ctx.ws).await?;
    let acting = Acting::for_job(state, actor.clone(), Service::Storage, Some(&ctx.job)).await?;
    let signer = Signer::Bearer(actor, "WorkspaceIdentity");
    let at = &target.location;
    let names = reach::list(state, &signer, Some(&acting), at, &at.path)
        .await?
        .map_err(|(s, why)| {
            Stop::failed(
                "CodeSnapshotUnreadable",
                format!("the code snapshot could not be listed ({s}): {why}"),
            )
        })?;
    let mut files = Vec::new();
    for (name, _) in names {
        let rel = name.strip_prefix(&at.path).unwrap_or(&name).to_owned();
        let bytes = reach::get(state, &signer, Some(&acting), at, &name)
            .await?
            .map_err(|(s, why)| {
                Stop::failed(
                    "CodeSnapshotUnreadable",
                    format!("`{rel}` could not be read ({s}): {why}"),
                )
            })?;
        files.push((rel, bytes));
    }
    let actual = snapshot::checksum(files.iter().map(|(p, b)| (p.as_str(), b.as_ref())))?;
    if actual != recorded {
        return Err(Stop::failed(
            "CodeChecksumMismatch",
            format!(
                "the code snapshot at {uri} hashes to {actual}, but {recorded} was recorded when the job was submitted: it was changed after submission, so the job does not run"
            ),
        ));
    }
    for (rel, bytes) in &files {
        reach::write_file(&code_dir.join(rel), bytes).await?;
    }
    ctx.log
        .line(&format!(
            "code snapshot {recorded}: {} files, checksum verified",
            files.len()
        ))
        .await;
    Ok(())
}

/// Who reaches a datastore for this job, and how.
async fn reader(
    state: &SharedState,
    ctx: &Context,
    target: &Target,
) -> Result<(Signer, Option<Acting>, String), Stop> {
    let choice = job_data_reader(target.credential, &ctx.command.identity, &ctx.compute)
        .map_err(|r| Stop::failed("JobIdentityRefused", r.0))?;
    let described = format!("{} ({})", choice.reader, choice.reason);
    let principal = match &choice.reader {
        Reader::Credential(kind) => {
            let signer =
                reach::stored_signer(state, &ctx.ws, target, *kind, Some(&ctx.job)).await?;
            return Ok((signer, Some(Acting::job_only(&ctx.job)), described));
        }
        Reader::SubmittingUser => ctx.submitter.clone(),
        Reader::Managed(mi) => managed_principal(state, &mi.object_id).await?,
    };
    let acting =
        Acting::for_job(state, principal.clone(), Service::Storage, Some(&ctx.job)).await?;
    Ok((
        Signer::Bearer(principal, "JobIdentity"),
        Some(acting),
        described,
    ))
}

async fn managed_principal(state: &SharedState, object_id: &str) -> Result<Principal, Stop> {
    let id = ObjectId::parse(object_id).map_err(|_| {
        Stop::failed(
            "JobIdentityRefused",
            format!("managed identity {object_id} is malformed"),
        )
    })?;
    state.store.principal(id).await?.ok_or_else(|| {
        Stop::failed(
            "JobIdentityRefused",
            format!("managed identity {object_id} no longer exists"),
        )
    })
}

type Values = BTreeMap<String, String>;

/// Copies every `download` input in, and makes every output's folder.
async fn materialise_inputs(state: &SharedState, ctx: &Context) -> Result<(Values, Values), Stop> {
    let mut inputs = Values::new();
    let mut access = Vec::new();
    for (port, input) in &ctx.command.inputs {
        match input {
            Input::Literal(v) => {
                inputs.insert(port.clone(), v.clone());
            }
            Input::Data {
                uri,
                mode: InputMode::Direct,
                ..
            } => {
                inputs.insert(port.clone(), uri.clone());
            }
            Input::Data {
                kind,
                uri,
                mode: InputMode::Download,
            } => {
                let target = resolve(state, &ctx.ws, uri).await?;
                let (signer, acting, who) = reader(state, ctx, &target).await?;
                ctx.log
                    .line(&format!("input `{port}`: downloading {uri} as {who}"))
                    .await;
                let dest = ctx.workdir.join("inputs").join(port);
                let path = download(state, &signer, acting.as_ref(), &target, *kind, &dest)
                    .await?
                    .map_err(|(status, why)| {
                        Stop::failed(
                            "InputAccessDenied",
                            format!("input `{port}` ({uri}) was refused by the storage ({status}) when read as {who}: {why}"),
                        )
                    })?;
                access.push(
                    json!({ "port": port, "uri": uri, "direction": "input", "identity": who }),
                );
                inputs.insert(port.clone(), path.display().to_string());
            }
            Input::Binding(_) => {
                return Err(Stop::failed(
                    "UnboundInput",
                    format!("input `{port}` was never bound"),
                ));
            }
        }
    }
    let mut outputs = Values::new();
    for (port, output) in &ctx.command.outputs {
        let folder = ctx.workdir.join("outputs").join(port);
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?;
        let path = match output.kind {
            DataKind::Folder => folder,
            DataKind::File => {
                let file = output
                    .uri
                    .as_deref()
                    .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .unwrap_or(port)
                    .to_owned();
                folder.join(file)
            }
        };
        outputs.insert(port.clone(), path.display().to_string());
    }
    set_property(state, &ctx.job, "dataAccess", Value::Array(access)).await;
    Ok((inputs, outputs))
}

/// Downloads a file or a folder; returns the local path the command sees.
async fn download(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    target: &Target,
    kind: DataKind,
    dest: &Path,
) -> Result<Result<PathBuf, reach::Refused>, Stop> {
    let at = &target.location;
    if kind == DataKind::File && !at.path.is_empty() && !at.path.ends_with('/') {
        let name = at.path.rsplit('/').next().unwrap_or("data");
        let bytes = match reach::get(state, signer, acting, at, &at.path).await? {
            Ok(b) => b,
            Err(refused) => return Ok(Err(refused)),
        };
        let path = dest.join(name);
        reach::write_file(&path, &bytes).await?;
        return Ok(Ok(path));
    }
    let prefix = if at.path.is_empty() || at.path.ends_with('/') {
        at.path.clone()
    } else {
        format!("{}/", at.path)
    };
    let names = match reach::list(state, signer, acting, at, &prefix).await? {
        Ok(n) => n,
        Err(refused) => return Ok(Err(refused)),
    };
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?;
    for (name, _) in names {
        let rel = name.strip_prefix(&prefix).unwrap_or(&name);
        if snapshot::check_path(rel).is_err() {
            continue;
        }
        let bytes = match reach::get(state, signer, acting, at, &name).await? {
            Ok(b) => b,
            Err(refused) => return Ok(Err(refused)),
        };
        reach::write_file(&dest.join(rel), &bytes).await?;
    }
    Ok(Ok(dest.to_path_buf()))
}

/// Uploads every output folder as the identity the rule picks.
async fn upload_outputs(state: &SharedState, ctx: &Context) -> Result<(), Stop> {
    for (port, output) in &ctx.command.outputs {
        let uri = output.uri.clone().unwrap_or_default();
        let target = resolve(state, &ctx.ws, &uri).await?;
        let (signer, acting, who) = reader(state, ctx, &target).await?;
        let folder = ctx.workdir.join("outputs").join(port);
        let files = walk(&folder).await?;
        let at = &target.location;
        let base = match output.kind {
            DataKind::File => at
                .path
                .rsplit_once('/')
                .map(|(head, _)| format!("{head}/"))
                .unwrap_or_default(),
            DataKind::Folder if at.path.is_empty() || at.path.ends_with('/') => at.path.clone(),
            DataKind::Folder => format!("{}/", at.path),
        };
        for (rel, path) in &files {
            let bytes = tokio::fs::read(path).await.map_err(|e| {
                Stop::failed("OutputUploadFailed", format!("{}: {e}", path.display()))
            })?;
            if let Err((status, why)) = reach::put(
                state,
                &signer,
                acting.as_ref(),
                at,
                &format!("{base}{rel}"),
                bytes,
            )
            .await?
            {
                return Err(Stop::failed(
                    "OutputAccessDenied",
                    format!(
                        "output `{port}` ({uri}) was refused by the storage ({status}) when written as {who}: {why}"
                    ),
                ));
            }
        }
        ctx.log
            .line(&format!(
                "output `{port}`: uploaded {} files to {uri} as {who}",
                files.len()
            ))
            .await;
    }
    Ok(())
}

/// Every file under `root`, with its `/`-separated relative path.
async fn walk(root: &Path) -> Result<Vec<(String, PathBuf)>, Stop> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(_) => continue,
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The command's whole environment.
async fn environment(
    state: &SharedState,
    ctx: &mut Context,
    inputs: &Values,
    outputs: &Values,
) -> Result<Vec<(String, String)>, Stop> {
    let mut env: BTreeMap<String, String> = ctx
        .command
        .environment_variables
        .clone()
        .into_iter()
        .collect();
    let keep = |name: &str| std::env::var(name).ok();
    env.insert(
        "PATH".into(),
        keep("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    );
    env.insert("HOME".into(), ctx.workdir.display().to_string());
    env.insert(
        "LANG".into(),
        keep("LANG").unwrap_or_else(|| "C.UTF-8".into()),
    );
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    if let Some(ca) = state.jobs.ca_file.get() {
        for name in ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"] {
            env.insert(name.into(), ca.display().to_string());
        }
    }
    let job_name = ctx.job.rsplit('/').next().unwrap_or(&ctx.job).to_owned();
    let parts: Vec<&str> = ctx.ws.id.split('/').collect();
    env.insert("AZUREML_RUN_ID".into(), job_name);
    env.insert(
        "AZUREML_ARM_SUBSCRIPTION".into(),
        parts.get(2).copied().unwrap_or_default().into(),
    );
    env.insert(
        "AZUREML_ARM_RESOURCEGROUP".into(),
        ctx.ws.resource_group.clone(),
    );
    env.insert(
        "AZUREML_ARM_WORKSPACE_NAME".into(),
        ctx.ws.id.rsplit('/').next().unwrap_or_default().into(),
    );
    env.insert(
        "KEYLESS_STORAGE_ENDPOINT".into(),
        state.urls.storage.clone(),
    );
    env.insert("AZURE_AUTHORITY_HOST".into(), state.urls.login.clone());
    for (k, v) in inputs {
        env.insert(format!("AZURE_ML_INPUT_{k}"), v.clone());
    }
    for (k, v) in outputs {
        env.insert(format!("AZURE_ML_OUTPUT_{k}"), v.clone());
    }
    // The job's identity endpoint.
    let issues = match &ctx.command.identity {
        JobIdentity::User => Some(Issues::User(ctx.submitter.clone())),
        other => {
            let mut attached = Vec::new();
            let mis: Vec<ManagedIdentity> = match &ctx.compute {
                Compute::Target {
                    system_assigned,
                    user_assigned,
                    ..
                } => system_assigned
                    .iter()
                    .chain(user_assigned)
                    .cloned()
                    .collect(),
                Compute::Serverless {
                    workspace_user_assigned,
                } => workspace_user_assigned.clone(),
            };
            for mi in &mis {
                attached.push(managed_principal(state, &mi.object_id).await?);
            }
            let chosen = match other {
                JobIdentity::Managed {
                    client_id,
                    object_id,
                } => mis.iter().find(|mi| {
                    client_id
                        .as_deref()
                        .is_none_or(|c| mi.client_id.eq_ignore_ascii_case(c))
                        && object_id
                            .as_deref()
                            .is_none_or(|o| mi.object_id.eq_ignore_ascii_case(o))
                }),
                _ => ctx.compute.default_identity(),
            };
            let default = chosen.and_then(|mi| {
                attached
                    .iter()
                    .find(|p| p.object_id.to_string() == mi.object_id)
                    .cloned()
            });
            default.map(|default| {
                env.insert(
                    "DEFAULT_IDENTITY_CLIENT_ID".into(),
                    default.app_id.map(|a| a.to_string()).unwrap_or_default(),
                );
                Issues::Managed { default, attached }
            })
        }
    };
    if let Some(issues) = issues {
        let key = keyless_auth::secret::random_token()?
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect::<String>();
        let secret = keyless_auth::secret::random_token()?;
        state.jobs.grant(
            &key,
            Grant {
                job: ctx.job.clone(),
                secret_digest: keyless_auth::secret::digest_secret(&secret),
                issues,
            },
        );
        let endpoint = format!("{}/jobs/{key}/token", state.urls.identity);
        env.insert("MSI_ENDPOINT".into(), endpoint.clone());
        env.insert("MSI_SECRET".into(), secret.clone());
        env.insert("IDENTITY_ENDPOINT".into(), endpoint);
        env.insert("IDENTITY_HEADER".into(), secret);
        ctx.grant_key = Some(key);
    }
    let mut described = String::new();
    let _ = write!(
        described,
        "identity endpoint: {}",
        match &ctx.command.identity {
            JobIdentity::User => "the submitting user's tokens".to_owned(),
            _ if ctx.grant_key.is_some() => format!(
                "the compute's managed identity (DEFAULT_IDENTITY_CLIENT_ID={})",
                env.get("DEFAULT_IDENTITY_CLIENT_ID")
                    .cloned()
                    .unwrap_or_default()
            ),
            _ => "none (the compute has no managed identity)".to_owned(),
        }
    );
    ctx.log.line(&described).await;
    Ok(env.into_iter().collect())
}
