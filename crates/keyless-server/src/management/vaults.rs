//! `Microsoft.KeyVault/vaults`: vaults in RBAC authorization mode, soft-deleted
//! by default, purged on request (unless purge protection is on).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::{ErrorKind, ResourceId};
use keyless_store::Vault;

use super::caller::{authenticate, authorized, readable, subscription_of_caller};
use super::error::MgmtError;
use super::resources::ApiVersion;
use super::{Body, respond};
use crate::state::SharedState;

const TYPE: &str = "Microsoft.KeyVault/vaults";

pub(crate) fn router() -> Router<SharedState> {
    let mut r = Router::new()
        .route(
            &format!("/subscriptions/{{sub}}/providers/{TYPE}"),
            get(list_subscription),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.KeyVault/deletedVaults",
            get(list_deleted),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.KeyVault/checkNameAvailability",
            post(check_name),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}/purge",
            post(purge),
        );
    for rg in ["resourceGroups", "resourcegroups"] {
        let base = format!("/subscriptions/{{sub}}/{rg}/{{rg}}/providers/{TYPE}");
        r = r
            .route(&base, get(list_group))
            .route(
                &format!("{base}/{{name}}"),
                get(show).put(put).delete(delete),
            )
            .route(&format!("{base}/{{name}}/logs"), get(logs));
    }
    r
}

/// `POST …/providers/Microsoft.KeyVault/checkNameAvailability`: whether a vault
/// may take a name (a soft-deleted vault still holds its name).
async fn check_name(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let answer = super::name_availability(&body, TYPE, |name| async move {
            if let Err(e) = validate_name(&name) {
                return Ok(Some(("AccountNameInvalid", e.message())));
            }
            Ok(state.store.vault(&name).await?.map(|v| {
                let why = if v.deleted_at.is_some() {
                    "is in a deleted but recoverable state"
                } else {
                    "is already in use"
                };
                ("AlreadyExists", format!("The vault name '{name}' {why}."))
            }))
        })
        .await?;
        Ok((StatusCode::OK, answer))
    })
    .await
}

fn vault_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{TYPE}/{name}")
}

fn validate_name(name: &str) -> Result<(), MgmtError> {
    let b = name.as_bytes();
    let valid = (3..=24).contains(&b.len())
        && b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && !name.contains("--");
    if crate::vault::RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(MgmtError::bad_request(
            "VaultNameNotValid",
            format!("The vault name '{name}' is reserved: secret ids begin with it."),
        ));
    }
    if valid {
        return Ok(());
    }
    Err(MgmtError::bad_request(
        "VaultNameNotValid",
        format!(
            "The vault name '{name}' is invalid: 3–24 letters, digits and single dashes, starting with a letter."
        ),
    ))
}

