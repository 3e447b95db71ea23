//! `keyless storage container|blob …`: the Blob REST API, signed with the account
//! key or as the signed-in identity.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use keyless_auth::shared_key::{SignedRequest, sign, string_to_sign};

use super::account::{list_key, storage_url};
use crate::client::{Api, segment};

const SERVICE_VERSION: &str = "2026-10-06";
const BLOCK: usize = 4 * 1024 * 1024;
const STORAGE_RESOURCE: &str = "https://storage.azure.com";

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

pub(crate) fn encode_path(container: &str, blob: Option<&str>) -> String {
    let mut p = format!("/{}", segment(container));
    if let Some(b) = blob {
        p.push('/');
        p.push_str(&b.split('/').map(segment).collect::<Vec<_>>().join("/"));
    }
    p
}

pub(crate) fn xml_values(text: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    text.split(&open)
        .skip(1)
        .filter_map(|s| s.split(&close).next())
        .map(unescape)
        .collect()
}

/// Undoes XML's five entity escapes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

pub(super) async fn container(api: &Api, cmd: ContainerCommand) -> Result<Value> {
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

pub(super) async fn blob(api: &Api, cmd: BlobCommand) -> Result<Value> {
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
