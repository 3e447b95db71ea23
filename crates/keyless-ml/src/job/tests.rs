use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn command_job(props: serde_json::Value) -> Result<Command, Error> {
    match Job::from_rest(&props)? {
        Job::Command(c) => Ok(c),
        Job::Pipeline(_) => Err(Error::internal("expected a command job")),
    }
}

#[test]
fn a_command_job_reads_inputs_outputs_identity_and_compute() -> Result<(), Error> {
    let c = command_job(json!({
        "jobType": "Command",
        "command": "python train.py --data ${{inputs.d}} --lr ${{inputs.lr}} --out ${{outputs.m}}",
        "computeId": "azureml:cpu-cluster",
        "inputs": {
            "d": { "jobInputType": "uri_file", "uri": "azureml://datastores/mydata/paths/census.csv", "mode": "Download" },
            "lr": { "jobInputType": "literal", "value": "0.1" },
        },
        "outputs": { "m": { "jobOutputType": "uri_folder" } },
        "identity": { "identityType": "Managed", "clientId": "c-1" },
        "environmentVariables": { "A": "1", "N": 2 },
        "limits": { "timeout": 60 },
    }))?;
    assert_eq!(c.compute.as_deref(), Some("cpu-cluster"));
    assert_eq!(
        c.inputs.get("d"),
        Some(&Input::Data {
            kind: DataKind::File,
            uri: "azureml://datastores/mydata/paths/census.csv".into(),
            mode: InputMode::Download
        })
    );
    assert_eq!(c.inputs.get("lr"), Some(&Input::Literal("0.1".into())));
    assert_eq!(
        c.outputs.get("m").map(|o| (o.kind, o.mode)),
        Some((DataKind::Folder, OutputMode::ReadWriteMount))
    );
    assert_eq!(
        c.identity,
        JobIdentity::Managed {
            client_id: Some("c-1".into()),
            object_id: None
        }
    );
    assert_eq!(
        c.environment_variables.get("N").map(String::as_str),
        Some("2")
    );
    assert_eq!(c.timeout, Some(60));
    Ok(())
}

#[test]
fn identities_read_in_every_spelling_and_resource_id_is_refused() -> Result<(), Error> {
    assert_eq!(identity_from_rest(None)?, JobIdentity::Absent);
    assert_eq!(identity_from_rest(Some(&json!(null)))?, JobIdentity::Absent);
    assert_eq!(
        identity_from_rest(Some(&json!({"identityType": "UserIdentity"})))?,
        JobIdentity::User
    );
    assert_eq!(
        identity_from_rest(Some(&json!({"type": "user_identity"})))?,
        JobIdentity::User
    );
    assert_eq!(
        identity_from_rest(Some(&json!({"type": "aml_token"})))?,
        JobIdentity::AmlToken
    );
    assert_eq!(
        identity_from_rest(Some(&json!({"type": "managed_identity", "object_id": "o"})))?,
        JobIdentity::Managed {
            client_id: None,
            object_id: Some("o".into())
        }
    );
    assert!(identity_from_rest(Some(&json!({"type": "managed", "resourceId": "/x"}))).is_err());
    assert!(identity_from_rest(Some(&json!({"type": "pat"}))).is_err());
    for id in [
        JobIdentity::User,
        JobIdentity::AmlToken,
        JobIdentity::Absent,
        JobIdentity::Managed {
            client_id: Some("c".into()),
            object_id: None,
        },
    ] {
        assert_eq!(identity_from_rest(Some(&identity_to_rest(&id)))?, id);
    }
    Ok(())
}

#[test]
fn modes_keyless_cannot_provide_are_refused_with_what_to_use_instead() {
    let with_input_mode = |mode: &str| {
        command_job(json!({
            "command": "cat ${{inputs.d}}",
            "inputs": { "d": { "jobInputType": "uri_file", "uri": "azureml://datastores/x/paths/a", "mode": mode } },
        }))
    };
    let e = with_input_mode("eval_mount")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("input `d`") && e.contains("mltable"), "{e}");
    assert!(with_input_mode("ro_mount").is_ok());
    assert!(with_input_mode("ReadOnlyMount").is_ok());
    assert!(with_input_mode("eval_download").is_err());
    assert!(with_input_mode("upload").is_err());
    assert!(with_input_mode("direct").is_ok());
    let with_output_mode =
        |mode: &str| command_job(json!({ "command": "x", "outputs": { "o": { "mode": mode } } }));
    let e = with_output_mode("direct")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("output `o`") && e.contains("rw_mount"), "{e}");
    assert!(with_output_mode("rw_mount").is_ok());
    assert!(with_output_mode("download").is_err());
    assert!(with_output_mode("upload").is_ok());
    // mltable is refused by type, not silently read as a folder.
    assert!(command_job(json!({ "command": "x", "inputs": { "t": { "jobInputType": "mltable", "uri": "azureml://datastores/x/paths/t" } } })).is_err());
    // Outputs go to datastores only.
    assert!(
        command_job(json!({ "command": "x", "outputs": { "o": { "uri": "https://a/b" } } }))
            .is_err()
    );
}

