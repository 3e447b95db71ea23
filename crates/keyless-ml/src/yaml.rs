//! The YAML files of `az ml` (workspace, compute, datastore, data asset), read as
//! the SDK reads them and turned into the ARM bodies the management API takes.
//!
//! Unknown keys are refused with the file, the line and the key, as the SDK
//! refuses them. `--set key=value` overrides are applied before the file is read
//! into its schema.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use keyless_core::Error;

use crate::identity::{Kind, identity_rest};

mod jobs;
pub use jobs::job;

/// A file ready to send: what it is, its name, and the ARM body.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// The `name` in the file (for data assets, with `version`).
    pub name: String,
    /// The data asset version, when the file is one.
    pub version: Option<String>,
    /// The resource group a workspace file names (`-g` wins over it).
    pub resource_group: Option<String>,
    /// The ARM body.
    pub body: Value,
}

/// Reads `text` (from `file`) into the schema `T`, applying `sets` first.
fn load<T: DeserializeOwned>(
    file: &str,
    text: &str,
    sets: &[(String, String)],
) -> Result<T, Error> {
    if sets.is_empty() {
        return serde_saphyr::from_str::<T>(text)
            .map_err(|e| yaml_error(file, text, &e.to_string()));
    }
    let mut doc: Value =
        serde_saphyr::from_str(text).map_err(|e| yaml_error(file, text, &e.to_string()))?;
    for (path, raw) in sets {
        let value: Value =
            serde_saphyr::from_str(raw).unwrap_or_else(|_| Value::String(raw.clone()));
        set_path(&mut doc, path, value)?;
    }
    serde_json::from_value(doc).map_err(|e| Error::invalid(format!("{file} (with --set): {e}")))
}

fn yaml_error(file: &str, text: &str, message: &str) -> Error {
    // The parser names the line and column; for an unknown key at the top of the
    // document it points at the mapping's start, so the key's own line is looked up.
    let first = message
        .lines()
        .next()
        .unwrap_or(message)
        .trim_start_matches("error: ");
    let unknown = first
        .split("unknown field `")
        .nth(1)
        .and_then(|r| r.split('`').next());
    match unknown {
        Some(field) => {
            let at = line_of(text, field)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            let expected = first
                .split("expected one of ")
                .nth(1)
                .map(|r| r.split(" at line").next().unwrap_or(r))
                .map(|list| format!("; this schema takes {list}"))
                .unwrap_or_default();
            Error::invalid(format!("{file}: {at}unknown field `{field}`{expected}"))
        }
        None => Error::invalid(format!("{file}: {first}")),
    }
}

/// The 1-based line where `key:` first appears.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

fn set_path(doc: &mut Value, path: &str, value: Value) -> Result<(), Error> {
    let mut node = doc;
    let mut keys = path.split('.').peekable();
    while let Some(key) = keys.next() {
        if key.is_empty() {
            return Err(Error::invalid(format!("--set `{path}`: empty key")));
        }
        let map = node.as_object_mut().ok_or_else(|| {
            Error::invalid(format!("--set `{path}`: `{key}` is not inside a mapping"))
        })?;
        if keys.peek().is_none() {
            map.insert(key.to_owned(), value);
            return Ok(());
        }
        node = map.entry(key.to_owned()).or_insert_with(|| json!({}));
    }
    Ok(())
}

/// Refuses keys that exist in the shared schema but not for this `type`.
fn refuse_keys(file: &str, text: &str, kind: &str, present: &[(&str, bool)]) -> Result<(), Error> {
    for (key, given) in present {
        if *given {
            let at = line_of(text, key)
                .map(|l| format!("line {l}: "))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "{file}: {at}unknown field `{key}`: type {kind} does not take it"
            )));
        }
    }
    Ok(())
}

fn insert_some(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        map.insert(key.to_owned(), v);
    }
}

