//! `keyless access explain`: the decision the server would make, and why.

use anyhow::{Result, bail};
use serde_json::json;

use crate::client::{Api, segment};
use crate::output::{Format, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccessCommand {
    /// Would PRINCIPAL be allowed ACTION (or DATA-ACTION) at SCOPE, or on a data PATH
    /// (RBAC, then the path's ACLs on an HNS account)? With `--read URI -w WS -g RG`:
    /// which identity would read the URI in each context of the workspace (jobs by
    /// identity and compute, data preview), and whether it may.
    Explain {
        /// User principal name, app id, object id or group name.
        #[arg(long = "as")]
        principal: String,
        #[arg(long, conflicts_with = "data_action")]
        action: Option<String>,
        #[arg(long)]
        data_action: Option<String>,
        #[arg(long, required_unless_present_any = ["path", "read"])]
        scope: Option<String>,
        /// A data URI (`azureml://datastores/<d>/paths/<p>`, a storage URL) read in a workspace.
        #[arg(long, conflicts_with_all = ["scope", "path", "action", "data_action"], requires_all = ["workspace_name", "resource_group"])]
        read: Option<String>,
        #[arg(long, short = 'w')]
        workspace_name: Option<String>,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
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
        read,
        workspace_name,
        resource_group,
    } = cmd;
    let api = Api::connect().await?;
    if let (Some(uri), Some(ws), Some(rg)) = (read, workspace_name, resource_group) {
        let at = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}/explainRead?api-version=2024-10-01",
            api.subscription()?,
            segment(&rg),
            segment(&ws)
        );
        let answer = api
            .post(&at, &json!({ "principal": principal, "uri": uri }))
            .await?;
        print(&answer, format);
        return Ok(());
    }
    if action.is_none() && data_action.is_none() {
        bail!("give --action or --data-action (or --read URI -w WORKSPACE -g GROUP)");
    }
    let body = json!({ "principal": principal, "action": action, "dataAction": data_action, "scope": scope, "path": path });
    let answer = api.post("/access/explain", &body).await?;
    print(&answer, format);
    Ok(())
}