fn vault_json(state: &SharedState, v: &Vault) -> Value {
    let props = v
        .body
        .get("properties")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let get_bool = |k: &str, d: bool| props.get(k).and_then(Value::as_bool).unwrap_or(d);
    json!({
        "id": v.id,
        "name": v.name,
        "type": TYPE,
        "location": v.location,
        "tags": v.body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "properties": {
            "tenantId": v.tenant_id.to_string(),
            "sku": { "family": "A", "name": "standard" },
            "enableRbacAuthorization": true,
            "enableSoftDelete": get_bool("enableSoftDelete", true),
            "softDeleteRetentionInDays": props.get("softDeleteRetentionInDays").and_then(Value::as_i64).unwrap_or(90),
            "enablePurgeProtection": get_bool("enablePurgeProtection", false),
            "vaultUri": format!("{}/{}", state.urls.vault, v.name),
            "provisioningState": "Succeeded",
        },
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VaultBody {
    location: Option<String>,
    tags: Option<Value>,
    #[serde(default)]
    properties: Value,
}

async fn existing(
    state: &SharedState,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<Vault, MgmtError> {
    state
        .store
        .vault(&name.to_ascii_lowercase())
        .await?
        .filter(|v| {
            v.deleted_at.is_none()
                && v.subscription_id.eq_ignore_ascii_case(sub)
                && v.resource_group.eq_ignore_ascii_case(rg)
        })
        .ok_or_else(|| {
            MgmtError::not_found(
                "ResourceNotFound",
                format!("The Resource '{TYPE}/{name}' under resource group '{rg}' was not found."),
            )
        })
}

async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<VaultBody>,
) -> Response {
    respond(async {
        v.require()?;
        validate_name(&name)?;
        let name = name.to_ascii_lowercase();
        let scope = ResourceId::parse(&vault_id(&sub, &rg, &name))?;
        let caller = authorized(&state, &headers, &sub, "Microsoft.KeyVault/vaults/write", &scope).await?;
        if state.store.resource_group(&sub, &rg).await?.is_none() {
            return Err(MgmtError::not_found("ResourceGroupNotFound", format!("Resource group '{rg}' could not be found.")));
        }
        let mut properties = json!({});
        for key in ["enableSoftDelete", "softDeleteRetentionInDays", "enablePurgeProtection"] {
            if let (Some(value), Some(map)) = (body.properties.get(key), properties.as_object_mut()) {
                map.insert(key.to_owned(), value.clone());
            }
        }
        if let Some(days) = properties.get("softDeleteRetentionInDays").and_then(Value::as_i64)
            && !(7..=90).contains(&days)
        {
            return Err(MgmtError::bad_request("BadRequest", "softDeleteRetentionInDays must lie between 7 and 90"));
        }
        if let Some(mut current) = state.store.vault(&name).await? {
            let ours = current.deleted_at.is_none()
                && current.subscription_id.eq_ignore_ascii_case(&sub)
                && current.resource_group.eq_ignore_ascii_case(&rg);
            if !ours {
                let why = if current.deleted_at.is_some() {
                    "is in a deleted but recoverable state; purge it to reuse the name"
                } else {
                    "is already in use"
                };
                return Err(MgmtError::new(StatusCode::CONFLICT, "VaultAlreadyExists", format!("The vault name '{name}' {why}.")));
            }
            let protected = current.body.pointer("/properties/enablePurgeProtection").and_then(Value::as_bool).unwrap_or(false);
            if protected && properties.get("enablePurgeProtection").and_then(Value::as_bool) == Some(false) {
                return Err(MgmtError::bad_request("BadRequest", "Purge protection cannot be turned off once on."));
            }
            if let Some(map) = current.body.as_object_mut() {
                let merged = map.entry("properties").or_insert_with(|| json!({}));
                if let (Some(m), Some(new)) = (merged.as_object_mut(), properties.as_object()) {
                    m.extend(new.clone());
                }
                if let Some(tags) = body.tags.clone() {
                    map.insert("tags".into(), tags);
                }
            }
            state.store.vault_update(&current).await?;
            return Ok((StatusCode::OK, vault_json(&state, &current)));
        }
        let location = body.location.clone().unwrap_or_else(|| "local".into());
        let stored = json!({ "properties": properties, "tags": body.tags.clone().unwrap_or_else(|| json!({})) });
        let vault = create(&state, caller.principal.tenant_id, &sub, &rg, &name, stored, location).await?;
        tracing::info!(actor = %caller.principal.object_id, vault = %name, "vault created");
        Ok((StatusCode::OK, vault_json(&state, &vault)))
    })
    .await
}

/// Creates a vault in RBAC mode; `409` when the name is taken.
pub(crate) async fn create(
    state: &SharedState,
    tenant: keyless_core::TenantId,
    sub: &str,
    rg: &str,
    name: &str,
    body: Value,
    location: String,
) -> Result<Vault, MgmtError> {
    validate_name(name)?;
    let vault = Vault {
        name: name.to_owned(),
        id: vault_id(sub, rg, name),
        tenant_id: tenant,
        subscription_id: sub.to_owned(),
        resource_group: rg.to_owned(),
        location,
        body,
        created_at: state.now(),
        deleted_at: None,
    };
    match state.store.vault_create(&vault).await {
        Ok(()) => Ok(vault),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(MgmtError::new(
            StatusCode::CONFLICT,
            "VaultAlreadyExists",
            format!("The vault name '{name}' is already in use."),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::parse(&vault_id(&sub, &rg, &name))?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.KeyVault/vaults/read",
            &scope,
        )
        .await?;
        let vault = existing(&state, &sub, &rg, &name).await?;
        Ok((StatusCode::OK, vault_json(&state, &vault)))
    })
    .await
}

async fn delete(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::parse(&vault_id(&sub, &rg, &name))?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.KeyVault/vaults/delete",
            &scope,
        )
        .await?;
        let Ok(mut vault) = existing(&state, &sub, &rg, &name).await else {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        };
        let soft = vault
            .body
            .pointer("/properties/enableSoftDelete")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if soft {
            vault.deleted_at = Some(state.now());
            state.store.vault_update(&vault).await?;
        } else {
            state.store.vault_purge(&vault.name).await?;
        }
        Ok((StatusCode::OK, Value::Null))
    })
    .await
}

