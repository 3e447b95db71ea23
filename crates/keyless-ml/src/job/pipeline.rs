//! Pipelines: their steps parsed and ordered by their bindings, and the binder
//! that resolves those bindings as the server places each step.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use keyless_core::Error;
use keyless_core::identity_rule::JobIdentity;

use super::{
    Binding, Command, DataKind, Input, InputMode, Pipeline, Step, command, identity_from_rest,
    inputs, outputs,
};

/// Resolves a pipeline's bindings step by step, as the server places each
/// step: a step input bound to a pipeline input becomes that input, one bound
/// to another step's output becomes a download of where that output lands;
/// a step output bound to a pipeline output goes where the pipeline output
/// says, and the pipeline output shows where it went.
#[derive(Debug)]
pub struct Binder<'p> {
    pipeline: &'p Pipeline,
    /// `<step>.<output>` → where it lands.
    produced: BTreeMap<String, String>,
    /// Pipeline output → (step, step output, where it lands).
    parent_outputs: BTreeMap<String, (String, String, String)>,
}

impl<'p> Binder<'p> {
    /// A binder of `pipeline`'s steps.
    #[must_use]
    pub fn new(pipeline: &'p Pipeline) -> Self {
        Self {
            pipeline,
            produced: BTreeMap::new(),
            parent_outputs: BTreeMap::new(),
        }
    }

    /// The step's command with its bindings resolved, and the steps it reads
    /// from (by name). Steps come in the pipeline's order, so a producer is
    /// always placed before its readers.
    ///
    /// # Errors
    /// [`Error::invalid`] for a binding to a pipeline input that is missing;
    /// [`Error::internal`] for a producer not placed yet.
    pub fn bind(&self, step: &Step) -> Result<(Command, Vec<String>), Error> {
        let mut command = step.command.clone();
        command.identity = step.identity.clone();
        for output in command.outputs.values_mut() {
            if let Some(declared) = output
                .binds_parent
                .as_ref()
                .and_then(|n| self.pipeline.outputs.get(n))
                && output.uri.is_none()
            {
                output.uri.clone_from(&declared.uri);
            }
        }
        let mut depends = Vec::new();
        for (input, value) in &mut command.inputs {
            match value {
                Input::Binding(Binding::StepOutput { step: from, output }) => {
                    let uri = self
                        .produced
                        .get(&format!("{from}.{output}"))
                        .ok_or_else(|| {
                            Error::internal(format!(
                                "step output {from}.{output} was not placed before input {input}"
                            ))
                        })?
                        .clone();
                    if !depends.contains(from) {
                        depends.push(from.clone());
                    }
                    *value = Input::Data {
                        kind: DataKind::Folder,
                        uri,
                        mode: InputMode::ReadOnlyMount,
                    };
                }
                Input::Binding(Binding::ParentInput(name)) => {
                    *value = self.pipeline.inputs.get(name).cloned().ok_or_else(|| {
                        Error::invalid(format!("pipeline input {name} is missing"))
                    })?;
                }
                _ => {}
            }
        }
        Ok((command, depends))
    }

    /// Records where the server placed the step's outputs (output → URI).
    pub fn placed(&mut self, step: &Step, outputs: &BTreeMap<String, String>) {
        for (name, uri) in outputs {
            self.produced
                .insert(format!("{}.{name}", step.name), uri.clone());
            if let Some(parent) = step
                .command
                .outputs
                .get(name)
                .and_then(|o| o.binds_parent.clone())
            {
                self.parent_outputs
                    .insert(parent, (step.name.clone(), name.clone(), uri.clone()));
            }
        }
    }

    /// Each pipeline output a step filled: the step, its output, and where it
    /// landed.
    #[must_use]
    pub fn parent_outputs(&self) -> &BTreeMap<String, (String, String, String)> {
        &self.parent_outputs
    }
}

/// A pipeline job's REST properties → its steps, in an order that respects
/// their bindings.
pub(super) fn parse(props: &Value) -> Result<Pipeline, Error> {
    let root_identity = identity_from_rest(props.get("identity"))?;
    let settings = props.get("settings");
    let default_compute = settings
        .and_then(|s| s.get("default_compute").or_else(|| s.get("defaultCompute")))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let inputs = inputs(props.get("inputs"), "pipeline")?;
    for (name, input) in &inputs {
        if let Input::Binding(_) = input {
            return Err(Error::invalid(format!(
                "pipeline: input `{name}` binds to a parent, but the pipeline is the root"
            )));
        }
    }
    let jobs = props
        .get("jobs")
        .and_then(Value::as_object)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| Error::invalid("pipeline: `jobs` must name at least one step"))?;
    let mut steps = Vec::new();
    for (name, spec) in jobs {
        check_step_name(name)?;
        let kind = spec
            .get("jobType")
            .or_else(|| spec.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("command");
        match kind {
            "command" | "Command" => {
                let command = command(spec, &format!("step `{name}`"), default_compute.as_deref())?;
                let (identity, identity_reason) = if command.identity != JobIdentity::Absent {
                    (
                        command.identity.clone(),
                        format!("step `{name}` names its own identity, which wins over the root's"),
                    )
                } else if root_identity != JobIdentity::Absent {
                    (
                        root_identity.clone(),
                        format!("step `{name}` names no identity and takes the pipeline's"),
                    )
                } else {
                    (
                        JobIdentity::Absent,
                        format!("neither step `{name}` nor the pipeline names an identity"),
                    )
                };
                steps.push(Step {
                    name: name.clone(),
                    command,
                    identity,
                    identity_reason,
                });
            }
            "pipeline" | "Pipeline" => {
                steps.extend(component(name, spec, default_compute.as_deref())?);
            }
            other => {
                return Err(Error::invalid(format!(
                    "step `{name}`: type `{other}` is not supported by keyless; steps are command jobs or pipeline components"
                )));
            }
        }
    }
    let ordered = order(steps, &inputs)?;
    let outputs = outputs(props.get("outputs"), "pipeline")?;
    for step in &ordered {
        for (name, output) in &step.command.outputs {
            if let Some(parent) = &output.binds_parent
                && !outputs.contains_key(parent)
            {
                return Err(Error::invalid(format!(
                    "step `{}`: output `{name}` binds to pipeline output `{parent}`, which the pipeline does not declare",
                    step.name
                )));
            }
        }
    }
    let continue_on_step_failure = settings
        .and_then(|s| {
            s.get("continue_on_step_failure")
                .or_else(|| s.get("continueOnStepFailure"))
        })
        .and_then(|v| {
            v.as_bool()
                .or_else(|| v.as_str().map(|t| t.eq_ignore_ascii_case("true")))
        })
        .unwrap_or(false);
    Ok(Pipeline {
        inputs,
        identity: root_identity,
        steps: ordered,
        outputs,
        continue_on_step_failure,
    })
}

