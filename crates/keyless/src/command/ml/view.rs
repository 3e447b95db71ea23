//! The objects `az ml` prints: ARM's bodies, as the server sends them, turned
//! into the snake_case entities of azure-ai-ml (`container_registry`,
//! `identity.principal_id`, `min_instances`, `inputs.x.mode: ro_mount`), so a
//! script's `--query` reads the same keys from keyless as from az ml. What az
//! ml's entity has no key for (keyless's own explanations, a job's status
//! history, a compute's default identity) follows under its snake_case name,
//! never dropped.

use serde_json::{Map, Value};

/// Maps whose keys are names a user (or a backend) chose: their keys stay as
/// they are (a job's `properties` hold `slurmJobId` as az ml prints it).
const NAMED: [&str; 6] = [
    "tags",
    "inputs",
    "outputs",
    "environmentVariables",
    "jobs",
    "properties",
];

/// azure-ai-ml's `camel_to_snake`: `_` between a lowercase letter or digit and
/// a capital, then everything lowercase (`SystemAssigned,UserAssigned` →
/// `system_assigned,user_assigned`).
pub(super) fn snake(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if c.is_ascii_uppercase()
            && prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
        {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
        prev = Some(c);
    }
    out
}

/// A value with every key in snake_case, the keys of [`NAMED`] maps kept.
fn snake_keys(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if NAMED.contains(&k.as_str()) {
                        named(v, snake_keys)
                    } else {
                        snake_keys(v)
                    };
                    (snake(k), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(snake_keys).collect()),
        other => other.clone(),
    }
}

/// A map keyed by names, each entry turned by `each`.
fn named(value: &Value, each: fn(&Value) -> Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), each(v))).collect())
        }
        other => other.clone(),
    }
}

/// The keys of `from` not yet in `out`, in snake_case; `skip` names the ARM
/// keys already shown under another name.
fn rest(out: &mut Map<String, Value>, from: Option<&Value>, skip: &[&str]) {
    let Some(Value::Object(from)) = from else {
        return;
    };
    for (k, v) in from {
        if skip.contains(&k.as_str()) {
            continue;
        }
        let key = snake(k);
        if !out.contains_key(&key) {
            let v = if NAMED.contains(&k.as_str()) {
                named(v, snake_keys)
            } else {
                snake_keys(v)
            };
            out.insert(key, v);
        }
    }
}

fn put(out: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        out.insert(key.to_owned(), v);
    }
}

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// The resource group an ARM id names.
fn resource_group(id: &str) -> Option<String> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("resourceGroups") {
            return parts.next().map(str::to_owned);
        }
    }
    None
}

/// The last segment of an ARM id.
fn last(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}

/// What every entity starts with: name, id, the resource group (as az adds
/// `resourceGroup` to whatever carries an id, and az ml's `resource_group`).
fn head(arm: &Value, name: Option<&str>) -> Map<String, Value> {
    let mut out = Map::new();
    let id = text(arm.get("id")).unwrap_or_default();
    put(
        &mut out,
        "name",
        name.or(text(arm.get("name"))).map(|n| n.into()),
    );
    put(
        &mut out,
        "id",
        Some(id).filter(|i| !i.is_empty()).map(Into::into),
    );
    if let Some(rg) = resource_group(id) {
        out.insert("resource_group".into(), rg.clone().into());
        out.insert("resourceGroup".into(), rg.into());
    }
    put(&mut out, "location", arm.get("location").cloned());
    out
}

/// A managed identity as azure-ai-ml's `IdentityConfiguration` prints it.
fn identity(arm: &Value) -> Value {
    let mut out = Map::new();
    put(
        &mut out,
        "type",
        text(arm.get("type")).map(|t| snake(t).into()),
    );
    put(&mut out, "principal_id", arm.get("principalId").cloned());
    put(&mut out, "tenant_id", arm.get("tenantId").cloned());
    if let Some(Value::Object(uais)) = arm.get("userAssignedIdentities") {
        let listed: Vec<Value> = uais
            .iter()
            .map(|(id, v)| {
                let mut u = Map::new();
                u.insert("resource_id".into(), id.clone().into());
                put(&mut u, "principal_id", v.get("principalId").cloned());
                put(&mut u, "client_id", v.get("clientId").cloned());
                Value::Object(u)
            })
            .collect();
        out.insert("user_assigned_identities".into(), listed.into());
    }
    rest(&mut out, Some(arm), &["type", "userAssignedIdentities"]);
    Value::Object(out)
}

