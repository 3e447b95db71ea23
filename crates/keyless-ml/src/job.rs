//! Jobs as the management API takes them: the REST body of a command or pipeline
//! job, validated at submission; the input and output modes keyless provides; the
//! identity each step runs with; and the substitution of `${{inputs.x}}` and
//! `${{outputs.y}}` into a command.
//!
//! A mode keyless cannot provide is refused here, at submission, with the mode to
//! use instead; it is never quietly replaced. A mode left out is the service's
//! choice: keyless downloads inputs and uploads outputs, and records the mode it
//! applied in the job.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use keyless_core::Error;
use keyless_core::identity_rule::JobIdentity;

mod pipeline;

pub use pipeline::Binder;

/// How a data input reaches the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputMode {
    /// Mounted read-only: listed when the job starts, read by ranges as the
    /// command reads (Azure's default).
    ReadOnlyMount,
    /// Copied into the job's working directory before the command starts.
    Download,
    /// The URI is passed as it is; the job's code reaches the data itself.
    Direct,
}

impl InputMode {
    /// The REST name.
    #[must_use]
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::ReadOnlyMount => "ReadOnlyMount",
            Self::Download => "Download",
            Self::Direct => "Direct",
        }
    }
}

/// How an output leaves the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Mounted read-write: each file written reaches the storage when it is
    /// closed (Azure's default).
    ReadWriteMount,
    /// Written to a local folder, uploaded after the command ends.
    Upload,
}

impl OutputMode {
    /// The REST name.
    #[must_use]
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::ReadWriteMount => "ReadWriteMount",
            Self::Upload => "Upload",
        }
    }
}

/// `uri_file` or `uri_folder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    /// One file.
    File,
    /// A folder (a prefix).
    Folder,
}

impl DataKind {
    fn parse(text: &str, what: &str) -> Result<Self, Error> {
        match text {
            "uri_file" | "UriFile" => Ok(Self::File),
            "uri_folder" | "UriFolder" => Ok(Self::Folder),
            other => Err(Error::invalid(format!(
                "{what}: type `{other}` is not supported by keyless yet; use uri_file or uri_folder"
            ))),
        }
    }

    /// The REST name.
    #[must_use]
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::File => "uri_file",
            Self::Folder => "uri_folder",
        }
    }
}

/// One input of a command job or step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A literal value (number, string, boolean), substituted as text.
    Literal(String),
    /// Data at a URI.
    Data {
        /// File or folder.
        kind: DataKind,
        /// Where it is.
        uri: String,
        /// How it reaches the command.
        mode: InputMode,
    },
    /// A pipeline binding: `${{parent.inputs.x}}` or `${{parent.jobs.a.outputs.b}}`.
    Binding(Binding),
}

/// What a pipeline step's input is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Binding {
    /// `${{parent.inputs.<name>}}`.
    ParentInput(String),
    /// `${{parent.jobs.<step>.outputs.<name>}}`.
    StepOutput {
        /// The producing step.
        step: String,
        /// Its output.
        output: String,
    },
}

/// One output of a command job or step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// File or folder.
    pub kind: DataKind,
    /// Where it goes (`azureml://datastores/...`); `None` until the server picks
    /// the default location.
    pub uri: Option<String>,
    /// How it leaves the job.
    pub mode: OutputMode,
    /// `${{parent.outputs.<name>}}`: the pipeline output this step output is.
    pub binds_parent: Option<String>,
}

/// A command job, or one step of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command line, before substitution.
    pub command: String,
    /// The code asset version id, if any.
    pub code_id: Option<String>,
    /// The environment, as given (recorded; the local backend runs on the host).
    pub environment: Option<Value>,
    /// The compute's name; `None` is serverless.
    pub compute: Option<String>,
    /// Inputs by name.
    pub inputs: BTreeMap<String, Input>,
    /// Outputs by name.
    pub outputs: BTreeMap<String, Output>,
    /// The identity the step asks for itself.
    pub identity: JobIdentity,
    /// Extra environment variables.
    pub environment_variables: BTreeMap<String, String>,
    /// `limits.timeout`, in seconds.
    pub timeout: Option<u64>,
}

