//! Blob bytes in an object store — S3 and S3-compatible servers, Azure Blob,
//! Google Cloud Storage, or a local directory — through the `object_store` crate.
//!
//! A file is one object, `<prefix>/<id>`, written once by a multipart upload that
//! is completed only when the whole body has arrived: until then the object does
//! not exist, and a write that fails or is interrupted leaves none (an aborted
//! upload's parts are dropped; a crashed server's are expired by the store's own
//! rules for incomplete uploads). Objects never change afterwards: extends are
//! declined (the caller composes a new object), and compositions are written as
//! new objects from ranged reads of the old.
//!
//! The sweep removes objects no metadata row names once they are older than a
//! grace period: another server sharing the store may have written one a moment
//! ago and not yet committed the row that names it.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};

use keyless_core::{Error, ErrorKind};

use crate::blob::{BlobBackend, ByteStream, Written};

/// Parts of a multipart upload: S3 takes parts of 5 MiB and more.
const PART: usize = 8 * 1024 * 1024;
/// Parts in flight per upload.
const IN_FLIGHT: usize = 4;
/// Zeros are written in pieces of this size.
const ZEROS: usize = 1024 * 1024;

/// Blob bytes as objects of an [`ObjectStore`], under a prefix.
#[derive(Clone)]
pub struct ObjectStoreBlobs {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    grace: Duration,
}

impl fmt::Debug for ObjectStoreBlobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreBlobs")
            .field("store", &self.store.to_string())
            .field("prefix", &self.prefix.as_ref())
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl fmt::Display) -> Error {
    Error::new(ErrorKind::Unavailable, format!("object store, {what}: {e}"))
}

impl ObjectStoreBlobs {
    /// Objects of `store` under `prefix`; the sweep spares objects younger than
    /// an hour.
    #[must_use]
    pub fn new(store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        Self {
            store,
            prefix,
            grace: Duration::from_secs(3600),
        }
    }

    /// The same, sparing objects younger than `grace` from the sweep.
    #[must_use]
    pub fn with_sweep_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The store a URL names, with credentials and options from the environment
    /// as `object_store` reads them (`AWS_*`, `AZURE_*`, `GOOGLE_*`):
    /// `s3://bucket/prefix`, `az://container/prefix` (also `abfs[s]://`,
    /// `azure://` and `https://<account>.blob.…`), `gs://bucket/prefix`,
    /// `file:///directory`, `memory:///` (tests).
    ///
    /// # Errors
    /// `InvalidInput` for a URL no store answers to or options a store refuses.
    pub fn from_url(text: &str) -> Result<Self, Error> {
        let invalid = |why: String| Error::invalid(format!("blob store `{text}`: {why}"));
        let url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        let prefix = Path::from(url.path().trim_matches('/'));
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            "az" | "azure" | "abfs" | "abfss" | "adl" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            "https" if url.host_str().is_some_and(|h| h.contains(".blob.")) => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(text)
                    .build()
                    .map_err(|e| invalid(e.to_string()))?,
            ),
            "file" => {
                let dir = url
                    .to_file_path()
                    .map_err(|()| invalid("not a local path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| invalid(e.to_string()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| invalid(e.to_string()))?;
                return Ok(Self::new(Arc::new(store), Path::default()));
            }
            "memory" => Arc::new(object_store::memory::InMemory::new()),
            other => {
                return Err(invalid(format!(
                    "`{other}:` is not a store keyless knows (s3, az, abfss, gs, file)"
                )));
            }
        };
        // The S3 and Azure builders take the bucket or container from the host
        // and keep the path for keys; the prefix is that path.
        Ok(Self::new(store, prefix))
    }

