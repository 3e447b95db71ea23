//! `Microsoft.Storage/storageAccounts/blobServices/default`: an account's data
//! protection settings as ARM shows them (`az storage account
//! blob-service-properties show|update`): blob soft delete, versioning and
//! container soft delete. The blob soft delete is the same setting as the
//! service properties' `DeleteRetentionPolicy` on the data plane.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::ResourceId;
use keyless_store::StorageAccount;

use super::caller::authorized;
use super::error::MgmtError;
use super::resources::ApiVersion;
use super::{Body, respond};
use crate::feed::Change;
use crate::state::SharedState;
use crate::storage::protection::Protection;

const TYPE: &str = "Microsoft.Storage/storageAccounts/blobServices";

pub(crate) fn router() -> Router<SharedState> {
    let mut r = Router::new();
    for rg in ["resourceGroups", "resourcegroups"] {
        let base = format!(
            "/subscriptions/{{sub}}/{rg}/{{rg}}/providers/Microsoft.Storage/storageAccounts/{{name}}/blobServices"
        );
        r = r.route(&base, get(list)).route(
            &format!("{base}/{{service}}"),
            get(show).put(put).patch(put),
        );
    }
    r
}

/// A retention policy as ARM writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Policy {
    enabled: Option<bool>,
    days: Option<u32>,
    allow_permanent_delete: Option<bool>,
}

/// A switch of a feature keyless does not have, accepted only off.
#[derive(Debug, Default, Deserialize)]
struct Switch {
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    is_versioning_enabled: Option<bool>,
    delete_retention_policy: Option<Policy>,
    container_delete_retention_policy: Option<Policy>,
    change_feed: Option<Switch>,
    restore_policy: Option<Switch>,
    last_access_time_tracking_policy: Option<Switch>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ServiceBody {
    #[serde(default)]
    properties: Properties,
}

fn policy_json(days: Option<u32>) -> Value {
    match days {
        Some(d) => json!({ "enabled": true, "days": d, "allowPermanentDelete": false }),
        None => json!({ "enabled": false, "allowPermanentDelete": false }),
    }
}

fn service_json(a: &StorageAccount) -> Value {
    let p = Protection::of(a);
    json!({
        "id": format!("{}/blobServices/default", a.id),
        "name": "default",
        "type": TYPE,
        "sku": a.body.get("sku").cloned().unwrap_or_else(|| json!({ "name": "Standard_LRS", "tier": "Standard" })),
        "properties": {
            "isVersioningEnabled": p.versioning,
            "deleteRetentionPolicy": policy_json(p.blob_days),
            "containerDeleteRetentionPolicy": policy_json(p.container_days),
            "changeFeed": { "enabled": false },
            "restorePolicy": { "enabled": false },
        },
    })
}

/// The days a policy asks for: `None` when it is off; 1 to 365 when on.
fn days_of(what: &str, p: &Policy, current: Option<u32>) -> Result<Option<u32>, MgmtError> {
    if p.allow_permanent_delete == Some(true) {
        return Err(MgmtError::bad_request(
            "InvalidRequestPropertyValue",
            format!(
                "{what}.allowPermanentDelete: keyless does not delete kept blobs before their retention ends"
            ),
        ));
    }
    match (p.enabled, p.days) {
        (Some(false), _) => Ok(None),
        (Some(true) | None, Some(d)) if (1..=365).contains(&d) => Ok(Some(d)),
        (Some(true), None) => Ok(current.or(Some(7))),
        (None, None) => Ok(current),
        (_, Some(d)) => Err(MgmtError::bad_request(
            "InvalidRequestPropertyValue",
            format!("{what}.days is from 1 to 365; {d} was given"),
        )),
    }
}

async fn account_for(
    state: &SharedState,
    headers: &HeaderMap,
    (sub, rg, name): (&str, &str, &str),
    service: &str,
    action: &str,
) -> Result<StorageAccount, MgmtError> {
    let id = format!(
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Storage/storageAccounts/{name}"
    );
    authorized(state, headers, sub, action, &ResourceId::parse(&id)?).await?;
    if service != "default" {
        return Err(MgmtError::not_found(
            "ResourceNotFound",
            format!("An account has one blob service, `default`; `{service}` was asked for."),
        ));
    }
    super::storage_accounts::existing(state, sub, rg, name).await
}

async fn list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let a = account_for(
            &state,
            &headers,
            (&sub, &rg, &name),
            "default",
            "Microsoft.Storage/storageAccounts/blobServices/read",
        )
        .await?;
        Ok((StatusCode::OK, json!({ "value": [service_json(&a)] })))
    })
    .await
}

async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name, service)): Path<(String, String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let a = account_for(
            &state,
            &headers,
            (&sub, &rg, &name),
            &service,
            "Microsoft.Storage/storageAccounts/blobServices/read",
        )
        .await?;
        Ok((StatusCode::OK, service_json(&a)))
    })
    .await
}

/// PUT and PATCH: the settings sent change; those not sent stay.
async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name, service)): Path<(String, String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<ServiceBody>,
) -> Response {
    respond(async {
        v.require()?;
        let mut a = account_for(
            &state,
            &headers,
            (&sub, &rg, &name),
            &service,
            "Microsoft.Storage/storageAccounts/blobServices/write",
        )
        .await?;
        let p = body.properties;
        for (what, switch) in [
            ("changeFeed", &p.change_feed),
            ("restorePolicy", &p.restore_policy),
            (
                "lastAccessTimeTrackingPolicy",
                &p.last_access_time_tracking_policy,
            ),
        ] {
            if switch.as_ref().and_then(|s| s.enabled) == Some(true) {
                return Err(MgmtError::bad_request(
                    "FeatureNotSupported",
                    format!("keyless has no {what}; it can only be off"),
                ));
            }
        }
        let mut protection = Protection::of(&a);
        if let Some(on) = p.is_versioning_enabled {
            if on && a.hns {
                return Err(MgmtError::bad_request(
                    "FeatureNotSupportedForAccount",
                    "Versioning is not supported on accounts with a hierarchical namespace.",
                ));
            }
            protection.versioning = on;
        }
        if let Some(policy) = &p.delete_retention_policy {
            protection.blob_days = days_of("deleteRetentionPolicy", policy, protection.blob_days)?;
        }
        if let Some(policy) = &p.container_delete_retention_policy {
            protection.container_days = days_of(
                "containerDeleteRetentionPolicy",
                policy,
                protection.container_days,
            )?;
        }
        protection.store(&mut a);
        state.store.account_update(&a).await?;
        state.changed(Change::Account(a.name.clone())).await?;
        Ok((StatusCode::OK, service_json(&a)))
    })
    .await
}
