use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Row, SqliteConnection};

use keyless_core::Error;
use keyless_core::acl::PathAcl;

use super::listed;
use super::paths;
use super::retained::{self, insert_retained, keep_current, move_container};
use super::{SqliteStore, db_error};
use crate::meta::rows::{
    self, acl_json, blob_state_json, container_state_json, corrupt, like_prefix, size_i64, to_json,
};
use crate::storage::{
    Blob, Block, Container, ContainerCheck, Content, DeletedContainer, Keep, Page, Precondition,
    Retained, RetainedKind, StorageAccount, StorageStore, deleted_container_name,
};

pub(super) async fn current_container(
    tx: &mut SqliteConnection,
    account: &str,
    name: &str,
) -> Result<Option<Container>, Error> {
    sqlx::query("SELECT * FROM containers WHERE account = ? AND name = ?")
        .bind(account)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::container)
        .transpose()
}

pub(super) async fn current_blob(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    name: &str,
) -> Result<Option<Blob>, Error> {
    sqlx::query("SELECT * FROM blobs WHERE account = ? AND container = ? AND name = ?")
        .bind(account)
        .bind(container)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::blob)
        .transpose()
}

/// Drops the uncommitted blocks staged for each of `blobs`; returns their files.
pub(super) async fn drop_blocks(
    tx: &mut SqliteConnection,
    account: &str,
    container: &str,
    blobs: &[&str],
) -> Result<Vec<String>, Error> {
    let mut files = Vec::new();
    for blob in blobs {
        let rows: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM blocks WHERE account = ? AND container = ? AND blob = ? RETURNING file_id",
        )
        .bind(account)
        .bind(container)
        .bind(blob)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        files.extend(rows.into_iter().map(|(f,)| f));
    }
    Ok(files)
}

pub(super) async fn released_in(
    tx: &mut SqliteConnection,
    sql_blobs: &str,
    sql_blocks: &str,
    binds: &[&str],
) -> Result<Vec<String>, Error> {
    let mut files = Vec::new();
    for sql in [sql_blobs, sql_blocks] {
        let mut q = sqlx::query_as::<_, (String,)>(sql);
        for b in binds {
            q = q.bind(*b);
        }
        files.extend(
            q.fetch_all(&mut *tx)
                .await
                .map_err(db_error)?
                .into_iter()
                .map(|(f,)| f),
        );
    }
    Ok(files)
}

pub(super) type SqliteQuery<'q> =
    sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds a blob's columns from `etag` to `state`, in the order of the `blobs`
/// table (and of `blob_snapshots` after its kind and name).
pub(super) fn bind_blob<'q>(query: SqliteQuery<'q>, b: &'q Blob) -> Result<SqliteQuery<'q>, Error> {
    let p = &b.properties;
    Ok(query
        .bind(&b.etag)
        .bind(b.created_at)
        .bind(b.last_modified)
        .bind(size_i64(b.size)?)
        .bind(b.content.file_id().unwrap_or(""))
        .bind(&p.content_type)
        .bind(&p.content_encoding)
        .bind(&p.content_language)
        .bind(&p.content_disposition)
        .bind(&p.cache_control)
        .bind(&p.content_md5)
        .bind(to_json(&b.metadata)?)
        .bind(to_json(&b.committed_blocks)?)
        .bind(match &b.content {
            Content::Inline(bytes) => Some(bytes.as_ref()),
            Content::File(_) => None,
        })
        .bind(b.is_dir)
        .bind(acl_json(b.acl.as_ref())?)
        .bind(blob_state_json(&b.state)?))
}

