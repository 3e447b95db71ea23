//! `keyless job-agent`: a job's agent, run on the compute as the job's
//! unprivileged user by the compute's backend.
//!
//! It reads its handle (the agent API's endpoint, the job's key and secret, the
//! CA to trust) from the file `KEYLESS_JOB_HANDLE` names and removes the file,
//! then does the job's data work itself, through the storage listener, with the
//! access the server hands it for each blob: it downloads the code snapshot and
//! checks its checksum, downloads the inputs, opens the job's managed-identity
//! endpoint on the node's loopback (forwarding to keyless with the job's
//! secret), runs the command with its output streamed to the job's log as it
//! is printed, and uploads the outputs. Bytes stream between the storage and
//! the disk; no file is held whole in memory.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_ml::snapshot::check_path;

mod image;
mod mount;
mod transfer;
pub(crate) mod userns;

/// The storage service version the agent speaks.
const STORAGE_VERSION: &str = "2025-11-05";
/// Log bytes are sent at least this often while the command prints.
const LOG_FLUSH: Duration = Duration::from_millis(200);
/// …or as soon as this many are waiting.
const LOG_BATCH: usize = 64 * 1024;
/// How long the agent keeps retrying a call keyless does not answer (a server
/// restarting), before it gives up.
const RETRY_FOR: Duration = Duration::from_secs(600);
/// How long a stopped command's process group gets between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Deserialize)]
struct Handle {
    /// The agent API's endpoints: the server that started the job first, then
    /// the other servers sharing its store.
    endpoints: Vec<String>,
    /// The job's resource id.
    job: String,
    key: String,
    secret: String,
    ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct Spec {
    command: String,
    cwd: String,
    env: BTreeMap<String, String>,
    timeout: Option<u64>,
    code: bool,
    inputs: Vec<Folder>,
    outputs: Vec<Folder>,
    /// The inputs and outputs served as mounts.
    #[serde(default)]
    mounts: Vec<mount::MountSpec>,
    identity: bool,
    /// The image the command runs in; none: on the node's host environment.
    #[serde(default)]
    image: Option<image::ImagePlan>,
}

#[derive(Debug, Deserialize)]
struct Folder {
    port: String,
    dir: String,
}

#[derive(Debug, Deserialize)]
struct Access {
    authorization: Option<String>,
    files: Vec<FileAccess>,
    checksum: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileAccess {
    path: String,
    url: String,
}

/// Why the job fails, as the agent reports it. `reported` failures were
/// recorded by the server already (it refused the access).
#[derive(Debug)]
struct Failure {
    code: &'static str,
    message: String,
    reported: bool,
}

impl Failure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            reported: false,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::new("AgentFailed", format!("{e:#}"))
    }
}

struct Agent {
    api: Arc<Api>,
    /// The job's folder, as this node sees it.
    root: PathBuf,
    /// keyless's CA, when the job is given one.
    ca: Option<PathBuf>,
    /// The job's uid when the agent is the root of the job's user namespace
    /// (an image job in the local sandbox): the container runs as it.
    user: Option<u32>,
}

/// The agent API, wherever it answers: calls go to the server that runs the
/// job, and turn to the next endpoint when that one cannot be reached or
/// says another server runs the job (after a server is lost, the one that
/// took the job over).
struct Api {
    http: reqwest::Client,
    /// `<endpoint>/keyless/jobs/<key>`, for each endpoint.
    bases: Vec<String>,
    /// The endpoint in use, as an index of `bases`.
    current: std::sync::atomic::AtomicUsize,
    job: String,
    secret: String,
}

