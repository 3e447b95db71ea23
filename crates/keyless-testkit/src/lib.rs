//! Test support: [`TestServer`] runs a whole keyless server on ephemeral loopback
//! ports in a temporary data dir, and talks to it over TLS with the server's CA.
//!
//! Only ever a dev-dependency.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use keyless_auth::{Clock, ManualClock, SystemClock};
use keyless_server::tenancy::AdminCredentials;
use keyless_server::{Config, Listeners, ServerInfo};

/// The Azure CLI's public client id, which keyless accepts for user sign-ins.
pub const CLI_CLIENT_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

/// A running server; stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Endpoints and file locations.
    pub info: ServerInfo,
    /// The bootstrap administrator.
    pub admin: AdminCredentials,
    /// An HTTPS client that trusts the server's CA.
    pub http: reqwest::Client,
    /// The server's clock: advance it to expire tokens and secrets.
    pub clock: Arc<ManualClock>,
    shutdown: CancellationToken,
    stopped: Option<tokio::task::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server in a fresh temp dir.
    ///
    /// # Errors
    /// When the server cannot start.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::start_in(dir).await
    }

    /// Starts a server on the data dir of a stopped one.
    ///
    /// # Errors
    /// When the server cannot start.
    pub async fn restart(mut self) -> Result<Self> {
        self.stop().await;
        let dir = tempfile::tempdir()?;
        let old = std::mem::replace(&mut self.dir, dir);
        Self::start_in(old).await
    }

    /// Starts a second server on this one's data dir (which must fail while this runs).
    ///
    /// # Errors
    /// The start-up error.
    pub async fn start_on_same_dir(&self) -> Result<keyless_server::Running> {
        let (config, listeners) = Self::config(self.root())?;
        keyless_server::start(config, listeners, CancellationToken::new())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn config(root: &Path) -> Result<(Config, Listeners)> {
        let mut config = Config::new(root.join("data"));
        config.device_code_interval = 1;
        let any = || TcpListener::bind("127.0.0.1:0");
        let listeners = Listeners {
            storage: any()?,
            login: any()?,
            management: any()?,
            vault: any()?,
            identity: any()?,
            registry: any()?,
        };
        Ok((config, listeners))
    }

    /// Stops the server and waits until it has released the data dir.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.stopped.take() {
            let _ = handle.await;
        }
    }

    async fn start_in(dir: tempfile::TempDir) -> Result<Self> {
        let (config, listeners) = Self::config(dir.path())?;
        let shutdown = CancellationToken::new();
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let dyn_clock: Arc<dyn Clock> = Arc::clone(&clock) as Arc<dyn Clock>;
        let running =
            keyless_server::start_with_clock(config, listeners, shutdown.clone(), dyn_clock)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let info = running.info().clone();
        let stopped = Some(tokio::spawn(running.wait()));
        let admin: AdminCredentials = serde_json::from_slice(&std::fs::read(&info.admin_file)?)?;
        let ca = std::fs::read(info.ca_file.as_ref().context("no CA file")?)?;
        let http = reqwest::Client::builder()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(&ca)?)
            .build()?;
        Ok(Self {
            info,
            admin,
            http,
            clock,
            shutdown,
            stopped,
            dir,
        })
    }

    /// The data dir.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir holding the data dir.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Posts a token request to `/{tenant}/oauth2/v2.0/token`.
    ///
    /// # Errors
    /// When the request cannot be sent or the reply is not JSON.
    pub async fn token_request(
        &self,
        tenant: &str,
        form: &[(&str, &str)],
    ) -> Result<(StatusCode, Value)> {
        let url = format!("{}/{tenant}/oauth2/v2.0/token", self.info.login);
        let reply = self.http.post(url).form(form).send().await?;
        let status = reply.status();
        Ok((status, reply.json().await?))
    }

    /// A token for `scope` by a user's password.
    ///
    /// # Errors
    /// When the sign-in is refused.
    pub async fn user_token(&self, username: &str, password: &str, scope: &str) -> Result<String> {
        let form = [
            ("grant_type", "password"),
            ("client_id", CLI_CLIENT_ID),
            ("username", username),
            ("password", password),
            ("scope", scope),
        ];
        let (status, body) = self.token_request(&self.admin.tenant, &form).await?;
        anyhow::ensure!(status.is_success(), "sign-in refused: {body}");
        Ok(body
            .get("access_token")
            .and_then(Value::as_str)
            .context("no access_token")?
            .to_owned())
    }

    /// A management token of the bootstrap administrator.
    ///
    /// # Errors
    /// When the sign-in is refused.
    pub async fn admin_token(&self) -> Result<String> {
        self.user_token(
            &self.admin.username,
            &self.admin.password,
            "https://management.azure.com/.default",
        )
        .await
    }

    /// Calls the management API.
    ///
    /// # Errors
    /// When the request cannot be sent.
    pub async fn mgmt(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.info.management));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await?;
        let status = reply.status();
        let text = reply.text().await?;
        Ok((
            status,
            if text.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text)?
            },
        ))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
