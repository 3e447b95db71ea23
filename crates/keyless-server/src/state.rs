//! The state every listener shares.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use moka::sync::Cache;

use keyless_auth::{Clock, MasterKey, TokenVerifier};
use keyless_core::rbac::{RbacIndex, RoleAssignment, builtin_roles};
use keyless_core::{Error, ResourceId};
use keyless_store::{BlobBackend, MetaStore, StorageAccount};

use crate::config::Config;

/// The public base URLs of the listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    /// OAuth2 / OIDC token service.
    pub login: String,
    /// Management (ARM-style and directory) API.
    pub management: String,
    /// Blob and DFS endpoint.
    pub storage: String,
    /// Key vault endpoint.
    pub vault: String,
    /// Managed-identity endpoint (plain HTTP on loopback).
    pub identity: String,
    /// Container registries.
    pub registry: String,
}

/// What handlers reach through `State`.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn MetaStore>,
    pub(crate) blobs: Arc<dyn BlobBackend>,
    /// The locks of the blob files being appended to, by file id: an append
    /// extends the file and records the longer blob under its file's lock.
    appends: std::sync::Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    /// Unsealed storage account keys, by account name.
    account_keys: Cache<String, Arc<[Vec<u8>; 2]>>,
    /// Storage accounts by name, briefly: every data request needs its account.
    accounts: Cache<String, Arc<StorageAccount>>,
    pub(crate) verifier: TokenVerifier,
    /// The key-encryption key; replaced whole by a rotation.
    master: RwLock<Arc<MasterKey>>,
    /// Serializes master-key rotations.
    pub(crate) master_rotation: tokio::sync::Mutex<()>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) urls: Urls,
    pub(crate) config: Config,
    /// Serializes signing-key rotations.
    pub(crate) rotation: tokio::sync::Mutex<()>,
    /// Ids of client assertions already used, until they expire (replay protection).

    /// Every role assignment, compiled; replaced whole after each change.
    rbac: RwLock<Arc<RbacIndex>>,
    /// Serializes rebuilds of `rbac`, so the last change always wins.
    rbac_reload: tokio::sync::Mutex<()>,
    /// One record per data-plane request.
    pub(crate) storage_log: crate::storage_log::StorageLog,
    /// One record per vault request (who read which secret version).
    pub(crate) vault_log: crate::storage_log::StorageLog,
    /// One record per registry request (who pulled or pushed which digest).
    pub(crate) registry_log: crate::storage_log::StorageLog,
    /// Running jobs: slots, cancel switches, identity endpoint grants.
    pub(crate) jobs: crate::jobs::Runtime,
    /// Password sign-ins: lockouts and the hashing pool.
    pub(crate) sign_ins: crate::login::lockout::SignIns,
    /// This server process among those sharing the store: a random id, to know
    /// its own announcements on the change feed.
    pub(crate) instance: String,
    /// This server among those sharing the store, across its restarts: the id
    /// kept in its data dir (`server-id`). Jobs name the server that runs them.
    pub(crate) server_id: String,
    /// Whether the server serves what the store holds: true on SQLite; on a
    /// shared store, while the change feed is followed (`/readyz`).
    pub(crate) ready: Arc<std::sync::atomic::AtomicBool>,
}

pub(crate) type SharedState = Arc<AppState>;

/// The id of the server whose data dir `dir` is, made on first start.
fn server_id(dir: &std::path::Path) -> Result<String, Error> {
    let path = dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) | Err(_) => {
            let id = uuid::Uuid::new_v4().to_string();
            std::fs::write(&path, &id)
                .map_err(|e| Error::internal(format!("cannot write `{}`: {e}", path.display())))?;
            Ok(id)
        }
    }
}

/// Where a server keeps what it serves.
pub(crate) struct Stores {
    /// The metadata.
    pub(crate) meta: Arc<dyn MetaStore>,
    /// The blob bytes.
    pub(crate) blobs: Arc<dyn BlobBackend>,
    /// The PostgreSQL store when it is shared with other servers: the request
    /// logs go there too.
    pub(crate) shared: Option<keyless_store::PostgresStore>,
}