/// An asset's `version:` (a string or a number; `1` when absent), checked as a name.
fn asset_version(file: &str, version: Option<&Value>, what: &str) -> Result<String, Error> {
    let version = match version {
        None => "1".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => {
            return Err(Error::invalid(format!(
                "{file}: version `{other}` must be a string or number"
            )));
        }
    };
    crate::names::asset(&version, what)?;
    Ok(version)
}

fn string(v: Option<&String>) -> Option<Value> {
    v.map(|s| Value::String(s.clone()))
}

// ---------------------------------------------------------------- workspaces

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceYaml {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: String,
    display_name: Option<String>,
    description: Option<String>,
    location: Option<String>,
    resource_group: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    storage_account: Option<String>,
    key_vault: Option<String>,
    container_registry: Option<String>,
    application_insights: Option<String>,
    identity: Option<WorkspaceIdentityYaml>,
    primary_user_assigned_identity: Option<String>,
    system_datastores_auth_mode: Option<String>,
    public_network_access: Option<String>,
    hbi_workspace: Option<bool>,
    image_build_compute: Option<String>,
    enable_data_isolation: Option<bool>,
    kind: Option<String>,
    allow_roleassignment_on_rg: Option<bool>,
    managed_network: Option<Value>,
    customer_managed_key: Option<Value>,
    serverless_compute: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceIdentityYaml {
    #[serde(rename = "type")]
    kind: String,
    user_assigned_identities: Option<BTreeMap<String, Option<UaiDetails>>>,
    #[serde(rename = "principal_id")]
    _principal_id: Option<String>,
    #[serde(rename = "tenant_id")]
    _tenant_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UaiDetails {
    // Read-only outputs the SDK tolerates in a file written back from `show`.
    #[serde(rename = "client_id")]
    _client_id: Option<String>,
    #[serde(rename = "principal_id")]
    _principal_id: Option<String>,
}

/// A workspace file → `PUT …/workspaces/<name>` body.
///
/// # Errors
/// [`Error`] naming the file, line and key.
pub fn workspace(file: &str, text: &str, sets: &[(String, String)]) -> Result<Spec, Error> {
    let y: WorkspaceYaml = load(file, text, sets)?;
    crate::names::workspace(&y.name)?;
    let mut props = Map::new();
    insert_some(&mut props, "friendlyName", string(y.display_name.as_ref()));
    insert_some(&mut props, "description", string(y.description.as_ref()));
    insert_some(
        &mut props,
        "storageAccount",
        string(y.storage_account.as_ref()),
    );
    insert_some(&mut props, "keyVault", string(y.key_vault.as_ref()));
    insert_some(
        &mut props,
        "containerRegistry",
        string(y.container_registry.as_ref()),
    );
    insert_some(
        &mut props,
        "applicationInsights",
        string(y.application_insights.as_ref()),
    );
    insert_some(
        &mut props,
        "primaryUserAssignedIdentity",
        string(y.primary_user_assigned_identity.as_ref()),
    );
    insert_some(
        &mut props,
        "publicNetworkAccess",
        string(y.public_network_access.as_ref()),
    );
    insert_some(&mut props, "hbiWorkspace", y.hbi_workspace.map(Value::Bool));
    insert_some(
        &mut props,
        "imageBuildCompute",
        string(y.image_build_compute.as_ref()),
    );
    insert_some(
        &mut props,
        "enableDataIsolation",
        y.enable_data_isolation.map(Value::Bool),
    );
    insert_some(
        &mut props,
        "allowRoleAssignmentOnRG",
        y.allow_roleassignment_on_rg.map(Value::Bool),
    );
    insert_some(&mut props, "managedNetwork", y.managed_network);
    insert_some(
        &mut props,
        "serverlessComputeSettings",
        y.serverless_compute,
    );
    if y.customer_managed_key.is_some() {
        return Err(Error::invalid(format!(
            "{file}: customer_managed_key is not supported: keyless seals every secret under its own master key"
        )));
    }
    if let Some(mode) = &y.system_datastores_auth_mode {
        let rest = match mode.to_ascii_lowercase().as_str() {
            "accesskey" => "AccessKey",
            "identity" => "Identity",
            "userdelegationsas" => "UserDelegationSAS",
            _ => {
                return Err(Error::invalid(format!(
                    "{file}: system_datastores_auth_mode `{mode}` is not one of accesskey, identity"
                )));
            }
        };
        props.insert("systemDatastoresAuthMode".into(), rest.into());
    }
    let identity = match &y.identity {
        // Omitted: the SDK sends SystemAssigned.
        None => json!({ "type": "SystemAssigned" }),
        Some(i) => {
            let kind = Kind::parse(&i.kind)?;
            let map: Map<String, Value> = i
                .user_assigned_identities
                .iter()
                .flatten()
                .map(|(id, _)| (id.clone(), json!({})))
                .collect();
            if map.is_empty() {
                json!({ "type": kind.rest_name() })
            } else {
                json!({ "type": kind.rest_name(), "userAssignedIdentities": map })
            }
        }
    };
    let mut body = Map::new();
    insert_some(&mut body, "location", string(y.location.as_ref()));
    insert_some(&mut body, "tags", y.tags.map(|t| json!(t)));
    insert_some(&mut body, "kind", string(y.kind.as_ref()));
    body.insert("identity".into(), identity);
    body.insert("properties".into(), Value::Object(props));
    Ok(Spec {
        name: y.name,
        version: None,
        resource_group: y.resource_group,
        body: Value::Object(body),
    })
}

// ------------------------------------------------------------------ computes

#[derive(Debug, Deserialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComputeYaml {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: String,
    #[serde(rename = "type")]
    _kind: String,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    location: Option<String>,
    identity: Option<ComputeIdentityYaml>,
    // amlcompute
    size: Option<String>,
    tier: Option<String>,
    min_instances: Option<u32>,
    max_instances: Option<u32>,
    idle_time_before_scale_down: Option<u64>,
    admin_username: Option<String>,
    admin_password: Option<String>,
    ssh_key_value: Option<String>,
    ssh_public_access_enabled: Option<bool>,
    network_settings: Option<Value>,
    enable_node_public_ip: Option<bool>,
    // computeinstance
    idle_time_before_shutdown: Option<String>,
    idle_time_before_shutdown_minutes: Option<u64>,
    create_on_behalf_of: Option<Value>,
    schedules: Option<Value>,
    setup_scripts: Option<Value>,
    enable_sso: Option<bool>,
    enable_root_access: Option<bool>,
    // kubernetes
    resource_id: Option<String>,
    namespace: Option<String>,
    // keyless's extension: the backend that runs the compute's jobs
    keyless: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ComputeIdentityYaml {
    #[serde(rename = "type")]
    kind: String,
    user_assigned_identities: Option<Vec<UaiRef>>,
    #[serde(rename = "principal_id")]
    _principal_id: Option<String>,
    #[serde(rename = "tenant_id")]
    _tenant_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UaiRef {
    resource_id: String,
    #[serde(rename = "client_id")]
    _client_id: Option<String>,
    #[serde(rename = "principal_id")]
    _principal_id: Option<String>,
}

/// A compute file → `PUT …/computes/<name>` body.
///
/// # Errors
/// [`Error`] naming the file, line and key.
pub fn compute(file: &str, text: &str, sets: &[(String, String)]) -> Result<Spec, Error> {
    let head: TypeOnly = load(file, text, sets)?;
    let kind = head.kind.unwrap_or_default().to_ascii_lowercase();
    let y: ComputeYaml = load(file, text, sets)?;
    let cluster_keys = [
        ("tier", y.tier.is_some()),
        ("min_instances", y.min_instances.is_some()),
        ("max_instances", y.max_instances.is_some()),
        (
            "idle_time_before_scale_down",
            y.idle_time_before_scale_down.is_some(),
        ),
        ("admin_username", y.admin_username.is_some()),
        ("admin_password", y.admin_password.is_some()),
        ("ssh_key_value", y.ssh_key_value.is_some()),
    ];
    let instance_keys = [
        (
            "idle_time_before_shutdown",
            y.idle_time_before_shutdown.is_some(),
        ),
        (
            "idle_time_before_shutdown_minutes",
            y.idle_time_before_shutdown_minutes.is_some(),
        ),
        ("create_on_behalf_of", y.create_on_behalf_of.is_some()),
        ("schedules", y.schedules.is_some()),
        ("setup_scripts", y.setup_scripts.is_some()),
        ("enable_sso", y.enable_sso.is_some()),
        ("enable_root_access", y.enable_root_access.is_some()),
    ];
    let k8s_keys = [
        ("resource_id", y.resource_id.is_some()),
        ("namespace", y.namespace.is_some()),
    ];
    let vm_keys = [
        ("size", y.size.is_some()),
        (
            "ssh_public_access_enabled",
            y.ssh_public_access_enabled.is_some(),
        ),
        ("network_settings", y.network_settings.is_some()),
        ("enable_node_public_ip", y.enable_node_public_ip.is_some()),
    ];
    let mut inner = Map::new();
    let compute_type = match kind.as_str() {
        "amlcompute" => {
            refuse_keys(file, text, &kind, &instance_keys)?;
            refuse_keys(file, text, &kind, &k8s_keys)?;
            let min = y.min_instances.unwrap_or(0);
            let max = y.max_instances.unwrap_or(1);
            if min > max {
                return Err(Error::invalid(format!(
                    "{file}: min_instances ({min}) exceeds max_instances ({max})"
                )));
            }
            inner.insert(
                "scaleSettings".into(),
                json!({
                    "minNodeCount": min,
                    "maxNodeCount": max,
                    "nodeIdleTimeBeforeScaleDown": format!("PT{}S", y.idle_time_before_scale_down.unwrap_or(120)),
                }),
            );
            insert_some(&mut inner, "vmSize", string(y.size.as_ref()));
            insert_some(
                &mut inner,
                "vmPriority",
                y.tier.as_ref().map(|t| {
                    if t.eq_ignore_ascii_case("low_priority") {
                        "LowPriority"
                    } else {
                        "Dedicated"
                    }
                    .into()
                }),
            );
            "AmlCompute"
        }
        "computeinstance" => {
            refuse_keys(file, text, &kind, &cluster_keys)?;
            refuse_keys(file, text, &kind, &k8s_keys)?;
            insert_some(&mut inner, "vmSize", string(y.size.as_ref()));
            let idle = y
                .idle_time_before_shutdown_minutes
                .map(|m| format!("PT{m}M"))
                .or(y.idle_time_before_shutdown.clone());
            insert_some(
                &mut inner,
                "idleTimeBeforeShutdown",
                idle.map(Value::String),
            );
            insert_some(
                &mut inner,
                "personalComputeInstanceSettings",
                y.create_on_behalf_of.clone(),
            );
            "ComputeInstance"
        }
        "kubernetes" => {
            refuse_keys(file, text, &kind, &cluster_keys)?;
            refuse_keys(file, text, &kind, &instance_keys)?;
            refuse_keys(file, text, &kind, &vm_keys)?;
            insert_some(
                &mut inner,
                "namespace",
                Some(
                    y.namespace
                        .clone()
                        .unwrap_or_else(|| "default".into())
                        .into(),
                ),
            );
            "Kubernetes"
        }
        other => {
            return Err(Error::invalid(format!(
                "{file}: compute type `{other}` is not one keyless provides: amlcompute, computeinstance, kubernetes"
            )));
        }
    };
    crate::names::compute(
        &y.name,
        crate::identity::ComputeType::parse(compute_type)?.max_name(),
    )?;
    let mut props = Map::new();
    props.insert("computeType".into(), compute_type.into());
    insert_some(&mut props, "description", string(y.description.as_ref()));
    insert_some(&mut props, "resourceId", string(y.resource_id.as_ref()));
    if let Some(k) = &y.keyless {
        inner.insert("keyless".into(), k.clone());
    }
    props.insert("properties".into(), Value::Object(inner));
    let props = Value::Object(props);
    crate::backend::BackendSpec::from_compute(&props)
        .map_err(|e| Error::invalid(format!("{file}: {e}")))?;
    let Value::Object(props) = props else {
        return Err(Error::internal("the compute's properties are an object"));
    };
    let mut body = Map::new();
    insert_some(&mut body, "location", string(y.location.as_ref()));
    insert_some(&mut body, "tags", y.tags.map(|t| json!(t)));
    if let Some(i) = &y.identity {
        let kind = Kind::parse(&i.kind)?;
        let ids: Vec<String> = i
            .user_assigned_identities
            .iter()
            .flatten()
            .map(|u| u.resource_id.clone())
            .collect();
        body.insert("identity".into(), identity_rest(kind, &ids));
    }
    body.insert("properties".into(), Value::Object(props));
    Ok(Spec {
        name: y.name,
        version: None,
        resource_group: None,
        body: Value::Object(body),
    })
}

// ---------------------------------------------------------------- datastores

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatastoreYaml {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    account_name: Option<String>,
    container_name: Option<String>,
    filesystem: Option<String>,
    file_share_name: Option<String>,
    store_name: Option<String>,
    endpoint: Option<String>,
    protocol: Option<String>,
    credentials: Option<CredentialsYaml>,
    service_data_access_auth_identity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsYaml {
    account_key: Option<String>,
    sas_token: Option<String>,
    tenant_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    thumbprint: Option<String>,
    certificate: Option<String>,
    authority_url: Option<String>,
    authority_uri: Option<String>,
    resource_url: Option<String>,
}

/// A datastore file → `PUT …/datastores/<name>` body.
///
/// # Errors
/// [`Error`] naming the file, line and key, or the documented rule broken.
pub fn datastore(file: &str, text: &str, sets: &[(String, String)]) -> Result<Spec, Error> {
    let y: DatastoreYaml = load(file, text, sets)?;
    let kind = y.kind.clone().ok_or_else(|| {
        Error::invalid(format!(
            "{file}: `type` is required: azure_blob, azure_data_lake_gen2 or azure_file"
        ))
    })?;
    let (rest_type, allowed): (&str, &[&str]) = match kind.as_str() {
        "azure_blob" => ("AzureBlob", &["container_name"]),
        "azure_data_lake_gen2" => ("AzureDataLakeGen2", &["filesystem"]),
        "azure_file" => ("AzureFile", &["file_share_name"]),
        "azure_data_lake_gen1" => {
            return Err(Error::invalid(format!(
                "{file}: azure_data_lake_gen1 datastores cannot be created: Azure Data Lake Storage Gen1 was retired on 29 February 2024"
            )));
        }
        other => {
            return Err(Error::invalid(format!(
                "{file}: unsupported datastore type `{other}`: use azure_blob, azure_data_lake_gen2 or azure_file (spelled exactly so)"
            )));
        }
    };
    let places = [
        ("container_name", y.container_name.is_some()),
        ("filesystem", y.filesystem.is_some()),
        ("file_share_name", y.file_share_name.is_some()),
        ("store_name", y.store_name.is_some()),
    ];
    let foreign: Vec<(&str, bool)> = places
        .iter()
        .filter(|(k, _)| !allowed.contains(k))
        .copied()
        .collect();
    refuse_keys(file, text, &kind, &foreign)?;
    let c = y.credentials.unwrap_or_default();
    if c.authority_url.is_some() && c.authority_uri.is_some() {
        return Err(Error::invalid(format!(
            "{file}: give authority_url or its older name authority_uri, not both"
        )));
    }
    let has = |v: &Option<String>| v.is_some();
    let sp_keys = has(&c.tenant_id)
        || has(&c.client_id)
        || has(&c.client_secret)
        || has(&c.thumbprint)
        || has(&c.certificate);
    let credentials = match (has(&c.account_key), has(&c.sas_token), sp_keys) {
        (false, false, false) => json!({ "credentialsType": "None" }),
        (true, false, false) => {
            json!({ "credentialsType": "AccountKey", "secrets": { "secretsType": "AccountKey", "key": c.account_key } })
        }
        (false, true, false) => {
            json!({ "credentialsType": "Sas", "secrets": { "secretsType": "Sas", "sasToken": c.sas_token } })
        }
        (false, false, true) => {
            let missing: Vec<&str> = [("tenant_id", &c.tenant_id), ("client_id", &c.client_id)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| *k)
                .collect();
            if !missing.is_empty() {
                return Err(Error::invalid(format!(
                    "{file}: service principal credentials need tenant_id, client_id and client_secret (or thumbprint); missing: {}",
                    missing.join(", ")
                )));
            }
            let authority = c
                .authority_url
                .clone()
                .or(c.authority_uri.clone())
                .unwrap_or_else(|| "https://login.microsoftonline.com".into());
            match (&c.client_secret, &c.thumbprint) {
                (Some(secret), None) => json!({
                    "credentialsType": "ServicePrincipal", "tenantId": c.tenant_id, "clientId": c.client_id,
                    "authorityUrl": authority, "resourceUrl": c.resource_url,
                    "secrets": { "secretsType": "ServicePrincipal", "clientSecret": secret },
                }),
                (None, Some(thumb)) => json!({
                    "credentialsType": "Certificate", "tenantId": c.tenant_id, "clientId": c.client_id,
                    "thumbprint": thumb, "authorityUrl": authority, "resourceUrl": c.resource_url,
                    "secrets": { "secretsType": "Certificate", "certificate": c.certificate },
                }),
                _ => {
                    return Err(Error::invalid(format!(
                        "{file}: service principal credentials take client_secret or thumbprint (a certificate), exactly one"
                    )));
                }
            }
        }
        _ => {
            return Err(Error::invalid(format!(
                "{file}: credentials mix kinds: give account_key, sas_token, or service principal keys (tenant_id, client_id, client_secret/thumbprint), one kind only"
            )));
        }
    };
    let mut props = Map::new();
    props.insert("datastoreType".into(), rest_type.into());
    insert_some(&mut props, "accountName", string(y.account_name.as_ref()));
    insert_some(
        &mut props,
        "containerName",
        string(y.container_name.as_ref()),
    );
    insert_some(&mut props, "filesystem", string(y.filesystem.as_ref()));
    insert_some(
        &mut props,
        "fileShareName",
        string(y.file_share_name.as_ref()),
    );
    insert_some(&mut props, "endpoint", string(y.endpoint.as_ref()));
    insert_some(&mut props, "protocol", string(y.protocol.as_ref()));
    insert_some(&mut props, "description", string(y.description.as_ref()));
    insert_some(&mut props, "tags", y.tags.map(|t| json!(t)));
    props.insert("credentials".into(), credentials);
    if let Some(access) = &y.service_data_access_auth_identity {
        let rest = match access.as_str() {
            "none" => "None",
            "workspace_system_assigned_identity" => "WorkspaceSystemAssignedIdentity",
            "workspace_user_assigned_identity" => "WorkspaceUserAssignedIdentity",
            other => {
                return Err(Error::invalid(format!(
                    "{file}: service_data_access_auth_identity `{other}` is not one of none, workspace_system_assigned_identity, workspace_user_assigned_identity"
                )));
            }
        };
        props.insert("serviceDataAccessAuthIdentity".into(), rest.into());
    }
    Ok(Spec {
        name: y.name,
        version: None,
        resource_group: None,
        body: json!({ "properties": props }),
    })
}

// --------------------------------------------------------------- data assets

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DataYaml {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: String,
    version: Option<Value>,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    #[serde(rename = "type")]
    kind: Option<String>,
    path: String,
    properties: Option<BTreeMap<String, String>>,
}

/// A data asset file → `PUT …/data/<name>/versions/<version>` body.
///
/// # Errors
/// [`Error`] naming the file, line and key.
pub fn data(file: &str, text: &str, sets: &[(String, String)]) -> Result<Spec, Error> {
    let y: DataYaml = load(file, text, sets)?;
    crate::names::asset(&y.name, "data asset name")?;
    let kind = y.kind.clone().unwrap_or_else(|| "uri_folder".into());
    if !matches!(kind.as_str(), "uri_file" | "uri_folder") {
        return Err(Error::invalid(format!(
            "{file}: data type `{kind}` is not one keyless stores: uri_file or uri_folder"
        )));
    }
    let version = asset_version(file, y.version.as_ref(), "data asset version")?;
    let mut props = Map::new();
    props.insert("dataType".into(), kind.into());
    props.insert("dataUri".into(), y.path.into());
    insert_some(&mut props, "description", string(y.description.as_ref()));
    insert_some(&mut props, "tags", y.tags.map(|t| json!(t)));
    insert_some(&mut props, "properties", y.properties.map(|t| json!(t)));
    Ok(Spec {
        name: y.name,
        version: Some(version),
        resource_group: None,
        body: json!({ "properties": props }),
    })
}

// -------------------------------------------------------------- environments

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvironmentYaml {
    #[serde(rename = "$schema")]
    _schema: Option<String>,
    name: String,
    version: Option<Value>,
    description: Option<String>,
    tags: Option<BTreeMap<String, String>>,
    image: Option<String>,
    conda_file: Option<Value>,
    build: Option<BuildYaml>,
    os_type: Option<String>,
    inference_config: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BuildYaml {
    path: String,
    dockerfile_path: Option<String>,
}

/// An environment file → `PUT …/environments/<name>/versions/<version>` body.
/// A `conda_file` given as a path stays a path in `condaFile` for the caller to
/// read from beside the file; given inline it becomes its text.
///
/// # Errors
/// [`Error`] naming the file, line and key, or the rule broken.
pub fn environment(file: &str, text: &str, sets: &[(String, String)]) -> Result<Spec, Error> {
    let y: EnvironmentYaml = load(file, text, sets)?;
    crate::names::asset(&y.name, "environment name")?;
    let version = asset_version(file, y.version.as_ref(), "environment version")?;
    let mut props = Map::new();
    match (&y.image, &y.build) {
        (Some(image), None) => {
            props.insert("image".into(), image.clone().into());
        }
        (None, Some(build)) => {
            if !build.path.contains("://") && !build.path.starts_with("azureml:") {
                return Err(Error::invalid(format!(
                    "{file}: build.path `{}` is a local folder; keyless does not upload build contexts: give an `image:`, or a build context already in storage (an https:// or azureml:// URI)",
                    build.path
                )));
            }
            props.insert(
                "build".into(),
                json!({ "contextUri": build.path, "dockerfilePath": build.dockerfile_path.clone().unwrap_or_else(|| "Dockerfile".into()) }),
            );
        }
        _ => {
            return Err(Error::invalid(format!(
                "{file}: an environment gives exactly one of `image` and `build`"
            )));
        }
    }
    match &y.conda_file {
        None | Some(Value::Null) => {}
        Some(Value::String(path)) => {
            props.insert("condaFile".into(), path.clone().into());
        }
        Some(inline @ Value::Object(_)) => {
            // YAML is a superset of JSON: conda reads this text as it would the mapping.
            props.insert("condaFile".into(), format!("{inline}\n").into());
        }
        Some(other) => {
            return Err(Error::invalid(format!(
                "{file}: conda_file `{other}` must be a path or a mapping"
            )));
        }
    }
    let os = y.os_type.as_deref().unwrap_or("linux");
    let os = match os.to_ascii_lowercase().as_str() {
        "linux" => "Linux",
        "windows" => "Windows",
        _ => {
            return Err(Error::invalid(format!(
                "{file}: os_type `{os}` is not linux or windows"
            )));
        }
    };
    props.insert("osType".into(), os.into());
    insert_some(&mut props, "description", string(y.description.as_ref()));
    insert_some(&mut props, "tags", y.tags.map(|t| json!(t)));
    insert_some(&mut props, "inferenceConfig", y.inference_config);
    Ok(Spec {
        name: y.name,
        version: Some(version),
        resource_group: None,
        body: json!({ "properties": props }),
    })
}

#[cfg(test)]
mod tests;
