//! Races between the PostgreSQL store's writers, made to happen: each test holds
//! a lock from a connection of its own (or sleeps in a precondition) so that two
//! operations interleave at the point where they could go wrong, then checks that
//! no file a row names is released, nothing deadlocks, and the loser's error says
//! what happened. Run when `KEYLESS_TEST_POSTGRES_URL` names a server.

use std::sync::Arc;
use std::time::Duration;

use keyless_core::Error;

use crate::PostgresStore;
use crate::meta::{DirectoryStore, Tenant};
use crate::storage::{
    Blob, Block, Container, Content, Keep, RetainedKind, StorageAccount, StorageStore,
};

async fn store() -> Option<Arc<PostgresStore>> {
    let store = crate::meta::conformance::postgres().await?;
    let tenant = keyless_core::TenantId::new_random();
    store
        .tenant_create(&Tenant {
            id: tenant,
            domain: "t.local".into(),
            display_name: "t".into(),
            created_at: 0,
        })
        .await
        .unwrap();
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
            hns: true,
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
    Some(Arc::new(store))
}

fn blob(name: &str, file: &str, dir: bool) -> Blob {
    Blob {
        account: "acct".into(),
        container: "c".into(),
        name: name.into(),
        etag: "\"e\"".into(),
        created_at: 1,
        last_modified: 1,
        size: 1,
        content: if file.is_empty() {
            Content::Inline(bytes::Bytes::new())
        } else {
            Content::File(file.into())
        },
        properties: Default::default(),
        metadata: Vec::new(),
        committed_blocks: Vec::new(),
        is_dir: dir,
        acl: None,
        state: Default::default(),
    }
}

fn slow(_: Option<&Blob>) -> Result<(), Error> {
    std::thread::sleep(Duration::from_millis(700));
    Ok(())
}