/// The entity, with `tags: {}` where it has none (az ml prints the empty map).
fn with_tags(mut out: Map<String, Value>) -> Value {
    out.entry("tags")
        .or_insert_with(|| Value::Object(Map::new()));
    Value::Object(out)
}

/// `creation_context` from ARM's `systemData`.
fn creation_context(arm: &Value) -> Option<Value> {
    arm.get("systemData").map(snake_keys)
}

/// `az ml workspace show`.
pub(super) fn workspace(arm: Value) -> Value {
    let mut out = head(&arm, None);
    let props = arm.get("properties");
    put(&mut out, "tags", arm.get("tags").cloned());
    put(
        &mut out,
        "display_name",
        props.and_then(|p| p.get("friendlyName")).cloned(),
    );
    put(&mut out, "identity", arm.get("identity").map(identity));
    if let Some(mode) = props.and_then(|p| text(p.get("systemDatastoresAuthMode"))) {
        out.insert(
            "system_datastores_auth_mode".into(),
            mode.to_ascii_lowercase().into(),
        );
    }
    rest(&mut out, props, &["friendlyName"]);
    put(&mut out, "kind", arm.get("kind").cloned());
    Value::Object(out)
}

/// Seconds in an ISO 8601 duration of hours, minutes and seconds (`PT120S`, `PT2M`).
fn seconds(iso: &str) -> Option<u64> {
    let body = iso.strip_prefix("PT")?;
    let mut total = 0u64;
    let mut digits = String::new();
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: u64 = digits.parse().ok()?;
        digits.clear();
        total += n * match c {
            'H' => 3600,
            'M' => 60,
            'S' => 1,
            _ => return None,
        };
    }
    digits.is_empty().then_some(total)
}

/// `az ml compute show`.
pub(super) fn compute(arm: Value) -> Value {
    let mut out = head(&arm, None);
    let props = arm.get("properties");
    let inner = props.and_then(|p| p.get("properties"));
    put(
        &mut out,
        "type",
        props
            .and_then(|p| text(p.get("computeType")))
            .map(|t| t.to_ascii_lowercase().into()),
    );
    put(
        &mut out,
        "provisioning_state",
        props.and_then(|p| p.get("provisioningState")).cloned(),
    );
    put(
        &mut out,
        "size",
        inner.and_then(|i| i.get("vmSize")).cloned(),
    );
    put(&mut out, "tags", arm.get("tags").cloned());
    if let Some(scale) = inner.and_then(|i| i.get("scaleSettings")) {
        put(
            &mut out,
            "min_instances",
            scale.get("minNodeCount").cloned(),
        );
        put(
            &mut out,
            "max_instances",
            scale.get("maxNodeCount").cloned(),
        );
        put(
            &mut out,
            "idle_time_before_scale_down",
            text(scale.get("nodeIdleTimeBeforeScaleDown"))
                .and_then(seconds)
                .map(Into::into),
        );
    }
    if let Some(priority) = inner.and_then(|i| text(i.get("vmPriority"))) {
        let tier = if priority == "LowPriority" {
            "low_priority"
        } else {
            "dedicated"
        };
        out.insert("tier".into(), tier.into());
    }
    if let Some(idle) = inner.and_then(|i| text(i.get("idleTimeBeforeShutdown"))) {
        out.insert("idle_time_before_shutdown".into(), idle.into());
        if let Some(s) = seconds(idle) {
            out.insert("idle_time_before_shutdown_minutes".into(), (s / 60).into());
        }
    }
    put(&mut out, "identity", arm.get("identity").map(identity));
    rest(
        &mut out,
        inner,
        &[
            "vmSize",
            "scaleSettings",
            "vmPriority",
            "idleTimeBeforeShutdown",
        ],
    );
    rest(
        &mut out,
        props,
        &["computeType", "provisioningState", "properties"],
    );
    Value::Object(out)
}

