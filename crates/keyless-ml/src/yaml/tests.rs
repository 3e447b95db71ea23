//! The seed documents' YAML files, with their placeholders filled, read as the
//! SDK reads them.

use serde_json::json;

use super::*;

const SUB: &str = "00000000-0000-0000-0000-000000000001";

/// Reads a fixture from `tests/fixtures/ml` and fills its placeholders.
fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../tests/fixtures/ml/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .replace("<sub>", SUB)
        .replace("<rg>", "rg1")
        .replace("<ws>", "census-ws")
        .replace("<uai1>", "uai-one")
        .replace("<uai2>", "uai-two")
        .replace("<account>", "censusdata")
        .replace("<lake>", "censuslake")
        .replace("<tid>", "11111111-1111-1111-1111-111111111111")
        .replace("<appid>", "22222222-2222-2222-2222-222222222222")
        .replace("<secret>", "s3cret-value")
        .replace("<key>", "a2V5a2V5")
}

fn uai(n: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"
    )
}

fn message<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Ok(v) => panic!("accepted: {v:?}"),
        Err(e) => e.message().to_owned(),
    }
}

#[test]
fn workspace_with_two_user_assigned_identities() -> Result<(), Error> {
    let spec = workspace("ws.yml", &fixture("workspace-uais.yml"), &[])?;
    assert_eq!(spec.name, "census-ws");
    assert_eq!(spec.body["identity"]["type"], "SystemAssigned,UserAssigned");
    let map = spec.body["identity"]["userAssignedIdentities"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(map.contains_key(&uai("uai-one")) && map.contains_key(&uai("uai-two")));
    assert_eq!(
        spec.body["properties"]["primaryUserAssignedIdentity"],
        uai("uai-one")
    );
    assert_eq!(spec.body["properties"]["friendlyName"], "Census workspace");
    Ok(())
}

#[test]
fn workspace_without_identity_is_system_assigned() -> Result<(), Error> {
    let spec = workspace("ws.yml", "name: plain-ws\n", &[])?;
    assert_eq!(spec.body["identity"], json!({ "type": "SystemAssigned" }));
    let spec = workspace("ws.yml", &fixture("workspace-sai.yml"), &[])?;
    assert_eq!(
        spec.body["properties"]["systemDatastoresAuthMode"],
        "Identity"
    );
    Ok(())
}

#[test]
fn a_list_under_workspace_identities_is_refused() {
    let text = "name: w1\nidentity:\n  type: user_assigned\n  user_assigned_identities:\n    - resource_id: /x\n";
    let err = message(workspace("ws.yml", text, &[]));
    assert!(err.starts_with("ws.yml: line 5"), "{err}");
}

#[test]
fn unknown_keys_name_file_line_and_key() {
    let text = "name: w1\nlocation: local\nstorage_acount: x\n";
    let err = message(workspace("ws.yml", text, &[]));
    assert!(
        err.contains("ws.yml") && err.contains("line 3") && err.contains("storage_acount"),
        "{err}"
    );
    let text =
        "name: c1\ntype: amlcompute\nidentity:\n  type: system_assigned\n  resource_id: /x\n";
    let err = message(compute("c.yml", text, &[]));
    assert!(
        err.contains("line 5") && err.contains("resource_id"),
        "{err}"
    );
    // A key of another compute type is unknown for this one.
    let text = "name: c1\ntype: amlcompute\nnamespace: ml\n";
    let err = message(compute("c.yml", text, &[]));
    assert!(err.contains("line 3") && err.contains("namespace"), "{err}");
    let text = "name: d1\ntype: azure_blob\naccount_name: a1b2c\nfilesystem: raw\n";
    let err = message(datastore("d.yml", text, &[]));
    assert!(
        err.contains("line 4") && err.contains("filesystem"),
        "{err}"
    );
}

#[test]
fn clusters_with_user_and_system_assigned_identity() -> Result<(), Error> {
    let spec = compute("c.yml", &fixture("cluster-uai.yml"), &[])?;
    assert_eq!(spec.body["identity"]["type"], "UserAssigned");
    assert!(
        spec.body["identity"]["userAssignedIdentities"]
            .get(uai("uai-one"))
            .is_some()
    );
    assert_eq!(spec.body["properties"]["computeType"], "AmlCompute");
    assert_eq!(
        spec.body["properties"]["properties"]["scaleSettings"]["maxNodeCount"],
        2
    );
    let spec = compute("c.yml", &fixture("cluster-sai.yml"), &[])?;
    assert_eq!(spec.body["identity"], json!({ "type": "SystemAssigned" }));
    let spec = compute("c.yml", &fixture("instance-sai.yml"), &[])?;
    assert_eq!(
        spec.body["properties"]["properties"]["idleTimeBeforeShutdown"],
        "PT30M"
    );
    // The combined type parses; the server refuses it for clusters, citing the rule.
    let spec = compute("c.yml", &fixture("cluster-both.yml"), &[])?;
    assert_eq!(spec.body["identity"]["type"], "SystemAssigned,UserAssigned");
    Ok(())
}

#[test]
fn set_overrides_apply_before_the_schema() -> Result<(), Error> {
    let sets = vec![
        ("max_instances".to_owned(), "4".to_owned()),
        ("identity.type".to_owned(), "SystemAssigned".to_owned()),
        (
            "identity.user_assigned_identities".to_owned(),
            "null".to_owned(),
        ),
    ];
    let spec = compute("c.yml", &fixture("cluster-uai.yml"), &sets)?;
    assert_eq!(
        spec.body["properties"]["properties"]["scaleSettings"]["maxNodeCount"],
        4
    );
    assert_eq!(spec.body["identity"], json!({ "type": "SystemAssigned" }));
    let err = message(compute(
        "c.yml",
        &fixture("cluster-uai.yml"),
        &[("bogus".into(), "1".into())],
    ));
    assert!(err.contains("bogus"), "{err}");
    Ok(())
}

#[test]
fn datastores_of_the_seed() -> Result<(), Error> {
    let spec = datastore("d.yml", &fixture("datastore-census.yml"), &[])?;
    assert_eq!(spec.name, "mydata");
    assert_eq!(
        spec.body["properties"]["credentials"],
        json!({ "credentialsType": "None" })
    );
    let spec = datastore("d.yml", &fixture("datastore-blob-credless.yml"), &[])?;
    assert_eq!(spec.body["properties"]["containerName"], "data");
    let spec = datastore("d.yml", &fixture("datastore-adls-sp.yml"), &[])?;
    let creds = &spec.body["properties"]["credentials"];
    assert_eq!(creds["credentialsType"], "ServicePrincipal");
    assert_eq!(creds["authorityUrl"], "https://login.microsoftonline.com");
    assert_eq!(creds["secrets"]["clientSecret"], "s3cret-value");
    let spec = datastore("d.yml", &fixture("datastore-blob-key.yml"), &[])?;
    assert_eq!(
        spec.body["properties"]["credentials"]["secrets"]["key"],
        "a2V5a2V5"
    );
    // The REST side validates what the YAML side carried.
    let (store, secret) =
        crate::datastore::Datastore::from_rest("blob_key", &spec.body["properties"])?;
    assert_eq!(secret.map(|s| s.value), Some("a2V5a2V5".to_owned()));
    assert!(!store.to_rest(false).to_string().contains("a2V5a2V5"));
    Ok(())
}

#[test]
fn refused_datastore_shapes_give_the_documented_reason() {
    let err = message(datastore("d.yml", &fixture("datastore-gen1.yml"), &[]));
    assert!(err.contains("retired on 29 February 2024"), "{err}");
    let err = message(datastore(
        "d.yml",
        "name: x\ntype: AzureBlob\naccount_name: abc\ncontainer_name: c\n",
        &[],
    ));
    assert!(err.contains("unsupported datastore type"), "{err}");
    let err = message(datastore(
        "d.yml",
        "name: x\naccount_name: abc\ncontainer_name: c\n",
        &[],
    ));
    assert!(err.contains("`type` is required"), "{err}");
    let text = "name: x\ntype: azure_blob\naccount_name: abc\ncontainer_name: c\ncredentials: {account_key: k, sas_token: s}\n";
    assert!(message(datastore("d.yml", text, &[])).contains("mix kinds"));
    // The server-side rules: identity-based Azure Files, SP on blob, key on gen2.
    let file = datastore("d.yml", &fixture("datastore-file-credless.yml"), &[]).map(|s| s.body);
    let err = file
        .and_then(|b| crate::datastore::Datastore::from_rest("share_credless", &b["properties"]));
    assert!(message(err).contains("cannot be identity-based"));
    let text = "name: x\ntype: azure_blob\naccount_name: abc\ncontainer_name: c\ncredentials: {tenant_id: t, client_id: c, client_secret: s}\n";
    let rest = datastore("d.yml", text, &[]).map(|s| s.body);
    let err = rest.and_then(|b| crate::datastore::Datastore::from_rest("x", &b["properties"]));
    assert!(
        message(err)
            .contains("service principal and certificate credentials are for azure_data_lake_gen2")
    );
    let text = "name: x\ntype: azure_data_lake_gen2\naccount_name: abc\nfilesystem: c\ncredentials: {account_key: k}\n";
    let rest = datastore("d.yml", text, &[]).map(|s| s.body);
    let err = rest.and_then(|b| crate::datastore::Datastore::from_rest("x", &b["properties"]));
    assert!(message(err).contains("AccountKey credentials are for azure_blob"));
}

#[test]
fn data_assets() -> Result<(), Error> {
    let spec = data("data.yml", &fixture("data-census.yml"), &[])?;
    assert_eq!(
        (spec.name.as_str(), spec.version.as_deref()),
        ("census", Some("1"))
    );
    assert_eq!(
        spec.body["properties"]["dataUri"],
        "azureml://datastores/mydata/paths/census.csv"
    );
    assert_eq!(spec.body["properties"]["dataType"], "uri_file");
    let err = message(data("data.yml", "name: t\npath: x\ntype: mltable\n", &[]));
    assert!(err.contains("mltable"), "{err}");
    Ok(())
}

#[test]
fn environments_from_an_image_or_a_stored_build_context() -> Result<(), Error> {
    let text = "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json\nname: trainer\nimage: keyless.azurecr.io/train:1\nconda_file: conda.yml\n";
    let spec = environment("env.yml", text, &[("version".into(), "2".into())])?;
    assert_eq!(
        (spec.name.as_str(), spec.version.as_deref()),
        ("trainer", Some("2"))
    );
    assert_eq!(
        spec.body["properties"]["image"],
        "keyless.azurecr.io/train:1"
    );
    assert_eq!(spec.body["properties"]["condaFile"], "conda.yml");
    assert_eq!(spec.body["properties"]["osType"], "Linux");
    let inline = environment(
        "env.yml",
        "name: e\nimage: i\nconda_file: {name: x, dependencies: [python=3.11]}\n",
        &[],
    )?;
    let conda = inline.body["properties"]["condaFile"]
        .as_str()
        .unwrap_or_default();
    assert!(conda.contains("python=3.11"), "{conda}");
    let built = environment("env.yml", "name: e\nbuild: {path: 'https://x/ctx'}\n", &[])?;
    assert_eq!(
        built.body["properties"]["build"],
        json!({ "contextUri": "https://x/ctx", "dockerfilePath": "Dockerfile" })
    );
    let err = message(environment(
        "env.yml",
        "name: e\nbuild: {path: ./ctx}\n",
        &[],
    ));
    assert!(err.contains("local folder"), "{err}");
    let err = message(environment("env.yml", "name: e\n", &[]));
    assert!(err.contains("exactly one of `image` and `build`"), "{err}");
    let err = message(environment(
        "env.yml",
        "name: e\nimage: i\nos_type: plan9\n",
        &[],
    ));
    assert!(err.contains("plan9"), "{err}");
    Ok(())
}
