//! `keyless acr …`: container registries, like `az acr`: create, show, list,
//! update (`--admin-enabled`), delete, the admin user's credentials, a registry
//! token for clients (`login --expose-token`), and the repositories and tags a
//! registry holds.

use std::net::ToSocketAddrs;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use crate::client::{Api, segment, values};
use crate::output::{Format, print};

const API_VERSION: &str = "2023-07-01";
const TYPE: &str = "Microsoft.ContainerRegistry/registries";
/// The user name that goes with a registry refresh token.
const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Debug, clap::Args)]
pub(crate) struct AcrArgs {
    /// The subscription (default: the signed-in account's).
    #[arg(long, global = true)]
    subscription: Option<String>,
    #[command(subcommand)]
    command: AcrCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AcrCommand {
    /// Create a registry (the admin user is off unless --admin-enabled true).
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        /// Basic, Standard or Premium.
        #[arg(long, default_value = "Basic")]
        sku: String,
        #[arg(long, short = 'l')]
        location: Option<String>,
        #[arg(long)]
        admin_enabled: Option<bool>,
    },
    /// Show a registry.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// List the registries of a resource group, or of the subscription.
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Change a registry: turn the admin user on or off, change its sku.
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long)]
        admin_enabled: Option<bool>,
        #[arg(long)]
        sku: Option<String>,
    },
    /// Delete a registry with everything in it.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// The admin user's credentials.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// A registry token for clients (skopeo, oras) from the signed-in identity:
    /// user name `00000000-0000-0000-0000-000000000000`, the token as password.
    Login {
        #[arg(long, short = 'n')]
        name: String,
        /// Print the token instead of handing it to a container daemon (keyless
        /// uses none).
        #[arg(long)]
        expose_token: bool,
    },
    /// The repositories of a registry and their tags.
    Repository {
        #[command(subcommand)]
        command: RepositoryCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CredentialCommand {
    /// Show the admin user's name and passwords (only while it is enabled).
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Make a new `password` or `password2`.
    Renew {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, value_parser = ["password", "password2"])]
        password_name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum RepositoryCommand {
    /// The registry's repositories.
    List {
        #[arg(long, short = 'n')]
        name: String,
    },
    /// A repository's tags.
    ShowTags {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long)]
        repository: String,
    },
}

pub(crate) async fn run(args: AcrArgs, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let sub = match args.subscription {
        Some(sub) => sub,
        None => api.subscription()?,
    };
    let value = match args.command {
        AcrCommand::Create {
            name,
            resource_group,
            sku,
            location,
            admin_enabled,
        } => {
            let body = json!({
                "location": location.unwrap_or_else(|| "local".into()),
                "sku": { "name": sku },
                "properties": admin(admin_enabled),
            });
            let path = registry_path(&sub, &resource_group, &name);
            api.put(&format!("{path}?api-version={API_VERSION}"), &body)
                .await?
        }
        AcrCommand::Show {
            name,
            resource_group,
        } => find(&api, &sub, &name, resource_group.as_deref()).await?,
        AcrCommand::List { resource_group } => {
            let path = match resource_group {
                Some(rg) => format!(
                    "/subscriptions/{sub}/resourceGroups/{}/providers/{TYPE}",
                    segment(&rg)
                ),
                None => format!("/subscriptions/{sub}/providers/{TYPE}"),
            };
            api.get(&format!("{path}?api-version={API_VERSION}"))
                .await
                .map(values)?
        }
        AcrCommand::Update {
            name,
            resource_group,
            admin_enabled,
            sku,
        } => {
            let id = id_of(&api, &sub, &name, resource_group.as_deref()).await?;
            let mut body = json!({ "properties": admin(admin_enabled) });
            if let (Some(sku), Some(map)) = (sku, body.as_object_mut()) {
                map.insert("sku".into(), json!({ "name": sku }));
            }
            api.patch(&format!("{id}?api-version={API_VERSION}"), &body)
                .await?
        }
        AcrCommand::Delete {
            name,
            resource_group,
            yes,
        } => {
            let id = id_of(&api, &sub, &name, resource_group.as_deref()).await?;
            if !yes
                && !super::group::confirm(&format!(
                    "Delete registry `{name}` with every repository in it?"
                ))?
            {
                bail!("not deleted");
            }
            api.delete(&format!("{id}?api-version={API_VERSION}"))
                .await?
        }
        AcrCommand::Credential { command } => match command {
            CredentialCommand::Show {
                name,
                resource_group,
            } => {
                let id = id_of(&api, &sub, &name, resource_group.as_deref()).await?;
                api.post(
                    &format!("{id}/listCredentials?api-version={API_VERSION}"),
                    &json!({}),
                )
                .await?
            }
            CredentialCommand::Renew {
                name,
                resource_group,
                password_name,
            } => {
                let id = id_of(&api, &sub, &name, resource_group.as_deref()).await?;
                api.post(
                    &format!("{id}/regenerateCredential?api-version={API_VERSION}"),
                    &json!({ "name": password_name }),
                )
                .await?
            }
        },
        AcrCommand::Login { name, expose_token } => {
            if !expose_token {
                bail!(
                    "keyless does not drive a container daemon: run `keyless acr login -n {name} --expose-token` and give clients the user name {NULL_GUID} and the token as password (skopeo --creds, oras -u/-p)"
                );
            }
            let registry = find(&api, &sub, &name, None).await?;
            let session = Registry::open(&api, &registry).await?;
            json!({ "accessToken": session.refresh_token, "loginServer": session.login_server, "username": NULL_GUID })
        }
        AcrCommand::Repository { command } => {
            let (name, repository) = match &command {
                RepositoryCommand::List { name } => (name, None),
                RepositoryCommand::ShowTags { name, repository } => (name, Some(repository)),
            };
            let registry = find(&api, &sub, name, None).await?;
            let session = Registry::open(&api, &registry).await?;
            match repository {
                None => session
                    .get("/v2/_catalog", "registry:catalog:*")
                    .await?
                    .get("repositories")
                    .cloned()
                    .unwrap_or_else(|| json!([])),
                Some(repo) => session
                    .get(
                        &format!("/v2/{repo}/tags/list"),
                        &format!("repository:{repo}:pull"),
                    )
                    .await?
                    .get("tags")
                    .cloned()
                    .unwrap_or_else(|| json!([])),
            }
        }
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}

/// `properties` with `adminUserEnabled` when the command sets it.
fn admin(enabled: Option<bool>) -> Value {
    match enabled {
        Some(e) => json!({ "adminUserEnabled": e }),
        None => json!({}),
    }
}

fn registry_path(sub: &str, rg: &str, name: &str) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/{}/providers/{TYPE}/{}",
        segment(rg),
        segment(name)
    )
}

