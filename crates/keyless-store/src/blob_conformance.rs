//! One test per behaviour of [`BlobBackend`], run against every backend: local
//! files, and object stores (in memory and a local directory always; an
//! S3-compatible server and Azurite when `KEYLESS_TEST_S3_URL` and
//! `KEYLESS_TEST_AZURE_BLOB_URL` name them, with credentials in the environment
//! as `object_store` reads them).

use std::collections::HashSet;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest, Md5};

use keyless_core::ErrorKind;

use crate::blob::{BlobBackend, ByteStream, Extended, LocalFiles};
use crate::objects::ObjectStoreBlobs;

fn body(parts: &[&[u8]]) -> ByteStream {
    let items: Vec<io::Result<Bytes>> = parts
        .iter()
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    Box::pin(futures_util::stream::iter(items))
}

/// A body that breaks after its first chunk, as a dropped connection does.
fn broken_body() -> ByteStream {
    let items: Vec<io::Result<Bytes>> = vec![
        Ok(Bytes::from_static(b"half a body")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ];
    Box::pin(futures_util::stream::iter(items))
}

async fn read_all(b: &dyn BlobBackend, id: &str, offset: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = b.read(id, offset, len).await.unwrap();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

async fn writes_read_back_whole_and_in_ranges(b: &dyn BlobBackend) {
    let w = b.write(body(&[b"hello ", b"world"]), 100).await.unwrap();
    assert_eq!(w.size, 11);
    assert_eq!(w.md5, <[u8; 16]>::from(Md5::digest(b"hello world")));
    assert_eq!(read_all(b, &w.file_id, 0, 11).await, b"hello world");
    assert_eq!(read_all(b, &w.file_id, 6, 5).await, b"world");
    assert_eq!(read_all(b, &w.file_id, 3, 0).await, b"");
    // Large enough to take several parts of a multipart upload.
    let big: Vec<u8> = (0..20 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<&[u8]> = big.chunks(1 << 20).collect();
    let w = b.write(body(&chunks), u64::MAX).await.unwrap();
    assert_eq!(w.size, big.len() as u64);
    assert_eq!(w.md5, <[u8; 16]>::from(Md5::digest(&big)));
    let tail = read_all(b, &w.file_id, 9_000_000, 3_000_000).await;
    assert!(tail == big[9_000_000..12_000_000], "a range across parts");
    // Not asked for, the digest is zero; the bytes are the same.
    let plain = b
        .write_digesting(body(&[b"hello ", b"world"]), 100, false)
        .await
        .unwrap();
    assert_eq!((plain.size, plain.md5), (11, [0; 16]));
    assert_eq!(read_all(b, &plain.file_id, 0, 11).await, b"hello world");
    b.remove(&[w.file_id, plain.file_id]).await;
}

async fn a_refused_or_broken_write_leaves_nothing(b: &dyn BlobBackend) {
    let keep: HashSet<String> = HashSet::new();
    // Start from a store with nothing unreferenced in it.
    let _ = b.sweep(&keep).await.unwrap();
    let err = b.write(body(&[b"0123", b"456789"]), 5).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = b.write(broken_body(), 100).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        b.sweep(&keep).await.unwrap(),
        0,
        "no object, no staging left"
    );
}

async fn compositions_are_new_files_of_old_parts(b: &dyn BlobBackend) {
    let a = b.write(body(&[b"hello world"]), 100).await.unwrap();
    let c = b.write(body(&[b"!"]), 100).await.unwrap();
    let d = b
        .compose(
            &[
                (a.file_id.clone(), 6, 5),
                (c.file_id.clone(), 0, 1),
                (a.file_id.clone(), 0, 5),
            ],
            true,
        )
        .await
        .unwrap();
    assert_ne!(d.file_id, a.file_id);
    assert_eq!(d.size, 11);
    assert_eq!(d.md5, <[u8; 16]>::from(Md5::digest(b"world!hello")));
    // Without its MD5, the same bytes; the digest comes back zero.
    let e = b
        .compose(
            &[(c.file_id.clone(), 0, 1), (a.file_id.clone(), 0, 5)],
            false,
        )
        .await
        .unwrap();
    assert_eq!((e.size, e.md5), (6, [0; 16]));
    assert_eq!(read_all(b, &e.file_id, 0, 6).await, b"!hello");
    assert_eq!(read_all(b, &d.file_id, 0, 11).await, b"world!hello");
    // The parts are untouched and independent of the composition.
    b.remove(std::slice::from_ref(&a.file_id)).await;
    assert_eq!(read_all(b, &d.file_id, 0, 11).await, b"world!hello");
    assert!(b.read(&a.file_id, 0, 1).await.is_err(), "a removed file");
    // A composition of a missing part fails, and leaves nothing named.
    assert!(b.compose(&[(a.file_id.clone(), 0, 5)], true).await.is_err());
    b.remove(&[c.file_id, d.file_id, e.file_id]).await;
}

/// Whole files from their start, as a block list composes its staged blocks:
/// the composition stands on its own once the parts are gone, reads across the
/// parts' boundaries, is never extended in place, can itself be composed, and
/// is swept like any file.
async fn compositions_of_whole_files_outlive_their_parts(b: &dyn BlobBackend) {
    let blocks = [
        b.write(body(&[b"alpha-"]), 100).await.unwrap(),
        b.write(body(&[b"beta-"]), 100).await.unwrap(),
        b.write(body(&[b"gamma"]), 100).await.unwrap(),
    ];
    let parts: Vec<_> = blocks
        .iter()
        .map(|w| (w.file_id.clone(), 0, w.size))
        .collect();
    let whole = b.compose(&parts, true).await.unwrap();
    assert_eq!(whole.size, 16);
    assert_eq!(
        whole.md5,
        <[u8; 16]>::from(Md5::digest(b"alpha-beta-gamma"))
    );
    // The staged blocks are removed once their list commits.
    let ids: Vec<String> = blocks.iter().map(|w| w.file_id.clone()).collect();
    b.remove(&ids).await;
    assert_eq!(
        read_all(b, &whole.file_id, 0, 16).await,
        b"alpha-beta-gamma"
    );
    assert_eq!(read_all(b, &whole.file_id, 4, 9).await, b"a-beta-ga");
    assert_eq!(read_all(b, &whole.file_id, 11, 5).await, b"gamma");
    // A prefix of a part.
    let short = b.write(body(&[b"0123456789"]), 100).await.unwrap();
    let prefix = b
        .compose(&[(short.file_id.clone(), 0, 4)], false)
        .await
        .unwrap();
    assert_eq!(read_all(b, &prefix.file_id, 0, 4).await, b"0123");
    // Appending to the composition composes anew; appending to a file it was
    // made from does not change it.
    match b
        .extend(&whole.file_id, 16, body(&[b"!"]), 100)
        .await
        .unwrap()
    {
        Extended::Declined(mut back) => assert_eq!(back.next().await.unwrap().unwrap(), &b"!"[..]),
        Extended::Appended(_) => panic!("a composition was extended in place"),
    }
    if let Extended::Appended(_) = b
        .extend(&short.file_id, 10, body(&[b"ab"]), 100)
        .await
        .unwrap()
    {
        assert_eq!(read_all(b, &prefix.file_id, 0, 4).await, b"0123");
    }
    let again = b
        .compose(
            &[
                (whole.file_id.clone(), 0, 16),
                (prefix.file_id.clone(), 2, 2),
            ],
            false,
        )
        .await
        .unwrap();
    assert_eq!(
        read_all(b, &again.file_id, 0, 18).await,
        b"alpha-beta-gamma23"
    );
    let keep: HashSet<String> = [again.file_id.clone()].into();
    assert_eq!(
        b.sweep(&keep).await.unwrap(),
        3,
        "the short file and two compositions"
    );
    assert_eq!(read_all(b, &again.file_id, 10, 8).await, b"-gamma23");
    assert!(b.read(&whole.file_id, 0, 1).await.is_err());
    b.remove(&[again.file_id]).await;
}

async fn zeros_read_as_zeros(b: &dyn BlobBackend) {
    let z = b.zeros(3 * 1024 * 1024 + 5).await.unwrap();
    assert_eq!(z.size, 3 * 1024 * 1024 + 5);
    assert_eq!(
        read_all(b, &z.file_id, 3 * 1024 * 1024 - 2, 7).await,
        vec![0u8; 7]
    );
    let empty = b.zeros(0).await.unwrap();
    assert_eq!(empty.size, 0);
    b.remove(&[z.file_id, empty.file_id]).await;
}

async fn extends_append_or_decline_with_the_body_untouched(b: &dyn BlobBackend, appends: bool) {
    let a = b.write(body(&[b"log "]), 100).await.unwrap();
    match b
        .extend(&a.file_id, 4, body(&[b"line"]), 100)
        .await
        .unwrap()
    {
        Extended::Appended(w) => {
            assert!(appends, "this backend's objects do not change");
            assert_eq!(w.size, 4);
            assert_eq!(read_all(b, &a.file_id, 0, 8).await, b"log line");
        }
        Extended::Declined(mut back) => {
            assert!(!appends, "this backend extends in place");
            assert_eq!(back.next().await.unwrap().unwrap(), &b"line"[..]);
            assert_eq!(read_all(b, &a.file_id, 0, 4).await, b"log ");
        }
    }
    b.remove(&[a.file_id]).await;
}

async fn removal_is_idempotent_and_the_sweep_spares_what_is_named(b: &dyn BlobBackend) {
    let a = b.write(body(&[b"kept"]), 100).await.unwrap();
    let orphan = b.write(body(&[b"orphan"]), 100).await.unwrap();
    let gone = b.write(body(&[b"gone"]), 100).await.unwrap();
    b.remove(std::slice::from_ref(&gone.file_id)).await;
    b.remove(std::slice::from_ref(&gone.file_id)).await;
    assert!(b.read(&gone.file_id, 0, 1).await.is_err());
    let keep: HashSet<String> = [a.file_id.clone()].into();
    assert_eq!(b.sweep(&keep).await.unwrap(), 1, "the orphan alone");
    assert_eq!(read_all(b, &a.file_id, 0, 4).await, b"kept");
    assert!(b.read(&orphan.file_id, 0, 1).await.is_err());
    b.remove(&[a.file_id]).await;
    assert!(b.read("not-an-id", 0, 1).await.is_err(), "a malformed id");
}

async fn every_behaviour(b: &dyn BlobBackend, appends: bool) {
    writes_read_back_whole_and_in_ranges(b).await;
    a_refused_or_broken_write_leaves_nothing(b).await;
    compositions_are_new_files_of_old_parts(b).await;
    compositions_of_whole_files_outlive_their_parts(b).await;
    zeros_read_as_zeros(b).await;
    extends_append_or_decline_with_the_body_untouched(b, appends).await;
    removal_is_idempotent_and_the_sweep_spares_what_is_named(b).await;
}

#[tokio::test]
async fn local_files() {
    let dir = tempfile::tempdir().unwrap();
    every_behaviour(&LocalFiles::new(dir.path()).unwrap(), true).await;
}

#[tokio::test]
async fn an_object_store_in_memory() {
    let store = Arc::new(object_store::memory::InMemory::new());
    let blobs = ObjectStoreBlobs::new(store, "blobs".into()).with_sweep_grace(Duration::ZERO);
    every_behaviour(&blobs, false).await;
}

#[tokio::test]
async fn an_object_store_on_a_local_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().join("objects").display());
    let blobs = ObjectStoreBlobs::from_url(&url)
        .unwrap()
        .with_sweep_grace(Duration::ZERO);
    every_behaviour(&blobs, false).await;
}

