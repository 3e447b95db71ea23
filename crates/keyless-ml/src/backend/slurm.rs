//! The Slurm backend: each task becomes a batch job of an existing Slurm
//! cluster, through Slurm's own commands — `sbatch --parsable` to submit,
//! `scontrol show job` to follow it, `scancel` to stop it — as Nextflow,
//! dask-jobqueue and Flyte do. Slurm's queueing, placement and exit codes are
//! the truth; keyless only records them.
//!
//! The batch script starts the task in the same sandbox as the local backend
//! (a uid of the job's own, namespaces, the data dir hidden), so the job's
//! isolation holds on a node without cgroup fencing. It carries no secret: the
//! job's handle is a file in the job's folder, readable by the job's uid only.
//! The job's folder must be visible on the node at the same path (one node, or
//! a shared file system).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use keyless_core::Error;

use super::sandbox::SANDBOX_ENV;
use super::{ComputeBackend, Event, Exit, JOB_ROOT, LocalSandbox, Task};

/// How often a submitted job's state is read.
const POLL: Duration = Duration::from_millis(500);
/// How long a cancelled job may take to leave the queue.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// A compute's Slurm settings, the `keyless.slurm` key of its YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// `--partition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// `--time`, in one of Slurm's forms (`30`, `1:00:00`, `2-00:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
    /// `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// `--gpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
}

impl SlurmSettings {
    /// Checks every value, so nothing odd reaches `sbatch`.
    ///
    /// # Errors
    /// [`Error::invalid`] naming the setting.
    pub fn check(&self) -> Result<(), Error> {
        for (name, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("qos", &self.qos),
        ] {
            if let Some(v) = value {
                let ok = !v.is_empty()
                    && v.len() <= 64
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
                if !ok {
                    return Err(Error::invalid(format!(
                        "slurm.{name} `{v}` is not a Slurm name: use letters, digits, `_`, `.` and `-`"
                    )));
                }
            }
        }
        if let Some(t) = &self.time_limit {
            let ok = !t.is_empty()
                && t.len() <= 16
                && t.chars()
                    .all(|c| c.is_ascii_digit() || c == ':' || c == '-')
                && t.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                return Err(Error::invalid(format!(
                    "slurm.time_limit `{t}` is not a Slurm time: minutes, [HH:]MM:SS or D-HH[:MM[:SS]]"
                )));
            }
        }
        if self.cpus_per_task == Some(0) {
            return Err(Error::invalid("slurm.cpus_per_task must be at least 1"));
        }
        Ok(())
    }

    fn sbatch_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut add = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        add("partition", self.partition.clone());
        add("account", self.account.clone());
        add("qos", self.qos.clone());
        add("time", self.time_limit.clone());
        add("cpus-per-task", self.cpus_per_task.map(|c| c.to_string()));
        add(
            "gpus-per-task",
            self.gpus_per_task.filter(|g| *g > 0).map(|g| g.to_string()),
        );
        args
    }
}

/// Runs tasks as Slurm batch jobs (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Slurm {
    settings: SlurmSettings,
    /// The sandbox each batch job starts; `None` runs the task as the user Slurm
    /// starts the job as (only behind the `insecure_unsandboxed_jobs` setting).
    sandbox: Option<LocalSandbox>,
}

/// A Slurm job's state, as `scontrol show job` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    state: String,
    reason: String,
    exit: Option<(i32, i32)>,
}

impl State {
    fn terminal(&self) -> bool {
        !matches!(
            self.state.as_str(),
            "PENDING"
                | "CONFIGURING"
                | "RUNNING"
                | "COMPLETING"
                | "REQUEUED"
                | "RESIZING"
                | "SUSPENDED"
                | "STOPPED"
                | "SIGNALING"
                | "STAGE_OUT"
                | "REQUEUE_HOLD"
                | "REQUEUE_FED"
                | "RESV_DEL_HOLD"
        )
    }

    fn exit(&self) -> Exit {
        match (self.state.as_str(), self.exit) {
            ("CANCELLED", _) => Exit::Canceled,
            ("TIMEOUT" | "DEADLINE", _) => Exit::TimedOut,
            (_, Some((0, s))) if s > 0 => Exit::Signal(s),
            (_, Some((c, _))) => Exit::Code(c),
            // NODE_FAIL, BOOT_FAIL, OUT_OF_MEMORY… without an exit code.
            _ => Exit::Code(-1),
        }
    }
}

/// Reads `JobState=`, `Reason=` and `ExitCode=` from `scontrol show job`.
fn parse_state(text: &str) -> Option<State> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(str::to_owned)
    };
    let state = field("JobState=")?;
    let exit = field("ExitCode=").and_then(|e| {
        let (c, s) = e.split_once(':')?;
        Some((c.parse().ok()?, s.parse().ok()?))
    });
    Some(State {
        state,
        reason: field("Reason=").unwrap_or_default(),
        exit,
    })
}

