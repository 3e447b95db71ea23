//! Storage accounts, containers, blobs and blocks on PostgreSQL.
//!
//! SQLite's single writer orders every write; here writers run at once, so a
//! write that reads what it replaces first takes the lock of what it writes:
//! a blob's name (a transaction-scoped advisory lock, which also covers a name
//! that has no row yet) and the rows it read (`FOR UPDATE`, which also stops the
//! writes that take no name lock: a directory's rename or delete, expiry), or a
//! container's row (`FOR UPDATE`).
//!
//! A write of a blob's name first shares its container's row (`FOR KEY SHARE`),
//! before any lock of its own; deleting or moving a container takes that row
//! `FOR UPDATE`, so it waits for the writes in the container to end and they
//! wait for it, instead of each holding what the other needs. The files the
//! delete releases are then the ones its rows name when it commits, and a write
//! that comes after it fails as `NotFound` through its foreign key.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Row};

use keyless_core::Error;
use keyless_core::acl::PathAcl;

use super::retained::{self, insert_retained, keep_current, move_container};
use super::{PostgresStore, db_error};
use crate::meta::rows::{
    self, acl_json, blob_state_json, container_state_json, corrupt, like_prefix, size_i64, to_json,
};
use crate::storage::{
    Blob, Block, Container, ContainerCheck, Content, DeletedContainer, Keep, Page, Precondition,
    Retained, RetainedKind, StorageAccount, StorageStore, deleted_container_name,
};

/// Waits for, and holds until the transaction ends, a share of the container's
/// row (if it exists) and then the lock of writes to one blob name (whether or
/// not a blob has it now).
pub(super) async fn lock_blob(
    tx: &mut PgConnection,
    account: &str,
    container: &str,
    name: &str,
) -> Result<(), Error> {
    sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM containers WHERE account = $1 AND name = $2 FOR KEY SHARE),
            pg_advisory_xact_lock(hashtextextended($3, 0))",
    )
    .bind(account)
    .bind(container)
    .bind(format!("{account}/{container}/{name}"))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// A container, its row locked as `lock` says until the transaction ends:
