//! A job's image: pulled from a keyless registry with the pull token the
//! server gives for the compute's identity, every blob checked against its
//! digest, unpacked by `umoci` and run by `runc` with the job's folder,
//! keyless's CA and the node's host files bound in, and the job's network, so
//! the node-local identity endpoint answers inside.
//!
//! In the local sandbox the agent is the root of a user namespace of its own
//! (see [`super::userns`]): the image is unpacked once per node into the
//! cache the sandbox shows at [`IMAGES`], keyed by its manifest's digest, and
//! each job runs on an overlay of it (the job's changes in its own folder); the
//! container's process is the job's uid, with no capability. Elsewhere (jobs
//! unsandboxed) the image is unpacked for the job alone and runc runs rootless:
//! the container's root is the agent's own unprivileged user.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::digest;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

use keyless_ml::backend::IMAGES;

use super::{Api, Failure};

/// What the plan says of the image.
#[derive(Debug, Deserialize)]
pub(super) struct ImagePlan {
    image: String,
}

/// The server's answer: where to pull from and with what.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Grant {
    url: String,
    login_server: String,
    repository: String,
    reference: String,
    token: String,
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

fn failed(message: impl Into<String>) -> Failure {
    Failure::new("ImagePullFailed", message)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    format!(
        "sha256:{}",
        hex(digest::digest(&digest::SHA256, bytes).as_ref())
    )
}

