//! `Microsoft.Storage/storageAccounts`: accounts and their keys.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::secret;
use keyless_core::{ErrorKind, ResourceId};
use keyless_store::StorageAccount;

use super::caller::{Caller, authenticate, authorized, readable, subscription_of_caller};
use super::error::MgmtError;
use super::resources::ApiVersion;
use super::{Body, respond};
use crate::feed::Change;
use crate::state::SharedState;

const TYPE: &str = "Microsoft.Storage/storageAccounts";

pub(crate) fn router() -> Router<SharedState> {
    let mut r = Router::new()
        .route(
            &format!("/subscriptions/{{sub}}/providers/{TYPE}"),
            get(list_subscription),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.Storage/checkNameAvailability",
            post(check_name),
        );
    for rg in ["resourceGroups", "resourcegroups"] {
        let base = format!("/subscriptions/{{sub}}/{rg}/{{rg}}/providers/{TYPE}");
        r = r
            .route(&base, get(list_group))
            .route(
                &format!("{base}/{{name}}"),
                get(show).put(put).patch(patch).delete(delete),
            )
            .route(&format!("{base}/{{name}}/listKeys"), post(list_keys))
            .route(&format!("{base}/{{name}}/logs"), get(logs))
            .route(
                &format!("{base}/{{name}}/regenerateKey"),
                post(regenerate_key),
            );
    }
    r
}

fn account_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{TYPE}/{name}")
}

fn validate_name(name: &str) -> Result<(), MgmtError> {
    let ok = (3..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        return Ok(());
    }
    Err(MgmtError::bad_request(
        "AccountNameInvalid",
        format!(
            "{name} is not a valid storage account name. Storage account name must be between 3 and 24 characters in length and use numbers and lower-case letters only."
        ),
    ))
}

