//! The keyless server as a library: configuration, the listeners and their
//! routers (login, identity, storage, vault, management), request
//! authentication, TLS and start-up.
//!
//! [`start`] takes a [`Config`] and listeners bound by the caller (so tests can
//! pass port 0) and returns a [`Running`] server; [`run`] starts and waits.
//! Depends on `keyless-core`, `keyless-store` and `keyless-auth`.

pub mod cloud;
pub mod config;
mod feed;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod http;
mod identity;
mod internal;
mod jobs;
mod login;
mod management;
mod master;
mod metrics;
mod network;
mod registry;
mod signing;
mod state;
mod storage;
pub mod storage_log;
pub mod tenancy;
pub mod tls;
mod vault;

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use keyless_auth::{Clock, MasterKey, SystemClock, TokenVerifier};
use keyless_core::Error;
use keyless_store::{MetaStore, PostgresStore, SqliteStore};

pub use config::{Config, TlsConfig};
pub use http::connection_builder;
pub use state::Urls;

use state::AppState;

/// The default ports: storage like Azurite, the others beside it.
pub mod ports {
    /// Blob and DFS.
    pub const STORAGE: u16 = 10000;
    /// Token service.
    pub const LOGIN: u16 = 10010;
    /// Management API.
    pub const MANAGEMENT: u16 = 10011;
    /// Key vault.
    pub const VAULT: u16 = 10012;
    /// Managed-identity endpoint.
    pub const IDENTITY: u16 = 10013;
    /// Container registries.
    pub const REGISTRY: u16 = 10014;
}

/// The sockets a server serves, bound by the caller.
#[derive(Debug)]
pub struct Listeners {
    /// Blob and DFS (TLS).
    pub storage: TcpListener,
    /// Token service (TLS).
    pub login: TcpListener,
    /// Management API (TLS).
    pub management: TcpListener,
    /// Key vault (TLS).
    pub vault: TcpListener,
    /// Managed-identity endpoint (plain HTTP).
    pub identity: TcpListener,
    /// Container registries: the OCI distribution API and ACR's token service (TLS).
    pub registry: TcpListener,
}

/// What a started server tells its operator and clients; also written to
/// `<data dir>/endpoints.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Listener URLs.
    pub login: String,
    /// Management API URL.
    pub management: String,
    /// Storage URL.
    pub storage: String,
    /// Key vault URL.
    pub vault: String,
    /// Managed-identity endpoint URL.
    pub identity: String,
    /// Container registries' URL: a registry's login server is
    /// `<name>.<registry_suffix>`.
    #[serde(default)]
    pub registry: String,
    /// The bootstrap tenant.
    pub tenant: String,
    /// The CA bundle clients must trust, when keyless generated the certificate.
    pub ca_file: Option<PathBuf>,
    /// Where the bootstrap administrator's credentials are.
    pub admin_file: PathBuf,
    /// The cloud document Azure SDKs read (`ARM_CLOUD_METADATA_URL`).
    #[serde(default)]
    pub cloud_metadata: String,
    /// The storage suffix of the cloud: `<account>.blob.<suffix>` names accounts.
    #[serde(default)]
    pub storage_suffix: String,
    /// The registry suffix: `<registry>.<suffix>` is a registry's login server.
    #[serde(default)]
    pub registry_suffix: String,
}

/// How long a stopping server waits for its job runners.
const JOB_DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

/// A server that is serving.
#[derive(Debug)]
pub struct Running {
    info: ServerInfo,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The job runners, and their signal that the server stops.
    jobs: (TaskTracker, CancellationToken),
    store: Metadata,
    _lock: File,
}

/// The metadata store a server opened: SQLite in its data dir, or a PostgreSQL
/// database it may share with other servers.
#[derive(Debug, Clone)]
enum Metadata {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Metadata {
    async fn open(config: &Config) -> Result<Self, Error> {
        match &config.metadata {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                tracing::info!(database = %keyless_store::redact(url), "opening the metadata store");
                Ok(Self::Postgres(PostgresStore::connect(url).await?))
            }
            Some(other) => Err(Error::invalid(format!(
                "--metadata takes a PostgreSQL URL (`postgres://user@host:port/database`), not `{}`",
                keyless_store::redact(other)
            ))),
            None => {
                let path = config.data_dir.join("meta.sqlite");
                tracing::info!(database = %path.display(), "opening the metadata store");
                Ok(Self::Sqlite(SqliteStore::open(&path).await?))
            }
        }
    }

