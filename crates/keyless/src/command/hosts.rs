//! `keyless hosts`: the `/etc/hosts` lines that make the storage, vault and
//! registry host names Azure SDKs, az and container tools build themselves
//! (`<account>.blob.<storage suffix>`, `<vault>.vault.<zone>`, a registry's login
//! server `<registry>.azurecr.<zone>`) reach keyless.
//!
//! azure-ai-ml builds such names when it uploads a local file input or reads a
//! datastore on its own. keyless answers them on its storage listener (the host
//! names the account) with a certificate that covers them; the machine only has
//! to resolve them to the listener's address.

use anyhow::Result;
use serde_json::Value;

use crate::client::{Api, values};

/// The api-version the storage account list is read with.
const API_VERSION: &str = "2023-05-01";
/// The api-version the vault and registry lists are read with.
const VAULT_API_VERSION: &str = "2023-07-01";

pub(crate) async fn run() -> Result<()> {
    let api = Api::connect().await?;
    let sub = api.subscription()?;
    let accounts = api
        .get(&format!(
            "/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts?api-version={API_VERSION}"
        ))
        .await
        .map(values)?;
    let address = std::env::var("KEYLESS_STORAGE_URL")
        .ok()
        .and_then(|u| host_of(&u))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    println!(
        "# keyless storage accounts; append to /etc/hosts (names under {})",
        keyless_server::cloud::STORAGE_ZONE
    );
    for name in accounts
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.get("name").and_then(Value::as_str))
    {
        println!("{}", line(&address, name));
    }
    // Vaults, by the names az gives them (`<vault>.vault.<zone>`).
    let vaults = api
        .get(&format!(
            "/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults?api-version={VAULT_API_VERSION}"
        ))
        .await
        .map(values)?;
    let vault_address = std::env::var("KEYLESS_VAULT_URL")
        .ok()
        .and_then(|u| host_of(&u))
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    for name in vaults
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
    {
        println!(
            "{vault_address} {name}.vault.{}",
            keyless_server::cloud::DNS_ZONE
        );
    }
    // Registries, by their login servers (the port is the client's to give).
    let registries = api
        .get(&format!(
            "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/registries?api-version={VAULT_API_VERSION}"
        ))
        .await
        .map(values)?;
    for name in registries
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("name").and_then(Value::as_str))
    {
        println!(
            "{vault_address} {name}.{}",
            keyless_server::cloud::REGISTRY_ZONE
        );
    }
    Ok(())
}

/// The address part of a listener URL, when it is an IP address.
fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let host = rest.rsplit_once(':').map_or(rest, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| ip.to_string())
}

fn line(address: &str, account: &str) -> String {
    let zone = keyless_server::cloud::STORAGE_ZONE;
    format!("{address} {account}.blob.{zone} {account}.dfs.{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_names_the_blob_and_dfs_hosts_of_an_account() {
        assert_eq!(
            line("127.0.0.1", "censusdata"),
            "127.0.0.1 censusdata.blob.core.keyless.localhost censusdata.dfs.core.keyless.localhost"
        );
        assert_eq!(
            host_of("https://127.0.0.1:10000").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(host_of("https://[::1]:10000").as_deref(), Some("::1"));
        assert_eq!(host_of("https://keyless.example:10000"), None);
    }
}
