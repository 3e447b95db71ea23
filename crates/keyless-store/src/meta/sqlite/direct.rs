//! The writes that run on the writer's direct connection (see `writer`): Put
//! Blob, and the blob it replaces kept as a version or snapshot.

use rusqlite::{OptionalExtension, ToSql};

use keyless_core::Error;

use super::retained;
use super::writer::{Direct, direct_error};
use crate::meta::rows::{self, acl_json, blob_state_json, size_i64, to_json};
use crate::storage::{Blob, BlobState, Content, Keep, Precondition, RetainedKind};

/// A blob's columns from `etag` to `state`, as [`super::storage::bind_blob`] binds them, for
/// the writer's direct connection; `created_at` and `state` as given.
struct Columns<'a> {
    b: &'a Blob,
    created_at: i64,
    size: i64,
    file_id: &'a str,
    inline: Option<&'a [u8]>,
    metadata: String,
    committed_blocks: String,
    acl: Option<String>,
    state: Option<String>,
}

impl<'a> Columns<'a> {
    fn of(b: &'a Blob, created_at: i64, state: &BlobState) -> Result<Self, Error> {
        Ok(Self {
            b,
            created_at,
            size: size_i64(b.size)?,
            file_id: b.content.file_id().unwrap_or(""),
            inline: match &b.content {
                Content::Inline(bytes) => Some(bytes.as_ref()),
                Content::File(_) => None,
            },
            metadata: to_json(&b.metadata)?,
            committed_blocks: to_json(&b.committed_blocks)?,
            acl: acl_json(b.acl.as_ref())?,
            state: blob_state_json(state)?,
        })
    }

    fn values(&self) -> [&dyn ToSql; 17] {
        let (b, p) = (self.b, &self.b.properties);
        [
            &b.etag,
            &self.created_at,
            &b.last_modified,
            &self.size,
            &self.file_id,
            &p.content_type,
            &p.content_encoding,
            &p.content_language,
            &p.content_disposition,
            &p.cache_control,
            &p.content_md5,
            &self.metadata,
            &self.committed_blocks,
            &self.inline,
            &b.is_dir,
            &self.acl,
            &self.state,
        ]
    }
}

/// Put Blob, on the writer's direct connection: the current row judged by the
/// precondition, the staged blocks dropped (their files returned), the new row
/// in with the creation time and the lease of the blob it replaces, which is
/// kept as `keep` says (its file released if it is not).
pub(super) fn put_blob(
    conn: &Direct<'_>,
    b: &Blob,
    check: Precondition<'_>,
    keep: Option<&Keep>,
) -> Result<Vec<String>, Error> {
    let key = rusqlite::params![b.account, b.container, b.name];
    let current = conn
        .prepare_cached("SELECT * FROM blobs WHERE account = ?1 AND container = ?2 AND name = ?3")
        .and_then(|mut select| select.query_row(key, |row| Ok(rows::blob(row))).optional())
        .map_err(direct_error)?
        .transpose()?;
    check(current.as_ref())?;
    // The staged blocks' files, then the blocks, in two statements: a blob
    // seldom has any, and `DELETE … RETURNING` builds a table for its rows even
    // when there are none (18,000 of a small Put Blob's 256,000 instructions).
    let mut released = conn
        .prepare_cached(
            "SELECT file_id FROM blocks WHERE account = ?1 AND container = ?2 AND blob = ?3",
        )
        .and_then(|mut select| {
            select
                .query_map(key, |row| row.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(direct_error)?;
    // A new blob with no staged blocks changes the database in one statement,
    // the last that can fail, and needs no savepoint.
    if current.is_some() || !released.is_empty() {
        conn.savepoint()?;
    }
    if !released.is_empty() {
        conn.prepare_cached(
            "DELETE FROM blocks WHERE account = ?1 AND container = ?2 AND blob = ?3",
        )
        .and_then(|mut delete| delete.execute(key))
        .map_err(direct_error)?;
    }
    // A write keeps the lease of the blob it replaces.
    let lease = current
        .as_ref()
        .and_then(|c| c.state.lease.as_ref())
        .filter(|_| b.state.lease.is_none());
    let state = match lease {
        Some(lease) => std::borrow::Cow::Owned(BlobState {
            lease: Some(lease.clone()),
            ..b.state.clone()
        }),
        None => std::borrow::Cow::Borrowed(&b.state),
    };
    let created_at = current.as_ref().map_or(b.created_at, |c| c.created_at);
    let columns = Columns::of(b, created_at, &state)?;
    let key: [&dyn ToSql; 3] = [&b.account, &b.container, &b.name];
    conn.prepare_cached(
        "INSERT OR REPLACE INTO blobs (account, container, name, etag, created_at, last_modified, size, file_id,
            content_type, content_encoding, content_language, content_disposition, cache_control, content_md5,
            metadata, committed_blocks, content, is_dir, acl, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    )
    .and_then(|mut insert| insert.execute(rusqlite::params_from_iter(key.into_iter().chain(columns.values()))))
    .map_err(direct_error)?;
    if let Some(c) = &current {
        let kept = match keep.and_then(|keep| retained::kept_as(c, keep)) {
            Some(kept) => {
                keep_direct(conn, c, kept)?;
                true
            }
            None => false,
        };
        if !kept {
            released.extend(c.content.file_id().map(str::to_owned));
        }
    }
    released.retain(|f| Some(f.as_str()) != b.content.file_id());
    Ok(released)
}

/// [`retained::keep_current`] on the writer's direct connection.
fn keep_direct(
    conn: &rusqlite::Connection,
    current: &Blob,
    (kind, id, deleted): retained::Kept,
) -> Result<(), Error> {
    let mut blob = current.clone();
    blob.state.lease = None;
    let columns = Columns::of(&blob, blob.created_at, &blob.state)?;
    let key: [&dyn ToSql; 5] = [
        &blob.account,
        &blob.container,
        &blob.name,
        &kind.as_str(),
        &id,
    ];
    let until: [&dyn ToSql; 2] = [&deleted.map(|d| d.0), &deleted.map(|d| d.1)];
    conn.prepare_cached(
        "INSERT OR REPLACE INTO blob_snapshots (account, container, name, kind, snapshot, etag, created_at, last_modified,
            size, file_id, content_type, content_encoding, content_language, content_disposition, cache_control,
            content_md5, metadata, committed_blocks, content, is_dir, acl, state, deleted_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
    )
    .and_then(|mut insert| {
        insert.execute(rusqlite::params_from_iter(
            key.into_iter().chain(columns.values()).chain(until),
        ))
    })
    .map_err(direct_error)?;
    if kind == RetainedKind::Deleted
        && let Some((at, until)) = deleted
    {
        conn.prepare_cached(
            "UPDATE blob_snapshots SET deleted_at = ?1, expires_at = ?2
             WHERE account = ?3 AND container = ?4 AND name = ?5 AND kind = 'snapshot' AND deleted_at IS NULL",
        )
        .and_then(|mut update| {
            update.execute(rusqlite::params![at, until, current.account, current.container, current.name])
        })
        .map_err(direct_error)?;
    }
    Ok(())
}
