//! `keyless serve`: flags > `KEYLESS_*` variables > config file > defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use keyless_server::{Config, Listeners, ports};

/// Flags of `keyless serve`; each has a `KEYLESS_*` variable and a config-file key.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Data dir: metadata, keys, certificates (default: ./.keyless).
    #[arg(long, env = "KEYLESS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML config file whose keys are these flags' names with `_` for `-`.
    #[arg(long, env = "KEYLESS_CONFIG")]
    config: Option<PathBuf>,
    /// The address every listener binds (default: 127.0.0.1).
    #[arg(long, env = "KEYLESS_BIND")]
    bind: Option<IpAddr>,
    /// The host name clients use (default: the bind address, or 127.0.0.1 for 0.0.0.0).
    #[arg(long, env = "KEYLESS_PUBLIC_HOST")]
    public_host: Option<String>,
    /// Blob and DFS port (default: 10000).
    #[arg(long, env = "KEYLESS_STORAGE_PORT")]
    storage_port: Option<u16>,
    /// Token service port (default: 10010).
    #[arg(long, env = "KEYLESS_LOGIN_PORT")]
    login_port: Option<u16>,
    /// Management API port (default: 10011).
    #[arg(long, env = "KEYLESS_MANAGEMENT_PORT")]
    management_port: Option<u16>,
    /// Key vault port (default: 10012).
    #[arg(long, env = "KEYLESS_VAULT_PORT")]
    vault_port: Option<u16>,
    /// Managed-identity endpoint port (default: 10013).
    #[arg(long, env = "KEYLESS_IDENTITY_PORT")]
    identity_port: Option<u16>,
    /// Container registry port (default: 10014).
    #[arg(long, env = "KEYLESS_REGISTRY_PORT")]
    registry_port: Option<u16>,
    /// An operator-supplied TLS certificate chain (PEM).
    #[arg(long, env = "KEYLESS_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, env = "KEYLESS_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// The CA (PEM) that signed --tls-cert, for clients and jobs that do not
    /// trust it already.
    #[arg(long, env = "KEYLESS_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// More names for the generated server certificate (repeatable).
    #[arg(long = "tls-name", env = "KEYLESS_TLS_NAMES", value_delimiter = ',')]
    tls_names: Vec<String>,
    /// Access-token lifetime in minutes (default: 60–90 at random, as Entra).
    #[arg(long, env = "KEYLESS_TOKEN_LIFETIME_MINUTES")]
    token_lifetime_minutes: Option<u64>,
    /// Days a signing key signs before rotation (default: 30).
    #[arg(long, env = "KEYLESS_KEY_ROTATION_DAYS")]
    key_rotation_days: Option<u64>,
    /// Domain of the bootstrap tenant's user names (default: keyless.local).
    #[arg(long, env = "KEYLESS_TENANT_DOMAIN")]
    tenant_domain: Option<String>,
    /// Seconds between device-code polls (default: 5).
    #[arg(long, env = "KEYLESS_DEVICE_CODE_INTERVAL")]
    device_code_interval: Option<u64>,
    /// The master key file (default: `<data dir>/master.key`).
    #[arg(long, env = "KEYLESS_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Accept key files readable by group or others.
    #[arg(long, env = "KEYLESS_INSECURE_KEY_FILE_PERMISSIONS")]
    insecure_key_file_permissions: bool,
    /// Run jobs as the server's own user, outside the sandbox: a job can then
    /// read the data dir, the keys and the server's processes. Only for machines
    /// where keyless cannot run as root.
    #[arg(long, env = "KEYLESS_INSECURE_UNSANDBOXED_JOBS")]
    insecure_unsandboxed_jobs: bool,
    /// The `keyless` executable compute nodes run as the job agent (default:
    /// this one). On Slurm it must be at this path on every node.
    #[arg(long, env = "KEYLESS_JOB_AGENT")]
    job_agent: Option<PathBuf>,
    /// Where blob bytes live: `s3://bucket/prefix`, `az://container/prefix`,
    /// `gs://bucket/prefix` or `file:///dir`, with credentials from the
    /// environment (`AWS_*`, `AZURE_*`, `GOOGLE_*`) (default: files under
    /// `<data dir>/blobs`).
    #[arg(long, env = "KEYLESS_BLOB_STORE")]
    blob_store: Option<String>,
    /// Where the metadata lives: `postgres://user@host:port/database` (the
    /// password from the URL or `PGPASSWORD`), shared by every server given the
    /// same URL (default: SQLite in the data dir).
    #[arg(long, env = "KEYLESS_METADATA")]
    metadata: Option<String>,
    /// Where jobs' folders (working directories and logs) live (default:
    /// `<data dir>/jobs`). Servers sharing a store share it: the same path on
    /// every server, on a file system the compute nodes see too.
    #[arg(long, env = "KEYLESS_JOBS_DIR")]
    jobs_dir: Option<PathBuf>,
    /// The management URL (`https://host:port`) of another server sharing the
    /// store (repeatable): a job's agent turns to it when the server running
    /// its job is lost.
    #[arg(long = "peer", env = "KEYLESS_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// Log as JSON lines.
    #[arg(long, env = "KEYLESS_LOG_JSON")]
    log_json: bool,
    /// Seed the hello-census demo on first start: users alice and bob, data, a
    /// workspace, a compute cluster and an identity-based datastore.
    #[arg(long)]
    demo: bool,
}

