//! A blob's kept states (snapshots, versions, deleted blobs) and deleted
//! containers: the rows, the moves between them, restoring and expiring.

use sqlx::SqliteConnection;

use keyless_core::Error;

use super::db_error;
use super::storage::{bind_blob, current_blob, released_in};
use crate::meta::rows;
use crate::storage::{Blob, Keep, Retained, RetainedKind};

/// Writes (or replaces) a kept state; returns the file of the row it replaced.
pub(super) async fn insert_retained(
    tx: &mut SqliteConnection,
    r: &Retained,
) -> Result<Option<String>, Error> {
    let b = &r.blob;
    let old: Option<(String,)> = sqlx::query_as(
        "SELECT file_id FROM blob_snapshots WHERE account = ? AND container = ? AND name = ? AND kind = ? AND snapshot = ?",
    )
    .bind(&b.account)
    .bind(&b.container)
    .bind(&b.name)
    .bind(r.kind.as_str())
    .bind(&r.id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    let query = sqlx::query(
        "INSERT OR REPLACE INTO blob_snapshots (account, container, name, kind, snapshot, etag, created_at, last_modified, size,
            file_id, content_type, content_encoding, content_language, content_disposition, cache_control, content_md5,
            metadata, committed_blocks, content, is_dir, acl, state, deleted_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&b.account)
    .bind(&b.container)
    .bind(&b.name)
    .bind(r.kind.as_str())
    .bind(&r.id);
    bind_blob(query, b)?
        .bind(r.deleted.map(|d| d.0))
        .bind(r.deleted.map(|d| d.1))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(old
        .map(|(f,)| f)
        .filter(|f| !f.is_empty() && Some(f.as_str()) != b.content.file_id()))
}

/// What a kept blob is kept as: its kind, its name, and when it was deleted and
/// until when it stays.
pub(super) type Kept = (RetainedKind, String, Option<(i64, i64)>);

/// What `keep` keeps `current` as, if anything: a blob with a version id is kept
/// as that version.
pub(super) fn kept_as(current: &Blob, keep: &Keep) -> Option<Kept> {
    match (&current.state.version_id, keep.kind) {
        (Some(version), _) => Some((RetainedKind::Version, version.clone(), None)),
        (None, Some(kind)) => Some((kind, keep.id.clone(), keep.deleted)),
        (None, None) => None,
    }
}

/// Keeps `current`, the blob a write replaces or a delete removes, as `keep`
/// says; a kept deletion takes the blob's live snapshots with it. Returns whether
/// it was kept (its file is then the kept row's).
pub(super) async fn keep_current(
    tx: &mut SqliteConnection,
    current: &Blob,
    keep: &Keep,
) -> Result<bool, Error> {
    let Some((kind, id, deleted)) = kept_as(current, keep) else {
        return Ok(false);
    };
    let mut blob = current.clone();
    blob.state.lease = None;
    insert_retained(
        tx,
        &Retained {
            kind,
            id,
            deleted,
            blob,
        },
    )
    .await?;
    if kind == RetainedKind::Deleted
        && let Some((at, until)) = deleted
    {
        sqlx::query(
            "UPDATE blob_snapshots SET deleted_at = ?, expires_at = ?
             WHERE account = ? AND container = ? AND name = ? AND kind = 'snapshot' AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(until)
        .bind(&current.account)
        .bind(&current.container)
        .bind(&current.name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    Ok(true)
}

/// Clears the deletion marks of a blob's kept states.
async fn restore_deleted(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    name: &str,
) -> Result<(), Error> {
    sqlx::query(
        "UPDATE blob_snapshots SET deleted_at = NULL, expires_at = NULL
         WHERE account = ? AND container = ? AND name = ? AND deleted_at IS NOT NULL",
    )
    .bind(account)
    .bind(container)
    .bind(name)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// Moves a container and everything in it to another name, marked deleted
/// (when, until when) or not.
pub(super) async fn move_container(
    tx: &mut SqliteConnection,
    account: &str,
    from: &str,
    to: &str,
    deleted: Option<(i64, i64)>,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO containers (account, name, etag, last_modified, metadata, acl, state, deleted_at, expires_at)
         SELECT account, ?3, etag, last_modified, metadata, acl, state, ?4, ?5 FROM containers
         WHERE account = ?1 AND name = ?2",
    )
    .bind(account)
    .bind(from)
    .bind(to)
    .bind(deleted.map(|d| d.0))
    .bind(deleted.map(|d| d.1))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    for table in ["blobs", "blocks", "blob_snapshots"] {
        sqlx::query(&format!(
            "UPDATE {table} SET container = ?3 WHERE account = ?1 AND container = ?2"
        ))
        .bind(account)
        .bind(from)
        .bind(to)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    sqlx::query("DELETE FROM containers WHERE account = ? AND name = ?")
        .bind(account)
        .bind(from)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

/// Undelete Blob, in `tx`.
pub(super) async fn undelete(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    name: &str,
) -> Result<(), Error> {
    let current = current_blob(tx, account, container, name).await?;
    let deleted: Vec<Retained> = sqlx::query(
        "SELECT * FROM blob_snapshots WHERE account = ? AND container = ? AND name = ? AND kind = 'deleted'
         ORDER BY snapshot DESC",
    )
    .bind(account)
    .bind(container)
    .bind(name)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?
    .iter()
    .map(rows::retained)
    .collect::<Result<_, _>>()?;
    let mut rest = deleted.as_slice();
    if current.is_none() {
        let Some((latest, earlier)) = deleted.split_first() else {
            let any: Option<(i64,)> = sqlx::query_as(
                "SELECT 1 FROM blob_snapshots WHERE account = ? AND container = ? AND name = ? AND deleted_at IS NOT NULL LIMIT 1",
            )
            .bind(account)
            .bind(container)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            if any.is_none() {
                return Err(Error::not_found("the blob does not exist"));
            }
            return restore_deleted(tx, account, container, name).await;
        };
        let b = &latest.blob;
        let query = sqlx::query(
            "INSERT INTO blobs (account, container, name, etag, created_at, last_modified, size, file_id, content_type,
                content_encoding, content_language, content_disposition, cache_control, content_md5, metadata,
                committed_blocks, content, is_dir, acl, state)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.name);
        bind_blob(query, b)?
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query(
            "DELETE FROM blob_snapshots WHERE account = ? AND container = ? AND name = ? AND kind = 'deleted' AND snapshot = ?",
        )
        .bind(account)
        .bind(container)
        .bind(name)
        .bind(&latest.id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        rest = earlier;
    }
    // Earlier deleted states of the blob come back as its snapshots.
    for r in rest {
        sqlx::query(
            "UPDATE OR REPLACE blob_snapshots SET kind = 'snapshot'
             WHERE account = ? AND container = ? AND name = ? AND kind = 'deleted' AND snapshot = ?",
        )
        .bind(account)
        .bind(container)
        .bind(name)
        .bind(&r.id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    restore_deleted(tx, account, container, name).await
}

/// Deletes for good, in `tx`, the kept states and containers whose retention
/// ended before `now`; returns the files released.
pub(super) async fn expire(tx: &mut SqliteConnection, now: i64) -> Result<Vec<String>, Error> {
    let expired: Vec<(String, String)> = sqlx::query_as(
        "SELECT account, name FROM containers WHERE expires_at IS NOT NULL AND expires_at < ?",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    let mut files = Vec::new();
    for (account, name) in &expired {
        files.extend(
            released_in(
                tx,
                "SELECT file_id FROM blobs WHERE account = ?1 AND container = ?2 AND file_id != ''
                 UNION ALL SELECT file_id FROM blob_snapshots WHERE account = ?1 AND container = ?2 AND file_id != ''",
                "SELECT file_id FROM blocks WHERE account = ? AND container = ?",
                &[account, name],
            )
            .await?,
        );
        sqlx::query("DELETE FROM containers WHERE account = ? AND name = ?")
            .bind(account)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    let rows: Vec<(String,)> = sqlx::query_as(
        "DELETE FROM blob_snapshots WHERE expires_at IS NOT NULL AND expires_at < ? RETURNING file_id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    files.extend(rows.into_iter().map(|(f,)| f).filter(|f| !f.is_empty()));
    Ok(files)
}