#[test]
fn the_command_may_only_reference_declared_inputs_and_outputs() {
    let e = command_job(json!({ "command": "echo ${{inputs.missing}}" }))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("no input `missing`"), "{e}");
    assert!(command_job(json!({ "command": "echo ${{outputs.o}}" })).is_err());
    assert!(command_job(json!({ "command": "echo ${{name}}" })).is_err());
    assert!(command_job(json!({ "command": "echo ${{inputs.x" , "inputs": {"x": 1}})).is_err());
    assert!(command_job(json!({ "command": " " })).is_err());
}

#[test]
fn substitution_fills_values_and_drops_optional_segments_without_them() -> Result<(), Error> {
    let inputs: BTreeMap<String, String> =
        [("d".to_owned(), "/w/inputs/d/census.csv".to_owned())].into();
    let outputs: BTreeMap<String, String> = [("m".to_owned(), "/w/outputs/m".to_owned())].into();
    assert_eq!(
        substitute(
            "python t.py --data ${{inputs.d}} $[[--lr ${{inputs.lr}}]] --out ${{ outputs.m }}",
            &inputs,
            &outputs
        )?,
        "python t.py --data /w/inputs/d/census.csv  --out /w/outputs/m"
    );
    let mut with_lr = inputs.clone();
    with_lr.insert("lr".into(), "0.5".into());
    assert_eq!(
        substitute("t $[[--lr ${{inputs.lr}}]]", &with_lr, &outputs)?,
        "t --lr 0.5"
    );
    assert!(substitute("t ${{inputs.lr}}", &inputs, &outputs).is_err());
    assert!(substitute("t $[[--lr", &inputs, &outputs).is_err());
    Ok(())
}

#[test]
fn a_substituted_name_cannot_inject_shell_code() -> Result<(), Error> {
    // A blob named by someone else, as an attacker would name it.
    let evil = "/w/inputs/d/w;echo INJECTED-$(id -u);#.csv";
    let inputs: BTreeMap<String, String> = [
        ("d".to_owned(), evil.to_owned()),
        ("q".to_owned(), "it's".to_owned()),
    ]
    .into();
    let line = substitute(
        "cat ${{inputs.d}} $[[${{inputs.q}}]]",
        &inputs,
        &BTreeMap::new(),
    )?;
    assert_eq!(
        line,
        "cat '/w/inputs/d/w;echo INJECTED-$(id -u);#.csv' 'it'\\''s'"
    );
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", &line.replacen("cat", "printf '%s|'", 1)])
        .output()
        .map_err(|e| Error::internal(e.to_string()))?;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{evil}|it's|")
    );
    Ok(())
}

fn pipeline_of(props: serde_json::Value) -> Result<Pipeline, Error> {
    match Job::from_rest(&props)? {
        Job::Pipeline(p) => Ok(p),
        Job::Command(_) => Err(Error::internal("expected a pipeline")),
    }
}

#[test]
fn pipeline_steps_run_after_the_steps_they_read_and_take_the_default_compute() -> Result<(), Error>
{
    let p = pipeline_of(json!({
        "jobType": "Pipeline",
        "settings": { "default_compute": "azureml:cpu-cluster" },
        "jobs": {
            "a_train": { "command": "cat ${{inputs.x}}", "inputs": { "x": "${{parent.jobs.b_prep.outputs.o}}" }, "compute": "gpu" },
            "b_prep": { "command": "echo > ${{outputs.o}}/f", "outputs": { "o": null } },
        },
    }))?;
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["b_prep", "a_train"]);
    let compute: Vec<Option<&str>> = p
        .steps
        .iter()
        .map(|s| s.command.compute.as_deref())
        .collect();
    assert_eq!(compute, [Some("cpu-cluster"), Some("gpu")]);
    Ok(())
}