/// The architecture names images use for this machine's.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Pulls and unpacks the image; the bundle runc runs. `user` is the job's uid
/// when the agent is root of its namespace (the node's cache is used then).
pub(super) async fn prepare(
    api: &Arc<Api>,
    ca: Option<&Path>,
    root: &Path,
    plan: &ImagePlan,
    user: Option<u32>,
) -> Result<PathBuf, Failure> {
    let grant: Grant = api.ask("image", &json!({}), "ImagePullDenied").await?;
    let (host, _) = grant
        .login_server
        .rsplit_once(':')
        .unwrap_or((grant.login_server.as_str(), ""));
    let listener = grant
        .url
        .split_once("://")
        .map_or(grant.url.as_str(), |(_, rest)| rest)
        .trim_end_matches('/');
    let addr = tokio::net::lookup_host(listener)
        .await
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            failed(format!(
                "the registry listener {listener} cannot be resolved"
            ))
        })?;
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .resolve(host, addr);
    if let Some(ca) = ca {
        let pem = tokio::fs::read(ca)
            .await
            .map_err(|e| failed(format!("cannot read the CA {}: {e}", ca.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| failed(format!("the CA is malformed: {e}")))?;
        builder = builder.tls_certs_only(certs);
    }
    let http = builder.build().map_err(|e| failed(e.to_string()))?;
    let base = format!("https://{}/v2/{}", grant.login_server, grant.repository);
    let get = |url: String, accept: Option<&'static str>| {
        let mut r = http.get(url).bearer_auth(&grant.token);
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    let layout = root.join("image");
    let blobs = layout.join("blobs").join("sha256");
    tokio::fs::create_dir_all(&blobs)
        .await
        .map_err(|e| failed(format!("{}: {e}", blobs.display())))?;

    // The manifest, through an index to this machine's platform.
    let mut reference = grant.reference.clone();
    let (manifest, media_type, manifest_digest) = loop {
        let response = get(
            format!("{base}/manifests/{reference}"),
            Some(MANIFEST_TYPES),
        )
        .await
        .map_err(|e| failed(format!("image {}: {e}", plan.image)))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "image {}: the registry answered {} for the manifest {reference}",
                plan.image,
                response.status()
            )));
        }
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
        let digest = sha256(&body);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(failed(format!(
                "image {}: the manifest hashes to {digest}, not to {reference}",
                plan.image
            )));
        }
        let parsed: Value = serde_json::from_slice(&body).map_err(|e| {
            failed(format!(
                "image {}: the manifest is not JSON: {e}",
                plan.image
            ))
        })?;
        let Some(list) = parsed.get("manifests").and_then(Value::as_array) else {
            break (parsed, media_type, (digest, body));
        };
        let chosen = list.iter().find(|m| {
            m.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
                && m.pointer("/platform/architecture").and_then(Value::as_str)
                    == Some(architecture())
        });
        reference = chosen
            .and_then(|m| m.get("digest"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                failed(format!(
                    "image {}: its index holds no manifest for linux/{}",
                    plan.image,
                    architecture()
                ))
            })?
            .to_owned();
    };
    if media_type.contains("docker") {
        return Err(failed(format!(
            "image {}: a Docker-format manifest ({media_type}); keyless runs OCI images: copy it as OCI (skopeo copy --format oci)",
            plan.image
        )));
    }
    // The manifest's bytes as pulled: they are what its digest covers.
    let (manifest_digest, manifest_bytes) = manifest_digest;
    let manifest_len = manifest_bytes.len();
    let cache = user
        .map(|_| Path::new(IMAGES))
        .filter(|c| c.is_dir())
        .map(|c| c.join(manifest_digest.trim_start_matches("sha256:")));
    if let Some(cached) = cache.as_deref().filter(|c| c.join("config.json").is_file()) {
        eprintln!(
            "job agent: image {} ({manifest_digest}) is in the node's cache",
            plan.image
        );
        return overlay(root, cached).await;
    }
    write_blob(&blobs, &manifest_digest, &manifest_bytes).await?;

    let mut wanted: Vec<String> = Vec::new();
    if let Some(c) = manifest.pointer("/config/digest").and_then(Value::as_str) {
        wanted.push(c.to_owned());
    }
    for layer in manifest
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(d) = layer.get("digest").and_then(Value::as_str) {
            wanted.push(d.to_owned());
        }
    }
    for digest in &wanted {
        let hex_part = digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| {
                failed(format!(
                    "image {}: `{digest}` is not a sha256 digest",
                    plan.image
                ))
            })?;
        let response = get(format!("{base}/blobs/{digest}"), None)
            .await
            .map_err(|e| failed(format!("image {}: {e}", plan.image)))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "image {}: the registry answered {} for blob {digest}",
                plan.image,
                response.status()
            )));
        }
        let path = blobs.join(hex_part);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let mut hash = digest::Context::new(&digest::SHA256);
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| failed(format!("image {}: {e}", plan.image)))?;
            hash.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        }
        file.flush().await.map_err(|e| failed(e.to_string()))?;
        let got = format!("sha256:{}", hex(hash.finish().as_ref()));
        if &got != digest {
            return Err(failed(format!(
                "image {}: blob {digest} hashes to {got}; nothing of it is run",
                plan.image
            )));
        }
    }
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": if media_type.is_empty() { "application/vnd.oci.image.manifest.v1+json" } else { media_type.as_str() },
            "digest": manifest_digest,
            "size": manifest_len,
            "annotations": { "org.opencontainers.image.ref.name": "job" },
        }],
    });
    write_file(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .await?;
    write_file(&layout.join("index.json"), index.to_string().as_bytes()).await?;

    let Some(cached) = cache else {
        let bundle = root.join("bundle");
        unpack(&layout, &bundle, root, &plan.image).await?;
        return Ok(bundle);
    };
    // Unpacked beside its place and renamed into it whole: a job pulling the
    // same image at the same time keeps its own or finds this one.
    let parent = cached.parent().unwrap_or(Path::new(IMAGES));
    sweep_partials(parent).await;
    let mut nonce = [0u8; 8];
    aws_lc_rs::rand::fill(&mut nonce)
        .map_err(|_| failed("the system's random generator failed"))?;
    let partial = parent.join(format!(".unpacking-{}", hex(&nonce)));
    let _ = tokio::fs::remove_dir_all(&partial).await;
    unpack(&layout, &partial, root, &plan.image).await?;
    if tokio::fs::rename(&partial, &cached).await.is_err() {
        let _ = tokio::fs::remove_dir_all(&partial).await;
    }
    let _ = tokio::fs::remove_dir_all(&layout).await;
    overlay(root, &cached).await
}

