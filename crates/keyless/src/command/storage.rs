//! `keyless storage …`: accounts (management API) and containers and blobs (Blob
//! REST with the account key), shaped like `az storage`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use keyless_auth::shared_key::{SignedRequest, sign, string_to_sign};

use crate::client::{Api, segment, values};
use crate::output::{Format, print};

const API_VERSION: &str = "2023-05-01";
const SERVICE_VERSION: &str = "2026-10-06";
const BLOCK: usize = 4 * 1024 * 1024;
const STORAGE_RESOURCE: &str = "https://storage.azure.com";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum StorageCommand {
    /// Storage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Blobs.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// The storage log of an account: who touched which data, as JSON lines.
    Logs {
        /// The account.
        #[arg(long)]
        account: String,
        #[arg(long, short = 'g', default_value = "default")]
        resource_group: String,
        /// From this time on: RFC 3339, or an age such as `15m`, `2h`, `1d`.
        #[arg(long)]
        since: Option<String>,
        /// Only this requester: object id or UPN.
        #[arg(long)]
        principal: Option<String>,
        /// Only paths starting with this (`container/dir/`).
        #[arg(long)]
        path_prefix: Option<String>,
        /// Only this HTTP status.
        #[arg(long)]
        status: Option<u16>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AccountCommand {
    /// Create a storage account.
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        /// Hierarchical namespace (ADLS Gen2).
        #[arg(long)]
        hns: bool,
        #[arg(long, action = clap::ArgAction::Set)]
        allow_shared_key_access: Option<bool>,
    },
    /// Show one.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// List the accounts of the subscription or of a resource group.
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Change flags.
    Update {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, action = clap::ArgAction::Set)]
        allow_shared_key_access: Option<bool>,
        /// What the network rules do with addresses no rule names.
        #[arg(long, value_parser = ["Allow", "Deny"])]
        default_action: Option<String>,
        /// `AzureServices` lets keyless's trusted services (managed identities) through; `None` does not.
        #[arg(long, value_parser = ["AzureServices", "None"])]
        bypass: Option<String>,
    },
    /// Network rules: the addresses that may reach the account's data.
    #[command(subcommand)]
    NetworkRule(NetworkRuleCommand),
    /// Delete an account with all its data.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// The account keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// A connection string with the account key.
    ShowConnectionString {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum NetworkRuleCommand {
    /// Allow an address or CIDR range, or a named virtual network (an address range).
    Add {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Remove a rule.
    Remove {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Show the rules.
    List {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
}

/// One network rule.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RuleArgs {
    /// An address or CIDR range.
    #[arg(long, conflicts_with = "vnet_name")]
    ip_address: Option<String>,
    /// A virtual network's name…
    #[arg(long, requires = "address_prefix")]
    vnet_name: Option<String>,
    /// …and its address range.
    #[arg(long)]
    address_prefix: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum KeysCommand {
    /// List both keys.
    List {
        #[arg(long = "account-name", short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// Replace one key.
    Renew {
        #[arg(long = "account-name", short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
        #[arg(long, value_parser = ["key1", "key2"])]
        key: String,
    },
}

/// How the data commands find the account key.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataArgs {
    #[arg(long)]
    account_name: String,
    /// The account key (default: listed through the management API).
    #[arg(long, env = "AZURE_STORAGE_KEY", hide_env_values = true)]
    account_key: Option<String>,
    /// The resource group of the account, to list its key.
    #[arg(long, short = 'g', default_value = "default")]
    resource_group: String,
    /// `key` signs with the account key; `login` sends a storage token of the
    /// signed-in identity, whose role assignments then decide.
    #[arg(long, default_value = "key", value_parser = ["key", "login"])]
    auth_mode: String,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ContainerCommand {
    /// Create a container.
    Create {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List containers.
    List {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Delete a container and its blobs.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BlobCommand {
    /// Upload a file in 4 MiB blocks.
    Upload {
        #[arg(long, short = 'c')]
        container_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[arg(long)]
        overwrite: bool,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Download a blob to a file.
    Download {
        #[arg(long, short = 'c')]
        container_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'f')]
        file: PathBuf,
        #[command(flatten)]
        data: DataArgs,
    },
    /// List blobs.
    List {
        #[arg(long, short = 'c')]
        container_name: String,
        #[arg(long)]
        prefix: Option<String>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Delete a blob.
    Delete {
        #[arg(long, short = 'c')]
        container_name: String,
        #[arg(long, short = 'n')]
        name: String,
        #[command(flatten)]
        data: DataArgs,
    },
}

pub(crate) async fn run(cmd: StorageCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let value = match cmd {
        StorageCommand::Account(cmd) => account(&api, cmd).await?,
        StorageCommand::Container(cmd) => container(&api, cmd).await?,
        StorageCommand::Blob(cmd) => blob(&api, cmd).await?,
        StorageCommand::Logs {
            account,
            resource_group,
            since,
            principal,
            path_prefix,
            status,
        } => {
            let mut query = vec![("api-version", API_VERSION.to_owned())];
            if let Some(since) = since {
                query.push(("since", absolute_time(&since)?));
            }
            query.extend(principal.map(|p| ("principal", p)));
            query.extend(path_prefix.map(|p| ("pathPrefix", p)));
            query.extend(status.map(|s| ("status", s.to_string())));
            let encoded = serde_urlencoded::to_string(&query)?;
            let reply = api
                .get(&format!(
                    "{}/logs?{encoded}",
                    account_path(&api, &resource_group, &account)?
                ))
                .await?;
            for record in reply
                .get("value")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!("{record}");
            }
            Value::Null
        }
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}

/// The account's current `networkAcls`.
async fn network_acls(api: &Api, rg: &str, name: &str) -> Result<Value> {
    let account = api
        .get(&format!(
            "{}?api-version={API_VERSION}",
            account_path(api, rg, name)?
        ))
        .await?;
    Ok(account
        .pointer("/properties/networkAcls")
        .cloned()
        .unwrap_or_else(|| json!({ "defaultAction": "Allow", "bypass": "AzureServices" })))
}

async fn network_rule(api: &Api, cmd: NetworkRuleCommand) -> Result<Value> {
    let (name, rg, rule, add) = match cmd {
        NetworkRuleCommand::List {
            name,
            resource_group,
        } => return network_acls(api, &resource_group, &name).await,
        NetworkRuleCommand::Add {
            name,
            resource_group,
            rule,
        } => (name, resource_group, rule, true),
        NetworkRuleCommand::Remove {
            name,
            resource_group,
            rule,
        } => (name, resource_group, rule, false),
    };
    let mut acls = network_acls(api, &rg, &name).await?;
    // The list a rule lives in, the rule, and the field that names it.
    let (key, entry, id_field) = match (rule.ip_address, rule.vnet_name, rule.address_prefix) {
        (Some(ip), _, _) => (
            "ipRules",
            json!({ "value": ip, "action": "Allow" }),
            "value",
        ),
        (None, Some(vnet), Some(prefix)) => (
            "virtualNetworkRules",
            json!({ "id": vnet, "addressPrefix": prefix, "action": "Allow" }),
            "id",
        ),
        _ => bail!("give --ip-address, or --vnet-name with --address-prefix"),
    };
    let wanted = entry.get(id_field).cloned();
    let matches = |v: &Value| v.get(id_field).cloned() == wanted;
    if let Some(map) = acls.as_object_mut() {
        let list = map.entry(key).or_insert_with(|| json!([]));
        if let Some(items) = list.as_array_mut() {
            items.retain(|v| !matches(v));
            if add {
                items.push(entry);
            }
        }
    }
    let updated = api
        .patch(
            &format!(
                "{}?api-version={API_VERSION}",
                account_path(api, &rg, &name)?
            ),
            &json!({ "properties": { "networkAcls": acls } }),
        )
        .await?;
    Ok(updated
        .pointer("/properties/networkAcls")
        .cloned()
        .unwrap_or(Value::Null))
}

/// An RFC 3339 time from itself or from an age (`90s`, `15m`, `2h`, `1d`).
fn absolute_time(text: &str) -> Result<String> {
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(t.to_string());
    }
    let split = text.len().saturating_sub(1);
    let (number, unit) = (
        text.get(..split).unwrap_or(""),
        text.get(split..).unwrap_or(""),
    );
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    let Ok(n) = number.parse::<i64>() else {
        bail!("--since takes an RFC 3339 time or an age such as 15m, 2h or 1d, not `{text}`");
    };
    if seconds == 0 {
        bail!("--since takes an RFC 3339 time or an age such as 15m, 2h or 1d, not `{text}`");
    }
    let then = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(n.saturating_mul(seconds));
    Ok(then.to_string())
}

fn account_path(api: &Api, rg: &str, name: &str) -> Result<String> {
    Ok(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts/{}",
        api.subscription()?,
        segment(rg),
        segment(name)
    ))
}

async fn account(api: &Api, cmd: AccountCommand) -> Result<Value> {
    Ok(match cmd {
        AccountCommand::Create {
            name,
            resource_group,
            hns,
            allow_shared_key_access,
        } => {
            let mut properties = json!({ "isHnsEnabled": hns });
            if let (Some(allow), Some(map)) = (allow_shared_key_access, properties.as_object_mut())
            {
                map.insert("allowSharedKeyAccess".into(), json!(allow));
            }
            let body = json!({ "location": "local", "kind": "StorageV2", "sku": { "name": "Standard_LRS" }, "properties": properties });
            api.put(
                &format!(
                    "{}?api-version={API_VERSION}",
                    account_path(api, &resource_group, &name)?
                ),
                &body,
            )
            .await?
        }
        AccountCommand::Show {
            name,
            resource_group,
        } => {
            api.get(&format!(
                "{}?api-version={API_VERSION}",
                account_path(api, &resource_group, &name)?
            ))
            .await?
        }
        AccountCommand::List { resource_group } => {
            let sub = api.subscription()?;
            let path = match resource_group {
                Some(rg) => format!(
                    "/subscriptions/{sub}/resourceGroups/{}/providers/Microsoft.Storage/storageAccounts",
                    segment(&rg)
                ),
                None => format!("/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts"),
            };
            api.get(&format!("{path}?api-version={API_VERSION}"))
                .await
                .map(values)?
        }
        AccountCommand::Update {
            name,
            resource_group,
            allow_shared_key_access,
            default_action,
            bypass,
        } => {
            let mut properties = json!({});
            if let (Some(allow), Some(map)) = (allow_shared_key_access, properties.as_object_mut())
            {
                map.insert("allowSharedKeyAccess".into(), json!(allow));
            }
            if default_action.is_some() || bypass.is_some() {
                let mut acls = network_acls(api, &resource_group, &name).await?;
                if let Some(map) = acls.as_object_mut() {
                    if let Some(a) = default_action {
                        map.insert("defaultAction".into(), json!(a));
                    }
                    if let Some(b) = bypass {
                        map.insert("bypass".into(), json!(b));
                    }
                }
                if let Some(map) = properties.as_object_mut() {
                    map.insert("networkAcls".into(), acls);
                }
            }
            api.patch(
                &format!(
                    "{}?api-version={API_VERSION}",
                    account_path(api, &resource_group, &name)?
                ),
                &json!({ "properties": properties }),
            )
            .await?
        }
        AccountCommand::NetworkRule(cmd) => network_rule(api, cmd).await?,
        AccountCommand::Delete {
            name,
            resource_group,
        } => {
            api.delete(&format!(
                "{}?api-version={API_VERSION}",
                account_path(api, &resource_group, &name)?
            ))
            .await?
        }
        AccountCommand::Keys(KeysCommand::List {
            name,
            resource_group,
        }) => {
            let keys = api
                .post(
                    &format!(
                        "{}/listKeys?api-version={API_VERSION}",
                        account_path(api, &resource_group, &name)?
                    ),
                    &json!({}),
                )
                .await?;
            keys.get("keys").cloned().unwrap_or(Value::Null)
        }
        AccountCommand::Keys(KeysCommand::Renew {
            name,
            resource_group,
            key,
        }) => {
            let keys = api
                .post(
                    &format!(
                        "{}/regenerateKey?api-version={API_VERSION}",
                        account_path(api, &resource_group, &name)?
                    ),
                    &json!({ "keyName": key }),
                )
                .await?;
            keys.get("keys").cloned().unwrap_or(Value::Null)
        }
        AccountCommand::ShowConnectionString {
            name,
            resource_group,
        } => {
            let key = list_key(api, &resource_group, &name).await?;
            let endpoint = storage_url(api, &resource_group, &name).await?;
            json!({ "connectionString": format!("DefaultEndpointsProtocol=https;AccountName={name};AccountKey={key};BlobEndpoint={endpoint};") })
        }
    })
}

async fn list_key(api: &Api, rg: &str, name: &str) -> Result<String> {
    let keys = api
        .post(
            &format!(
                "{}/listKeys?api-version={API_VERSION}",
                account_path(api, rg, name)?
            ),
            &json!({}),
        )
        .await?;
    keys.pointer("/keys/0/value")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no key in the reply")
}

async fn storage_url(api: &Api, rg: &str, name: &str) -> Result<String> {
    let account = api
        .get(&format!(
            "{}?api-version={API_VERSION}",
            account_path(api, rg, name)?
        ))
        .await?;
    account
        .pointer("/properties/primaryEndpoints/blob")
        .and_then(Value::as_str)
        .map(|s| s.trim_end_matches('/').to_owned())
        .context("the account has no blob endpoint")
}

/// How the Blob REST client authenticates.
enum Credential {
    /// Signs every request with the account key.
    Key(Vec<u8>),
    /// Sends the signed-in identity's storage token.
    Token(String),
}

/// A Blob REST client, with the account key or as the signed-in identity.
struct Blobs {
    http: reqwest::Client,
    endpoint: String,
    account: String,
    credential: Credential,
}

impl Blobs {
    async fn connect(api: &Api, data: &DataArgs) -> Result<Self> {
        let http = crate::client::http(api.profile.ca_file.as_deref())?;
        if data.auth_mode == "login" {
            let mut profile = api.profile.clone();
            let token = crate::client::token(&mut profile, STORAGE_RESOURCE).await?;
            // A data-only identity may not read the account's ARM resource.
            let endpoint = match &profile.storage_url {
                Some(url) => format!("{}/{}", url.trim_end_matches('/'), data.account_name),
                None => storage_url(api, &data.resource_group, &data.account_name).await?,
            };
            return Ok(Self {
                http,
                endpoint,
                account: data.account_name.clone(),
                credential: Credential::Token(token.access_token),
            });
        }
        let key = match &data.account_key {
            Some(k) => k.clone(),
            None => list_key(api, &data.resource_group, &data.account_name).await?,
        };
        Ok(Self {
            http,
            endpoint: storage_url(api, &data.resource_group, &data.account_name).await?,
            account: data.account_name.clone(),
            credential: Credential::Key(
                STANDARD
                    .decode(key.trim())
                    .context("the account key is not base64")?,
            ),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        let raw_path = format!("/{}{}", self.account, path);
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut all: Vec<(String, String)> = vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), SERVICE_VERSION.into()),
        ];
        all.extend(headers.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        if !body.is_empty() || method == Method::PUT {
            all.push(("content-length".into(), body.len().to_string()));
        }
        let q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let authorization = match &self.credential {
            Credential::Key(key) => {
                let text = string_to_sign(&SignedRequest {
                    method: method.as_str(),
                    account: &self.account,
                    path: &raw_path,
                    query: &q,
                    headers: &all,
                });
                format!("SharedKey {}:{}", self.account, sign(key, &text))
            }
            Credential::Token(token) => format!("Bearer {token}"),
        };
        let url = format!(
            "{}{}",
            self.endpoint
                .trim_end_matches(&format!("/{}", self.account)),
            raw_path
        );
        let mut request = self.http.request(method, url).query(query).body(body);
        for (k, v) in &all {
            if k != "content-length" {
                request = request.header(k.as_str(), v.as_str());
            }
        }
        request = request.header("authorization", authorization);
        let response = request
            .send()
            .await
            .context("cannot reach the storage endpoint")?;
        if !response.status().is_success() {
            let status = response.status();
            let code = response
                .headers()
                .get("x-ms-error-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let explanation = response
                .headers()
                .get("x-keyless-explanation")
                .and_then(|v| v.to_str().ok())
                .map(|e| format!("\n{e}"))
                .unwrap_or_default();
            let text = response.text().await.unwrap_or_default();
            let message = text
                .split("<Message>")
                .nth(1)
                .and_then(|m| m.split("</Message>").next())
                .unwrap_or(&text)
                .to_owned();
            bail!("({code}) {message} [{status}]{explanation}");
        }
        Ok(response)
    }
}

fn encode_path(container: &str, blob: Option<&str>) -> String {
    let mut p = format!("/{}", segment(container));
    if let Some(b) = blob {
        p.push('/');
        p.push_str(&b.split('/').map(segment).collect::<Vec<_>>().join("/"));
    }
    p
}

fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    text.split(&open)
        .skip(1)
        .filter_map(|s| s.split(&close).next())
        .map(unescape)
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

async fn container(api: &Api, cmd: ContainerCommand) -> Result<Value> {
    Ok(match cmd {
        ContainerCommand::Create { name, data } => {
            let blobs = Blobs::connect(api, &data).await?;
            blobs
                .send(
                    Method::PUT,
                    &encode_path(&name, None),
                    &[("restype", "container")],
                    &[],
                    Vec::new(),
                )
                .await?;
            json!({ "created": true })
        }
        ContainerCommand::List { data } => {
            let blobs = Blobs::connect(api, &data).await?;
            let text = blobs
                .send(Method::GET, "/", &[("comp", "list")], &[], Vec::new())
                .await?
                .text()
                .await?;
            Value::Array(
                xml_values(&text, "Name")
                    .into_iter()
                    .map(|n| json!({ "name": n }))
                    .collect(),
            )
        }
        ContainerCommand::Delete { name, data } => {
            let blobs = Blobs::connect(api, &data).await?;
            blobs
                .send(
                    Method::DELETE,
                    &encode_path(&name, None),
                    &[("restype", "container")],
                    &[],
                    Vec::new(),
                )
                .await?;
            json!({ "deleted": true })
        }
    })
}

/// A progress bar on stderr for a transfer (drawn only on a terminal).
fn transfer_bar(total: Option<u64>, what: &'static str) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

async fn blob(api: &Api, cmd: BlobCommand) -> Result<Value> {
    Ok(match cmd {
        BlobCommand::Upload {
            container_name,
            name,
            file,
            overwrite,
            data,
        } => {
            let blobs = Blobs::connect(api, &data).await?;
            let path = encode_path(&container_name, Some(&name));
            let mut f = tokio::fs::File::open(&file)
                .await
                .with_context(|| format!("cannot open `{}`", file.display()))?;
            let total = f.metadata().await?.len();
            let progress = transfer_bar(Some(total), "upload");
            let mut ids = Vec::new();
            loop {
                let mut chunk = Vec::with_capacity(BLOCK);
                (&mut f).take(BLOCK as u64).read_to_end(&mut chunk).await?;
                if chunk.is_empty() && !ids.is_empty() {
                    break;
                }
                let id = STANDARD.encode(format!("{:08}", ids.len()));
                let n = chunk.len();
                blobs
                    .send(
                        Method::PUT,
                        &path,
                        &[("comp", "block"), ("blockid", &id)],
                        &[],
                        chunk,
                    )
                    .await?;
                ids.push(id);
                progress.inc(n as u64);
                if n < BLOCK {
                    break;
                }
            }
            progress.finish_and_clear();
            let list: String = ids
                .iter()
                .map(|i| format!("<Latest>{i}</Latest>"))
                .collect();
            let body =
                format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{list}</BlockList>")
                    .into_bytes();
            let mut headers = vec![("content-type", "application/xml".to_owned())];
            if !overwrite {
                headers.push(("if-none-match", "*".to_owned()));
            }
            let reply = blobs
                .send(Method::PUT, &path, &[("comp", "blocklist")], &headers, body)
                .await?;
            let etag = reply
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            json!({ "name": name, "container": container_name, "size": total, "etag": etag })
        }
        BlobCommand::Download {
            container_name,
            name,
            file,
            data,
        } => {
            let blobs = Blobs::connect(api, &data).await?;
            let mut response = blobs
                .send(
                    Method::GET,
                    &encode_path(&container_name, Some(&name)),
                    &[],
                    &[],
                    Vec::new(),
                )
                .await?;
            let mut out = tokio::fs::File::create(&file)
                .await
                .with_context(|| format!("cannot create `{}`", file.display()))?;
            let progress = transfer_bar(response.content_length(), "download");
            let mut size = 0u64;
            while let Some(chunk) = response.chunk().await? {
                out.write_all(&chunk).await?;
                size += chunk.len() as u64;
                progress.inc(chunk.len() as u64);
            }
            out.flush().await?;
            progress.finish_and_clear();
            json!({ "name": name, "file": file, "size": size })
        }
        BlobCommand::List {
            container_name,
            prefix,
            data,
        } => {
            let blobs = Blobs::connect(api, &data).await?;
            let mut out = Vec::new();
            let mut marker = String::new();
            loop {
                let mut query = vec![("restype", "container"), ("comp", "list")];
                if let Some(p) = prefix.as_deref() {
                    query.push(("prefix", p));
                }
                if !marker.is_empty() {
                    query.push(("marker", marker.as_str()));
                }
                let text = blobs
                    .send(
                        Method::GET,
                        &encode_path(&container_name, None),
                        &query,
                        &[],
                        Vec::new(),
                    )
                    .await?
                    .text()
                    .await?;
                let names = xml_values(&text, "Name");
                let sizes = xml_values(&text, "Content-Length");
                for (n, s) in names.iter().zip(sizes.iter()) {
                    out.push(json!({ "name": n, "size": s.parse::<u64>().unwrap_or(0) }));
                }
                marker = xml_values(&text, "NextMarker")
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                if marker.is_empty() {
                    break;
                }
            }
            Value::Array(out)
        }
        BlobCommand::Delete {
            container_name,
            name,
            data,
        } => {
            let blobs = Blobs::connect(api, &data).await?;
            blobs
                .send(
                    Method::DELETE,
                    &encode_path(&container_name, Some(&name)),
                    &[],
                    &[],
                    Vec::new(),
                )
                .await?;
            json!({ "deleted": true })
        }
    })
}
