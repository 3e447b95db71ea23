//! `Microsoft.ContainerRegistry/registries`: registries whose login server is
//! `<name>.<registry suffix>` on the registry listener. The admin user is off
//! unless turned on; its two passwords are made with the registry, kept sealed,
//! and handed out only by `listCredentials` while it is on.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::secret;
use keyless_core::{ErrorKind, ResourceId, TenantId};
use keyless_store::Registry;

use super::caller::{authenticate, authorized, readable, subscription_of_caller};
use super::error::MgmtError;
use super::resources::ApiVersion;
use super::{Body, respond};
use crate::registry::password_context;
use crate::state::SharedState;

pub(crate) const TYPE: &str = "Microsoft.ContainerRegistry/registries";

pub(crate) fn router() -> Router<SharedState> {
    let mut r = Router::new()
        .route(
            &format!("/subscriptions/{{sub}}/providers/{TYPE}"),
            get(list_subscription),
        )
        .route(
            "/subscriptions/{sub}/providers/Microsoft.ContainerRegistry/checkNameAvailability",
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
            .route(
                &format!("{base}/{{name}}/listCredentials"),
                post(list_credentials),
            )
            .route(
                &format!("{base}/{{name}}/regenerateCredential"),
                post(regenerate_credential),
            )
            .route(&format!("{base}/{{name}}/logs"), get(logs));
    }
    r
}

pub(crate) fn registry_id(sub: &str, rg: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{TYPE}/{name}")
}

/// Azure's rule: 5–50 letters and digits.
fn validate_name(name: &str) -> Result<(), MgmtError> {
    if (5..=50).contains(&name.len()) && name.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(MgmtError::bad_request(
        "RegistryNameNotValid",
        format!(
            "The registry name '{name}' is invalid: use 5–50 letters and digits (no dashes or other characters)."
        ),
    ))
}

