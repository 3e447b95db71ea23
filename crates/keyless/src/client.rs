//! Talking to a keyless server: endpoints, TLS trust, tokens and the management API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use keyless_server::ServerInfo;

use crate::profile::{Credential, Profile};

/// The resource of management tokens.
pub(crate) const MANAGEMENT: &str = "https://management.azure.com/";
/// The public client id keyless's CLI signs in as (the Azure CLI's, as az does).
pub(crate) const CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// Where to find a server when no profile says it yet.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ServerArgs {
    /// The server's data dir, whose endpoints.json names the endpoints.
    #[arg(long, env = "KEYLESS_DATA_DIR", default_value = ".keyless")]
    pub(crate) data_dir: PathBuf,
    /// The token service URL.
    #[arg(long, env = "KEYLESS_LOGIN_URL")]
    pub(crate) login_url: Option<String>,
    /// The management API URL.
    #[arg(long, env = "KEYLESS_MANAGEMENT_URL")]
    pub(crate) management_url: Option<String>,
    /// The storage (Blob and DFS) URL.
    #[arg(long, env = "KEYLESS_STORAGE_URL")]
    pub(crate) storage_url: Option<String>,
    /// The CA bundle to trust.
    #[arg(long, env = "KEYLESS_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
}

/// The endpoints of a server, from flags, environment or its data dir.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    pub(crate) login: String,
    pub(crate) management: String,
    pub(crate) storage: Option<String>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) tenant: Option<String>,
}

impl ServerArgs {
    pub(crate) fn endpoints(&self) -> Result<Endpoints> {
        let info = read_info(&self.data_dir).ok();
        let login = self
            .login_url
            .clone()
            .or_else(|| info.as_ref().map(|i| i.login.clone()));
        let management = self
            .management_url
            .clone()
            .or_else(|| info.as_ref().map(|i| i.management.clone()));
        let (Some(login), Some(management)) = (login, management) else {
            bail!(
                "cannot find a keyless server: give --login-url and --management-url, export them with `eval \"$(keyless env)\"`, or point --data-dir at the server's data dir"
            );
        };
        let ca_file = self
            .ca_file
            .clone()
            .or_else(|| info.as_ref().and_then(|i| i.ca_file.clone()))
            .or_else(|| std::env::var_os("REQUESTS_CA_BUNDLE").map(PathBuf::from));
        let storage = self
            .storage_url
            .clone()
            .or_else(|| info.as_ref().map(|i| i.storage.clone()));
        Ok(Endpoints {
            login,
            management,
            storage,
            ca_file,
            tenant: info.map(|i| i.tenant),
        })
    }
}

/// Reads `<data dir>/endpoints.json`, written by a running server.
pub(crate) fn read_info(data_dir: &Path) -> Result<ServerInfo> {
    let path = data_dir.join("endpoints.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read `{}`; has `keyless serve` run with this data dir?",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("`{}` is malformed", path.display()))
}

/// An HTTPS client that trusts `ca_file` (or the system roots when none is given).
pub(crate) fn http(ca_file: Option<&Path>) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .connect_timeout(Duration::from_secs(10));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .with_context(|| format!("cannot read the CA bundle `{}`", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("`{}` holds no PEM certificate", ca.display()))?;
        builder = builder.tls_certs_only(certs);
    }
    builder.build().context("cannot build the HTTP client")
}

/// A token endpoint reply.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct TokenReply {
    pub(crate) access_token: String,
    pub(crate) expires_in: i64,
    #[serde(default)]
    pub(crate) refresh_token: Option<String>,
    #[serde(default)]
    pub(crate) token_type: Option<String>,
}

