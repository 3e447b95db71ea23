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
use crate::storage::{Blob, Container, Content, Page, Precondition, Retained, StorageAccount};
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
    ($($name:ident,)*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (_dir, store) = super::sqlite().await;
                    super::$name(store).await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = super::postgres().await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

conformance! {
    tenants_principals_and_credentials_keep_their_keys_and_cases,
    concurrent_memberships_never_close_a_cycle,
    concurrent_secret_replacements_leave_one_secret,
    signing_keys_refresh_tokens_and_device_codes_round_trip,
    a_token_or_code_is_taken_by_one_caller_only,
    a_key_is_used_once_until_it_expires_and_by_one_caller,
    sign_in_failures_lock_at_the_threshold_within_the_window_and_all_count,
    resources_groups_and_role_assignments_round_trip,
    concurrent_resource_updates_lose_nothing_and_a_claim_is_won_once,
    resources_written_together_are_written_whole_or_not_at_all,
    secrets_keep_versions_and_deletion_marks,
    concurrent_secret_writers_keep_the_deletion_mark_consistent,
    a_write_broken_by_a_constraint_fails_alone,
    an_overwrite_keeps_the_creation_time_and_releases_the_old_file,
    a_put_drops_the_staged_blocks_of_its_name_and_releases_their_files,
    concurrent_writes_share_commits_and_a_failure_stays_alone,
    cached_reads_follow_every_write,
    inline_blobs_hold_no_file_and_listings_skip_their_bytes,
    prefixes_are_case_sensitive,
    directories_rename_and_delete_with_everything_under_them,
    device_codes_nobody_approved_are_deleted_once_expired,
    a_credential_is_removed_alone_and_only_from_its_principal,
    an_authorization_code_is_taken_once_and_expires,
    blob_state_round_trips_and_an_overwrite_keeps_the_lease,
    container_writes_are_judged_on_the_current_container,
    kept_states_survive_overwrites_and_deletes_until_they_expire,
    a_deleted_container_is_kept_with_its_blobs_until_restored_or_expired,
    registries_keep_blobs_manifests_tags_and_uploads,
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

pub(crate) fn accept(_: Option<&Blob>) -> Result<(), Error> {
    Ok(())
}

fn refuse(_: Option<&Blob>) -> Result<(), Error> {
    Err(Error::invalid("condition not met"))
}

async fn a_write_broken_by_a_constraint_fails_alone<S: MetaStore>(store: S) {
    // Put Blob opens its savepoint in the same round trip as its statements; a
    // constraint it breaks there (the container is gone) must not take the
    // writes sharing its batch down with it.
    let store = Arc::new(with_container(store).await);
    let mut tasks = Vec::new();
    for i in 0..48 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut b = blob(&format!("b{i}"), b"bytes");
            if i % 4 == 0 {
                b.container = "gone".into();
            }
            store.blob_put(&b, &accept).await.map(|_| ())
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i % 4 == 0 {
            assert_eq!(
                result.unwrap_err().kind(),
                keyless_core::ErrorKind::NotFound
            );
        } else {
            result.unwrap();
            assert!(
                store
                    .blob("acct", "c", &format!("b{i}"))
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }
}

async fn an_overwrite_keeps_the_creation_time_and_releases_the_old_file<S: MetaStore>(store: S) {
    let store = with_container(store).await;
    let mut first = blob("b", b"");
    first.content = Content::File("file-1".into());
    first.created_at = 10;
    assert!(store.blob_put(&first, &accept).await.unwrap().is_empty());
    let mut second = blob("b", b"new");
    second.created_at = 20;
    second.last_modified = 20;
    assert_eq!(
        store.blob_put(&second, &accept).await.unwrap(),
        vec!["file-1".to_owned()]
    );
    let stored = store.blob("acct", "c", "b").await.unwrap().unwrap();
    assert_eq!((stored.created_at, stored.last_modified), (10, 20));
    // A refused overwrite changes nothing and releases nothing.
    assert!(store.blob_put(&blob("b", b"third"), &refuse).await.is_err());
    let stored = store.blob("acct", "c", "b").await.unwrap().unwrap();
    assert_eq!(stored.content, Content::Inline(Bytes::from_static(b"new")));
}

async fn a_put_drops_the_staged_blocks_of_its_name_and_releases_their_files<S: MetaStore>(
    store: S,
) {
    let store = with_container(store).await;
    let block = |blob: &str, id: &str| crate::storage::Block {
        account: "acct".into(),
        container: "c".into(),
        blob: blob.into(),
        block_id: id.into(),
        size: 3,
        file_id: format!("{blob}-{id}"),
        created_at: 1,
    };
    for (name, id) in [("b", "one"), ("b", "two"), ("other", "one")] {
        assert_eq!(store.block_put(&block(name, id)).await.unwrap(), None);
    }
    // A refused put drops nothing.
    assert!(store.blob_put(&blob("b", b"x"), &refuse).await.is_err());
    assert_eq!(store.blocks("acct", "c", "b").await.unwrap().len(), 2);
    let mut released = store.blob_put(&blob("b", b"x"), &accept).await.unwrap();
    released.sort();
    assert_eq!(released, ["b-one", "b-two"]);
    assert!(store.blocks("acct", "c", "b").await.unwrap().is_empty());
    // Another name's blocks stay, and a put over a name without any releases nothing.
    assert_eq!(store.blocks("acct", "c", "other").await.unwrap().len(), 1);
    assert!(
        store
            .blob_put(&blob("b", b"y"), &accept)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn concurrent_writes_share_commits_and_a_failure_stays_alone<S: MetaStore>(store: S) {
    let store = Arc::new(with_container(store).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let b = blob(&format!("b{i}"), b"bytes");
            let check: Precondition<'_> = if i % 3 == 0 { &refuse } else { &accept };
            store.blob_put(&b, check).await.map(|_| ())
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        let stored = store.blob("acct", "c", &format!("b{i}")).await.unwrap();
        if i % 3 == 0 {
            assert_eq!(result.unwrap_err().message(), "condition not met");
            assert!(stored.is_none(), "b{i} was refused and must not exist");
        } else {
            result.unwrap();
            assert_eq!(
                stored.unwrap().content,
                Content::Inline(Bytes::from_static(b"bytes"))
            );
        }
    }
    let listed = store
        .blobs(
            "acct",
            "c",
            Page {
                prefix: "",
                marker: "",
                max: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 42);
}

async fn cached_reads_follow_every_write<S: MetaStore>(store: S) {
    let store = with_container(store).await;
    store.blob_put(&blob("x", b"one"), &accept).await.unwrap();
    assert_eq!(
        store.blob("acct", "c", "x").await.unwrap().unwrap().etag,
        "\"x\""
    );
    let mut changed = blob("x", b"one");
    changed.etag = "\"changed\"".into();
    changed.metadata = vec![("k".into(), "v".into())];
    store.blob_update(&changed, &accept).await.unwrap();
    let read = store.blob("acct", "c", "x").await.unwrap().unwrap();
    assert_eq!(
        (read.etag.as_str(), read.metadata.len()),
        ("\"changed\"", 1)
    );
    let mut replaced = blob("x", b"two!");
    replaced.etag = "\"two\"".into();
    store.blob_put(&replaced, &accept).await.unwrap();
    let read = store.blob("acct", "c", "x").await.unwrap().unwrap();
    assert_eq!(read.content, Content::Inline(Bytes::from_static(b"two!")));
    store.blob_delete("acct", "c", "x", &accept).await.unwrap();
    assert!(store.blob("acct", "c", "x").await.unwrap().is_none());

    store.blob_put(&blob("y", b"y"), &accept).await.unwrap();
    assert!(store.blob("acct", "c", "y").await.unwrap().is_some());
    assert!(store.container("acct", "c").await.unwrap().is_some());
    store
        .container_delete("acct", "c", &|_| Ok(()))
        .await
        .unwrap();
    assert!(store.container("acct", "c").await.unwrap().is_none());
    assert!(store.blob("acct", "c", "y").await.unwrap().is_none());
}

async fn inline_blobs_hold_no_file_and_listings_skip_their_bytes<S: MetaStore>(store: S) {
    let store = with_container(store).await;
    store
        .blob_put(&blob("small", b"0123456789"), &accept)
        .await
        .unwrap();
    let mut in_file = blob("big", b"");
    in_file.content = Content::File("0123456789abcdef0123456789abcdef".into());
    store.blob_put(&in_file, &accept).await.unwrap();
    let ids = store.file_ids().await.unwrap();
    assert_eq!(ids.len(), 1);
    assert!(ids.contains("0123456789abcdef0123456789abcdef"));
    let listed = store
        .blobs(
            "acct",
            "c",
            Page {
                prefix: "",
                marker: "",
                max: 10,
            },
        )
        .await
        .unwrap();
    let small = listed.iter().find(|b| b.name == "small").unwrap();
    assert_eq!(
        (small.size, &small.content),
        (10, &Content::Inline(Bytes::new()))
    );
    // Replacing the inline blob releases no file; deleting the file blob releases its file.
    assert!(
        store
            .blob_put(&blob("small", b"new"), &accept)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .blob_delete("acct", "c", "big", &accept)
            .await
            .unwrap(),
        vec!["0123456789abcdef0123456789abcdef".to_owned()]
    );
}

async fn prefixes_are_case_sensitive<S: MetaStore>(store: S) {
    let store = with_container(store).await;
    for name in ["a/x", "A/y", "ab"] {
        store.blob_put(&blob(name, b"1"), &accept).await.unwrap();
    }
    let listed = store
        .blobs(
            "acct",
            "c",
            Page {
                prefix: "a",
                marker: "",
                max: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["a/x", "ab"]
    );
}

async fn directories_rename_and_delete_with_everything_under_them<S: MetaStore + Clone>(store: S) {
    let store = with_container(store).await;
    let directory = |name: &str| Blob {
        is_dir: true,
        ..blob(name, b"")
    };
    store.blob_put(&directory("raw"), &accept).await.unwrap();
    store
        .blob_put(&directory("raw/2024"), &accept)
        .await
        .unwrap();
    store
        .blob_put(&blob("raw/2024/a.csv", b"a"), &accept)
        .await
        .unwrap();
    store
        .blob_put(&blob("rawish", b"not under raw"), &accept)
        .await
        .unwrap();
    let mut file = blob("raw/big.bin", b"");
    file.content = Content::File("0123456789abcdef0123456789abcdef".into());
    store.blob_put(&file, &accept).await.unwrap();

    store
        .path_rename("acct", "c", "raw", "cooked", &accept)
        .await
        .unwrap();
    let names = |store: &S| {
        let store = store.clone();
        async move {
            store
                .blobs(
                    "acct",
                    "c",
                    Page {
                        prefix: "",
                        marker: "",
                        max: 100,
                    },
                )
                .await
                .unwrap()
                .into_iter()
                .map(|b| b.name)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        names(&store).await,
        [
            "cooked",
            "cooked/2024",
            "cooked/2024/a.csv",
            "cooked/big.bin",
            "rawish"
        ]
    );
    assert!(
        store
            .blob("acct", "c", "raw/2024/a.csv")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .path_rename("acct", "c", "rawish", "cooked", &accept)
            .await
            .unwrap_err()
            .kind(),
        keyless_core::ErrorKind::AlreadyExists
    );

    let refused = store
        .path_delete("acct", "c", "cooked", false, &accept)
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), keyless_core::ErrorKind::Conflict);
    let released = store
        .path_delete("acct", "c", "cooked", true, &accept)
        .await
        .unwrap();
    assert_eq!(
        released,
        vec!["0123456789abcdef0123456789abcdef".to_owned()]
    );
    assert_eq!(names(&store).await, ["rawish"]);
}

async fn device_codes_nobody_approved_are_deleted_once_expired<S: MetaStore>(store: S) {
    let tenant = tenant(&store).await;
    for (n, expires_at) in [(1, 100), (2, 200)] {
        store
            .device_code_add(&crate::meta::DeviceCode {
                digest: format!("d{n}"),
                user_code: format!("U{n}"),
                tenant_id: tenant,
                client_id: "c".into(),
                scope: "s".into(),
                expires_at,
                approved_by: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.device_codes_expire(150).await.unwrap(), 1);
    assert!(
        store
            .device_code_by_user_code("U1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .device_code_by_user_code("U2")
            .await
            .unwrap()
            .is_some()
    );
}

async fn a_credential_is_removed_alone_and_only_from_its_principal<S: MetaStore>(store: S) {
    use crate::meta::{Credential, CredentialKind};
    use keyless_core::{ClientId, ObjectId, Principal, PrincipalKind};
    let tenant = tenant(&store).await;
    let sp = |name: &str| Principal {
        object_id: ObjectId::new_random(),
        tenant_id: tenant,
        kind: PrincipalKind::ServicePrincipal,
        display_name: name.into(),
        user_principal_name: None,
        app_id: Some(ClientId::new_random()),
        enabled: true,
        resource_id: None,
        created_at: 0,
    };
    let (a, b) = (sp("a"), sp("b"));
    store.principal_create(&a, None).await.unwrap();
    store.principal_create(&b, None).await.unwrap();
    let secret = |owner: &Principal, id: &str| Credential {
        id: id.into(),
        principal_id: owner.object_id,
        display_name: id.into(),
        kind: CredentialKind::Secret {
            digest: "d".into(),
            hint: "abc".into(),
        },
        starts_at: 0,
        expires_at: 10,
    };
    store.credential_add(&secret(&a, "a1")).await.unwrap();
    store.credential_add(&secret(&a, "a2")).await.unwrap();
    store.credential_add(&secret(&b, "b1")).await.unwrap();

    // Another principal's credential id removes nothing.
    assert!(!store.credential_remove(a.object_id, "b1").await.unwrap());
    assert!(store.credential_remove(a.object_id, "a1").await.unwrap());
    assert!(!store.credential_remove(a.object_id, "a1").await.unwrap());
    let left: Vec<String> = store
        .credentials(a.object_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["a2"]);
    assert_eq!(store.credentials(b.object_id).await.unwrap().len(), 1);
}

async fn an_authorization_code_is_taken_once_and_expires<S: MetaStore>(store: S) {
    use crate::meta::AuthorizationCode;
    let tenant = tenant(&store).await;
    let code = |digest: &str, expires_at| AuthorizationCode {
        digest: digest.into(),
        tenant_id: tenant,
        principal_id: keyless_core::ObjectId::new_random(),
        client_id: "c".into(),
        scope: "s".into(),
        redirect_uri: "http://localhost:1".into(),
        code_challenge: "x".into(),
        nonce: None,
        expires_at,
    };
    store.authorization_code_add(&code("a", 100)).await.unwrap();
    store.authorization_code_add(&code("b", 200)).await.unwrap();
    let taken = store.authorization_code_take("a").await.unwrap().unwrap();
    assert_eq!(taken.redirect_uri, "http://localhost:1");
    assert_eq!(store.authorization_code_take("a").await.unwrap(), None);
    assert_eq!(store.authorization_codes_expire(150).await.unwrap(), 0);
    assert_eq!(store.authorization_codes_expire(250).await.unwrap(), 1);
    assert_eq!(store.authorization_code_take("b").await.unwrap(), None);
}

async fn blob_state_round_trips_and_an_overwrite_keeps_the_lease<S: MetaStore>(store: S) {
    use crate::storage::{BlobKind, Lease};
    let store = with_container(store).await;
    let mut b = blob("s", b"s");
    b.state.kind = BlobKind::AppendBlob;
    b.state.tags = vec![("project".into(), "census".into())];
    b.state.lease = Some(Lease {
        id: "l1".into(),
        duration: -1,
        expires_at: None,
        broken_at: None,
    });
    store.blob_put(&b, &accept).await.unwrap();
    let read = store.blob("acct", "c", "s").await.unwrap().unwrap();
    assert_eq!(read.state, b.state);
    let listed = store
        .blobs(
            "acct",
            "c",
            Page {
                prefix: "s",
                marker: "",
                max: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed[0].state, b.state);

    // Overwritten by a blob that brings no lease: the lease stays, the rest is new.
    store.blob_put(&blob("s", b"t"), &accept).await.unwrap();
    let read = store.blob("acct", "c", "s").await.unwrap().unwrap();
    assert_eq!(read.state.lease, b.state.lease);
    assert_eq!(read.state.kind, BlobKind::BlockBlob);
    assert!(read.state.tags.is_empty());
}

async fn container_writes_are_judged_on_the_current_container<S: MetaStore>(store: S) {
    let store = with_container(store).await;
    let mut c = store.container("acct", "c").await.unwrap().unwrap();
    c.state.public_access = Some("blob".into());
    let refuse = |_: &Container| Err(Error::new(keyless_core::ErrorKind::Conflict, "leased"));
    let err = store.container_update(&c, &refuse).await.unwrap_err();
    assert_eq!(err.kind(), keyless_core::ErrorKind::Conflict);
    assert!(
        store
            .container("acct", "c")
            .await
            .unwrap()
            .unwrap()
            .state
            .is_empty()
    );
    store.container_update(&c, &|_| Ok(())).await.unwrap();
    assert_eq!(
        store
            .container("acct", "c")
            .await
            .unwrap()
            .unwrap()
            .state
            .public_access
            .as_deref(),
        Some("blob")
    );
    let err = store
        .container_delete("acct", "c", &refuse)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), keyless_core::ErrorKind::Conflict);
    assert!(store.container("acct", "c").await.unwrap().is_some());
    assert!(
        store
            .container_delete("acct", "nope", &|_| Ok(()))
            .await
            .unwrap()
            .is_none()
    );
}

async fn kept_states_survive_overwrites_and_deletes_until_they_expire<S: MetaStore>(store: S) {
    use crate::storage::{Keep, RetainedKind};
    let store = with_container(store).await;
    let in_file = |name: &str, file: &str| {
        let mut b = blob(name, b"");
        b.content = Content::File(file.into());
        b.size = 10;
        b
    };
    // An overwrite that keeps a version hands the old file to the version row.
    let mut first = in_file("v", "f1");
    first.state.version_id = Some("1".into());
    store.blob_put(&first, &accept).await.unwrap();
    let version = Keep {
        kind: None,
        id: "fallback".into(),
        deleted: None,
    };
    let released = store
        .blob_put_keeping(&in_file("v", "f2"), &accept, Some(&version))
        .await
        .unwrap();
    assert!(released.is_empty(), "{released:?}");
    let kept = store.retained("acct", "c", "v").await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].kind, kept[0].id.as_str()),
        (RetainedKind::Version, "1")
    );
    assert_eq!(kept[0].blob.content, Content::File("f1".into()));
    // A refused write keeps nothing.
    assert!(
        store
            .blob_put_keeping(&in_file("v", "f3"), &refuse, Some(&version))
            .await
            .is_err()
    );
    assert_eq!(store.retained("acct", "c", "v").await.unwrap().len(), 1);

    // A soft delete keeps the blob deleted and takes its live snapshots along.
    store.blob_put(&in_file("d", "g1"), &accept).await.unwrap();
    store
        .retained_put(&Retained {
            kind: RetainedKind::Snapshot,
            id: "s1".into(),
            deleted: None,
            blob: in_file("d", "g0"),
        })
        .await
        .unwrap();
    let soft = Keep {
        kind: Some(RetainedKind::Deleted),
        id: "t1".into(),
        deleted: Some((100, 200)),
    };
    let released = store
        .blob_delete_keeping("acct", "c", "d", &accept, Some(&soft))
        .await
        .unwrap();
    assert!(released.is_empty(), "{released:?}");
    assert!(store.blob("acct", "c", "d").await.unwrap().is_none());
    let kept = store.retained("acct", "c", "d").await.unwrap();
    assert!(
        kept.iter().all(|r| r.deleted == Some((100, 200))),
        "{kept:?}"
    );
    let names = |deleted| {
        let page = Page {
            prefix: "",
            marker: "",
            max: 10,
        };
        store.retained_names("acct", "c", page, &[RetainedKind::Deleted], deleted)
    };
    assert_eq!(names(true).await.unwrap(), ["d"]);
    assert!(names(false).await.unwrap().is_empty());

    // Undelete brings the blob and its snapshot back, unmarked.
    store.undelete("acct", "c", "d").await.unwrap();
    let back = store.blob("acct", "c", "d").await.unwrap().unwrap();
    assert_eq!(back.content, Content::File("g1".into()));
    let kept = store.retained("acct", "c", "d").await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].kind, kept[0].deleted),
        (RetainedKind::Snapshot, None)
    );
    assert!(store.undelete("acct", "c", "never").await.is_err());

    // Deleted twice: once expired, the rows and their files go for good.
    store
        .blob_delete_keeping("acct", "c", "d", &accept, Some(&soft))
        .await
        .unwrap();
    assert!(store.retained_expire(150).await.unwrap().is_empty());
    let mut gone = store.retained_expire(201).await.unwrap();
    gone.sort();
    assert_eq!(gone, ["g0", "g1"]);
    assert!(store.retained("acct", "c", "d").await.unwrap().is_empty());
    let files = store.file_ids().await.unwrap();
    assert!(files.contains("f1") && files.contains("f2") && !files.contains("g1"));
}

async fn a_deleted_container_is_kept_with_its_blobs_until_restored_or_expired<S: MetaStore>(
    store: S,
) {
    let store = with_container(store).await;
    let mut big = blob("big", b"");
    big.content = Content::File("f".into());
    store.blob_put(&big, &accept).await.unwrap();
    store.blob_put(&blob("small", b"s"), &accept).await.unwrap();
    let kept = store
        .container_delete_keeping("acct", "c", &|_| Ok(()), Some(("v1", 10, 20)))
        .await
        .unwrap();
    assert_eq!(kept, Some(Vec::new()));
    assert!(store.container("acct", "c").await.unwrap().is_none());
    assert!(store.blob("acct", "c", "small").await.unwrap().is_none());
    let page = Page {
        prefix: "",
        marker: "",
        max: 10,
    };
    assert!(store.containers("acct", page).await.unwrap().is_empty());
    let deleted = store.containers_deleted("acct", "").await.unwrap();
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        (
            deleted[0].container.name.as_str(),
            deleted[0].version.as_str(),
            deleted[0].deleted
        ),
        ("c", "v1", (10, 20))
    );
    assert!(store.file_ids().await.unwrap().contains("f"));

    // Restored under another name, with its blobs; a second restore finds nothing.
    store
        .container_restore("acct", "c", "v1", "back")
        .await
        .unwrap();
    assert!(store.blob("acct", "back", "small").await.unwrap().is_some());
    assert!(
        store
            .container_restore("acct", "c", "v1", "again")
            .await
            .is_err()
    );
    // A restore onto a live name is refused; expiry takes the kept one away whole.
    store
        .container_delete_keeping("acct", "back", &|_| Ok(()), Some(("v2", 10, 20)))
        .await
        .unwrap();
    store
        .container_create(&Container {
            account: "acct".into(),
            name: "back".into(),
            etag: "\"1\"".into(),
            last_modified: 0,
            metadata: Vec::new(),
            acl: None,
            state: Default::default(),
        })
        .await
        .unwrap();
    let refused = store.container_restore("acct", "back", "v2", "back").await;
    assert_eq!(
        refused.unwrap_err().kind(),
        keyless_core::ErrorKind::AlreadyExists
    );
    assert_eq!(store.retained_expire(21).await.unwrap(), ["f"]);
    assert!(
        store
            .containers_deleted("acct", "")
            .await
            .unwrap()
            .is_empty()
    );
}

// --- the directory, tokens, resources and vaults ---------------------------------

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

async fn tenants_principals_and_credentials_keep_their_keys_and_cases<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    assert_eq!(s.tenant("t.LOCAL").await.unwrap().unwrap().id, t);
    assert_eq!(
        s.tenant(&t.to_string().to_uppercase())
            .await
            .unwrap()
            .unwrap()
            .id,
        t
    );
    assert_eq!(s.tenants().await.unwrap().len(), 1);
    assert_eq!(
        s.tenant_create(&Tenant {
            id: TenantId::new_random(),
            domain: "t.LOCAL".into(),
            display_name: "x".into(),
            created_at: 0
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::AlreadyExists
    );
    let mut u = principal(t, PrincipalKind::User, "u");
    u.user_principal_name = Some("Alice@T.local".into());
    s.principal_create(&u, Some("hash")).await.unwrap();
    let mut sp = principal(t, PrincipalKind::ServicePrincipal, "sp");
    sp.app_id = Some(ClientId::new_random());
    s.principal_create(&sp, None).await.unwrap();
    let mut mi = principal(t, PrincipalKind::ManagedIdentity, "mi");
    mi.resource_id = Some("/subscriptions/S/resourceGroups/G/providers/x/MI".into());
    s.principal_create(&mi, None).await.unwrap();
    assert_eq!(
        s.principal_by_upn("alice@t.LOCAL").await.unwrap().unwrap(),
        u
    );
    assert_eq!(
        s.principal_by_app_id(sp.app_id.unwrap())
            .await
            .unwrap()
            .unwrap(),
        sp
    );
    assert_eq!(
        s.principal_by_resource_id("/SUBSCRIPTIONS/s/resourcegroups/g/providers/x/mi")
            .await
            .unwrap()
            .unwrap(),
        mi
    );
    assert_eq!(s.principal(u.object_id).await.unwrap().unwrap(), u);
    assert_eq!(s.principals(t, None).await.unwrap().len(), 3);
    assert_eq!(
        s.principals(t, Some(PrincipalKind::User)).await.unwrap(),
        vec![u.clone()]
    );
    assert_eq!(
        s.password_hash(u.object_id).await.unwrap().as_deref(),
        Some("hash")
    );
    assert_eq!(s.password_hash(sp.object_id).await.unwrap(), None);
    s.principal_set_enabled(u.object_id, false).await.unwrap();
    assert!(!s.principal(u.object_id).await.unwrap().unwrap().enabled);
    assert_eq!(
        s.principal_set_enabled(ObjectId::new_random(), false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    let g1 = principal(t, PrincipalKind::Group, "g1");
    let g2 = principal(t, PrincipalKind::Group, "g2");
    s.principal_create(&g1, None).await.unwrap();
    s.principal_create(&g2, None).await.unwrap();
    s.group_add_member(g1.object_id, g2.object_id)
        .await
        .unwrap();
    s.group_add_member(g1.object_id, g2.object_id)
        .await
        .unwrap();
    s.group_add_member(g2.object_id, u.object_id).await.unwrap();
    assert_eq!(
        s.group_add_member(g2.object_id, g1.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        s.group_add_member(g1.object_id, g1.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        s.group_add_member(g1.object_id, ObjectId::new_random())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.group_members(g1.object_id).await.unwrap(),
        vec![g2.object_id]
    );
    let mut above = vec![g1.object_id, g2.object_id];
    above.sort_by_key(|o| o.to_string());
    assert_eq!(s.transitive_groups(u.object_id).await.unwrap(), above);
    s.group_remove_member(g2.object_id, u.object_id)
        .await
        .unwrap();
    assert_eq!(
        s.group_remove_member(g2.object_id, u.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    let creds = [
        CredentialKind::Secret {
            digest: "d".into(),
            hint: "h".into(),
        },
        CredentialKind::Certificate {
            thumbprint: "AB".into(),
            public_key: vec![1, 2],
        },
        CredentialKind::Federated {
            issuer: "i".into(),
            subject: "s".into(),
            audiences: vec!["a".into()],
        },
    ];
    for (n, kind) in creds.iter().enumerate() {
        s.credential_add(&Credential {
            id: format!("c{n}"),
            principal_id: sp.object_id,
            display_name: "c".into(),
            kind: kind.clone(),
            starts_at: n as i64,
            expires_at: 9,
        })
        .await
        .unwrap();
    }
    let listed = s.credentials(sp.object_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.kind.clone()).collect::<Vec<_>>(),
        creds.to_vec()
    );
    s.credential_replace_secrets(
        sp.object_id,
        &Credential {
            id: "new".into(),
            principal_id: sp.object_id,
            display_name: "c".into(),
            kind: creds[0].clone(),
            starts_at: 5,
            expires_at: 9,
        },
    )
    .await
    .unwrap();
    let ids: Vec<_> = s
        .credentials(sp.object_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["c1", "c2", "new"]);
    assert_eq!(
        s.credential_replace_secrets(
            ObjectId::new_random(),
            &Credential {
                id: "x".into(),
                principal_id: ObjectId::new_random(),
                display_name: "c".into(),
                kind: creds[0].clone(),
                starts_at: 5,
                expires_at: 9
            }
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::NotFound
    );
    s.directory_role_grant(u.object_id, "b").await.unwrap();
    s.directory_role_grant(u.object_id, "a").await.unwrap();
    s.directory_role_grant(u.object_id, "a").await.unwrap();
    assert_eq!(s.directory_roles(u.object_id).await.unwrap(), ["a", "b"]);
    s.principal_delete(sp.object_id).await.unwrap();
    assert!(s.credentials(sp.object_id).await.unwrap().is_empty());
    assert_eq!(
        s.principal_delete(sp.object_id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

async fn concurrent_memberships_never_close_a_cycle<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    for _ in 0..20 {
        let a = principal(t, PrincipalKind::Group, "a");
        let b = principal(t, PrincipalKind::Group, "b");
        let c = principal(t, PrincipalKind::Group, "c");
        for g in [&a, &b, &c] {
            s.principal_create(g, None).await.unwrap();
        }
        // a ∋ b, b ∋ c, c ∋ a: all three at once; one at least must fail.
        let pairs = [
            (a.object_id, b.object_id),
            (b.object_id, c.object_id),
            (c.object_id, a.object_id),
        ];
        let tasks: Vec<_> = pairs
            .into_iter()
            .map(|(g, m)| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.group_add_member(g, m).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => ok += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict),
            }
        }
        assert_eq!(ok, 2);
    }
}

async fn concurrent_secret_replacements_leave_one_secret<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let sp = principal(t, PrincipalKind::ServicePrincipal, "sp");
    s.principal_create(&sp, None).await.unwrap();
    for round in 0..10 {
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = Arc::clone(&s);
                let id = sp.object_id;
                tokio::spawn(async move {
                    s.credential_replace_secrets(
                        id,
                        &Credential {
                            id: format!("r{round}-{i}"),
                            principal_id: id,
                            display_name: "c".into(),
                            kind: CredentialKind::Secret {
                                digest: "d".into(),
                                hint: "h".into(),
                            },
                            starts_at: 0,
                            expires_at: 9,
                        },
                    )
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(s.credentials(sp.object_id).await.unwrap().len(), 1);
    }
}

async fn signing_keys_refresh_tokens_and_device_codes_round_trip<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let u = principal(t, PrincipalKind::User, "u");
    s.principal_create(&u, None).await.unwrap();
    for (kid, at) in [("k1", 1), ("k2", 2), ("k3", 3)] {
        s.signing_key_add(&SealedSigningKey {
            kid: kid.into(),
            sealed: vec![at as u8],
            created_at: at,
        })
        .await
        .unwrap();
    }
    let kids: Vec<_> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k3", "k2", "k1"]);
    s.signing_keys_prune(2).await.unwrap();
    s.signing_key_reseal("k2", &[9, 9]).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].sealed, vec![9, 9]);

    let grant = RefreshGrant {
        principal_id: u.object_id,
        tenant_id: t,
        client_id: "Client".into(),
        expires_at: 5,
    };
    s.refresh_token_add("r", &grant).await.unwrap();
    assert_eq!(
        s.refresh_token_add("r", &grant).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.refresh_token_take("r", "other").await.unwrap(), None);
    assert_eq!(
        s.refresh_token_take("r", "CLIENT").await.unwrap(),
        Some(grant.clone())
    );
    assert_eq!(s.refresh_token_take("r", "client").await.unwrap(), None);

    let code = DeviceCode {
        digest: "d".into(),
        user_code: "UC".into(),
        tenant_id: t,
        client_id: "c".into(),
        scope: "s".into(),
        expires_at: 10,
        approved_by: None,
    };
    s.device_code_add(&code).await.unwrap();
    assert_eq!(
        s.device_code_by_user_code("UC").await.unwrap(),
        Some(code.clone())
    );
    assert_eq!(s.device_code_poll("d").await.unwrap(), Some(code.clone()));
    assert_eq!(s.device_code_poll("d").await.unwrap(), Some(code.clone()));
    assert_eq!(s.device_code_poll("nope").await.unwrap(), None);
    s.device_code_approve("UC", u.object_id).await.unwrap();
    assert_eq!(
        s.device_code_approve("UC", u.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let approved = s.device_code_poll("d").await.unwrap().unwrap();
    assert_eq!(approved.approved_by, Some(u.object_id));
    assert_eq!(s.device_code_poll("d").await.unwrap(), None);

    let auth = AuthorizationCode {
        digest: "a".into(),
        tenant_id: t,
        principal_id: u.object_id,
        client_id: "c".into(),
        scope: "s".into(),
        redirect_uri: "r".into(),
        code_challenge: "x".into(),
        nonce: Some("n".into()),
        expires_at: 5,
    };
    s.authorization_code_add(&auth).await.unwrap();
    assert_eq!(s.authorization_code_take("a").await.unwrap(), Some(auth));
    assert_eq!(s.authorization_code_take("a").await.unwrap(), None);

    assert_eq!(s.setting("k").await.unwrap(), None);
    s.setting_set("k", "1").await.unwrap();
    s.setting_set("k", "2").await.unwrap();
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("2"));
}

async fn a_token_or_code_is_taken_by_one_caller_only<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let u = principal(t, PrincipalKind::User, "u");
    s.principal_create(&u, None).await.unwrap();
    for round in 0..20 {
        let digest = format!("d{round}");
        s.refresh_token_add(
            &digest,
            &RefreshGrant {
                principal_id: u.object_id,
                tenant_id: t,
                client_id: "c".into(),
                expires_at: 5,
            },
        )
        .await
        .unwrap();
        s.device_code_add(&DeviceCode {
            digest: digest.clone(),
            user_code: format!("U{round}"),
            tenant_id: t,
            client_id: "c".into(),
            scope: "s".into(),
            expires_at: 10,
            approved_by: None,
        })
        .await
        .unwrap();
        s.device_code_approve(&format!("U{round}"), u.object_id)
            .await
            .unwrap();
        s.authorization_code_add(&AuthorizationCode {
            digest: digest.clone(),
            tenant_id: t,
            principal_id: u.object_id,
            client_id: "c".into(),
            scope: "s".into(),
            redirect_uri: "r".into(),
            code_challenge: "x".into(),
            nonce: None,
            expires_at: 5,
        })
        .await
        .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                let digest = digest.clone();
                tokio::spawn(async move {
                    (
                        s.refresh_token_take(&digest, "c").await.unwrap().is_some() as u32,
                        s.device_code_poll(&digest).await.unwrap().is_some() as u32,
                        s.authorization_code_take(&digest).await.unwrap().is_some() as u32,
                    )
                })
            })
            .collect();
        let mut sums = (0, 0, 0);
        for task in tasks {
            let (a, b, c) = task.await.unwrap();
            sums = (sums.0 + a, sums.1 + b, sums.2 + c);
        }
        assert_eq!(sums, (1, 1, 1));
    }
    assert_eq!(s.device_codes_expire(100).await.unwrap(), 0);
}

async fn a_key_is_used_once_until_it_expires_and_by_one_caller<S: MetaStore>(s: S) {
    assert!(s.use_once("app:jti-1", 100, 200).await.unwrap());
    assert!(!s.use_once("app:jti-1", 150, 250).await.unwrap());
    assert!(s.use_once("app:jti-2", 150, 250).await.unwrap());
    // Expired: it may be used again (a new assertion that reuses an old `jti`).
    assert!(s.use_once("app:jti-1", 200, 300).await.unwrap());
    assert!(!s.use_once("app:jti-1", 250, 300).await.unwrap());
    // Eight callers at once: one is first.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.use_once("app:race", 100, 200).await.unwrap() })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        firsts += usize::from(task.await.unwrap());
    }
    assert_eq!(firsts, 1);
    assert_eq!(s.used_once_expire(260).await.unwrap(), 2);
    assert!(!s.use_once("app:jti-1", 260, 400).await.unwrap());
    assert!(s.use_once("app:jti-2", 260, 400).await.unwrap());
}

async fn sign_in_failures_lock_at_the_threshold_within_the_window_and_all_count<S: MetaStore>(
    s: S,
) {
    // Threshold 3 within 60 s locks for 30 s.
    assert!(s.sign_in_failed("name:a", 100, 60, 3, 30).await.unwrap() <= 100);
    assert!(s.sign_in_failed("name:a", 110, 60, 3, 30).await.unwrap() <= 110);
    assert_eq!(
        s.sign_in_failed("name:a", 120, 60, 3, 30).await.unwrap(),
        150
    );
    assert_eq!(s.sign_in_locked_until("name:a").await.unwrap(), 150);
    assert_eq!(s.sign_in_locked_until("name:b").await.unwrap(), 0);
    // Failures a window apart do not add up.
    assert!(s.sign_in_failed("name:c", 100, 60, 3, 30).await.unwrap() <= 100);
    assert!(s.sign_in_failed("name:c", 130, 60, 3, 30).await.unwrap() <= 130);
    assert!(s.sign_in_failed("name:c", 161, 60, 3, 30).await.unwrap() <= 161);
    assert!(s.sign_in_failed("name:c", 170, 60, 3, 30).await.unwrap() <= 170);
    // A right password forgets them.
    s.sign_in_forget("name:c").await.unwrap();
    assert_eq!(s.sign_in_locked_until("name:c").await.unwrap(), 0);
    assert!(s.sign_in_failed("name:c", 171, 60, 3, 30).await.unwrap() <= 171);
    // Forty failures at once, as from several servers: all count.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.sign_in_failed("addr:x", 500, 60, 40, 30).await.unwrap() })
        })
        .collect();
    let mut locked = 0;
    for task in tasks {
        locked += usize::from(task.await.unwrap() == 530);
    }
    assert_eq!(locked, 1, "exactly the fortieth failure locks");
    assert_eq!(s.sign_in_locked_until("addr:x").await.unwrap(), 530);
    // Old failures whose locks ended are forgotten; a live lock stays.
    assert_eq!(s.sign_in_failures_expire(400, 200).await.unwrap(), 2);
    assert_eq!(s.sign_in_locked_until("name:a").await.unwrap(), 0);
    assert_eq!(s.sign_in_locked_until("addr:x").await.unwrap(), 530);
}

async fn resources_groups_and_role_assignments_round_trip<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    s.subscription_create(&Subscription {
        id: "Sub".into(),
        tenant_id: t,
        display_name: "s".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    assert_eq!(s.subscription("sub").await.unwrap().unwrap().id, "Sub");
    assert_eq!(s.subscriptions(t).await.unwrap().len(), 1);
    assert_eq!(s.subscriptions_all().await.unwrap().len(), 1);
    let g = ResourceGroup {
        subscription_id: "Sub".into(),
        name: "My_RG".into(),
        location: "here".into(),
        created_at: 1,
    };
    assert_eq!(s.resource_group_upsert(&g).await.unwrap(), g);
    let again = ResourceGroup {
        name: "my_rg".into(),
        location: "there".into(),
        ..g.clone()
    };
    assert_eq!(s.resource_group_upsert(&again).await.unwrap(), g);
    let other = ResourceGroup {
        name: "myXrg".into(),
        ..g.clone()
    };
    s.resource_group_upsert(&other).await.unwrap();
    assert_eq!(
        s.resource_group("Sub", "MY_rg").await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(s.resource_groups("Sub").await.unwrap().len(), 2);
    let id = "/subscriptions/Sub/resourceGroups/My_RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Id1";
    let r = Resource {
        id: id.into(),
        subscription_id: "Sub".into(),
        resource_group: "My_RG".into(),
        kind: "Microsoft.ManagedIdentity/userAssignedIdentities".into(),
        name: "Id1".into(),
        location: "here".into(),
        body: serde_json::json!({"a": 1}),
        created_at: 2,
    };
    s.resource_put(&r).await.unwrap();
    s.resource_put(&Resource {
        body: serde_json::json!({"a": 2}),
        created_at: 99,
        ..r.clone()
    })
    .await
    .unwrap();
    let got = s.resource(&id.to_uppercase()).await.unwrap().unwrap();
    assert_eq!((got.created_at, got.body), (2, serde_json::json!({"a": 2})));
    assert_eq!(
        s.resources(
            "Sub",
            "my_rg",
            "microsoft.managedidentity/userassignedidentities"
        )
        .await
        .unwrap()
        .len(),
        1
    );
    let mut mi = principal(t, PrincipalKind::ManagedIdentity, "mi");
    mi.resource_id = Some(id.into());
    s.principal_create(&mi, None).await.unwrap();
    let mut mi_other = principal(t, PrincipalKind::ManagedIdentity, "mi2");
    mi_other.resource_id = Some("/subscriptions/Sub/resourceGroups/myXrg/providers/x/y".into());
    s.principal_create(&mi_other, None).await.unwrap();
    let u = principal(t, PrincipalKind::User, "u");
    s.principal_create(&u, None).await.unwrap();
    let role = keyless_core::rbac::RoleDefinition {
        id: "Def1".into(),
        name: "Custom".into(),
        description: String::new(),
        actions: vec![],
        not_actions: vec![],
        data_actions: vec![],
        not_data_actions: vec![],
        assignable_scopes: vec![],
        builtin: false,
    };
    s.role_definition_put(&StoredRoleDefinition {
        tenant_id: t,
        role: role.clone(),
        created_at: 0,
    })
    .await
    .unwrap();
    s.role_definition_put(&StoredRoleDefinition {
        tenant_id: t,
        role: keyless_core::rbac::RoleDefinition {
            name: "Renamed".into(),
            ..role.clone()
        },
        created_at: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        s.role_definitions_all().await.unwrap()[0].role.name,
        "Renamed"
    );
    assert_eq!(
        s.role_definition_put(&StoredRoleDefinition {
            tenant_id: t,
            role: keyless_core::rbac::RoleDefinition {
                id: "Def2".into(),
                name: "renamed".into(),
                ..role.clone()
            },
            created_at: 0
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::AlreadyExists
    );
    let assign = |name: &str, scope: &str, def: &str| StoredRoleAssignment {
        name: name.into(),
        tenant_id: t,
        scope: scope.into(),
        role_definition_id: def.into(),
        principal_id: u.object_id,
        created_at: 0,
    };
    s.role_assignment_create(&assign(
        "a1",
        "/subscriptions/Sub/resourceGroups/My_RG",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign(
        "a2",
        "/subscriptions/Sub/resourceGroups/My_RG/providers/p/q",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign(
        "a3",
        "/subscriptions/Sub/resourceGroups/myXrg/providers/p/q",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign(
        "a4",
        "/subscriptions/Sub/resourceGroups/My_RG2",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign("a5", "/subscriptions/Sub", "def1"))
        .await
        .unwrap();
    assert_eq!(
        s.role_assignment_create(&assign("A1", "/x", "x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.role_assignment("A5").await.unwrap().unwrap().name, "a5");
    assert!(s.resource_group_delete("Sub", "my_rg").await.unwrap());
    assert!(!s.resource_group_delete("Sub", "my_rg").await.unwrap());
    assert!(s.principal(mi.object_id).await.unwrap().is_none());
    assert!(s.principal(mi_other.object_id).await.unwrap().is_some());
    assert!(s.resource(id).await.unwrap().is_none());
    let mut left: Vec<_> = s
        .role_assignments(t)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    left.sort();
    assert_eq!(left, ["a3", "a4", "a5"]);
    assert!(s.role_definition_delete("DEF1").await.unwrap());
    assert!(!s.role_definition_delete("DEF1").await.unwrap());
    assert_eq!(s.role_assignments_all().await.unwrap().len(), 2);
    assert!(s.role_assignment_delete("A3").await.unwrap());
    assert!(!s.role_assignment_delete("A3").await.unwrap());
    assert!(!s.resource_delete("/nope").await.unwrap());

    for (n, sub) in [(1, Some("sub")), (2, None), (3, Some("SUB")), (4, None)] {
        s.activity_add(&ActivityEvent {
            id: format!("e{n}"),
            time: n,
            tenant_id: Some(t),
            subscription_id: sub.map(str::to_owned),
            body: serde_json::json!({"n": n}),
        })
        .await
        .unwrap();
    }
    let ids = |v: Vec<ActivityEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.activity(t, Some("Sub"), 0, 10).await.unwrap()),
        ["e1", "e3"]
    );
    assert_eq!(
        ids(s.activity(t, Some("Sub"), 2, 10).await.unwrap()),
        ["e3"]
    );
    assert_eq!(ids(s.activity(t, None, 0, 1).await.unwrap()), ["e2"]);
    assert_eq!(
        ids(s.activity(t, None, 0, usize::MAX).await.unwrap()),
        ["e2", "e4"]
    );
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

async fn concurrent_resource_updates_lose_nothing_and_a_claim_is_won_once<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    s.subscription_create(&Subscription {
        id: "sub".into(),
        tenant_id: t,
        display_name: "s".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    let id = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/jobs/j";
    assert!(
        s.resource_update(id, &mut |_| true)
            .await
            .unwrap()
            .is_none()
    );
    s.resource_put(&Resource {
        id: id.into(),
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        kind: "Microsoft.MachineLearningServices/workspaces/jobs".into(),
        name: "j".into(),
        location: "here".into(),
        body: serde_json::json!({"count": 0, "runner": "dead"}),
        created_at: 1,
    })
    .await
    .unwrap();
    // Twenty read-modify-writes at once: each sees the one before it.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.resource_update(id, &mut |body| {
                    let n = body["count"].as_i64().unwrap_or(0);
                    body["count"] = (n + 1).into();
                    true
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().unwrap().1);
    }
    let stored = s.resource(id).await.unwrap().unwrap();
    assert_eq!(stored.body["count"], 20);
    // Eight servers claim what the dead one held: one wins, the rest see its claim.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let (after, won) = s
                    .resource_update(id, &mut |body| {
                        if body["runner"] != "dead" {
                            return false;
                        }
                        body["runner"] = format!("server-{i}").into();
                        true
                    })
                    .await
                    .unwrap()
                    .unwrap();
                (
                    won,
                    after.body["runner"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (won, runner) = task.await.unwrap();
        if won {
            winners.push(runner.clone());
        }
        seen.push(runner);
    }
    assert_eq!(winners.len(), 1, "{seen:?}");
    assert!(seen.iter().all(|r| *r == winners[0]), "{seen:?}");
    assert_eq!(s.resource(id).await.unwrap().unwrap().body["count"], 20);
}

async fn resources_written_together_are_written_whole_or_not_at_all<S: MetaStore>(s: S) {
    let t = new_tenant(&s).await;
    s.subscription_create(&Subscription {
        id: "sub".into(),
        tenant_id: t,
        display_name: "s".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    let job = |sub: &str, name: &str| Resource {
        id: format!(
            "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/jobs/{name}"
        ),
        subscription_id: sub.into(),
        resource_group: "rg".into(),
        kind: "Microsoft.MachineLearningServices/workspaces/jobs".into(),
        name: name.into(),
        location: "here".into(),
        body: serde_json::json!({ "name": name }),
        created_at: 1,
    };
    async fn listed<S: MetaStore>(s: &S) -> Vec<String> {
        let mut names: Vec<String> = s
            .resources(
                "sub",
                "rg",
                "Microsoft.MachineLearningServices/workspaces/jobs",
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names
    }
    // A pipeline and its steps: the last names a subscription that does not
    // exist, so nothing of the pipeline is written.
    let broken = [job("sub", "p"), job("sub", "p-a"), job("nosub", "p-b")];
    assert!(s.resources_put(&broken).await.is_err());
    assert!(listed(&s).await.is_empty());
    s.resources_put(&[job("sub", "p"), job("sub", "p-a"), job("sub", "p-b")])
        .await
        .unwrap();
    assert_eq!(listed(&s).await, ["p", "p-a", "p-b"]);
    // Written again together, each is replaced.
    let mut again = job("sub", "P-A");
    again.body = serde_json::json!({ "name": "again" });
    s.resources_put(&[again]).await.unwrap();
    assert_eq!(
        s.resource(&job("sub", "p-a").id)
            .await
            .unwrap()
            .unwrap()
            .body["name"],
        "again"
    );
    let ids = [
        job("sub", "p-a").id,
        job("sub", "missing").id,
        job("sub", "P").id,
    ];
    assert_eq!(s.resources_delete(&ids).await.unwrap(), 2);
    assert_eq!(listed(&s).await, ["p-b"]);
}

async fn secrets_keep_versions_and_deletion_marks<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let v = Vault {
        name: "v1".into(),
        id: "/x".into(),
        tenant_id: t,
        subscription_id: "sub".into(),
        resource_group: "RG".into(),
        location: "l".into(),
        body: serde_json::json!({}),
        created_at: 0,
        deleted_at: None,
    };
    s.vault_create(&v).await.unwrap();
    assert_eq!(
        s.vault_create(&v).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    s.vault_create(&Vault {
        name: "v2".into(),
        resource_group: "other".into(),
        ..v.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.vault("v1").await.unwrap(), Some(v.clone()));
    assert_eq!(s.vaults("sub", None, false).await.unwrap().len(), 2);
    assert_eq!(s.vaults("sub", Some("rg"), false).await.unwrap().len(), 1);
    s.vault_update(
        &Vault {
            deleted_at: Some(5),
            ..v.clone()
        }
        .clone(),
    )
    .await
    .unwrap();
    assert_eq!(s.vaults("sub", None, true).await.unwrap().len(), 1);
    assert_eq!(
        s.vault_update(&Vault {
            name: "nope".into(),
            ..v.clone()
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::NotFound
    );
    s.vault_update(&v).await.unwrap();

    s.secret_add(&secret("v1", "Pass", "a1", 1)).await.unwrap();
    s.secret_add(&secret("v1", "pass", "b2", 2)).await.unwrap();
    s.secret_add(&secret("v1", "zed", "c1", 1)).await.unwrap();
    assert_eq!(
        s.secret_add(&secret("nope", "zed", "c1", 1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.secret("v1", "PASS", None, false)
            .await
            .unwrap()
            .unwrap()
            .version,
        "b2"
    );
    assert_eq!(
        s.secret("v1", "PASS", Some("a1"), false)
            .await
            .unwrap()
            .unwrap()
            .version,
        "a1"
    );
    assert_eq!(
        s.secret("v1", "PASS", Some("zz"), false).await.unwrap(),
        None
    );
    assert_eq!(s.secret("v1", "PASS", None, true).await.unwrap(), None);
    let latest: Vec<_> = s
        .secrets("v1")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(latest, ["b2", "c1"]);
    let versions: Vec<_> = s
        .secret_versions("v1", "pass")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, ["a1", "b2"]);
    let mut updated = secret("v1", "Pass", "a1", 1);
    updated.enabled = false;
    updated.tags = serde_json::json!({"k": "v"});
    s.secret_update(&updated).await.unwrap();
    assert_eq!(
        s.secret("v1", "pass", Some("a1"), false)
            .await
            .unwrap()
            .unwrap(),
        updated
    );

    assert!(s.secret_delete("v1", "PASS", 10, 20).await.unwrap());
    assert!(!s.secret_delete("v1", "pass", 10, 20).await.unwrap());
    assert!(!s.secret_delete("v1", "none", 10, 20).await.unwrap());
    assert_eq!(s.secret("v1", "pass", None, false).await.unwrap(), None);
    assert_eq!(
        s.secret("v1", "pass", None, true)
            .await
            .unwrap()
            .unwrap()
            .version,
        "b2"
    );
    assert_eq!(
        s.secret_add(&secret("v1", "pass", "d", 3))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let del = s.deleted_secret("v1", "Pass").await.unwrap().unwrap();
    assert_eq!(
        (
            del.deleted_at,
            del.scheduled_purge,
            del.latest.version.as_str()
        ),
        (10, 20, "b2")
    );
    assert_eq!(s.deleted_secrets("v1").await.unwrap().len(), 1);
    assert_eq!(s.secrets("v1").await.unwrap().len(), 1);
    assert!(s.secret_recover("v1", "pass").await.unwrap());
    assert!(!s.secret_recover("v1", "pass").await.unwrap());
    assert_eq!(s.secrets("v1").await.unwrap().len(), 2);
    assert!(s.secret_delete("v1", "pass", 10, 20).await.unwrap());
    assert!(!s.secret_purge("v1", "zed").await.unwrap());
    assert!(s.secret_purge("v1", "pass").await.unwrap());
    assert!(!s.secret_purge("v1", "pass").await.unwrap());
    assert_eq!(s.deleted_secret("v1", "pass").await.unwrap(), None);
    s.secret_add(&secret("v1", "pass", "e", 4)).await.unwrap();
    assert_eq!(s.secret_versions("v1", "pass").await.unwrap().len(), 1);

    s.secret_keys_rewrap(&[
        ("v1".into(), "PASS".into(), "e".into(), vec![7]),
        ("v1".into(), "zed".into(), "c1".into(), vec![8]),
    ])
    .await
    .unwrap();
    let mut all: Vec<_> = s
        .all_secret_versions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.wrapped_key)
        .collect();
    all.sort();
    assert_eq!(all, [vec![7], vec![8]]);
    assert!(s.vault_purge("v1").await.unwrap());
    assert!(!s.vault_purge("v1").await.unwrap());
    assert!(s.all_secret_versions().await.unwrap().is_empty());
}

async fn concurrent_secret_writers_keep_the_deletion_mark_consistent<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let v = Vault {
        name: "v".into(),
        id: "/x".into(),
        tenant_id: t,
        subscription_id: "sub".into(),
        resource_group: "RG".into(),
        location: "l".into(),
        body: serde_json::json!({}),
        created_at: 0,
        deleted_at: None,
    };
    s.vault_create(&v).await.unwrap();
    for round in 0..20 {
        let name = format!("s{round}");
        s.secret_add(&secret("v", &name, "v0", 0)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let s = Arc::clone(&s);
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    s.secret_delete("v", &name, 1, 2)
                        .await
                        .map(|d| (d as u32, 0))
                } else {
                    match s
                        .secret_add(&secret("v", &name, &format!("v{}", i + 1), 1))
                        .await
                    {
                        Ok(()) => Ok((0, 1)),
                        Err(e) if e.kind() == ErrorKind::Conflict => Ok((0, 0)),
                        Err(e) => Err(e),
                    }
                }
            }));
        }
        let mut deletes = 0;
        let mut added = 0;
        for task in tasks {
            let (d, a) = task.await.unwrap().unwrap();
            deletes += d;
            added += a;
        }
        assert_eq!(deletes, 1);
        // Every version added is under the mark, none after it.
        let deleted = s.secret("v", &name, None, true).await.unwrap();
        assert!(deleted.is_some());
        let hidden = s.secret_versions("v", &name).await.unwrap();
        assert!(hidden.is_empty());
        assert!(s.secret_recover("v", &name).await.unwrap());
        assert_eq!(
            s.secret_versions("v", &name).await.unwrap().len(),
            1 + added as usize
        );
    }
}

async fn registries_keep_blobs_manifests_tags_and_uploads<S: MetaStore>(s: S) {
    let t = new_tenant(&s).await;
    let r = Registry {
        name: "acr1".into(),
        id: "/x".into(),
        tenant_id: t,
        subscription_id: "sub".into(),
        resource_group: "RG".into(),
        location: "l".into(),
        body: serde_json::json!({"properties": {"adminUserEnabled": false}}),
        password1: vec![1, 2],
        password2: vec![3],
        created_at: 7,
    };
    s.registry_create(&r).await.unwrap();
    assert_eq!(
        s.registry_create(&r).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.registry("acr1").await.unwrap(), Some(r.clone()));
    assert_eq!(s.registries("sub", Some("rg")).await.unwrap().len(), 1);
    assert!(s.registries("sub", Some("other")).await.unwrap().is_empty());
    let changed = Registry {
        password1: vec![9],
        body: serde_json::json!({"properties": {"adminUserEnabled": true}}),
        ..r.clone()
    };
    s.registry_update(&changed).await.unwrap();
    assert_eq!(s.registry("acr1").await.unwrap(), Some(changed));

    // A digest is stored once per registry: a second push keeps the first file.
    let blob = RegistryBlob {
        registry: "acr1".into(),
        digest: "sha256:aa".into(),
        file_id: "f1".into(),
        size: 10,
        created_at: 1,
    };
    assert_eq!(s.registry_blob_add(&blob, "app").await.unwrap(), blob);
    let again = RegistryBlob {
        file_id: "f2".into(),
        ..blob.clone()
    };
    assert_eq!(s.registry_blob_add(&again, "other").await.unwrap(), blob);
    assert!(s.file_ids().await.unwrap().contains("f1"));
    // A repository sees a blob only once it was pushed or mounted there.
    assert!(
        s.registry_repository_blob("acr1", "third", "sha256:aa")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.registry_blob_link("acr1", "third", "sha256:aa")
            .await
            .unwrap()
    );
    assert!(
        !s.registry_blob_link("acr1", "third", "sha256:bb")
            .await
            .unwrap()
    );
    assert_eq!(
        s.registry_repository_blob("acr1", "third", "sha256:aa")
            .await
            .unwrap(),
        Some(blob.clone())
    );
    assert!(
        s.registry_blob_unlink("acr1", "third", "sha256:aa")
            .await
            .unwrap()
    );
    assert!(
        !s.registry_blob_unlink("acr1", "third", "sha256:aa")
            .await
            .unwrap()
    );
    assert!(
        s.registry_blob("acr1", "sha256:aa")
            .await
            .unwrap()
            .is_some()
    );

    let m = Manifest {
        registry: "acr1".into(),
        repository: "app".into(),
        digest: "sha256:m1".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body: b"{}".to_vec(),
        created_at: 2,
    };
    s.registry_manifest_put(&m, Some("v1")).await.unwrap();
    s.registry_manifest_put(&m, Some("latest")).await.unwrap();
    let m2 = Manifest {
        digest: "sha256:m2".into(),
        created_at: 3,
        ..m.clone()
    };
    s.registry_manifest_put(&m2, Some("latest")).await.unwrap();
    let tags = s.registry_tags("acr1", "app").await.unwrap();
    let named: Vec<_> = tags
        .iter()
        .map(|t| (t.name.as_str(), t.digest.as_str()))
        .collect();
    assert_eq!(named, [("latest", "sha256:m2"), ("v1", "sha256:m1")]);
    assert_eq!(
        s.registry_manifest("acr1", "app", "sha256:m1")
            .await
            .unwrap(),
        Some(m.clone())
    );
    assert!(
        s.registry_manifest("acr1", "other", "sha256:m1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.registry_manifests("acr1", "app").await.unwrap(),
        [m.clone(), m2.clone()]
    );
    assert_eq!(s.registry_repositories("acr1").await.unwrap(), ["app"]);
    // Deleting a manifest takes its tags; deleting a tag leaves the manifest.
    assert!(
        s.registry_manifest_delete("acr1", "app", "sha256:m1")
            .await
            .unwrap()
    );
    assert!(s.registry_tag("acr1", "app", "v1").await.unwrap().is_none());
    assert!(
        s.registry_tag_delete("acr1", "app", "latest")
            .await
            .unwrap()
    );
    assert!(
        !s.registry_tag_delete("acr1", "app", "latest")
            .await
            .unwrap()
    );
    assert!(
        s.registry_manifest("acr1", "app", "sha256:m2")
            .await
            .unwrap()
            .is_some()
    );

    // An upload advances only from the size its writer saw.
    let u = Upload {
        id: "u1".into(),
        registry: "acr1".into(),
        repository: "app".into(),
        file_id: String::new(),
        size: 0,
        created_at: 5,
    };
    s.registry_upload_create(&u).await.unwrap();
    assert!(
        s.registry_upload_advance("acr1", "u1", 0, "p1", 4)
            .await
            .unwrap()
    );
    assert!(
        !s.registry_upload_advance("acr1", "u1", 0, "p2", 4)
            .await
            .unwrap()
    );
    assert!(s.registry_upload("acr2", "u1").await.unwrap().is_none());
    assert_eq!(
        s.registry_upload("acr1", "u1")
            .await
            .unwrap()
            .map(|u| u.size),
        Some(4)
    );
    assert!(s.file_ids().await.unwrap().contains("p1"));
    s.registry_upload_create(&Upload {
        id: "u2".into(),
        file_id: "p3".into(),
        created_at: 100,
        ..u.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.registry_uploads_expire(50).await.unwrap(), ["p1"]);
    assert!(s.registry_upload("acr1", "u1").await.unwrap().is_none());

    // Deleting the registry gives back every file it held.
    assert!(s.registry_repository_delete("acr1", "app").await.unwrap());
    assert!(s.registry_repositories("acr1").await.unwrap().is_empty());
    let mut files = s.registry_delete("acr1").await.unwrap().unwrap();
    files.sort();
    assert_eq!(files, ["f1", "p3"]);
    assert!(s.registry("acr1").await.unwrap().is_none());
    assert!(s.registry_delete("acr1").await.unwrap().is_none());
    assert!(!s.file_ids().await.unwrap().contains("f1"));
}
