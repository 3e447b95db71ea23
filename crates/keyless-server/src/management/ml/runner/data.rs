//! Where a job's data lies and who reaches it: the plan of every input and
//! output, and the access the agent is handed for each — never the bytes, and
//! never a stored key or SAS. A bearer identity's access is a token of that
//! identity tagged with the job; a datastore's stored credential is first
//! tried here, in-process, for each blob (a listing, a read of the properties,
//! a write that cannot succeed), and the agent gets a SAS keyless signs for
//! that one blob, for an hour at most and only while the job runs.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use keyless_core::identity_rule::{Reader, job_data_reader};
use keyless_core::{ObjectId, Principal};
use keyless_ml::backend::MOUNTS;
use keyless_ml::job::{DataKind, Input, InputMode, OutputMode};
use keyless_ml::snapshot;

use super::super::reach::{self, Signer, Target, blob_path, resolve};
use keyless_ml::runner::Stop;

use super::{Context, Session};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// How long a SAS handed to an agent is valid (and revoked earlier when the
/// job ends).
const SAS_LIFETIME: i64 = 3600;

/// One `download` input or one output: where it lies.
#[derive(Debug)]
pub(crate) struct Planned {
    uri: String,
    kind: DataKind,
    target: Target,
    /// A file input read as the one blob it names.
    single: bool,
    /// Served by the agent as a mount, not downloaded or uploaded.
    mounted: bool,
}

/// The plan of a job's data.
pub(super) struct Plan {
    /// What the command line and `AZURE_ML_INPUT_*` say for each input.
    pub(super) inputs: Values,
    pub(super) outputs: Values,
    /// The folders the agent fills or empties, relative to the job's folder.
    pub(super) spec_inputs: Vec<Value>,
    pub(super) spec_outputs: Vec<Value>,
    /// The inputs and outputs the agent mounts, under [`MOUNTS`].
    pub(super) spec_mounts: Vec<Value>,
    pub(super) planned_inputs: BTreeMap<String, Planned>,
    pub(super) planned_outputs: BTreeMap<String, Planned>,
}

/// Resolves every input and output of the job. `mounts` says whether the
/// compute can mount (a sandboxed backend): where it cannot, a mount mode is
/// served by a download or an upload, and the job's log says so.
pub(super) async fn plan_data(
    state: &SharedState,
    ctx: &Context,
    mounts: bool,
) -> Result<Plan, Stop> {
    let mut plan = Plan {
        inputs: Values::new(),
        outputs: Values::new(),
        spec_inputs: Vec::new(),
        spec_outputs: Vec::new(),
        spec_mounts: Vec::new(),
        planned_inputs: BTreeMap::new(),
        planned_outputs: BTreeMap::new(),
    };
    for (port, input) in &ctx.command.inputs {
        match input {
            Input::Literal(v) => {
                plan.inputs.insert(port.clone(), v.clone());
            }
            Input::Data {
                uri,
                mode: InputMode::Direct,
                ..
            } => {
                plan.inputs.insert(port.clone(), uri.clone());
            }
            Input::Data {
                kind,
                uri,
                mode: mode @ (InputMode::Download | InputMode::ReadOnlyMount),
            } => {
                let target = resolve(state, &ctx.ws, uri).await?;
                let at = &target.location;
                let single =
                    *kind == DataKind::File && !at.path.is_empty() && !at.path.ends_with('/');
                let mounted = *mode == InputMode::ReadOnlyMount && mounts;
                if *mode == InputMode::ReadOnlyMount && !mounts {
                    ctx.log
                        .line(&format!("input `{port}`: {NO_MOUNTS}; it is downloaded"))
                        .await;
                }
                let dir = format!("inputs/{port}");
                let at_dir = if mounted {
                    ctx.workdir.join(MOUNTS).join(&dir)
                } else {
                    ctx.workdir.join(&dir)
                };
                let name = at.path.rsplit('/').next().unwrap_or("data");
                let seen = if single { at_dir.join(name) } else { at_dir };
                plan.inputs.insert(port.clone(), ctx.seen(&seen));
                if mounted {
                    plan.spec_mounts.push(json!({
                        "port": port, "direction": "input", "dir": dir,
                        "file": single.then_some(name),
                    }));
                } else {
                    plan.spec_inputs
                        .push(json!({ "port": port, "dir": dir, "single": single }));
                }
                plan.planned_inputs.insert(
                    port.clone(),
                    Planned {
                        uri: uri.clone(),
                        kind: *kind,
                        target,
                        single,
                        mounted,
                    },
                );
            }
            Input::Binding(_) => {
                return Err(Stop::failed(
                    "UnboundInput",
                    format!("input `{port}` was never bound"),
                ));
            }
        }
    }
    for (port, output) in &ctx.command.outputs {
        let mounted = output.mode == OutputMode::ReadWriteMount && mounts;
        if output.mode == OutputMode::ReadWriteMount && !mounts {
            ctx.log
                .line(&format!(
                    "output `{port}`: {NO_MOUNTS}; it is uploaded when the command ends"
                ))
                .await;
        }
        let dir = format!("outputs/{port}");
        let folder = if mounted {
            ctx.workdir.join(MOUNTS).join(&dir)
        } else {
            ctx.workdir.join(&dir)
        };
        let name = output_file_name(output.uri.as_deref(), port);
        let seen = match output.kind {
            DataKind::Folder => folder,
            DataKind::File => folder.join(name),
        };
        plan.outputs.insert(port.clone(), ctx.seen(&seen));
        if mounted {
            plan.spec_mounts.push(json!({
                "port": port, "direction": "output", "dir": dir,
                "file": (output.kind == DataKind::File).then_some(name),
            }));
        } else {
            plan.spec_outputs.push(json!({ "port": port, "dir": dir }));
        }
        let uri = output.uri.clone().unwrap_or_default();
        let target = resolve(state, &ctx.ws, &uri).await?;
        plan.planned_outputs.insert(
            port.clone(),
            Planned {
                uri,
                kind: output.kind,
                target,
                single: false,
                mounted,
            },
        );
    }
    Ok(plan)
}