impl AppState {
    pub(crate) fn new(
        stores: Stores,
        verifier: TokenVerifier,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        urls: Urls,
        config: Config,
    ) -> Result<Self, Error> {
        let Stores {
            meta: store,
            blobs,
            shared,
        } = stores;
        let server_id = server_id(&config.data_dir)?;
        let logs = config.data_dir.join("logs");
        let (storage_log, vault_log, registry_log) = match shared {
            Some(store) => {
                // Each with a log in this server's files for the records the shared one refuses.
                let shared = |log: &'static str| {
                    crate::storage_log::StorageLog::shared(
                        store.clone(),
                        log,
                        &logs.join(format!("{log}-refused")),
                    )
                };
                (shared("storage")?, shared("vault")?, shared("registry")?)
            }
            None => (
                crate::storage_log::StorageLog::open(&logs.join("storage"))?,
                crate::storage_log::StorageLog::open(&logs.join("vault"))?,
                crate::storage_log::StorageLog::open(&logs.join("registry"))?,
            ),
        };
        let jobs = crate::jobs::Runtime::new(
            &[config.data_dir.clone(), config.jobs_dir()],
            config.jobs_dir().join("images"),
            config.insecure_unsandboxed_jobs,
            config.job_agent.clone(),
        );
        Ok(Self {
            storage_log,
            vault_log,
            registry_log,
            store,
            blobs,
            appends: std::sync::Mutex::default(),
            account_keys: Cache::builder().max_capacity(10_000).build(),
            accounts: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(2))
                .build(),
            verifier,
            master: RwLock::new(Arc::new(master)),
            master_rotation: tokio::sync::Mutex::new(()),
            clock,
            urls,
            config,
            rotation: tokio::sync::Mutex::new(()),
            rbac: RwLock::new(Arc::new(RbacIndex::default())),
            rbac_reload: tokio::sync::Mutex::new(()),
            jobs,
            sign_ins: crate::login::lockout::SignIns::default(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            server_id,
            ready: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }

    /// Waits for, and holds, the lock of appends into a blob file (or, named
    /// `compose:<account>/<container>/<blob>`, of the appends composing a blob).
    pub(crate) async fn lock_appends(&self, file_id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self
                .appends
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.retain(|_, l| l.strong_count() > 0);
            if let Some(l) = locks.get(file_id).and_then(Weak::upgrade) {
                l
            } else {
                let l = Arc::new(tokio::sync::Mutex::new(()));
                locks.insert(file_id.to_owned(), Arc::downgrade(&l));
                l
            }
        };
        lock.lock_owned().await
    }

    /// The master key in use.
    pub(crate) fn master(&self) -> Arc<MasterKey> {
        self.master
            .read()
            .map(|m| Arc::clone(&m))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }

    /// Puts a new master key in use (after a rotation resealed everything).
    pub(crate) fn set_master(&self, key: MasterKey) {
        let mut slot = self
            .master
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(key);
    }

    /// The decoded keys of a storage account (key1, key2), unsealed once and cached.
    pub(crate) fn account_keys(
        &self,
        account: &StorageAccount,
    ) -> Result<Arc<[Vec<u8>; 2]>, Error> {
        if let Some(keys) = self.account_keys.get(&account.name) {
            return Ok(keys);
        }
        let open = |which: &str, sealed: &[u8]| {
            self.master()
                .open(&format!("storage-key:{}:{which}", account.name), sealed)
        };
        let keys = Arc::new([open("key1", &account.key1)?, open("key2", &account.key2)?]);
        self.account_keys
            .insert(account.name.clone(), Arc::clone(&keys));
        Ok(keys)
    }

    /// Forgets the cached keys and record of an account (after a change; other
    /// servers sharing the store learn of it from the change feed).
    pub(crate) fn forget_account_keys(&self, account: &str) {
        self.account_keys.invalidate(account);
        self.accounts.invalidate(account);
    }

    /// Forgets every cached account record and key (after the feed was lost).
    pub(crate) fn forget_all_accounts(&self) {
        self.account_keys.invalidate_all();
        self.accounts.invalidate_all();
    }

    /// A storage account by name, from a short-lived cache.
    pub(crate) async fn account(&self, name: &str) -> Result<Option<Arc<StorageAccount>>, Error> {
        if let Some(a) = self.accounts.get(name) {
            return Ok(Some(a));
        }
        let Some(a) = self.store.account(name).await? else {
            return Ok(None);
        };
        let a = Arc::new(a);
        self.accounts.insert(name.to_owned(), Arc::clone(&a));
        Ok(Some(a))
    }

    /// The current RBAC index.
    pub(crate) fn rbac(&self) -> Arc<RbacIndex> {
        match self.rbac.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Rebuilds the RBAC index from the store; called after every change to role
    /// definitions, assignments, subscriptions or principals. Each server rebuilds
    /// its own from the shared store, so several servers can share one database
    /// once they learn of each other's changes.
    pub(crate) async fn reload_rbac(&self) -> Result<(), Error> {
        let _guard = self.rbac_reload.lock().await;
        let custom = self.store.role_definitions_all().await?;
        let roles = builtin_roles()
            .iter()
            .cloned()
            .chain(custom.into_iter().map(|d| d.role));
        let assignments: Vec<RoleAssignment> = self
            .store
            .role_assignments_all()
            .await?
            .into_iter()
            .filter_map(|a| {
                Some(RoleAssignment {
                    name: a.name,
                    scope: ResourceId::parse(&a.scope).ok()?,
                    role_definition_id: a.role_definition_id,
                    principal_id: a.principal_id,
                })
            })
            .collect();
        let subscriptions = self
            .store
            .subscriptions_all()
            .await?
            .into_iter()
            .map(|s| (s.id, s.tenant_id));
        let index = Arc::new(RbacIndex::new(roles, assignments, subscriptions));
        match self.rbac.write() {
            Ok(mut guard) => *guard = index,
            Err(poisoned) => *poisoned.into_inner() = index,
        }
        Ok(())
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }
}
