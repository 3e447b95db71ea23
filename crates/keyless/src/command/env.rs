//! `keyless env` and `keyless run`: the environment an unmodified Azure SDK
//! script needs to talk to keyless, as `export` lines or around one command.
//!
//! The environment is whole or absent. `AZUREML_CURRENT_CLOUD` names the keyless
//! cloud, which only keyless's cloud document describes, so azure-ai-ml refuses
//! to start rather than fall back to the public cloud when keyless is down; the
//! credentials (`AZURE_AUTHORITY_HOST`, the `az` shim, the identity endpoint)
//! all point at keyless, so no token for the public cloud can be minted; and
//! both commands check that the server answers before they hand anything out.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use keyless_server::ServerInfo;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The server's data dir.
    #[arg(long, env = "KEYLESS_DATA_DIR", default_value = ".keyless")]
    data_dir: PathBuf,
    /// Print the lines even when the server does not answer (scripts that start
    /// it later). Without a server the ML SDK refuses to start, it never falls
    /// back to the public cloud.
    #[arg(long)]
    no_check: bool,
    /// Sign scripts in as this service principal (app id) by workload identity: a
    /// federated token issued by keyless goes to `<data dir>/federated/<appId>.jwt`,
    /// and the app gets the matching federated credential if it has none.
    /// Needs a directory role that manages applications.
    #[arg(long, value_name = "APP_ID")]
    workload_identity: Option<String>,
    /// The subject of that federated token.
    #[arg(long, default_value = "keyless-env", requires = "workload_identity")]
    subject: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The server's data dir.
    #[arg(long, env = "KEYLESS_DATA_DIR", default_value = ".keyless")]
    data_dir: PathBuf,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// `keyless env`.
pub(crate) async fn run(args: &Args) -> Result<()> {
    let data_dir = std::path::absolute(&args.data_dir)?;
    let info = crate::client::read_info(&data_dir)?;
    if !args.no_check {
        check(&info).await?;
    }
    let shim = shim_dir(&data_dir)?;
    let mut vars = vars(&info);
    if let Some(app) = &args.workload_identity {
        vars.retain(|(name, _)| *name != "AZURE_TENANT_ID");
        vars.extend(workload_identity(&data_dir, app, &args.subject).await?);
    }
    vars.extend(az_vars(&info)?);
    if !args.no_check && args.workload_identity.is_none() {
        vars.extend(data_access(&info).await);
    }
    for (name, value) in vars {
        println!("export {name}={}", quote(&value));
    }
    // The shim answers az's token commands for the SDKs' CLI credential; a real
    // az on PATH does that itself once signed in, and must not be shadowed.
    if real_az().is_none() {
        println!(
            "export PATH={}:\"$PATH\"",
            quote(&shim.display().to_string())
        );
    }
    Ok(())
}

/// azureml-dataprep's one route to a person's tokens without a prompt (behind
/// azureml-fsspec and mltable): an on-behalf-of endpoint, as a compute
/// instance has on Azure. keyless serves it on the login listener; the secret
/// is a data-access session of the person signed in to this server, opened
/// with their own token. Nothing when no one is signed in here.
async fn data_access(info: &ServerInfo) -> Vec<(&'static str, String)> {
    let Ok(mut profile) = crate::profile::Profile::load() else {
        return Vec::new();
    };
    if profile.management_url.trim_end_matches('/') != info.management.trim_end_matches('/') {
        return Vec::new();
    }
    match open_session(&mut profile).await {
        Ok(secret) => vec![
            ("AZUREML_OBO_ENABLED", "True".into()),
            (
                "OBO_ENDPOINT",
                format!(
                    "{}/keyless/data-access/token",
                    info.login.trim_end_matches('/')
                ),
            ),
            ("MSI_SECRET", secret),
        ],
        Err(e) => {
            eprintln!(
                "keyless env: no data-access session for azureml-fsspec and mltable ({e:#}); they will ask for a sign-in"
            );
            Vec::new()
        }
    }
}