/// Why a mount mode is served another way.
const NO_MOUNTS: &str = "this compute cannot mount (its jobs run outside the sandbox, which makes the mount's FUSE connection)";

/// The name of a `uri_file` output's file: the last segment of its URI.
fn output_file_name<'a>(uri: Option<&'a str>, port: &'a str) -> &'a str {
    uri.and_then(|u| u.trim_end_matches('/').rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or(port)
}

/// The URL of a blob on the storage listener.
fn blob_url(state: &SharedState, account: &str, container: &str, blob: &str) -> String {
    format!(
        "{}{}",
        state.urls.storage.trim_end_matches('/'),
        blob_path(account, container, blob)
    )
}

/// The code snapshot's files, each with a SAS for that file alone, signed on
/// behalf of the workspace's identity (its role assignments bound the SAS at
/// use time), and the checksum the agent must find.
pub(super) async fn code_access(state: &SharedState, session: &Session) -> Result<Value, Stop> {
    let ctx = &session.ctx;
    let Some(code_id) = &session.code_id else {
        return Ok(json!({ "checksum": null, "files": [] }));
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
    let at = &target.location;
    let (actor, signer, acting) =
        super::super::codes::workspace_identity(state, &ctx.ws, Some(&ctx.job)).await?;
    let unreadable = |(status, why): reach::Refused| {
        Stop::failed(
            "CodeSnapshotUnreadable",
            format!("the code snapshot could not be read ({status}): {why}"),
        )
    };
    let folder = match at.path.trim_end_matches('/') {
        "" => String::new(),
        p => format!("{p}/"),
    };
    let mut files: Vec<(String, String, u64)> =
        reach::list(state, &signer, Some(&acting), at, &folder)
            .await?
            .map_err(unreadable)?
            .into_iter()
            .map(|(name, size)| {
                let rel = name.strip_prefix(&folder).unwrap_or(&name).to_owned();
                (name, rel, size)
            })
            .collect();
    if files.is_empty() && !folder.is_empty() {
        let file = folder.trim_end_matches('/').to_owned();
        let size = reach::head(state, &signer, Some(&acting), at, &file)
            .await?
            .map_err(unreadable)?;
        let rel = file.rsplit('/').next().unwrap_or(&file).to_owned();
        files.push((file, rel, size));
    }
    let account = state.account(&at.account).await?.ok_or_else(|| {
        Stop::failed(
            "CodeSnapshotUnreadable",
            format!("storage account {} no longer exists", at.account),
        )
    })?;
    let keys = state.account_keys(&account)?;
    let [key1, _] = &*keys;
    let now = state.now();
    let (oid, tid) = (actor.object_id.to_string(), actor.tenant_id.to_string());
    let mut out = Vec::with_capacity(files.len());
    let mut minted = Vec::with_capacity(files.len());
    for (name, rel, size) in files {
        let sas = crate::storage::sas::sign_blob_delegation(
            key1,
            crate::storage::sas::ContainerGrant {
                account: &at.account,
                container: &at.container,
                oid: &oid,
                tid: &tid,
                permissions: "r",
                start: now - 300,
                expiry: now + SAS_LIFETIME,
            },
            &name,
        );
        minted.push(register(state, &sas, &ctx.job, now + SAS_LIFETIME));
        let url = blob_url(state, &at.account, &at.container, &name);
        out.push(json!({ "path": rel, "url": format!("{url}?{sas}"), "size": size }));
    }
    keep_minted(state, &ctx.job, minted).await;
    ctx.log
        .line(&format!(
            "code snapshot {recorded}: {} files, read as the workspace identity",
            out.len()
        ))
        .await;
    Ok(json!({ "checksum": recorded, "uri": uri, "files": out }))
}

/// Records a SAS signed for a job, so that the storage log names the job and
/// the SAS dies with it; returns what the job's record keeps of it (the digest
/// of its signature and its expiry), for a restarted server.
fn register(state: &SharedState, query: &str, job: &str, expiry: i64) -> Value {
    let sig = query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let digest = keyless_auth::secret::digest_secret(&sig);
    state.jobs.minted(&digest, job, expiry, state.now());
    json!([digest, expiry])
}

/// Adds the SAS signed for a job to its record.
async fn keep_minted(state: &SharedState, job: &str, minted: Vec<Value>) {
    if minted.is_empty() {
        return;
    }
    let _ = super::record::update_job(state, job, |body| {
        if let Some(list) = body
            .entry("agent")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|a| a.entry("minted").or_insert_with(|| json!([])))
            .and_then(Value::as_array_mut)
        {
            list.extend(minted);
        }
    })
    .await;
}

/// Records which data the job reached, and as whom (`dataAccess` on the job).
async fn record_access(state: &SharedState, session: &Session, entry: Value) {
    let access = {
        let mut access = session
            .access
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        access.push(entry);
        access.clone()
    };
    let _ = super::record::update_job(state, &session.ctx.job, |body| {
        if let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) {
            let list = props.entry("dataAccess").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                for e in access {
                    if !list.contains(&e) {
                        list.push(e);
                    }
                }
            }
        }
    })
    .await;
}

