//! The local sandbox: each job as a user of its own, in namespaces of its own.
//!
//! Made from the system's tools, not a runtime of keyless's own:
//! - `unshare` gives the job a PID namespace (it sees only its own processes,
//!   and when its first process ends the kernel kills every other one, daemons
//!   included), a mount namespace and an IPC namespace;
//! - in the mount namespace a small setup script, still root, gives the job
//!   private `/tmp`, `/var/tmp`, `/dev/shm` and `/run/lock`, shows the job's
//!   folder at [`JOB_ROOT`] and covers the server's data dir with an empty,
//!   read-only file system;
//! - `prlimit` bounds the job's processes, and `setpriv` drops to a uid and gid
//!   drawn at random for this job, with no supplementary groups, no
//!   capabilities and `no_new_privs` (set-uid programs cannot raise it again).
//!
//! - a job whose command runs in an image starts its agent through
//!   `keyless job-userns` instead of `setpriv`: the agent is the root of a
//!   user namespace where only [`IMAGE_AGENT_UID`] (as 0) and the job's uid
//!   exist, so it can run `runc` as root there while the container's process
//!   is the job's uid; the node's cache of unpacked images, [`IMAGES`], is
//!   shown to it (and to no job's uid).
//!
//! Nothing the job controls reaches the root part: the setup runs with a fixed
//! environment, and the job's environment is read from a file by the job's own
//! shell after the privileges are gone, then removed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use keyless_core::Error;

use super::{ComputeBackend, Exit, Task, supervise};

/// Where a sandboxed job sees its folder (code, inputs, outputs).
pub const JOB_ROOT: &str = "/mnt/azureml/job";

/// Where a sandboxed job sees the job agent's executable (read-only).
pub const AGENT_PATH: &str = "/mnt/azureml/bin/keyless";

/// Where a sandboxed image job's agent sees the node's cache of unpacked images.
pub const IMAGES: &str = "/mnt/azureml/images";

/// The host uid (and gid) of image jobs' agents, seen as 0 in each job's user
/// namespace; it owns the node's image cache. Outside the jobs' uids, so no job's
/// command ever runs as it.
pub const IMAGE_AGENT_UID: u32 = 2_100_000_000;

/// The file under the job's folder that carries its environment to its shell.
const ENV_FILE: &str = ".job-env";

/// Job uids and gids are drawn from this range, far above any account's.
const UIDS: std::ops::Range<u32> = 2_000_000_000..2_100_000_000;

/// At most this many processes per job.
const MAX_PROCESSES: u32 = 4096;

/// The tools the sandbox is made of.
const TOOLS: [&str; 4] = [
    "/usr/bin/unshare",
    "/usr/bin/setpriv",
    "/usr/bin/prlimit",
    "/bin/sh",
];

/// The sandbox's setup, run as root inside the new namespaces. Arguments: the
/// job's folder, the uid, the working directory under [`JOB_ROOT`], the
/// command, the agent's executable (or nothing), whether to mount a FUSE
/// connection for the agent (`1` or nothing), the node's image cache when the
/// command runs in an image (or nothing), then the folders to hide.
const SETUP: &str = r#"set -eu
# The server's own umask (077) is not the job's.
umask 022
root=$1 id=$2 cwd=$3 command=$4 agent=$5 fuse=$6 images=$7
shift 7
# Hold the job's folder as the working directory, and the agent's executable
# and the image cache open, before anything covers their paths.
cd -- "$root"
if [ -n "$agent" ]; then exec 3<"$agent"; fi
if [ -n "$images" ]; then
  # The node's unpacked images: the image agents' alone.
  mkdir -p -- "$images"
  chown @IMAGE_UID@:@IMAGE_UID@ -- "$images"
  chmod 0700 -- "$images"
  exec 4<"$images"
fi
for d in /tmp /var/tmp /dev/shm /run/lock; do
  if [ -d "$d" ]; then mount -t tmpfs -o mode=1777,nosuid,nodev keyless-tmp "$d"; fi
done
if [ ! -d /mnt ]; then mkdir /mnt; fi
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64k keyless-job /mnt
mkdir -p "@ROOT@"
mount --no-canonicalize --bind . "@ROOT@"
if [ -n "$agent" ]; then
  mkdir -p "${AGENT%/*}"
  : > "$AGENT"
  mount --no-canonicalize --bind -o ro /proc/self/fd/3 "$AGENT"
  exec 3<&-
