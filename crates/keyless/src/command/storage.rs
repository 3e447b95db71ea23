//! `keyless storage …`, shaped like `az storage`: accounts through the management
//! API ([`account`]), containers and blobs through the Blob REST API ([`data`]),
//! and the storage log.

mod account;
pub(crate) mod data;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::client::{Api, segment};
use crate::output::{Format, print, print_lines};

pub(crate) use account::AccountCommand;
pub(crate) use data::{BlobCommand, ContainerCommand, encode_path, xml_values};

const API_VERSION: &str = "2023-05-01";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StorageCommand {
    /// Storage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Blobs.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// The storage log of an account: who touched which data, as JSON lines.
    Logs {
        /// The account.
        #[arg(long)]
        account: String,
        #[arg(long, short = 'g', default_value = "default")]
        resource_group: String,
        /// From this time on: RFC 3339, or an age such as `15m`, `2h`, `1d`.
        #[arg(long)]
        since: Option<String>,
        /// Only this requester: object id or UPN.
        #[arg(long)]
        principal: Option<String>,
        /// Only paths starting with this (`container/dir/`).
        #[arg(long)]
        path_prefix: Option<String>,
        /// Only this HTTP status.
        #[arg(long)]
        status: Option<u16>,
    },
}

pub(crate) async fn run(cmd: StorageCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let value = match cmd {
        StorageCommand::Account(cmd) => account::run(&api, cmd).await?,
        StorageCommand::Container(cmd) => data::container(&api, cmd).await?,
        StorageCommand::Blob(cmd) => data::blob(&api, cmd).await?,
        StorageCommand::Logs {
            account,
            resource_group,
            since,
            principal,
            path_prefix,
            status,
        } => {
            let mut query = vec![("api-version", API_VERSION.to_owned())];
            if let Some(since) = since {
                query.push(("since", absolute_time(&since)?));
            }
            query.extend(principal.map(|p| ("principal", p)));
            query.extend(path_prefix.map(|p| ("pathPrefix", p)));
            query.extend(status.map(|s| ("status", s.to_string())));
            let encoded = serde_urlencoded::to_string(&query)?;
            let reply = api
                .get(&format!(
                    "{}/logs?{encoded}",
                    account_path(&api, &resource_group, &account)?
                ))
                .await?;
            print_lines(&reply);
            Value::Null
        }
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}

/// An RFC 3339 time from itself or from an age (`90s`, `15m`, `2h`, `1d`).
fn absolute_time(text: &str) -> Result<String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.to_string());
    }
    let split = text.len().saturating_sub(1);
    let (number, unit) = (
        text.get(..split).unwrap_or(""),
        text.get(split..).unwrap_or(""),
    );
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let Ok(n) = number.parse::<i64>() else {
        bail!("--since takes an RFC 3339 time or an age such as 15m, 2h or 1d, not `{text}`");
    };
    if seconds == 0 {
        bail!("--since takes an RFC 3339 time or an age such as 15m, 2h or 1d, not `{text}`");
    }
    let then = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(n.saturating_mul(seconds));
    Ok(then.to_string())
}

pub(super) fn account_path(api: &Api, rg: &str, name: &str) -> Result<String> {
    Ok(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
        api.subscription()?,
        segment(rg),
        segment(name)
    ))
}