/// The leaf steps of a pipeline-component node. Identity on the node, and on the
/// root, has no effect inside it: each leaf runs with its own identity or none.
fn component(node: &str, spec: &Value, default_compute: Option<&str>) -> Result<Vec<Step>, Error> {
    let body = spec.get("component").unwrap_or(spec);
    if body.is_string() {
        return Err(Error::invalid(format!(
            "step `{node}`: a pipeline component must be given inline (component: {{jobs: ...}}); keyless does not load component files or registered components yet"
        )));
    }
    let jobs = body
        .get("jobs")
        .and_then(Value::as_object)
        .filter(|j| !j.is_empty())
        .ok_or_else(|| {
            Error::invalid(format!(
                "step `{node}`: a pipeline component needs `jobs` with at least one step"
            ))
        })?;
    let mut out = Vec::new();
    for (name, leaf) in jobs {
        check_step_name(name)?;
        let kind = leaf
            .get("jobType")
            .or_else(|| leaf.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("command");
        if !matches!(kind, "command" | "Command") {
            return Err(Error::invalid(format!(
                "step `{node}.{name}`: only command steps are supported inside a pipeline component"
            )));
        }
        let mut command = command(leaf, &format!("step `{node}.{name}`"), default_compute)?;
        for input in command.inputs.values_mut() {
            match input {
                Input::Binding(Binding::StepOutput { step, .. }) => {
                    *step = format!("{node}.{step}");
                }
                Input::Binding(Binding::ParentInput(p)) => {
                    return Err(Error::invalid(format!(
                        "step `{node}.{name}`: binding to the component's input `{p}` is not supported by keyless yet; give the value in the step"
                    )));
                }
                _ => {}
            }
        }
        let identity = command.identity.clone();
        let identity_reason = if identity == JobIdentity::Absent {
            format!(
                "step `{node}.{name}` lies inside pipeline component `{node}`, where only a leaf step's own identity takes effect; it names none"
            )
        } else {
            format!("step `{node}.{name}` names its own identity")
        };
        out.push(Step {
            name: format!("{node}.{name}"),
            command,
            identity,
            identity_reason,
        });
    }
    Ok(out)
}

fn check_step_name(name: &str) -> Result<(), Error> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "step `{name}`: step names are letters, digits, `_` and `-`, starting with a letter"
        )))
    }
}

/// Orders steps so that each runs after the steps whose outputs it reads.
fn order(steps: Vec<Step>, parent_inputs: &BTreeMap<String, Input>) -> Result<Vec<Step>, Error> {
    let names: BTreeSet<String> = steps.iter().map(|s| s.name.clone()).collect();
    for step in &steps {
        for (input, value) in &step.command.inputs {
            match value {
                Input::Binding(Binding::StepOutput { step: from, output }) => {
                    let producer = steps.iter().find(|s| &s.name == from).ok_or_else(|| {
                        Error::invalid(format!(
                            "step `{}`: input `{input}` binds to step `{from}`, which the pipeline does not have",
                            step.name
                        ))
                    })?;
                    if !producer.command.outputs.contains_key(output) {
                        return Err(Error::invalid(format!(
                            "step `{}`: input `{input}` binds to output `{output}` of step `{from}`, which it does not declare",
                            step.name
                        )));
                    }
                }
                Input::Binding(Binding::ParentInput(p)) if !parent_inputs.contains_key(p) => {
                    return Err(Error::invalid(format!(
                        "step `{}`: input `{input}` binds to pipeline input `{p}`, which the pipeline does not have",
                        step.name
                    )));
                }
                _ => {}
            }
        }
    }
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut pending = steps;
    let mut out = Vec::new();
    while !pending.is_empty() {
        let (ready, waiting): (Vec<Step>, Vec<Step>) = pending.into_iter().partition(|s| {
            s.command.inputs.values().all(|i| match i {
                Input::Binding(Binding::StepOutput { step, .. }) => done.contains(step),
                _ => true,
            })
        });
        if ready.is_empty() {
            let stuck: Vec<String> = waiting.iter().map(|s| s.name.clone()).collect();
            return Err(Error::invalid(format!(
                "pipeline: steps {} bind to each other's outputs in a cycle",
                stuck.join(", ")
            )));
        }
        for s in ready {
            done.insert(s.name.clone());
            out.push(s);
        }
        pending = waiting;
    }
    debug_assert_eq!(out.len(), names.len());
    Ok(out)
}
