//! `keyless login`, `logout` and `account …`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{self, Api, CLI_CLIENT_ID, MANAGEMENT, ServerArgs};
use crate::output::{Format, print};
use crate::profile::{Credential, Profile};

#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// A user name, for a non-interactive sign-in with --password.
    #[arg(long, short = 'u')]
    username: Option<String>,
    /// The password (or client secret with --service-principal).
    #[arg(long, short = 'p', env = "KEYLESS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Sign in as a service principal: --username is its app id, --password its secret.
    #[arg(long)]
    service_principal: bool,
    /// The tenant id or domain (default: the server's bootstrap tenant).
    #[arg(long, short = 't')]
    tenant: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountCommand {
    /// The signed-in account.
    Show,
    /// A token for a resource, printed as `az account get-access-token` does.
    GetAccessToken(TokenArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The resource (default: `https://management.azure.com/`).
    #[arg(long)]
    pub(crate) resource: Option<String>,
    /// A scope (`<resource>/.default`), instead of --resource.
    #[arg(long)]
    pub(crate) scope: Option<String>,
    /// The tenant; it must be the signed-in account's.
    #[arg(long, short = 't')]
    pub(crate) tenant: Option<String>,
    /// Accepted for compatibility with az.
    #[arg(long)]
    pub(crate) subscription: Option<String>,
}

pub(crate) async fn login(args: LoginArgs, format: Format) -> Result<()> {
    let endpoints = args.server.endpoints()?;
    let tenant = args
        .tenant
        .clone()
        .or(endpoints.tenant.clone())
        .context("give --tenant")?;
    let http = client::http(endpoints.ca_file.as_deref())?;
    let scope = format!("{MANAGEMENT}.default offline_access openid profile");
    let (credential, reply) = if args.service_principal {
        let (Some(app_id), Some(secret)) = (args.username.clone(), args.password.clone()) else {
            bail!("--service-principal needs --username <app id> and --password <secret>");
        };
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", app_id.as_str()),
            ("client_secret", secret.as_str()),
            ("scope", &format!("{MANAGEMENT}.default")),
        ];
        let reply = client::token_request(&http, &endpoints.login, &tenant, &form).await?;
        (Credential::ServicePrincipal { app_id, secret }, reply)
    } else if let Some(username) = args.username.clone() {
        let password = args
            .password
            .clone()
            .context("--username needs --password (or KEYLESS_PASSWORD)")?;
        let form = [
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", username.as_str()),
            ("password", password.as_str()),
            ("scope", scope.as_str()),
        ];
        let reply = client::token_request(&http, &endpoints.login, &tenant, &form).await?;
        let refresh = reply
            .refresh_token
            .clone()
            .context("the token service sent no refresh token")?;
        (
            Credential::User {
                username,
                refresh_token: refresh,
            },
            reply,
        )
    } else {
        device_code(&http, &endpoints.login, &tenant, &scope).await?
    };
    let mut profile = Profile {
        login_url: endpoints.login.clone(),
        management_url: endpoints.management.clone(),
        storage_url: endpoints.storage.clone(),
        ca_file: endpoints.ca_file.clone(),
        tenant: tenant.clone(),
        client_id: CLI_CLIENT_ID.into(),
        subscription: None,
        credential,
    };
    let claims = claims_of(&reply.access_token)?;
    if let Some(tid) = claims.get("tid").and_then(Value::as_str) {
        profile.tenant = tid.to_owned();
    }
    profile.save()?;
    let api = Api::connect().await?;
    let subs = api.get("/subscriptions?api-version=2022-12-01").await?;
    let first = subs
        .get("value")
        .and_then(Value::as_array)
        .and_then(|v| v.first())
        .cloned();
    let mut profile = api.profile.clone();
    profile.subscription = first
        .as_ref()
        .and_then(|s| s.get("subscriptionId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    profile.save()?;
    print(&json!([account_json(&profile, first.as_ref())]), format);
    Ok(())
}

async fn device_code(
    http: &reqwest::Client,
    login: &str,
    tenant: &str,
    scope: &str,
) -> Result<(Credential, client::TokenReply)> {
    let url = format!("{login}/{tenant}/oauth2/v2.0/devicecode");
    let start: Value = http
        .post(&url)
        .form(&[("client_id", CLI_CLIENT_ID), ("scope", scope)])
        .send()
        .await?
        .json()
        .await?;
    let message = start
        .get("message")
        .and_then(Value::as_str)
        .context("the token service refused to start a device sign-in")?;
    eprintln!("{message}");
    let device_code = start
        .get("device_code")
        .and_then(Value::as_str)
        .context("no device code")?
        .to_owned();
    let interval = start.get("interval").and_then(Value::as_u64).unwrap_or(5);
    let expires = start
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(900);
    let deadline = std::time::Instant::now() + Duration::from_secs(expires);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", CLI_CLIENT_ID),
            ("device_code", device_code.as_str()),
        ];
        match client::token_request(http, login, tenant, &form).await {
            Ok(reply) => {
                let claims = claims_of(&reply.access_token)?;
                let username = claims
                    .get("upn")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let refresh = reply
                    .refresh_token
                    .clone()
                    .context("the token service sent no refresh token")?;
                return Ok((
                    Credential::User {
                        username,
                        refresh_token: refresh,
                    },
                    reply,
                ));
            }
            Err(e) if e.to_string().starts_with("authorization_pending") => continue,
            Err(e) => return Err(e),
        }
    }
    bail!("the device sign-in expired before it was approved")
}