impl Api {
    /// Sends a call to `rel` (`spec`, `log`, `token?…`), built by `build` from
    /// its URL, again and again while keyless cannot be reached or says it is
    /// busy (a server restarting, or taking the job over), for at most
    /// [`RETRY_FOR`].
    async fn send(
        &self,
        rel: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        use std::sync::atomic::Ordering;
        let deadline = tokio::time::Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(250);
        loop {
            let at = self.current.load(Ordering::Relaxed);
            let base = self
                .bases
                .get(at % self.bases.len().max(1))
                .map_or("", String::as_str);
            let outcome = build(&format!("{base}/{rel}"))
                .header("x-keyless-job", &self.job)
                .send()
                .await;
            let (transient, elsewhere) = match &outcome {
                Ok(r) => (
                    matches!(r.status().as_u16(), 502..=504),
                    r.status() == reqwest::StatusCode::MISDIRECTED_REQUEST,
                ),
                Err(e) => (
                    e.is_connect() || e.is_timeout() || e.is_request(),
                    e.is_connect(),
                ),
            };
            if !(transient || elsewhere) || tokio::time::Instant::now() + pause > deadline {
                return outcome;
            }
            if elsewhere {
                let _ = self.current.compare_exchange(
                    at,
                    (at + 1) % self.bases.len(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
}

impl Api {
    /// Posts `body` to `rel` with the job's secret and reads the answer as a
    /// `T`. A refusal was recorded by the server (it failed the job), and comes
    /// back with its reason, under `code`.
    async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        rel: &str,
        body: &Value,
        code: &'static str,
    ) -> Result<T, Failure> {
        let response = self
            .send(rel, |url| {
                self.http
                    .post(url)
                    .header("x-keyless-job-secret", &self.secret)
                    .json(body)
            })
            .await
            .map_err(|e| {
                Failure::new(
                    code,
                    format!("the agent API ({rel}) cannot be reached: {e}"),
                )
            })?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("refused")
                .to_owned();
            return Err(Failure {
                code,
                message,
                reported: true,
            });
        }
        serde_json::from_value(value).map_err(|e| {
            Failure::new(
                code,
                format!("the server's answer to {rel} is malformed: {e}"),
            )
        })
    }
}

/// Runs the agent of the job whose handle `KEYLESS_JOB_HANDLE` names.
pub(crate) async fn run() -> Result<()> {
    // The command runs as this same user: without this it could read the
    // agent's memory (and the job's secret) through /proc or ptrace.
    nix::sys::prctl::set_dumpable(false).context("cannot make the agent undumpable")?;
    let path = std::env::var_os("KEYLESS_JOB_HANDLE")
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("KEYLESS_JOB_HANDLE does not name the job's handle file"))?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the job's handle {}", path.display()))?;
    std::fs::remove_file(&path)
        .with_context(|| format!("cannot remove the job's handle {}", path.display()))?;
    let handle: Handle = serde_json::from_str(&text).context("the job's handle is malformed")?;
    let root = path
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("the job's handle lies in no folder"))?;
    if handle.endpoints.is_empty() {
        return Err(anyhow!("the job's handle names no endpoint"));
    }
    let bases = handle
        .endpoints
        .iter()
        .map(|e| format!("{}/keyless/jobs/{}", e.trim_end_matches('/'), handle.key))
        .collect();
    let agent = Arc::new(Agent {
        ca: handle.ca.clone(),
        user: userns::job_user(),
        api: Arc::new(Api {
            http: crate::client::http(handle.ca.as_deref())?,
            bases,
            current: std::sync::atomic::AtomicUsize::new(0),
            job: handle.job,
            secret: handle.secret,
        }),
        root,
    });
    match Arc::clone(&agent).work().await {
        Ok(()) => Ok(()),
        Err(f) => {
            eprintln!("job agent: {}: {}", f.code, f.message);
            if !f.reported {
                let failed = json!({ "failed": { "code": f.code, "message": f.message } });
                if let Err(e) = agent.report(&failed).await {
                    eprintln!("job agent: the failure could not be reported: {e:#}");
                }
            }
            Err(anyhow!("{}: {}", f.code, f.message))
        }
    }
}

impl Agent {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response> {
        let api = &self.api;
        api.send(path, |url| {
            let request = api
                .http
                .request(method.clone(), url)
                .header("x-keyless-job-secret", &api.secret);
            match body {
                Some(b) => request.json(b),
                None => request,
            }
        })
        .await
        .with_context(|| format!("the agent API ({path}) cannot be reached"))
    }

    async fn report(&self, report: &Value) -> Result<()> {
        let response = self
            .call(reqwest::Method::POST, "report", Some(report))
            .await?;
        if !response.status().is_success() {
            return Err(anyhow!(
                "the server refused the report ({}): {}",
                response.status(),
                response.text().await.unwrap_or_default()
            ));
        }
        Ok(())
    }

    /// Asks for access to some data; a refusal was recorded by the server.
    async fn access(&self, path: &str, body: &Value) -> Result<Access, Failure> {
        self.api.ask(path, body, "AgentFailed").await
    }

