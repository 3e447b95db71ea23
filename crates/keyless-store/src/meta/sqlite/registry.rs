//! The SQLite store's container registries.

use async_trait::async_trait;

use keyless_core::Error;

use super::{SqliteStore, db_error};
use crate::meta::rows;
use crate::registry::{Manifest, Registry, RegistryBlob, RegistryStore, Tag, Upload};

/// A size as SQLite stores it.
fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn registry_create(&self, r: &Registry) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO registries (name, id, tenant_id, subscription_id, resource_group, location, body, password1, password2, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&r.name)
            .bind(&r.id)
            .bind(r.tenant_id.to_string())
            .bind(&r.subscription_id)
            .bind(&r.resource_group)
            .bind(&r.location)
            .bind(r.body.to_string())
            .bind(&r.password1)
            .bind(&r.password2)
            .bind(r.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn registry(&self, name: &str) -> Result<Option<Registry>, Error> {
        sqlx::query("SELECT * FROM registries WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::registry)
            .transpose()
    }

    async fn registries(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<Registry>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM registries WHERE subscription_id = ?1 AND (?2 IS NULL OR resource_group = ?2)
             ORDER BY name",
        )
        .bind(subscription_id)
        .bind(resource_group)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::registry).collect()
    }

    async fn registry_update(&self, r: &Registry) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query(
                "UPDATE registries SET body = ?, password1 = ?, password2 = ? WHERE name = ?",
            )
            .bind(r.body.to_string())
            .bind(&r.password1)
            .bind(&r.password2)
            .bind(&r.name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            if done.rows_affected() == 0 {
                return Err(Error::not_found(format!(
                    "registry `{}` does not exist",
                    r.name
                )));
            }
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_delete(&self, name: &str) -> Result<Option<Vec<String>>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let files: Vec<(String,)> = sqlx::query_as(
                "SELECT file_id FROM registry_blobs WHERE registry = ?1
                 UNION SELECT file_id FROM registry_uploads WHERE registry = ?1 AND file_id != ''",
            )
            .bind(name)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            // Tags and memberships first: they refer to rows the cascade removes.
            for table in ["registry_tags", "registry_repository_blobs"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE registry = ?"))
                    .bind(name)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            let done = sqlx::query("DELETE FROM registries WHERE name = ?")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok((done.rows_affected() > 0).then(|| files.into_iter().map(|(f,)| f).collect()))
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_blob_add(
        &self,
        blob: &RegistryBlob,
        repository: &str,
    ) -> Result<RegistryBlob, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO registry_blobs (registry, digest, file_id, size, created_at)
                 VALUES (?, ?, ?, ?, ?) ON CONFLICT (registry, digest) DO NOTHING",
            )
            .bind(&blob.registry)
            .bind(&blob.digest)
            .bind(&blob.file_id)
            .bind(int(blob.size))
            .bind(blob.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            sqlx::query(
                "INSERT INTO registry_repository_blobs (registry, repository, digest) VALUES (?, ?, ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(&blob.registry)
            .bind(repository)
            .bind(&blob.digest)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            let row = sqlx::query("SELECT * FROM registry_blobs WHERE registry = ? AND digest = ?")
                .bind(&blob.registry)
                .bind(&blob.digest)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            rows::registry_blob(&row)
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_blob(
        &self,
        registry: &str,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, Error> {
        sqlx::query("SELECT * FROM registry_blobs WHERE registry = ? AND digest = ?")
            .bind(registry)
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::registry_blob)
            .transpose()
    }

    async fn registry_repository_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, Error> {
        sqlx::query(
            "SELECT b.* FROM registry_blobs b JOIN registry_repository_blobs r
             ON r.registry = b.registry AND r.digest = b.digest
             WHERE b.registry = ? AND r.repository = ? AND b.digest = ?",
        )
        .bind(registry)
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::registry_blob)
        .transpose()
    }

    async fn registry_blob_link(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query(
                "INSERT INTO registry_repository_blobs (registry, repository, digest)
                 SELECT registry, ?, digest FROM registry_blobs WHERE registry = ? AND digest = ?
                 ON CONFLICT DO NOTHING",
            )
            .bind(repository)
            .bind(registry)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            if done.rows_affected() > 0 {
                return Ok(true);
            }
            let held: Option<(i64,)> =
                sqlx::query_as("SELECT 1 FROM registry_blobs WHERE registry = ? AND digest = ?")
                    .bind(registry)
                    .bind(digest)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            Ok(held.is_some())
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_blob_unlink(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query(
                "DELETE FROM registry_repository_blobs WHERE registry = ? AND repository = ? AND digest = ?",
            )
            .bind(registry)
            .bind(repository)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_manifest_put(&self, m: &Manifest, tag: Option<&str>) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO registry_manifests (registry, repository, digest, media_type, body, created_at)
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(&m.registry)
            .bind(&m.repository)
            .bind(&m.digest)
            .bind(&m.media_type)
            .bind(&m.body)
            .bind(m.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            if let Some(tag) = tag {
                sqlx::query(
                    "INSERT INTO registry_tags (registry, repository, name, digest, updated_at)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (registry, repository, name)
                     DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
                )
                .bind(&m.registry)
                .bind(&m.repository)
                .bind(tag)
                .bind(&m.digest)
                .bind(m.created_at)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            }
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_manifest(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Manifest>, Error> {
        sqlx::query(
            "SELECT * FROM registry_manifests WHERE registry = ? AND repository = ? AND digest = ?",
        )
        .bind(registry)
        .bind(repository)
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::manifest)
        .transpose()
    }

    async fn registry_manifests(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<Manifest>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM registry_manifests WHERE registry = ? AND repository = ?
             ORDER BY created_at, digest",
        )
        .bind(registry)
        .bind(repository)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::manifest).collect()
    }

    async fn registry_manifest_delete(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            // Its tags go with it through ON DELETE CASCADE.
            let done = sqlx::query(
                "DELETE FROM registry_manifests WHERE registry = ? AND repository = ? AND digest = ?",
            )
            .bind(registry)
            .bind(repository)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_tag(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Tag>, Error> {
        sqlx::query(
            "SELECT * FROM registry_tags WHERE registry = ? AND repository = ? AND name = ?",
        )
        .bind(registry)
        .bind(repository)
        .bind(tag)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::tag)
        .transpose()
    }

    async fn registry_tags(&self, registry: &str, repository: &str) -> Result<Vec<Tag>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM registry_tags WHERE registry = ? AND repository = ? ORDER BY name",
        )
        .bind(registry)
        .bind(repository)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::tag).collect()
    }

    async fn registry_tag_delete(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query(
                "DELETE FROM registry_tags WHERE registry = ? AND repository = ? AND name = ?",
            )
            .bind(registry)
            .bind(repository)
            .bind(tag)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_repositories(&self, registry: &str) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT repository FROM registry_manifests WHERE registry = ? ORDER BY repository",
        )
        .bind(registry)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(r,)| r).collect())
    }

    async fn registry_repository_delete(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "DELETE FROM registry_repository_blobs WHERE registry = ? AND repository = ?",
            )
            .bind(registry)
            .bind(repository)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            let done =
                sqlx::query("DELETE FROM registry_manifests WHERE registry = ? AND repository = ?")
                    .bind(registry)
                    .bind(repository)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_upload_create(&self, u: &Upload) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO registry_uploads (id, registry, repository, file_id, size, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&u.id)
            .bind(&u.registry)
            .bind(&u.repository)
            .bind(&u.file_id)
            .bind(int(u.size))
            .bind(u.created_at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_upload(&self, registry: &str, id: &str) -> Result<Option<Upload>, Error> {
        sqlx::query("SELECT * FROM registry_uploads WHERE registry = ? AND id = ?")
            .bind(registry)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::upload)
            .transpose()
    }

    async fn registry_upload_advance(
        &self,
        registry: &str,
        id: &str,
        expected_size: u64,
        file_id: &str,
        size: u64,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query(
                "UPDATE registry_uploads SET file_id = ?, size = ? WHERE registry = ? AND id = ? AND size = ?",
            )
            .bind(file_id)
            .bind(int(size))
            .bind(registry)
            .bind(id)
            .bind(int(expected_size))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_upload_delete(
        &self,
        registry: &str,
        id: &str,
    ) -> Result<Option<Upload>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let row = sqlx::query(
                "DELETE FROM registry_uploads WHERE registry = ? AND id = ? RETURNING *",
            )
            .bind(registry)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?;
            row.as_ref().map(rows::upload).transpose()
        }
        .await;
        tx.finish(result).await
    }

    async fn registry_uploads_expire(&self, before: i64) -> Result<Vec<String>, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let rows: Vec<(String,)> = sqlx::query_as(
                "DELETE FROM registry_uploads WHERE created_at < ? RETURNING file_id",
            )
            .bind(before)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(rows
                .into_iter()
                .map(|(f,)| f)
                .filter(|f| !f.is_empty())
                .collect())
        }
        .await;
        tx.finish(result).await
    }
}
