//! `keyless admin …`: server administration.

use anyhow::Result;
use serde_json::json;

use crate::client::Api;
use crate::output::{Format, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AdminCommand {
    /// Make a new signing key current now (the previous one keeps verifying).
    RotateSigningKey,
    /// Reseal everything under a new master key (secret values are not touched).
    RotateMasterKey,
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TenantCommand {
    /// Create a tenant with its own subscription and administrator; prints the
    /// administrator's credentials once.
    Create {
        #[arg(long)]
        domain: String,
    },
}

pub(crate) async fn run(cmd: AdminCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let value = match cmd {
        AdminCommand::RotateSigningKey => api.post("/admin/signingKeys/rotate", &json!({})).await?,
        AdminCommand::RotateMasterKey => api.post("/admin/masterKey/rotate", &json!({})).await?,
        AdminCommand::Tenant(TenantCommand::Create { domain }) => {
            api.post("/admin/tenants", &json!({ "domain": domain }))
                .await?
        }
    };
    print(&value, format);
    Ok(())
}