/// A pipeline: steps in the order they run.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Pipeline-level data inputs and literals.
    pub inputs: BTreeMap<String, Input>,
    /// The identity at the root.
    pub identity: JobIdentity,
    /// Leaf steps, in an order that respects their bindings. Steps inside a
    /// pipeline-component node are named `<node>.<step>`.
    pub steps: Vec<Step>,
    /// Pipeline-level outputs, which steps' outputs bind to
    /// (`${{parent.outputs.<name>}}`).
    pub outputs: BTreeMap<String, Output>,
    /// `settings.continue_on_step_failure`: steps that do not depend on a
    /// failed step still run.
    pub continue_on_step_failure: bool,
}

/// One leaf step of a pipeline, with the identity it runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Its name (`<node>.<step>` inside a pipeline-component node).
    pub name: String,
    /// The step as a command.
    pub command: Command,
    /// The identity that applies, after precedence.
    pub identity: JobIdentity,
    /// Why that identity applies.
    pub identity_reason: String,
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// `jobType: Command`.
    Command(Command),
    /// `jobType: Pipeline`.
    Pipeline(Pipeline),
}

impl Job {
    /// Reads and validates the `properties` of a job's REST body. Pipeline steps
    /// without a compute take `settings.default_compute`.
    ///
    /// # Errors
    /// [`Error::invalid`] naming the field and what to change.
    pub fn from_rest(properties: &Value) -> Result<Self, Error> {
        let kind = properties
            .get("jobType")
            .and_then(Value::as_str)
            .unwrap_or("Command");
        match kind {
            "Command" | "command" => Ok(Self::Command(command(properties, "job", None)?)),
            "Pipeline" | "pipeline" => Ok(Self::Pipeline(pipeline::parse(properties)?)),
            other => Err(Error::invalid(format!(
                "jobType `{other}` is not supported by keyless; command and pipeline jobs are"
            ))),
        }
    }
}

/// Reads a job `identity` block (`identityType` `UserIdentity`, `Managed`,
/// `AMLToken`; `null` or absent for none).
///
/// # Errors
/// [`Error::invalid`] for an unknown identity type.
pub fn identity_from_rest(identity: Option<&Value>) -> Result<JobIdentity, Error> {
    let Some(identity) = identity.filter(|v| !v.is_null()) else {
        return Ok(JobIdentity::Absent);
    };
    let text = |k: &str| identity.get(k).and_then(Value::as_str).map(str::to_owned);
    let kind = text("identityType")
        .or_else(|| text("type"))
        .unwrap_or_default();
    match kind.as_str() {
        "UserIdentity" | "user_identity" => Ok(JobIdentity::User),
        "Managed" | "managed" | "managed_identity" => {
            if identity
                .get("resourceId")
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
            {
                return Err(Error::invalid(
                    "identity: a managed identity is chosen by clientId or objectId; resourceId is not accepted (as in Azure's YAML schema)",
                ));
            }
            Ok(JobIdentity::Managed {
                client_id: text("clientId").or_else(|| text("client_id")),
                object_id: text("objectId").or_else(|| text("object_id")),
            })
        }
        "AMLToken" | "aml_token" => Ok(JobIdentity::AmlToken),
        other => Err(Error::invalid(format!(
            "identity type `{other}` is unknown; use UserIdentity, Managed or AMLToken"
        ))),
    }
}

/// The REST form of a job identity (`null` when absent).
#[must_use]
pub fn identity_to_rest(identity: &JobIdentity) -> Value {
    match identity {
        JobIdentity::Absent => Value::Null,
        JobIdentity::User => json!({ "identityType": "UserIdentity" }),
        JobIdentity::AmlToken => json!({ "identityType": "AMLToken" }),
        JobIdentity::Managed {
            client_id,
            object_id,
        } => {
            let mut m = Map::new();
            m.insert("identityType".into(), "Managed".into());
            if let Some(c) = client_id {
                m.insert("clientId".into(), c.clone().into());
            }
            if let Some(o) = object_id {
                m.insert("objectId".into(), o.clone().into());
            }
            Value::Object(m)
        }
    }
}

