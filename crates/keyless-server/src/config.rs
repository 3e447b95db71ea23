//! The validated configuration of a server. The binary builds it from flags,
//! `KEYLESS_*` variables and the config file; code below receives it as a value.

use std::path::PathBuf;
use std::time::Duration;

/// Everything a server needs to know before it starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where metadata, keys, certificates and (later) blobs live.
    pub data_dir: PathBuf,
    /// The host name or address clients use to reach the listeners.
    pub public_host: String,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Access-token lifetime; `None` picks 60–90 minutes per token, as Entra does.
    pub token_lifetime: Option<Duration>,
    /// How long a signing key signs before it is replaced.
    pub key_rotation: Duration,
    /// The domain of the bootstrap tenant's user names.
    pub tenant_domain: String,
    /// Seconds a device-code client waits between polls.
    pub device_code_interval: u64,
    /// The master key file; default `<data dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// Accept key files readable by group or others (logged as a warning).
    pub insecure_key_file_permissions: bool,
    /// Run jobs as the server's own user, outside the sandbox (logged as a
    /// warning): a job can then read the data dir and the server's processes.
    pub insecure_unsandboxed_jobs: bool,
    /// The `keyless` executable compute nodes run as the job agent; default
    /// this server's own executable.
    pub job_agent: Option<PathBuf>,
    /// Where blob bytes live: an object store URL (`s3://bucket/prefix`,
    /// `az://container/prefix`, `gs://…`, `file:///…`); default files under
    /// `<data dir>/blobs`.
    pub blob_store: Option<String>,
    /// Where the metadata lives: a PostgreSQL URL (`postgres://…`); default
    /// SQLite in the data dir.
    pub metadata: Option<String>,
    /// Where jobs' folders (working directories and logs) live; default
    /// `<data dir>/jobs`. Servers sharing a store share it: the same path on
    /// every server, as a Slurm cluster's nodes see it.
    pub jobs_dir: Option<PathBuf>,
    /// The management URLs (`https://host:port`) of the other servers sharing
    /// the store: a job's agent turns to them when the server running its job
    /// is lost, and the one that took the job over answers.
    pub peers: Vec<String>,
}

/// Certificates for the TLS listeners.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// An operator-supplied server certificate chain (PEM); generated when absent.
    pub cert: Option<PathBuf>,
    /// The key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// The CA bundle (PEM) that signed `cert`, handed to clients and jobs that
    /// do not trust it already (a private CA).
    pub ca: Option<PathBuf>,
    /// More DNS names or addresses for the generated server certificate.
    pub extra_names: Vec<String>,
}

impl Config {
    /// The defaults of `keyless serve` for a data dir.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            public_host: "127.0.0.1".into(),
            tls: TlsConfig::default(),
            token_lifetime: None,
            key_rotation: Duration::from_secs(30 * 24 * 3600),
            tenant_domain: "keyless.local".into(),
            device_code_interval: 5,
            master_key_file: None,
            insecure_key_file_permissions: false,
            insecure_unsandboxed_jobs: false,
            job_agent: None,
            blob_store: None,
            metadata: None,
            jobs_dir: None,
            peers: Vec::new(),
        }
    }

    /// Where jobs' folders live.
    pub fn jobs_dir(&self) -> PathBuf {
        self.jobs_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("jobs"))
    }
}
