//! `keyless monitor activity-log list`, like `az monitor activity-log list`: who
//! changed what, where and when, from the management listener's activity log.

use anyhow::{Result, bail};

use crate::client::{Api, values};
use crate::output::{Format, print};

const API_VERSION: &str = "2015-04-01";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum MonitorCommand {
    /// The activity log: management writes and their outcomes.
    #[command(name = "activity-log", subcommand)]
    ActivityLog(ActivityLogCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ActivityLogCommand {
    /// List events, newest first (the last 6 hours unless told otherwise).
    List {
        /// Only this resource group.
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        /// Only events on this resource (its ARM id, as the event names it).
        #[arg(long)]
        resource_id: Option<String>,
        /// Only this caller (a UPN or an object id).
        #[arg(long)]
        caller: Option<String>,
        /// Only this correlation id (a request's `x-ms-request-id`).
        #[arg(long)]
        correlation_id: Option<String>,
        /// Only `Succeeded` or `Failed`.
        #[arg(long)]
        status: Option<String>,
        /// How far back: `30m`, `6h`, `7d` (az's default is 6h).
        #[arg(long, conflicts_with = "start_time")]
        offset: Option<String>,
        /// From this time (RFC 3339).
        #[arg(long)]
        start_time: Option<String>,
        /// Until this time (RFC 3339).
        #[arg(long)]
        end_time: Option<String>,
        /// The directory's events (users, groups, applications), which belong to no
        /// subscription; needs Global Administrator.
        #[arg(long)]
        directory: bool,
        /// At most this many events.
        #[arg(long, default_value_t = 50)]
        max_events: usize,
    },
}

pub(crate) async fn run(cmd: MonitorCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let MonitorCommand::ActivityLog(ActivityLogCommand::List {
        resource_group,
        resource_id,
        caller,
        correlation_id,
        status,
        offset,
        start_time,
        end_time,
        directory,
        max_events,
    }) = cmd;
    let start = match (start_time, offset) {
        (Some(t), _) => t,
        (None, offset) => {
            let seconds = offset.as_deref().map_or(Ok(6 * 3600), parse_offset)?;
            let now = jiff::Timestamp::now().as_second();
            jiff::Timestamp::from_second(now - seconds)?.to_string()
        }
    };
    let mut clauses = vec![format!("eventTimestamp ge '{start}'")];
    if let Some(end) = end_time {
        clauses.push(format!("eventTimestamp le '{end}'"));
    }
    for (field, value) in [
        ("resourceGroupName", resource_group),
        ("resourceUri", resource_id),
        ("caller", caller),
        ("correlationId", correlation_id),
        ("status", status),
    ] {
        if let Some(v) = value {
            if v.contains('\'') {
                bail!("`{v}`: a value cannot hold a quote");
            }
            clauses.push(format!("{field} eq '{v}'"));
        }
    }
    let base = if directory {
        String::new()
    } else {
        format!("/subscriptions/{}", api.subscription()?)
    };
    let filter = clauses.join(" and ");
    let query = serde_urlencoded::to_string([("api-version", API_VERSION), ("$filter", &filter)])?;
    let reply = api
        .get(&format!(
            "{base}/providers/Microsoft.Insights/eventtypes/management/values?{query}"
        ))
        .await?;
    let mut events = values(reply);
    if let Some(list) = events.as_array_mut() {
        list.truncate(max_events);
    }
    print(&events, format);
    Ok(())
}

/// `30m`, `6h`, `7d` or plain seconds.
fn parse_offset(text: &str) -> Result<i64> {
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = number.parse().map_err(|_| {
        anyhow::anyhow!("--offset `{text}`: give a number and m, h or d, such as 6h")
    })?;
    Ok(match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--offset `{text}`: the unit must be m, h or d"),
    })
}
