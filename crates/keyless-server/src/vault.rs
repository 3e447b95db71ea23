//! The vault listener: Key Vault's secrets REST API, for the unmodified
//! `SecretClient`.
//!
//! Vaults are addressed by path: `https://<host>:<vault port>/<vault>` is the
//! vault URL a client is given. Ids in replies are `https://<host>:<port>/secrets/
//! <name>/<version>` (the form the SDK parses; it keeps using its own vault URL).
//! An unauthenticated request gets the challenge the SDK expects; a token must be
//! for `https://vault.azure.net` and the vault's tenant. RBAC data actions at the
//! secret (or vault) scope decide; every request leaves a log record naming the
//! caller, the secret and the version.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_auth::seal::Envelope;
use keyless_auth::{Claims, VerifyError};
use keyless_core::rbac::{AccessRequest, Permission};
use keyless_core::{ErrorKind, ObjectId, ResourceId, TenantId};
use keyless_store::{SecretVersion, Vault};

use crate::http::{ClientAddr, bearer};
use crate::login::resource::VAULT;
use crate::state::SharedState;
use crate::storage_log::Record;

/// The largest secret value Azure accepts (25 KiB).
const MAX_VALUE: usize = 25 * 1024;

/// What a secret version's value is sealed as: its identity, bound to the data key.
pub(crate) fn context(vault: &str, name: &str, version: &str) -> String {
    format!("secret:{vault}/{}/{version}", name.to_ascii_lowercase())
}

/// The router of the vault listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// A refusal or failure in Key Vault's JSON shape.
#[derive(Debug)]
struct VaultError {
    status: StatusCode,
    code: &'static str,
    message: String,
    inner: Option<&'static str>,
    challenge: Option<String>,
    explanation: Option<String>,
}

impl VaultError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            inner: None,
            challenge: None,
            explanation: None,
        }
    }

    fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadParameter", message)
    }
}

impl From<keyless_core::Error> for VaultError {
    fn from(e: keyless_core::Error) -> Self {
        match e.kind() {
            ErrorKind::NotFound => Self::not_found("NotFound", e.message()),
            ErrorKind::AlreadyExists | ErrorKind::Conflict => {
                Self::new(StatusCode::CONFLICT, "Conflict", e.message())
            }
            ErrorKind::InvalidInput => Self::bad(e.message()),
            _ => {
                tracing::error!(error = %e, "vault request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "The server encountered an internal error.",
                )
            }
        }
    }
}

impl IntoResponse for VaultError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let (Some(inner), Some(map)) = (self.inner, error.as_object_mut()) {
            map.insert("innererror".into(), json!({ "code": inner }));
        }
        if let (Some(e), Some(map)) = (&self.explanation, error.as_object_mut()) {
            map.insert("keylessExplanation".into(), json!(e));
        }
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(c) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(e) = self.explanation.as_deref() {
            response
                .headers_mut()
                .insert("x-keyless-explanation", crate::http::ascii_header(e));
        }
        response
    }
}

/// What a request asks of a vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set,
    Get,
    Update,
    List,
    Versions,
    Delete,
    GetDeleted,
    ListDeleted,
    Recover,
    Purge,
}

impl Op {
    fn data_action(self) -> &'static str {
        match self {
            Self::Set => "Microsoft.KeyVault/vaults/secrets/setSecret/action",
            Self::Get => "Microsoft.KeyVault/vaults/secrets/getSecret/action",
            Self::Update => "Microsoft.KeyVault/vaults/secrets/update/action",
            Self::List | Self::Versions | Self::GetDeleted | Self::ListDeleted => {
                "Microsoft.KeyVault/vaults/secrets/readMetadata/action"
            }
            Self::Delete => "Microsoft.KeyVault/vaults/secrets/delete",
            Self::Recover => "Microsoft.KeyVault/vaults/secrets/recover/action",
            Self::Purge => "Microsoft.KeyVault/vaults/secrets/purge/action",
        }
    }

    fn log_name(self) -> &'static str {
        match self {
            Self::Set => "SecretSet",
            Self::Get => "SecretGet",
            Self::Update => "SecretUpdate",
            Self::List => "SecretList",
            Self::Versions => "SecretListVersions",
            Self::Delete => "SecretDelete",
            Self::GetDeleted => "SecretGetDeleted",
            Self::ListDeleted => "SecretListDeleted",
            Self::Recover => "SecretRecover",
            Self::Purge => "SecretPurge",
        }
    }
}

