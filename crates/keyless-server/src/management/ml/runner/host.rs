//! The server's side of the runner's port ([`JobHost`]) for one job: loading
//! it, planning its data, opening its grant and agent session, recording what
//! the backend and the agent say, and closing everything when it ends.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

use keyless_core::ObjectId;
use keyless_core::identity_rule::Compute;
use keyless_ml::backend::{BackendSpec, ComputeBackend, Event, Task};
use keyless_ml::job::{Job, substitute};
use keyless_ml::runner::{Admitted, JobHost, Outcome, Reports, Status, Stop};
use keyless_store::Resource;

use super::data::plan_data;
use super::env::environment;
use super::record::{
    Resume, error, exit_json, set_agent, set_inner_property, set_property, set_status, update_job,
};
use super::{
    AGENT_LOG, Context, HANDLE_FILE, Log, SERVERLESS_INSTANCES, Session, agent_log_tail,
    compute_label, job_dir, log_path, serverless, write_private,
};
use crate::state::SharedState;

/// What admitting a job loaded, for its launch.
#[derive(Debug)]
struct Loaded {
    props: Value,
    command: keyless_ml::job::Command,
    ws: Resource,
    compute: Compute,
    submitter: keyless_core::Principal,
}

/// One job's run on this server.
#[derive(Debug)]
pub(super) struct JobRun {
    pub(super) state: SharedState,
    /// What an earlier server left of the job, when this one follows it again.
    pub(super) resume: Option<Resume>,
    loaded: Mutex<Option<Loaded>>,
    session: Mutex<Option<Arc<Session>>>,
}

impl JobRun {
    pub(super) fn new(state: SharedState, resume: Option<Resume>) -> Self {
        Self {
            state,
            resume,
            loaded: Mutex::new(None),
            session: Mutex::new(None),
        }
    }

