//! `keyless ml job …`: submit a job file (uploading its `code:` folders as
//! snapshots with their checksums), show, list, stream, cancel and download.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use keyless_ml::{snapshot, yaml};

use super::{FileArgs, InWorkspace, Named, base_dir, child, read, view};
use crate::client::{Api, segment, values};
use crate::command::storage::{encode_path, xml_values};

/// Folders a snapshot leaves out.
const SKIPPED: [&str; 4] = [".git", "__pycache__", ".ipynb_checkpoints", ".venv"];

#[derive(Debug, clap::Subcommand)]
pub(crate) enum JobCommand {
    /// Submit a command or pipeline job from a YAML file.
    Create {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        at: InWorkspace,
        /// The job's name (default: the file's `name`, else a generated one).
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Follow the job's log and status until it ends.
        #[arg(long)]
        stream: bool,
    },
    /// Show a job: status, timeline, inputs, the identity each read used.
    Show(Named),
    /// List the jobs of a workspace (or the steps of a pipeline).
    List {
        #[command(flatten)]
        at: InWorkspace,
        /// List the steps of this pipeline job.
        #[arg(long)]
        parent_job_name: Option<String>,
    },
    /// Follow a job's log and status until it ends.
    Stream(Named),
    /// Cancel a job that has not finished.
    Cancel(Named),
    /// Download a job's log and outputs.
    Download {
        #[command(flatten)]
        job: Named,
        /// Where to put them (default `./<job name>`).
        #[arg(long)]
        download_path: Option<PathBuf>,
    },
}

pub(super) async fn run(api: &Api, cmd: JobCommand) -> Result<Value> {
    match cmd {
        JobCommand::Create {
            file,
            at,
            name,
            stream,
        } => {
            let path = file.required()?.to_path_buf();
            let spec = read(&file, yaml::job, Vec::new())?;
            let name = match name.or(Some(spec.name).filter(|n| !n.is_empty())) {
                Some(n) => n,
                None => generated_name()?,
            };
            let mut body = spec.body;
            let dir = base_dir(&path);
            if let Some(props) = body.get_mut("properties") {
                upload_code(api, &at, &dir, props).await?;
            }
            let job = api
                .put(
                    &child(api, &at, &format!("jobs/{}", segment(&name)))?,
                    &body,
                )
                .await?;
            if stream {
                crate::output::progress(&format!("job {name} submitted"));
                follow(api, &at, &name).await?;
                return Ok(Value::Null);
            }
            Ok(view::job(job))
        }
        JobCommand::Show(n) => api.get(&n.path(api, "jobs", "")?).await.map(view::job),
        JobCommand::List {
            at,
            parent_job_name,
        } => {
            let mut path = child(api, &at, "jobs")?;
            if let Some(p) = parent_job_name {
                path.push_str(&format!("&parentJobName={}", segment(&p)));
            }
            api.get(&path)
                .await
                .map(|v| view::each(values(v), view::job))
        }
        JobCommand::Stream(n) => {
            follow(api, &n.at, &n.name).await?;
            Ok(Value::Null)
        }
        JobCommand::Cancel(n) => api
            .post(&n.path(api, "jobs", "/cancel")?, &json!({}))
            .await
            .map(|v| view::each(v, view::job)),
        JobCommand::Download { job, download_path } => {
            let dest = download_path.unwrap_or_else(|| PathBuf::from(&job.name));
            download(api, &job, &dest).await
        }
    }
}

fn generated_name() -> Result<String> {
    let token = keyless_auth::secret::random_token().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tail: String = token
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .take(10)
        .collect();
    Ok(format!("job-{tail}"))
}

/// Replaces every local `code:` (the job's and its steps') by the id of an
/// uploaded snapshot.
async fn upload_code(api: &Api, at: &InWorkspace, dir: &Path, props: &mut Value) -> Result<()> {
    let Some(map) = props.as_object_mut() else {
        return Ok(());
    };
    if let Some(Value::String(code)) = map.remove("code") {
        let id = if code.starts_with("azureml:") || code.starts_with("/subscriptions/") {
            code
        } else {
            snapshot_folder(api, at, &dir.join(&code)).await?
        };
        map.insert("codeId".into(), id.into());
    }
    if let Some(component) = map.get_mut("component") {
        Box::pin(upload_code(api, at, dir, component)).await?;
    }
    if let Some(Value::Object(steps)) = map.get_mut("jobs") {
        for step in steps.values_mut() {
            Box::pin(upload_code(api, at, dir, step)).await?;
        }
    }
    Ok(())
}

async fn snapshot_folder(api: &Api, at: &InWorkspace, folder: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect(folder, folder, &mut files)
        .with_context(|| format!("cannot read the code folder {}", folder.display()))?;
    if files.is_empty() {
        bail!("the code folder {} holds no files", folder.display());
    }
    let checksum = snapshot::checksum(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let hex = checksum.trim_start_matches("sha256:");
    let name = format!("code-{}", hex.get(..32).unwrap_or(hex));
    let body = json!({
        "properties": {
            "checksum": checksum,
            "files": files.iter().map(|(p, b)| json!({ "path": p, "content": STANDARD.encode(b) })).collect::<Vec<_>>(),
        }
    });
    let reply = api
        .put(&child(api, at, &format!("codes/{name}/versions/1"))?, &body)
        .await
        .context("uploading the code snapshot")?;
    reply
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the code upload returned no id")
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            if !SKIPPED.contains(&name.as_str()) {
                collect(root, &path, out)?;
            }
        } else if kind.is_file() {
            let rel = path.strip_prefix(root)?;
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            out.push((rel.join("/"), std::fs::read(&path)?));
        }
    }
    Ok(())
}