/// A store a variable names, under a prefix of its own for this run.
fn from_env(var: &str) -> Option<ObjectStoreBlobs> {
    let url = std::env::var(var).ok()?;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let url = format!("{}/{run}", url.trim_end_matches('/'));
    Some(
        ObjectStoreBlobs::from_url(&url)
            .unwrap()
            .with_sweep_grace(Duration::ZERO),
    )
}

#[tokio::test]
async fn an_s3_compatible_server() {
    let Some(blobs) = from_env("KEYLESS_TEST_S3_URL") else {
        eprintln!("KEYLESS_TEST_S3_URL is not set: the S3 run is skipped");
        return;
    };
    every_behaviour(&blobs, false).await;
}

#[tokio::test]
async fn azure_blob_storage_as_azurite_serves_it() {
    let Some(blobs) = from_env("KEYLESS_TEST_AZURE_BLOB_URL") else {
        eprintln!("KEYLESS_TEST_AZURE_BLOB_URL is not set: the Azure run is skipped");
        return;
    };
    every_behaviour(&blobs, false).await;
}

#[test]
fn urls_name_their_stores_and_bad_ones_are_refused() {
    for bad in ["ftp://host/x", "not a url", "file://relative"] {
        assert!(ObjectStoreBlobs::from_url(bad).is_err(), "{bad}");
    }
    assert!(ObjectStoreBlobs::from_url("memory:///").is_ok());
}