/// Method and path (below the vault) → operation, secret name, version.
fn parse(method: &Method, rest: &[&str]) -> Option<(Op, Option<String>, Option<String>)> {
    let own = |s: &&str| (*s).to_owned();
    let m = method.as_str();
    Some(match (m, rest) {
        ("PUT", ["secrets", name]) => (Op::Set, Some(own(name)), None),
        ("GET", ["secrets"]) => (Op::List, None, None),
        ("GET", ["secrets", name]) => (Op::Get, Some(own(name)), None),
        ("GET", ["secrets", name, "versions"]) => (Op::Versions, Some(own(name)), None),
        ("GET", ["secrets", name, version]) => (Op::Get, Some(own(name)), Some(own(version))),
        ("PATCH", ["secrets", name]) => (Op::Update, Some(own(name)), None),
        ("PATCH", ["secrets", name, version]) => (Op::Update, Some(own(name)), Some(own(version))),
        ("DELETE", ["secrets", name]) => (Op::Delete, Some(own(name)), None),
        ("GET", ["deletedsecrets"]) => (Op::ListDeleted, None, None),
        ("GET", ["deletedsecrets", name]) => (Op::GetDeleted, Some(own(name)), None),
        ("DELETE", ["deletedsecrets", name]) => (Op::Purge, Some(own(name)), None),
        ("POST", ["deletedsecrets", name, "recover"]) => (Op::Recover, Some(own(name)), None),
        _ => return None,
    })
}