/// A put that read `raw/x` before a rename of `raw` moved it must not release
/// the file the moved row still names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_racing_a_directory_rename() {
    let Some(s) = store().await else { return };
    s.blob_put(&blob("raw", "", true), &|_| Ok(()))
        .await
        .unwrap();
    s.blob_put(&blob("raw/x", "f1", false), &|_| Ok(()))
        .await
        .unwrap();
    s.block_put(&Block {
        account: "acct".into(),
        container: "c".into(),
        blob: "raw/x".into(),
        block_id: "b".into(),
        size: 1,
        file_id: "blk".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    // Holds the staged block: the put waits there, after it read `raw/x`.
    let mut hold = s.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM blocks WHERE blob = 'raw/x' FOR UPDATE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let put = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.blob_put(&blob("raw/x", "f2", false), &|_| Ok(())).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rename = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.path_rename("acct", "c", "raw", "cooked", &|_| Ok(()))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.commit().await.unwrap();
    let released = put.await.unwrap().unwrap();
    let renamed = rename.await.unwrap();
    let ids = s.file_ids().await.unwrap();
    eprintln!("released {released:?}, rename {renamed:?}, files {ids:?}");
    assert!(
        released.iter().all(|f| !ids.contains(f)),
        "released a file a row names: {released:?} {ids:?}"
    );
}

/// An undelete that read the deleted blob before expiry removed it must not
/// bring back a blob whose file expiry released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undelete_racing_expiry() {
    let Some(s) = store().await else { return };
    s.blob_put(&blob("d", "g1", false), &|_| Ok(()))
        .await
        .unwrap();
    let soft = Keep {
        kind: Some(RetainedKind::Deleted),
        id: "t1".into(),
        deleted: Some((100, 200)),
    };
    s.blob_delete_keeping("acct", "c", "d", &|_| Ok(()), Some(&soft))
        .await
        .unwrap();
    // Holds the container: the undelete's insert (its foreign key) waits.
    let mut hold = s.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM containers WHERE account = 'acct' AND name = 'c' FOR UPDATE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let undelete = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.undelete("acct", "c", "d").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expire = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.retained_expire(201).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.commit().await.unwrap();
    let undeleted = undelete.await.unwrap();
    let expired = expire.await.unwrap().unwrap();
    let back = s.blob("acct", "c", "d").await.unwrap();
    eprintln!(
        "undelete {undeleted:?}, expired {expired:?}, blob {:?}",
        back.as_ref().map(|b| &b.content)
    );
    if let Some(b) = back {
        assert!(
            !expired
                .iter()
                .any(|f| Some(f.as_str()) == b.content.file_id()),
            "the blob came back with a released file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn undelete_racing_expiry_after_reading() {
    let Some(s) = store().await else { return };
    s.blob_put(&blob("d", "g1", false), &|_| Ok(()))
        .await
        .unwrap();
    let soft = Keep {
        kind: Some(RetainedKind::Deleted),
        id: "t1".into(),
        deleted: Some((100, 200)),
    };
    s.blob_delete_keeping("acct", "c", "d", &|_| Ok(()), Some(&soft))
        .await
        .unwrap();
    // An uncommitted row of the name: the undelete's insert waits on the key.
    let mut hold = s.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO blobs (account, container, name, etag, created_at, last_modified, size, file_id, metadata, committed_blocks)
        VALUES ('acct', 'c', 'd', 'e', 0, 0, 0, '', '[]', '[]')").execute(&mut *hold).await.unwrap();
    let undelete = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.undelete("acct", "c", "d").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expire = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.retained_expire(201).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    hold.rollback().await.unwrap();
    let undeleted = undelete.await.unwrap();
    let expired = expire.await.unwrap().unwrap();
    let back = s.blob("acct", "c", "d").await.unwrap();
    eprintln!(
        "undelete {undeleted:?}, expired {expired:?}, blob {:?}",
        back.as_ref().map(|b| &b.content)
    );
    if let Some(b) = back {
        assert!(
            !expired
                .iter()
                .any(|f| Some(f.as_str()) == b.content.file_id()),
            "the blob came back with a released file"
        );
    }
}

/// Committing a block list into a container while it is deleted: the delete
/// wins, the commit is `NotFound`, nobody deadlocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn put_block_list_racing_a_container_delete() {
    let Some(s) = store().await else { return };
    s.block_put(&Block {
        account: "acct".into(),
        container: "c".into(),
        blob: "n".into(),
        block_id: "b".into(),
        size: 1,
        file_id: "blk".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    let delete = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.container_delete("acct", "c", &|_| {
                std::thread::sleep(Duration::from_millis(700));
                Ok(())
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let put = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.blob_put(&blob("n", "f", false), &|_| Ok(())).await })
    };
    let deleted = delete.await.unwrap();
    let put = put.await.unwrap();
    eprintln!("delete {deleted:?}, put {put:?}");
    assert_eq!(deleted.unwrap().unwrap(), ["blk"]);
    assert_eq!(put.unwrap_err().kind(), keyless_core::ErrorKind::NotFound);
}

/// Overwriting a versioned blob while its container is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versioned_overwrite_racing_a_container_delete() {
    let Some(s) = store().await else { return };
    let mut v1 = blob("v", "f1", false);
    v1.state.version_id = Some("1".into());
    s.blob_put(&v1, &|_| Ok(())).await.unwrap();
    let put = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            let keep = Keep {
                kind: None,
                id: "x".into(),
                deleted: None,
            };
            s.blob_put_keeping(&blob("v", "f2", false), &slow, Some(&keep))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let delete = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.container_delete("acct", "c", &|_| Ok(())).await })
    };
    let put = put.await.unwrap();
    let deleted = delete.await.unwrap();
    eprintln!("put {put:?}, delete {deleted:?}");
    let mut released = put.unwrap_or_default();
    released.extend(deleted.unwrap().unwrap_or_default());
    released.sort();
    assert_eq!(released, ["f1", "f2"]);
}
