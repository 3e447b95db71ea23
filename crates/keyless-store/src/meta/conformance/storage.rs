//! Blobs and containers, and the states kept of them.

use super::*;

pub(super) async fn a_write_broken_by_a_constraint_fails_alone<S: MetaStore>(store: S) {
    // A write the database refuses for a constraint (the container is gone)
    // must leave nothing of its own and take none of the writes sharing its
    // batch with it: new blobs (whose row SQLite writes without a savepoint)
    // and overwrites (inside one) alike.
    let store = Arc::new(with_container(store).await);
    for i in (1..48).step_by(4) {
        store
            .blob_put(&blob(&format!("b{i}"), b"old"), &accept)
            .await
            .unwrap();
    }
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
            let written = store
                .blob("acct", "c", &format!("b{i}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                written.content,
                Content::Inline(Bytes::from_static(b"bytes"))
            );
        }
    }
    let mut expected: Vec<String> = (0..48)
        .filter(|i| i % 4 != 0)
        .map(|i| format!("b{i}"))
        .collect();
    expected.sort();
    assert_eq!(names_in_c(store.as_ref()).await, expected);
}

pub(super) async fn an_overwrite_keeps_the_creation_time_and_releases_the_old_file<S: MetaStore>(
    store: S,
) {
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

pub(super) async fn a_put_drops_the_staged_blocks_of_its_name_and_releases_their_files<
    S: MetaStore,
>(
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

pub(super) async fn concurrent_writes_share_commits_and_a_failure_stays_alone<S: MetaStore>(
    store: S,
) {
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

pub(super) async fn cached_reads_follow_every_write<S: MetaStore>(store: S) {
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

pub(super) async fn inline_blobs_hold_no_file_and_listings_skip_their_bytes<S: MetaStore>(
    store: S,
) {
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

pub(super) async fn prefixes_are_case_sensitive<S: MetaStore>(store: S) {
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

pub(super) async fn directories_rename_and_delete_with_everything_under_them<
    S: MetaStore + Clone,
>(
    store: S,
) {
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

pub(super) async fn blob_state_round_trips_and_an_overwrite_keeps_the_lease<S: MetaStore>(
    store: S,
) {
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

pub(super) async fn container_writes_are_judged_on_the_current_container<S: MetaStore>(store: S) {
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

pub(super) async fn kept_states_survive_overwrites_and_deletes_until_they_expire<S: MetaStore>(
    store: S,
) {
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

pub(super) async fn a_deleted_container_is_kept_with_its_blobs_until_restored_or_expired<
    S: MetaStore,
>(
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