/// `az ml datastore show`: never a secret (the server sends none to show).
pub(super) fn datastore(arm: Value) -> Value {
    let mut out = head(&arm, None);
    let props = arm.get("properties");
    put(
        &mut out,
        "type",
        props.and_then(|p| text(p.get("datastoreType"))).map(|t| {
            snake(t)
                .replace("gen_2", "gen2")
                .replace("gen_1", "gen1")
                .into()
        }),
    );
    if let Some(access) = props.and_then(|p| text(p.get("serviceDataAccessAuthIdentity"))) {
        out.insert(
            "service_data_access_auth_identity".into(),
            snake(access).into(),
        );
    }
    put(
        &mut out,
        "credentials",
        props.and_then(|p| p.get("credentials")).map(|c| {
            let mut shown = Map::new();
            rest(&mut shown, Some(c), &["secrets"]);
            Value::Object(shown)
        }),
    );
    rest(
        &mut out,
        props,
        &["datastoreType", "serviceDataAccessAuthIdentity"],
    );
    with_tags(out)
}

/// The asset's name and version from an ARM version id (`…/<kind>/<name>/versions/<v>`).
fn asset_head(arm: &Value) -> Map<String, Value> {
    let id = text(arm.get("id")).unwrap_or_default();
    let mut parts = id.rsplit('/');
    let (version, versions, name) = (parts.next(), parts.next(), parts.next());
    if versions != Some("versions") {
        // A listing of names: no version to show.
        return head(arm, None);
    }
    let mut out = head(arm, name);
    put(&mut out, "version", version.map(Into::into));
    out
}

/// `az ml data show`.
pub(super) fn data(arm: Value) -> Value {
    let mut out = asset_head(&arm);
    let props = arm.get("properties");
    put(
        &mut out,
        "type",
        props.and_then(|p| p.get("dataType")).cloned(),
    );
    put(
        &mut out,
        "path",
        props.and_then(|p| p.get("dataUri")).cloned(),
    );
    put(&mut out, "creation_context", creation_context(&arm));
    rest(&mut out, props, &["dataType", "dataUri"]);
    with_tags(out)
}

/// `az ml environment show`.
pub(super) fn environment(arm: Value) -> Value {
    let mut out = asset_head(&arm);
    let props = arm.get("properties");
    put(
        &mut out,
        "conda_file",
        props.and_then(|p| p.get("condaFile")).cloned(),
    );
    put(&mut out, "creation_context", creation_context(&arm));
    rest(&mut out, props, &["condaFile"]);
    with_tags(out)
}

/// az ml's spelling of an input or output mode.
fn mode(rest_mode: &str) -> String {
    match rest_mode {
        "ReadOnlyMount" => "ro_mount".into(),
        "ReadWriteMount" => "rw_mount".into(),
        other => snake(other),
    }
}

/// One input or output of a job: a literal is its value; data is `type`,
/// `path` and `mode`, as in the job's YAML.
fn port(arm: &Value, type_key: &str) -> Value {
    if text(arm.get(type_key)) == Some("literal") {
        return arm.get("value").cloned().unwrap_or(Value::Null);
    }
    let mut out = Map::new();
    put(&mut out, "type", arm.get(type_key).cloned());
    put(&mut out, "path", arm.get("uri").cloned());
    put(
        &mut out,
        "mode",
        text(arm.get("mode")).map(|m| mode(m).into()),
    );
    rest(&mut out, Some(arm), &[type_key, "uri", "mode"]);
    Value::Object(out)
}

fn input(arm: &Value) -> Value {
    port(arm, "jobInputType")
}

fn output(arm: &Value) -> Value {
    port(arm, "jobOutputType")
}

/// `az ml job show`: a command or pipeline job (or a pipeline's step).
pub(super) fn job(arm: Value) -> Value {
    let mut out = head(&arm, None);
    let own = Value::Object(Map::new());
    let props = arm.get("properties").unwrap_or(&own);
    job_fields(&mut out, props);
    put(&mut out, "creation_context", creation_context(&arm));
    Value::Object(out)
}