#[async_trait]
impl StorageStore for SqliteStore {
    async fn account_create(&self, a: &StorageAccount) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO storage_accounts (name, id, id_key, tenant_id, subscription_id, resource_group, location, hns, allow_shared_key, body, key1, key2, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.name)
        .bind(&a.id)
        .bind(a.id.to_ascii_lowercase())
        .bind(a.tenant_id.to_string())
        .bind(&a.subscription_id)
        .bind(&a.resource_group)
        .bind(&a.location)
        .bind(a.hns)
        .bind(a.allow_shared_key)
        .bind(a.body.to_string())
        .bind(&a.key1)
        .bind(&a.key2)
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn account(&self, name: &str) -> Result<Option<StorageAccount>, Error> {
        sqlx::query("SELECT * FROM storage_accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::account)
            .transpose()
    }

    async fn accounts(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<StorageAccount>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM storage_accounts WHERE subscription_id = ?1 AND (?2 IS NULL OR resource_group = ?2) ORDER BY name",
        )
        .bind(subscription_id)
        .bind(resource_group)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::account).collect()
    }

    async fn account_update(&self, a: &StorageAccount) -> Result<(), Error> {
        let done = sqlx::query("UPDATE storage_accounts SET allow_shared_key = ?, body = ?, key1 = ?, key2 = ? WHERE name = ?")
            .bind(a.allow_shared_key)
            .bind(a.body.to_string())
            .bind(&a.key1)
            .bind(&a.key2)
            .bind(&a.name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "storage account `{}` does not exist",
                a.name
            )));
        }
        Ok(())
    }

    async fn account_delete(&self, name: &str) -> Result<Option<Vec<String>>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let files = released_in(
                &mut tx,
                "SELECT file_id FROM blobs WHERE account = ?1 AND file_id != ''
                 UNION ALL SELECT file_id FROM blob_snapshots WHERE account = ?1 AND file_id != ''",
                "SELECT file_id FROM blocks WHERE account = ?",
                &[name],
            )
            .await?;
            for table in ["blobs", "blob_snapshots"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE account = ?"))
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            sqlx::query("DELETE FROM blocks WHERE account = ?")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            let done = sqlx::query("DELETE FROM storage_accounts WHERE name = ?")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok((done.rows_affected() > 0).then_some(files))
        }
        .await;
        let result = tx.finish(result).await;
        self.cache.forget_all();
        result
    }

    async fn container_create(&self, c: &Container) -> Result<(), Error> {
        sqlx::query("INSERT INTO containers (account, name, etag, last_modified, metadata, acl, state) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(&c.account)
            .bind(&c.name)
            .bind(&c.etag)
            .bind(c.last_modified)
            .bind(to_json(&c.metadata)?)
            .bind(acl_json(c.acl.as_ref())?)
            .bind(container_state_json(&c.state)?)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn container(&self, account: &str, name: &str) -> Result<Option<Container>, Error> {
        if let Some(c) = self.cache.container(account, name) {
            return Ok(Some(c));
        }
        let ticket = self.cache.ticket();
        let found = sqlx::query("SELECT * FROM containers WHERE account = ? AND name = ?")
            .bind(account)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::container)
            .transpose()?;
        if let Some(c) = &found {
            self.cache.put_container(ticket, c);
        }
        Ok(found)
    }

    async fn containers(&self, account: &str, page: Page<'_>) -> Result<Vec<Container>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM containers WHERE account = ? AND name LIKE ? ESCAPE '\\' AND name > ? AND deleted_at IS NULL
             ORDER BY name LIMIT ?",
        )
        .bind(account)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(i64::try_from(page.max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::container).collect()
    }

    async fn container_update(
        &self,
        c: &Container,
        check: ContainerCheck<'_>,
    ) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let current = current_container(&mut tx, &c.account, &c.name)
                .await?
                .ok_or_else(|| Error::not_found("the container does not exist"))?;
            check(&current)?;
            sqlx::query("UPDATE containers SET etag = ?, last_modified = ?, metadata = ?, acl = ?, state = ? WHERE account = ? AND name = ?")
                .bind(&c.etag)
                .bind(c.last_modified)
                .bind(to_json(&c.metadata)?)
                .bind(acl_json(c.acl.as_ref())?)
                .bind(container_state_json(&c.state)?)
                .bind(&c.account)
                .bind(&c.name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok(())
        }
        .await;
        let result = tx.finish(result).await;
        self.cache.forget_container(&c.account, &c.name);
        result
    }

    async fn container_delete_keeping(
        &self,
        account: &str,
        name: &str,
        check: ContainerCheck<'_>,
        keep: Option<(&str, i64, i64)>,
    ) -> Result<Option<Vec<String>>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let Some(current) = current_container(&mut tx, account, name).await? else {
                return Ok(None);
            };
            check(&current)?;
            if let Some((version, at, until)) = keep {
                let hidden = deleted_container_name(name, version);
                move_container(&mut tx, account, name, &hidden, Some((at, until))).await?;
                return Ok(Some(Vec::new()));
            }
            let files = released_in(
                &mut tx,
                "SELECT file_id FROM blobs WHERE account = ?1 AND container = ?2 AND file_id != ''
                 UNION ALL SELECT file_id FROM blob_snapshots WHERE account = ?1 AND container = ?2 AND file_id != ''",
                "SELECT file_id FROM blocks WHERE account = ? AND container = ?",
                &[account, name],
            )
            .await?;
            let done = sqlx::query("DELETE FROM containers WHERE account = ? AND name = ?")
                .bind(account)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok((done.rows_affected() > 0).then_some(files))
        }
        .await;
        let result = tx.finish(result).await;
        self.cache.forget_all();
        result
    }

    async fn containers_deleted(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<Vec<DeletedContainer>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM containers WHERE account = ? AND name LIKE ? ESCAPE '\\' AND deleted_at IS NOT NULL
             ORDER BY name",
        )
        .bind(account)
        .bind(like_prefix(&format!("$deleted/{prefix}")))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let mut container = rows::container(row)?;
                let c = |e| corrupt("deleted container", e);
                let at: i64 = row.try_get("deleted_at").map_err(c)?;
                let until: Option<i64> = row.try_get("expires_at").map_err(c)?;
                let hidden = container.name.clone();
                let (name, version) = hidden
                    .strip_prefix("$deleted/")
                    .and_then(|rest| rest.rsplit_once('/'))
                    .ok_or_else(|| corrupt("deleted container", &hidden))?;
                container.name = name.to_owned();
                Ok(DeletedContainer {
                    container,
                    version: version.to_owned(),
                    deleted: (at, until.unwrap_or(at)),
                })
            })
            .collect()
    }

    async fn container_restore(
        &self,
        account: &str,
        name: &str,
        version: &str,
        to: &str,
    ) -> Result<(), Error> {
        let hidden = deleted_container_name(name, version);
        let mut tx = self.writer.begin().await?;
        let result = async {
            if current_container(&mut tx, account, &hidden)
                .await?
                .is_none()
            {
                return Err(Error::not_found("no such deleted container"));
            }
            if current_container(&mut tx, account, to).await?.is_some() {
                return Err(Error::exists("the container already exists"));
            }
            move_container(&mut tx, account, &hidden, to, None).await
        }
        .await;
        let result = tx.finish(result).await;
        self.cache.forget_all();
        result
    }

    async fn blob_shared(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<std::sync::Arc<Blob>>, Error> {
        if let Some(b) = self.cache.blob_shared(account, container, name) {
            return Ok(Some(b));
        }
        Ok(self
            .blob(account, container, name)
            .await?
            .map(std::sync::Arc::new))
    }

    async fn blob(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<Blob>, Error> {
        if let Some(b) = self.cache.blob(account, container, name) {
            return Ok(Some(b));
        }
        let ticket = self.cache.ticket();
        let found =
            sqlx::query("SELECT * FROM blobs WHERE account = ? AND container = ? AND name = ?")
                .bind(account)
                .bind(container)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?
                .as_ref()
                .map(rows::blob)
                .transpose()?;
        if let Some(b) = &found {
            self.cache.put_blob(ticket, b);
        }
        Ok(found)
    }

    async fn blobs(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
    ) -> Result<Vec<Blob>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(listed::BLOBS)
            .bind(account)
            .bind(container)
            .bind(like_prefix(page.prefix))
            .bind(page.marker)
            .bind(i64::try_from(page.max).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter()
            .map(|(text,)| listed::blob(account, container, text))
            .collect()
    }

    async fn tagged_blobs(
        &self,
        account: &str,
        container: Option<&str>,
        after: (&str, &str),
        max: usize,
    ) -> Result<Vec<Blob>, Error> {
        let rows = sqlx::query(
            "SELECT account, container, name, etag, created_at, last_modified, size, file_id, content_type, content_encoding,
                content_language, content_disposition, cache_control, content_md5, metadata, committed_blocks, iif(typeof(content) = 'null', NULL, x'') AS content, is_dir, acl, state
             FROM blobs WHERE account = ?1 AND (?2 IS NULL OR container = ?2) AND state IS NOT NULL
                AND container NOT LIKE '$deleted/%'
                AND json_extract(state, '$.tags') IS NOT NULL AND (container, name) > (?3, ?4)
             ORDER BY container, name LIMIT ?5",
        )
        .bind(account)
        .bind(container)
        .bind(after.0)
        .bind(after.1)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::blob).collect()
    }

    async fn blob_put_keeping(
        &self,
        b: &Blob,
        check: Precondition<'_>,
        keep: Option<&Keep>,
    ) -> Result<Vec<String>, Error> {
        let result = self
            .writer
            .direct(|conn| super::direct::put_blob(conn, b, check, keep))
            .await;
        self.cache.forget_blob(&b.account, &b.container, &b.name);
        result
    }

    async fn blob_update(&self, b: &Blob, check: Precondition<'_>) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
        let current = current_blob(&mut tx, &b.account, &b.container, &b.name).await?;
        check(current.as_ref())?;
        if current.is_none() {
            return Err(Error::not_found("the blob does not exist"));
        }
        let p = &b.properties;
        sqlx::query(
            "UPDATE blobs SET etag = ?, last_modified = ?, content_type = ?, content_encoding = ?, content_language = ?,
                content_disposition = ?, cache_control = ?, content_md5 = ?, metadata = ?, acl = ?, state = ?
             WHERE account = ? AND container = ? AND name = ?",
        )
        .bind(&b.etag)
        .bind(b.last_modified)
        .bind(&p.content_type)
        .bind(&p.content_encoding)
        .bind(&p.content_language)
        .bind(&p.content_disposition)
        .bind(&p.cache_control)
        .bind(&p.content_md5)
        .bind(to_json(&b.metadata)?)
        .bind(acl_json(b.acl.as_ref())?)
        .bind(blob_state_json(&b.state)?)
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.name)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        Ok(())
        }
        .await;
        let result = tx.finish(result).await;
        self.cache.forget_blob(&b.account, &b.container, &b.name);
        result
    }

    async fn blob_delete_keeping(
        &self,
        account: &str,
        container: &str,
        name: &str,
        check: Precondition<'_>,
        keep: Option<&Keep>,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let current = current_blob(&mut tx, account, container, name).await?;
            check(current.as_ref())?;
            let Some(current) = current else {
                return Err(Error::not_found("the blob does not exist"));
            };
            sqlx::query("DELETE FROM blobs WHERE account = ? AND container = ? AND name = ?")
                .bind(account)
                .bind(container)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            let mut released = drop_blocks(&mut tx, account, container, &[name]).await?;
            let kept = match keep {
                Some(keep) => keep_current(&mut tx, &current, keep).await?,
                None => false,
            };
            if !kept {
                released.extend(current.content.file_id().map(str::to_owned));
            }
            Ok(released)
        }
        .await;
        let result = tx.finish(result).await;
        self.cache.forget_blob(account, container, name);
        result
    }

    async fn path_rename(
        &self,
        account: &str,
        container: &str,
        from: &str,
        to: &str,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = paths::rename(&mut tx, account, container, from, to, check).await;
        let result = tx.finish(result).await;
        self.cache.forget_all();
        result
    }

    async fn path_delete(
        &self,
        account: &str,
        container: &str,
        name: &str,
        recursive: bool,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = paths::delete(&mut tx, account, container, name, recursive, check).await;
        let result = tx.finish(result).await;
        self.cache.forget_all();
        result
    }

    async fn acl_update(
        &self,
        account: &str,
        container: &str,
        acls: &[(String, PathAcl)],
    ) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = paths::set_acls(&mut tx, account, container, acls).await;
        let result = tx.finish(result).await;
        self.cache.forget_all();
        result
    }

    async fn block_put(&self, b: &Block) -> Result<Option<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
        let old: Option<(String,)> = sqlx::query_as(
            "SELECT file_id FROM blocks WHERE account = ? AND container = ? AND blob = ? AND block_id = ?",
        )
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.blob)
        .bind(&b.block_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT OR REPLACE INTO blocks (account, container, blob, block_id, size, file_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.blob)
        .bind(&b.block_id)
        .bind(size_i64(b.size)?)
        .bind(&b.file_id)
        .bind(b.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        Ok(old.map(|(f,)| f))
        }
        .await;
        tx.finish(result).await
    }

    async fn staged_block_id(
        &self,
        account: &str,
        container: &str,
        blob: &str,
    ) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT block_id FROM blocks WHERE account = ? AND container = ? AND blob = ? LIMIT 1",
        )
        .bind(account)
        .bind(container)
        .bind(blob)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.map(|(id,)| id))
    }

    async fn blocks(
        &self,
        account: &str,
        container: &str,
        blob: &str,
    ) -> Result<Vec<Block>, Error> {
        let rows = sqlx::query("SELECT * FROM blocks WHERE account = ? AND container = ? AND blob = ? ORDER BY created_at, rowid")
            .bind(account)
            .bind(container)
            .bind(blob)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::block).collect()
    }

    async fn staged_names(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
    ) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT blob FROM blocks
             WHERE account = ? AND container = ? AND blob LIKE ? ESCAPE '\\' AND blob > ?
             ORDER BY blob LIMIT ?",
        )
        .bind(account)
        .bind(container)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(i64::try_from(page.max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    async fn blocks_expire(&self, before: i64) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> =
            sqlx::query_as("DELETE FROM blocks WHERE created_at < ? RETURNING file_id")
                .bind(before)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(rows.into_iter().map(|(f,)| f).collect())
    }

    async fn retained_put(&self, kept: &Retained) -> Result<Option<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = insert_retained(&mut tx, kept).await;
        tx.finish(result).await
    }

    async fn retained_one(
        &self,
        account: &str,
        container: &str,
        name: &str,
        kind: RetainedKind,
        id: &str,
    ) -> Result<Option<Retained>, Error> {
        sqlx::query(
            "SELECT * FROM blob_snapshots WHERE account = ? AND container = ? AND name = ? AND kind = ? AND snapshot = ?",
        )
        .bind(account)
        .bind(container)
        .bind(name)
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::retained)
        .transpose()
    }

    async fn retained(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Vec<Retained>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM blob_snapshots WHERE account = ? AND container = ? AND name = ? ORDER BY snapshot, kind",
        )
        .bind(account)
        .bind(container)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::retained).collect()
    }

    async fn retained_names(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
        kinds: &[RetainedKind],
        deleted: bool,
    ) -> Result<Vec<String>, Error> {
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT name FROM blob_snapshots
             WHERE account = ?1 AND container = ?2 AND name LIKE ?3 ESCAPE '\\' AND name > ?4
                AND kind IN (SELECT value FROM json_each(?5)) AND (?6 OR deleted_at IS NULL)
             ORDER BY name LIMIT ?7",
        )
        .bind(account)
        .bind(container)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(to_json(&kinds)?)
        .bind(deleted)
        .bind(i64::try_from(page.max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    async fn retained_delete(
        &self,
        account: &str,
        container: &str,
        name: &str,
        which: (Option<RetainedKind>, Option<&str>),
        soft: Option<(i64, i64)>,
    ) -> Result<Vec<String>, Error> {
        let kind = which.0.map(RetainedKind::as_str);
        let filter = "account = ?1 AND container = ?2 AND name = ?3 AND (?4 IS NULL OR kind = ?4)
            AND (?5 IS NULL OR snapshot = ?5)";
        if let Some((at, until)) = soft {
            sqlx::query(&format!(
                "UPDATE blob_snapshots SET deleted_at = ?6, expires_at = ?7 WHERE {filter} AND deleted_at IS NULL"
            ))
            .bind(account)
            .bind(container)
            .bind(name)
            .bind(kind)
            .bind(which.1)
            .bind(at)
            .bind(until)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
            return Ok(Vec::new());
        }
        let rows: Vec<(String,)> = sqlx::query_as(&format!(
            "DELETE FROM blob_snapshots WHERE {filter} RETURNING file_id"
        ))
        .bind(account)
        .bind(container)
        .bind(name)
        .bind(kind)
        .bind(which.1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(f,)| f)
            .filter(|f| !f.is_empty())
            .collect())
    }

    async fn undelete(&self, account: &str, container: &str, name: &str) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = retained::undelete(&mut tx, account, container, name).await;
        let result = tx.finish(result).await;
        self.cache.forget_blob(account, container, name);
        result
    }

    async fn retained_expire(&self, now: i64) -> Result<Vec<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = retained::expire(&mut tx, now).await;
        tx.finish(result).await
    }

    async fn file_ids(&self) -> Result<HashSet<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT file_id FROM blobs WHERE file_id != '' UNION SELECT file_id FROM blocks
             UNION SELECT file_id FROM blob_snapshots WHERE file_id != ''
             UNION SELECT file_id FROM registry_blobs
             UNION SELECT file_id FROM registry_uploads WHERE file_id != ''",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(f,)| f).collect())
    }
}