/// An unpacking left this long ago was left by an agent that died: no unpack
/// takes an hour.
const PARTIAL_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the cache's unpackings older than [`PARTIAL_LIFETIME`]; the ones
/// under way are left to their agents.
async fn sweep_partials(cache: &Path) {
    let Ok(mut entries) = tokio::fs::read_dir(cache).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let stale = entry
            .file_name()
            .to_string_lossy()
            .starts_with(".unpacking-")
            && entry
                .metadata()
                .await
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > PARTIAL_LIFETIME);
        if stale {
            eprintln!(
                "job agent: removing an unpacking an earlier agent left: {}",
                entry.path().display()
            );
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
        }
    }
}

/// Unpacks the OCI layout's image `job` into the bundle `dest`, every file the
/// unpacking user's.
async fn unpack(layout: &Path, dest: &Path, home: &Path, image: &str) -> Result<(), Failure> {
    let unpacked = tokio::process::Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:job", layout.display()))
        .arg(dest)
        .env("HOME", home)
        .output()
        .await
        .map_err(|e| {
            failed(format!(
                "umoci cannot run on this node ({e}): install Debian's umoci"
            ))
        })?;
    if !unpacked.status.success() {
        return Err(failed(format!(
            "image {image}: umoci could not unpack it: {}",
            String::from_utf8_lossy(&unpacked.stderr).trim()
        )));
    }
    Ok(())
}

/// The job's bundle over a cached image: the image's config copied, its root
/// file system an overlay whose changes stay in the job's folder.
async fn overlay(root: &Path, cached: &Path) -> Result<PathBuf, Failure> {
    let bundle = root.join("bundle");
    let rootfs = bundle.join("rootfs");
    let upper = root.join(".image").join("upper");
    let work = root.join(".image").join("work");
    for dir in [&rootfs, &upper, &work] {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| failed(format!("{}: {e}", dir.display())))?;
    }
    tokio::fs::copy(cached.join("config.json"), bundle.join("config.json"))
        .await
        .map_err(|e| failed(format!("the cached image's config: {e}")))?;
    let lower = cached.join("rootfs");
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.display(),
        upper.display(),
        work.display()
    );
    nix::mount::mount(
        Some("keyless-image"),
        &rootfs,
        Some("overlay"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|e| {
        failed(format!(
            "cannot lay the job's overlay on the cached image {}: {e}",
            cached.display()
        ))
    })?;
    Ok(bundle)
}

async fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    tokio::fs::write(path, bytes)
        .await
        .map_err(|e| failed(format!("{}: {e}", path.display())))
}

async fn write_blob(blobs: &Path, digest: &str, bytes: &[u8]) -> Result<(), Failure> {
    let name = digest.strip_prefix("sha256:").unwrap_or(digest);
    write_file(&blobs.join(name), bytes).await
}

