//! The registry listener: container registries as Azure Container Registry
//! serves them, for unmodified clients (skopeo, oras, the registry SDK).
//!
//! A registry is addressed by its login server, `<name>.<registry suffix>`, so
//! the `Host` of each request names it. The OCI distribution API is under
//! `/v2/`; ACR's token service under `/oauth2/`: an Entra access token is
//! exchanged for a registry refresh token, which buys access tokens for the
//! repository actions the caller's roles allow (AcrPull, AcrPush, AcrDelete,
//! or Owner, Contributor and Reader through their wildcards). The admin user
//! signs in with Basic credentials while it is enabled. Roles are checked again
//! on every request, so a removed assignment stops pulls at once, and every
//! request leaves a record naming the identity, the job when a job's identity
//! asked, the repository and the digest.

mod acr;
mod content;
mod token;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use keyless_store::Registry;

use crate::http::ClientAddr;
use crate::state::SharedState;
use crate::storage_log::Record;

pub(crate) use content::UPLOAD_LIFETIME;
pub(crate) use token::{Who, job_pull};

/// What a registry's admin password is sealed as.
pub(crate) fn password_context(registry: &str, which: &str) -> String {
    format!("registry-password:{registry}:{which}")
}

/// The router of the registry listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

/// The repository actions of the token service's scopes, and the Azure
/// action that grants each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            // ACR's metadata actions read and write what pull and push do.
            "pull" | "metadata_read" => Some(Self::Pull),
            "push" | "metadata_write" => Some(Self::Push),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }

    /// The Azure action, at the registry's scope, that allows it.
    pub(crate) fn azure_action(self) -> &'static str {
        match self {
            Self::Pull => "Microsoft.ContainerRegistry/registries/pull/read",
            Self::Push => "Microsoft.ContainerRegistry/registries/push/write",
            Self::Delete => "Microsoft.ContainerRegistry/registries/artifacts/delete",
        }
    }
}

/// What a request needs: an action on a repository, or the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    Repository(String, Action),
    Catalog,
}

impl Need {
    /// The scope a client asks the token service for.
    fn scope(&self) -> String {
        match self {
            Self::Repository(name, action) => format!("repository:{name}:{}", action.name()),
            Self::Catalog => "registry:catalog:*".into(),
        }
    }

    fn action(&self) -> Action {
        match self {
            Self::Repository(_, a) => *a,
            Self::Catalog => Action::Pull,
        }
    }
}

/// A refusal or failure in the distribution API's error shape (boxed: it is
/// the error of every handler, and large).
#[derive(Debug)]
pub(crate) struct RegError(Box<Refusal>);

/// What a [`RegError`] says.
#[derive(Debug)]
pub(crate) struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    detail: Option<serde_json::Value>,
    challenge: Option<String>,
    explanation: Option<String>,
}

impl RegError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Refusal {
            status,
            code,
            message: message.into(),
            detail: None,
            challenge: None,
            explanation: None,
        }))
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", message)
    }

    /// A range outside what is held, with the size held as its detail.
    pub(crate) fn out_of_range(code: &'static str, message: impl Into<String>, size: u64) -> Self {
        let mut e = Self::new(StatusCode::RANGE_NOT_SATISFIABLE, code, message);
        e.detail = Some(serde_json::json!({ "size": size }));
        e
    }
}

impl std::ops::Deref for RegError {
    type Target = Refusal;
    fn deref(&self) -> &Refusal {
        &self.0
    }
}

impl std::ops::DerefMut for RegError {
    fn deref_mut(&mut self) -> &mut Refusal {
        &mut self.0
    }
}

impl From<keyless_core::Error> for RegError {
    fn from(e: keyless_core::Error) -> Self {
        use keyless_core::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound => Self::not_found("NAME_UNKNOWN", e.message()),
            ErrorKind::InvalidInput => Self::bad("SIZE_INVALID", e.message()),
            ErrorKind::Conflict | ErrorKind::AlreadyExists => {
                Self::new(StatusCode::CONFLICT, "DENIED", e.message())
            }
            _ => {
                tracing::error!(error = %e, "registry request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "UNKNOWN",
                    "The server encountered an internal error.",
                )
            }
        }
    }
}

impl IntoResponse for RegError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let mut error = json!({ "code": this.code, "message": this.message });
        if let (Some(d), Some(map)) = (this.detail, error.as_object_mut()) {
            map.insert("detail".into(), d);
        }
        let mut response = (
            this.status,
            [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
            json!({ "errors": [error] }).to_string(),
        )
            .into_response();
        let h = response.headers_mut();
        h.insert(API_VERSION.0, HeaderValue::from_static(API_VERSION.1));
        if let Some(c) = this.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::WWW_AUTHENTICATE, c);
        }
        if let Some(e) = this.explanation.as_deref() {
            h.insert("x-keyless-explanation", crate::http::ascii_header(e));
        }
        response
    }
}

/// The header every distribution API answer carries.
pub(crate) const API_VERSION: (&str, &str) = ("docker-distribution-api-version", "registry/2.0");

