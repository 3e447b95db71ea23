use std::sync::Arc;

use sqlx::Executor;

use super::*;
use crate::meta::TokenStore;
use crate::meta::conformance::{self, accept, blob, names_in_c};
use crate::storage::StorageStore;

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
    assert_eq!(names_in_c(&reopened).await.len(), 64);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_both_connections_interleave_and_each_commits_or_fails_alone() {
    // Put Blob runs on the writer's direct connection, the settings here on sqlx's:
    // a write for one commits the batch open on the other first.
    let dir = tempfile::tempdir().unwrap();
    let shared = Arc::new(with_container(&dir).await);
    let refuse = |_: Option<&crate::storage::Blob>| -> Result<(), Error> {
        Err(Error::new(ErrorKind::PreconditionFailed, "refused"))
    };
    let mut tasks = Vec::new();
    for i in 0..96 {
        let store = Arc::clone(&shared);
        tasks.push(tokio::spawn(async move {
            match i % 3 {
                0 => store
                    .blob_put(&blob(&format!("b{i}"), b"bytes"), &accept)
                    .await
                    .map(drop),
                1 => {
                    let mut write = store.writer.begin().await?;
                    let result = write
                        .execute(
                            sqlx::query("INSERT INTO settings (key, value) VALUES (?, 'v')")
                                .bind(format!("k{i}")),
                        )
                        .await
                        .map(drop)
                        .map_err(db_error);
                    write.finish(result).await
                }
                _ => store
                    .blob_put(&blob(&format!("refused{i}"), b"bytes"), &refuse)
                    .await
                    .map(drop),
            }
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i % 3 == 2 {
            assert_eq!(result.unwrap_err().kind(), ErrorKind::PreconditionFailed);
        } else {
            result.unwrap();
        }
    }
    shared.close().await;
    drop(shared);
    let reopened = store(&dir).await;
    let names = names_in_c(&reopened).await;
    let mut expected: Vec<String> = (0..96).step_by(3).map(|i| format!("b{i}")).collect();
    expected.sort();
    assert_eq!(names, expected);
    for i in (1..96).step_by(3) {
        assert_eq!(
            reopened.setting(&format!("k{i}")).await.unwrap().as_deref(),
            Some("v")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_write_waits_for_a_write_lock_held_outside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_container(&dir).await);
    // A pool connection's write transaction holds the file's write lock.
    let mut outside = store.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    outside
        .execute("INSERT INTO settings (key, value) VALUES ('outside', 'v')")
        .await
        .unwrap();
    let put = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.blob_put(&blob("waits", b"x"), &accept).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    outside.commit().await.unwrap();
    put.await.unwrap().unwrap();
    assert!(store.blob("acct", "c", "waits").await.unwrap().is_some());
    assert_eq!(
        store.setting("outside").await.unwrap().as_deref(),
        Some("v")
    );
}

#[tokio::test]
async fn closing_the_store_leaves_everything_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
    store.blob_put(&blob("kept", b"x"), &accept).await.unwrap();
    store.close().await;
    let wal = std::fs::metadata(dir.path().join("meta.sqlite-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL still holds frames after close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_write_given_up_while_waiting_for_the_lock_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = with_container(&dir).await;
    let mut outside = store.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    outside
        .execute("INSERT INTO settings (key, value) VALUES ('outside', 'v')")
        .await
        .unwrap();
    // Its request goes away while its BEGIN waits for the lock on a blocking thread.
    let given_up = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        store.blob_put(&blob("given-up", b"x"), &accept),
    )
    .await;
    assert!(given_up.is_err(), "the write did not wait for the lock");
    outside.commit().await.unwrap();
    store.blob_put(&blob("after", b"x"), &accept).await.unwrap();
    assert_eq!(names_in_c(&store).await, ["after"]);
    store.close().await;
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("meta.sqlite"))
        .await
        .unwrap();
    assert_eq!(names_in_c(&reopened).await, ["after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_and_reused_while_blobs_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(with_container(&dir).await);
    // 4,000 blobs of 4 KiB, 64 at a time: each takes at least one page of its
    // own, so the WAL would grow past 16 MiB if nothing checkpointed it.
    static BODY: [u8; 4096] = [7; 4096];
    let mut tasks = Vec::new();
    for worker in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..4000 / 64 + 1 {
                let name = format!("w{worker}-{i}");
                store.blob_put(&blob(&name, &BODY), &accept).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let length = |suffix: &str| {
        std::fs::metadata(dir.path().join(format!("meta.sqlite{suffix}"))).map_or(0, |m| m.len())
    };
    // At most twice the 1,000 frames of SQLite's `wal_autocheckpoint`, 4 KiB
    // pages with a 24-byte header each.
    let frame = 24 + 4096;
    assert!(
        length("-wal") < 2 * 1000 * frame,
        "the WAL grew to {} bytes",
        length("-wal")
    );
    // The pages are in the database file before any shutdown copies them there.
    assert!(
        length("") > 4000 * 4096,
        "the database file holds {} bytes",
        length("")
    );
    store.close().await;
    drop(store);
    let reopened = SqliteStore::open(&dir.path().join("meta.sqlite"))
        .await
        .unwrap();
    for worker in 0..64 {
        for i in 0..4000 / 64 + 1 {
            let name = format!("w{worker}-{i}");
            let found = reopened.blob("acct", "c", &name).await.unwrap();
            assert_eq!(found.map(|b| b.size), Some(4096), "{name}");
        }
    }
}