/// Whether containers of the account may be opened to anonymous reads (Azure's
/// default for new accounts: no).
pub(crate) fn public_access_allowed(a: &StorageAccount) -> bool {
    a.body
        .get("allowBlobPublicAccess")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn account_json(state: &SharedState, a: &StorageAccount) -> Value {
    let endpoint = format!("{}/{}/", state.urls.storage, a.name);
    json!({
        "id": a.id,
        "name": a.name,
        "type": TYPE,
        "location": a.location,
        "kind": a.body.get("kind").cloned().unwrap_or_else(|| json!("StorageV2")),
        "sku": a.body.get("sku").cloned().unwrap_or_else(|| json!({ "name": "Standard_LRS", "tier": "Standard" })),
        "tags": a.body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "properties": {
            "provisioningState": "Succeeded",
            "isHnsEnabled": a.hns,
            "allowSharedKeyAccess": a.allow_shared_key,
            "allowBlobPublicAccess": public_access_allowed(a),
            "networkAcls": a.body.get("networkAcls").cloned().unwrap_or_else(|| json!({ "defaultAction": "Allow", "bypass": "AzureServices", "ipRules": [], "virtualNetworkRules": [] })),
            "primaryEndpoints": { "blob": endpoint, "dfs": endpoint },
            "primaryLocation": a.location,
            "statusOfPrimary": "available",
            "creationTime": super::directory::timestamp(a.created_at),
            // az's update reads `encryption` back. keyless leaves encryption at
            // rest to the disk under its data dir and says so: no service
            // encrypts, and no customer key is held.
            "encryption": {
                "keySource": "Microsoft.Storage",
                "services": { "blob": { "enabled": false } },
                "requireInfrastructureEncryption": false,
            },
            "supportsHttpsTrafficOnly": true,
            "minimumTlsVersion": "TLS1_2",
            "accessTier": "Hot",
        },
    })
}

async fn scope(
    state: &SharedState,
    headers: &HeaderMap,
    sub: &str,
    rg: &str,
    name: &str,
    action: &str,
) -> Result<Caller, MgmtError> {
    let caller = authorized(
        state,
        headers,
        sub,
        action,
        &ResourceId::parse(&account_id(sub, rg, name))?,
    )
    .await?;
    if state.store.resource_group(sub, rg).await?.is_none() {
        return Err(MgmtError::not_found(
            "ResourceGroupNotFound",
            format!("Resource group '{rg}' could not be found."),
        ));
    }
    Ok(caller)
}

/// The account `name` of the subscription and group, or ARM's 404.
pub(crate) async fn existing(
    state: &SharedState,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<StorageAccount, MgmtError> {
    state
        .store
        .account(name)
        .await?
        .filter(|a| {
            a.subscription_id.eq_ignore_ascii_case(sub) && a.resource_group.eq_ignore_ascii_case(rg)
        })
        .ok_or_else(|| {
            MgmtError::not_found(
                "ResourceNotFound",
                format!("The Resource '{TYPE}/{name}' under resource group '{rg}' was not found."),
            )
        })
}

fn new_key(state: &SharedState, account: &str, which: &str) -> Result<Vec<u8>, MgmtError> {
    let raw = secret::random_bytes(64)?;
    Ok(state
        .master()
        .seal(&format!("storage-key:{account}:{which}"), &raw)?)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountBody {
    location: Option<String>,
    kind: Option<String>,
    sku: Option<Value>,
    tags: Option<Value>,
    #[serde(default)]
    properties: AccountProperties,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountProperties {
    is_hns_enabled: Option<bool>,
    allow_shared_key_access: Option<bool>,
    allow_blob_public_access: Option<bool>,
    network_acls: Option<Value>,
}

/// Refuses malformed network rules before they are stored.
fn check_network_acls(update: &AccountBody) -> Result<(), MgmtError> {
    crate::network::Rules::from_acls(update.properties.network_acls.as_ref())
        .map(|_| ())
        .map_err(|e| MgmtError::bad_request("InvalidNetworkAcls", e.message()))
}

fn merge_body(body: &mut Value, update: &AccountBody) {
    for (key, value) in [
        ("kind", update.kind.clone().map(Value::String)),
        ("sku", update.sku.clone()),
        ("tags", update.tags.clone()),
        ("networkAcls", update.properties.network_acls.clone()),
        (
            "allowBlobPublicAccess",
            update.properties.allow_blob_public_access.map(Value::Bool),
        ),
    ] {
        if let (Some(v), Some(map)) = (value, body.as_object_mut()) {
            map.insert(key.to_owned(), v);
        }
    }
}

async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<AccountBody>,
) -> Response {
    respond(async {
        v.require()?;
        validate_name(&name)?;
        check_network_acls(&body)?;
        let caller = scope(&state, &headers, &sub, &rg, &name, "Microsoft.Storage/storageAccounts/write").await?;
        if let Some(mut current) = state.store.account(&name).await? {
            let ours = current.subscription_id.eq_ignore_ascii_case(&sub) && current.resource_group.eq_ignore_ascii_case(&rg);
            if !ours {
                return Err(MgmtError::new(StatusCode::CONFLICT, "StorageAccountAlreadyTaken", format!("The storage account named {name} is already taken.")));
            }
            return update(&state, &mut current, &body).await;
        }
        let mut stored = json!({});
        merge_body(&mut stored, &body);
        let new = NewAccount {
            tenant: caller.principal.tenant_id,
            subscription: &sub,
            group: &rg,
            name: &name,
            location: body.location.as_deref(),
            hns: body.properties.is_hns_enabled.unwrap_or(false),
            allow_shared_key: body.properties.allow_shared_key_access.unwrap_or(true),
            body: stored,
        };
        let account = create(&state, new).await?;
        tracing::info!(actor = %caller.principal.object_id, account = %name, "storage account created");
        Ok((StatusCode::OK, account_json(&state, &account)))
    })
    .await
}

/// What a new account is made of.
#[derive(Debug)]
pub(crate) struct NewAccount<'a> {
    pub(crate) tenant: keyless_core::TenantId,
    pub(crate) subscription: &'a str,
    pub(crate) group: &'a str,
    pub(crate) name: &'a str,
    pub(crate) location: Option<&'a str>,
    pub(crate) hns: bool,
    pub(crate) allow_shared_key: bool,
    pub(crate) body: Value,
}

/// Creates an account with two fresh keys; `409` when the name is taken.
pub(crate) async fn create(
    state: &SharedState,
    new: NewAccount<'_>,
) -> Result<StorageAccount, MgmtError> {
    let name = new.name;
    validate_name(name)?;
    let account = StorageAccount {
        name: name.to_owned(),
        id: account_id(new.subscription, new.group, name),
        tenant_id: new.tenant,
        subscription_id: new.subscription.to_owned(),
        resource_group: new.group.to_owned(),
        location: new.location.unwrap_or("local").to_owned(),
        hns: new.hns,
        allow_shared_key: new.allow_shared_key,
        body: new.body,
        key1: new_key(state, name, "key1")?,
        key2: new_key(state, name, "key2")?,
        created_at: state.now(),
    };
    match state.store.account_create(&account).await {
        Ok(()) => Ok(account),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(MgmtError::new(
            StatusCode::CONFLICT,
            "StorageAccountAlreadyTaken",
            format!("The storage account named {name} is already taken."),
        )),
        Err(e) => Err(e.into()),
    }
}

/// Applies an update (PUT on an existing account, or PATCH): the flags and the
/// stored properties change; the hierarchical namespace cannot.
async fn update(
    state: &SharedState,
    current: &mut StorageAccount,
    body: &AccountBody,
) -> Result<(StatusCode, Value), MgmtError> {
    if body
        .properties
        .is_hns_enabled
        .is_some_and(|h| h != current.hns)
    {
        return Err(MgmtError::bad_request(
            "HnsNotChangeable",
            "isHnsEnabled cannot be changed after the account is created",
        ));
    }
    check_network_acls(body)?;
    if let Some(allow) = body.properties.allow_shared_key_access {
        current.allow_shared_key = allow;
    }
    merge_body(&mut current.body, body);
    state.store.account_update(current).await?;
    state.changed(Change::Account(current.name.clone())).await?;
    Ok((StatusCode::OK, account_json(state, current)))
}

async fn patch(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<AccountBody>,
) -> Response {
    respond(async {
        v.require()?;
        scope(
            &state,
            &headers,
            &sub,
            &rg,
            &name,
            "Microsoft.Storage/storageAccounts/write",
        )
        .await?;
        let mut current = existing(&state, &sub, &rg, &name).await?;
        update(&state, &mut current, &body).await
    })
    .await
}

async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        scope(
            &state,
            &headers,
            &sub,
            &rg,
            &name,
            "Microsoft.Storage/storageAccounts/read",
        )
        .await?;
        let a = existing(&state, &sub, &rg, &name).await?;
        Ok((StatusCode::OK, account_json(&state, &a)))
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
        scope(
            &state,
            &headers,
            &sub,
            &rg,
            &name,
            "Microsoft.Storage/storageAccounts/delete",
        )
        .await?;
        if existing(&state, &sub, &rg, &name).await.is_err() {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        }
        if let Some(files) = state.store.account_delete(&name).await? {
            state.blobs.remove(&files).await;
        }
        state.changed(Change::Account(name.clone())).await?;
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
            "Microsoft.Storage/storageAccounts/read",
            &scope,
        )
        .await?;
        let value: Vec<Value> = state
            .store
            .accounts(&sub, Some(&rg))
            .await?
            .iter()
            .map(|a| account_json(&state, a))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

/// `POST …/providers/Microsoft.Storage/checkNameAvailability`: whether a
/// storage account may take a name (names are unique across the server, as
/// across Azure).
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
            Ok(state.account(&name).await?.map(|_| {
                (
                    "AlreadyExists",
                    format!("The storage account named {name} is already taken."),
                )
            }))
        })
        .await?;
        Ok((StatusCode::OK, answer))
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
        let accounts = state.store.accounts(&sub, None).await?;
        let value: Vec<Value> = readable(
            &state,
            &caller,
            "Microsoft.Storage/storageAccounts/read",
            accounts,
            |a| &a.id,
        )
        .iter()
        .map(|a| account_json(&state, a))
        .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

