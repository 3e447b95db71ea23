//! `keyless access explain`: the decision the server would make, and why.

use anyhow::{Result, bail};
use serde_json::json;

use crate::client::Api;
use crate::output::{Format, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccessCommand {
    /// Would PRINCIPAL be allowed ACTION (or DATA-ACTION) at SCOPE, or on a data PATH
    /// (RBAC, then the path's ACLs on an HNS account)?
    Explain {
        /// User principal name, app id, object id or group name.
        #[arg(long = "as")]
        principal: String,
        #[arg(long, conflicts_with = "data_action")]
        action: Option<String>,
        #[arg(long)]
        data_action: Option<String>,
        #[arg(long, required_unless_present = "path")]
        scope: Option<String>,
        /// `abfss://fs@account.dfs.core.windows.net/dir/file` or `https://host/account/fs/dir/file`.
        #[arg(long, conflicts_with = "scope")]
        path: Option<String>,
    },
}

pub(crate) async fn run(cmd: AccessCommand, format: Format) -> Result<()> {
    let AccessCommand::Explain {
        principal,
        action,
        data_action,
        scope,
        path,
    } = cmd;
    if action.is_none() && data_action.is_none() {
        bail!("give --action or --data-action");
    }
    let api = Api::connect().await?;
    let body = json!({ "principal": principal, "action": action, "dataAction": data_action, "scope": scope, "path": path });
    let answer = api.post("/access/explain", &body).await?;
    print(&answer, format);
    Ok(())
}