/// A service SAS for one blob, signed with its account's key.
async fn blob_sas(
    state: &SharedState,
    job: &str,
    (account, container, blob): (&str, &str, &str),
    permissions: &str,
) -> Result<(String, Value), Stop> {
    let record = state.account(account).await?.ok_or_else(|| {
        Stop::failed(
            "JobPreparationFailed",
            format!("storage account {account} no longer exists"),
        )
    })?;
    let keys = state.account_keys(&record)?;
    let [key1, _] = &*keys;
    let now = state.now();
    let sas = crate::storage::sas::sign_blob(
        key1,
        (account, container, blob),
        permissions,
        now - 300,
        now + SAS_LIFETIME,
    );
    let kept = register(state, &sas, job, now + SAS_LIFETIME);
    Ok((
        format!("{}?{sas}", blob_url(state, account, container, blob)),
        kept,
    ))
}

/// The blobs of one `download` input and how to read each.
pub(super) async fn input_access(
    state: &SharedState,
    session: &Session,
    port: &str,
) -> Result<Value, Stop> {
    let ctx = &session.ctx;
    let planned = session.inputs.get(port).ok_or_else(|| {
        Stop::failed(
            "AgentProtocol",
            format!("the job has no download input `{port}`"),
        )
    })?;
    let target = &planned.target;
    let at = &target.location;
    let (signer, acting, who) = reader(state, ctx, target).await?;
    let refused = |(status, why): reach::Refused| {
        Stop::failed(
            "InputAccessDenied",
            format!(
                "input `{port}` ({}) was refused by the storage ({status}) when read as {who}: {why}",
                planned.uri
            ),
        )
    };
    let files: Vec<(String, String, u64)> = if planned.single {
        let size = reach::head(state, &signer, acting.as_ref(), at, &at.path)
            .await?
            .map_err(refused)?;
        let name = at.path.rsplit('/').next().unwrap_or("data").to_owned();
        vec![(at.path.clone(), name, size)]
    } else {
        let prefix = if at.path.is_empty() || at.path.ends_with('/') {
            at.path.clone()
        } else {
            format!("{}/", at.path)
        };
        reach::list(state, &signer, acting.as_ref(), at, &prefix)
            .await?
            .map_err(refused)?
            .into_iter()
            .filter_map(|(name, size)| {
                let rel = name.strip_prefix(&prefix).unwrap_or(&name).to_owned();
                snapshot::check_path(&rel)
                    .is_ok()
                    .then_some((name, rel, size))
            })
            .collect()
    };
    let (authorization, out) =
        access(state, ctx, &signer, acting.as_ref(), target, files, "r").await?;
    ctx.log
        .line(&format!(
            "input `{port}`: downloading {} ({} files) as {who}",
            planned.uri,
            out.len()
        ))
        .await;
    record_access(
        state,
        session,
        json!({ "port": port, "uri": planned.uri, "direction": "input", "mode": "download", "identity": who }),
    )
    .await;
    Ok(json!({ "authorization": authorization, "files": out }))
}

