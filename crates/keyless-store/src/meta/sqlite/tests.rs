use std::sync::Arc;

use bytes::Bytes;
use sqlx::Executor;

use super::*;
use crate::meta::{DirectoryStore, Tenant, TokenStore};
use crate::storage::{
    Blob, Container, Content, Page, Precondition, Retained, StorageAccount, StorageStore,
};
use keyless_core::TenantId;

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("meta.sqlite"))
        .await
        .unwrap()
}

/// A new tenant `t.local`.
async fn tenant(store: &SqliteStore) -> TenantId {
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
async fn with_container(dir: &tempfile::TempDir) -> SqliteStore {
    let store = store(dir).await;
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

fn blob(name: &str, bytes: &'static [u8]) -> Blob {
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

fn accept(_: Option<&Blob>) -> Result<(), Error> {
    Ok(())
}

fn refuse(_: Option<&Blob>) -> Result<(), Error> {
    Err(Error::invalid("condition not met"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_broken_by_a_constraint_fails_alone() {
    // Put Blob opens its savepoint in the same round trip as its statements; a
    // constraint it breaks there (the container is gone) must not take the
    // writes sharing its batch down with it.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_container(&dir).await);
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

#[tokio::test]
async fn an_overwrite_keeps_the_creation_time_and_releases_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

#[tokio::test]
async fn new_files_open_and_migrate_every_time() {
    // Opening a new file used to race pool connections for the WAL switch.
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        store.setting_set("k", "v").await.unwrap();
        assert_eq!(store.setting("k").await.unwrap().as_deref(), Some("v"));
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_a_failure_stays_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_container(&dir).await);
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
    // Everything acknowledged is on disk: a new process sees it.
    store.close().await;
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("meta.sqlite"))
        .await
        .unwrap();
    let listed = reopened
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

#[tokio::test]
async fn an_interrupted_write_rolls_back_and_later_writes_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
    {
        // A write whose task stops midway (its future dropped).
        let mut write = store.writer.begin().await.unwrap();
        write
            .execute("INSERT INTO settings (key, value) VALUES ('half', 'done')")
            .await
            .unwrap();
    }
    store.blob_put(&blob("after", b"x"), &accept).await.unwrap();
    assert!(store.blob("acct", "c", "after").await.unwrap().is_some());
    assert_eq!(store.setting("half").await.unwrap(), None);
}

#[tokio::test]
async fn cached_reads_follow_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

#[tokio::test]
async fn inline_blobs_hold_no_file_and_listings_skip_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

#[tokio::test]
async fn prefixes_are_case_sensitive() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

#[tokio::test]
async fn directories_rename_and_delete_with_everything_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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
    let names = |store: &SqliteStore| {
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

#[tokio::test]
async fn device_codes_nobody_approved_are_deleted_once_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
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

#[tokio::test]
async fn a_credential_is_removed_alone_and_only_from_its_principal() {
    use crate::meta::{Credential, CredentialKind};
    use keyless_core::{ClientId, ObjectId, Principal, PrincipalKind};
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
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

#[tokio::test]
async fn an_authorization_code_is_taken_once_and_expires() {
    use crate::meta::AuthorizationCode;
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir).await;
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

#[tokio::test]
async fn blob_state_round_trips_and_an_overwrite_keeps_the_lease() {
    use crate::storage::{BlobKind, Lease};
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

    // A fresh block blob stores no state at all.
    store.blob_put(&blob("plain", b"p"), &accept).await.unwrap();
    let raw: (Option<String>,) = sqlx::query_as("SELECT state FROM blobs WHERE name = 'plain'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(raw.0, None);
}

#[tokio::test]
async fn container_writes_are_judged_on_the_current_container() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

#[tokio::test]
async fn kept_states_survive_overwrites_and_deletes_until_they_expire() {
    use crate::storage::{Keep, RetainedKind};
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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

#[tokio::test]
async fn a_deleted_container_is_kept_with_its_blobs_until_restored_or_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
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