#[test]
fn the_binder_resolves_each_step_as_the_server_places_the_one_before() -> Result<(), Error> {
    let p = pipeline_of(json!({
        "jobType": "Pipeline",
        "settings": { "continue_on_step_failure": true },
        "inputs": { "raw": { "jobInputType": "uri_file", "uri": "azureml://datastores/d/paths/raw.csv" } },
        "outputs": { "report": { "jobOutputType": "uri_folder", "uri": "azureml://datastores/d/paths/report/" } },
        "jobs": {
            "prep": { "command": "x", "inputs": { "r": "${{parent.inputs.raw}}" }, "outputs": { "o": null } },
            "train": { "command": "x", "inputs": { "i": "${{parent.jobs.prep.outputs.o}}" },
                       "outputs": { "m": "${{parent.outputs.report}}" } },
        },
    }))?;
    assert!(p.continue_on_step_failure);
    let mut binder = Binder::new(&p);
    let (prep, deps) = binder.bind(&p.steps[0])?;
    assert!(deps.is_empty());
    assert!(matches!(&prep.inputs["r"], Input::Data { uri, .. } if uri.ends_with("raw.csv")));
    // A reader cannot be bound before its producer is placed.
    assert!(binder.bind(&p.steps[1]).is_err());
    binder.placed(
        &p.steps[0],
        &BTreeMap::from([(
            "o".to_owned(),
            "azureml://datastores/d/paths/prep-o/".to_owned(),
        )]),
    );
    let (train, deps) = binder.bind(&p.steps[1])?;
    assert_eq!(deps, ["prep"]);
    assert!(
        matches!(&train.inputs["i"], Input::Data { uri, mode: InputMode::ReadOnlyMount, .. } if uri.ends_with("prep-o/"))
    );
    // The output bound to the pipeline's goes where the pipeline says, and the pipeline shows it.
    assert_eq!(
        train.outputs["m"].uri.as_deref(),
        Some("azureml://datastores/d/paths/report/")
    );
    binder.placed(
        &p.steps[1],
        &BTreeMap::from([(
            "m".to_owned(),
            "azureml://datastores/d/paths/report/".to_owned(),
        )]),
    );
    assert_eq!(binder.parent_outputs()["report"].0, "train");
    // A step output bound to a pipeline output that is not declared is refused.
    let undeclared = pipeline_of(json!({
        "jobType": "Pipeline",
        "jobs": { "a": { "command": "x", "outputs": { "o": "${{parent.outputs.nowhere}}" } } },
    }));
    assert!(
        undeclared
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("does not declare")
    );
    Ok(())
}

#[test]
fn broken_bindings_and_cycles_are_refused() {
    let cyc = pipeline_of(json!({
        "jobType": "Pipeline",
        "jobs": {
            "a": { "command": "x", "inputs": { "i": "${{parent.jobs.b.outputs.o}}" }, "outputs": { "o": null } },
            "b": { "command": "x", "inputs": { "i": "${{parent.jobs.a.outputs.o}}" }, "outputs": { "o": null } },
        },
    }));
    assert!(
        cyc.err()
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("cycle")
    );
    assert!(pipeline_of(json!({ "jobType": "Pipeline", "jobs": { "a": { "command": "x", "inputs": { "i": "${{parent.jobs.z.outputs.o}}" } } } })).is_err());
    assert!(pipeline_of(json!({ "jobType": "Pipeline", "jobs": { "a": { "command": "x", "inputs": { "i": "${{parent.inputs.nope}}" } } } })).is_err());
    assert!(pipeline_of(json!({ "jobType": "Pipeline", "jobs": {} })).is_err());
}

#[test]
fn the_step_identity_wins_the_root_fills_in_and_a_component_node_has_no_effect() -> Result<(), Error>
{
    let p = pipeline_of(json!({
        "jobType": "Pipeline",
        "identity": { "identityType": "UserIdentity" },
        "jobs": {
            "as_root": { "command": "x" },
            "as_step": { "command": "x", "identity": { "type": "managed" } },
            "node": {
                "type": "pipeline",
                "identity": { "type": "user_identity" },
                "component": { "jobs": {
                    "leaf": { "command": "x" },
                    "own": { "command": "x", "identity": { "type": "user_identity" } },
                } },
            },
        },
    }))?;
    let of = |name: &str| {
        p.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.identity.clone())
    };
    assert_eq!(of("as_root"), Some(JobIdentity::User));
    assert_eq!(
        of("as_step"),
        Some(JobIdentity::Managed {
            client_id: None,
            object_id: None
        })
    );
    // Neither the node's identity nor the root's reaches a leaf inside a component.
    assert_eq!(of("node.leaf"), Some(JobIdentity::Absent));
    assert_eq!(of("node.own"), Some(JobIdentity::User));
    Ok(())
}

#[test]
fn compute_references_name_a_compute_or_serverless() {
    assert_eq!(compute_name("azureml:cpu").as_deref(), Some("cpu"));
    assert_eq!(compute_name("/subscriptions/s/resourceGroups/g/providers/Microsoft.MachineLearningServices/workspaces/w/computes/cpu").as_deref(), Some("cpu"));
    assert_eq!(compute_name("serverless"), None);
    assert_eq!(compute_name("azureml:serverless"), None);
}
