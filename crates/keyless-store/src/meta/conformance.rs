//! The behaviour every metadata store shares, one test per behaviour, run
//! against each engine: SQLite always; PostgreSQL when `KEYLESS_TEST_POSTGRES_URL`
//! names a server (the test command starts one), each test in a database of its own.

use std::sync::Arc;

use bytes::Bytes;

use keyless_core::{ClientId, Error, ErrorKind, ObjectId, Principal, PrincipalKind, TenantId};

use crate::meta::{
    ActivityEvent, AuthorizationCode, Credential, CredentialKind, DeviceCode, MetaStore,
    RefreshGrant, Resource, ResourceGroup, SealedSigningKey, StoredRoleAssignment,
    StoredRoleDefinition, Subscription, Tenant,
};
use crate::registry::{Manifest, Registry, RegistryBlob, Upload};
use crate::storage::{
    Blob, Container, Content, Page, Precondition, Retained, StorageAccount, StorageStore,
};
use crate::vault::{SecretVersion, Vault};

/// A fresh SQLite store, in a directory that lives as long as the store is used.
async fn sqlite() -> (tempfile::TempDir, crate::SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::SqliteStore::open(&dir.path().join("meta.sqlite"))
        .await
        .unwrap();
    (dir, store)
}

/// A fresh PostgreSQL store in a new database, or `None` (the test is skipped,
/// and says so) when no server is configured.
#[cfg(feature = "postgres")]
pub(crate) async fn postgres() -> Option<crate::PostgresStore> {
    let Ok(url) = std::env::var("KEYLESS_TEST_POSTGRES_URL") else {
        eprintln!("KEYLESS_TEST_POSTGRES_URL is not set: the PostgreSQL run is skipped");
        return None;
    };
    Some(crate::PostgresStore::connect_fresh(&url).await.unwrap())
}

/// Two tests per behaviour, `sqlite::<name>` and `postgres::<name>`.
macro_rules! conformance {
    ($($module:ident :: $name:ident,)*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::sqlite().await;
                    super::$module::$name(store).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = super::postgres().await {
                        super::$module::$name(store).await;
                    }
                }
            )*
        }
    };
}

mod directory;
mod registry;
mod resources;
mod storage;
mod vault;

conformance! {
    directory::tenants_principals_and_credentials_keep_their_keys_and_cases,
    directory::concurrent_memberships_never_close_a_cycle,
    directory::concurrent_secret_replacements_leave_one_secret,
    directory::signing_keys_refresh_tokens_and_device_codes_round_trip,
    directory::a_token_or_code_is_taken_by_one_caller_only,
    directory::a_key_is_used_once_until_it_expires_and_by_one_caller,
    directory::sign_in_failures_lock_at_the_threshold_within_the_window_and_all_count,
    directory::device_codes_nobody_approved_are_deleted_once_expired,
    directory::a_credential_is_removed_alone_and_only_from_its_principal,
    directory::an_authorization_code_is_taken_once_and_expires,
    resources::resources_groups_and_role_assignments_round_trip,
    resources::concurrent_resource_updates_lose_nothing_and_a_claim_is_won_once,
    resources::resources_written_together_are_written_whole_or_not_at_all,
    vault::secrets_keep_versions_and_deletion_marks,
    vault::concurrent_secret_writers_keep_the_deletion_mark_consistent,
    storage::a_write_broken_by_a_constraint_fails_alone,
    storage::an_overwrite_keeps_the_creation_time_and_releases_the_old_file,
    storage::a_put_drops_the_staged_blocks_of_its_name_and_releases_their_files,
    storage::concurrent_writes_share_commits_and_a_failure_stays_alone,
    storage::cached_reads_follow_every_write,
    storage::inline_blobs_hold_no_file_and_listings_skip_their_bytes,
    storage::prefixes_are_case_sensitive,
    storage::directories_rename_and_delete_with_everything_under_them,
    storage::blob_state_round_trips_and_an_overwrite_keeps_the_lease,
    storage::container_writes_are_judged_on_the_current_container,
    storage::kept_states_survive_overwrites_and_deletes_until_they_expire,
    storage::a_deleted_container_is_kept_with_its_blobs_until_restored_or_expired,
    registry::registries_keep_blobs_manifests_tags_and_uploads,
}

/// A new tenant `t.local`.
async fn tenant<S: MetaStore>(store: &S) -> TenantId {
    let tenant = TenantId::new_random();
    store
        .tenant_create(&Tenant {
            id: tenant,
            domain: "t.local".into(),
            display_name: "t".into(),
            created_at: 0,
        })
        .await
        .unwrap();
    tenant
}

/// A store with account `acct` and container `c`.
pub(crate) async fn with_container<S: MetaStore>(store: S) -> S {
    let tenant = tenant(&store).await;
    store
        .account_create(&StorageAccount {
            name: "acct".into(),
            id:
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/acct"
                    .into(),
            tenant_id: tenant,
            subscription_id: "s".into(),
            resource_group: "g".into(),
            location: "local".into(),
            hns: false,
            allow_shared_key: true,
            body: serde_json::json!({}),
            key1: vec![1],
            key2: vec![2],
            created_at: 0,
        })
        .await
        .unwrap();
    store
        .container_create(&Container {
            account: "acct".into(),
            name: "c".into(),
            etag: "\"0\"".into(),
            last_modified: 0,
            metadata: Vec::new(),
            acl: None,
            state: Default::default(),
        })
        .await
        .unwrap();
    store
}

pub(crate) fn blob(name: &str, bytes: &'static [u8]) -> Blob {
    Blob {
        account: "acct".into(),
        container: "c".into(),
        name: name.into(),
        etag: format!("\"{name}\""),
        created_at: 1,
        last_modified: 1,
        size: bytes.len() as u64,
        content: Content::Inline(Bytes::from_static(bytes)),
        properties: Default::default(),
        metadata: Vec::new(),
        committed_blocks: Vec::new(),
        is_dir: false,
        acl: None,
        state: Default::default(),
    }
}

/// The names of the blobs in container `c` of account `acct`, sorted.
pub(crate) async fn names_in_c<S: StorageStore>(store: &S) -> Vec<String> {
    let page = Page {
        prefix: "",
        marker: "",
        max: 1000,
    };
    let mut names: Vec<String> = store
        .blobs("acct", "c", page)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    names.sort();
    names
}

pub(crate) fn accept(_: Option<&Blob>) -> Result<(), Error> {
    Ok(())
}

fn refuse(_: Option<&Blob>) -> Result<(), Error> {
    Err(Error::invalid("condition not met"))
}

// --- shared by the directory's, the resources' and the vaults' tests ---

async fn new_tenant<S: MetaStore>(s: &S) -> TenantId {
    let id = TenantId::new_random();
    s.tenant_create(&Tenant {
        id,
        domain: "T.local".into(),
        display_name: "t".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    id
}

fn principal(tenant: TenantId, kind: PrincipalKind, name: &str) -> Principal {
    Principal {
        object_id: ObjectId::new_random(),
        tenant_id: tenant,
        kind,
        display_name: name.into(),
        user_principal_name: None,
        app_id: None,
        enabled: true,
        resource_id: None,
        created_at: 0,
    }
}

fn secret(vault: &str, name: &str, version: &str, created: i64) -> SecretVersion {
    SecretVersion {
        vault: vault.into(),
        name: name.into(),
        version: version.into(),
        created,
        updated: created,
        enabled: true,
        not_before: None,
        expires: Some(7),
        content_type: None,
        tags: serde_json::json!({}),
        wrapped_key: vec![1],
        sealed_value: vec![2],
    }
}