/// Posts a token request and turns OAuth errors into readable ones.
pub(crate) async fn token_request(
    http: &reqwest::Client,
    login_url: &str,
    tenant: &str,
    form: &[(&str, &str)],
) -> Result<TokenReply> {
    let url = format!("{login_url}/{tenant}/oauth2/v2.0/token");
    let response = http
        .post(&url)
        .form(form)
        .send()
        .await
        .with_context(|| format!("cannot reach the token service at {login_url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .context("the token service sent a malformed reply")?;
    if !status.is_success() {
        let description = body
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        let error = body.get("error").and_then(Value::as_str).unwrap_or("error");
        bail!("{error}: {description}");
    }
    Ok(serde_json::from_value(body)?)
}

/// A token for `resource` for the signed-in account; saves a rotated refresh token.
pub(crate) async fn token(profile: &mut Profile, resource: &str) -> Result<TokenReply> {
    let http = http(profile.ca_file.as_deref())?;
    let scope = format!("{}/.default", resource.trim_end_matches('/'));
    let tenant = profile.tenant.clone();
    match profile.credential.clone() {
        Credential::User {
            username,
            refresh_token,
        } => {
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", profile.client_id.as_str()),
                ("refresh_token", refresh_token.as_str()),
                ("scope", &format!("{scope} offline_access")),
            ];
            let reply = token_request(&http, &profile.login_url, &tenant, &form)
                .await
                .context("your sign-in has ended; run `keyless login`")?;
            if let Some(rotated) = &reply.refresh_token {
                profile.credential = Credential::User {
                    username,
                    refresh_token: rotated.clone(),
                };
                profile.save()?;
            }
            Ok(reply)
        }
        Credential::ServicePrincipal { app_id, secret } => {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", app_id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
            ];
            token_request(&http, &profile.login_url, &tenant, &form).await
        }
    }
}

/// The management API as the signed-in account.
#[derive(Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    pub(crate) profile: Profile,
}

impl Api {
    pub(crate) async fn connect() -> Result<Self> {
        let mut profile = Profile::load()?;
        let reply = token(&mut profile, MANAGEMENT).await?;
        Ok(Self {
            http: http(profile.ca_file.as_deref())?,
            base: profile.management_url.clone(),
            token: reply.access_token,
            profile,
        })
    }

    /// The signed-in identity's management token.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn subscription(&self) -> Result<String> {
        if let Some(chosen) = SUBSCRIPTION.get() {
            return Ok(chosen.clone());
        }
        self.profile.subscription.clone().ok_or_else(|| {
            anyhow!("the signed-in account sees no subscription; give --subscription")
        })
    }

    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = std::time::Instant::now();
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the management API at {}", self.base))?;
        let status = response.status();
        crate::output::info(|| {
            format!(
                "{method} {url}: {} in {} ms",
                status.as_u16(),
                started.elapsed().as_millis()
            )
        });
        crate::output::debug(|| {
            let id = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-")
                    .to_owned()
            };
            format!(
                "x-ms-request-id {}, x-ms-correlation-request-id {}",
                id("x-ms-request-id"),
                id("x-ms-correlation-request-id")
            )
        });
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let parsed: Option<Value> = serde_json::from_str(&text).ok();
            let error = parsed.as_ref().and_then(|v| v.get("error"));
            let code = error
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("Error");
            let message = error
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or(text.as_str());
            return Err(ApiError {
                status,
                code: code.to_owned(),
                message: message.to_owned(),
            }
            .into());
        }
        if status == StatusCode::NO_CONTENT || text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the management API sent a malformed reply")
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, body: &Value) -> Result<Value> {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Result<Value> {
        self.call(Method::DELETE, path, None).await
    }
}

/// The subscription `--subscription` chose for this command, over the profile's.
static SUBSCRIPTION: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the subscription of this command (az's global `--subscription`).
pub(crate) fn set_subscription(id: String) {
    let _ = SUBSCRIPTION.set(id);
}

/// A refusal of the management API: its status, error code and message.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "({}) {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The exit status az gives a failed command: 3 when what it names does not
/// exist, 1 otherwise (usage errors, 2, end before any command runs).
pub(crate) fn exit_status(error: &anyhow::Error) -> u8 {
    let missing = error
        .chain()
        .filter_map(|e| e.downcast_ref::<ApiError>())
        .any(|e| e.status == StatusCode::NOT_FOUND);
    if missing { 3 } else { 1 }
}

/// Percent-encodes one path segment.
pub(crate) fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The `value` array of a list reply.
pub(crate) fn values(mut reply: Value) -> Value {
    reply.get_mut("value").map(Value::take).unwrap_or_default()
}
