//! Moving the job's data: the code snapshot (checked against the checksum
//! recorded at submission) and the inputs downloaded into the job's folder, the
//! outputs walked and uploaded, each blob streamed between the storage and the disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use serde_json::{Value, json};

use keyless_ml::snapshot::Checksum;

use super::{Agent, Failure, FileAccess, Folder, STORAGE_VERSION, refusal, safe_join, segment};

/// Files up to this size are uploaded with one Put Blob; larger ones in blocks.
const SINGLE_PUT: u64 = 256 * 1024 * 1024;
/// The size of an uploaded block.
const BLOCK: u64 = 64 * 1024 * 1024;
/// The bytes a download gathers before each write to its file.
const WRITE_CHUNK: usize = 1024 * 1024;

/// Streams a response's `body` into a new file at `dest`, showing each chunk
/// to `seen` first. The bytes go to the file a MiB at a time: written as they
/// came, each chunk of the body (a TLS record, 16 KiB) was a trip to the
/// blocking pool and back.
pub(super) async fn save<E: std::fmt::Display>(
    body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>>,
    dest: &Path,
    mut seen: impl FnMut(&[u8]),
) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let failed = |e: std::io::Error| format!("{}: {e}", dest.display());
    let file = tokio::fs::File::create(dest).await.map_err(failed)?;
    let mut file = tokio::io::BufWriter::with_capacity(WRITE_CHUNK, file);
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| format!("the download broke off: {e}"))?;
        seen(&chunk);
        file.write_all(&chunk).await.map_err(failed)?;
    }
    file.flush().await.map_err(failed)
}

impl Agent {
    /// Downloads the code snapshot into `code/`, refused unless it hashes to
    /// the checksum recorded when the job was submitted.
    pub(super) async fn fetch_code(&self) -> Result<(), Failure> {
        let access = self.access("code", &json!({})).await?;
        let mut files = access.files;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut checksum = Checksum::default();
        let code = self.root.join("code");
        for f in &files {
            let dest =
                safe_join(&code, &f.path).map_err(|e| Failure::new("CodeSnapshotUnreadable", e))?;
            self.download(f, None, &dest, Some((&mut checksum, f.path.as_str())))
                .await
                .map_err(|e| Failure::new("CodeSnapshotUnreadable", e))?;
        }
        let actual = checksum.finish();
        let recorded = access.checksum.unwrap_or_default();
        if actual != recorded {
            return Err(Failure::new(
                "CodeChecksumMismatch",
                format!(
                    "the code snapshot hashes to {actual}, but {recorded} was recorded when the job was submitted: it was changed after submission, so the job does not run"
                ),
            ));
        }
        Ok(())
    }

    /// Downloads a `download` input into its folder.
    pub(super) async fn fetch_input(&self, input: &Folder) -> Result<(), Failure> {
        let access = self
            .access(&format!("inputs/{}", segment(&input.port)), &json!({}))
            .await?;
        let dir = self.folder(&input.dir)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Failure::new("InputDownloadFailed", format!("{}: {e}", dir.display())))?;
        for f in &access.files {
            let dest =
                safe_join(&dir, &f.path).map_err(|e| Failure::new("InputDownloadFailed", e))?;
            self.download(f, access.authorization.as_deref(), &dest, None)
                .await
                .map_err(|e| {
                    Failure::new(
                        "InputDownloadFailed",
                        format!("input `{}`: {} could not be read: {e}", input.port, f.path),
                    )
                })?;
        }
        Ok(())
    }

    /// Streams one blob to `dest`, hashing it into `checksum` on the way.
    pub(super) async fn download(
        &self,
        f: &FileAccess,
        authorization: Option<&str>,
        dest: &Path,
        checksum: Option<(&mut Checksum, &str)>,
    ) -> Result<(), String> {
        let mut request = self
            .api
            .http
            .get(&f.url)
            .header("x-ms-version", STORAGE_VERSION);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let response = request.send().await.map_err(|e| format!("{e}"))?;
        if !response.status().is_success() {
            return Err(refusal(&response));
        }
        let len = response.content_length().unwrap_or(0);
        let mut checksum = match checksum {
            Some((c, path)) => {
                c.file(path, len).map_err(|e| e.to_string())?;
                Some(c)
            }
            None => None,
        };
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        save(response.bytes_stream(), dest, |chunk| {
            if let Some(c) = checksum.as_deref_mut() {
                c.update(chunk);
            }
        })
        .await
    }

    /// Uploads every file under an `upload` output's folder.
    pub(super) async fn upload_output(&self, output: &Folder) -> Result<(), Failure> {
        let dir = self.folder(&output.dir)?;
        let files = walk(&self.root, &dir).await?;
        let listed: Vec<Value> = files
            .iter()
            .map(|(rel, _, size)| json!({ "path": rel, "size": size }))
            .collect();
        let access = self
            .access(
                &format!("outputs/{}", segment(&output.port)),
                &json!({ "files": listed }),
            )
            .await?;
        let by_path: BTreeMap<&str, &FileAccess> =
            access.files.iter().map(|f| (f.path.as_str(), f)).collect();
        for (rel, path, size) in &files {
            let Some(f) = by_path.get(rel.as_str()) else {
                return Err(Failure::new(
                    "OutputUploadFailed",
                    format!(
                        "output `{}`: the server named no place for {rel}",
                        output.port
                    ),
                ));
            };
            upload(
                &self.api.http,
                &f.url,
                access.authorization.as_deref(),
                path,
                *size,
            )
            .await
            .map_err(|e| {
                Failure::new(
                    "OutputUploadFailed",
                    format!("output `{}`: {rel} could not be written: {e}", output.port),
                )
            })?;
        }
        Ok(())
    }
}

