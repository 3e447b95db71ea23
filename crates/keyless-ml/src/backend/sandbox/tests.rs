//! Each test attacks the sandbox the way a hostile job would and checks the
//! refusal. They need root (as CI has); elsewhere each prints one skip line.

use std::path::Path;
use std::time::Duration;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    /// Stands for the server's data dir: holds a secret and the job's folder.
    data: PathBuf,
    root: PathBuf,
    log: PathBuf,
}

fn fixture() -> Option<Fixture> {
    if let Err(e) = LocalSandbox::check() {
        println!("skipped: {e}");
        return None;
    }
    // As the server runs.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let dir = tempfile::tempdir().ok()?;
    let data = dir.path().join("data");
    let root = data.join("jobs").join("j1").join("wd");
    std::fs::create_dir_all(root.join("code")).ok()?;
    std::fs::write(data.join("master.key"), b"the server's secret").ok()?;
    let log = data.join("jobs").join("j1").join("std_log.txt");
    Some(Fixture {
        _dir: dir,
        data,
        root,
        log,
    })
}

impl Fixture {
    fn task(&self, command: &str, env: &[(&str, &str)]) -> Task {
        Task {
            job: "j1".into(),
            command: command.into(),
            root: self.root.clone(),
            cwd: PathBuf::from("code"),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: self.log.clone(),
            timeout: Some(Duration::from_secs(60)),
            events: None,
            fuse: false,
            image: false,
        }
    }