/// A compute reference (`azureml:<name>`, `<name>`, or a compute id) as a name;
/// `None` for serverless.
#[must_use]
pub fn compute_name(reference: &str) -> Option<String> {
    let r = reference.trim();
    let r = r.strip_prefix("azureml:").unwrap_or(r);
    let name = r.rsplit('/').next().unwrap_or(r);
    if name.is_empty() || name.eq_ignore_ascii_case("serverless") {
        None
    } else {
        Some(name.to_owned())
    }
}

fn command(props: &Value, what: &str, default_compute: Option<&str>) -> Result<Command, Error> {
    let text = |k: &str| props.get(k).and_then(Value::as_str).map(str::to_owned);
    let command = text("command")
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| Error::invalid(format!("{what}: `command` is required")))?;
    let inputs = inputs(props.get("inputs"), what)?;
    let outputs = outputs(props.get("outputs"), what)?;
    check_references(&command, &inputs, &outputs, what)?;
    let compute = text("computeId")
        .or_else(|| text("compute"))
        .or_else(|| default_compute.map(str::to_owned))
        .and_then(|c| compute_name(&c));
    let environment_variables = match props.get("environmentVariables") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        Some(_) => {
            return Err(Error::invalid(format!(
                "{what}: environmentVariables must be a mapping of names to values"
            )));
        }
    };
    for name in environment_variables.keys() {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(Error::invalid(format!(
                "{what}: `{name}` is not a valid environment variable name"
            )));
        }
    }
    let timeout = props.pointer("/limits/timeout").and_then(|t| {
        t.as_u64()
            .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
    });
    Ok(Command {
        command,
        code_id: text("codeId").or_else(|| text("code")),
        environment: props
            .get("environmentId")
            .or_else(|| props.get("environment"))
            .filter(|v| !v.is_null())
            .cloned(),
        compute,
        inputs,
        outputs,
        identity: identity_from_rest(props.get("identity"))?,
        environment_variables,
        timeout,
    })
}