fn job_fields(out: &mut Map<String, Value>, props: &Value) {
    put(
        out,
        "type",
        text(props.get("jobType")).map(|t| snake(t).into()),
    );
    put(out, "status", props.get("status").cloned());
    put(out, "display_name", props.get("displayName").cloned());
    put(out, "experiment_name", props.get("experimentName").cloned());
    put(
        out,
        "compute",
        text(props.get("computeId")).map(|id| format!("azureml:{}", last(id)).into()),
    );
    put(
        out,
        "code",
        text(props.get("codeId")).map(|id| {
            if id.starts_with("azureml:") {
                id.into()
            } else {
                format!("azureml:{id}").into()
            }
        }),
    );
    put(out, "environment", props.get("environmentId").cloned());
    put(out, "inputs", props.get("inputs").map(|i| named(i, input)));
    put(
        out,
        "outputs",
        props.get("outputs").map(|o| named(o, output)),
    );
    if let Some(id) = props.get("identity") {
        let mut shown = Map::new();
        put(
            &mut shown,
            "type",
            text(id.get("identityType")).map(|t| match t {
                "AMLToken" => "aml_token".into(),
                other => snake(other).into(),
            }),
        );
        rest(&mut shown, Some(id), &["identityType"]);
        out.insert("identity".into(), Value::Object(shown));
    }
    put(out, "jobs", props.get("jobs").map(|j| named(j, step)));
    rest(
        out,
        Some(props),
        &[
            "jobType",
            "computeId",
            "codeId",
            "environmentId",
            "identity",
        ],
    );
}

/// A pipeline's step as the pipeline's `jobs` holds it.
fn step(arm: &Value) -> Value {
    let mut out = Map::new();
    job_fields(&mut out, arm);
    Value::Object(out)
}

