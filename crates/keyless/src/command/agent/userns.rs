//! `keyless job-userns <agent uid> <job uid> -- <program> [args…]`: how the
//! local sandbox starts the agent of a job whose command runs in an image.
//!
//! Run as root by the sandbox's setup, it makes the process the root of a new
//! user namespace, with a mount namespace of its own, in which exactly two
//! host ids exist: the image agents' uid, seen as 0, and the job's uid, seen as
//! itself. There the agent may unpack, mount and start `runc` as root, and runc
//! needs no user namespace of its own, so the container's process runs as the
//! job's uid (not 0) with no capability. Nothing the agent holds reaches past
//! the namespace: the host's root is not mapped, and the setup's mounts (the
//! data dir covered) are locked in the copy.
//!
//! The maps of a namespace must be written from outside it: a child started
//! before the namespace exists writes them once the parent has entered it.
//! The process then stays the one the sandbox started (the PID namespace's
//! first), so the backend's SIGTERM reaches the agent it becomes.

use std::convert::Infallible;
use std::ffi::OsString;
use std::io::{Read as _, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, anyhow, bail};
use nix::unistd::{Gid, Uid};

/// Writes the maps of the process whose pid is `$1` when a line arrives on
/// standard input: `$2` (the agent's host uid) as 0, `$3` (the job's) as itself.
const WRITE_MAPS: &str = r#"set -eu
read -r go
printf '0 %s 1\n%s %s 1\n' "$2" "$3" "$3" > "/proc/$1/uid_map"
printf '0 %s 1\n%s %s 1\n' "$2" "$3" "$3" > "/proc/$1/gid_map"
"#;

/// Enters the namespace and executes `program`; returns only on failure.
pub(crate) fn enter(agent: u32, job: u32, program: &[OsString]) -> Result<Infallible> {
    let (file, args) = program
        .split_first()
        .ok_or_else(|| anyhow!("job-userns: no program to run"))?;
    if agent == 0 || job == 0 || agent == job {
        bail!("job-userns: the agent's uid {agent} and the job's {job} must differ and not be 0");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("job-userns: only root can map two host ids into a user namespace");
    }
    let mut writer = Command::new("/bin/sh")
        .args(["-c", WRITE_MAPS, "keyless-userns"])
        .arg(std::process::id().to_string())
        .arg(agent.to_string())
        .arg(job.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("job-userns: cannot start the map writer")?;
    nix::sched::unshare(
        nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNS,
    )
    .context("job-userns: cannot make the user namespace")?;
    if let Some(stdin) = writer.stdin.as_mut() {
        stdin
            .write_all(b"go\n")
            .context("job-userns: the map writer is gone")?;
    }
    drop(writer.stdin.take());
    let written = writer.wait().context("job-userns: the map writer")?;
    if !written.success() {
        bail!("job-userns: the maps could not be written ({written})");
    }
    let root = Gid::from_raw(0);
    nix::unistd::setresgid(root, root, root).context("job-userns: setresgid")?;
    nix::unistd::setgroups(&[]).context("job-userns: setgroups")?;
    let root = Uid::from_raw(0);
    nix::unistd::setresuid(root, root, root).context("job-userns: setresuid")?;
    nix::sys::prctl::set_no_new_privs().context("job-userns: no_new_privs")?;
    let error = Command::new(file).args(args).exec();
    Err(anyhow!(
        "job-userns: cannot run {}: {error}",
        file.to_string_lossy()
    ))
}

/// The job's uid when this agent is the root of the namespace [`enter`]
/// makes; `None` anywhere else (the agent then runs images rootless).
pub(super) fn job_user() -> Option<u32> {
    if !nix::unistd::geteuid().is_root() {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open("/proc/self/uid_map")
        .and_then(|mut f| f.read_to_string(&mut text))
        .ok()?;
    job_user_of(&text)
}

/// The job's uid in a uid map of the namespace [`enter`] makes: two lines,
/// 0 as an unprivileged host uid and the job's uid as itself.
fn job_user_of(uid_map: &str) -> Option<u32> {
    let lines: Vec<Vec<u64>> = uid_map
        .lines()
        .map(|l| {
            l.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .collect();
    let [a, b] = lines.as_slice() else {
        return None;
    };
    let (root, user) = if a.first() == Some(&0) {
        (a, b)
    } else {
        (b, a)
    };
    match (root.as_slice(), user.as_slice()) {
        ([0, host, 1], [inside, outside, 1])
            if *host != 0 && host != outside && inside == outside =>
        {
            u32::try_from(*inside).ok().filter(|&j| j != 0)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::job_user_of;

    #[test]
    fn only_the_two_line_map_of_an_image_job_names_a_job_user() {
        let ours = "         0 2100000000          1\n2000000001 2000000001          1\n";
        assert_eq!(job_user_of(ours), Some(2_000_000_001));
        // The host's own namespace, a rootless runc's, the host's root mapped
        // in, a job uid shifted: none is the sandbox's.
        for other in [
            "0 0 4294967295\n",
            "0 1000 1\n",
            "0 0 1\n2000000001 2000000001 1\n",
            "0 2100000000 1\n1000 2000000001 1\n",
            "0 2100000000 1\n2100000000 2100000000 1\n",
            "0 2100000000 2\n2000000001 2000000001 1\n",
            "",
        ] {
            assert_eq!(job_user_of(other), None, "{other:?}");
        }
    }
}