fn inputs(value: Option<&Value>, what: &str) -> Result<BTreeMap<String, Input>, Error> {
    let mut out = BTreeMap::new();
    let Some(map) = value.and_then(Value::as_object) else {
        return Ok(out);
    };
    for (name, spec) in map {
        let at = format!("{what}: input `{name}`");
        check_port_name(name, &at)?;
        let input = match spec {
            Value::String(s) => literal_or_binding(s),
            Value::Number(_) | Value::Bool(_) => Input::Literal(spec.to_string()),
            Value::Object(o) => {
                let kind = o
                    .get("jobInputType")
                    .or_else(|| o.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("uri_folder");
                if kind.eq_ignore_ascii_case("literal") {
                    match o.get("value") {
                        Some(Value::String(s)) => literal_or_binding(s),
                        Some(v) if !v.is_null() => Input::Literal(v.to_string()),
                        _ => return Err(Error::invalid(format!("{at}: a literal needs a value"))),
                    }
                } else {
                    let uri = o
                        .get("uri")
                        .or_else(|| o.get("path"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| Error::invalid(format!("{at}: `uri` is required")))?;
                    if let Input::Binding(b) = literal_or_binding(uri) {
                        Input::Binding(b)
                    } else {
                        Input::Data {
                            kind: DataKind::parse(kind, &at)?,
                            uri: uri.to_owned(),
                            mode: input_mode(o.get("mode").and_then(Value::as_str), &at)?,
                        }
                    }
                }
            }
            _ => {
                return Err(Error::invalid(format!(
                    "{at}: expected a value or a mapping"
                )));
            }
        };
        out.insert(name.clone(), input);
    }
    Ok(out)
}

fn literal_or_binding(text: &str) -> Input {
    let t = text.trim();
    let inner = t
        .strip_prefix("${{")
        .and_then(|r| r.strip_suffix("}}"))
        .map(str::trim);
    if let Some(inner) = inner {
        let parts: Vec<&str> = inner.split('.').collect();
        match parts.as_slice() {
            ["parent", "inputs", name] => {
                return Input::Binding(Binding::ParentInput((*name).to_owned()));
            }
            ["parent", "jobs", step, "outputs", output] => {
                return Input::Binding(Binding::StepOutput {
                    step: (*step).to_owned(),
                    output: (*output).to_owned(),
                });
            }
            _ => {}
        }
    }
    Input::Literal(text.to_owned())
}

fn input_mode(mode: Option<&str>, at: &str) -> Result<InputMode, Error> {
    match mode {
        None | Some("ReadOnlyMount" | "ro_mount") => Ok(InputMode::ReadOnlyMount),
        Some("Download" | "download") => Ok(InputMode::Download),
        Some("Direct" | "direct") => Ok(InputMode::Direct),
        Some(m @ ("EvalMount" | "eval_mount" | "EvalDownload" | "eval_download")) => {
            Err(Error::invalid(format!(
                "{at}: mode {m} applies to mltable inputs, which keyless does not support yet; use ro_mount or download"
            )))
        }
        Some(m @ ("ReadWriteMount" | "rw_mount" | "Upload" | "upload" | "mount")) => {
            Err(Error::invalid(format!(
                "{at}: mode {m} is an output mode; inputs take ro_mount, download or direct"
            )))
        }
        Some(other) => Err(Error::invalid(format!(
            "{at}: mode `{other}` is unknown; inputs take ro_mount, download or direct"
        ))),
    }
}

fn outputs(value: Option<&Value>, what: &str) -> Result<BTreeMap<String, Output>, Error> {
    let mut out = BTreeMap::new();
    let Some(map) = value.and_then(Value::as_object) else {
        return Ok(out);
    };
    for (name, spec) in map {
        let at = format!("{what}: output `{name}`");
        check_port_name(name, &at)?;
        let empty = Map::new();
        let (o, binds_parent) = match spec {
            Value::Null => (&empty, None),
            Value::Object(o) => (o, None),
            Value::String(s) => match s
                .trim()
                .strip_prefix("${{")
                .and_then(|r| r.strip_suffix("}}"))
                .map(str::trim)
                .and_then(|r| r.strip_prefix("parent.outputs."))
            {
                Some(parent) => (&empty, Some(parent.to_owned())),
                None => {
                    return Err(Error::invalid(format!(
                        "{at}: expected a mapping or ${{{{parent.outputs.<name>}}}}"
                    )));
                }
            },
            _ => return Err(Error::invalid(format!("{at}: expected a mapping"))),
        };
        let kind = DataKind::parse(
            o.get("jobOutputType")
                .or_else(|| o.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("uri_folder"),
            &at,
        )?;
        let mode = match o.get("mode").and_then(Value::as_str) {
            None | Some("ReadWriteMount" | "rw_mount" | "mount") => OutputMode::ReadWriteMount,
            Some("Upload" | "upload") => OutputMode::Upload,
            Some(m @ ("Direct" | "direct")) => {
                return Err(Error::invalid(format!(
                    "{at}: mode {m} is not provided by keyless yet for outputs; use rw_mount or upload"
                )));
            }
            Some(m @ ("ReadOnlyMount" | "ro_mount" | "Download" | "download")) => {
                return Err(Error::invalid(format!(
                    "{at}: mode {m} is an input mode; outputs take rw_mount or upload"
                )));
            }
            Some(other) => {
                return Err(Error::invalid(format!(
                    "{at}: mode `{other}` is unknown; outputs take rw_mount or upload"
                )));
            }
        };
        let uri = o
            .get("uri")
            .or_else(|| o.get("path"))
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        if let Some(u) = &uri
            && !u.starts_with("azureml://datastores/")
            && !u.starts_with("azureml://subscriptions/")
        {
            return Err(Error::invalid(format!(
                "{at}: an output path must be azureml://datastores/<name>/paths/<path>; `{u}` is not"
            )));
        }
        out.insert(
            name.clone(),
            Output {
                kind,
                uri,
                mode,
                binds_parent,
            },
        );
    }
    Ok(out)
}

fn check_port_name(name: &str, at: &str) -> Result<(), Error> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{at}: names are letters, digits and underscores, starting with a letter or underscore"
        )))
    }
}

/// A `${{...}}` reference in a command.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    Input(String),
    Output(String),
}

/// Splits a command into text, references and optional `$[[ ... ]]` segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Ref(Reference),
    Optional(Vec<Piece>),
}

