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
use keyless_ml::backend::{
    BackendKind, BackendSpec, ComputeBackend, LocalProcess, LocalSandbox, Slurm,
};

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
    /// What its identity endpoint issues; `None` when the job has no identity
    /// to hand out (its compute has no managed identity).
    pub(crate) issues: Option<Issues>,
}

/// A SAS keyless signed for a job's agent: which job it is for and until when.
#[derive(Debug, Clone)]
struct Minted {
    job: String,
    expiry: i64,
    revoked: bool,
}

/// What keyless knows of a SAS it may have signed for a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MintedSas {
    /// Signed for this job, which is still running.
    Live(String),
    /// Signed for this job, which has ended: the SAS no longer works.
    Revoked(String),
}

/// The server's job bookkeeping.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// The backend of serverless compute and of computes on the local backend.
    pub(crate) backend: Arc<dyn ComputeBackend>,
    /// The sandbox jobs start in on any backend; `None` when jobs run unsandboxed.
    sandbox: Option<LocalSandbox>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    cancels: Mutex<HashMap<String, CancellationToken>>,
    /// Grants by endpoint key (the path segment of the job's endpoint).
    grants: RwLock<HashMap<String, Grant>>,
    /// The agents of running jobs, by endpoint key.
    agents: RwLock<HashMap<String, Arc<crate::management::ml::runner::Session>>>,
    /// Endpoint keys of jobs a restarted server is about to follow again: their
    /// agents are asked to wait, not told the job ended.
    resuming: Mutex<std::collections::HashSet<String>>,
    /// The SAS signed for jobs' agents, by signature, until they expire.
    minted: Mutex<HashMap<String, Minted>>,
    /// The keyless executable the job agent runs from.
    pub(crate) agent_exe: std::path::PathBuf,
    /// Every job runner this server started; the server waits for them when
    /// it stops.
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// Cancelled when the server stops: runners let Slurm jobs go on and stop
    /// the local ones.
    pub(crate) stopping: CancellationToken,
    /// The CA bundle jobs trust (keyless's own CA, when it generated one).
    pub(crate) ca_file: std::sync::OnceLock<std::path::PathBuf>,
    /// The key of log URLs handed to run-history clients; never leaves memory.
    log_key: [u8; 32],
}

impl Runtime {
    /// The bookkeeping of a server whose jobs run in the local sandbox, which
    /// hides `hidden` (the data dir and the jobs' folders) from them and keeps
    /// the node's unpacked images in `images`; with `insecure_unsandboxed`, as
    /// the server's own user instead.
    pub(crate) fn new(
        hidden: &[std::path::PathBuf],
        images: std::path::PathBuf,
        insecure_unsandboxed: bool,
        agent_exe: Option<std::path::PathBuf>,
    ) -> Self {
        let agent_exe = agent_exe
            .unwrap_or_else(|| std::env::current_exe().unwrap_or_else(|_| "keyless".into()));
        let sandbox = if insecure_unsandboxed {
            tracing::warn!(
                "insecure_unsandboxed_jobs is set: jobs run as the server's own user and can read its data dir, keys and processes"
            );
            None
        } else {
            if let Err(e) = LocalSandbox::check() {
                tracing::warn!(reason = %e, "jobs cannot run on this server");
            }
            Some(
                LocalSandbox::new(hidden.to_vec())
                    .with_agent(agent_exe.clone())
                    .with_image_cache(images),
            )
        };
        let backend: Arc<dyn ComputeBackend> = match &sandbox {
            Some(s) => Arc::new(s.clone()),
            None => Arc::new(LocalProcess),
        };
        Self {
            backend,
            sandbox,
            slots: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            grants: RwLock::new(HashMap::new()),
            agents: RwLock::new(HashMap::new()),
            minted: Mutex::new(HashMap::new()),
            resuming: Mutex::new(std::collections::HashSet::new()),
            agent_exe,
            tasks: tokio_util::task::TaskTracker::new(),
            stopping: CancellationToken::new(),
            ca_file: std::sync::OnceLock::new(),
            log_key: random_key(),
        }
    }
}

fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    if aws_lc_rs::rand::fill(&mut key).is_err() {
        // The system's generator failed; fall back to two v4 UUIDs (from uuid's
        // `fast-rng`: a ChaCha generator seeded from the OS, 244 random bits).
        let (a, b) = key.split_at_mut(16);
        a.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        b.copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    key
}

impl Runtime {
    /// The backend a compute's jobs run on.
    pub(crate) fn backend_for(&self, spec: &BackendSpec) -> Arc<dyn ComputeBackend> {
        match spec.backend {
            BackendKind::Local => Arc::clone(&self.backend),
            BackendKind::Slurm => Arc::new(Slurm::new(
                spec.slurm.clone().unwrap_or_default(),
                self.sandbox.clone(),
            )),
        }
    }

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

    /// Cancels a job if this server runs it (or has it queued).
    pub(crate) fn cancel_if_running(&self, job: &str) {
        if let Some(token) = self
            .cancels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&job.to_ascii_lowercase())
        {
            token.cancel();
        }
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

    /// Registers a running job's agent under its endpoint key.
    pub(crate) fn attach_agent(
        &self,
        key: &str,
        session: Arc<crate::management::ml::runner::Session>,
    ) {
        self.agents
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_owned(), session);
    }

    /// Marks (or, with `on` false, unmarks) a job's endpoint key as about to be
    /// followed again.
    pub(crate) fn set_resuming(&self, key: &str, on: bool) {
        let mut resuming = self
            .resuming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if on {
            resuming.insert(key.to_owned());
        } else {
            resuming.remove(key);
        }
    }

    /// Whether a job's endpoint key is about to be followed again.
    pub(crate) fn is_resuming(&self, key: &str) -> bool {
        self.resuming
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    /// Forgets a job's agent.
    pub(crate) fn detach_agent(&self, key: &str) {
        self.agents
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }

    /// The agent session behind an endpoint key.
    pub(crate) fn agent(&self, key: &str) -> Option<Arc<crate::management::ml::runner::Session>> {
        self.agents
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Records a SAS signed for `job`'s agent, by the digest of its signature
    /// (what [`keyless_auth::secret::digest_secret`] makes of it); forgets the
    /// expired ones.
    pub(crate) fn minted(&self, sig_digest: &str, job: &str, expiry: i64, now: i64) {
        let mut minted = self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        minted.retain(|_, m| m.expiry > now);
        minted.insert(
            sig_digest.to_owned(),
            Minted {
                job: job.to_owned(),
                expiry,
                revoked: false,
            },
        );
    }

    /// Whether any SAS was signed for a job's agent and has not expired yet.
    pub(crate) fn any_minted(&self) -> bool {
        !self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty()
    }

    /// Every SAS signed for `job` stops working (the job has ended).
    pub(crate) fn revoke_minted(&self, job: &str) {
        let mut minted = self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for m in minted.values_mut().filter(|m| m.job == job) {
            m.revoked = true;
        }
    }

    /// Whether a SAS with this signature was signed for a job, and whether it
    /// still works.
    pub(crate) fn minted_sas(&self, sig: &str) -> Option<MintedSas> {
        let minted = self
            .minted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Every SAS request asks: without jobs' SAS, no digest is computed.
        if minted.is_empty() {
            return None;
        }
        minted
            .get(&keyless_auth::secret::digest_secret(sig))
            .map(|m| {
                if m.revoked {
                    MintedSas::Revoked(m.job.clone())
                } else {
                    MintedSas::Live(m.job.clone())
                }
            })
    }
}
