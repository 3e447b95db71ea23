use std::sync::Arc;

use sqlx::Executor;

use super::*;
use crate::meta::TokenStore;
use crate::meta::conformance::{self, accept, blob};
use crate::storage::{Page, StorageStore};

async fn store(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("meta.sqlite"))
        .await
        .unwrap()
}

/// A store with account `acct` and container `c`.
async fn with_container(dir: &tempfile::TempDir) -> SqliteStore {
    conformance::with_container(store(dir).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_are_durable_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_container(&dir).await);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .blob_put(&blob(&format!("b{i}"), b"bytes"), &accept)
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
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
    assert_eq!(listed.len(), 64);
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
