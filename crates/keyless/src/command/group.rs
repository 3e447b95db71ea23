//! `keyless group …`: resource groups, like `az group`.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Result, bail};
use serde_json::json;

use crate::client::{Api, segment, values};
use crate::output::{Format, print};

const API_VERSION: &str = "2021-04-01";

#[derive(Debug, clap::Args)]
pub(crate) struct GroupArgs {
    /// The subscription (default: the signed-in account's).
    #[arg(long, global = true)]
    subscription: Option<String>,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a resource group (or leave an existing one as it is).
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'l', default_value = "local")]
        location: String,
    },
    /// List resource groups.
    List,
    /// Show a resource group.
    Show {
        #[arg(long, short = 'n')]
        name: String,
    },
    /// Delete a resource group with everything in it and every role assignment at or below it.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub(crate) async fn run(args: GroupArgs, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let sub = match args.subscription {
        Some(s) => s,
        None => api.subscription()?,
    };
    let path = |rg: &str| {
        format!(
            "/subscriptions/{sub}/resourcegroups/{}?api-version={API_VERSION}",
            segment(rg)
        )
    };
    let value = match args.command {
        GroupCommand::Create { name, location } => {
            api.put(&path(&name), &json!({ "location": location }))
                .await?
        }
        GroupCommand::List => api
            .get(&format!(
                "/subscriptions/{sub}/resourcegroups?api-version={API_VERSION}"
            ))
            .await
            .map(values)?,
        GroupCommand::Show { name } => api.get(&path(&name)).await?,
        GroupCommand::Delete { name, yes } => {
            if !yes
                && !confirm(&format!(
                    "Delete resource group `{name}` with everything in it and every role assignment at or below it?"
                ))?
            {
                bail!("not deleted");
            }
            api.delete(&path(&name)).await?
        }
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}

/// Asks on the terminal; without one, refuses and says how to confirm.
pub(crate) fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} Pass --yes to confirm when there is no terminal to ask on");
    }
    eprint!("{question} (y/n): ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
