//! The runner: one job's life, from the queue to its end, behind a small port.
//!
//! The server implements [`JobHost`] — it loads and plans jobs, hands their
//! agents access, records statuses and events, and closes what a job held when
//! it ends — and [`run`] drives the state machine over it and a
//! [`ComputeBackend`]:
//!
//! ```text
//! Queued ──slot──▶ (agent) Preparing ─▶ Running ─▶ Finalizing ─▶ Completed
//!    │                 │                  │             │
//!    └──── cancel ─────┴──── Canceled ────┴─────────────┘      Failed (a reason)
//! ```
//!
//! `Preparing`, `Running` and `Finalizing` are the agent's reports; the runner
//! decides the end from how the backend's task ended and what the agent
//! reported.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::backend::{ComputeBackend, Event, Exit, Task};

/// A job's status, as job records and clients show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Submitted, waiting for its compute (or its scheduler).
    Queued,
    /// Its agent fetches the code and the inputs.
    Preparing,
    /// Its command runs.
    Running,
    /// Its agent uploads the outputs.
    Finalizing,
    /// Ended well.
    Completed,
    /// Ended with an error.
    Failed,
    /// Canceled (or skipped, in a pipeline).
    Canceled,
}

impl Status {
    /// Its name in job records.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::Preparing => "Preparing",
            Self::Running => "Running",
            Self::Finalizing => "Finalizing",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Canceled => "Canceled",
        }
    }

    /// The status a job record names; `None` for anything else.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Preparing,
            Self::Running,
            Self::Finalizing,
            Self::Completed,
            Self::Failed,
            Self::Canceled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether the job has ended.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Canceled)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a job did not complete: its final status, an error code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// [`Status::Failed`] or [`Status::Canceled`].
    pub status: Status,
    /// The error code (`InputAccessDenied`, `UserError`, …).
    pub code: &'static str,
    /// What happened, for the job's log and record.
    pub message: String,
}

impl Stop {
    /// A failure.
    pub fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            code,
            message: message.into(),
        }
    }

    /// A cancellation.
    #[must_use]
    pub fn canceled() -> Self {
        Self {
            status: Status::Canceled,
            code: "Canceled",
            message: "the job was canceled".into(),
        }
    }
}

impl From<keyless_core::Error> for Stop {
    fn from(e: keyless_core::Error) -> Self {
        Self::failed("JobPreparationFailed", e.to_string())
    }
}

/// What a job's agent reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reports {
    /// How the command ended.
    pub exit: Option<Exit>,
    /// Every output was uploaded.
    pub done: bool,
    /// The first reason the job failed, from the server or the agent.
    pub stop: Option<Stop>,
}

/// How a job's run ended, as [`run`] decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It completed.
    Completed,
    /// It failed or was canceled.
    Stopped(Stop),
    /// The server stops while a backend that survives it runs the job: the
    /// job goes on, and the next server follows it again.
    Detached,
}

impl Outcome {
    /// The job's final status; `None` when it goes on without this server.
    #[must_use]
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Completed => Some(Status::Completed),
            Self::Stopped(s) => Some(s.status),
            Self::Detached => None,
        }
    }
}

/// A job's place in its compute's queue, and where it runs.
#[derive(Debug, Clone)]
pub struct Admitted {
    /// The backend of its compute.
    pub backend: Arc<dyn ComputeBackend>,
    /// Its compute's slots (`max_instances`).
    pub slots: Arc<Semaphore>,
    /// `limits.timeout`, for the message of a timed-out job.
    pub timeout: Option<u64>,
}

/// What the server does for the runner.
#[async_trait]
pub trait JobHost: Send + Sync {
    /// Loads a job and finds its compute.
    ///
    /// # Errors
    /// A [`Stop`] when the job cannot run (its workspace, compute or submitter
    /// is gone).
    async fn admit(&self, job: &str) -> Result<Admitted, Stop>;

    /// Plans the job and prepares its agent's start: the task the backend
    /// runs. With `resume`, the agent already runs under that backend handle:
    /// the task is only what following it needs.
    ///
    /// # Errors
    /// A [`Stop`] when the job's data cannot be planned or its grant opened.
    async fn launch(
        &self,
        job: &str,
        backend: &dyn ComputeBackend,
        resume: Option<&str>,
    ) -> Result<Task, Stop>;

    /// Records what the backend told about the job.
    async fn event(&self, job: &str, event: Event);

    /// Says, in the job's claim, that this server still runs the job.
    async fn heartbeat(&self, job: &str);