/// Streams a job's log (a pipeline's steps, one after another) until it ends.
async fn follow(api: &Api, at: &InWorkspace, name: &str) -> Result<()> {
    let job = api
        .get(&child(api, at, &format!("jobs/{}", segment(name)))?)
        .await?;
    let steps: Vec<String> = job
        .pointer("/properties/steps")
        .and_then(Value::as_array)
        .map(|s| {
            s.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    for step in &steps {
        bar.suspend(|| crate::output::progress(&format!("--- step {step} ---")));
        tail(api, at, step, &bar).await?;
    }
    let status = tail(api, at, name, &bar).await?;
    bar.finish_and_clear();
    let job = api
        .get(&child(api, at, &format!("jobs/{}", segment(name)))?)
        .await?;
    crate::output::progress(&format!("job {name}: {status}"));
    if status != "Completed" {
        let message = job
            .pointer("/properties/error/message")
            .and_then(Value::as_str)
            .unwrap_or("no reason recorded");
        bail!("job {name} {status}: {message}");
    }
    Ok(())
}

/// Prints one job's log as it grows; returns its final status.
async fn tail(
    api: &Api,
    at: &InWorkspace,
    name: &str,
    bar: &indicatif::ProgressBar,
) -> Result<String> {
    use std::io::Write as _;
    let mut offset = 0u64;
    let mut delay = Duration::from_millis(100);
    loop {
        let reply = api
            .get(&format!(
                "{}&offset={offset}",
                child(api, at, &format!("jobs/{}/log", segment(name)))?
            ))
            .await?;
        let text = reply
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let status = reply
            .get("status")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        bar.set_message(format!("{name}: {status}"));
        if !text.is_empty() {
            bar.suspend(|| {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            });
            delay = Duration::from_millis(100);
        }
        offset = reply
            .get("nextOffset")
            .and_then(Value::as_u64)
            .unwrap_or(offset);
        let finished = reply
            .get("finished")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if finished && text.is_empty() {
            return Ok(status);
        }
        if text.is_empty() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }
}

/// Downloads the log, then every output, read from storage with the caller's own
/// token (so the caller's data permissions apply, as with `az ml job download`).
async fn download(api: &Api, job: &Named, dest: &Path) -> Result<Value> {
    let record = api.get(&job.path(api, "jobs", "")?).await?;
    let mut text = String::new();
    let mut offset = 0u64;
    loop {
        let reply = api
            .get(&format!(
                "{}&offset={offset}",
                job.path(api, "jobs", "/log")?
            ))
            .await?;
        let chunk = reply
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if chunk.is_empty() {
            break;
        }
        text.push_str(chunk);
        offset = reply
            .get("nextOffset")
            .and_then(Value::as_u64)
            .unwrap_or(offset);
    }
    let logs = dest.join("user_logs");
    std::fs::create_dir_all(&logs)?;
    std::fs::write(logs.join("std_log.txt"), &text)?;
    let mut written = vec![json!(logs.join("std_log.txt").display().to_string())];
    let outputs = record
        .pointer("/properties/outputs")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !outputs.is_empty() {
        let mut profile = api.profile.clone();
        let token = crate::client::token(&mut profile, "https://storage.azure.com").await?;
        let http = crate::client::http(profile.ca_file.as_deref())?;
        let storage = profile
            .storage_url
            .clone()
            .context("the profile does not know the storage URL; log in again")?;
        for (port, spec) in outputs {
            let uri = spec.get("uri").and_then(Value::as_str).unwrap_or_default();
            let Some(rest) = uri.strip_prefix("azureml://datastores/") else {
                continue;
            };
            let (datastore, path) = rest.split_once("/paths/").unwrap_or((rest, ""));
            let ds = api
                .get(&child(
                    api,
                    &job.at,
                    &format!("datastores/{}", segment(datastore)),
                )?)
                .await?;
            let account = ds
                .pointer("/properties/accountName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let container = ds
                .pointer("/properties/containerName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let base = storage.trim_end_matches('/');
            let mut names = Vec::new();
            let mut marker = String::new();
            loop {
                let list = http
                    .get(format!("{base}/{account}{}", encode_path(container, None)))
                    .query(&[("restype", "container"), ("comp", "list"), ("prefix", path)])
                    .query(
                        &[("marker", &marker)]
                            .iter()
                            .filter(|(_, m)| !m.is_empty())
                            .collect::<Vec<_>>(),
                    )
                    .bearer_auth(&token.access_token)
                    .header("x-ms-version", "2025-01-05")
                    .send()
                    .await?;
                let status = list.status();
                let xml = list.text().await?;
                if !status.is_success() {
                    bail!(
                        "output `{port}` ({uri}) cannot be listed with your identity ({status}): {xml}"
                    );
                }
                names.extend(xml_values(&xml, "Name"));
                marker = xml_values(&xml, "NextMarker").pop().unwrap_or_default();
                if marker.is_empty() {
                    break;
                }
            }
            for name in &names {
                let rel = name
                    .strip_prefix(path)
                    .unwrap_or(name)
                    .trim_start_matches('/');
                if snapshot::check_path(rel).is_err() {
                    continue;
                }
                let bytes = http
                    .get(format!(
                        "{base}/{account}{}",
                        encode_path(container, Some(name))
                    ))
                    .bearer_auth(&token.access_token)
                    .header("x-ms-version", "2025-01-05")
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                let target = dest.join("named-outputs").join(&port).join(rel);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&target, &bytes)?;
                written.push(json!(target.display().to_string()));
            }
        }
    }
    Ok(json!({ "downloaded": written }))
}
