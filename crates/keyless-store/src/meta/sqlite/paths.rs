//! The writes of a hierarchical namespace's paths, on the writer's sqlx connection:
//! a rename and a delete that carry a directory's contents with them, and ACL
//! changes of many paths at once. Each runs inside the caller's write.

use sqlx::SqliteConnection;

use keyless_core::Error;
use keyless_core::acl::PathAcl;

use super::db_error;
use super::storage::{current_blob, drop_blocks};
use crate::meta::rows::{like_prefix, to_json};
use crate::storage::Precondition;

/// Renames `from` to `to` (a file may replace a file); a directory's contents move with it.
pub(super) async fn rename(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    from: &str,
    to: &str,
    check: Precondition<'_>,
) -> Result<Vec<String>, Error> {
    let source = current_blob(tx, account, container, from)
        .await?
        .ok_or_else(|| Error::not_found("the source path does not exist"))?;
    let dest = current_blob(tx, account, container, to).await?;
    check(dest.as_ref())?;
    let mut released = Vec::new();
    if let Some(d) = dest {
        if d.is_dir || source.is_dir {
            return Err(Error::exists("the destination path already exists"));
        }
        released.extend(d.content.file_id().map(str::to_owned));
        sqlx::query("DELETE FROM blobs WHERE account = ? AND container = ? AND name = ?")
            .bind(account)
            .bind(container)
            .bind(to)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    if source.is_dir {
        let under = format!("{from}/");
        // Everything under the directory moves with it: `to/` + the rest of the name.
        sqlx::query(
            "UPDATE blobs SET name = ? || substr(name, ?) WHERE account = ? AND container = ? AND name LIKE ? ESCAPE '\\'",
        )
        .bind(format!("{to}/"))
        .bind(i64::try_from(under.chars().count() + 1).unwrap_or(i64::MAX))
        .bind(account)
        .bind(container)
        .bind(like_prefix(&under))
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    }
    sqlx::query("UPDATE blobs SET name = ? WHERE account = ? AND container = ? AND name = ?")
        .bind(to)
        .bind(account)
        .bind(container)
        .bind(from)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    released.extend(drop_blocks(tx, account, container, &[from, to]).await?);
    Ok(released)
}

/// Deletes `name` and, with `recursive`, everything under it.
pub(super) async fn delete(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    name: &str,
    recursive: bool,
    check: Precondition<'_>,
) -> Result<Vec<String>, Error> {
    let current = current_blob(tx, account, container, name)
        .await?
        .ok_or_else(|| Error::not_found("the path does not exist"))?;
    check(Some(&current))?;
    let under = like_prefix(&format!("{name}/"));
    if current.is_dir && !recursive {
        let child: Option<(String,)> = sqlx::query_as(
            "SELECT name FROM blobs WHERE account = ? AND container = ? AND name LIKE ? ESCAPE '\\' LIMIT 1",
        )
        .bind(account)
        .bind(container)
        .bind(&under)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if child.is_some() {
            return Err(Error::new(
                keyless_core::ErrorKind::Conflict,
                "the directory is not empty; delete it recursively",
            ));
        }
    }
    let mut released: Vec<String> = current
        .content
        .file_id()
        .map(str::to_owned)
        .into_iter()
        .collect();
    if current.is_dir {
        let files: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM blobs WHERE account = ? AND container = ? AND name LIKE ? ESCAPE '\\' RETURNING file_id",
        )
        .bind(account)
        .bind(container)
        .bind(&under)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        released.extend(files.into_iter().map(|(f,)| f).filter(|f| !f.is_empty()));
    }
    sqlx::query("DELETE FROM blobs WHERE account = ? AND container = ? AND name = ?")
        .bind(account)
        .bind(container)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
    let blocks: Vec<(String,)> = sqlx::query_as(
        "DELETE FROM blocks WHERE account = ? AND container = ? AND (blob = ? OR blob LIKE ? ESCAPE '\\') RETURNING file_id",
    )
    .bind(account)
    .bind(container)
    .bind(name)
    .bind(&under)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    released.extend(blocks.into_iter().map(|(f,)| f));
    Ok(released)
}

/// Replaces the ACL of each path of `acls`.
pub(super) async fn set_acls(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    acls: &[(String, PathAcl)],
) -> Result<(), Error> {
    for (name, acl) in acls {
        sqlx::query("UPDATE blobs SET acl = ? WHERE account = ? AND container = ? AND name = ?")
            .bind(to_json(acl)?)
            .bind(account)
            .bind(container)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    Ok(())
}