async fn open_session(profile: &mut crate::profile::Profile) -> Result<String> {
    let token = crate::client::token(profile, crate::client::MANAGEMENT).await?;
    let http = crate::client::http(profile.ca_file.as_deref())?;
    let response = http
        .post(format!(
            "{}/keyless/data-access/sessions",
            profile.login_url.trim_end_matches('/')
        ))
        .bearer_auth(&token.access_token)
        .send()
        .await
        .context("the login service cannot be reached")?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "refused ({status}): {}",
            body.pointer("/error/message")
                .or_else(|| body.get("message"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or("no reason given")
        );
    }
    body.get("secret")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .context("the login service answered no secret")
}

/// What the real azure-cli needs beside the cloud document: no instance
/// discovery or telemetry (both go to the public cloud), and a configuration
/// directory of its own for this server, so that its cached cloud endpoints and
/// sign-ins never mix with a profile for Azure or for another keyless server.
fn az_vars(info: &ServerInfo) -> Result<Vec<(&'static str, String)>> {
    let server = info
        .management
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .replace([':', '/'], "_");
    let dir = crate::profile::dir()?.join("az").join(server);
    Ok(vec![
        ("AZURE_CONFIG_DIR", dir.display().to_string()),
        ("AZURE_CORE_INSTANCE_DISCOVERY", "false".into()),
        ("AZURE_CORE_COLLECT_TELEMETRY", "false".into()),
        ("AZURE_CORE_SURVEY_MESSAGE", "false".into()),
    ])
}

/// The first `az` on PATH that is not keyless's shim.
fn real_az() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("az"))
        .find(|az| {
            az.is_file()
                && !std::fs::read_to_string(az).is_ok_and(|s| s.contains(super::shim::MARK))
        })
}

/// `keyless run -- COMMAND…`: runs COMMAND in the environment `keyless env`
/// prints, after checking that the server answers.
pub(crate) async fn run_command(args: RunArgs) -> Result<()> {
    let data_dir = std::path::absolute(&args.data_dir)?;
    let info = crate::client::read_info(&data_dir)?;
    check(&info).await?;
    let shim = shim_dir(&data_dir)?;
    let Some((program, rest)) = args.command.split_first() else {
        bail!("name the command to run: keyless run -- python train.py");
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = Vec::new();
    if real_az().is_none() {
        dirs.push(shim);
    }
    dirs.extend(std::env::split_paths(&path));
    let status = tokio::process::Command::new(program)
        .args(rest)
        .envs(vars(&info))
        .envs(az_vars(&info)?)
        .env("PATH", std::env::join_paths(dirs)?)
        .status()
        .await
        .with_context(|| format!("cannot run `{program}`"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => std::process::exit(code),
        None => bail!("`{program}` was killed by a signal"),
    }
}

/// The workload-identity variables of a service principal: a federated token
/// file, and the federated credential that trusts it.
async fn workload_identity(
    data_dir: &Path,
    app: &str,
    subject: &str,
) -> Result<Vec<(&'static str, String)>> {
    use serde_json::{Value, json};
    if app.is_empty() || !app.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        bail!("--workload-identity takes an application (client) id, a GUID; `{app}` is not one");
    }
    let api = crate::client::Api::connect().await?;
    let base = format!(
        "/directory/servicePrincipals/{}",
        crate::client::segment(app)
    );
    let reply = api
        .post(
            &format!("{base}/federatedTokens"),
            &json!({ "subject": subject }),
        )
        .await?;
    let field = |name: &str| {
        reply
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("the federated token reply has no `{name}`"))
    };
    let (token, issuer) = (field("token")?, field("issuer")?);
    let tenant = issuer
        .trim_end_matches("/v2.0")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let existing = api
        .get(&format!("{base}/federatedCredentials"))
        .await
        .map(crate::client::values)?;
    let trusted = existing.as_array().into_iter().flatten().any(|c| {
        c.get("issuer").and_then(Value::as_str) == Some(issuer.as_str())
            && c.get("subject").and_then(Value::as_str) == Some(subject)
    });
    if !trusted {
        api.post(
            &format!("{base}/federatedCredentials"),
            &json!({
                "name": format!("keyless-env-{subject}"),
                "issuer": issuer,
                "subject": subject,
                "audiences": ["api://AzureADTokenExchange"],
            }),
        )
        .await?;
    }
    let dir = data_dir.join("federated");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let file = dir.join(format!("{app}.jwt"));
    keyless_server::tls::write_private(&file, token.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(vec![
        ("AZURE_CLIENT_ID", app.to_owned()),
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
        // Workload identity asks the tenant's own token endpoint (no instance discovery).
        ("AZURE_TENANT_ID", tenant),
    ])
}

/// Refuses unless the server serves its cloud document, with the CA clients use.
async fn check(info: &ServerInfo) -> Result<()> {
    let url = metadata_url(info);
    let http = crate::client::http(info.ca_file.as_deref())?;
    let answer = http
        .get(&url)
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status);
    if let Err(e) = answer {
        bail!(
            "keyless does not answer at {url} ({e}); start it with `keyless serve`. No environment was printed, so no SDK can half-connect to it."
        );
    }
    Ok(())
}