fn admin_enabled(r: &Registry) -> bool {
    r.body
        .pointer("/properties/adminUserEnabled")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn registry_json(state: &SharedState, r: &Registry) -> Value {
    let props = r.body.get("properties");
    let sku = r
        .body
        .get("sku")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("Basic");
    json!({
        "id": r.id,
        "name": r.name,
        "type": TYPE,
        "location": r.location,
        "tags": r.body.get("tags").cloned().unwrap_or_else(|| json!({})),
        "sku": { "name": sku, "tier": sku },
        "properties": {
            "loginServer": crate::cloud::login_server(&state.urls, &r.name),
            "creationDate": jiff::Timestamp::from_second(r.created_at).map(|t| t.to_string()).unwrap_or_default(),
            "provisioningState": "Succeeded",
            "adminUserEnabled": admin_enabled(r),
            "anonymousPullEnabled": false,
            "publicNetworkAccess": "Enabled",
            "networkRuleBypassOptions": "AzureServices",
            "dataEndpointEnabled": false,
            "zoneRedundancy": "Disabled",
            "policies": {
                "quarantinePolicy": { "status": "disabled" },
                "retentionPolicy": { "days": 7, "status": "disabled" },
                "trustPolicy": { "status": "disabled", "type": "Notary" },
                "exportPolicy": { "status": "enabled" },
            },
            "encryption": { "status": "disabled" },
            "tenantId": props.and_then(|p| p.get("tenantId")).cloned().unwrap_or_else(|| json!(r.tenant_id.to_string())),
        },
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegistryBody {
    location: Option<String>,
    tags: Option<Value>,
    sku: Option<Value>,
    #[serde(default)]
    properties: Value,
}

impl RegistryBody {
    /// What a request asks to change of a stored body.
    fn apply(&self, stored: &mut Value) -> Result<(), MgmtError> {
        if let Some(anon) = self.properties.get("anonymousPullEnabled")
            && anon.as_bool() == Some(true)
        {
            return Err(MgmtError::bad_request(
                "AnonymousPullNotSupported",
                "keyless registries do not serve anonymous pulls: every pull is by an identity the registry log can name.",
            ));
        }
        let Some(map) = stored.as_object_mut() else {
            return Ok(());
        };
        if let Some(enabled) = self.properties.get("adminUserEnabled") {
            let Some(enabled) = enabled.as_bool() else {
                return Err(MgmtError::bad_request(
                    "InvalidRequestContent",
                    "properties.adminUserEnabled must be true or false.",
                ));
            };
            let props = map.entry("properties").or_insert_with(|| json!({}));
            if let Some(p) = props.as_object_mut() {
                p.insert("adminUserEnabled".into(), json!(enabled));
            }
        }
        if let Some(sku) = &self.sku {
            let name = sku.get("name").and_then(Value::as_str).unwrap_or_default();
            if !["Basic", "Standard", "Premium"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
            {
                return Err(MgmtError::bad_request(
                    "InvalidSku",
                    format!("The sku '{name}' is invalid: use Basic, Standard or Premium."),
                ));
            }
            map.insert("sku".into(), json!({ "name": name }));
        }
        if let Some(tags) = &self.tags {
            map.insert("tags".into(), tags.clone());
        }
        Ok(())
    }
}

fn not_found(name: &str, rg: &str) -> MgmtError {
    MgmtError::not_found(
        "ResourceNotFound",
        format!("The Resource '{TYPE}/{name}' under resource group '{rg}' was not found."),
    )
}

async fn existing(
    state: &SharedState,
    sub: &str,
    rg: &str,
    name: &str,
) -> Result<Registry, MgmtError> {
    state
        .store
        .registry(&name.to_ascii_lowercase())
        .await?
        .filter(|r| {
            r.subscription_id.eq_ignore_ascii_case(sub) && r.resource_group.eq_ignore_ascii_case(rg)
        })
        .ok_or_else(|| not_found(name, rg))
}

/// A new admin password, sealed for `registry`'s slot `which`.
fn new_password(state: &SharedState, registry: &str, which: &str) -> Result<Vec<u8>, MgmtError> {
    let raw = secret::random_token()?;
    Ok(state
        .master()
        .seal(&password_context(registry, which), raw.as_bytes())?)
}

/// Creates a registry; `409` when the name is taken.
pub(crate) async fn create(
    state: &SharedState,
    tenant: TenantId,
    sub: &str,
    rg: &str,
    name: &str,
    body: Value,
    location: String,
) -> Result<Registry, MgmtError> {
    validate_name(name)?;
    let name = name.to_ascii_lowercase();
    let registry = Registry {
        id: registry_id(sub, rg, &name),
        tenant_id: tenant,
        subscription_id: sub.to_owned(),
        resource_group: rg.to_owned(),
        location,
        body,
        password1: new_password(state, &name, "password")?,
        password2: new_password(state, &name, "password2")?,
        created_at: state.now(),
        name,
    };
    match state.store.registry_create(&registry).await {
        Ok(()) => Ok(registry),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(MgmtError::new(
            StatusCode::CONFLICT,
            "AlreadyInUse",
            format!(
                "The registry DNS name {} is already in use.",
                crate::cloud::login_server(&state.urls, &registry.name)
            ),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<RegistryBody>,
) -> Response {
    respond(async {
        v.require()?;
        validate_name(&name)?;
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        let caller = authorized(&state, &headers, &sub, &format!("{TYPE}/write"), &scope).await?;
        if state.store.resource_group(&sub, &rg).await?.is_none() {
            return Err(MgmtError::not_found(
                "ResourceGroupNotFound",
                format!("Resource group '{rg}' could not be found."),
            ));
        }
        if let Some(mut current) = state.store.registry(&name.to_ascii_lowercase()).await? {
            if !(current.subscription_id.eq_ignore_ascii_case(&sub)
                && current.resource_group.eq_ignore_ascii_case(&rg))
            {
                return Err(MgmtError::new(
                    StatusCode::CONFLICT,
                    "AlreadyInUse",
                    format!("The registry name '{name}' is already in use."),
                ));
            }
            body.apply(&mut current.body)?;
            state.store.registry_update(&current).await?;
            return Ok((StatusCode::OK, registry_json(&state, &current)));
        }
        let mut stored = json!({ "properties": { "adminUserEnabled": false }, "sku": { "name": "Basic" }, "tags": {} });
        body.apply(&mut stored)?;
        let location = body.location.clone().unwrap_or_else(|| "local".into());
        let registry = create(&state, caller.principal.tenant_id, &sub, &rg, &name, stored, location).await?;
        tracing::info!(actor = %caller.principal.object_id, registry = %registry.name, "registry created");
        Ok((StatusCode::OK, registry_json(&state, &registry)))
    })
    .await
}

async fn patch(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<RegistryBody>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        authorized(&state, &headers, &sub, &format!("{TYPE}/write"), &scope).await?;
        let mut registry = existing(&state, &sub, &rg, &name).await?;
        body.apply(&mut registry.body)?;
        state.store.registry_update(&registry).await?;
        Ok((StatusCode::OK, registry_json(&state, &registry)))
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
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        authorized(&state, &headers, &sub, &format!("{TYPE}/read"), &scope).await?;
        let registry = existing(&state, &sub, &rg, &name).await?;
        Ok((StatusCode::OK, registry_json(&state, &registry)))
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
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        let caller = authorized(&state, &headers, &sub, &format!("{TYPE}/delete"), &scope).await?;
        let Ok(registry) = existing(&state, &sub, &rg, &name).await else {
            return Ok((StatusCode::NO_CONTENT, Value::Null));
        };
        if let Some(files) = state.store.registry_delete(&registry.name).await? {
            state.blobs.remove(&files).await;
            tracing::info!(actor = %caller.principal.object_id, registry = %registry.name, files = files.len(), "registry deleted with its content");
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
        authorized(&state, &headers, &sub, &format!("{TYPE}/read"), &scope).await?;
        let value: Vec<Value> = state
            .store
            .registries(&sub, Some(&rg))
            .await?
            .iter()
            .map(|r| registry_json(&state, r))
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
        let registries = state.store.registries(&sub, None).await?;
        let value: Vec<Value> =
            readable(&state, &caller, &format!("{TYPE}/read"), registries, |r| {
                &r.id
            })
            .iter()
            .map(|r| registry_json(&state, r))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

/// `POST …/checkNameAvailability` (`{"name", "type"}`).
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
                return Ok(Some(("Invalid", e.message())));
            }
            Ok(state
                .store
                .registry(&name.to_ascii_lowercase())
                .await?
                .map(|_| {
                    (
                        "AlreadyExists",
                        format!("The registry {name} is already in use."),
                    )
                }))
        })
        .await?;
        Ok((StatusCode::OK, answer))
    })
    .await
}

/// The admin user's name and passwords, unsealed.
fn credentials_json(state: &SharedState, r: &Registry) -> Result<Value, MgmtError> {
    let open = |which: &str, sealed: &[u8]| -> Result<String, MgmtError> {
        let raw = state
            .master()
            .open(&password_context(&r.name, which), sealed)?;
        String::from_utf8(raw).map_err(|_| {
            MgmtError::from(keyless_core::Error::internal(
                "a registry password is not text",
            ))
        })
    };
    Ok(json!({
        "username": r.name,
        "passwords": [
            { "name": "password", "value": open("password", &r.password1)? },
            { "name": "password2", "value": open("password2", &r.password2)? },
        ],
    }))
}

fn admin_disabled(name: &str) -> MgmtError {
    MgmtError::bad_request(
        "AdminUserDisabled",
        format!(
            "The admin user of registry '{name}' is disabled. Turn it on with `az acr update --name {name} --admin-enabled true`, or sign in with an identity and a role (AcrPull, AcrPush) instead."
        ),
    )
}

async fn list_credentials(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        authorized(
            &state,
            &headers,
            &sub,
            &format!("{TYPE}/listCredentials/action"),
            &scope,
        )
        .await?;
        let registry = existing(&state, &sub, &rg, &name).await?;
        if !admin_enabled(&registry) {
            return Err(admin_disabled(&registry.name));
        }
        Ok((StatusCode::OK, credentials_json(&state, &registry)?))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct Regenerate {
    name: String,
}

async fn regenerate_credential(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Regenerate>,
) -> Response {
    respond(async {
        v.require()?;
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        authorized(
            &state,
            &headers,
            &sub,
            &format!("{TYPE}/regenerateCredential/action"),
            &scope,
        )
        .await?;
        let mut registry = existing(&state, &sub, &rg, &name).await?;
        if !admin_enabled(&registry) {
            return Err(admin_disabled(&registry.name));
        }
        match body.name.as_str() {
            "password" => registry.password1 = new_password(&state, &registry.name, "password")?,
            "password2" => registry.password2 = new_password(&state, &registry.name, "password2")?,
            other => {
                return Err(MgmtError::bad_request(
                    "InvalidPasswordName",
                    format!(
                        "The password name '{other}' is invalid: use `password` or `password2`."
                    ),
                ));
            }
        }
        state.store.registry_update(&registry).await?;
        Ok((StatusCode::OK, credentials_json(&state, &registry)?))
    })
    .await
}

/// The registry's log: who pulled or pushed which repository and digest.
async fn logs(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Query(q): Query<crate::storage_log::LogQuery>,
) -> Response {
    respond(async {
        let scope = ResourceId::parse(&registry_id(&sub, &rg, &name))?;
        authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.Insights/logs/read",
            &scope,
        )
        .await?;
        let registry = existing(&state, &sub, &rg, &name).await?;
        let (filter, top) = q.filter(registry.name);
        let records = state.registry_log.query(filter, top).await?;
        Ok((StatusCode::OK, json!({ "value": records })))
    })
    .await
}
