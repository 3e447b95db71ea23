//! Moving a job's data: the code snapshot (verified against its checksum), the
//! inputs before the command, the outputs after it — each through the storage
//! listener as the identity the rule picks, tagged with the job.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use keyless_core::identity_rule::{Reader, job_data_reader};
use keyless_core::{ObjectId, Principal};
use keyless_ml::job::{DataKind, Input, InputMode};
use keyless_ml::snapshot;

use super::super::reach::{self, Signer, Target, resolve};
use super::{Context, Stop, set_property};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// Downloads the code snapshot as the workspace's identity and checks it.
pub(super) async fn fetch_code(
    state: &SharedState,
    ctx: &Context,
    props: &Value,
) -> Result<(), Stop> {
    let code_dir = ctx.workdir.join("code");
    tokio::fs::create_dir_all(&code_dir)
        .await
        .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?;
    let Some(code_id) = props.get("codeId").and_then(Value::as_str) else {
        return Ok(());
    };
    let code = super::super::codes::load_by_id(state, &ctx.ws, code_id).await?;
    let uri = code
        .body
        .pointer("/properties/codeUri")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let recorded = code
        .body
        .pointer("/properties/checksum")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let target = resolve(state, &ctx.ws, uri).await?;
    let (_, signer, acting) =
        super::super::codes::workspace_identity(state, &ctx.ws, Some(&ctx.job)).await?;
    let files =
        super::super::codes::snapshot_files(state, &signer, Some(&acting), &target.location)
            .await?
            .map_err(|(s, why)| {
                Stop::failed(
                    "CodeSnapshotUnreadable",
                    format!("the code snapshot could not be read ({s}): {why}"),
                )
            })?;
    let actual = snapshot::checksum(files.iter().map(|(p, b)| (p.as_str(), b.as_ref())))?;
    if actual != recorded {
        return Err(Stop::failed(
            "CodeChecksumMismatch",
            format!(
                "the code snapshot at {uri} hashes to {actual}, but {recorded} was recorded when the job was submitted: it was changed after submission, so the job does not run"
            ),
        ));
    }
    for (rel, bytes) in &files {
        reach::write_file(&code_dir.join(rel), bytes).await?;
    }
    ctx.log
        .line(&format!(
            "code snapshot {recorded}: {} files, checksum verified",
            files.len()
        ))
        .await;
    Ok(())
}

/// Who reaches a datastore for this job, and how.
async fn reader(
    state: &SharedState,
    ctx: &Context,
    target: &Target,
) -> Result<(Signer, Option<Acting>, String), Stop> {
    let choice = job_data_reader(target.credential, &ctx.command.identity, &ctx.compute)
        .map_err(|r| Stop::failed("JobIdentityRefused", r.0))?;
    let described = format!("{} ({})", choice.reader, choice.reason);
    let principal = match &choice.reader {
        Reader::Credential(kind) => {
            let signer =
                reach::stored_signer(state, &ctx.ws, target, *kind, Some(&ctx.job)).await?;
            return Ok((signer, Some(Acting::job_only(&ctx.job)), described));
        }
        Reader::SubmittingUser => ctx.submitter.clone(),
        Reader::Managed(mi) => managed_principal(state, &mi.object_id).await?,
    };
    let acting =
        Acting::for_job(state, principal.clone(), Service::Storage, Some(&ctx.job)).await?;
    Ok((
        Signer::Bearer(principal, "JobIdentity"),
        Some(acting),
        described,
    ))
}

pub(super) async fn managed_principal(
    state: &SharedState,
    object_id: &str,
) -> Result<Principal, Stop> {
    let id = ObjectId::parse(object_id).map_err(|_| {
        Stop::failed(
            "JobIdentityRefused",
            format!("managed identity {object_id} is malformed"),
        )
    })?;
    state.store.principal(id).await?.ok_or_else(|| {
        Stop::failed(
            "JobIdentityRefused",
            format!("managed identity {object_id} no longer exists"),
        )
    })
}

pub(super) type Values = BTreeMap<String, String>;

/// Copies every `download` input in, and makes every output's folder.
pub(super) async fn materialise_inputs(
    state: &SharedState,
    ctx: &Context,
) -> Result<(Values, Values), Stop> {
    let mut inputs = Values::new();
    let mut access = Vec::new();
    for (port, input) in &ctx.command.inputs {
        match input {
            Input::Literal(v) => {
                inputs.insert(port.clone(), v.clone());
            }
            Input::Data {
                uri,
                mode: InputMode::Direct,
                ..
            } => {
                inputs.insert(port.clone(), uri.clone());
            }
            Input::Data {
                kind,
                uri,
                mode: InputMode::Download,
            } => {
                let target = resolve(state, &ctx.ws, uri).await?;
                let (signer, acting, who) = reader(state, ctx, &target).await?;
                ctx.log
                    .line(&format!("input `{port}`: downloading {uri} as {who}"))
                    .await;
                let dest = ctx.workdir.join("inputs").join(port);
                let path = download(state, &signer, acting.as_ref(), &target, *kind, &dest)
                    .await?
                    .map_err(|(status, why)| {
                        Stop::failed(
                            "InputAccessDenied",
                            format!("input `{port}` ({uri}) was refused by the storage ({status}) when read as {who}: {why}"),
                        )
                    })?;
                access.push(
                    json!({ "port": port, "uri": uri, "direction": "input", "identity": who }),
                );
                inputs.insert(port.clone(), ctx.seen(&path));
            }
            Input::Binding(_) => {
                return Err(Stop::failed(
                    "UnboundInput",
                    format!("input `{port}` was never bound"),
                ));
            }
        }
    }
    let mut outputs = Values::new();
    for (port, output) in &ctx.command.outputs {
        let folder = ctx.workdir.join("outputs").join(port);
        tokio::fs::create_dir_all(&folder)
            .await
            .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?;
        let path = match output.kind {
            DataKind::Folder => folder,
            DataKind::File => {
                let file = output
                    .uri
                    .as_deref()
                    .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                    .filter(|n| !n.is_empty())
                    .unwrap_or(port)
                    .to_owned();
                folder.join(file)
            }
        };
        outputs.insert(port.clone(), ctx.seen(&path));
    }
    set_property(state, &ctx.job, "dataAccess", Value::Array(access)).await;
    Ok((inputs, outputs))
}

