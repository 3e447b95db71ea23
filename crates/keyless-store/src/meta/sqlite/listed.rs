//! A listing's rows. Each is the blob's columns (its bytes apart) as one JSON
//! array built by SQLite: sqlx copies every column of every row on its
//! connection's thread and the reading side frees each copy, so twenty columns
//! of thousands of rows cost more than one text each, parsed here.

use keyless_core::Error;
use keyless_core::acl::PathAcl;

use crate::meta::rows::corrupt;
use crate::storage::{Blob, BlobProperties, BlobState, Content};

/// A page of a container's blobs under a prefix, after a marker.
pub(super) const BLOBS: &str =
    "SELECT json_array(name, etag, created_at, last_modified, size, file_id,
        typeof(content) != 'null', content_type, content_encoding, content_language,
        content_disposition, cache_control, iif(content_md5 IS NULL, NULL, hex(content_md5)),
        json(metadata), json(committed_blocks), is_dir, json(acl), json(state))
    FROM blobs WHERE account = ? AND container = ? AND name LIKE ? ESCAPE '\\' AND name > ?
    ORDER BY name LIMIT ?";

/// The fields of a listing's row, in the order of its array.
#[derive(serde::Deserialize)]
struct Listed {
    name: String,
    etag: String,
    created_at: i64,
    last_modified: i64,
    size: u64,
    file_id: String,
    inline: i64,
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_language: Option<String>,
    content_disposition: Option<String>,
    cache_control: Option<String>,
    content_md5: Option<String>,
    metadata: Vec<(String, String)>,
    committed_blocks: Vec<(String, u64)>,
    is_dir: i64,
    acl: Option<PathAcl>,
    state: Option<BlobState>,
}

/// A blob of a listing, from its row (its inline bytes left out).
pub(super) fn blob(account: &str, container: &str, text: &str) -> Result<Blob, Error> {
    let row: Listed = serde_json::from_str(text).map_err(|e| corrupt("blob", e))?;
    let content_md5 = row
        .content_md5
        .map(|hex| {
            (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| corrupt("blob", "an MD5 that is not hexadecimal"))
        })
        .transpose()?;
    Ok(Blob {
        account: account.to_owned(),
        container: container.to_owned(),
        name: row.name,
        etag: row.etag,
        created_at: row.created_at,
        last_modified: row.last_modified,
        size: row.size,
        content: if row.inline != 0 {
            Content::Inline(bytes::Bytes::new())
        } else {
            Content::File(row.file_id)
        },
        properties: BlobProperties {
            content_type: row.content_type,
            content_encoding: row.content_encoding,
            content_language: row.content_language,
            content_disposition: row.content_disposition,
            cache_control: row.cache_control,
            content_md5,
        },
        metadata: row.metadata,
        committed_blocks: row.committed_blocks,
        is_dir: row.is_dir != 0,
        acl: row.acl,
        state: row.state.unwrap_or_default(),
    })
}
