//! `keyless storage account …`: accounts, their keys and network rules, through
//! the management API.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{API_VERSION, account_path};
use crate::client::{Api, segment, values};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountCommand {
    /// Create a storage account.
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        /// Hierarchical namespace (ADLS Gen2).
        #[arg(long)]
        hns: bool,
        #[arg(long, action = clap::ArgAction::Set)]
        allow_shared_key_access: Option<bool>,
        /// Whether containers may be opened to anonymous reads (off by default).
        #[arg(long, action = clap::ArgAction::Set)]
        allow_blob_public_access: Option<bool>,
        /// The SKU the account reports (keyless keeps one copy whatever it says).
        #[arg(long, default_value = "Standard_LRS", value_parser = ["Standard_LRS", "Standard_GRS", "Standard_RAGRS", "Standard_ZRS", "Standard_GZRS", "Standard_RAGZRS", "Premium_LRS", "Premium_ZRS"])]
        sku: String,
    },
    /// Show one.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// List the accounts of the subscription or of a resource group.
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Change flags.
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, action = clap::ArgAction::Set)]
        allow_shared_key_access: Option<bool>,
        /// Whether containers may be opened to anonymous reads.
        #[arg(long, action = clap::ArgAction::Set)]
        allow_blob_public_access: Option<bool>,
        /// What the network rules do with addresses no rule names.
        #[arg(long, value_parser = ["Allow", "Deny"])]
        default_action: Option<String>,
        /// `AzureServices` lets keyless's trusted services (managed identities) through; `None` does not.
        #[arg(long, value_parser = ["AzureServices", "None"])]
        bypass: Option<String>,
    },
    /// Network rules: the addresses that may reach the account's data.
    #[command(subcommand)]
    NetworkRule(NetworkRuleCommand),
    /// Delete an account with all its data.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// The account keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A connection string with the account key.
    ShowConnectionString {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NetworkRuleCommand {
    /// Allow an address or CIDR range, or a named virtual network (an address range).
    Add {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Remove a rule.
    Remove {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Show the rules.
    List {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
}

/// One network rule.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RuleArgs {
    /// An address or CIDR range.
    #[arg(long, conflicts_with_all = ["vnet_name", "resource_id"])]
    ip_address: Option<String>,
    /// A resource instance whose managed identities pass (a workspace's or a
    /// compute's ARM id; `*` matches one segment), as az's `--resource-id`.
    #[arg(long, conflicts_with = "vnet_name", requires = "tenant_id")]
    resource_id: Option<String>,
    /// The tenant of `--resource-id`.
    #[arg(long)]
    tenant_id: Option<String>,
    /// A virtual network's name…
    #[arg(long, requires = "address_prefix")]
    vnet_name: Option<String>,
    /// …and its address range.
    #[arg(long)]
    address_prefix: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// List both keys.
    List {
        #[arg(long = "account-name", short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// Replace one key.
    Renew {
        #[arg(long = "account-name", short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, value_parser = ["key1", "key2"])]
        key: String,
    },
}

/// The account's current `networkAcls`.
async fn network_acls(api: &Api, rg: &str, name: &str) -> Result<Value> {
    let account = api
        .get(&format!(
            "{}?api-version={API_VERSION}",
            account_path(api, rg, name)?
        ))
        .await?;
    Ok(account
        .pointer("/properties/networkAcls")
        .cloned()
        .unwrap_or_else(|| json!({ "defaultAction": "Allow", "bypass": "AzureServices" })))
}

async fn network_rule(api: &Api, cmd: NetworkRuleCommand) -> Result<Value> {
    let (name, rg, rule, add) = match cmd {
        NetworkRuleCommand::List {
            name,
            resource_group,
        } => return network_acls(api, &resource_group, &name).await,
        NetworkRuleCommand::Add {
            name,
            resource_group,
            rule,
        } => (name, resource_group, rule, true),
        NetworkRuleCommand::Remove {
            name,
            resource_group,
            rule,
        } => (name, resource_group, rule, false),
    };
    let mut acls = network_acls(api, &rg, &name).await?;
    // The list a rule lives in, the rule, and the field that names it.
    let (key, entry, id_field) = match (rule.ip_address, rule.vnet_name, rule.address_prefix) {
        _ if rule.resource_id.is_some() => (
            "resourceAccessRules",
            json!({ "tenantId": rule.tenant_id, "resourceId": rule.resource_id }),
            "resourceId",
        ),
        (Some(ip), _, _) => (
            "ipRules",
            json!({ "value": ip, "action": "Allow" }),
            "value",
        ),
        (None, Some(vnet), Some(prefix)) => (
            "virtualNetworkRules",
            json!({ "id": vnet, "addressPrefix": prefix, "action": "Allow" }),
            "id",
        ),
        _ => bail!(
            "give --ip-address, --vnet-name with --address-prefix, or --resource-id with --tenant-id"
        ),
    };
    let wanted = entry.get(id_field).cloned();
    let matches = |v: &Value| v.get(id_field).cloned() == wanted;
    if let Some(map) = acls.as_object_mut() {
        let list = map.entry(key).or_insert_with(|| json!([]));
        if let Some(items) = list.as_array_mut() {
            items.retain(|v| !matches(v));
            if add {
                items.push(entry);
            }
        }
    }
    let updated = api
        .patch(
            &format!(
                "{}?api-version={API_VERSION}",
                account_path(api, &rg, &name)?
            ),
            &json!({ "properties": { "networkAcls": acls } }),
        )
        .await?;
    Ok(updated
        .pointer("/properties/networkAcls")
        .cloned()
        .unwrap_or(Value::Null))
}

pub(super) async fn run(api: &Api, cmd: AccountCommand) -> Result<Value> {
    Ok(match cmd {
        AccountCommand::Create {
            name,
            resource_group,
            hns,
            allow_shared_key_access,
            allow_blob_public_access,
            sku,
        } => {
            let mut properties = json!({ "isHnsEnabled": hns });
            if let Some(map) = properties.as_object_mut() {
                if let Some(allow) = allow_shared_key_access {
                    map.insert("allowSharedKeyAccess".into(), json!(allow));
                }
                if let Some(allow) = allow_blob_public_access {
                    map.insert("allowBlobPublicAccess".into(), json!(allow));
                }
            }
            let body = json!({ "location": "local", "kind": "StorageV2", "sku": { "name": sku }, "properties": properties });
            api.put(
                &format!(
                    "{}?api-version={API_VERSION}",
                    account_path(api, &resource_group, &name)?
                ),
                &body,
            )
            .await?
        }
        AccountCommand::Show {
            name,
            resource_group,
        } => {
            api.get(&format!(
                "{}?api-version={API_VERSION}",
                account_path(api, &resource_group, &name)?
            ))
            .await?
        }
        AccountCommand::List { resource_group } => {
            let sub = api.subscription()?;
            let path = match resource_group {
                Some(rg) => format!(
                    "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts",
                    segment(&rg)
                ),
                None => format!("/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts"),
            };
            api.get(&format!("{path}?api-version={API_VERSION}"))
                .await
                .map(values)?
        }
        AccountCommand::Update {
            name,
            resource_group,
            allow_shared_key_access,
            allow_blob_public_access,
            default_action,
            bypass,
        } => {
            let mut properties = json!({});
            if let Some(map) = properties.as_object_mut() {
                if let Some(allow) = allow_shared_key_access {
                    map.insert("allowSharedKeyAccess".into(), json!(allow));
                }
                if let Some(allow) = allow_blob_public_access {
                    map.insert("allowBlobPublicAccess".into(), json!(allow));
                }
            }
            if default_action.is_some() || bypass.is_some() {
                let mut acls = network_acls(api, &resource_group, &name).await?;
                if let Some(map) = acls.as_object_mut() {
                    if let Some(a) = default_action {
                        map.insert("defaultAction".into(), json!(a));
                    }
                    if let Some(b) = bypass {
                        map.insert("bypass".into(), json!(b));
                    }
                }
                if let Some(map) = properties.as_object_mut() {
                    map.insert("networkAcls".into(), acls);
                }
            }
            api.patch(
                &format!(
                    "{}?api-version={API_VERSION}",
                    account_path(api, &resource_group, &name)?
                ),
                &json!({ "properties": properties }),
            )
            .await?
        }
        AccountCommand::NetworkRule(cmd) => network_rule(api, cmd).await?,
        AccountCommand::Delete {
            name,
            resource_group,
        } => {
            api.delete(&format!(
                "{}?api-version={API_VERSION}",
                account_path(api, &resource_group, &name)?
            ))
            .await?
        }
        AccountCommand::Keys(KeysCommand::List {
            name,
            resource_group,
        }) => {
            let keys = api
                .post(
                    &format!(
                        "{}/listKeys?api-version={API_VERSION}",
                        account_path(api, &resource_group, &name)?
                    ),
                    &json!({}),
                )
                .await?;
            keys.get("keys").cloned().unwrap_or(Value::Null)
        }
        AccountCommand::Keys(KeysCommand::Renew {
            name,
            resource_group,
            key,
        }) => {
            let keys = api
                .post(
                    &format!(
                        "{}/regenerateKey?api-version={API_VERSION}",
                        account_path(api, &resource_group, &name)?
                    ),
                    &json!({ "keyName": key }),
                )
                .await?;
            keys.get("keys").cloned().unwrap_or(Value::Null)
        }
        AccountCommand::ShowConnectionString {
            name,
            resource_group,
        } => {
            let key = list_key(api, &resource_group, &name).await?;
            let endpoint = storage_url(api, &resource_group, &name).await?;
            json!({ "connectionString": format!("DefaultEndpointsProtocol=https;AccountName={name};AccountKey={key};BlobEndpoint={endpoint};") })
        }
    })
}

pub(super) async fn list_key(api: &Api, rg: &str, name: &str) -> Result<String> {
    let keys = api
        .post(
            &format!(
                "{}/listKeys?api-version={API_VERSION}",
                account_path(api, rg, name)?
            ),
            &json!({}),
        )
        .await?;
    keys.pointer("/keys/0/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no key in the reply")
}

pub(super) async fn storage_url(api: &Api, rg: &str, name: &str) -> Result<String> {
    let account = api
        .get(&format!(
            "{}?api-version={API_VERSION}",
            account_path(api, rg, name)?
        ))
        .await?;
    account
        .pointer("/properties/primaryEndpoints/blob")
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/').to_owned())
        .context("the account has no blob endpoint")
}
