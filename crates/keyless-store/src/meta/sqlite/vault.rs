use async_trait::async_trait;

use keyless_core::{Error, ErrorKind};

use super::{SqliteStore, db_error};
use crate::meta::rows;
use crate::vault::{DeletedSecret, SecretVersion, Vault, VaultStore};

/// Live secrets: no row in `deleted_secrets`.
const LIVE: &str =
    "NOT EXISTS (SELECT 1 FROM deleted_secrets d WHERE d.vault = s.vault AND d.name = s.name)";

#[async_trait]
impl VaultStore for SqliteStore {
    async fn vault_create(&self, v: &Vault) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "INSERT INTO vaults (name, id, tenant_id, subscription_id, resource_group, location, body, created_at, deleted_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&v.name)
            .bind(&v.id)
            .bind(v.tenant_id.to_string())
            .bind(&v.subscription_id)
            .bind(&v.resource_group)
            .bind(&v.location)
            .bind(v.body.to_string())
            .bind(v.created_at)
            .bind(v.deleted_at)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn vault(&self, name: &str) -> Result<Option<Vault>, Error> {
        sqlx::query("SELECT * FROM vaults WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::vault)
            .transpose()
    }

    async fn vaults(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
        deleted: bool,
    ) -> Result<Vec<Vault>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM vaults WHERE subscription_id = ?1 AND (?2 IS NULL OR resource_group = ?2)
             AND (deleted_at IS NOT NULL) = ?3 ORDER BY name",
        )
        .bind(subscription_id)
        .bind(resource_group)
        .bind(deleted)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::vault).collect()
    }

    async fn vault_update(&self, v: &Vault) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query("UPDATE vaults SET body = ?, deleted_at = ? WHERE name = ?")
                .bind(v.body.to_string())
                .bind(v.deleted_at)
                .bind(&v.name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if done.rows_affected() == 0 {
                return Err(Error::not_found(format!(
                    "vault `{}` does not exist",
                    v.name
                )));
            }
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn vault_purge(&self, name: &str) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query("DELETE FROM vaults WHERE name = ?")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn secret_add(&self, s: &SecretVersion) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let deleted: Option<(i64,)> =
                sqlx::query_as("SELECT deleted_at FROM deleted_secrets WHERE vault = ? AND name = ?")
                    .bind(&s.vault)
                    .bind(&s.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_error)?;
            if deleted.is_some() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("secret `{}` is deleted but recoverable; recover or purge it first", s.name),
                ));
            }
            sqlx::query(
                "INSERT INTO secrets (vault, name, version, created, updated, enabled, not_before, expires, content_type, tags, wrapped_key, sealed_value)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&s.vault)
            .bind(&s.name)
            .bind(&s.version)
            .bind(s.created)
            .bind(s.updated)
            .bind(s.enabled)
            .bind(s.not_before)
            .bind(s.expires)
            .bind(&s.content_type)
            .bind(s.tags.to_string())
            .bind(&s.wrapped_key)
            .bind(&s.sealed_value)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn secret(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        deleted: bool,
    ) -> Result<Option<SecretVersion>, Error> {
        let sql = format!(
            "SELECT * FROM secrets s WHERE vault = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3) AND {}{LIVE}
             ORDER BY created DESC, rowid DESC LIMIT 1",
            if deleted { "NOT " } else { "" }
        );
        sqlx::query(&sql)
            .bind(vault)
            .bind(name)
            .bind(version)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::secret)
            .transpose()
    }

    async fn secrets(&self, vault: &str) -> Result<Vec<SecretVersion>, Error> {
        let sql = format!(
            "SELECT * FROM secrets s WHERE vault = ? AND {LIVE} AND rowid = (
                SELECT rowid FROM secrets l WHERE l.vault = s.vault AND l.name = s.name ORDER BY created DESC, rowid DESC LIMIT 1)
             ORDER BY name"
        );
        let rows = sqlx::query(&sql)
            .bind(vault)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::secret).collect()
    }

    async fn secret_versions(&self, vault: &str, name: &str) -> Result<Vec<SecretVersion>, Error> {
        let sql = format!(
            "SELECT * FROM secrets s WHERE vault = ? AND name = ? AND {LIVE} ORDER BY created, rowid"
        );
        let rows = sqlx::query(&sql)
            .bind(vault)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::secret).collect()
    }

    async fn secret_update(&self, s: &SecretVersion) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            sqlx::query(
                "UPDATE secrets SET updated = ?, enabled = ?, not_before = ?, expires = ?, content_type = ?, tags = ?
                 WHERE vault = ? AND name = ? AND version = ?",
            )
            .bind(s.updated)
            .bind(s.enabled)
            .bind(s.not_before)
            .bind(s.expires)
            .bind(&s.content_type)
            .bind(s.tags.to_string())
            .bind(&s.vault)
            .bind(&s.name)
            .bind(&s.version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
            Ok(())
        }
        .await;
        tx.finish(result).await
    }

    async fn secret_delete(
        &self,
        vault: &str,
        name: &str,
        deleted_at: i64,
        scheduled_purge: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let sql = format!("SELECT COUNT(*) FROM secrets s WHERE vault = ? AND name = ? AND {LIVE}");
            let (live,): (i64,) = sqlx::query_as(&sql)
                .bind(vault)
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_error)?;
            if live == 0 {
                return Ok(false);
            }
            sqlx::query("INSERT INTO deleted_secrets (vault, name, deleted_at, scheduled_purge) VALUES (?, ?, ?, ?)")
                .bind(vault)
                .bind(name)
                .bind(deleted_at)
                .bind(scheduled_purge)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok(true)
        }
        .await;
        tx.finish(result).await
    }

    async fn deleted_secret(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<Option<DeletedSecret>, Error> {
        let mark: Option<(i64, i64)> = sqlx::query_as(
            "SELECT deleted_at, scheduled_purge FROM deleted_secrets WHERE vault = ? AND name = ?",
        )
        .bind(vault)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        let Some((deleted_at, scheduled_purge)) = mark else {
            return Ok(None);
        };
        Ok(self
            .secret(vault, name, None, true)
            .await?
            .map(|latest| DeletedSecret {
                deleted_at,
                scheduled_purge,
                latest,
            }))
    }

    async fn deleted_secrets(&self, vault: &str) -> Result<Vec<DeletedSecret>, Error> {
        let names: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM deleted_secrets WHERE vault = ? ORDER BY name")
                .bind(vault)
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        let mut out = Vec::new();
        for (name,) in names {
            out.extend(self.deleted_secret(vault, &name).await?);
        }
        Ok(out)
    }

    async fn secret_recover(&self, vault: &str, name: &str) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query("DELETE FROM deleted_secrets WHERE vault = ? AND name = ?")
                .bind(vault)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok(done.rows_affected() > 0)
        }
        .await;
        tx.finish(result).await
    }

    async fn secret_purge(&self, vault: &str, name: &str) -> Result<bool, Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            let done = sqlx::query("DELETE FROM deleted_secrets WHERE vault = ? AND name = ?")
                .bind(vault)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM secrets WHERE vault = ? AND name = ?")
                .bind(vault)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Ok(true)
        }
        .await;
        tx.finish(result).await
    }

    async fn all_secret_versions(&self) -> Result<Vec<SecretVersion>, Error> {
        let rows = sqlx::query("SELECT * FROM secrets")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::secret).collect()
    }

    async fn secret_keys_rewrap(
        &self,
        keys: &[(String, String, String, Vec<u8>)],
    ) -> Result<(), Error> {
        let mut tx = self.writer.begin().await?;
        let result = async {
            for (vault, name, version, wrapped) in keys {
                sqlx::query("UPDATE secrets SET wrapped_key = ? WHERE vault = ? AND name = ? AND version = ?")
                    .bind(wrapped)
                    .bind(vault)
                    .bind(name)
                    .bind(version)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error)?;
            }
            Ok(())
        }
        .await;
        tx.finish(result).await
    }
}