fi
if [ -n "$fuse" ]; then
  # The job's mounts: a FUSE connection only the job's uid may use, mounted
  # here and handed to the agent as its standard input, which it serves from.
  exec 0<>/dev/fuse
  mkdir -p "@ROOT@/@MOUNTS@"
  mount -i --no-canonicalize -t fuse \
    -o "nosuid,nodev,fd=0,rootmode=40000,user_id=$id,group_id=$id,default_permissions,subtype=keyless" \
    keyless-mounts "@ROOT@/@MOUNTS@"
fi
if [ -n "$images" ]; then
  mkdir -p "@IMAGES@"
  mount --no-canonicalize --bind /proc/self/fd/4 "@IMAGES@"
  exec 4<&-
fi
for h in "$@"; do
  if [ -d "$h" ]; then mount -t tmpfs -o ro,nosuid,nodev,noexec,mode=0000,size=4k keyless-hidden "$h"; fi
done
cd -- "@ROOT@/$cwd"
if [ -n "$images" ]; then
  exec prlimit --nproc=@NPROC@ --core=0 -- \
    "$AGENT" job-userns @IMAGE_UID@ "$id" -- \
    /bin/sh -c 'set -a; . "$1"; set +a; rm -f -- "$1"; exec /bin/sh -c "$2"' keyless-job "@ROOT@/@ENV@" "$command"
fi
exec prlimit --nproc=@NPROC@ --core=0 -- \
  setpriv --reuid="$id" --regid="$id" --clear-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
  /bin/sh -c 'set -a; . "$1"; set +a; rm -f -- "$1"; exec /bin/sh -c "$2"' keyless-job "@ROOT@/@ENV@" "$command"
"#;

/// Runs each task in a sandbox of its own (see the module's documentation).
#[derive(Debug, Clone)]
pub struct LocalSandbox {
    /// Folders the job must not see, whatever their permissions: the data dir.
    hidden: Vec<PathBuf>,
    /// The job agent's executable, shown read-only at [`AGENT_PATH`].
    agent: Option<PathBuf>,
    /// The node's cache of unpacked images, shown to image jobs' agents at
    /// [`IMAGES`].
    images: Option<PathBuf>,
}

impl LocalSandbox {
    /// A sandbox that hides `hidden` from every job.
    #[must_use]
    pub fn new(hidden: Vec<PathBuf>) -> Self {
        Self {
            hidden,
            agent: None,
            images: None,
        }
    }

    /// Shows the job agent's executable `exe` to every job, read-only, at
    /// [`AGENT_PATH`].
    #[must_use]
    pub fn with_agent(mut self, exe: PathBuf) -> Self {
        self.agent = Some(exe);
        self
    }

    /// Keeps the node's unpacked images in `dir` (made by the sandbox, owned
    /// by [`IMAGE_AGENT_UID`]).
    #[must_use]
    pub fn with_image_cache(mut self, dir: PathBuf) -> Self {
        self.images = Some(dir);
        self
    }

    /// Whether this machine can make the sandbox.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Unavailable`] saying what is missing.
    pub fn check() -> Result<(), Error> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::new(
                keyless_core::ErrorKind::Unavailable,
                "the local sandbox runs each job as a user of its own and needs keyless to run as root; run keyless as root, or set insecure_unsandboxed_jobs to run jobs as the server's own user",
            ));
        }
        if let Some(missing) = TOOLS.iter().find(|t| !Path::new(t).exists()) {
            return Err(Error::new(
                keyless_core::ErrorKind::Unavailable,
                format!("the local sandbox needs `{missing}` (Debian's util-linux package)"),
            ));
        }
        Ok(())
    }
}

#[async_trait]
impl ComputeBackend for LocalSandbox {
    fn name(&self) -> &'static str {
        "local"
    }

    fn job_root(&self, _root: &Path) -> PathBuf {
        PathBuf::from(JOB_ROOT)
    }

    fn mounts(&self) -> bool {
        true
    }

    fn agent_path(&self, exe: &Path) -> PathBuf {
        if self.agent.is_some() {
            PathBuf::from(AGENT_PATH)
        } else {
            exe.to_path_buf()
        }
    }

    async fn run(&self, task: Task, cancel: CancellationToken) -> Result<Exit, Error> {
        let line = self.prepare(&task).await?;
        let (program, args) = line
            .split_first()
            .ok_or_else(|| Error::internal("an empty sandbox command"))?;
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .current_dir("/")
            .env_clear()
            .envs(SANDBOX_ENV);
        supervise(command, &task, cancel).await
    }
}