/// Downloads a file or a folder; returns the local path the command sees.
async fn download(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    target: &Target,
    kind: DataKind,
    dest: &Path,
) -> Result<Result<PathBuf, reach::Refused>, Stop> {
    let at = &target.location;
    if kind == DataKind::File && !at.path.is_empty() && !at.path.ends_with('/') {
        let name = at.path.rsplit('/').next().unwrap_or("data");
        let bytes = match reach::get(state, signer, acting, at, &at.path).await? {
            Ok(b) => b,
            Err(refused) => return Ok(Err(refused)),
        };
        let path = dest.join(name);
        reach::write_file(&path, &bytes).await?;
        return Ok(Ok(path));
    }
    let prefix = if at.path.is_empty() || at.path.ends_with('/') {
        at.path.clone()
    } else {
        format!("{}/", at.path)
    };
    let names = match reach::list(state, signer, acting, at, &prefix).await? {
        Ok(n) => n,
        Err(refused) => return Ok(Err(refused)),
    };
    tokio::fs::create_dir_all(dest)
        .await
        .map_err(|e| Stop::failed("JobPreparationFailed", e.to_string()))?;
    for (name, _) in names {
        let rel = name.strip_prefix(&prefix).unwrap_or(&name);
        if snapshot::check_path(rel).is_err() {
            continue;
        }
        let bytes = match reach::get(state, signer, acting, at, &name).await? {
            Ok(b) => b,
            Err(refused) => return Ok(Err(refused)),
        };
        reach::write_file(&dest.join(rel), &bytes).await?;
    }
    Ok(Ok(dest.to_path_buf()))
}

/// Uploads every output folder as the identity the rule picks.
pub(super) async fn upload_outputs(state: &SharedState, ctx: &Context) -> Result<(), Stop> {
    for (port, output) in &ctx.command.outputs {
        let uri = output.uri.clone().unwrap_or_default();
        let target = resolve(state, &ctx.ws, &uri).await?;
        let (signer, acting, who) = reader(state, ctx, &target).await?;
        let folder = ctx.workdir.join("outputs").join(port);
        let files = walk(&ctx.workdir, &folder).await?;
        let at = &target.location;
        let base = match output.kind {
            DataKind::File => at
                .path
                .rsplit_once('/')
                .map(|(head, _)| format!("{head}/"))
                .unwrap_or_default(),
            DataKind::Folder if at.path.is_empty() || at.path.ends_with('/') => at.path.clone(),
            DataKind::Folder => format!("{}/", at.path),
        };
        for (rel, path) in &files {
            let bytes = tokio::fs::read(path).await.map_err(|e| {
                Stop::failed("OutputUploadFailed", format!("{}: {e}", path.display()))
            })?;
            if let Err((status, why)) = reach::put(
                state,
                &signer,
                acting.as_ref(),
                at,
                &format!("{base}{rel}"),
                bytes,
            )
            .await?
            {
                return Err(Stop::failed(
                    "OutputAccessDenied",
                    format!(
                        "output `{port}` ({uri}) was refused by the storage ({status}) when written as {who}: {why}"
                    ),
                ));
            }
        }
        ctx.log
            .line(&format!(
                "output `{port}`: uploaded {} files to {uri} as {who}",
                files.len()
            ))
            .await;
    }
    Ok(())
}

/// Every file under `root`, with its `/`-separated relative path. The job wrote
/// `root` and could have made it, or a folder above it, a symbolic link to
/// anything the server can read: `root` must be a real folder inside `base`, and
/// links beneath it are skipped.
async fn walk(base: &Path, root: &Path) -> Result<Vec<(String, PathBuf)>, Stop> {
    let mut out = Vec::new();
    let escaped = || {
        Stop::failed(
            "OutputOutsideJob",
            format!(
                "the output folder `{}` is a link out of the job's folder; nothing was uploaded from it",
                root.strip_prefix(base).unwrap_or(root).display()
            ),
        )
    };
    match tokio::fs::symlink_metadata(root).await {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(escaped()),
        Err(_) => return Ok(out),
    }
    let (Ok(real_base), Ok(real_root)) = (
        tokio::fs::canonicalize(base).await,
        tokio::fs::canonicalize(root).await,
    ) else {
        return Err(escaped());
    };
    if !real_root.starts_with(&real_base)
        || real_root != real_base.join(root.strip_prefix(base).unwrap_or(root))
    {
        return Err(escaped());
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(_) => continue,
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let Ok(kind) = entry.file_type().await else {
                continue;
            };
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), path));
            }
        }
    }
    out.sort();
    Ok(out)
}