fn keys_json(state: &SharedState, a: &StorageAccount) -> Result<Value, MgmtError> {
    let keys = state.account_keys(a)?;
    let [k1, k2] = keys.as_ref();
    Ok(json!({ "keys": [
        { "keyName": "key1", "value": STANDARD.encode(k1), "permissions": "FULL" },
        { "keyName": "key2", "value": STANDARD.encode(k2), "permissions": "FULL" },
    ]}))
}

async fn list_keys(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = scope(&state, &headers, &sub, &rg, &name, "Microsoft.Storage/storageAccounts/listkeys/action").await?;
        let a = existing(&state, &sub, &rg, &name).await?;
        tracing::info!(actor = %caller.principal.object_id, account = %name, "storage account keys listed");
        Ok((StatusCode::OK, keys_json(&state, &a)?))
    })
    .await
}

/// The storage log of an account: who touched which data. Reading it needs
/// `Microsoft.Insights/logs/read` on the account (Reader has it).
async fn logs(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(q): Query<crate::storage_log::LogQuery>,
) -> Response {
    respond(async {
        scope(
            &state,
            &headers,
            &sub,
            &rg,
            &name,
            "Microsoft.Insights/logs/read",
        )
        .await?;
        existing(&state, &sub, &rg, &name).await?;
        let (filter, top) = q.filter(name);
        let records = state.storage_log.query(filter, top).await?;
        Ok((StatusCode::OK, json!({ "value": records })))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Regenerate {
    key_name: String,
}

async fn regenerate_key(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Regenerate>,
) -> Response {
    respond(async {
        v.require()?;
        let caller = scope(&state, &headers, &sub, &rg, &name, "Microsoft.Storage/storageAccounts/regeneratekey/action").await?;
        let mut a = existing(&state, &sub, &rg, &name).await?;
        match body.key_name.to_ascii_lowercase().as_str() {
            "key1" => a.key1 = new_key(&state, &name, "key1")?,
            "key2" => a.key2 = new_key(&state, &name, "key2")?,
            other => return Err(MgmtError::bad_request("InvalidKeyName", format!("keyName `{other}` must be key1 or key2"))),
        }
        state.store.account_update(&a).await?;
        state.changed(Change::Account(name.clone())).await?;
        tracing::info!(actor = %caller.principal.object_id, account = %name, key = %body.key_name, "storage account key regenerated");
        Ok((StatusCode::OK, keys_json(&state, &a)?))
    })
    .await
}