    fn session(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl JobHost for JobRun {
    async fn admit(&self, job: &str) -> Result<Admitted, Stop> {
        let state = &self.state;
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
        let ws =
            state.store.resource(ws_id).await?.ok_or_else(|| {
                Stop::failed("WorkspaceNotFound", "the job's workspace was deleted")
            })?;
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
                let spec =
                    BackendSpec::from_compute(c.body.get("properties").unwrap_or(&Value::Null))?;
                (
                    super::super::computes::rule_view(state, &c).await?,
                    usize::try_from(max).unwrap_or(1),
                    state.jobs.backend_for(&spec),
                )
            }
            None => (
                serverless(state, &ws).await?,
                SERVERLESS_INSTANCES,
                Arc::clone(&state.jobs.backend),
            ),
        };
        let submitter_id = props
            .pointer("/submittedBy/objectId")
            .and_then(Value::as_str)
            .and_then(|o| ObjectId::parse(o).ok())
            .ok_or_else(|| {
                Stop::failed("JobNotRunnable", "the job does not say who submitted it")
            })?;
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
        let timeout = command.timeout;
        *self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Loaded {
            props,
            command,
            ws,
            compute,
            submitter,
        });
        Ok(Admitted {
            backend,
            slots: state.jobs.slots(&compute_key, instances),
            timeout,
        })
    }

    async fn launch(
        &self,
        job: &str,
        backend: &dyn ComputeBackend,
        resume: Option<&str>,
    ) -> Result<Task, Stop> {
        let state = &self.state;
        let Loaded {
            props,
            command,
            ws,
            compute,
            submitter,
        } = self
            .loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| Stop::failed("JobNotRunnable", "the job was launched unadmitted"))?;
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
        let plan = plan_data(state, &ctx, backend.mounts()).await?;
        let fuse = !plan.spec_mounts.is_empty();
        let earlier = self.resume.as_ref();
        let resumed = earlier.map(|r| (r.key.as_str(), r.secret_digest.as_str()));
        let prepared = environment(state, &mut ctx, &plan.inputs, &plan.outputs, resumed).await?;
        let line = substitute(&ctx.command.command, &plan.inputs, &plan.outputs)?;
        let (image, said) = super::image::plan(state, &ctx).await?;
        if let Some(said) = said {
            ctx.log.line(&said).await;
        }
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
            "mounts": plan.spec_mounts,
            "identity": prepared.identity,
            "image": image,
        });
        if resume.is_none() {
            let ca = state
                .jobs
                .ca_file
                .get()
                .map(|_| ctx.seen(&ctx.workdir.join("ca.pem")));
            // The agent turns to the peers when this server is lost: the one
            // that took the job over answers.
            let mut endpoints = vec![state.urls.management.clone()];
            for peer in &state.config.peers {
                let peer = peer.trim_end_matches('/').to_owned();
                if !endpoints.contains(&peer) {
                    endpoints.push(peer);
                }
            }
            let handle = json!({
                "endpoints": endpoints,
                "job": job,
                "key": key,
                "secret": prepared.secret,
                "ca": ca,
            });
            write_private(&ctx.workdir.join(HANDLE_FILE), &handle.to_string()).await?;
            let claim = json!({
                "key": key,
                "secretDigest": keyless_auth::secret::digest_secret(&prepared.secret),
                "backend": backend.name(),
                "server": state.server_id,
                "heartbeat": state.now(),
            });
            let _ = update_job(state, job, |body| {
                body.insert("agent".into(), claim);
            })
            .await;
        } else {
            set_agent(state, job, "server", json!(state.server_id)).await;
            ctx.log
                .line(&format!(
                    "following Slurm job {} again (the server running it restarted or was lost)",
                    resume.unwrap_or_default()
                ))
                .await;
        }
        for (digest, expiry) in earlier.iter().flat_map(|r| &r.minted) {
            state.jobs.minted(digest, job, *expiry, state.now());
        }
        let handle_seen = ctx.seen(&ctx.workdir.join(HANDLE_FILE));
        let session = Arc::new(Session {
            code_id: props
                .get("codeId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            inputs: plan.planned_inputs,
            outputs: plan.planned_outputs,
            spec,
            reports: Mutex::new(earlier.map(|r| r.reports.clone()).unwrap_or_default()),
            access: Mutex::new(Vec::new()),
            ctx,
        });
        *self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&session));
        state.jobs.attach_agent(&key, Arc::clone(&session));
        state.jobs.set_resuming(&key, false);
        let ctx = &session.ctx;
        let agent = backend.agent_path(&state.jobs.agent_exe);
        Ok(Task {
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
            events: None,
            fuse,
            image: session.spec.get("image").is_some_and(|i| !i.is_null()),
        })
    }

    async fn event(&self, job: &str, event: Event) {
        let state = &self.state;
        let log = Log(log_path(state, job));
        match event {
            Event::Submitted(id) => {
                log.line(&format!("submitted to Slurm as job {id}")).await;
                set_agent(state, job, "handle", json!(id)).await;
                set_inner_property(state, job, "slurmJobId", json!(id)).await;
            }
            Event::Pending(reason) => {
                log.line(&format!("waiting in the Slurm queue ({reason})"))
                    .await;
            }
            Event::Started => log.line("started by Slurm").await,
        }
    }

    async fn heartbeat(&self, job: &str) {
        set_agent(&self.state, job, "heartbeat", json!(self.state.now())).await;
    }

    fn reports(&self, _job: &str) -> Reports {
        self.session()
            .map(|s| s.reports().clone())
            .unwrap_or_default()
    }

    async fn finish(&self, job: &str, outcome: &Outcome) {
        let state = &self.state;
        let session = self.session();
        let key = session
            .as_ref()
            .and_then(|s| s.ctx.grant_key.clone())
            .or_else(|| self.resume.as_ref().map(|r| r.key.clone()));
        if let Some(key) = &key {
            state.jobs.detach_agent(key);
            state.jobs.set_resuming(key, false);
        }
        let Some(status) = outcome.status() else {
            // The server stops and the job goes on: the next server follows it.
            return;
        };
        if let Some(key) = &key {
            state.jobs.revoke(key);
        }
        state.jobs.revoke_minted(job);
        if let Err(e) = state
            .changed(crate::feed::Change::Job {
                id: job.to_owned(),
                live: false,
            })
            .await
        {
            tracing::warn!(job, error = %e, "could not announce the job's end");
        }
        crate::metrics::job("ended");
        state.jobs.forget(job);
        if let Some(e) = session.as_ref().and_then(|s| s.reports().exit) {
            set_property(state, job, "exit", json!(e.to_string())).await;
            set_agent(state, job, "exit", exit_json(e)).await;
        }
        let log = Log(log_path(state, job));
        let err = match outcome {
            Outcome::Stopped(stop) => {
                let mut message = stop.message.clone();
                if stop.code == "AgentFailed" {
                    let tail = agent_log_tail(&job_dir(state, job).join(AGENT_LOG)).await;
                    message = format!("{message}: {tail}");
                }
                log.line(&format!("{}: {message}", stop.code)).await;
                Some(error(stop.code, &message))
            }
            _ => None,
        };
        log.line(&format!("job {status}")).await;
        let _ = set_status(state, job, status, err).await;
        if status != Status::Queued {
            let _ = tokio::fs::remove_dir_all(job_dir(state, job).join("wd")).await;
        }
    }
}
