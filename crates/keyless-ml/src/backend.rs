//! Compute backends: where a job's command runs.
//!
//! The job logic (materialising inputs, the identity endpoint, uploading outputs,
//! the lifecycle) lives in the server and hands a backend one [`Task`] at a time:
//! a command, the job's folder, an environment and a log file. A backend runs
//! it to the end, or until it is cancelled or times out, and says how it ended.
//! A Slurm or Kubernetes backend implements the same trait (submit, wait, cancel)
//! without touching the job logic.
//!
//! [`LocalSandbox`] is the local backend: each job runs as a user of its own in
//! namespaces of its own, made by the system's `unshare`, `prlimit` and `setpriv`.
//! [`LocalProcess`] runs jobs as the server's own user and exists only behind
//! the `insecure_unsandboxed_jobs` setting.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use keyless_core::Error;

mod sandbox;
mod slurm;

pub use sandbox::{AGENT_PATH, IMAGE_AGENT_UID, IMAGES, JOB_ROOT, LocalSandbox};
pub use slurm::{Slurm, SlurmSettings};

/// One command to run.
#[derive(Debug, Clone)]
pub struct Task {
    /// The job it belongs to, for messages.
    pub job: String,
    /// The command line, substituted, run by `/bin/sh -c`.
    pub command: String,
    /// The job's folder on this machine: its code, inputs and outputs. The
    /// command sees it at [`ComputeBackend::job_root`].
    pub root: PathBuf,
    /// The working directory, relative to `root` (the code snapshot's copy).
    pub cwd: PathBuf,
    /// The whole environment of the command; nothing else is inherited.
    pub env: Vec<(String, String)>,
    /// Standard output and standard error are appended here.
    pub log: PathBuf,
    /// The longest the command may run.
    pub timeout: Option<Duration>,
    /// Where the backend tells what happens to the task before it ends (a
    /// scheduler's job id, its waiting); `None` when nobody listens.
    pub events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
    /// Whether the task is handed a FUSE connection, mounted at [`MOUNTS`]
    /// under its folder, on its standard input (only where
    /// [`ComputeBackend::mounts`]).
    pub fuse: bool,
    /// Whether the task's command runs in an image: its agent then needs to
    /// be root of a user namespace of its own (where the backend's sandbox
    /// allows it).
    pub image: bool,
}

/// The folder, under a job's, where its agent serves the job's mounts.
pub const MOUNTS: &str = "mounts";

/// What a backend tells about a task while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A scheduler accepted the task under this id.
    Submitted(String),
    /// The scheduler holds the task back, for this reason.
    Pending(String),
    /// The scheduler started the task.
    Started,
}

impl Task {
    /// Tells whoever listens what happened.
    pub fn tell(&self, event: Event) {
        if let Some(events) = &self.events {
            // Nobody listening any more is not the task's problem.
            let _ = events.send(event);
        }
    }
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It was cancelled and stopped.
    Canceled,
    /// It ran past its timeout and was stopped.
    TimedOut,
}

impl Exit {
    /// Whether the command succeeded.
    #[must_use]
    pub fn succeeded(self) -> bool {
        self == Self::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(c) => write!(f, "exit status {c}"),
            Self::Signal(s) => write!(f, "killed by signal {s}"),
            Self::Canceled => f.write_str("canceled"),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

/// A place that runs commands.
#[async_trait]
pub trait ComputeBackend: Send + Sync + fmt::Debug {
    /// Its name, as job records show it.
    fn name(&self) -> &'static str;

    /// Where the command sees the job's folder `root`.
    fn job_root(&self, root: &Path) -> PathBuf;

    /// Whether a task goes on when the server stops, to be followed again
    /// ([`ComputeBackend::reattach`]) by the next server.
    fn survives_restart(&self) -> bool {
        false
    }

    /// How the command sees the job agent's executable `exe`.
    fn agent_path(&self, exe: &Path) -> PathBuf {
        exe.to_path_buf()
    }

    /// Whether a task may ask for a FUSE connection ([`Task::fuse`]): made by
    /// the sandbox as root and handed to the agent, which serves the job's
    /// mounts on it with the job's own privileges.
    fn mounts(&self) -> bool {
        false
    }

    /// Runs `task` to its end; `cancel` stops it.
    ///
    /// # Errors
    /// When the task cannot be started at all (no shell, no working directory).
    async fn run(&self, task: Task, cancel: CancellationToken) -> Result<Exit, Error>;

    /// Follows a task an earlier server started, by the id the backend gave it
    /// ([`Event::Submitted`]), to its end.
    ///
    /// # Errors
    /// When the backend cannot follow tasks across restarts (the local ones:
    /// their tasks die with the server).
    async fn reattach(
        &self,
        handle: &str,
        task: Task,
        cancel: CancellationToken,
    ) -> Result<Exit, Error> {
        let _ = (task, cancel);
        Err(Error::new(
            keyless_core::ErrorKind::Unavailable,
            format!(
                "the {} backend cannot follow task {handle} of an earlier server",
                self.name()
            ),
        ))
    }
}

/// Which backend runs a compute's jobs: keyless's extension of a compute, the
/// `keyless:` key of its YAML (`properties.properties.keyless` in REST).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// `local` (the default) or `slurm`.
    #[serde(default)]
    pub backend: BackendKind,
    /// The Slurm settings of a `slurm` compute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSettings>,
}

/// The kinds of backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The keyless host, in the local sandbox.
    #[default]
    Local,
    /// An existing Slurm cluster.
    Slurm,
}

