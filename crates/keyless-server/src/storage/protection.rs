//! Data protection: what an account keeps of the blobs and containers its users
//! overwrite or delete.
//!
//! Three settings, as Azure has them: blob soft delete (the service properties'
//! `DeleteRetentionPolicy`, also set through ARM's `blobServices/default`),
//! blob versioning and container soft delete (ARM's `isVersioningEnabled` and
//! `containerDeleteRetentionPolicy`). With versioning, every Put Blob, Put Block
//! List, Copy Blob and Set Blob Metadata leaves the state it replaces as a
//! version, and Delete Blob leaves the last one. With soft delete alone, an
//! overwrite leaves a deleted snapshot and a delete leaves the blob deleted;
//! Undelete Blob restores both until the retention days end.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use keyless_store::{Keep, RetainedKind, StorageAccount};

use super::error::StorageError;

/// Where the ARM-only settings live in the account's body.
const KEY: &str = "blobServices";
const DAY: i64 = 24 * 3600;

/// What an account keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Protection {
    /// Days a deleted or overwritten blob is kept (blob soft delete).
    pub(crate) blob_days: Option<u32>,
    /// Whether writes keep versions.
    pub(crate) versioning: bool,
    /// Days a deleted container is kept (container soft delete).
    pub(crate) container_days: Option<u32>,
}

/// The text of the first `<name>…</name>` in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml.get(start..)?.find(&format!("</{name}>"))? + start;
    xml.get(start..end).map(str::trim)
}

/// Reads a `<DeleteRetentionPolicy>` element: `Some(days)` when enabled.
pub(crate) fn parse_retention(xml: &str) -> Result<Option<u32>, StorageError> {
    let invalid = |why: &str| {
        StorageError::bad(
            "InvalidXmlNodeValue",
            format!(
                "The value for one of the XML nodes is not in the correct format: DeleteRetentionPolicy: {why}"
            ),
        )
    };
    let enabled = match element(xml, "Enabled") {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => return Err(invalid("Enabled is true or false")),
    };
    if !enabled {
        return Ok(None);
    }
    match element(xml, "Days").map(str::parse::<u32>) {
        Some(Ok(days)) if (1..=365).contains(&days) => Ok(Some(days)),
        _ => Err(invalid(
            "Days is a whole number from 1 to 365 when Enabled is true",
        )),
    }
}

/// The `<DeleteRetentionPolicy>` element of `days`.
pub(crate) fn retention_xml(days: Option<u32>) -> String {
    match days {
        Some(d) => format!(
            "<DeleteRetentionPolicy><Enabled>true</Enabled><Days>{d}</Days><AllowPermanentDelete>false</AllowPermanentDelete></DeleteRetentionPolicy>"
        ),
        None => "<DeleteRetentionPolicy><Enabled>false</Enabled></DeleteRetentionPolicy>".into(),
    }
}

