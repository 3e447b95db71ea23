//! What the server keeps about running jobs: the backend that runs them, one
//! slot pool per compute (its `max_instances`), the cancel switch of each job,
//! and the grants of the per-job managed-identity endpoints.
//!
//! The lifecycle itself is in `management::ml::runner`; the identity listener
//! reads the grants here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use keyless_core::Principal;
use keyless_ml::backend::{ComputeBackend, LocalProcess, LocalSandbox};

/// What a job's identity endpoint may issue.
#[derive(Debug, Clone)]
pub(crate) enum Issues {
    /// `identity: user_identity`: the submitting user's tokens, and nothing else.
    User(Principal),
    /// Otherwise: the compute's managed identities. `default` answers a request
    /// that names none; a request naming another identity attached to the compute
    /// gets that one.
    Managed {
        default: Principal,
        attached: Vec<Principal>,
    },
}

/// One job's identity endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    /// The job's resource id (tokens carry it, the storage log records it).
    pub(crate) job: String,
    /// The digest of the job's secret.
    pub(crate) secret_digest: String,
    pub(crate) issues: Issues,
}

/// The server's job bookkeeping.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub(crate) backend: Arc<dyn ComputeBackend>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    cancels: Mutex<HashMap<String, CancellationToken>>,
    /// Grants by endpoint key (the path segment of the job's endpoint).
    grants: RwLock<HashMap<String, Grant>>,
    /// The CA bundle jobs trust (keyless's own CA, when it generated one).
    pub(crate) ca_file: std::sync::OnceLock<std::path::PathBuf>,
    /// The key of log URLs handed to run-history clients; never leaves memory.
    log_key: [u8; 32],
}

impl Runtime {
    /// The bookkeeping of a server whose jobs run in the local sandbox, which
    /// hides `data_dir` from them; with `insecure_unsandboxed`, as the server's
    /// own user instead.
    pub(crate) fn new(data_dir: &std::path::Path, insecure_unsandboxed: bool) -> Self {
        let backend: Arc<dyn ComputeBackend> = if insecure_unsandboxed {
            tracing::warn!(
                "insecure_unsandboxed_jobs is set: jobs run as the server's own user and can read its data dir, keys and processes"
            );
            Arc::new(LocalProcess)
        } else {
            if let Err(e) = LocalSandbox::check() {
                tracing::warn!(reason = %e, "jobs cannot run on this server");
            }
            Arc::new(LocalSandbox::new(vec![data_dir.to_path_buf()]))
        };
        Self {
            backend,
            slots: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            grants: RwLock::new(HashMap::new()),
            ca_file: std::sync::OnceLock::new(),
            log_key: random_key(),
        }
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut key).is_err() {
        // The system's generator failed; fall back to two v4 UUIDs (also OS randomness).
        let (a, b) = key.split_at_mut(16);
        a.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        b.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key
}

impl Runtime {
    /// The key that signs log URLs.
    pub(crate) fn log_key(&self) -> &[u8] {
        &self.log_key
    }

    /// The slot pool of a compute, sized by its `max_instances`. A resized compute
    /// gets a new pool; jobs holding slots of the old one finish in it.
    pub(crate) fn slots(&self, compute: &str, max_instances: usize) -> Arc<Semaphore> {
        let key = format!("{}#{max_instances}", compute.to_ascii_lowercase());
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            slots
                .entry(key)
                .or_insert_with(|| Arc::new(Semaphore::new(max_instances.max(1)))),
        )
    }

    /// The cancel switch of a job, made on first use.
    pub(crate) fn cancel_token(&self, job: &str) -> CancellationToken {
        let mut cancels = self
            .cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cancels.entry(job.to_ascii_lowercase()).or_default().clone()
    }

    /// Forgets a finished job's cancel switch.
    pub(crate) fn forget(&self, job: &str) {
        self.cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&job.to_ascii_lowercase());
    }

    /// Opens a job's identity endpoint under `key`.
    pub(crate) fn grant(&self, key: &str, grant: Grant) {
        self.grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_owned(), grant);
    }

    /// Closes a job's identity endpoint.
    pub(crate) fn revoke(&self, key: &str) {
        self.grants
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// The grant behind an endpoint key.
    pub(crate) fn grant_of(&self, key: &str) -> Option<Grant> {
        self.grants
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }
}