    async fn work(self: Arc<Self>) -> Result<(), Failure> {
        let response = self.call(reqwest::Method::GET, "spec", None).await?;
        if !response.status().is_success() {
            return Err(Failure {
                code: "AgentFailed",
                message: format!("the job's plan was refused ({})", response.status()),
                reported: true,
            });
        }
        let spec: Spec = response.json().await.map_err(|e| {
            Failure::new("AgentFailed", format!("the job's plan is malformed: {e}"))
        })?;
        self.report(&json!({ "phase": "Preparing" })).await?;
        // The image first: a compute that may not pull it fails the job
        // before any data is read.
        let bundle = match &spec.image {
            Some(plan) => Some(
                image::prepare(&self.api, self.ca.as_deref(), &self.root, plan, self.user).await?,
            ),
            None => None,
        };
        if spec.code {
            self.fetch_code().await?;
        }
        for input in &spec.inputs {
            self.fetch_input(input).await?;
        }
        for output in &spec.outputs {
            let dir = self.folder(&output.dir)?;
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| Failure::new("AgentFailed", format!("{}: {e}", dir.display())))?;
        }
        let mounts = if spec.mounts.is_empty() {
            None
        } else {
            Some(mount::Mounts::serve(Arc::clone(&self.api), &self.root, &spec.mounts).await?)
        };
        let mut env = spec.env.clone();
        let _endpoint = if spec.identity {
            let (local, server) = Arc::clone(&self).identity_endpoint().await?;
            let url = format!("http://{}/msi/token", server.0);
            env.insert("MSI_ENDPOINT".into(), url.clone());
            env.insert("MSI_SECRET".into(), local.clone());
            env.insert("IDENTITY_ENDPOINT".into(), url);
            env.insert("IDENTITY_HEADER".into(), local);
            Some(server)
        } else {
            None
        };
        if let Some(bundle) = &bundle {
            let cwd = self.folder(&spec.cwd)?;
            image::configure(
                bundle,
                &self.root,
                self.ca.as_deref(),
                &spec.command,
                &cwd,
                &env,
                self.user,
            )
            .await?;
            if let Some(uid) = self.user {
                image::give_to_job(&self.root, uid).await?;
            }
        }
        self.report(&json!({ "phase": "Running" })).await?;
        let exit = self.run_command(&spec, &env, bundle.as_deref()).await?;
        self.report(&json!({ "exit": exit })).await?;
        if exit.get("code").and_then(Value::as_i64) != Some(0) {
            return Ok(());
        }
        self.report(&json!({ "phase": "Finalizing" })).await?;
        if let Some((mounts, _session)) = &mounts {
            mounts.finish().await?;
        }
        for output in &spec.outputs {
            self.upload_output(output).await?;
        }
        self.report(&json!({ "done": true })).await?;
        Ok(())
    }

    /// A folder of the plan, under the job's folder.
    fn folder(&self, rel: &str) -> Result<PathBuf, Failure> {
        check_path(rel).map(|()| self.root.join(rel)).map_err(|e| {
            Failure::new(
                "AgentFailed",
                format!("the plan names a folder keyless does not use: {e}"),
            )
        })
    }