/// The directory holding the `az` shim of this keyless binary, written if needed.
fn shim_dir(data_dir: &Path) -> Result<PathBuf> {
    let dir = data_dir.join("bin");
    super::shim::install(&dir)?;
    Ok(dir)
}

/// The cloud document's URL (derived for servers that predate the field).
fn metadata_url(info: &ServerInfo) -> String {
    if info.cloud_metadata.is_empty() {
        keyless_server::cloud::metadata_url(&info.management)
    } else {
        info.cloud_metadata.clone()
    }
}

/// The variables, unquoted.
pub(crate) fn vars(info: &ServerInfo) -> Vec<(&'static str, String)> {
    let mut vars: Vec<(&str, String)> = Vec::new();
    if let Some(ca) = &info.ca_file {
        let ca = ca.display().to_string();
        vars.push(("REQUESTS_CA_BUNDLE", ca.clone()));
        vars.push(("SSL_CERT_FILE", ca.clone()));
        vars.push(("KEYLESS_CA_FILE", ca));
    }
    vars.push(("AZURE_AUTHORITY_HOST", info.login.clone()));
    // `adfs` names the bootstrap tenant and makes MSAL skip its instance
    // discovery on the public cloud, so credentials work from the environment alone.
    vars.push(("AZURE_TENANT_ID", "adfs".into()));
    vars.push(("KEYLESS_TENANT_ID", info.tenant.clone()));
    // Managed-identity probes go to keyless's identity endpoint, never to 169.254.169.254.
    vars.push(("AZURE_POD_IDENTITY_AUTHORITY_HOST", info.identity.clone()));
    // azure-ai-ml: the cloud document, and the cloud's name, which makes the SDK
    // fail rather than fall back to the public cloud when the document is unreachable.
    vars.push(("ARM_CLOUD_METADATA_URL", metadata_url(info)));
    vars.push((
        "AZUREML_CURRENT_CLOUD",
        keyless_server::cloud::NAME.to_owned(),
    ));
    // azureml-dataprep (behind azureml-fsspec, mltable and the SDK's mounts):
    // the workspace's service endpoint, so it never asks the public cloud's
    // management endpoint where the workspace is.
    vars.push(("AZUREML_SERVICE_ENDPOINT", info.management.clone()));
    vars.push(("KEYLESS_LOGIN_URL", info.login.clone()));
    vars.push(("KEYLESS_MANAGEMENT_URL", info.management.clone()));
    vars.push(("KEYLESS_STORAGE_URL", info.storage.clone()));
    vars.push(("KEYLESS_VAULT_URL", info.vault.clone()));
    vars.push(("KEYLESS_IDENTITY_URL", info.identity.clone()));
    vars
}

/// `NAME=value` lines, shell-quoted, without PATH.
pub(crate) fn lines(info: &ServerInfo) -> Vec<String> {
    vars(info)
        .into_iter()
        .map(|(k, v)| format!("{k}={}", quote(&v)))
        .collect()
}

fn quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/:._-@".contains(c))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}