impl Slurm {
    /// A backend submitting with `settings`, starting each task in `sandbox`.
    #[must_use]
    pub fn new(settings: SlurmSettings, sandbox: Option<LocalSandbox>) -> Self {
        Self { settings, sandbox }
    }

    /// Whether this machine has Slurm's commands.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Unavailable`] saying what is missing.
    pub async fn check() -> Result<(), Error> {
        let out = tokio::process::Command::new("sbatch")
            .arg("--version")
            .output()
            .await
            .map_err(|e| {
                Error::new(
                    keyless_core::ErrorKind::Unavailable,
                    format!("the Slurm backend needs Slurm's commands (sbatch, scontrol, scancel) on the server's PATH: {e}"),
                )
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::new(
                keyless_core::ErrorKind::Unavailable,
                format!(
                    "sbatch --version failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ))
        }
    }

    /// The batch script of `task`: the sandbox's command line, or the task's
    /// own command without one.
    async fn script(&self, task: &Task) -> Result<String, Error> {
        use std::fmt::Write as _;
        let mut script = format!(
            "#!/bin/sh\n# keyless job {}: its agent, started in the job's sandbox\n",
            task.job.rsplit('/').next().unwrap_or(&task.job)
        );
        match &self.sandbox {
            Some(sandbox) => {
                let line = sandbox.prepare(task).await?;
                script.push_str("exec /usr/bin/env -i");
                for (k, v) in SANDBOX_ENV {
                    let _ = write!(script, " {k}={}", crate::job::shell_word(v));
                }
                for arg in line {
                    let arg = arg.to_string_lossy().into_owned();
                    let _ = write!(script, " {}", crate::job::shell_word(&arg));
                }
            }
            None => {
                script.push_str("exec /usr/bin/env -i");
                for (k, v) in &task.env {
                    let _ = write!(script, " {k}={}", crate::job::shell_word(v));
                }
                let cwd = task.root.join(&task.cwd).display().to_string();
                let _ = write!(
                    script,
                    " /bin/sh -c {} keyless-job {}",
                    crate::job::shell_word(&format!("cd \"$1\" && {}", task.command)),
                    crate::job::shell_word(&cwd)
                );
            }
        }
        script.push('\n');
        Ok(script)
    }

    async fn submit(&self, task: &Task) -> Result<String, Error> {
        use std::os::unix::fs::PermissionsExt as _;
        let script = self.script(task).await?;
        let dir = task.root.parent().unwrap_or(&task.root);
        let path = dir.join("slurm-batch.sh");
        tokio::fs::write(&path, script)
            .await
            .map_err(|e| Error::internal(format!("writing the batch script: {e}")))?;
        tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .await
            .map_err(|e| Error::internal(format!("writing the batch script: {e}")))?;
        let name = task.job.rsplit('/').next().unwrap_or("job");
        let out = tokio::process::Command::new("sbatch")
            .arg("--parsable")
            .arg(format!("--job-name=keyless-{name}"))
            .arg(format!("--output={}", task.log.display()))
            .arg("--open-mode=append")
            .arg("--chdir=/")
            .arg("--export=NONE")
            .args(self.settings.sbatch_args())
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::internal(format!("sbatch could not run: {e}")))?;
        if !out.status.success() {
            return Err(Error::invalid(format!(
                "Slurm refused the job: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        // `--parsable` prints `<id>` or `<id>;<cluster>`.
        let id = text.trim().split(';').next().unwrap_or_default().to_owned();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::internal(format!("sbatch printed no job id: {text}")));
        }
        Ok(id)
    }

    /// The job's state; `None` once Slurm has forgotten it.
    async fn state(id: &str) -> Result<Option<State>, Error> {
        let out = tokio::process::Command::new("scontrol")
            .args(["show", "job", id])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::internal(format!("scontrol could not run: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            return Ok(parse_state(&text));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Invalid job id") {
            Ok(None)
        } else {
            Err(Error::internal(format!(
                "scontrol show job {id} failed: {}",
                err.trim()
            )))
        }
    }

    /// Follows a submitted job to its end; `cancel` reaches Slurm as `scancel`.
    ///
    /// # Errors
    /// When Slurm's commands fail.
    pub async fn follow(
        &self,
        id: &str,
        task: &Task,
        cancel: CancellationToken,
    ) -> Result<Exit, Error> {
        let mut last: Option<State> = None;
        let mut errors = 0u32;
        loop {
            if cancel.is_cancelled() {
                return Self::cancel(id).await;
            }
            match Self::state(id).await {
                Ok(Some(s)) => {
                    errors = 0;
                    if last.as_ref().map(|l| (&l.state, &l.reason)) != Some((&s.state, &s.reason)) {
                        match s.state.as_str() {
                            "PENDING" => task.tell(Event::Pending(s.reason.clone())),
                            "RUNNING" => task.tell(Event::Started),
                            _ => {}
                        }
                    }
                    if s.terminal() {
                        return Ok(s.exit());
                    }
                    last = Some(s);
                }
                // Forgotten: it ended long ago (MinJobAge); the agent's reports
                // say how.
                Ok(None) => return Ok(Exit::Code(-1)),
                Err(e) => {
                    // slurmctld restarts; a few failed polls are not the job's end.
                    errors += 1;
                    if errors > 120 {
                        return Err(e);
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = cancel.cancelled() => {}
            }
        }
    }

    async fn cancel(id: &str) -> Result<Exit, Error> {
        let out = tokio::process::Command::new("scancel")
            .arg(id)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| Error::internal(format!("scancel could not run: {e}")))?;
        if !out.status.success() {
            return Err(Error::internal(format!(
                "scancel {id} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let deadline = tokio::time::Instant::now() + CANCEL_WAIT;
        while tokio::time::Instant::now() < deadline {
            match Self::state(id).await? {
                Some(s) if !s.terminal() => tokio::time::sleep(POLL).await,
                _ => break,
            }
        }
        Ok(Exit::Canceled)
    }
}

#[async_trait]
impl ComputeBackend for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn survives_restart(&self) -> bool {
        true
    }

    fn mounts(&self) -> bool {
        self.sandbox.is_some()
    }

    fn job_root(&self, root: &Path) -> PathBuf {
        if self.sandbox.is_some() {
            PathBuf::from(JOB_ROOT)
        } else {
            root.to_path_buf()
        }
    }

    fn agent_path(&self, exe: &Path) -> PathBuf {
        match &self.sandbox {
            Some(s) => s.agent_path(exe),
            None => exe.to_path_buf(),
        }
    }

    async fn run(&self, task: Task, cancel: CancellationToken) -> Result<Exit, Error> {
        let id = self.submit(&task).await?;
        task.tell(Event::Submitted(id.clone()));
        self.follow(&id, &task, cancel).await
    }

    async fn reattach(
        &self,
        handle: &str,
        task: Task,
        cancel: CancellationToken,
    ) -> Result<Exit, Error> {
        self.follow(handle, &task, cancel).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scontrol_states_and_exit_codes_are_read_as_slurm_reports_them() {
        let failed = "JobId=7 JobName=x\n   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)\n   Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=3:0\n";
        let s = parse_state(failed).unwrap();
        assert!(s.terminal());
        assert_eq!(s.exit(), Exit::Code(3));
        let pending =
            "JobId=8\n   JobState=PENDING Reason=Resources Dependency=(null)\n   ExitCode=0:0\n";
        let s = parse_state(pending).unwrap();
        assert!(!s.terminal());
        assert_eq!(s.reason, "Resources");
        let killed = parse_state("JobState=FAILED Reason=x ExitCode=0:9").unwrap();
        assert_eq!(killed.exit(), Exit::Signal(9));
        assert_eq!(
            parse_state("JobState=CANCELLED ExitCode=0:15")
                .unwrap()
                .exit(),
            Exit::Canceled
        );
        assert_eq!(
            parse_state("JobState=TIMEOUT ExitCode=0:0").unwrap().exit(),
            Exit::TimedOut
        );
        assert!(parse_state("no state here").is_none());
    }

    #[test]
    fn settings_that_could_smuggle_options_into_sbatch_are_refused() {
        let ok = SlurmSettings {
            partition: Some("debug".into()),
            time_limit: Some("1-00:30:00".into()),
            cpus_per_task: Some(2),
            ..SlurmSettings::default()
        };
        assert!(ok.check().is_ok());
        assert_eq!(
            ok.sbatch_args(),
            [
                "--partition=debug",
                "--time=1-00:30:00",
                "--cpus-per-task=2"
            ]
        );
        for bad in [
            SlurmSettings {
                partition: Some("debug --uid=0".into()),
                ..SlurmSettings::default()
            },
            SlurmSettings {
                account: Some(String::new()),
                ..SlurmSettings::default()
            },
            SlurmSettings {
                qos: Some("a;b".into()),
                ..SlurmSettings::default()
            },
            SlurmSettings {
                time_limit: Some("--wrap=id".into()),
                ..SlurmSettings::default()
            },
            SlurmSettings {
                cpus_per_task: Some(0),
                ..SlurmSettings::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
