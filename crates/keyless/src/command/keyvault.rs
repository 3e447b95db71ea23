//! `keyless keyvault …`: vaults, shaped like `az keyvault` (RBAC authorization mode).

use anyhow::Result;
use serde_json::json;

use crate::client::{Api, segment, values};
use crate::output::{Format, print};

const API_VERSION: &str = "2023-07-01";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeyvaultCommand {
    /// Create a vault (soft delete on, 90 days' retention unless told otherwise).
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        /// Days a deleted vault or secret can be recovered (7–90).
        #[arg(long)]
        retention_days: Option<i64>,
        /// Deleted secrets and vaults cannot be purged before their retention ends.
        #[arg(long)]
        enable_purge_protection: bool,
    },
    /// Show a vault.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// List the vaults of the subscription or of a resource group.
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a vault (recoverable until purged, with soft delete).
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// Purge a deleted vault for good.
    Purge {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
    },
    /// List deleted vaults.
    ListDeleted,
    /// The vault's access log (who read or changed which secret version), as JSON lines.
    Logs {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
}

fn vault_path(api: &Api, rg: &str, name: &str) -> Result<String> {
    Ok(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}?api-version={API_VERSION}",
        api.subscription()?,
        segment(rg),
        segment(name)
    ))
}

pub(crate) async fn run(cmd: KeyvaultCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let sub = api.subscription()?;
    let value = match cmd {
        KeyvaultCommand::Create {
            name,
            resource_group,
            retention_days,
            enable_purge_protection,
        } => {
            let mut properties = json!({ "enableSoftDelete": true, "enableRbacAuthorization": true });
            if let Some(map) = properties.as_object_mut() {
                if let Some(days) = retention_days {
                    map.insert("softDeleteRetentionInDays".into(), json!(days));
                }
                if enable_purge_protection {
                    map.insert("enablePurgeProtection".into(), json!(true));
                }
            }
            api.put(
                &vault_path(&api, &resource_group, &name)?,
                &json!({ "location": "local", "properties": properties }),
            )
            .await?
        }
        KeyvaultCommand::Show {
            name,
            resource_group,
        } => api.get(&vault_path(&api, &resource_group, &name)?).await?,
        KeyvaultCommand::List { resource_group } => {
            let path = match resource_group {
                Some(rg) => format!(
                    "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults?api-version={API_VERSION}",
                    segment(&rg)
                ),
                None => format!(
                    "/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults?api-version={API_VERSION}"
                ),
            };
            api.get(&path).await.map(values)?
        }
        KeyvaultCommand::Delete {
            name,
            resource_group,
        } => api.delete(&vault_path(&api, &resource_group, &name)?).await?,
        KeyvaultCommand::Purge { name, location } => {
            api.post(
                &format!(
                    "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{}/purge?api-version={API_VERSION}",
                    segment(&location),
                    segment(&name)
                ),
                &json!({}),
            )
            .await?
        }
        KeyvaultCommand::Logs {
            name,
            resource_group,
        } => {
            let path = vault_path(&api, &resource_group, &name)?.replacen("?api-version", "/logs?api-version", 1);
            let reply = api.get(&path).await?;
            for record in reply.get("value").and_then(serde_json::Value::as_array).into_iter().flatten() {
                crate::output::out(&record.to_string());
            }
            serde_json::Value::Null
        }
        KeyvaultCommand::ListDeleted => api
            .get(&format!(
                "/subscriptions/{sub}/providers/Microsoft.KeyVault/deletedVaults?api-version={API_VERSION}"
            ))
            .await
            .map(values)?,
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}