    fn shared(&self) -> Arc<dyn MetaStore> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

impl Running {
    /// Endpoints and credentials locations.
    pub fn info(&self) -> &ServerInfo {
        &self.info
    }

    /// Waits until shutdown is requested and every listener has drained, then
    /// closes the store.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        // Job runners end first, while the store is open: local jobs are
        // stopped and recorded, Slurm jobs are let go for the next server.
        let (jobs, stopping) = &self.jobs;
        stopping.cancel();
        jobs.close();
        if tokio::time::timeout(JOB_DRAIN, jobs.wait()).await.is_err() {
            tracing::warn!("some job runners did not end in time");
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.store.close().await;
        tracing::info!("stopped");
    }
}

/// Starts a server and waits until `shutdown` is cancelled.
///
/// # Errors
/// As [`start`].
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    start(config, listeners, shutdown).await?.wait().await;
    Ok(())
}

/// Opens the data dir (refusing one another server holds), the store and keys,
/// bootstraps on first start, and spawns one task per listener.
///
/// # Errors
/// [`keyless_core::ErrorKind::Conflict`] when the data dir is in use;
/// [`keyless_core::ErrorKind::InvalidInput`] for unusable configuration;
/// others when the store or keys cannot be opened.
pub async fn start(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<Running, Error> {
    start_with_clock(config, listeners, shutdown, Arc::new(SystemClock)).await
}

/// [`start`] with an injected clock, so tests can move time.
///
/// # Errors
/// As [`start`].
pub async fn start_with_clock(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<Running, Error> {
    // Everything the server writes is for its own user alone: files 0600, folders
    // 0700, whatever creates them (SQLite, blob files, logs, jobs).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| {
            std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(|e| {
            Error::invalid(format!(
                "cannot create the data dir `{}`: {e}",
                config.data_dir.display()
            ))
        })?;
    // Locked first, so that a server refused for a dir in use leaves the running
    // one's files alone.
    let lock = lock_data_dir(&config.data_dir)?;
    restrict(&config.data_dir).map_err(|e| {
        Error::invalid(format!(
            "cannot restrict the data dir `{}` to its owner: {e}",
            config.data_dir.display()
        ))
    })?;
    if config.insecure_key_file_permissions {
        tracing::warn!(
            "insecure_key_file_permissions is set: key files readable by others are accepted"
        );
    }
    let master = load_master_key(&config)?;
    metrics::install();
    let opened = Metadata::open(&config).await?;
    let store_arc = opened.shared();
    let store: &dyn MetaStore = &*store_arc;
    tenancy::bootstrap(store, &config.data_dir, &config.tenant_domain, clock.now()).await?;
    let ring = signing::load_ring(store, &master, clock.now()).await?;
    let tenants: Vec<String> = store
        .tenants()
        .await?
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    let tls = tls::prepare(&config.data_dir, &config.public_host, &config.tls)?;

    let host = if config.public_host.contains(':') {
        format!("[{}]", config.public_host)
    } else {
        config.public_host.clone()
    };
    let port = |l: &TcpListener| {
        l.local_addr()
            .map(|a| a.port())
            .map_err(|e| Error::internal(format!("listener address: {e}")))
    };
    let urls = Urls {
        login: format!("https://{host}:{}", port(&listeners.login)?),
        management: format!("https://{host}:{}", port(&listeners.management)?),
        storage: format!("https://{host}:{}", port(&listeners.storage)?),
        vault: format!("https://{host}:{}", port(&listeners.vault)?),
        identity: format!("http://{host}:{}", port(&listeners.identity)?),
        registry: format!("https://{host}:{}", port(&listeners.registry)?),
    };
    let verifier = TokenVerifier::new(urls.login.clone(), ring, tenants.clone());
    for tenant in &tenants {
        let tenant = keyless_core::TenantId::parse(tenant)?;
        for p in store.principals(tenant, None).await? {
            if !p.enabled {
                verifier.set_disabled(&p.object_id.to_string(), true);
            }
        }
    }
    let blobs: Arc<dyn keyless_store::BlobBackend> = match &config.blob_store {
        Some(url) => {
            let objects = keyless_store::ObjectStoreBlobs::from_url(url)?;
            tracing::info!(store = ?objects, "blob bytes in an object store");
            Arc::new(objects)
        }
        None => Arc::new(keyless_store::LocalFiles::new(
            config.data_dir.join("blobs"),
        )?),
    };
    let referenced = store.file_ids().await?;
    let swept = blobs.sweep(&referenced).await?;
    if swept > 0 {
        tracing::info!(
            files = swept,
            "removed blob files no metadata refers to (left by an interrupted write)"
        );
    }
    let state = Arc::new(AppState::new(
        state::Stores {
            meta: Arc::clone(&store_arc),
            blobs,
            shared: match &opened {
                Metadata::Postgres(store) => Some(store.clone()),
                Metadata::Sqlite(_) => None,
            },
        },
        verifier,
        master,
        clock,
        urls.clone(),
        config.clone(),
    )?);
    state.reload_rbac().await?;
    state.sign_ins.open(state.store.as_ref()).await?;
    if let Some(ca) = &tls.ca_file {
        let _ = state.jobs.ca_file.set(ca.clone());
    }
    management::fail_interrupted_jobs(&state).await?;

    let info = ServerInfo {
        login: urls.login.clone(),
        management: urls.management.clone(),
        storage: urls.storage.clone(),
        vault: urls.vault.clone(),
        identity: urls.identity.clone(),
        registry: urls.registry.clone(),
        tenant: store.setting("bootstrap.tenant").await?.unwrap_or_default(),
        ca_file: tls.ca_file.clone(),
        admin_file: config.data_dir.join("admin.json"),
        cloud_metadata: cloud::metadata_url(&urls.management),
        storage_suffix: cloud::storage_suffix(&urls.storage),
        registry_suffix: cloud::registry_suffix(&urls.registry),
    };
    let json = serde_json::to_vec_pretty(&info).map_err(|e| Error::internal(e.to_string()))?;
    tls::write_private(&config.data_dir.join("endpoints.json"), &json)?;

    let acceptor = TlsAcceptor::from(Arc::clone(&tls.server_config));
    let tasks = TaskTracker::new();
    let drain = Duration::from_secs(10);
    let routers = [
        (
            "storage",
            listeners.storage,
            http::Routes::Storage(Arc::clone(&state)),
            true,
        ),
        (
            "login",
            listeners.login,
            http::Routes::Router(login::router(Arc::clone(&state))),
            true,
        ),
        (
            "management",
            listeners.management,
            http::Routes::Router(management::router(Arc::clone(&state))),
            true,
        ),
        (
            "vault",
            listeners.vault,
            http::Routes::Router(vault::router(Arc::clone(&state))),
            true,
        ),
        (
            "registry",
            listeners.registry,
            http::Routes::Router(registry::router(Arc::clone(&state))),
            true,
        ),
        (
            "identity",
            listeners.identity,
            http::Routes::Router(identity::router(Arc::clone(&state))),
            false,
        ),
    ];
    for (name, listener, router, secure) in routers {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::internal(format!("{name} listener: {e}")))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| Error::internal(format!("{name} listener: {e}")))?;
        tracing::info!(listener = name, address = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving");
        let tls = secure.then(|| acceptor.clone());
        tasks.spawn(http::serve(
            listener,
            http::Front::new(router, name, Arc::clone(&state.ready)),
            tls,
            shutdown.clone(),
            drain,
        ));
    }
    match &opened {
        Metadata::Sqlite(_) => state
            .ready
            .store(true, std::sync::atomic::Ordering::Release),
        Metadata::Postgres(store) => {
            tasks.spawn(feed::follow(
                Arc::clone(&state),
                store.clone(),
                Arc::clone(&state.ready),
                shutdown.clone(),
            ));
            tasks.spawn(management::keep_jobs(Arc::clone(&state), shutdown.clone()));
        }
    }
    tasks.spawn(signing::rotation_task(Arc::clone(&state), shutdown.clone()));
    tasks.spawn(expire_blocks(Arc::clone(&state), shutdown.clone()));
    Ok(Running {
        info,
        shutdown,
        tasks,
        jobs: (state.jobs.tasks.clone(), state.jobs.stopping.clone()),
        store: opened,
        _lock: lock,
    })
}

/// Makes every file under the data dir 0600 (0700 when executable, as the `az`
/// shim) and every folder 0700, for data dirs written before the server set its
/// umask. The blob files are left as they are: their folder is enough to close
/// them.
///
/// A file that goes while the walk passes it, as the WAL a stopping server's last
/// connection removes, is skipped: what is gone is open to no one.
fn restrict(data_dir: &Path) -> std::io::Result<()> {
    let mut pending = vec![data_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != data_dir => continue,
            entries => entries?,
        };
        for entry in entries {
            match restrict_entry(data_dir, &entry?) {
                Ok(Some(subdir)) => pending.push(subdir),
                Ok(None) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Restricts one entry of [`restrict`]'s walk; the folder to walk next, if it is one.
fn restrict_entry(
    data_dir: &Path,
    entry: &std::fs::DirEntry,
) -> std::io::Result<Option<std::path::PathBuf>> {
    let kind = entry.file_type()?;
    let path = entry.path();
    let now = entry.metadata()?.permissions().mode() & 0o7777;
    let mode = if kind.is_dir() || (kind.is_file() && now & 0o100 != 0) {
        0o700
    } else if kind.is_file() {
        0o600
    } else {
        return Ok(None);
    };
    if now != mode {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok((kind.is_dir() && path != data_dir.join("blobs")).then_some(path))
}

/// Uncommitted blocks live seven days, as in Azure; then their bytes are freed.
/// Blobs kept deleted go when their account's retention days end.
async fn expire_blocks(state: state::SharedState, shutdown: CancellationToken) {
    const LIFETIME: i64 = 7 * 24 * 3600;
    loop {
        let now = state.now();
        match state.store.blocks_expire(now - LIFETIME).await {
            Ok(files) if !files.is_empty() => {
                tracing::info!(blocks = files.len(), "uncommitted blocks expired");
                state.blobs.remove(&files).await;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not expire uncommitted blocks"),
        }
        let window = crate::login::lockout::WINDOW;
        if let Err(e) = state.store.sign_in_failures_expire(now - window, now).await {
            tracing::warn!(error = %e, "could not forget old sign-in failures");
        }
        if let Err(e) = state.store.used_once_expire(now).await {
            tracing::warn!(error = %e, "could not forget expired client assertions");
        }
        // Registry uploads begun and never finished.
        match state
            .store
            .registry_uploads_expire(now - registry::UPLOAD_LIFETIME)
            .await
        {
            Ok(files) => state.blobs.remove(&files).await,
            Err(e) => tracing::warn!(error = %e, "could not drop abandoned registry uploads"),
        }
        // Deleted blobs, snapshots and versions kept past their retention days.
        match state.store.retained_expire(now).await {
            Ok(files) if !files.is_empty() => {
                tracing::info!(
                    files = files.len(),
                    "deleted blobs past their retention purged"
                );
                state.blobs.remove(&files).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "could not purge deleted blobs past their retention")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(3600)) => {}
        }
    }
}

fn lock_data_dir(dir: &Path) -> Result<File, Error> {
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::invalid(format!("cannot open `{}`: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            keyless_core::ErrorKind::Conflict,
            format!(
                "the data dir `{}` is in use by another keyless server; stop it or choose another --data-dir",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::invalid(format!(
            "cannot lock `{}`: {e}",
            path.display()
        ))),
    }
}

fn load_master_key(config: &Config) -> Result<MasterKey, Error> {
    let path = config
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("master.key"));
    if !path.exists() {
        if config.master_key_file.is_some() {
            return Err(Error::invalid(format!(
                "the master key file `{}` does not exist",
                path.display()
            )));
        }
        tls::write_private(&path, &MasterKey::generate_bytes()?)?;
        tracing::info!(file = %path.display(), "master key created");
    }
    let meta = std::fs::metadata(&path)
        .map_err(|e| Error::invalid(format!("`{}`: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 && !config.insecure_key_file_permissions {
        return Err(Error::invalid(format!(
            "the master key file `{}` is readable by group or others; `chmod 600` it (or set insecure_key_file_permissions)",
            path.display()
        )));
    }
    let bytes =
        std::fs::read(&path).map_err(|e| Error::invalid(format!("`{}`: {e}", path.display())))?;
    MasterKey::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::restrict;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn restricting_skips_files_that_go_while_it_walks() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_path_buf();
        std::fs::create_dir(data.join("db")).unwrap();
        let open = data.join("db").join("left-open");
        std::fs::write(&open, b"x").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn = {
            let (data, stop) = (data.clone(), std::sync::Arc::clone(&stop));
            // Files and folders that come and go as a stopping server's WAL does.
            std::thread::spawn(move || {
                let mut rounds = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 1_000_000 {
                    let file = data.join("db").join(format!("wal-{}", rounds % 8));
                    let folder = data.join(format!("job-{}", rounds % 8));
                    let _ = std::fs::write(&file, b"frame");
                    let _ = std::fs::create_dir(&folder);
                    let _ = std::fs::remove_file(&file);
                    let _ = std::fs::remove_dir(&folder);
                    rounds += 1;
                }
            })
        };
        let walks: Vec<_> = (0..2_000).map(|_| restrict(&data)).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churn.join().unwrap();
        for walk in walks {
            walk.unwrap();
        }
        let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the file that stayed is closed");
    }
}
