//! Jobs: submission, show, list, cancel and the log. Submission validates the
//! whole job — its modes, its compute, its code, which identity would read each
//! input — and records it `Queued`; the runner takes it from there.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use keyless_core::identity_rule::{JobIdentity, job_data_reader};
use keyless_ml::job::{Command, Input, Job, identity_to_rest};
use keyless_store::Resource;

use super::super::caller::Caller;
use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::reach::resolve;
use super::{Child, JOBS, children, open};
use crate::state::SharedState;

pub(super) const READ: &str = "Microsoft.MachineLearningServices/workspaces/jobs/read";
const WRITE: &str = "Microsoft.MachineLearningServices/workspaces/jobs/write";
const CANCEL: &str = "Microsoft.MachineLearningServices/workspaces/jobs/cancel/action";

/// Statuses a job does not leave.
pub(super) const TERMINAL: [&str; 3] = ["Completed", "Failed", "Canceled"];

pub(super) fn job_id(ws: &Resource, name: &str) -> String {
    format!("{}/jobs/{name}", ws.id)
}

pub(super) fn status_of(r: &Resource) -> &str {
    r.body
        .pointer("/properties/status")
        .and_then(Value::as_str)
        .unwrap_or("Unknown")
}

pub(super) fn json_of(r: &Resource) -> Value {
    let mut props = r
        .body
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    // The endpoints a job offers (Azure: Studio, Tracking); keyless offers none,
    // and clients expect the map.
    if let Some(map) = props.as_object_mut() {
        map.entry("services").or_insert_with(|| json!({}));
    }
    json!({
        "id": r.id,
        "name": r.name.rsplit('/').next().unwrap_or(&r.name),
        "type": JOBS,
        "properties": props,
        "systemData": r.body.get("systemData").cloned().unwrap_or(Value::Null),
    })
}

pub(super) async fn load(
    state: &SharedState,
    ws: &Resource,
    name: &str,
) -> Result<Resource, MgmtError> {
    state
        .store
        .resource(&job_id(ws, name))
        .await?
        .filter(|r| r.kind == JOBS)
        .ok_or_else(|| super::not_found("job", name, &ws.name))
}

#[derive(Debug, Deserialize)]
pub(crate) struct JobBody {
    properties: Value,
}

