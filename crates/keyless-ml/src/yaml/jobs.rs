//! Job files: command jobs and pipeline jobs, turned into the REST body of
//! `PUT …/jobs/<name>`. `code:` stays a local path in the body; the CLI uploads
//! the folder and puts the code asset's id in its place.

use serde_json::{Map, Value, json};

use keyless_core::Error;

use super::{Spec, line_of, load};
use crate::job::{identity_from_rest, identity_to_rest};

const COMMON: &[&str] = &[
    "$schema",
    "type",
    "name",
    "display_name",
    "experiment_name",
    "description",
    "tags",
    "properties",
    "inputs",
    "outputs",
    "identity",
];

const COMMAND: &[&str] = &[
    "command",
    "code",
    "environment",
    "compute",
    "environment_variables",
    "resources",
    "distribution",
    "limits",
    "services",
    "queue_settings",
];

const PIPELINE: &[&str] = &["jobs", "settings", "compute"];

/// A job file → `PUT …/jobs/<name>` body. A file without `name` gets none; the
/// CLI names the job.
///
/// # Errors
/// [`Error`] naming the file, line and key.
pub fn job(file: &str, text: &str, sets: &[(String, String)]) -> Result<Spec, Error> {
    let doc: Value = load(file, text, sets)?;
    let Value::Object(map) = &doc else {
        return Err(Error::invalid(format!("{file}: a job file is a mapping")));
    };
    let name = match map.get("name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(Error::invalid(format!(
                "{file}: name `{other}` must be a string"
            )));
        }
    };
    let properties = node(file, text, map, "job", true)?;
    Ok(Spec {
        name,
        version: None,
        resource_group: None,
        body: json!({ "properties": properties }),
    })
}

fn node(
    file: &str,
    text: &str,
    map: &Map<String, Value>,
    what: &str,
    root: bool,
) -> Result<Value, Error> {
    let kind = map.get("type").and_then(Value::as_str).unwrap_or("command");
    let allowed: Vec<&str> = match kind {
        "command" => COMMON.iter().chain(COMMAND).copied().collect(),
        "pipeline" => COMMON
            .iter()
            .chain(PIPELINE)
            .chain(if root { &[][..] } else { &["component"][..] })
            .copied()
            .collect(),
        other => {
            return Err(Error::invalid(format!(
                "{file}: {what}: type `{other}` is not supported by keyless; use command or pipeline"
            )));
        }
    };
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let at = line_of(text, key)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "{file}: {at}unknown field `{key}` in {what} (type {kind})"
            )));
        }
    }
    let mut out = Map::new();
    out.insert(
        "jobType".into(),
        if kind == "pipeline" {
            "Pipeline"
        } else {
            "Command"
        }
        .into(),
    );
    for (yaml, rest) in [
        ("display_name", "displayName"),
        ("experiment_name", "experimentName"),
        ("description", "description"),
        ("tags", "tags"),
        ("properties", "properties"),
        ("command", "command"),
        ("code", "code"),
        ("resources", "resources"),
        ("distribution", "distribution"),
        ("limits", "limits"),
        ("settings", "settings"),
        ("environment_variables", "environmentVariables"),
    ] {
        if let Some(v) = map.get(yaml).filter(|v| !v.is_null()) {
            out.insert(rest.into(), v.clone());
        }
    }
    match map.get("environment") {
        Some(Value::String(e)) => {
            out.insert("environmentId".into(), e.clone().into());
        }
        Some(v @ Value::Object(_)) => {
            out.insert("environment".into(), v.clone());
        }
        _ => {}
    }
    if let Some(c) = map.get("compute").and_then(Value::as_str) {
        out.insert("computeId".into(), c.into());
    }
    if let Some(identity) = map.get("identity").filter(|v| !v.is_null()) {
        let parsed = identity_from_rest(Some(identity))
            .map_err(|e| Error::invalid(format!("{file}: {what}: {e}")))?;
        out.insert("identity".into(), identity_to_rest(&parsed));
    }
    if let Some(inputs) = map.get("inputs").and_then(Value::as_object) {
        let converted: Map<String, Value> = inputs
            .iter()
            .map(|(k, v)| (k.clone(), port(v, "jobInputType")))
            .collect();
        out.insert("inputs".into(), converted.into());
    }
    if let Some(outputs) = map.get("outputs").and_then(Value::as_object) {
        let converted: Map<String, Value> = outputs
            .iter()
            .map(|(k, v)| (k.clone(), port(v, "jobOutputType")))
            .collect();
        out.insert("outputs".into(), converted.into());
    }
    if let Some(component) = map.get("component") {
        let inner = match component {
            Value::Object(c) => {
                // An inline component with `jobs` is a pipeline component.
                let mut c = c.clone();
                if !c.contains_key("type") && c.contains_key("jobs") {
                    c.insert("type".into(), "pipeline".into());
                }
                node(file, text, &c, &format!("{what} component"), false)?
            }
            other => other.clone(),
        };
        out.insert("component".into(), inner);
    }
    if let Some(jobs) = map.get("jobs") {
        let jobs = jobs.as_object().ok_or_else(|| {
            Error::invalid(format!("{file}: {what}: `jobs` maps step names to steps"))
        })?;
        let mut steps = Map::new();
        for (name, step) in jobs {
            let step = step.as_object().ok_or_else(|| {
                Error::invalid(format!("{file}: step `{name}` must be a mapping"))
            })?;
            steps.insert(
                name.clone(),
                node(file, text, step, &format!("step `{name}`"), false)?,
            );
        }
        out.insert("jobs".into(), steps.into());
    }
    Ok(Value::Object(out))
}