fn valid_name(name: &str) -> bool {
    (1..=127).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A parsed, authenticated, authorized request.
struct Ctx {
    state: SharedState,
    vault: Vault,
    /// The vault's host when the client named the vault by host name
    /// (`<vault>.vault.keyless.localhost:<port>`, as az builds vault URLs); ids
    /// are then given under that host.
    host: Option<String>,
    op: Op,
    name: Option<String>,
    version: Option<String>,
}

/// Who made a request, for its log record.
#[derive(Default)]
struct Seen {
    claims: Option<Arc<Claims>>,
    vault: String,
    op: Option<Op>,
    name: Option<String>,
    version: Option<String>,
}

async fn dispatch(State(state): State<SharedState>, request: Request) -> Response {
    let started = Instant::now();
    let peer = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    let request_id = request
        .headers()
        .get(crate::http::REQUEST_ID.as_str())
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let method = request.method().clone();
    let mut seen = Seen::default();
    let response = match prepare(&state, request, &mut seen).await {
        Ok((ctx, body)) => match run(&ctx, body, &mut seen).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        },
        Err(e) => e.into_response(),
    };
    let status = response.status().as_u16();
    let claims = seen.claims.as_ref();
    let op_name = seen.op.map_or("Unknown", Op::log_name);
    let record = Record {
        time_generated: jiff::Timestamp::from_second(state.now())
            .map(|t| t.to_string())
            .unwrap_or_default(),
        account_name: seen.vault,
        operation_name: op_name.to_owned(),
        method: method.to_string(),
        path: match (&seen.name, &seen.version) {
            (Some(n), Some(v)) => format!("secrets/{n}/{v}"),
            (Some(n), None) => format!("secrets/{n}"),
            _ => String::new(),
        },
        status_code: status,
        status_text: if status < 400 {
            "Success".into()
        } else {
            status.to_string()
        },
        authentication_type: if claims.is_some() {
            "OAuth"
        } else {
            "Anonymous"
        }
        .to_owned(),
        requester_object_id: claims.map(|c| c.oid.clone()),
        requester_tenant_id: claims.map(|c| c.tid.clone()),
        requester_app_id: claims.and_then(|c| c.appid.clone().or_else(|| c.azp.clone())),
        requester_upn: claims.and_then(|c| c.upn.clone()),
        requester_principal_type: claims.map(|c| c.principal_type().to_owned()),
        job_id: claims.and_then(|c| c.xms_job.clone()),
        caller_ip_address: peer.map(|ip| ip.to_string()).unwrap_or_default(),
        request_body_size: 0,
        response_body_size: 0,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        correlation_id: request_id,
        explanation: response
            .headers()
            .get("x-keyless-explanation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    crate::metrics::operation("vault", op_name, record.status_code);
    state.vault_log.append(record).await;
    response
}

fn challenge(state: &SharedState, tenant: &TenantId) -> String {
    format!(
        "Bearer authorization=\"{}/{tenant}\", resource=\"{VAULT}\"",
        state.urls.login
    )
}

async fn prepare(
    state: &SharedState,
    request: Request,
    seen: &mut Seen,
) -> Result<(Ctx, Body), VaultError> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // An id keyless handed out (`…/secrets/<name>/<version>?vault=<vault>`) names
    // its vault in the query, so that following it reaches the same secret.
    let is_id = segments
        .first()
        .is_some_and(|s| RESERVED.contains(&s.to_ascii_lowercase().as_str()));
    let by_id = is_id
        .then(|| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(parts.uri.query()?)
                .ok()?
                .into_iter()
                .find(|(k, _)| k == "vault")
                .map(|(_, v)| v)
        })
        .flatten();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| crate::cloud::vault_of_host(h).is_some())
        .map(str::to_ascii_lowercase);
    let by_host = host.as_deref().and_then(crate::cloud::vault_of_host);
    let (vault_name, rest): (String, &[&str]) = match (segments.split_first(), by_id) {
        _ if by_host.is_some() => (by_host.unwrap_or_default().to_owned(), segments.as_slice()),
        (Some(_), Some(vault)) => (vault.to_ascii_lowercase(), segments.as_slice()),
        (Some(_), None) if is_id => {
            return Err(VaultError::bad(
                "the URL must name a vault: https://<host>:<port>/<vault>/secrets/…, or carry ?vault=<vault> as the ids keyless returns do",
            ));
        }
        (Some((first, rest)), _) => (first.to_ascii_lowercase(), rest),
        (None, _) => {
            return Err(VaultError::bad(
                "the URL must name a vault: https://<host>:<port>/<vault>/secrets/…",
            ));
        }
    };
    seen.vault.clone_from(&vault_name);
    let vault = state
        .store
        .vault(&vault_name)
        .await?
        .filter(|v| v.deleted_at.is_none())
        .ok_or_else(|| {
            VaultError::not_found(
                "VaultNotFound",
                format!("The vault `{vault_name}` does not exist on this server."),
            )
        })?;
    let unauthenticated = |message: String| {
        let mut e = VaultError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message);
        e.challenge = Some(challenge(state, &vault.tenant_id));
        e
    };
    let Some(token) = bearer(&parts.headers) else {
        return Err(unauthenticated(
            "AKV10000: Request is missing a Bearer or PoP token.".into(),
        ));
    };
    let claims = state
        .verifier
        .verify(token, &[VAULT, "https://vault.azure.net/"], state.now())
        .map_err(|e| match e {
            VerifyError::Audience { .. } => unauthenticated(format!(
                "AKV10022: Invalid audience: {e}; ask for a token for {VAULT}/.default."
            )),
            other => unauthenticated(format!("AKV10000: the token is not valid: {other}.")),
        })?;
    let tenant = TenantId::parse(&claims.tid)
        .map_err(|_| unauthenticated("AKV10032: Invalid issuer.".into()))?;
    if tenant != vault.tenant_id {
        return Err(unauthenticated(format!(
            "AKV10032: Invalid issuer: the token is from tenant {tenant}, the vault belongs to tenant {}; cross-tenant access is not supported.",
            vault.tenant_id
        )));
    }
    seen.claims = Some(Arc::clone(&claims));
    let (op, name, version) = parse(&parts.method, rest).ok_or_else(|| {
        VaultError::bad(format!(
            "keyless's vault serves secrets only; `{} {path}` is not supported",
            parts.method
        ))
    })?;
    if let Some(n) = &name
        && !valid_name(n)
    {
        return Err(VaultError::bad(format!(
            "The secret name `{n}` is invalid: use 1–127 letters, digits and dashes."
        )));
    }
    seen.op = Some(op);
    seen.name.clone_from(&name);
    seen.version.clone_from(&version);
    let scope_text = match &name {
        Some(n) => format!("{}/secrets/{n}", vault.id),
        None => vault.id.clone(),
    };
    let scope = ResourceId::parse(&scope_text)?;
    let mut principals = vec![
        ObjectId::parse(&claims.oid)
            .map_err(|_| unauthenticated("AKV10000: malformed oid.".into()))?,
    ];
    principals.extend(claims.groups.iter().filter_map(|g| ObjectId::parse(g).ok()));
    let index = state.rbac();
    let request = AccessRequest {
        tenant,
        principals: &principals,
        permission: Permission::DataAction(op.data_action()),
        scope: &scope,
    };
    if !index.allows(&request) {
        let why = index.explain(&request).explanation();
        let mut e = VaultError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!(
                "Caller is not authorized to perform action on resource. Action: '{}' Caller: oid={} Vault: {}",
                op.data_action(),
                claims.oid,
                vault.name
            ),
        );
        e.inner = Some("ForbiddenByRbac");
        e.explanation = Some(format!(
            "{}: {why}",
            crate::http::who(claims.upn.as_deref().unwrap_or(&claims.oid), &claims.oid)
        ));
        return Err(e);
    }
    Ok((
        Ctx {
            state: state.clone(),
            vault,
            host,
            op,
            name,
            version,
        },
        body,
    ))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretBody {
    value: Option<String>,
    content_type: Option<String>,
    tags: Option<Value>,
    attributes: Option<Attributes>,
}