/// What a request turned out to be, for its log record.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    registry: String,
    operation: &'static str,
    path: String,
    who: Option<Who>,
    bytes_in: u64,
    bytes_out: u64,
}

/// A request to one registry, once its registry is known.
pub(crate) struct Ctx {
    pub(crate) state: SharedState,
    pub(crate) registry: Registry,
    /// `<name>.<suffix>:<port>`, as clients name the registry.
    pub(crate) login_server: String,
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Vec<(String, String)>,
}

impl Ctx {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The challenge that sends a client to the token service for `need`.
    fn challenge(&self, need: Option<&Need>) -> String {
        let realm = format!("https://{}/oauth2/token", self.login_server);
        match need {
            Some(n) => format!(
                "Bearer realm=\"{realm}\",service=\"{}\",scope=\"{}\"",
                self.login_server,
                n.scope()
            ),
            None => format!("Bearer realm=\"{realm}\",service=\"{}\"", self.login_server),
        }
    }

    /// 401 with the challenge for `need`, in ACR's words.
    pub(crate) fn unauthorized(&self, need: Option<&Need>, why: Option<String>) -> RegError {
        let mut e = RegError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            match &why {
                Some(w) => format!("authentication required: {w}"),
                None => "authentication required, sign in with an identity (az acr login) or the admin user".into(),
            },
        );
        if let Some(Need::Repository(name, action)) = need {
            e.detail =
                Some(json!([{ "Type": "repository", "Name": name, "Action": action.name() }]));
        }
        e.challenge = Some(self.challenge(need));
        e.explanation = why;
        e
    }
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
    let response = match route(&state, request, &mut seen).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if seen.registry.is_empty() {
        return response;
    }
    let status = response.status().as_u16();
    let who = seen.who.as_ref();
    let record = Record {
        time_generated: jiff::Timestamp::from_second(state.now())
            .map(|t| t.to_string())
            .unwrap_or_default(),
        account_name: seen.registry.clone(),
        operation_name: seen.operation.to_owned(),
        method: method.to_string(),
        path: seen.path.clone(),
        status_code: status,
        status_text: if status < 400 {
            "Success".into()
        } else {
            status.to_string()
        },
        authentication_type: who.map_or("Anonymous", Who::authentication_type).to_owned(),
        requester_object_id: who.and_then(|w| w.oid.clone()),
        requester_tenant_id: who.map(|w| w.tenant.clone()),
        requester_app_id: who.and_then(|w| w.appid.clone()),
        requester_upn: who.and_then(|w| w.upn.clone()),
        requester_principal_type: who.map(|w| w.kind.clone()),
        job_id: who.and_then(|w| w.job.clone()),
        caller_ip_address: peer.map(|ip| ip.to_string()).unwrap_or_default(),
        request_body_size: seen.bytes_in,
        response_body_size: seen.bytes_out,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        correlation_id: request_id,
        explanation: response
            .headers()
            .get("x-keyless-explanation")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    crate::metrics::operation("registry", seen.operation, record.status_code);
    state.registry_log.append(record).await;
    response
}

async fn route(
    state: &SharedState,
    request: Request,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    let (parts, body) = request.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
        .to_ascii_lowercase();
    let Some(name) = crate::cloud::registry_of_host(&host) else {
        return Err(RegError::not_found(
            "NAME_UNKNOWN",
            format!(
                "address a registry by its login server, https://<registry>.{}/ (the `Host` was `{host}`)",
                crate::cloud::registry_suffix(&state.urls.registry)
            ),
        ));
    };
    let registry = state.store.registry(name).await?.ok_or_else(|| {
        RegError::not_found(
            "NAME_UNKNOWN",
            format!("the registry `{name}` does not exist on this server"),
        )
    })?;
    seen.registry.clone_from(&registry.name);
    let query = parts
        .uri
        .query()
        .and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok())
        .unwrap_or_default();
    let ctx = Ctx {
        login_server: crate::cloud::login_server(&state.urls, &registry.name),
        state: Arc::clone(state),
        registry,
        method: parts.method,
        headers: parts.headers,
        query,
    };
    // The registry SDK sends a repository's slashes percent-encoded (`team%2Fapp`).
    let decoded = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy();
    let path = decoded.as_ref();
    if let Some(rest) = path.strip_prefix("/oauth2/") {
        return token::serve(&ctx, rest, body, seen).await;
    }
    if let Some(rest) = path.strip_prefix("/acr/v1/") {
        return acr::serve(&ctx, rest, seen).await;
    }
    if path == "/v2" || path.starts_with("/v2/") {
        return content::serve(&ctx, path.get(3..).unwrap_or_default(), body, seen).await;
    }
    Err(RegError::not_found(
        "UNSUPPORTED",
        format!(
            "`{} {path}` is not part of the registry API (/v2/, /oauth2/, /acr/v1/)",
            ctx.method
        ),
    ))
}

/// A body limited to `limit` bytes, as a byte stream.
pub(crate) fn stream(body: Body) -> keyless_store::ByteStream {
    use futures_util::StreamExt as _;
    Box::pin(
        body.into_data_stream()
            .map(|r| r.map_err(std::io::Error::other)),
    )
}