/// `FOR UPDATE` to delete or move it, `FOR NO KEY UPDATE` to change it (which
/// the writes in it do not wait for), `""` to only read it.
pub(super) async fn current_container(
    tx: &mut PgConnection,
    account: &str,
    name: &str,
    lock: &str,
) -> Result<Option<Container>, Error> {
    sqlx::query(&format!(
        "SELECT * FROM containers WHERE account = $1 AND name = $2 {lock}"
    ))
    .bind(account)
    .bind(name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?
    .as_ref()
    .map(rows::container)
    .transpose()
}

/// A blob, read in the transaction that holds its name's lock, its row locked
/// until the transaction ends.
pub(super) async fn current_blob(
    tx: &mut PgConnection,
    account: &str,
    container: &str,
    name: &str,
) -> Result<Option<Blob>, Error> {
    sqlx::query(
        "SELECT * FROM blobs WHERE account = $1 AND container = $2 AND name = $3 FOR UPDATE",
    )
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
async fn drop_blocks(
    tx: &mut PgConnection,
    account: &str,
    container: &str,
    blobs: &[&str],
) -> Result<Vec<String>, Error> {
    let mut files = Vec::new();
    for blob in blobs {
        let rows: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM blocks WHERE account = $1 AND container = $2 AND blob = $3 RETURNING file_id",
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

/// The files of every blob, kept state and block of an account, or of one of its
/// containers.
pub(super) async fn released_in(
    tx: &mut PgConnection,
    account: &str,
    container: Option<&str>,
) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT file_id FROM blobs WHERE account = $1 AND ($2::text IS NULL OR container = $2) AND file_id <> ''
         UNION ALL SELECT file_id FROM blob_snapshots
            WHERE account = $1 AND ($2::text IS NULL OR container = $2) AND file_id <> ''
         UNION ALL SELECT file_id FROM blocks WHERE account = $1 AND ($2::text IS NULL OR container = $2)",
    )
    .bind(account)
    .bind(container)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(rows.into_iter().map(|(f,)| f).collect())
}

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds a blob's columns from `etag` to `state`, in the order of the `blobs`
/// table (and of `blob_snapshots` after its kind and name).
pub(super) fn bind_blob<'q>(query: PgQuery<'q>, b: &'q Blob) -> Result<PgQuery<'q>, Error> {
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

/// Put Blob's row: a new blob, or the blob it replaces overwritten but for its
/// creation time.
const PUT_BLOB: &str = "INSERT INTO blobs (account, container, name, etag, created_at, last_modified, size, file_id,
        content_type, content_encoding, content_language, content_disposition, cache_control, content_md5, metadata,
        committed_blocks, content, is_dir, acl, state)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
    ON CONFLICT (account, container, name) DO UPDATE SET
        etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified, size = EXCLUDED.size,
        file_id = EXCLUDED.file_id, content_type = EXCLUDED.content_type,
        content_encoding = EXCLUDED.content_encoding, content_language = EXCLUDED.content_language,
        content_disposition = EXCLUDED.content_disposition, cache_control = EXCLUDED.cache_control,
        content_md5 = EXCLUDED.content_md5, metadata = EXCLUDED.metadata,
        committed_blocks = EXCLUDED.committed_blocks, content = EXCLUDED.content, is_dir = EXCLUDED.is_dir,
        acl = EXCLUDED.acl, state = EXCLUDED.state";

/// The columns of a listed blob: everything but the inline bytes, which come
/// back empty (still telling an inline blob from one in a file).
const LISTED_BLOB: &str = "account, container, name, etag, created_at, last_modified, size, file_id, content_type,
    content_encoding, content_language, content_disposition, cache_control, content_md5, metadata, committed_blocks,
    substring(content from 1 for 0) AS content, is_dir, acl, state";

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

#[async_trait]
impl StorageStore for PostgresStore {
    async fn account_create(&self, a: &StorageAccount) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO storage_accounts (name, id, id_key, tenant_id, subscription_id, resource_group, location, hns,
                allow_shared_key, body, key1, key2, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
        sqlx::query("SELECT * FROM storage_accounts WHERE name = $1")
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
            "SELECT * FROM storage_accounts WHERE subscription_id = $1 AND ($2::text IS NULL OR resource_group = $2)
             ORDER BY name",
        )
        .bind(subscription_id)
        .bind(resource_group)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::account).collect()
    }

    async fn account_update(&self, a: &StorageAccount) -> Result<(), Error> {
        let done = sqlx::query(
            "UPDATE storage_accounts SET allow_shared_key = $1, body = $2, key1 = $3, key2 = $4 WHERE name = $5",
        )
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
        let mut tx = self.begin().await?;
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT name FROM storage_accounts WHERE name = $1 FOR UPDATE")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        if exists.is_none() {
            return Ok(None);
        }
        // Its containers too, waiting for the writes in them (see the module's doc).
        sqlx::query("SELECT 1 FROM containers WHERE account = $1 ORDER BY name FOR UPDATE")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let files = released_in(&mut tx, name, None).await?;
        for table in ["blobs", "blob_snapshots", "blocks"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE account = $1"))
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        sqlx::query("DELETE FROM storage_accounts WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some(files))
    }

    async fn container_create(&self, c: &Container) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO containers (account, name, etag, last_modified, metadata, acl, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
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
        sqlx::query("SELECT * FROM containers WHERE account = $1 AND name = $2")
            .bind(account)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::container)
            .transpose()
    }

    async fn containers(&self, account: &str, page: Page<'_>) -> Result<Vec<Container>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM containers
             WHERE account = $1 AND name LIKE $2 ESCAPE '\\' AND name > $3 AND deleted_at IS NULL
             ORDER BY name LIMIT $4",
        )
        .bind(account)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(limit(page.max))
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
        let mut tx = self.begin().await?;
        let current = current_container(&mut tx, &c.account, &c.name, "FOR NO KEY UPDATE")
            .await?
            .ok_or_else(|| Error::not_found("the container does not exist"))?;
        check(&current)?;
        sqlx::query(
            "UPDATE containers SET etag = $1, last_modified = $2, metadata = $3, acl = $4, state = $5
             WHERE account = $6 AND name = $7",
        )
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
        tx.commit().await.map_err(db_error)
    }

    async fn container_delete_keeping(
        &self,
        account: &str,
        name: &str,
        check: ContainerCheck<'_>,
        keep: Option<(&str, i64, i64)>,
    ) -> Result<Option<Vec<String>>, Error> {
        let mut tx = self.begin().await?;
        let Some(current) = current_container(&mut tx, account, name, "FOR UPDATE").await? else {
            return Ok(None);
        };
        check(&current)?;
        let files = match keep {
            Some((version, at, until)) => {
                let hidden = deleted_container_name(name, version);
                move_container(&mut tx, account, name, &hidden, Some((at, until))).await?;
                Vec::new()
            }
            None => {
                let files = released_in(&mut tx, account, Some(name)).await?;
                sqlx::query("DELETE FROM containers WHERE account = $1 AND name = $2")
                    .bind(account)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
                files
            }
        };
        tx.commit().await.map_err(db_error)?;
        Ok(Some(files))
    }

    async fn containers_deleted(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<Vec<DeletedContainer>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM containers
             WHERE account = $1 AND name LIKE $2 ESCAPE '\\' AND deleted_at IS NOT NULL
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
        let mut tx = self.begin().await?;
        if current_container(&mut tx, account, &hidden, "FOR UPDATE")
            .await?
            .is_none()
        {
            return Err(Error::not_found("no such deleted container"));
        }
        if current_container(&mut tx, account, to, "").await?.is_some() {
            return Err(Error::exists("the container already exists"));
        }
        // Two restores under one new name both find it free; the second one's
        // insert then fails on the key, as `AlreadyExists`.
        move_container(&mut tx, account, &hidden, to, None).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn blob(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<Blob>, Error> {
        sqlx::query("SELECT * FROM blobs WHERE account = $1 AND container = $2 AND name = $3")
            .bind(account)
            .bind(container)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::blob)
            .transpose()
    }

    async fn blobs(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
    ) -> Result<Vec<Blob>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {LISTED_BLOB} FROM blobs
             WHERE account = $1 AND container = $2 AND name LIKE $3 ESCAPE '\\' AND name > $4
             ORDER BY name LIMIT $5"
        ))
        .bind(account)
        .bind(container)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(limit(page.max))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::blob).collect()
    }

    async fn tagged_blobs(
        &self,
        account: &str,
        container: Option<&str>,
        after: (&str, &str),
        max: usize,
    ) -> Result<Vec<Blob>, Error> {
        let rows = sqlx::query(&format!(
            "SELECT {LISTED_BLOB} FROM blobs
             WHERE account = $1 AND ($2::text IS NULL OR container = $2) AND state IS NOT NULL
                AND container NOT LIKE '$deleted/%'
                AND jsonb_typeof(state::jsonb -> 'tags') <> 'null' AND (container, name) > ($3, $4)
             ORDER BY container, name LIMIT $5"
        ))
        .bind(account)
        .bind(container)
        .bind(after.0)
        .bind(after.1)
        .bind(limit(max))
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
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, &b.account, &b.container, &b.name).await?;
        let current = current_blob(&mut tx, &b.account, &b.container, &b.name).await?;
        check(current.as_ref())?;
        // A write keeps the lease of the blob it replaces.
        let with_lease;
        let written = match current.as_ref().and_then(|c| c.state.lease.as_ref()) {
            Some(lease) if b.state.lease.is_none() => {
                let mut copy = b.clone();
                copy.state.lease = Some(lease.clone());
                with_lease = copy;
                &with_lease
            }
            _ => b,
        };
        let mut released = drop_blocks(&mut tx, &b.account, &b.container, &[&b.name]).await?;
        let query = sqlx::query(PUT_BLOB)
            .bind(&b.account)
            .bind(&b.container)
            .bind(&b.name);
        bind_blob(query, written)?
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if let Some(c) = &current {
            let kept = match keep {
                Some(keep) => keep_current(&mut tx, c, keep).await?,
                None => false,
            };
            if !kept {
                released.extend(c.content.file_id().map(str::to_owned));
            }
        }
        tx.commit().await.map_err(db_error)?;
        let new_file = b.content.file_id();
        released.retain(|f| Some(f.as_str()) != new_file);
        Ok(released)
    }

    async fn blob_update(&self, b: &Blob, check: Precondition<'_>) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, &b.account, &b.container, &b.name).await?;
        let current = current_blob(&mut tx, &b.account, &b.container, &b.name).await?;
        check(current.as_ref())?;
        if current.is_none() {
            return Err(Error::not_found("the blob does not exist"));
        }
        let p = &b.properties;
        sqlx::query(
            "UPDATE blobs SET etag = $1, last_modified = $2, content_type = $3, content_encoding = $4,
                content_language = $5, content_disposition = $6, cache_control = $7, content_md5 = $8, metadata = $9,
                acl = $10, state = $11
             WHERE account = $12 AND container = $13 AND name = $14",
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
        tx.commit().await.map_err(db_error)
    }

    async fn blob_delete_keeping(
        &self,
        account: &str,
        container: &str,
        name: &str,
        check: Precondition<'_>,
        keep: Option<&Keep>,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, account, container, name).await?;
        let current = current_blob(&mut tx, account, container, name).await?;
        check(current.as_ref())?;
        let Some(current) = current else {
            return Err(Error::not_found("the blob does not exist"));
        };
        sqlx::query("DELETE FROM blobs WHERE account = $1 AND container = $2 AND name = $3")
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
        tx.commit().await.map_err(db_error)?;
        Ok(released)
    }

    async fn path_rename(
        &self,
        account: &str,
        container: &str,
        from: &str,
        to: &str,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.begin().await?;
        // Both names, in one order for every renamer, so that two renames cannot
        // wait for each other.
        let (first, second) = if from <= to { (from, to) } else { (to, from) };
        lock_blob(&mut tx, account, container, first).await?;
        lock_blob(&mut tx, account, container, second).await?;
        let source = current_blob(&mut tx, account, container, from)
            .await?
            .ok_or_else(|| Error::not_found("the source path does not exist"))?;
        let dest = current_blob(&mut tx, account, container, to).await?;
        check(dest.as_ref())?;
        let mut released = Vec::new();
        if let Some(d) = dest {
            if d.is_dir || source.is_dir {
                return Err(Error::exists("the destination path already exists"));
            }
            released.extend(d.content.file_id().map(str::to_owned));
            sqlx::query("DELETE FROM blobs WHERE account = $1 AND container = $2 AND name = $3")
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
                "UPDATE blobs SET name = $1 || substr(name, $2)
                 WHERE account = $3 AND container = $4 AND name LIKE $5 ESCAPE '\\'",
            )
            .bind(format!("{to}/"))
            .bind(i32::try_from(under.chars().count() + 1).unwrap_or(i32::MAX))
            .bind(account)
            .bind(container)
            .bind(like_prefix(&under))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE blobs SET name = $1 WHERE account = $2 AND container = $3 AND name = $4",
        )
        .bind(to)
        .bind(account)
        .bind(container)
        .bind(from)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        released.extend(drop_blocks(&mut tx, account, container, &[from, to]).await?);
        tx.commit().await.map_err(db_error)?;
        Ok(released)
    }

    async fn path_delete(
        &self,
        account: &str,
        container: &str,
        name: &str,
        recursive: bool,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error> {
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, account, container, name).await?;
        let current = current_blob(&mut tx, account, container, name)
            .await?
            .ok_or_else(|| Error::not_found("the path does not exist"))?;
        check(Some(&current))?;
        let under = like_prefix(&format!("{name}/"));
        if current.is_dir && !recursive {
            let child: Option<(String,)> = sqlx::query_as(
                "SELECT name FROM blobs WHERE account = $1 AND container = $2 AND name LIKE $3 ESCAPE '\\' LIMIT 1",
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
                "DELETE FROM blobs WHERE account = $1 AND container = $2 AND name LIKE $3 ESCAPE '\\'
                 RETURNING file_id",
            )
            .bind(account)
            .bind(container)
            .bind(&under)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            released.extend(files.into_iter().map(|(f,)| f).filter(|f| !f.is_empty()));
        }
        sqlx::query("DELETE FROM blobs WHERE account = $1 AND container = $2 AND name = $3")
            .bind(account)
            .bind(container)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let blocks: Vec<(String,)> = sqlx::query_as(
            "DELETE FROM blocks WHERE account = $1 AND container = $2 AND (blob = $3 OR blob LIKE $4 ESCAPE '\\')
             RETURNING file_id",
        )
        .bind(account)
        .bind(container)
        .bind(name)
        .bind(&under)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        released.extend(blocks.into_iter().map(|(f,)| f));
        tx.commit().await.map_err(db_error)?;
        Ok(released)
    }

    async fn acl_update(
        &self,
        account: &str,
        container: &str,
        acls: &[(String, PathAcl)],
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        for (name, acl) in acls {
            sqlx::query(
                "UPDATE blobs SET acl = $1 WHERE account = $2 AND container = $3 AND name = $4",
            )
            .bind(to_json(acl)?)
            .bind(account)
            .bind(container)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn block_put(&self, b: &Block) -> Result<Option<String>, Error> {
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, &b.account, &b.container, &b.blob).await?;
        let old: Option<(String,)> = sqlx::query_as(
            "SELECT file_id FROM blocks WHERE account = $1 AND container = $2 AND blob = $3 AND block_id = $4",
        )
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.blob)
        .bind(&b.block_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        // A block staged again goes to the end of the staging order, as a new row
        // does in the SQLite store.
        sqlx::query(
            "DELETE FROM blocks WHERE account = $1 AND container = $2 AND blob = $3 AND block_id = $4",
        )
        .bind(&b.account)
        .bind(&b.container)
        .bind(&b.blob)
        .bind(&b.block_id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO blocks (account, container, blob, block_id, size, file_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
        tx.commit().await.map_err(db_error)?;
        Ok(old.map(|(f,)| f))
    }

    async fn staged_block_id(
        &self,
        account: &str,
        container: &str,
        blob: &str,
    ) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT block_id FROM blocks WHERE account = $1 AND container = $2 AND blob = $3 LIMIT 1",
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
        let rows = sqlx::query(
            "SELECT * FROM blocks WHERE account = $1 AND container = $2 AND blob = $3 ORDER BY created_at, seq",
        )
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
             WHERE account = $1 AND container = $2 AND blob LIKE $3 ESCAPE '\\' AND blob > $4
             ORDER BY blob LIMIT $5",
        )
        .bind(account)
        .bind(container)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(limit(page.max))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(n,)| n).collect())
    }

    async fn blocks_expire(&self, before: i64) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> =
            sqlx::query_as("DELETE FROM blocks WHERE created_at < $1 RETURNING file_id")
                .bind(before)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(rows.into_iter().map(|(f,)| f).collect())
    }

    async fn retained_put(&self, kept: &Retained) -> Result<Option<String>, Error> {
        let b = &kept.blob;
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, &b.account, &b.container, &b.name).await?;
        let replaced = insert_retained(&mut tx, kept).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(replaced)
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
            "SELECT * FROM blob_snapshots
             WHERE account = $1 AND container = $2 AND name = $3 AND kind = $4 AND snapshot = $5",
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
            "SELECT * FROM blob_snapshots WHERE account = $1 AND container = $2 AND name = $3
             ORDER BY snapshot, kind",
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
             WHERE account = $1 AND container = $2 AND name LIKE $3 ESCAPE '\\' AND name > $4
                AND kind = ANY($5) AND ($6 OR deleted_at IS NULL)
             ORDER BY name LIMIT $7",
        )
        .bind(account)
        .bind(container)
        .bind(like_prefix(page.prefix))
        .bind(page.marker)
        .bind(&kinds)
        .bind(deleted)
        .bind(limit(page.max))
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
        let filter =
            "account = $1 AND container = $2 AND name = $3 AND ($4::text IS NULL OR kind = $4)
            AND ($5::text IS NULL OR snapshot = $5)";
        if let Some((at, until)) = soft {
            sqlx::query(&format!(
                "UPDATE blob_snapshots SET deleted_at = $6, expires_at = $7 WHERE {filter} AND deleted_at IS NULL"
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
        let mut tx = self.begin().await?;
        lock_blob(&mut tx, account, container, name).await?;
        retained::undelete(&mut tx, account, container, name).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn retained_expire(&self, now: i64) -> Result<Vec<String>, Error> {
        let mut tx = self.begin().await?;
        let files = retained::expire(&mut tx, now).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(files)
    }

    async fn file_ids(&self) -> Result<HashSet<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT file_id FROM blobs WHERE file_id <> '' UNION SELECT file_id FROM blocks
             UNION SELECT file_id FROM blob_snapshots WHERE file_id <> ''
             UNION SELECT file_id FROM registry_blobs
             UNION SELECT file_id FROM registry_uploads WHERE file_id <> ''",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(f,)| f).collect())
    }
}