async fn json_body(body: Body) -> Result<SecretBody, VaultError> {
    let bytes = axum::body::to_bytes(body, 2 * MAX_VALUE + 64 * 1024)
        .await
        .map_err(|_| VaultError::bad("the request body is too large or could not be read"))?;
    if bytes.is_empty() {
        return Ok(SecretBody::default());
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| VaultError::bad(format!("the JSON body is invalid: {e}")))
}

fn soft_delete(vault: &Vault) -> (bool, i64) {
    let props = vault.body.get("properties");
    let enabled = props
        .and_then(|p| p.get("enableSoftDelete"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let days = props
        .and_then(|p| p.get("softDeleteRetentionInDays"))
        .and_then(Value::as_i64)
        .unwrap_or(90);
    (enabled, days)
}

fn purge_protected(vault: &Vault) -> bool {
    vault
        .body
        .pointer("/properties/enablePurgeProtection")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The first path segments of ids, which no vault may be named.
pub(crate) const RESERVED: [&str; 2] = ["secrets", "deletedsecrets"];

/// A secret version's id: Key Vault's shape (`<vault url>/secrets/<name>/<version>`,
/// which the SDK parses as three path segments), with the vault in the query,
/// since keyless's vaults share one host.
fn id_of(ctx: &Ctx, s: &SecretVersion) -> String {
    url_of(ctx, &format!("secrets/{}/{}", s.name, s.version))
}

/// The URL of `path` in the request's vault, as the client addresses the vault:
/// under its host name, or under the listener with the vault in the query.
fn url_of(ctx: &Ctx, path: &str) -> String {
    match &ctx.host {
        Some(host) => format!("https://{host}/{path}"),
        None => format!("{}/{path}?vault={}", ctx.state.urls.vault, ctx.vault.name),
    }
}

fn attributes(vault: &Vault, s: &SecretVersion) -> Value {
    let (soft, days) = soft_delete(vault);
    let level = match (soft, purge_protected(vault)) {
        (true, true) => "Recoverable",
        (true, false) => "Recoverable+Purgeable",
        _ => "Purgeable",
    };
    let mut a = json!({
        "enabled": s.enabled,
        "created": s.created,
        "updated": s.updated,
        "recoveryLevel": level,
    });
    if let Some(map) = a.as_object_mut() {
        if soft {
            map.insert("recoverableDays".into(), json!(days));
        }
        if let Some(n) = s.not_before {
            map.insert("nbf".into(), json!(n));
        }
        if let Some(e) = s.expires {
            map.insert("exp".into(), json!(e));
        }
    }
    a
}

/// A secret's bundle: its properties, and its value when `value` is given.
fn bundle(ctx: &Ctx, s: &SecretVersion, value: Option<&str>) -> Value {
    let mut b = json!({
        "id": id_of(ctx, s),
        "attributes": attributes(&ctx.vault, s),
        "tags": s.tags,
    });
    if let Some(map) = b.as_object_mut() {
        if let Some(v) = value {
            map.insert("value".into(), json!(v));
        }
        if let Some(t) = &s.content_type {
            map.insert("contentType".into(), json!(t));
        }
    }
    b
}

fn deleted_bundle(ctx: &Ctx, d: &keyless_store::DeletedSecret) -> Value {
    let mut b = bundle(ctx, &d.latest, None);
    if let Some(map) = b.as_object_mut() {
        map.insert(
            "recoveryId".into(),
            json!(url_of(ctx, &format!("deletedsecrets/{}", d.latest.name))),
        );
        map.insert("deletedDate".into(), json!(d.deleted_at));
        map.insert("scheduledPurgeDate".into(), json!(d.scheduled_purge));
    }
    b
}

fn secret_not_found(name: &str) -> VaultError {
    VaultError::not_found(
        "SecretNotFound",
        format!("A secret with (name/id) {name} was not found in this key vault."),
    )
}

fn ok(value: Value) -> Result<Response, VaultError> {
    Ok((StatusCode::OK, axum::Json(value)).into_response())
}

async fn run(ctx: &Ctx, body: Body, seen: &mut Seen) -> Result<Response, VaultError> {
    let store = &ctx.state.store;
    let vault = ctx.vault.name.as_str();
    let name = ctx.name.clone().unwrap_or_default();
    let now = ctx.state.now();
    match ctx.op {
        Op::Set => {
            let b = json_body(body).await?;
            let value = b
                .value
                .ok_or_else(|| VaultError::bad("The parameter value must be given."))?;
            if value.len() > MAX_VALUE {
                return Err(VaultError::bad("A secret value holds at most 25 KiB."));
            }
            let version = uuid::Uuid::new_v4().simple().to_string();
            let master = ctx.state.master();
            let sealed =
                master.seal_envelope(&context(vault, &name, &version), value.as_bytes())?;
            let attrs = b.attributes.unwrap_or_default();
            let s = SecretVersion {
                vault: vault.to_owned(),
                name: name.clone(),
                version,
                created: now,
                updated: now,
                enabled: attrs.enabled.unwrap_or(true),
                not_before: attrs.nbf,
                expires: attrs.exp,
                content_type: b.content_type,
                tags: b.tags.unwrap_or_else(|| json!({})),
                wrapped_key: sealed.wrapped_key,
                sealed_value: sealed.sealed,
            };
            store.secret_add(&s).await.map_err(|e| {
                if e.kind() == ErrorKind::Conflict {
                    VaultError::new(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
                    )
                } else {
                    e.into()
                }
            })?;
            seen.version = Some(s.version.clone());
            ok(bundle(ctx, &s, Some(&value)))
        }
        Op::Get => {
            let s = store
                .secret(vault, &name, ctx.version.as_deref(), false)
                .await?
                .ok_or_else(|| secret_not_found(&name))?;
            // The record names the version read, also when the request asked for the latest.
            seen.version = Some(s.version.clone());
            if !s.enabled {
                return Err(VaultError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                ));
            }
            let envelope = Envelope {
                wrapped_key: s.wrapped_key.clone(),
                sealed: s.sealed_value.clone(),
            };
            let plain = ctx
                .state
                .master()
                .open_envelope(&context(vault, &s.name, &s.version), &envelope)
                .map_err(|e| {
                    tracing::error!(vault, secret = %s.name, version = %s.version, "a sealed secret failed its integrity check");
                    VaultError::new(StatusCode::INTERNAL_SERVER_ERROR, "IntegrityError", format!("The stored secret failed its integrity check and is not returned: {}", e.message()))
                })?;
            let value = String::from_utf8(plain).map_err(|_| {
                VaultError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "IntegrityError",
                    "The stored secret is not text.",
                )
            })?;
            ok(bundle(ctx, &s, Some(&value)))
        }
        Op::Update => {
            let b = json_body(body).await?;
            let mut s = store
                .secret(vault, &name, ctx.version.as_deref(), false)
                .await?
                .ok_or_else(|| secret_not_found(&name))?;
            if let Some(a) = b.attributes {
                s.enabled = a.enabled.unwrap_or(s.enabled);
                s.not_before = a.nbf.or(s.not_before);
                s.expires = a.exp.or(s.expires);
            }
            if b.content_type.is_some() {
                s.content_type = b.content_type;
            }
            if let Some(t) = b.tags {
                s.tags = t;
            }
            s.updated = now;
            store.secret_update(&s).await?;
            ok(bundle(ctx, &s, None))
        }
        Op::List => {
            let items: Vec<Value> = store
                .secrets(vault)
                .await?
                .iter()
                .map(|s| {
                    let mut b = bundle(ctx, s, None);
                    // Listings name the secret, not a version.
                    if let Some(map) = b.as_object_mut() {
                        map.insert(
                            "id".into(),
                            json!(url_of(ctx, &format!("secrets/{}", s.name))),
                        );
                    }
                    b
                })
                .collect();
            ok(json!({ "value": items, "nextLink": null }))
        }
        Op::Versions => {
            let items: Vec<Value> = store
                .secret_versions(vault, &name)
                .await?
                .iter()
                .map(|s| bundle(ctx, s, None))
                .collect();
            if items.is_empty() {
                return Err(secret_not_found(&name));
            }
            ok(json!({ "value": items, "nextLink": null }))
        }
        Op::Delete => {
            let latest = store
                .secret(vault, &name, None, false)
                .await?
                .ok_or_else(|| secret_not_found(&name))?;
            let (soft, days) = soft_delete(&ctx.vault);
            if !soft {
                store.secret_delete(vault, &name, now, now).await?;
                store.secret_purge(vault, &name).await?;
                return ok(bundle(ctx, &latest, None));
            }
            store
                .secret_delete(vault, &name, now, now + days * 86_400)
                .await?;
            let deleted = store
                .deleted_secret(vault, &name)
                .await?
                .ok_or_else(|| secret_not_found(&name))?;
            ok(deleted_bundle(ctx, &deleted))
        }
        Op::GetDeleted => {
            let deleted = store.deleted_secret(vault, &name).await?.ok_or_else(|| {
                VaultError::not_found(
                    "SecretNotFound",
                    format!("Deleted Secret not found: {name}"),
                )
            })?;
            ok(deleted_bundle(ctx, &deleted))
        }
        Op::ListDeleted => {
            let items: Vec<Value> = store
                .deleted_secrets(vault)
                .await?
                .iter()
                .map(|d| deleted_bundle(ctx, d))
                .collect();
            ok(json!({ "value": items, "nextLink": null }))
        }
        Op::Recover => {
            let deleted = store.deleted_secret(vault, &name).await?.ok_or_else(|| {
                VaultError::not_found(
                    "SecretNotFound",
                    format!("Deleted Secret not found: {name}"),
                )
            })?;
            store.secret_recover(vault, &name).await?;
            ok(bundle(ctx, &deleted.latest, None))
        }
        Op::Purge => {
            if purge_protected(&ctx.vault) {
                return Err(VaultError::new(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "Operation purge is not allowed: the vault has purge protection; the secret is purged when its retention ends.",
                ));
            }
            if !store.secret_purge(vault, &name).await? {
                return Err(VaultError::not_found(
                    "SecretNotFound",
                    format!("Deleted Secret not found: {name}"),
                ));
            }
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
