//! The state every listener shares.

use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

use keyless_auth::{Clock, MasterKey, TokenVerifier};
use keyless_store::MetaStore;

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
}

/// What handlers reach through `State`.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn MetaStore>,
    pub(crate) verifier: TokenVerifier,
    pub(crate) master: MasterKey,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) urls: Urls,
    pub(crate) config: Config,
    /// Serializes signing-key rotations.
    pub(crate) rotation: tokio::sync::Mutex<()>,
    /// Ids of client assertions already used, until they expire (replay protection).
    pub(crate) used_assertions: Cache<String, ()>,
}

pub(crate) type SharedState = Arc<AppState>;

impl AppState {
    pub(crate) fn new(
        store: Arc<dyn MetaStore>,
        verifier: TokenVerifier,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        urls: Urls,
        config: Config,
    ) -> Self {
        Self {
            store,
            verifier,
            master,
            clock,
            urls,
            config,
            rotation: tokio::sync::Mutex::new(()),
            used_assertions: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(Duration::from_secs(3 * 3600))
                .build(),
        }
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }
}