/// Applies `view` to one entity or to each of a list; nothing (a delete's
/// answer) stays nothing.
pub(super) fn each(value: Value, view: fn(Value) -> Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(view).collect()),
        Value::Null => Value::Null,
        Value::Object(map) if map.is_empty() => Value::Object(map),
        other => view(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snake_case_as_azure_ai_ml_spells_it() {
        assert_eq!(
            snake("SystemAssigned,UserAssigned"),
            "system_assigned,user_assigned"
        );
        assert_eq!(
            snake("primaryUserAssignedIdentity"),
            "primary_user_assigned_identity"
        );
        assert_eq!(snake("UserIdentity"), "user_identity");
        assert_eq!(snake("None"), "none");
    }

    #[test]
    fn durations_in_seconds() {
        assert_eq!(seconds("PT120S"), Some(120));
        assert_eq!(seconds("PT1H2M3S"), Some(3723));
        assert_eq!(seconds("PT5"), None);
        assert_eq!(seconds("P1D"), None);
    }

    #[test]
    fn a_workspace_with_two_identities() {
        let ws = workspace(json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w",
            "name": "w", "location": "local", "tags": {"Team": "x"},
            "identity": {"type": "SystemAssigned,UserAssigned", "principalId": "p", "tenantId": "t",
                         "userAssignedIdentities": {"/u/one": {"principalId": "p1", "clientId": "c1"}}},
            "properties": {"containerRegistry": "/acr", "friendlyName": "W", "primaryUserAssignedIdentity": "/u/one",
                           "systemDatastoresAuthMode": "AccessKey"},
        }));
        assert_eq!(ws["resource_group"], "rg");
        assert_eq!(ws["container_registry"], "/acr");
        assert_eq!(ws["display_name"], "W");
        assert_eq!(ws["tags"], json!({"Team": "x"}));
        assert_eq!(ws["identity"]["type"], "system_assigned,user_assigned");
        assert_eq!(
            ws["identity"]["user_assigned_identities"],
            json!([{"resource_id": "/u/one", "principal_id": "p1", "client_id": "c1"}])
        );
        assert_eq!(ws["primary_user_assigned_identity"], "/u/one");
        assert_eq!(ws["system_datastores_auth_mode"], "accesskey");
        assert!(ws.get("properties").is_none());
    }

    #[test]
    fn a_cluster_and_its_scale() {
        let c = compute(json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/x/workspaces/w/computes/c", "name": "c",
            "identity": {"type": "SystemAssigned", "principalId": "p"},
            "properties": {"computeType": "AmlCompute", "provisioningState": "Succeeded",
                           "defaultIdentity": {"clientId": "k"},
                           "properties": {"vmSize": "Standard_DS3_v2", "vmPriority": "LowPriority",
                                          "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 2,
                                                            "nodeIdleTimeBeforeScaleDown": "PT2M"}}},
        }));
        assert_eq!(c["type"], "amlcompute");
        assert_eq!(c["size"], "Standard_DS3_v2");
        assert_eq!(
            (c["min_instances"].clone(), c["max_instances"].clone()),
            (json!(0), json!(2))
        );
        assert_eq!(c["idle_time_before_scale_down"], 120);
        assert_eq!(c["tier"], "low_priority");
        assert_eq!(
            c["identity"],
            json!({"type": "system_assigned", "principal_id": "p"})
        );
        assert_eq!(c["default_identity"], json!({"client_id": "k"}));
    }

    #[test]
    fn a_datastore_shows_no_secret() {
        let d = datastore(json!({
            "id": "/subscriptions/s/resourceGroups/rg/x/datastores/d", "name": "d",
            "properties": {"datastoreType": "AzureDataLakeGen2", "filesystem": "fs",
                           "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity",
                           "credentials": {"credentialsType": "ServicePrincipal", "clientId": "c",
                                           "secrets": {"clientSecret": "s"}}},
        }));
        assert_eq!(d["type"], "azure_data_lake_gen2");
        assert_eq!(
            d["service_data_access_auth_identity"],
            "workspace_system_assigned_identity"
        );
        assert_eq!(
            d["credentials"],
            json!({"credentials_type": "ServicePrincipal", "client_id": "c"})
        );
        assert!(!d.to_string().contains("clientSecret"));
    }

    #[test]
    fn a_job_as_its_yaml_reads() {
        let j = job(json!({
            "id": "/subscriptions/s/resourceGroups/rg/x/workspaces/w/jobs/j", "name": "j",
            "systemData": {"createdBy": "alice"},
            "properties": {"jobType": "Command", "status": "Completed",
                           "computeId": "/subscriptions/s/x/computes/cpu",
                           "identity": {"identityType": "UserIdentity"},
                           "inputs": {"In_1": {"jobInputType": "uri_file", "uri": "azureml://x", "mode": "ReadOnlyMount"},
                                      "epochs": {"jobInputType": "literal", "value": "3"}},
                           "outputs": {"model": {"jobOutputType": "uri_folder", "mode": "ReadWriteMount"}},
                           "statusHistory": [{"status": "Queued"}], "properties": {"slurmJobId": "7"}},
        }));
        assert_eq!(j["type"], "command");
        assert_eq!(j["compute"], "azureml:cpu");
        assert_eq!(j["identity"], json!({"type": "user_identity"}));
        assert_eq!(
            j["inputs"]["In_1"],
            json!({"type": "uri_file", "path": "azureml://x", "mode": "ro_mount"})
        );
        assert_eq!(j["inputs"]["epochs"], "3");
        assert_eq!(j["outputs"]["model"]["mode"], "rw_mount");
        assert_eq!(j["status_history"], json!([{"status": "Queued"}]));
        assert_eq!(j["properties"], json!({"slurmJobId": "7"}));
        assert_eq!(j["creation_context"], json!({"created_by": "alice"}));
    }

    #[test]
    fn lists_and_nothing() {
        assert_eq!(each(Value::Null, job), Value::Null);
        let listed = each(
            json!([{"name": "a", "properties": {"dataType": "uri_file"}, "id": "/x/data/a/versions/1"}]),
            data,
        );
        assert_eq!(
            listed,
            json!([{"name": "a", "id": "/x/data/a/versions/1", "version": "1", "type": "uri_file", "tags": {}}])
        );
    }
}