impl Protection {
    /// The account's settings.
    pub(crate) fn of(account: &StorageAccount) -> Self {
        let blob_days = super::service::stored_element(account, "DeleteRetentionPolicy")
            .and_then(|xml| parse_retention(xml).ok().flatten());
        let arm = account.body.get(KEY);
        let versioning = arm
            .and_then(|a| a.get("isVersioningEnabled"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let container_days = arm
            .and_then(|a| a.get("containerDeleteRetentionPolicy"))
            .filter(|p| p.get("enabled").and_then(Value::as_bool) == Some(true))
            .and_then(|p| p.get("days"))
            .and_then(Value::as_u64)
            .and_then(|d| u32::try_from(d).ok());
        Self {
            blob_days,
            // Versions need a flat namespace, as in Azure.
            versioning: versioning && !account.hns,
            container_days,
        }
    }

    /// Stores the settings in the account's body: the blob retention with the
    /// service properties, the others beside them.
    pub(crate) fn store(self, account: &mut StorageAccount) {
        super::service::store_element(
            account,
            "DeleteRetentionPolicy",
            retention_xml(self.blob_days),
        );
        let days = |d: Option<u32>| match d {
            Some(d) => json!({ "enabled": true, "days": d }),
            None => json!({ "enabled": false }),
        };
        if let Some(map) = account.body.as_object_mut() {
            map.insert(
                KEY.to_owned(),
                json!({
                    "isVersioningEnabled": self.versioning,
                    "containerDeleteRetentionPolicy": days(self.container_days),
                }),
            );
        }
    }

    /// When a blob deleted now goes for good.
    fn deleted_window(self, now: i64) -> Option<(i64, i64)> {
        self.blob_days
            .map(|d| (now, now.saturating_add(i64::from(d).saturating_mul(DAY))))
    }

    /// The window of a container deleted now.
    pub(crate) fn container_window(self, now: i64) -> Option<(i64, i64)> {
        self.container_days
            .map(|d| (now, now.saturating_add(i64::from(d).saturating_mul(DAY))))
    }

    /// The version id a write gives the blob it writes.
    pub(crate) fn new_version(self) -> Option<String> {
        self.versioning.then(fresh_name)
    }

    /// What a write keeps of the blob it replaces: a version (always, for a
    /// blob that has a version id), or a deleted snapshot.
    pub(crate) fn on_overwrite(self, now: i64) -> Keep {
        self.keep(now, RetainedKind::Snapshot)
    }

    /// What a delete keeps of the blob it removes: a version, or the blob deleted.
    pub(crate) fn on_delete(self, now: i64) -> Keep {
        self.keep(now, RetainedKind::Deleted)
    }

    fn keep(self, now: i64, soft_kind: RetainedKind) -> Keep {
        let (kind, deleted) = if self.versioning {
            (Some(RetainedKind::Version), None)
        } else {
            match self.deleted_window(now) {
                Some(window) => (Some(soft_kind), Some(window)),
                None => (None, None),
            }
        };
        Keep {
            // Named only when it may be kept under a name of its own (a blob
            // with a version id is kept under that).
            id: kind.map(|_| fresh_name()).unwrap_or_default(),
            kind,
            deleted,
        }
    }

    /// How snapshots and versions deleted now are deleted: kept until the end of
    /// the window, or at once (`None`).
    pub(crate) fn soft(self, now: i64) -> Option<(i64, i64)> {
        self.deleted_window(now)
    }
}

/// The last name handed out, in 100 ns ticks since the epoch.
static LAST_TICK: AtomicU64 = AtomicU64::new(0);

/// A snapshot or version name: the current UTC time to the 100 ns, later than
/// every name this process handed out before, so no two states share one.
pub(crate) fn fresh_name() -> String {
    super::snapshot::name_at(u128::from(fresh_tick()) * 100)
}

/// A deleted container's version: a fresh tick in hexadecimal, as Azure writes
/// them (`01D60F8BB59A4652`).
pub(crate) fn container_version() -> String {
    format!("{:016X}", fresh_tick())
}

fn fresh_tick() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos() / 100).unwrap_or(u64::MAX));
    let mut last = LAST_TICK.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST_TICK.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_policies_read_as_azure_writes_them() {
        assert_eq!(parse_retention(&retention_xml(Some(7))).unwrap(), Some(7));
        assert_eq!(parse_retention(&retention_xml(None)).unwrap(), None);
        for bad in [
            "<DeleteRetentionPolicy><Enabled>true</Enabled></DeleteRetentionPolicy>",
            "<DeleteRetentionPolicy><Enabled>true</Enabled><Days>0</Days></DeleteRetentionPolicy>",
            "<DeleteRetentionPolicy><Enabled>true</Enabled><Days>366</Days></DeleteRetentionPolicy>",
            "<DeleteRetentionPolicy><Enabled>yes</Enabled></DeleteRetentionPolicy>",
        ] {
            assert!(parse_retention(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_handed_out_never_repeat_and_sort_in_order() {
        let names: Vec<String> = (0..1000).map(|_| fresh_name()).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "names go forward");
        assert!(names.iter().all(|n| super::super::snapshot::valid(n)));
    }
}