    async fn run(&self, command: &str, env: &[(&str, &str)]) -> (Exit, String) {
        let sandbox = LocalSandbox::new(vec![self.data.clone()]);
        let exit = sandbox
            .run(self.task(command, env), CancellationToken::new())
            .await
            .unwrap();
        (exit, std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

/// Processes on the host whose command line contains `needle`.
fn host_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_job_runs_as_a_user_of_its_own_with_no_groups_and_no_capabilities() {
    let Some(f) = fixture() else { return };
    let (exit, log) = f
        .run(
            "id -u; id -g; id -G; grep CapEff /proc/self/status; pwd; \
             grep NoNewPrivs /proc/self/status",
            &[("PATH", "/usr/bin:/bin")],
        )
        .await;
    assert_eq!(exit, Exit::Code(0), "{log}");
    let lines: Vec<&str> = log.lines().collect();
    let uid: u32 = lines[0].parse().unwrap();
    assert!(UIDS.contains(&uid), "{log}");
    assert_eq!(lines[1], lines[0], "gid = uid");
    assert_eq!(lines[2], lines[0], "no supplementary groups");
    assert!(lines[3].ends_with("0000000000000000"), "{log}");
    assert_eq!(lines[4], format!("{JOB_ROOT}/code"));
    assert!(lines[5].ends_with('1'), "{log}");
}

#[tokio::test]
async fn a_job_cannot_read_the_data_dir_the_server_or_other_processes() {
    let Some(f) = fixture() else { return };
    let data = f.data.display().to_string();
    let server = std::process::id();
    // The attacks of a hostile job: climb out of its folder, read the data dir by
    // its path, read the server's environment, list every process, signal the
    // server, use sudo or su.
    let command = format!(
        "cat ../../../../master.key; cat {data}/master.key; ls {data}; \
         cat /proc/{server}/environ; ls /proc | grep -c '^[0-9]' ; \
         kill -0 {server} && echo SIGNALLED; \
         echo done"
    );
    let (exit, log) = f.run(&command, &[("PATH", "/usr/bin:/bin")]).await;
    assert_eq!(exit, Exit::Code(0), "{log}");
    assert!(!log.contains("the server's secret"), "{log}");
    assert!(!log.contains("SIGNALLED"), "{log}");
    // Only the job's own shell, `ls` and `grep` are there to see.
    let count = log
        .lines()
        .find_map(|l| l.trim().parse::<u32>().ok())
        .unwrap();
    assert!(count <= 3, "the job saw {count} processes:\n{log}");
    assert!(log.trim_end().ends_with("done"));
}

#[tokio::test]
async fn a_job_has_a_private_tmp_and_leaves_nothing_running() {
    let Some(f) = fixture() else { return };
    let marker = format!("keyless-sandbox-test-{}", std::process::id());
    std::fs::write(Path::new("/tmp").join(&marker), b"host").unwrap();
    // A daemon that leaves the job's session and process group, as a hostile
    // job would to wait for later jobs.
    let command = format!(
        "ls /tmp /dev/shm; echo job > /tmp/{marker}.job; \
         setsid sleep 987.{pid} > /dev/null 2>&1 < /dev/null & sleep 0.2; echo started",
        pid = std::process::id()
    );
    let (exit, log) = f.run(&command, &[("PATH", "/usr/bin:/bin")]).await;
    std::fs::remove_file(Path::new("/tmp").join(&marker)).unwrap();
    assert_eq!(exit, Exit::Code(0), "{log}");
    assert!(log.contains("started"), "{log}");
    assert!(
        !log.contains(&marker),
        "the job saw the host's /tmp:\n{log}"
    );
    assert!(!Path::new("/tmp").join(format!("{marker}.job")).exists());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = host_processes(&format!("sleep 987.{}", std::process::id()));
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn cancel_kills_every_process_of_the_job() {
    let Some(f) = fixture() else { return };
    let needle = format!("sleep 876.{}", std::process::id());
    let sandbox = LocalSandbox::new(vec![f.data.clone()]);
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    let task = f.task(
        &format!("setsid {needle} & {needle}"),
        &[("PATH", "/usr/bin:/bin")],
    );
    let run = tokio::spawn(async move { sandbox.run(task, cancel).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while host_processes(&needle).len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    trigger.cancel();
    assert_eq!(run.await.unwrap().unwrap(), Exit::Canceled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = host_processes(&needle);
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test]
async fn the_jobs_environment_reaches_only_the_job_and_is_not_left_in_its_folder() {
    let Some(f) = fixture() else { return };
    // Variables that would subvert the root part of the setup if they reached it.
    let (exit, log) = f
        .run(
            "echo \"$GREETING|$LD_PRELOAD|$PATH\"; ls -a ..",
            &[
                ("GREETING", "it's \"quoted\" $(id) `x`\nsecond line"),
                ("LD_PRELOAD", "/nonexistent/evil.so"),
                ("PATH", "/nonexistent:/usr/bin:/bin"),
            ],
        )
        .await;
    assert_eq!(exit, Exit::Code(0), "{log}");
    // The loader complains about the missing library in the job's own programs
    // (rm of the environment file, the command's shell, ls) and nowhere else: the
    // root part of the setup (mount, mkdir, prlimit, setpriv) never saw it.
    let (loader, rest): (Vec<&str>, Vec<&str>) = log
        .lines()
        .partition(|l| l.contains("LD_PRELOAD cannot be preloaded"));
    assert!(loader.len() <= 3, "{log}");
    assert_eq!(
        rest[..2].join("\n"),
        "it's \"quoted\" $(id) `x`\nsecond line|/nonexistent/evil.so|/nonexistent:/usr/bin:/bin"
    );
    assert!(!log.contains(ENV_FILE), "{log}");
}

#[tokio::test]
async fn outputs_written_by_the_job_stay_in_its_folder() {
    let Some(f) = fixture() else { return };
    let (exit, log) = f
        .run(
            "mkdir -p ../outputs/o && echo result > ../outputs/o/r.txt",
            &[],
        )
        .await;
    assert_eq!(exit, Exit::Code(0), "{log}");
    assert_eq!(
        std::fs::read_to_string(f.root.join("outputs/o/r.txt")).unwrap(),
        "result\n"
    );
}

#[test]
fn environment_names_the_shell_cannot_take_are_refused() {
    assert!(env_file(&[("A-B".into(), "x".into())]).is_err());
    assert!(env_file(&[("1A".into(), "x".into())]).is_err());
    assert!(env_file(&[("A".into(), "x\0y".into())]).is_err());
    assert_eq!(
        env_file(&[("A_1".into(), "it's".into())]).unwrap(),
        "A_1='it'\\''s'\n"
    );
}

#[tokio::test]
async fn the_servers_own_environment_does_not_reach_a_job() {
    let Some(f) = fixture() else { return };
    // What the server holds in its environment (an object store's credentials,
    // say) stays there: here, the CARGO_* variables cargo runs the tests with.
    let held: Vec<String> = std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("CARGO"))
        .collect();
    assert!(!held.is_empty(), "cargo runs tests with CARGO_* set");
    let (exit, log) = f.run("env", &[("MINE", "the job's own")]).await;
    assert_eq!(exit, Exit::Code(0), "{log}");
    assert!(log.contains("MINE=the job's own"), "{log}");
    for name in held {
        assert!(
            !log.contains(&format!("{name}=")),
            "{name} reached the job:\n{log}"
        );
    }
}
