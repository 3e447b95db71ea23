//! `keyless access explain`: the decision the server would make, and why.

use anyhow::{Result, bail};
use serde_json::json;

use crate::client::Api;
use crate::output::{Format, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccessCommand {
    /// Would PRINCIPAL be allowed ACTION (or DATA-ACTION) at SCOPE?
    Explain {
        /// User principal name, app id, object id or group name.
        #[arg(long = "as")]
        principal: String,
        #[arg(long, conflicts_with = "data_action")]
        action: Option<String>,
        #[arg(long)]
        data_action: Option<String>,
        #[arg(long)]
        scope: String,
    },
}

pub(crate) async fn run(cmd: AccessCommand, format: Format) -> Result<()> {
    let AccessCommand::Explain {
        principal,
        action,
        data_action,
        scope,
    } = cmd;
    if action.is_none() && data_action.is_none() {
        bail!("give --action or --data-action");
    }
    let api = Api::connect().await?;
    let body = json!({ "principal": principal, "action": action, "dataAction": data_action, "scope": scope });
    let answer = api.post("/access/explain", &body).await?;
    print(&answer, format);
    Ok(())
}
