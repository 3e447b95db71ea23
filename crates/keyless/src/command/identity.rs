//! `keyless identity …`: user-assigned managed identities, like `az identity`.

use anyhow::Result;
use serde_json::json;

use crate::client::{Api, segment};
use crate::output::{Format, print};

const API_VERSION: &str = "2023-01-31";

#[derive(Debug, clap::Args)]
pub(crate) struct IdentityArgs {
    /// The subscription (default: the signed-in account's).
    #[arg(long, global = true)]
    subscription: Option<String>,
    #[command(subcommand)]
    command: IdentityCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum IdentityCommand {
    /// Create (or update) an identity.
    Create {
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'l')]
        location: Option<String>,
    },
    /// Show an identity.
    Show {
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, short = 'n')]
        name: String,
    },
    /// List the identities of a resource group.
    List {
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// Delete an identity (its service principal goes with it).
    Delete {
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, short = 'n')]
        name: String,
    },
}

pub(crate) async fn run(args: IdentityArgs, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let sub = match args.subscription {
        Some(sub) => sub,
        None => api.subscription()?,
    };
    let cmd = args.command;
    let base = |rg: &str| {
        format!(
            "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
            segment(rg)
        )
    };
    let value = match cmd {
        IdentityCommand::Create {
            resource_group,
            name,
            location,
        } => {
            let body = json!({ "location": location.unwrap_or_else(|| "local".into()) });
            api.put(
                &format!(
                    "{}/{}?api-version={API_VERSION}",
                    base(&resource_group),
                    segment(&name)
                ),
                &body,
            )
            .await?
        }
        IdentityCommand::Show {
            resource_group,
            name,
        } => {
            api.get(&format!(
                "{}/{}?api-version={API_VERSION}",
                base(&resource_group),
                segment(&name)
            ))
            .await?
        }
        IdentityCommand::List { resource_group } => api
            .get(&format!(
                "{}?api-version={API_VERSION}",
                base(&resource_group)
            ))
            .await
            .map(crate::client::values)?,
        IdentityCommand::Delete {
            resource_group,
            name,
        } => {
            api.delete(&format!(
                "{}/{}?api-version={API_VERSION}",
                base(&resource_group),
                segment(&name)
            ))
            .await?
        }
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}