/// The claims of a JWT, without checking it (for display only).
pub(crate) fn claims_of(token: &str) -> Result<Value> {
    use base64::Engine as _;
    let payload = token
        .split('.')
        .nth(1)
        .context("the access token is not a JWT")?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('='))?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn account_json(profile: &Profile, subscription: Option<&Value>) -> Value {
    let (name, kind) = match &profile.credential {
        Credential::User { username, .. } => (username.clone(), "user"),
        Credential::ServicePrincipal { app_id, .. } => (app_id.clone(), "servicePrincipal"),
    };
    json!({
        "cloudName": "keyless",
        "environmentName": "keyless",
        "id": profile.subscription,
        "name": subscription.and_then(|s| s.get("displayName")).cloned().unwrap_or(Value::Null),
        "isDefault": true,
        "state": "Enabled",
        "tenantId": profile.tenant,
        "homeTenantId": profile.tenant,
        "user": { "name": name, "type": kind },
    })
}

pub(crate) fn logout() -> Result<()> {
    if !Profile::remove()? {
        crate::output::warn("no account was signed in");
    }
    Ok(())
}

pub(crate) async fn run(cmd: AccountCommand, format: Format) -> Result<()> {
    match cmd {
        AccountCommand::Show => {
            let profile = Profile::load()?;
            print(&account_json(&profile, None), format);
            Ok(())
        }
        AccountCommand::GetAccessToken(args) => {
            let value = access_token(&args).await?;
            print(&value, format);
            Ok(())
        }
    }
}

/// The reply of `az account get-access-token --output json`.
pub(crate) async fn access_token(args: &TokenArgs) -> Result<Value> {
    let mut profile = Profile::load()?;
    if let Some(t) = args.tenant.as_deref() {
        let ours = t.eq_ignore_ascii_case(&profile.tenant)
            || t.eq_ignore_ascii_case("adfs")
            || t.eq_ignore_ascii_case("organizations");
        if !ours {
            bail!(
                "the signed-in account belongs to tenant {}, not {t}; run `keyless login --tenant {t}`",
                profile.tenant
            );
        }
    }
    let resource = match (&args.scope, &args.resource) {
        (Some(scope), _) => scope.strip_suffix("/.default").unwrap_or(scope).to_owned(),
        (None, Some(r)) => r.clone(),
        (None, None) => MANAGEMENT.to_owned(),
    };
    let reply = client::token(&mut profile, &resource).await?;
    let expires_on = jiff::Timestamp::now().as_second() + reply.expires_in;
    let local = jiff::Timestamp::from_second(expires_on)?.to_zoned(jiff::tz::TimeZone::system());
    Ok(json!({
        "accessToken": reply.access_token,
        "expiresOn": local.strftime("%Y-%m-%d %H:%M:%S.%6f").to_string(),
        "expires_on": expires_on,
        "subscription": profile.subscription,
        "tenant": profile.tenant,
        "tokenType": reply.token_type.unwrap_or_else(|| "Bearer".into()),
    }))
}
