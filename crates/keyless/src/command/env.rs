//! `keyless env`: the environment a client needs, as `export` lines.

use std::path::PathBuf;

use anyhow::Result;

use keyless_server::ServerInfo;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's data dir.
    #[arg(long, env = "KEYLESS_DATA_DIR", default_value = ".keyless")]
    data_dir: PathBuf,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let data_dir = std::path::absolute(&args.data_dir)?;
    let info = crate::client::read_info(&data_dir)?;
    for line in lines(&info) {
        println!("export {line}");
    }
    Ok(())
}

/// `NAME=value` lines, shell-quoted.
pub(crate) fn lines(info: &ServerInfo) -> Vec<String> {
    let mut vars: Vec<(&str, String)> = Vec::new();
    if let Some(ca) = &info.ca_file {
        let ca = ca.display().to_string();
        vars.push(("REQUESTS_CA_BUNDLE", ca.clone()));
        vars.push(("SSL_CERT_FILE", ca.clone()));
        vars.push(("KEYLESS_CA_FILE", ca));
    }
    vars.push(("AZURE_AUTHORITY_HOST", info.login.clone()));
    // `adfs` names the bootstrap tenant and makes MSAL skip its instance
    // discovery on the public cloud, so credentials work from the environment alone.
    vars.push(("AZURE_TENANT_ID", "adfs".into()));
    vars.push(("KEYLESS_TENANT_ID", info.tenant.clone()));
    // Managed-identity probes go to keyless's identity endpoint, never to 169.254.169.254.
    vars.push(("AZURE_POD_IDENTITY_AUTHORITY_HOST", info.identity.clone()));
    vars.push(("KEYLESS_LOGIN_URL", info.login.clone()));
    vars.push(("KEYLESS_MANAGEMENT_URL", info.management.clone()));
    vars.push(("KEYLESS_STORAGE_URL", info.storage.clone()));
    vars.push(("KEYLESS_VAULT_URL", info.vault.clone()));
    vars.push(("KEYLESS_IDENTITY_URL", info.identity.clone()));
    vars.into_iter()
        .map(|(k, v)| format!("{k}={}", quote(&v)))
        .collect()
}

fn quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/:._-@".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}