    /// Opens the job's managed-identity endpoint on the node's loopback: the
    /// command finds it in `IDENTITY_ENDPOINT`, with a secret of its own in
    /// `IDENTITY_HEADER`, and the agent forwards each request to keyless with
    /// the job's secret.
    async fn identity_endpoint(
        self: Arc<Self>,
    ) -> Result<(String, (std::net::SocketAddr, tokio::task::JoinHandle<()>)), Failure> {
        let local: String = {
            let mut bytes = [0u8; 32];
            aws_lc_rs::rand::fill(&mut bytes)
                .map_err(|_| anyhow!("the system's random generator failed"))?;
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        };
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| {
                Failure::new(
                    "AgentFailed",
                    format!("cannot open the identity endpoint: {e}"),
                )
            })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::new("AgentFailed", e.to_string()))?;
        let expected = local.clone();
        let agent = Arc::clone(&self);
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let agent = Arc::clone(&agent);
            let expected = expected.clone();
            async move { agent.forward_token(request, &expected).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((local, (addr, task)))
    }

    async fn forward_token(
        &self,
        request: axum::extract::Request,
        expected: &str,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let presented = ["secret", "x-identity-header"]
            .iter()
            .find_map(|h| request.headers().get(*h).and_then(|v| v.to_str().ok()));
        if presented != Some(expected) {
            let message = "the request carries no valid secret for this job's identity endpoint: send IDENTITY_HEADER in X-IDENTITY-HEADER (or MSI_SECRET in `secret`)";
            return (
                axum::http::StatusCode::BAD_REQUEST,
                axum::Json(json!({ "error": "invalid_request", "error_description": message, "statusCode": 400, "message": message })),
            )
                .into_response();
        }
        let query = request.uri().query().unwrap_or("");
        let api = &self.api;
        let answer = api
            .send(&format!("token?{query}"), |url| {
                api.http.get(url).header("x-identity-header", &api.secret)
            })
            .await;
        match answer {
            Ok(r) => {
                let status = axum::http::StatusCode::from_u16(r.status().as_u16())
                    .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
                let body = r.bytes().await.unwrap_or_default();
                (status, [("content-type", "application/json")], body).into_response()
            }
            Err(e) => (
                axum::http::StatusCode::BAD_GATEWAY,
                format!("keyless cannot be reached: {e}"),
            )
                .into_response(),
        }
    }

    /// Runs the command; its output goes to the job's log as it is printed.
    /// Returns its exit as the report carries it.
    async fn run_command(
        &self,
        spec: &Spec,
        env: &BTreeMap<String, String>,
        bundle: Option<&Path>,
    ) -> Result<Value, Failure> {
        let (reader, writer) = std::io::pipe().map_err(|e| {
            Failure::new(
                "JobStartFailed",
                format!("cannot make the output pipe: {e}"),
            )
        })?;
        let err = writer
            .try_clone()
            .map_err(|e| Failure::new("JobStartFailed", e.to_string()))?;
        let cwd = self.folder(&spec.cwd)?;
        let mut command = match bundle {
            // runc runs the command in the image (as root of the job's
            // namespace, or rootless): its state lives in the job's folder.
            Some(bundle) => {
                let mut runc = tokio::process::Command::new("runc");
                runc.arg("--root")
                    .arg(self.root.join("runc"))
                    .args(["run", "--bundle"])
                    .arg(bundle)
                    .arg("job")
                    .current_dir(&self.root)
                    .env_clear()
                    .env(
                        "PATH",
                        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    )
                    .env("HOME", &self.root)
                    .env("XDG_RUNTIME_DIR", self.root.join("run"));
                runc
            }
            None => {
                let mut sh = tokio::process::Command::new("/bin/sh");
                sh.arg("-c")
                    .arg(&spec.command)
                    .current_dir(&cwd)
                    .env_clear()
                    .envs(env);
                sh
            }
        };
        command
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        // The child holds the pipe's writing end now; the agent's copies go.
        drop(command);
        let mut child = spawned.map_err(|e| {
            Failure::new(
                "JobStartFailed",
                format!("the command could not start: {e}"),
            )
        })?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(nix::unistd::Pid::from_raw);
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        let pump = std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut buf) {
                let Some(read) = buf.get(..n).filter(|r| !r.is_empty()) else {
                    break;
                };
                if tx.blocking_send(read.to_vec()).is_err() {
                    break;
                }
            }
        });
        let cut = tokio_util::sync::CancellationToken::new();
        let shipper = tokio::spawn(ship_log(Arc::clone(&self.api), rx, cut.clone()));
        let limit = spec.timeout.map(Duration::from_secs);
        // The backend stopping the agent (Slurm's cancel, the sandbox torn
        // down) stops the command with it, whatever the backend tracks.
        let mut stopped = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Failure::new("AgentFailed", format!("cannot watch for SIGTERM: {e}")))?;
        let waited = async {
            match limit {
                Some(t) => tokio::time::timeout(t, child.wait()).await.ok(),
                None => Some(child.wait().await),
            }
        };
        let status = tokio::select! {
            status = waited => status,
            _ = stopped.recv() => {
                signal_group(group, nix::sys::signal::Signal::SIGTERM);
                tokio::time::sleep(GRACE).await;
                signal_group(group, nix::sys::signal::Signal::SIGKILL);
                // Not reported: the backend says why it stopped the job
                // (canceled, timed out), and the server decides from that.
                return Err(Failure {
                    code: "AgentFailed",
                    message: "the agent was stopped (SIGTERM) while the command ran".into(),
                    reported: true,
                });
            }
        };
        let exit = match status {
            Some(Ok(s)) => exit_of(s),
            Some(Err(e)) => {
                return Err(Failure::new(
                    "AgentFailed",
                    format!("waiting for the command: {e}"),
                ));
            }
            None => {
                signal_group(group, nix::sys::signal::Signal::SIGTERM);
                if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
                    signal_group(group, nix::sys::signal::Signal::SIGKILL);
                    let _ = child.wait().await;
                }
                json!({ "timedOut": true })
            }
        };
        // What the command left running in its group goes with it, and with
        // it the last writers of the pipe. A process that left the group may
        // hold the pipe open: the log is shipped until a moment after.
        signal_group(group, nix::sys::signal::Signal::SIGKILL);
        let read_to_end = tokio::time::Instant::now() + Duration::from_secs(2);
        while !pump.is_finished() && tokio::time::Instant::now() < read_to_end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !pump.is_finished() {
            eprintln!(
                "job agent: a process the command left behind holds its output open; its later output is not in the log"
            );
            cut.cancel();
        }
        // What was read is sent whole, however long keyless takes to answer
        // (a server lost and its job taken over by another).
        match shipper.await {
            Ok(shipped) => shipped?,
            Err(e) => {
                return Err(Failure::new(
                    "AgentFailed",
                    format!("the log shipper failed: {e}"),
                ));
            }
        }
        drop(pump);
        Ok(exit)
    }
}