pub(crate) async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<JobBody>,
) -> Response {
    respond(async {
        v.require()?;
        check_name(&p.name)?;
        let (caller, ws) = p.open(&state, &headers, "jobs", WRITE).await?;
        if state.store.resource(&job_id(&ws, &p.name)).await?.is_some() {
            return Err(MgmtError::new(
                StatusCode::CONFLICT,
                "JobExists",
                format!("a job named '{}' exists in workspace '{}'; job names are unique — pick another name", p.name, ws.name),
            ));
        }
        let job = Job::from_rest(&body.properties)?;
        let now = state.now();
        let parent = match &job {
            Job::Command(c) => {
                let props = prepare(&state, &ws, &p.name, c, &JobIdentity::Absent, &body.properties).await?;
                let r = record(&ws, &p.name, props, &caller, (now, &state.server_id));
                state.store.resource_put(&r).await?;
                crate::metrics::job_status(None, status_of(&r));
                super::runner::start_command(state.clone(), r.id.clone());
                r
            }
            Job::Pipeline(pipeline) => {
                let mut step_names = Vec::new();
                let mut binder = keyless_ml::job::Binder::new(pipeline);
                let mut records = Vec::new();
                let mut step_outputs: Map<String, Value> = Map::new();
                let child_of = |step: &str| format!("{}-{}", p.name, step.replace('.', "-"));
                for step in &pipeline.steps {
                    let child = child_of(&step.name);
                    check_name(&child)?;
                    let (command, depends) = binder.bind(step)?;
                    let depends: Vec<String> = depends.iter().map(|d| job_id(&ws, &child_of(d))).collect();
                    let raw = step_rest(&command);
                    let mut props = prepare(&state, &ws, &child, &command, &step.identity, &raw).await?;
                    crate::http::set(&mut props, "parentJobName", p.name.clone().into());
                    crate::http::set(&mut props, "stepName", step.name.clone().into());
                    crate::http::set(&mut props, "identityReason", step.identity_reason.clone().into());
                    crate::http::set(&mut props, "dependsOn", json!(depends));
                    let mut placed = std::collections::BTreeMap::new();
                    if let Some(outputs) = props.get("outputs").and_then(Value::as_object) {
                        for (o, spec) in outputs {
                            if let Some(uri) = spec.get("uri").and_then(Value::as_str) {
                                placed.insert(o.clone(), uri.to_owned());
                                step_outputs.insert(format!("{}.{o}", step.name), spec.clone());
                            }
                        }
                    }
                    binder.placed(step, &placed);
                    records.push(record(&ws, &child, props, &caller, (now, &state.server_id)));
                    step_names.push(child);
                }
                // The pipeline's outputs are where the steps bound to them write.
                let parent_outputs: Map<String, Value> = binder
                    .parent_outputs()
                    .iter()
                    .filter_map(|(name, (step, output, _))| {
                        step_outputs.get(&format!("{step}.{output}")).map(|spec| (name.clone(), spec.clone()))
                    })
                    .collect();
                let mut props = body.properties.clone();
                crate::http::set(&mut props, "jobType", "Pipeline".into());
                crate::http::set(&mut props, "steps", json!(step_names));
                crate::http::set(&mut props, "identity", identity_to_rest(&pipeline.identity));
                if !parent_outputs.is_empty() {
                    crate::http::set(&mut props, "outputs", Value::Object(parent_outputs));
                }
                let parent = record(&ws, &p.name, props, &caller, (now, &state.server_id));
                // The pipeline and its steps are recorded together, or not at all.
                let mut all = vec![parent.clone()];
                all.extend(records.iter().cloned());
                state.store.resources_put(&all).await?;
                for r in &all {
                    crate::metrics::job_status(None, status_of(r));
                }
                let mut ids = Vec::new();
                for r in records {
                    let depends: Vec<String> = r
                        .body
                        .pointer("/properties/dependsOn")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect();
                    ids.push((r.id, depends));
                }
                super::runner::start_pipeline(state.clone(), parent.id.clone(), ids, pipeline.continue_on_step_failure);
                parent
            }
        };
        tracing::info!(actor = %caller.principal.object_id, job = %parent.id, "job submitted");
        Ok((StatusCode::CREATED, json_of(&parent)))
    })
    .await
}

fn check_name(name: &str) -> Result<(), MgmtError> {
    let ok = (1..=255).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(MgmtError::bad_request(
            "InvalidJobName",
            format!(
                "job name '{name}' is not valid: letters, digits, '-' and '_', starting with a letter or digit, at most 255 characters"
            ),
        ))
    }
}

/// The REST body of a pipeline step, after its bindings are resolved.
fn step_rest(c: &Command) -> Value {
    let mut inputs = Map::new();
    for (name, input) in &c.inputs {
        let v = match input {
            Input::Literal(l) => json!({ "jobInputType": "literal", "value": l }),
            Input::Data { kind, uri, mode } => {
                json!({ "jobInputType": kind.rest_name(), "uri": uri, "mode": mode.rest_name() })
            }
            Input::Binding(_) => Value::Null,
        };
        inputs.insert(name.clone(), v);
    }
    let mut outputs = Map::new();
    for (name, o) in &c.outputs {
        outputs.insert(
            name.clone(),
            json!({ "jobOutputType": o.kind.rest_name(), "uri": o.uri, "mode": o.mode.rest_name() }),
        );
    }
    json!({
        "jobType": "Command",
        "command": c.command,
        "codeId": c.code_id,
        "environmentId": c.environment,
        "computeId": c.compute,
        "inputs": inputs,
        "outputs": outputs,
        "identity": identity_to_rest(&c.identity),
        "environmentVariables": c.environment_variables,
        "limits": c.timeout.map(|t| json!({ "timeout": t })),
    })
}