    fn path(&self, file_id: &str) -> Result<Path, Error> {
        let valid = file_id.len() == 32 && file_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(Error::internal(format!("malformed file id `{file_id}`")));
        }
        Ok(self.prefix.clone().join(file_id))
    }

    /// Uploads `body` as a new object; past `limit` bytes the upload is
    /// aborted. Returns the id, length and (with `digest`) MD5.
    async fn upload(
        &self,
        mut body: ByteStream,
        limit: u64,
        digest: bool,
    ) -> Result<Written, Error> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.path(&id)?;
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| unavailable("starting an upload", e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut md5 = digest.then(Md5::new);
        let mut size: u64 = 0;
        let failed = loop {
            let Some(chunk) = body.next().await else {
                break None;
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    break Some(Error::invalid(format!(
                        "the request body could not be read: {e}"
                    )));
                }
            };
            size += chunk.len() as u64;
            if size > limit {
                break Some(Error::invalid(format!(
                    "the body is larger than the {limit} bytes this operation accepts"
                )));
            }
            if let Some(md5) = md5.as_mut() {
                md5.update(&chunk);
            }
            if let Err(e) = writer.wait_for_capacity(IN_FLIGHT).await {
                break Some(unavailable("uploading a part", e));
            }
            writer.put(chunk);
        };
        if let Some(e) = failed {
            if let Err(abort) = writer.abort().await {
                tracing::warn!(object = %path, error = %abort, "an abandoned upload could not be aborted; the store's expiry of incomplete uploads removes it");
            }
            return Err(e);
        }
        writer
            .finish()
            .await
            .map_err(|e| unavailable("completing an upload", e))?;
        Ok(Written {
            file_id: id,
            size,
            md5: md5.map_or([0; 16], |m| m.finalize().into()),
        })
    }

    /// A stream of `len` bytes of an object from `offset`.
    async fn range(&self, file_id: &str, offset: u64, len: u64) -> Result<ByteStream, Error> {
        if len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let path = self.path(file_id)?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(offset..offset + len)),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    Error::not_found(format!("blob object `{path}` does not exist"))
                }
                other => unavailable("reading", other),
            })?;
        Ok(Box::pin(got.into_stream().map_err(std::io::Error::other)))
    }
}

#[async_trait]
impl BlobBackend for ObjectStoreBlobs {
    async fn write_digesting(
        &self,
        body: ByteStream,
        limit: u64,
        md5: bool,
    ) -> Result<Written, Error> {
        self.upload(body, limit, md5).await
    }

    async fn compose(&self, parts: &[(String, u64, u64)], md5: bool) -> Result<Written, Error> {
        let mut streams = Vec::with_capacity(parts.len());
        for (file, offset, len) in parts {
            // Opened lazily, one after the other, as the upload reads them.
            let this = self.clone();
            let (file, offset, len) = (file.clone(), *offset, *len);
            streams.push(
                futures_util::stream::once(async move { this.range(&file, offset, len).await })
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .try_flatten(),
            );
        }
        let body: ByteStream = Box::pin(futures_util::stream::iter(streams).flatten());
        self.upload(body, u64::MAX, md5)
            .await
            .map_err(|e| match e.kind() {
                // A part that could not be read is the store's failure, not the caller's.
                ErrorKind::InvalidInput => unavailable("composing", e.message()),
                _ => e,
            })
    }

    async fn zeros(&self, size: u64) -> Result<Written, Error> {
        let zeros = Bytes::from(vec![0u8; ZEROS]);
        let pieces = size.div_ceil(ZEROS as u64);
        let body = futures_util::stream::iter((0..pieces).map(move |i| {
            let left = size - i * ZEROS as u64;
            Ok(zeros.slice(..usize::try_from(left).map_or(ZEROS, |l| l.min(ZEROS))))
        }));
        self.upload(Box::pin(body), u64::MAX, false).await
    }

    async fn read(&self, file_id: &str, offset: u64, len: u64) -> Result<ByteStream, Error> {
        self.range(file_id, offset, len).await
    }

    async fn remove(&self, file_ids: &[String]) {
        for id in file_ids {
            let Ok(path) = self.path(id) else {
                continue;
            };
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(object = %path, error = %e, "could not remove a released blob object; the next sweep will");
                }
            }
        }
    }

    async fn sweep(&self, referenced: &HashSet<String>) -> Result<usize, Error> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let cutoff = now.saturating_sub(i64::try_from(self.grace.as_secs()).unwrap_or(i64::MAX));
        let mut listing = self.store.list(Some(&self.prefix));
        let mut removed = 0;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| unavailable("listing", e))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let ours = name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit());
            let young = meta.last_modified.timestamp() > cutoff;
            if !ours || young || referenced.contains(name) {
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
                Err(e) => return Err(unavailable("removing an orphan", e)),
            }
        }
        Ok(removed)
    }
}