/// Streams one file to its blob at `url`: one Put Blob, or blocks for a large
/// file.
pub(super) async fn upload(
    http: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
    path: &Path,
    size: u64,
) -> Result<(), String> {
    // Sends one PUT; a refusal comes back with the storage's explanation.
    let put = |url: String, len: u64, body: reqwest::Body, blob_type: Option<&'static str>| {
        let mut request = http
            .put(url)
            .header("x-ms-version", STORAGE_VERSION)
            .header("content-length", len)
            .body(body);
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        if let Some(t) = blob_type {
            request = request.header("x-ms-blob-type", t);
        }
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(refusal(&response))
            }
        }
    };
    // `len` bytes of the file from `offset`, as a request body.
    let part = |offset: u64, len: u64| async move {
        use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
        let failed = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut file = tokio::fs::File::open(path).await.map_err(failed)?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(failed)?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
        Ok::<_, String>(reqwest::Body::wrap_stream(stream))
    };
    if size <= SINGLE_PUT {
        return put(
            url.to_owned(),
            size,
            part(0, size).await?,
            Some("BlockBlob"),
        )
        .await;
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    let mut ids = Vec::new();
    let mut offset = 0u64;
    while offset < size {
        use base64::Engine as _;
        let len = BLOCK.min(size - offset);
        let id = base64::engine::general_purpose::STANDARD.encode(format!("{:010}", ids.len()));
        let encoded =
            percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC);
        let block_url = format!("{url}{sep}comp=block&blockid={encoded}");
        put(block_url, len, part(offset, len).await?, None).await?;
        ids.push(id);
        offset += len;
    }
    let list: String = ids
        .iter()
        .map(|id| format!("<Latest>{id}</Latest>"))
        .collect();
    let xml = format!("<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>{list}</BlockList>");
    let len = xml.len() as u64;
    put(format!("{url}{sep}comp=blocklist"), len, xml.into(), None).await
}

/// Every file under an output folder: its `/`-separated path, where it is, its
/// size. The folder must be a real folder inside the job's; links beneath it
/// are skipped (the command made them, and could point them anywhere).
async fn walk(base: &Path, root: &Path) -> Result<Vec<(String, PathBuf, u64)>, Failure> {
    let escaped = || {
        Failure::new(
            "OutputOutsideJob",
            format!(
                "the output folder `{}` is a link out of the job's folder; nothing was uploaded from it",
                root.strip_prefix(base).unwrap_or(root).display()
            ),
        )
    };
    let mut out = Vec::new();
    match tokio::fs::symlink_metadata(root).await {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(escaped()),
        Err(_) => return Ok(out),
    }
    let (Ok(real_base), Ok(real_root)) = (
        tokio::fs::canonicalize(base).await,
        tokio::fs::canonicalize(root).await,
    ) else {
        return Err(escaped());
    };
    if real_root != real_base.join(root.strip_prefix(base).unwrap_or(root)) {
        return Err(escaped());
    }
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let path = entry.path();
            let Ok(meta) = tokio::fs::symlink_metadata(&path).await else {
                continue;
            };
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file()
                && let Ok(rel) = path.strip_prefix(root)
            {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push((rel.join("/"), path, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}