/// Sends the command's output to the job's log, in batches, until the output
/// ends or `cut` (a process left behind holds it open): then what was read is
/// sent and nothing more.
async fn ship_log(
    api: Arc<Api>,
    mut rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    cut: tokio_util::sync::CancellationToken,
) -> Result<(), Failure> {
    let mut pending: Vec<u8> = Vec::new();
    let mut open = true;
    while open {
        let deadline = tokio::time::sleep(LOG_FLUSH);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                chunk = rx.recv() => match chunk {
                    Some(c) => {
                        pending.extend_from_slice(&c);
                        if pending.len() >= LOG_BATCH {
                            break;
                        }
                    }
                    None => {
                        open = false;
                        break;
                    }
                },
                () = &mut deadline => break,
                () = cut.cancelled() => {
                    while let Ok(c) = rx.try_recv() {
                        pending.extend_from_slice(&c);
                    }
                    open = false;
                    break;
                }
            }
        }
        if !pending.is_empty() {
            let chunk = std::mem::take(&mut pending);
            let response = api
                .send("log", |url| {
                    api.http
                        .post(url)
                        .header("x-keyless-job-secret", &api.secret)
                        .body(chunk.clone())
                })
                .await
                .map_err(|e| {
                    Failure::new("AgentFailed", format!("the job log cannot be sent: {e}"))
                })?;
            if !response.status().is_success() {
                return Err(Failure::new(
                    "AgentFailed",
                    format!("the job log was refused ({})", response.status()),
                ));
            }
        }
    }
    Ok(())
}

/// A port name as one path segment of the agent API.
fn segment(port: &str) -> String {
    percent_encoding::utf8_percent_encode(port, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// `base/rel` for a relative path the server named, refused if it climbs out.
fn safe_join(base: &Path, rel: &str) -> Result<PathBuf, String> {
    check_path(rel).map_err(|e| e.to_string())?;
    Ok(base.join(rel))
}

/// A storage refusal, with its explanation.
fn refusal(response: &reqwest::Response) -> String {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let why = header("x-keyless-explanation")
        .or_else(|| header("x-ms-error-code"))
        .unwrap_or_default();
    format!("the storage answered {}: {why}", response.status())
}

fn exit_of(status: std::process::ExitStatus) -> Value {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => json!({ "code": c }),
        (None, Some(s)) => json!({ "signal": s }),
        (None, None) => json!({ "code": -1 }),
    }
}

fn signal_group(group: Option<nix::unistd::Pid>, signal: nix::sys::signal::Signal) {
    if let Some(pgid) = group {
        // The group may be gone already; that is the point.
        let _ = nix::sys::signal::killpg(pgid, signal);
    }
}