/// The folder (a blob prefix, empty or ending in `/`) an output's files go to.
fn output_base(kind: DataKind, path: &str) -> String {
    match kind {
        DataKind::File => path
            .rsplit_once('/')
            .map(|(head, _)| format!("{head}/"))
            .unwrap_or_default(),
        DataKind::Folder => folder_prefix(path),
    }
}

/// `path` as a blob prefix: empty, or ending in `/`.
fn folder_prefix(path: &str) -> String {
    if path.is_empty() || path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
}

/// How the agent reaches a mounted input (read-only) or output (read-write):
/// the container's URL, the prefix the mount shows (and the one file, for a
/// `uri_file`), and the authorization, which the agent asks for again before
/// it expires. The data is shown to be reachable first (an input's listing or
/// file, an output's write with a stored credential), so a refusal fails the
/// job before its command starts, with the storage's explanation.
pub(super) async fn mount_access(
    state: &SharedState,
    session: &Session,
    direction: &str,
    port: &str,
) -> Result<Value, Stop> {
    let ctx = &session.ctx;
    let writable = direction == "outputs";
    let noun = if writable { "output" } else { "input" };
    let planned = match direction {
        "inputs" => session.inputs.get(port),
        "outputs" => session.outputs.get(port),
        _ => None,
    }
    .filter(|p| p.mounted)
    .ok_or_else(|| {
        Stop::failed(
            "AgentProtocol",
            format!("the job mounts no {direction} `{port}`"),
        )
    })?;
    let target = &planned.target;
    let at = &target.location;
    let (signer, acting, who) = reader(state, ctx, target).await?;
    let (prefix, file) = if writable {
        let file = (planned.kind == DataKind::File)
            .then(|| output_file_name(Some(&planned.uri), port).to_owned());
        (output_base(planned.kind, &at.path), file)
    } else if planned.single {
        let (head, name) = at.path.rsplit_once('/').unwrap_or(("", &at.path));
        (folder_prefix(head), Some(name.to_owned()))
    } else {
        (folder_prefix(&at.path), None)
    };
    let refused = |(status, why): reach::Refused| {
        let (code, verb) = if writable {
            ("OutputAccessDenied", "written")
        } else {
            ("InputAccessDenied", "read")
        };
        Stop::failed(
            code,
            format!(
                "{} `{port}` ({}) was refused by the storage ({status}) when {verb} as {who}: {why}",
                noun, planned.uri
            ),
        )
    };
    if !writable && planned.single {
        reach::head(state, &signer, acting.as_ref(), at, &at.path)
            .await?
            .map_err(refused)?;
    } else if !writable {
        reach::list(state, &signer, acting.as_ref(), at, &prefix)
            .await?
            .map_err(refused)?;
    }
    let container = blob_url(state, &at.account, &at.container, "");
    let (authorization, sas) = match &signer {
        Signer::Bearer(..) => {
            let token = acting.as_ref().and_then(Acting::token).ok_or_else(|| {
                Stop::failed(
                    "JobIdentityRefused",
                    "no token could be issued to the job's identity",
                )
            })?;
            (Some(format!("Bearer {token}")), None)
        }
        _ => {
            if writable {
                let probe = format!("{prefix}{}", file.as_deref().unwrap_or(".keyless-mount"));
                reach::may_write(state, &signer, acting.as_ref(), at, &probe)
                    .await?
                    .map_err(refused)?;
            }
            let record = state.account(&at.account).await?.ok_or_else(|| {
                Stop::failed(
                    "JobPreparationFailed",
                    format!("storage account {} no longer exists", at.account),
                )
            })?;
            let keys = state.account_keys(&record)?;
            let [key1, _] = &*keys;
            let now = state.now();
            let permissions = if writable { "racwdl" } else { "rl" };
            let sas = crate::storage::sas::sign_container(
                key1,
                (&at.account, &at.container),
                permissions,
                now - 300,
                now + SAS_LIFETIME,
            );
            let kept = register(state, &sas, &ctx.job, now + SAS_LIFETIME);
            keep_minted(state, &ctx.job, vec![kept]).await;
            (None, Some(sas))
        }
    };
    let (mode, how) = if writable {
        ("rw_mount", "read-write")
    } else {
        ("ro_mount", "read-only")
    };
    ctx.log
        .line(&format!(
            "{} `{port}`: mounting {} {how} as {who}",
            noun, planned.uri
        ))
        .await;
    record_access(
        state,
        session,
        json!({ "port": port, "uri": planned.uri, "direction": noun, "mode": mode, "identity": who }),
    )
    .await;
    Ok(json!({
        "container": container,
        "prefix": prefix,
        "file": file,
        "writable": writable,
        "authorization": authorization,
        "sas": sas,
    }))
}