/// A registry by name: in its resource group when given, else found among the
/// subscription's registries, as `az acr` does.
async fn find(api: &Api, sub: &str, name: &str, rg: Option<&str>) -> Result<Value> {
    if let Some(rg) = rg {
        return api
            .get(&format!(
                "{}?api-version={API_VERSION}",
                registry_path(sub, rg, name)
            ))
            .await;
    }
    let all = api
        .get(&format!(
            "/subscriptions/{sub}/providers/{TYPE}?api-version={API_VERSION}"
        ))
        .await
        .map(values)?;
    all.as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .cloned()
        .ok_or_else(|| anyhow!("the registry `{name}` is not found in subscription {sub}"))
}

async fn id_of(api: &Api, sub: &str, name: &str, rg: Option<&str>) -> Result<String> {
    match rg {
        Some(rg) => Ok(registry_path(sub, rg, name)),
        None => find(api, sub, name, None)
            .await?
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the registry `{name}` has no id")),
    }
}

/// A signed-in conversation with one registry's data plane.
struct Registry {
    http: reqwest::Client,
    login_server: String,
    refresh_token: String,
}

impl Registry {
    /// Exchanges the signed-in identity's management token for a registry
    /// refresh token. The login server's name resolves to the management
    /// listener's host, on the registry's port.
    async fn open(api: &Api, registry: &Value) -> Result<Self> {
        let login_server = registry
            .pointer("/properties/loginServer")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the registry has no login server"))?
            .to_owned();
        let (host, port) = login_server
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("login server `{login_server}` has no port"))?;
        let management = api
            .profile
            .management_url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default();
        let server_host = management
            .rsplit_once(':')
            .map_or(management, |(h, _)| h)
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = (server_host, port.parse::<u16>()?)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow!("cannot resolve `{server_host}`"))?;
        let mut builder = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .resolve(host, addr);
        if let Some(ca) = api.profile.ca_file.as_deref() {
            let pem = std::fs::read(ca)
                .with_context(|| format!("cannot read the CA bundle `{}`", ca.display()))?;
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem)?);
        }
        let http = builder.build()?;
        let reply: Value = checked(
            http.post(format!("https://{login_server}/oauth2/exchange"))
                .form(&[
                    ("grant_type", "access_token"),
                    ("service", login_server.as_str()),
                    ("tenant", api.profile.tenant.as_str()),
                    ("access_token", api.token()),
                ])
                .send()
                .await?,
        )
        .await?;
        let refresh_token = reply
            .get("refresh_token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the registry sent no refresh token"))?
            .to_owned();
        Ok(Self {
            http,
            login_server,
            refresh_token,
        })
    }

    /// A GET of the distribution API with an access token for `scope`.
    async fn get(&self, path: &str, scope: &str) -> Result<Value> {
        let token: Value = checked(
            self.http
                .post(format!("https://{}/oauth2/token", self.login_server))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("service", self.login_server.as_str()),
                    ("scope", scope),
                    ("refresh_token", self.refresh_token.as_str()),
                ])
                .send()
                .await?,
        )
        .await?;
        let access = token
            .get("access_token")
            .and_then(Value::as_str)
            .unwrap_or_default();
        checked(
            self.http
                .get(format!("https://{}{path}", self.login_server))
                .bearer_auth(access)
                .send()
                .await?,
        )
        .await
    }
}

/// The JSON of a successful answer, or the registry's own error message.
async fn checked(response: reqwest::Response) -> Result<Value> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let parsed: Option<Value> = serde_json::from_str(&text).ok();
        let message = parsed
            .as_ref()
            .and_then(|v| v.pointer("/errors/0/message"))
            .and_then(Value::as_str)
            .unwrap_or(text.as_str());
        bail!("the registry refused ({}): {message}", status.as_u16());
    }
    serde_json::from_str(&text).context("the registry sent a malformed reply")
}