/// Checks a command against the workspace and returns its stored properties:
/// the compute's id, the code's id, every input with the mode applied, every
/// output with its location.
async fn prepare(
    state: &SharedState,
    ws: &Resource,
    name: &str,
    c: &Command,
    identity: &JobIdentity,
    raw: &Value,
) -> Result<Value, MgmtError> {
    let identity = if *identity == JobIdentity::Absent {
        &c.identity
    } else {
        identity
    };
    let compute = match &c.compute {
        Some(n) => {
            let r = super::computes::load(state, ws, n).await?;
            Some((r.id.clone(), super::computes::rule_view(state, &r).await?))
        }
        None => None,
    };
    let rule_compute = match &compute {
        Some((_, view)) => view.clone(),
        None => super::runner::serverless(state, ws).await?,
    };
    if let Some(code) = &c.code_id {
        if !code.contains("/codes/") {
            return Err(MgmtError::bad_request(
                "CodeNotUploaded",
                format!(
                    "code '{code}' is a local path: submit with `keyless ml job create`, which uploads it, or give a code asset id"
                ),
            ));
        }
        super::codes::load_by_id(state, ws, code).await?;
    }
    let mut inputs = Map::new();
    for (port, input) in &c.inputs {
        let value = match input {
            Input::Literal(l) => json!({ "jobInputType": "literal", "value": l }),
            Input::Data { kind, uri, mode } => {
                let target = resolve(state, ws, uri).await?;
                if *mode != keyless_ml::job::InputMode::Direct {
                    job_data_reader(target.credential, identity, &rule_compute).map_err(|r| {
                        MgmtError::bad_request("JobIdentityRefused", format!("input `{port}`: {r}"))
                    })?;
                }
                json!({ "jobInputType": kind.rest_name(), "uri": uri, "mode": mode.rest_name() })
            }
            Input::Binding(_) => {
                return Err(MgmtError::bad_request(
                    "UnboundInput",
                    format!("input `{port}` binds to a pipeline, but this is not a pipeline step"),
                ));
            }
        };
        inputs.insert(port.clone(), value);
    }
    let mut outputs = Map::new();
    for (port, output) in &c.outputs {
        let uri = match &output.uri {
            Some(u) => u
                .replace("${{name}}", name)
                .replace("${{output_name}}", port)
                .replace("${{default_datastore}}", super::codes::SNAPSHOT_DATASTORE),
            None => format!(
                "azureml://datastores/{}/paths/azureml/{name}/{port}/",
                super::codes::SNAPSHOT_DATASTORE
            ),
        };
        let target = resolve(state, ws, &uri).await?;
        job_data_reader(target.credential, identity, &rule_compute).map_err(|r| {
            MgmtError::bad_request("JobIdentityRefused", format!("output `{port}`: {r}"))
        })?;
        outputs.insert(
            port.clone(),
            json!({ "jobOutputType": output.kind.rest_name(), "uri": uri, "mode": output.mode.rest_name() }),
        );
    }
    let mut props = raw.clone();
    let set = |props: &mut Value, k: &str, v: Value| crate::http::set(props, k, v);
    set(&mut props, "jobType", "Command".into());
    set(
        &mut props,
        "computeId",
        compute
            .map(|(id, _)| Value::String(id))
            .unwrap_or(Value::Null),
    );
    set(&mut props, "inputs", inputs.into());
    set(&mut props, "outputs", outputs.into());
    set(&mut props, "identity", identity_to_rest(identity));
    set(&mut props, "backend", state.jobs.backend.name().into());
    if let Some(obj) = props.as_object_mut() {
        obj.remove("code");
        obj.remove("compute");
    }
    Ok(props)
}

/// A new job's record. `runner` is the server that runs it (the one that took
/// the submission): of the servers sharing a store, only it fails or follows the
/// job again when it restarts.
fn record(
    ws: &Resource,
    name: &str,
    mut props: Value,
    caller: &Caller,
    (now, runner): (i64, &str),
) -> Resource {
    let time = jiff::Timestamp::from_second(now)
        .map(|t| t.to_string())
        .unwrap_or_default();
    crate::http::set(&mut props, "status", "Queued".into());
    crate::http::set(
        &mut props,
        "statusHistory",
        json!([{ "status": "Queued", "time": time }]),
    );
    crate::http::set(
        &mut props,
        "submittedBy",
        json!({
            "objectId": caller.principal.object_id.to_string(),
            "tenantId": caller.principal.tenant_id.to_string(),
            "userPrincipalName": caller.principal.user_principal_name,
        }),
    );
    Resource {
        id: job_id(ws, name),
        subscription_id: ws.subscription_id.clone(),
        resource_group: ws.resource_group.clone(),
        kind: JOBS.into(),
        name: format!("{}/{name}", ws.name),
        location: ws.location.clone(),
        body: json!({
            "properties": props,
            "runner": runner,
            "systemData": {
                "createdAt": time,
                "createdBy": caller.name(),
                "createdByType": if caller.principal.kind == keyless_core::PrincipalKind::User { "User" } else { "Application" },
            },
        }),
        created_at: now,
    }
}