/// Writes the container's process and mounts into the bundle's config: the
/// command in `/bin/sh -c`, in `cwd`, with the job's environment after the
/// image's own; the job's folder (and so its inputs, outputs and mounts), the
/// CA and the node's name files bound at the paths the job knows. With `user`
/// (the agent root of its namespace) the container shares that namespace and
/// its process is `user`, with no capability.
pub(super) async fn configure(
    bundle: &Path,
    root: &Path,
    ca: Option<&Path>,
    command: &str,
    cwd: &Path,
    env: &std::collections::BTreeMap<String, String>,
    user: Option<u32>,
) -> Result<(), Failure> {
    let path = bundle.join("config.json");
    let text = tokio::fs::read(&path)
        .await
        .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    let mut config: Value =
        serde_json::from_slice(&text).map_err(|e| failed(format!("the bundle's config: {e}")))?;
    let mut environment: Vec<String> = config
        .pointer("/process/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or_default();
            name == "PATH" || !env.contains_key(name)
        })
        .map(str::to_owned)
        .collect();
    environment.extend(
        env.iter()
            .filter(|(k, _)| k.as_str() != "PATH")
            .map(|(k, v)| format!("{k}={v}")),
    );
    if !environment.iter().any(|kv| kv.starts_with("PATH=")) {
        environment
            .push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    let bind = |source: &Path, read_only: bool| {
        let mut options = vec!["rbind", "nosuid", "nodev"];
        if read_only {
            options.push("ro");
        }
        json!({ "destination": source, "type": "bind", "source": source, "options": options })
    };
    let mut mounts: Vec<Value> = config
        .get("mounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    mounts.push(bind(root, false));
    if let Some(ca) = ca.filter(|c| !c.starts_with(root)) {
        mounts.push(bind(ca, true));
    }
    for file in ["/etc/hosts", "/etc/resolv.conf"] {
        if Path::new(file).exists() {
            mounts.push(bind(Path::new(file), true));
        }
    }
    let (process_user, capabilities) = match user {
        Some(uid) => (json!({ "uid": uid, "gid": uid }), json!({})),
        None => (
            config
                .pointer("/process/user")
                .cloned()
                .unwrap_or_else(|| json!({ "uid": 0, "gid": 0 })),
            config
                .pointer("/process/capabilities")
                .cloned()
                .unwrap_or_else(|| json!({})),
        ),
    };
    let process = json!({
        "terminal": false,
        "user": process_user,
        "args": ["/bin/sh", "-c", command],
        "env": environment,
        "cwd": cwd,
        "noNewPrivileges": true,
        "capabilities": capabilities,
        "rlimits": config.pointer("/process/rlimits").cloned().unwrap_or_else(|| json!([])),
    });
    if let Some(map) = config.as_object_mut() {
        map.insert("process".into(), process);
        map.insert("mounts".into(), Value::Array(mounts));
    }
    if user.is_some()
        && let Some(linux) = config.get_mut("linux").and_then(Value::as_object_mut)
    {
        // The agent's namespace is the container's: no map of its own.
        linux.remove("uidMappings");
        linux.remove("gidMappings");
        if let Some(namespaces) = linux.get_mut("namespaces").and_then(Value::as_array_mut) {
            namespaces.retain(|n| n.get("type").and_then(Value::as_str) != Some("user"));
        }
    }
    let out = serde_json::to_vec_pretty(&config).map_err(|e| failed(e.to_string()))?;
    write_file(&path, &out).await
}

/// Gives what the agent made in the job's folder (its code, inputs, output
/// folders) to the job's uid, which the container runs as; the agent's own
/// (the image, the bundle, runc's state) and other file systems (the mounts,
/// the overlay) are left alone.
pub(super) async fn give_to_job(root: &Path, uid: u32) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt as _;
    const AGENT_OWN: [&str; 4] = ["image", "bundle", "runc", ".image"];
    let root = root.to_path_buf();
    let walked = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let device = std::fs::metadata(&root)?.dev();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if dir == root
                    && path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| AGENT_OWN.contains(&n))
                {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path)?;
                if meta.dev() != device {
                    continue;
                }
                if meta.uid() == 0 {
                    std::os::unix::fs::lchown(&path, Some(uid), Some(uid))?;
                }
                if meta.is_dir() {
                    pending.push(path);
                }
            }
        }
        Ok(())
    })
    .await;
    match walked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Failure::new(
            "JobStartFailed",
            format!("cannot give the job's folder to the job's user: {e}"),
        )),
        Err(e) => Err(Failure::new("JobStartFailed", e.to_string())),
    }
}