/// The config file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    bind: Option<IpAddr>,
    public_host: Option<String>,
    storage_port: Option<u16>,
    login_port: Option<u16>,
    management_port: Option<u16>,
    vault_port: Option<u16>,
    identity_port: Option<u16>,
    registry_port: Option<u16>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_names: Option<Vec<String>>,
    token_lifetime_minutes: Option<u64>,
    key_rotation_days: Option<u64>,
    tenant_domain: Option<String>,
    device_code_interval: Option<u64>,
    master_key_file: Option<PathBuf>,
    insecure_key_file_permissions: Option<bool>,
    insecure_unsandboxed_jobs: Option<bool>,
    job_agent: Option<PathBuf>,
    blob_store: Option<String>,
    metadata: Option<String>,
    jobs_dir: Option<PathBuf>,
    peers: Option<Vec<String>>,
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file `{}`", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file `{}`: {}", path.display(), e.to_string().trim()))
}

pub(crate) async fn run(args: Args) -> Result<()> {
    init_tracing(args.log_json);
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileConfig::default(),
    };
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(".keyless"));
    let data_dir = std::path::absolute(&data_dir)
        .with_context(|| format!("cannot resolve `{}`", data_dir.display()))?;
    let bind = args
        .bind
        .or(file.bind)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let public_host = args.public_host.or(file.public_host).unwrap_or_else(|| {
        if bind.is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            bind.to_string()
        }
    });
    let mut config = Config::new(data_dir);
    config.public_host = public_host;
    config.tls.cert = args.tls_cert.or(file.tls_cert);
    config.tls.key = args.tls_key.or(file.tls_key);
    config.tls.ca = args.tls_ca.or(file.tls_ca);
    if config.tls.ca.is_some() && config.tls.cert.is_none() {
        bail!("tls_ca names the CA of --tls-cert; give it with --tls-cert and --tls-key");
    }
    config.tls.extra_names = if args.tls_names.is_empty() {
        file.tls_names.unwrap_or_default()
    } else {
        args.tls_names
    };
    if let Some(minutes) = args.token_lifetime_minutes.or(file.token_lifetime_minutes) {
        if !(5..=1440).contains(&minutes) {
            bail!("token_lifetime_minutes: {minutes} is outside 5–1440");
        }
        config.token_lifetime = Some(Duration::from_secs(minutes * 60));
    }
    if let Some(days) = args.key_rotation_days.or(file.key_rotation_days) {
        if !(1..=365).contains(&days) {
            bail!("key_rotation_days: {days} is outside 1–365");
        }
        config.key_rotation = Duration::from_secs(days * 24 * 3600);
    }
    if let Some(domain) = args.tenant_domain.or(file.tenant_domain) {
        config.tenant_domain = domain.to_ascii_lowercase();
    }
    if let Some(interval) = args.device_code_interval.or(file.device_code_interval) {
        if !(1..=60).contains(&interval) {
            bail!("device_code_interval: {interval} is outside 1–60");
        }
        config.device_code_interval = interval;
    }
    config.master_key_file = args.master_key_file.or(file.master_key_file);
    config.insecure_key_file_permissions =
        args.insecure_key_file_permissions || file.insecure_key_file_permissions.unwrap_or(false);
    config.insecure_unsandboxed_jobs =
        args.insecure_unsandboxed_jobs || file.insecure_unsandboxed_jobs.unwrap_or(false);
    config.job_agent = args.job_agent.or(file.job_agent);
    config.blob_store = args.blob_store.or(file.blob_store);
    config.metadata = args.metadata.or(file.metadata);
    config.jobs_dir = match args.jobs_dir.or(file.jobs_dir) {
        Some(dir) => Some(
            std::path::absolute(&dir)
                .with_context(|| format!("cannot resolve `{}`", dir.display()))?,
        ),
        None => None,
    };
    let peers = if args.peers.is_empty() {
        file.peers.unwrap_or_default()
    } else {
        args.peers
    };
    for peer in &peers {
        let parsed = reqwest::Url::parse(peer)
            .with_context(|| format!("peers: `{peer}` is not a URL (https://host:port)"))?;
        if parsed.scheme() != "https" || parsed.host().is_none() {
            bail!("peers: `{peer}` is not a server's management URL (https://host:port)");
        }
    }
    config.peers = peers;

    let port =
        |flag: Option<u16>, file: Option<u16>, default: u16| flag.or(file).unwrap_or(default);
    let bind_one = |name: &str, p: u16| -> Result<TcpListener> {
        TcpListener::bind(SocketAddr::new(bind, p)).with_context(|| format!("cannot listen on {bind}:{p} for {name}; is another server using the port? (set --{name}-port)"))
    };
    let listeners = Listeners {
        storage: bind_one(
            "storage",
            port(args.storage_port, file.storage_port, ports::STORAGE),
        )?,
        login: bind_one(
            "login",
            port(args.login_port, file.login_port, ports::LOGIN),
        )?,
        management: bind_one(
            "management",
            port(
                args.management_port,
                file.management_port,
                ports::MANAGEMENT,
            ),
        )?,
        vault: bind_one(
            "vault",
            port(args.vault_port, file.vault_port, ports::VAULT),
        )?,
        identity: bind_one(
            "identity",
            port(args.identity_port, file.identity_port, ports::IDENTITY),
        )?,
        registry: bind_one(
            "registry",
            port(args.registry_port, file.registry_port, ports::REGISTRY),
        )?,
    };

    let shutdown = CancellationToken::new();
    let domain = config.tenant_domain.clone();
    let data_dir = config.data_dir.clone();
    let running = keyless_server::start(config, listeners, shutdown.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = running.info().clone();
    println!("keyless is serving");
    println!("  login       {}", info.login);
    println!("  management  {}", info.management);
    println!("  storage     {}", info.storage);
    println!("  vault       {}", info.vault);
    println!("  identity    {}", info.identity);
    println!("  registry    {}", info.registry);
    println!("  tenant      {}", info.tenant);
    println!("  admin       credentials in {}", info.admin_file.display());
    println!(
        "For clients, run: eval \"$(keyless env --data-dir {})\"",
        info.admin_file
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    for line in super::env::lines(&info) {
        println!("  {line}");
    }
    if args.demo
        && let Err(e) = super::demo::seed(&data_dir, &domain).await
    {
        eprintln!("{e:#}");
        shutdown.cancel();
        running.wait().await;
        bail!("the demo could not be seeded");
    }
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    running.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