pub(crate) async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p.open(&state, &headers, "jobs", READ).await?;
        Ok((StatusCode::OK, json_of(&load(&state, &ws, &p.name).await?)))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    #[serde(rename = "parentJobName")]
    parent: Option<String>,
}

pub(crate) async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    respond(async {
        ApiVersion {
            api_version: q.api_version.clone(),
        }
        .require()?;
        let (_, ws) = open(&state, &headers, (&sub, &rg, &ws), "jobs", READ).await?;
        let mut jobs = children(&state, &ws, JOBS).await?;
        jobs.retain(|r| {
            let parent = r
                .body
                .pointer("/properties/parentJobName")
                .and_then(Value::as_str);
            parent == q.parent.as_deref()
        });
        jobs.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        let value: Vec<Value> = jobs.iter().map(json_of).collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

pub(crate) async fn cancel(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (caller, ws) = p.open(&state, &headers, "jobs", CANCEL).await?;
        let job = load(&state, &ws, &p.name).await?;
        let status = status_of(&job);
        if TERMINAL.contains(&status) {
            return Err(MgmtError::bad_request(
                "JobAlreadyFinished",
                format!(
                    "job '{}' is {status}; only a job that has not finished can be canceled",
                    p.name
                ),
            ));
        }
        let mut ids = vec![job.id.clone()];
        if let Some(steps) = job
            .body
            .pointer("/properties/steps")
            .and_then(Value::as_array)
        {
            ids.extend(
                steps
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|step| job_id(&ws, step)),
            );
        }
        for id in ids {
            // Kept in the record, for a server that takes the job over.
            state
                .store
                .resource_update(&id, &mut |body| {
                    body.as_object_mut()
                        .is_some_and(|b| b.insert("cancelRequested".into(), true.into()).is_none())
                })
                .await?;
            // Here, a step not started yet is canceled as it starts; the
            // server running the job (another, on a shared store) cancels it.
            state.jobs.cancel_token(&id).cancel();
            state.changed(crate::feed::Change::Cancel(id)).await?;
        }
        tracing::info!(actor = %caller.principal.object_id, job = %job.id, "job cancel requested");
        Ok((StatusCode::ACCEPTED, json_of(&job)))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub(crate) struct LogQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    offset: Option<u64>,
}

/// Up to this much log per request.
const LOG_CHUNK: u64 = 1024 * 1024;

pub(crate) async fn log(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<Child>,
    Query(q): Query<LogQuery>,
) -> Response {
    respond(async {
        ApiVersion {
            api_version: q.api_version.clone(),
        }
        .require()?;
        let (_, ws) = p.open(&state, &headers, "jobs", READ).await?;
        let job = load(&state, &ws, &p.name).await?;
        let path = super::runner::log_path(&state, &job.id);
        let offset = q.offset.unwrap_or(0);
        let (text, next) = read_from(&path, offset).await?;
        let status = status_of(&job);
        Ok((
            StatusCode::OK,
            json!({
                "status": status,
                "finished": TERMINAL.contains(&status),
                "offset": offset,
                "nextOffset": next,
                "text": text,
            }),
        ))
    })
    .await
}

async fn read_from(path: &std::path::Path, offset: u64) -> Result<(String, u64), MgmtError> {
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Ok((String::new(), offset));
    };
    let io = |e: std::io::Error| keyless_core::Error::internal(format!("reading the job log: {e}"));
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    let mut buf = Vec::new();
    file.take(LOG_CHUNK)
        .read_to_end(&mut buf)
        .await
        .map_err(io)?;
    // Hold back a partial UTF-8 character at the end for the next read.
    let keep = match std::str::from_utf8(&buf) {
        Ok(_) => buf.len(),
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => buf.len(),
    };
    buf.truncate(keep);
    let next = offset + u64::try_from(buf.len()).unwrap_or(0);
    Ok((String::from_utf8_lossy(&buf).into_owned(), next))
}