/// An input or output in YAML form → REST form. Scalars stay scalars (literals
/// and bindings); mappings get REST names and modes.
fn port(value: &Value, type_key: &str) -> Value {
    let Value::Object(m) = value else {
        return value.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        match k.as_str() {
            "type" => {
                out.insert(type_key.into(), v.clone());
            }
            "path" => {
                out.insert("uri".into(), v.clone());
            }
            "mode" => {
                let mode = v
                    .as_str()
                    .map_or_else(|| v.clone(), |m| rest_mode(m).into());
                out.insert("mode".into(), mode);
            }
            "default" | "value" => {
                out.insert("value".into(), v.clone());
            }
            other => {
                out.insert(other.into(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn rest_mode(mode: &str) -> &str {
    match mode {
        "ro_mount" => "ReadOnlyMount",
        "rw_mount" | "mount" => "ReadWriteMount",
        "download" => "Download",
        "upload" => "Upload",
        "direct" => "Direct",
        "eval_mount" => "EvalMount",
        "eval_download" => "EvalDownload",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Input, InputMode, Job};
    use keyless_core::identity_rule::JobIdentity;

    const HELLO: &str = "\
$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json
command: python3 hello.py --data ${{inputs.census}}
code: src
environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest
compute: azureml:cpu-cluster
inputs:
  census:
    type: uri_file
    path: azureml://datastores/mydata/paths/census.csv
    mode: download
  rows: 5
identity:
  type: user_identity
";

    #[test]
    fn a_command_job_file_becomes_the_rest_body_the_server_validates() -> Result<(), Error> {
        let spec = job("job.yml", HELLO, &[])?;
        let props = spec.body.get("properties").cloned().unwrap_or_default();
        assert_eq!(props.get("code"), Some(&json!("src")));
        assert_eq!(props.get("computeId"), Some(&json!("azureml:cpu-cluster")));
        assert_eq!(
            props.pointer("/inputs/census/mode"),
            Some(&json!("Download"))
        );
        assert_eq!(
            props.pointer("/identity/identityType"),
            Some(&json!("UserIdentity"))
        );
        let Job::Command(c) = Job::from_rest(&props)? else {
            return Err(Error::internal("expected a command"));
        };
        assert_eq!(c.identity, JobIdentity::User);
        assert!(matches!(
            c.inputs.get("census"),
            Some(Input::Data {
                mode: InputMode::Download,
                ..
            })
        ));
        assert_eq!(c.inputs.get("rows"), Some(&Input::Literal("5".into())));
        Ok(())
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        let text = format!("{HELLO}identitee: {{type: managed}}\n");
        let e = job("job.yml", &text, &[])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("job.yml: line 14: unknown field `identitee`"),
            "{e}"
        );
        let e = job(
            "p.yml",
            "type: pipeline\njobs:\n  a:\n    command: x\n    setings: {}\n",
            &[],
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            e.contains("line 5") && e.contains("`setings`") && e.contains("step `a`"),
            "{e}"
        );
        assert!(job("j.yml", "type: sweep\n", &[]).is_err());
    }

    #[test]
    fn a_pipeline_file_keeps_steps_bindings_and_settings_and_set_overrides_apply()
    -> Result<(), Error> {
        let text = "\
type: pipeline
settings:
  default_compute: azureml:cpu-cluster
identity:
  type: user_identity
jobs:
  prep:
    command: echo hi > ${{outputs.o}}/x
    outputs:
      o:
  train:
    command: cat ${{inputs.i}}/x
    identity:
      type: managed
    inputs:
      i: ${{parent.jobs.prep.outputs.o}}
";
        let spec = job(
            "p.yml",
            text,
            &[("settings.default_compute".into(), "azureml:other".into())],
        )?;
        let props = spec.body.get("properties").cloned().unwrap_or_default();
        let Job::Pipeline(p) = Job::from_rest(&props)? else {
            return Err(Error::internal("expected a pipeline"));
        };
        let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["prep", "train"]);
        assert!(
            p.steps
                .iter()
                .all(|s| s.command.compute.as_deref() == Some("other"))
        );
        assert_eq!(
            p.steps.first().map(|s| s.identity.clone()),
            Some(JobIdentity::User)
        );
        Ok(())
    }
}