impl BackendSpec {
    /// The spec a compute's REST properties (`properties` of the compute) carry.
    ///
    /// # Errors
    /// [`Error::invalid`] for an unknown backend or setting, Slurm settings on
    /// another backend, or a backend on a compute type that runs no jobs on one.
    pub fn from_compute(props: &serde_json::Value) -> Result<Self, Error> {
        let Some(raw) = props.pointer("/properties/keyless") else {
            return Ok(Self::default());
        };
        let spec: Self = serde_json::from_value(raw.clone()).map_err(|e| {
            Error::invalid(format!(
                "the compute's `keyless` settings are not valid: {e} (keys: backend: local|slurm, slurm: {{partition, account, qos, time_limit, cpus_per_task, gpus_per_task}})"
            ))
        })?;
        let compute_type = props
            .get("computeType")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        match (spec.backend, &spec.slurm) {
            (BackendKind::Local, Some(_)) => {
                return Err(Error::invalid(
                    "the compute's `keyless.slurm` settings need `keyless.backend: slurm`",
                ));
            }
            (BackendKind::Slurm, _) if compute_type != "AmlCompute" => {
                return Err(Error::invalid(format!(
                    "a {compute_type} does not run jobs on Slurm: only amlcompute clusters take `keyless.backend: slurm`"
                )));
            }
            (BackendKind::Slurm, Some(settings)) => settings.check()?,
            _ => {}
        }
        Ok(spec)
    }
}

/// Runs each task as a child process of the keyless server, as the server's own
/// user, in its own process group, so that cancelling stops what the command
/// started (unless it left the group). Nothing separates the job from the server:
/// only for machines where the sandbox cannot run, behind an `insecure_` setting.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalProcess;

/// How long a cancelled group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

#[async_trait]
impl ComputeBackend for LocalProcess {
    fn name(&self) -> &'static str {
        "local-unsandboxed"
    }

    fn job_root(&self, root: &Path) -> PathBuf {
        root.to_path_buf()
    }

    async fn run(&self, task: Task, cancel: CancellationToken) -> Result<Exit, Error> {
        let mut command = tokio::process::Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(&task.command)
            .current_dir(task.root.join(&task.cwd))
            .env_clear()
            .envs(task.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        supervise(command, &task, cancel).await
    }
}

/// Starts `command` in a process group of its own with its output appended to
/// the task's log, and waits for it, its cancellation or its timeout. Whatever
/// is left of the group when it ends is killed.
async fn supervise(
    mut command: tokio::process::Command,
    task: &Task,
    cancel: CancellationToken,
) -> Result<Exit, Error> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&task.log)
        .map_err(|e| Error::internal(format!("cannot open the job log: {e}")))?;
    let err = log
        .try_clone()
        .map_err(|e| Error::internal(format!("cannot open the job log: {e}")))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::internal(format!(
                "job {}: the command could not start: {e}",
                task.job
            ))
        })?;
    let group = child.id().and_then(|id| i32::try_from(id).ok());
    let deadline = async {
        match task.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        status = child.wait() => {
            let status = status.map_err(|e| Error::internal(format!("waiting for the job: {e}")))?;
            // Whatever the command left running in its group goes with it.
            signal_group(group, nix::sys::signal::Signal::SIGKILL);
            return Ok(exit_of(status));
        }
        () = cancel.cancelled() => Exit::Canceled,
        () = deadline => Exit::TimedOut,
    };
    signal_group(group, nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        signal_group(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(group, nix::sys::signal::Signal::SIGKILL);
    Ok(stop)
}

fn signal_group(group: Option<i32>, signal: nix::sys::signal::Signal) {
    if let Some(pgid) = group {
        // The group may be gone already; that is the point.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), signal);
    }
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        (None, None) => Exit::Code(-1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(dir: &std::path::Path, command: &str) -> Task {
        Task {
            job: "t".into(),
            command: command.into(),
            root: dir.to_path_buf(),
            cwd: PathBuf::new(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("GREETING".into(), "hi".into()),
            ],
            log: dir.join("log.txt"),
            timeout: None,
            events: None,
            fuse: false,
            image: false,
        }
    }

    #[tokio::test]
    async fn output_and_status_are_captured_and_only_the_given_environment_is_seen()
    -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let exit = LocalProcess
            .run(
                task(
                    dir.path(),
                    "echo $GREETING; echo oops >&2; echo ${HOME:-nohome}; exit 3",
                ),
                CancellationToken::new(),
            )
            .await?;
        assert_eq!(exit, Exit::Code(3));
        let log = std::fs::read_to_string(dir.path().join("log.txt"))
            .map_err(|e| Error::internal(e.to_string()))?;
        assert_eq!(log, "hi\noops\nnohome\n");
        Ok(())
    }

    #[tokio::test]
    async fn cancel_stops_the_whole_process_group() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let marker = dir.path().join("late");
        let command = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let run = tokio::spawn(async move {
            LocalProcess
                .run(task(dir.path(), &command), cancel)
                .await
                .map(|e| (e, dir))
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.cancel();
        let (exit, dir) = run.await.map_err(|e| Error::internal(e.to_string()))??;
        assert_eq!(exit, Exit::Canceled);
        assert!(started.elapsed() < Duration::from_secs(10));
        // The background child was in the group and died with it.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!dir.path().join("late").exists());
        Ok(())
    }

    #[tokio::test]
    async fn a_timeout_stops_the_command() -> Result<(), Error> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let mut t = task(dir.path(), "sleep 30");
        t.timeout = Some(Duration::from_millis(200));
        assert_eq!(
            LocalProcess.run(t, CancellationToken::new()).await?,
            Exit::TimedOut
        );
        Ok(())
    }
}