/// How to write each of the files an output's folder holds.
pub(super) async fn output_access(
    state: &SharedState,
    session: &Session,
    port: &str,
    names: Vec<(String, u64)>,
) -> Result<Value, Stop> {
    let ctx = &session.ctx;
    let planned = session
        .outputs
        .get(port)
        .ok_or_else(|| Stop::failed("AgentProtocol", format!("the job has no output `{port}`")))?;
    let target = &planned.target;
    let at = &target.location;
    let (signer, acting, who) = reader(state, ctx, target).await?;
    let base = output_base(planned.kind, &at.path);
    let mut files = Vec::with_capacity(names.len());
    for (rel, size) in names {
        snapshot::check_path(&rel).map_err(|e| {
            Stop::failed(
                "OutputOutsideJob",
                format!("output `{port}` names a file `{rel}` keyless does not write: {e}"),
            )
        })?;
        files.push((format!("{base}{rel}"), rel, size));
    }
    let (authorization, out) = access(state, ctx, &signer, acting.as_ref(), target, files, "cw")
        .await
        .map_err(|stop| Stop {
            code: if stop.code == "InputAccessDenied" {
                "OutputAccessDenied"
            } else {
                stop.code
            },
            message: format!(
                "output `{port}` ({}) was refused by the storage when written as {who}: {}",
                planned.uri, stop.message
            ),
            ..stop
        })?;
    ctx.log
        .line(&format!(
            "output `{port}`: uploading {} files to {} as {who}",
            out.len(),
            planned.uri
        ))
        .await;
    record_access(
        state,
        session,
        json!({ "port": port, "uri": planned.uri, "direction": "output", "mode": "upload", "identity": who }),
    )
    .await;
    Ok(json!({ "authorization": authorization, "files": out }))
}

/// The URLs of `files` (blob name, relative path, size) and the authorization
/// that goes with them: the identity's token, or a SAS per blob once the stored
/// credential has been shown to reach it (`permissions` `r` reads, `cw` writes).
async fn access(
    state: &SharedState,
    ctx: &Context,
    signer: &Signer,
    acting: Option<&Acting>,
    target: &Target,
    files: Vec<(String, String, u64)>,
    permissions: &str,
) -> Result<(Option<String>, Vec<Value>), Stop> {
    let at = &target.location;
    let mut out = Vec::with_capacity(files.len());
    if let Signer::Bearer(..) = signer {
        let token = acting.and_then(Acting::token).ok_or_else(|| {
            Stop::failed(
                "JobIdentityRefused",
                "no token could be issued to the job's identity",
            )
        })?;
        for (name, rel, size) in files {
            let url = blob_url(state, &at.account, &at.container, &name);
            out.push(json!({ "path": rel, "url": url, "size": size }));
        }
        return Ok((Some(format!("Bearer {token}")), out));
    }
    let mut minted = Vec::with_capacity(files.len());
    for (name, rel, size) in files {
        if permissions != "r" {
            // Reading was shown by the listing or the properties; writing is
            // shown blob by blob.
            reach::may_write(state, signer, acting, at, &name)
                .await?
                .map_err(|(status, why)| {
                    Stop::failed("InputAccessDenied", format!("({status}) {why}"))
                })?;
        }
        let (url, kept) = blob_sas(
            state,
            &ctx.job,
            (&at.account, &at.container, &name),
            permissions,
        )
        .await?;
        minted.push(kept);
        out.push(json!({ "path": rel, "url": url, "size": size }));
    }
    keep_minted(state, &ctx.job, minted).await;
    Ok((None, out))
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