async fn list_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg)): Path<(String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::subscription(&sub).child("resourceGroups", &rg)?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.KeyVault/vaults/read",
            &scope,
        )
        .await?;
        let value: Vec<Value> = state
            .store
            .vaults(&sub, Some(&rg), false)
            .await?
            .iter()
            .map(|v| vault_json(&state, v))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

async fn list_subscription(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = authenticate(&state, &headers).await?;
        subscription_of_caller(&state, &caller, &sub).await?;
        let vaults = state.store.vaults(&sub, None, false).await?;
        let value: Vec<Value> = readable(
            &state,
            &caller,
            "Microsoft.KeyVault/vaults/read",
            vaults,
            |v| &v.id,
        )
        .iter()
        .map(|v| vault_json(&state, v))
        .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

fn deleted_json(v: &Vault) -> Value {
    json!({
        "id": format!("/subscriptions/{}/providers/Microsoft.KeyVault/locations/{}/deletedVaults/{}", v.subscription_id, v.location, v.name),
        "name": v.name,
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {
            "vaultId": v.id,
            "location": v.location,
            "deletionDate": jiff::Timestamp::from_second(v.deleted_at.unwrap_or_default()).map(|t| t.to_string()).unwrap_or_default(),
            "purgeProtectionEnabled": v.body.pointer("/properties/enablePurgeProtection").and_then(Value::as_bool).unwrap_or(false),
        },
    })
}

async fn list_deleted(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(sub): Path<String>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.KeyVault/deletedVaults/read",
            &ResourceId::subscription(&sub),
        )
        .await?;
        let value: Vec<Value> = state
            .store
            .vaults(&sub, None, true)
            .await?
            .iter()
            .map(deleted_json)
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

async fn purge(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, _location, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.KeyVault/locations/deletedVaults/purge/action",
            &ResourceId::subscription(&sub),
        )
        .await?;
        let vault = state
            .store
            .vault(&name.to_ascii_lowercase())
            .await?
            .filter(|v| v.deleted_at.is_some() && v.subscription_id.eq_ignore_ascii_case(&sub))
            .ok_or_else(|| MgmtError::not_found("ResourceNotFound", format!("The deleted vault '{name}' was not found.")))?;
        if vault.body.pointer("/properties/enablePurgeProtection").and_then(Value::as_bool).unwrap_or(false) {
            return Err(MgmtError::new(
                StatusCode::CONFLICT,
                "PurgeProtectionEnabled",
                "The vault has purge protection: it is purged when its retention period ends, not before.",
            ));
        }
        state.store.vault_purge(&vault.name).await?;
        Ok((StatusCode::OK, Value::Null))
    })
    .await
}

/// The vault's access log: who read or changed which secret version.
async fn logs(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(q): Query<crate::storage_log::LogQuery>,
) -> Response {
    respond(async {
        let scope = ResourceId::parse(&vault_id(&sub, &rg, &name))?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.Insights/logs/read",
            &scope,
        )
        .await?;
        let vault = existing(&state, &sub, &rg, &name).await?;
        let (filter, top) = q.filter(vault.name);
        let records = state.vault_log.query(filter, top).await?;
        Ok((StatusCode::OK, json!({ "value": records })))
    })
    .await
}