/// The environment of the sandbox's own setup (the job's is read from its file).
pub(super) const SANDBOX_ENV: [(&str, &str); 2] = [
    ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ("AGENT", AGENT_PATH),
];

impl LocalSandbox {
    /// Prepares `task`'s folder for a uid drawn for it (its environment file
    /// written, everything handed to that uid) and returns the command line
    /// that runs the task in the sandbox, to be started as root with the
    /// sandbox's fixed environment and `/` as its directory — here, or by a
    /// scheduler on the node.
    ///
    /// # Errors
    /// When this machine cannot make the sandbox, or the folder cannot be
    /// prepared.
    pub async fn prepare(&self, task: &Task) -> Result<Vec<std::ffi::OsString>, Error> {
        Self::check()?;
        let uid = job_uid()?;
        let env = env_file(&task.env)?;
        let root = task.root.clone();
        tokio::task::spawn_blocking(move || hand_over(&root, &env, uid))
            .await
            .map_err(|e| Error::internal(format!("preparing the job's folder: {e}")))??;
        let script = SETUP
            .replace("@ROOT@", JOB_ROOT)
            .replace("@ENV@", ENV_FILE)
            .replace("@MOUNTS@", super::MOUNTS)
            .replace("@NPROC@", &MAX_PROCESSES.to_string())
            .replace("@IMAGES@", IMAGES)
            .replace("@IMAGE_UID@", &IMAGE_AGENT_UID.to_string());
        let images = if task.image {
            match (&self.agent, &self.images) {
                (Some(_), Some(dir)) => dir.clone().into_os_string(),
                _ => {
                    return Err(Error::new(
                        keyless_core::ErrorKind::Unavailable,
                        "this sandbox runs no image: it has no job agent or no image cache",
                    ));
                }
            }
        } else {
            std::ffi::OsString::new()
        };
        let mut line: Vec<std::ffi::OsString> = [
            "/usr/bin/unshare",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--mount",
            "--ipc",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            "-c",
            &script,
            "keyless-sandbox",
        ]
        .iter()
        .map(std::ffi::OsString::from)
        .collect();
        line.push(task.root.clone().into_os_string());
        line.push(uid.to_string().into());
        line.push(task.cwd.clone().into_os_string());
        line.push(task.command.clone().into());
        line.push(self.agent.clone().unwrap_or_default().into_os_string());
        line.push(if task.fuse { "1" } else { "" }.into());
        line.push(images);
        line.extend(self.hidden.iter().map(|h| h.clone().into_os_string()));
        Ok(line)
    }
}

/// A uid for one job, drawn at random from [`UIDS`].
fn job_uid() -> Result<u32, Error> {
    let mut bytes = [0u8; 4];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::internal("the system's random generator failed"))?;
    Ok(UIDS.start + u32::from_le_bytes(bytes) % (UIDS.end - UIDS.start))
}

/// The environment as lines the job's shell reads with `set -a; . file`: each
/// value single-quoted, so nothing in it is interpreted.
fn env_file(env: &[(String, String)]) -> Result<String, Error> {
    let mut out = String::new();
    for (name, value) in env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(Error::invalid(format!(
                "environment variable `{name}` is not a valid name: use letters, digits and `_`, not starting with a digit"
            )));
        }
        if value.contains('\0') {
            return Err(Error::invalid(format!(
                "environment variable `{name}` contains a NUL character"
            )));
        }
        let _ = writeln!(out, "{name}={}", crate::job::shell_word(value));
    }
    Ok(out)
}

/// Writes the environment file and gives the job's folder, and everything in it,
/// to the job's uid and gid.
fn hand_over(root: &Path, env: &str, uid: u32) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let fail = |what: &Path, e: std::io::Error| {
        Error::internal(format!("preparing `{}` for the job: {e}", what.display()))
    };
    let path = root.join(ENV_FILE);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| fail(&path, e))?;
    file.write_all(env.as_bytes()).map_err(|e| fail(&path, e))?;
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        std::os::unix::fs::lchown(&path, Some(uid), Some(uid)).map_err(|e| fail(&path, e))?;
        let meta = std::fs::symlink_metadata(&path).map_err(|e| fail(&path, e))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| fail(&path, e))? {
                pending.push(entry.map_err(|e| fail(&path, e))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