fn pieces(text: &str, optional_allowed: bool) -> Result<Vec<Piece>, Error> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        let next_ref = rest.find("${{");
        let next_opt = if optional_allowed {
            rest.find("$[[")
        } else {
            None
        };
        let at = match (next_ref, next_opt) {
            (None, None) => {
                if !rest.is_empty() {
                    out.push(Piece::Text(rest.to_owned()));
                }
                return Ok(out);
            }
            (Some(r), Some(o)) => r.min(o),
            (Some(r), None) => r,
            (None, Some(o)) => o,
        };
        let (head, tail) = rest.split_at(at);
        if !head.is_empty() {
            out.push(Piece::Text(head.to_owned()));
        }
        if let Some(body) = tail.strip_prefix("$[[") {
            let end = body.find("]]").ok_or_else(|| {
                Error::invalid("command: an optional segment `$[[` is not closed with `]]`")
            })?;
            let (inner, after) = body.split_at(end);
            out.push(Piece::Optional(pieces(inner, false)?));
            rest = after.get(2..).unwrap_or_default();
        } else {
            let body = tail.get(3..).unwrap_or_default();
            let end = body.find("}}").ok_or_else(|| {
                Error::invalid("command: a reference `${{` is not closed with `}}`")
            })?;
            let (inner, after) = body.split_at(end);
            let inner = inner.trim();
            let reference = if let Some(n) = inner.strip_prefix("inputs.") {
                Reference::Input(n.to_owned())
            } else if let Some(n) = inner.strip_prefix("outputs.") {
                Reference::Output(n.to_owned())
            } else {
                return Err(Error::invalid(format!(
                    "command: `${{{{{inner}}}}}` is not a reference keyless knows; use ${{{{inputs.<name>}}}} or ${{{{outputs.<name>}}}}"
                )));
            };
            out.push(Piece::Ref(reference));
            rest = after.get(2..).unwrap_or_default();
        }
    }
}

fn check_references(
    command: &str,
    inputs: &BTreeMap<String, Input>,
    outputs: &BTreeMap<String, Output>,
    what: &str,
) -> Result<(), Error> {
    let parsed = pieces(command, true).map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    for piece in &parsed {
        if let Piece::Ref(r) = piece {
            match r {
                Reference::Input(n) if !inputs.contains_key(n) => {
                    return Err(Error::invalid(format!(
                        "{what}: the command uses ${{{{inputs.{n}}}}}, but the job has no input `{n}` (wrap optional parts in $[[ ]])"
                    )));
                }
                Reference::Output(n) if !outputs.contains_key(n) => {
                    return Err(Error::invalid(format!(
                        "{what}: the command uses ${{{{outputs.{n}}}}}, but the job has no output `{n}`"
                    )));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Substitutes `${{inputs.x}}` and `${{outputs.y}}` with `values`; an optional
/// `$[[ ... ]]` segment is dropped when one of its inputs has no value.
///
/// # Errors
/// [`Error::invalid`] for a malformed command or a required reference without a
/// value.
pub fn substitute(
    command: &str,
    inputs: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, String>,
) -> Result<String, Error> {
    let lookup = |r: &Reference| match r {
        Reference::Input(n) => inputs.get(n),
        Reference::Output(n) => outputs.get(n),
    };
    let mut out = String::with_capacity(command.len());
    for piece in pieces(command, true)? {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Ref(r) => {
                out.push_str(&shell_word(lookup(&r).ok_or_else(|| {
                    Error::invalid(format!("command: {r:?} has no value"))
                })?))
            }
            Piece::Optional(inner) => {
                let complete = inner.iter().all(|p| match p {
                    Piece::Ref(r) => lookup(r).is_some(),
                    _ => true,
                });
                if complete {
                    for p in inner {
                        match p {
                            Piece::Text(t) => out.push_str(&t),
                            Piece::Ref(r) => {
                                out.push_str(&shell_word(lookup(&r).map_or("", String::as_str)));
                            }
                            Piece::Optional(_) => {}
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// A substituted value as one shell word: as it is when it holds nothing the
/// shell interprets, else single-quoted. The command runs through `sh -c`, and
/// a value comes from a file or blob name someone else may have chosen.
pub fn shell_word(value: &str) -> std::borrow::Cow<'_, str> {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        std::borrow::Cow::Borrowed(value)
    } else {
        std::borrow::Cow::Owned(format!("'{}'", value.replace('\'', r"'\''")))
    }
}

#[cfg(test)]
mod tests;