    /// What the job's agent has reported so far.
    fn reports(&self, job: &str) -> Reports;

    /// Ends the job: records its outcome and closes what it held (its grant,
    /// its tokens, the SAS signed for it, its folder).
    async fn finish(&self, job: &str, outcome: &Outcome);
}

/// How often the runner renews a running job's claim.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs one job to its end (or follows it again, with `resume`, the handle
/// its backend gave it): waits for a slot, starts the agent through the
/// backend, and decides the outcome. `cancel` cancels the job; `stopping`
/// means the server stops (a backend that survives the server is left
/// running, any other job is stopped).
pub async fn run(
    host: &dyn JobHost,
    job: &str,
    resume: Option<&str>,
    cancel: &CancellationToken,
    stopping: &CancellationToken,
) -> Outcome {
    let outcome = drive(host, job, resume, cancel, stopping).await;
    host.finish(job, &outcome).await;
    outcome
}

async fn drive(
    host: &dyn JobHost,
    job: &str,
    resume: Option<&str>,
    cancel: &CancellationToken,
    stopping: &CancellationToken,
) -> Outcome {
    let admitted = match host.admit(job).await {
        Ok(a) => a,
        Err(stop) => return Outcome::Stopped(stop),
    };
    let _permit = tokio::select! {
        p = Arc::clone(&admitted.slots).acquire_owned() => match p {
            Ok(p) => p,
            Err(_) => return Outcome::Stopped(Stop::failed("ComputeUnavailable", "the compute's slots were closed")),
        },
        // A job followed again is canceled through its backend, after launch.
        () = cancel.cancelled(), if resume.is_none() => return Outcome::Stopped(Stop::canceled()),
        () = stopping.cancelled() => return stopped(),
    };
    let backend = admitted.backend;
    let mut task = match host.launch(job, &*backend, resume).await {
        Ok(t) => t,
        Err(stop) => return Outcome::Stopped(stop),
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    task.events = Some(tx);
    // A backend that survives the server is only let go when the server stops;
    // any other job is canceled with it.
    let survives = backend.survives_restart();
    let backend_cancel = cancel.child_token();
    let running = async {
        match resume {
            Some(handle) => backend.reattach(handle, task, backend_cancel.clone()).await,
            None => backend.run(task, backend_cancel.clone()).await,
        }
    };
    tokio::pin!(running);
    let mut beat = tokio::time::interval(HEARTBEAT);
    beat.tick().await;
    let mut detached = false;
    let exit = loop {
        tokio::select! {
            exit = &mut running => break exit,
            Some(event) = events.recv() => host.event(job, event).await,
            _ = beat.tick() => host.heartbeat(job).await,
            () = stopping.cancelled(), if !detached => {
                if survives {
                    return Outcome::Detached;
                }
                detached = true;
                backend_cancel.cancel();
            }
        }
    };
    while let Ok(event) = events.try_recv() {
        host.event(job, event).await;
    }
    let exit = match exit {
        Ok(e) => e,
        Err(e) => return Outcome::Stopped(Stop::failed("JobStartFailed", e.to_string())),
    };
    if detached && exit == Exit::Canceled && !cancel.is_cancelled() {
        return stopped();
    }
    decide(exit, &host.reports(job), admitted.timeout)
}

fn stopped() -> Outcome {
    Outcome::Stopped(Stop::failed(
        "ServerStopped",
        "the keyless server stopped while the job was running",
    ))
}

/// The outcome of a job from how its backend's task ended and what its agent
/// reported.
#[must_use]
pub fn decide(exit: Exit, reports: &Reports, timeout: Option<u64>) -> Outcome {
    if exit == Exit::Canceled {
        return Outcome::Stopped(Stop::canceled());
    }
    if let Some(stop) = &reports.stop {
        return Outcome::Stopped(stop.clone());
    }
    match reports.exit {
        Some(Exit::TimedOut) => Outcome::Stopped(Stop::failed(
            "JobTimedOut",
            format!(
                "the command ran longer than limits.timeout ({}s)",
                timeout.unwrap_or(0)
            ),
        )),
        Some(e) if !e.succeeded() => Outcome::Stopped(Stop::failed(
            "UserError",
            format!("the command ended with {e}"),
        )),
        Some(_) if reports.done => Outcome::Completed,
        _ => Outcome::Stopped(Stop::failed(
            "AgentFailed",
            format!("the job agent ended ({exit}) before the job finished"),
        )),
    }
}

#[cfg(test)]
mod tests;
