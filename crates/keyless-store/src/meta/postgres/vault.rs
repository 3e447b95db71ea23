//! The PostgreSQL store's vault records.

use async_trait::async_trait;

use keyless_core::{Error, ErrorKind};

use super::{PostgresStore, db_error};
use crate::meta::rows;
use crate::vault::{DeletedSecret, SecretVersion, Vault, VaultStore};

/// Live secrets: no row in `deleted_secrets`.
const LIVE: &str =
    "NOT EXISTS (SELECT 1 FROM deleted_secrets d WHERE d.vault = s.vault AND d.name = s.name)";

/// The newest version first: versions created in the same second by insertion.
const NEWEST_FIRST: &str = "created DESC, seq DESC";

/// Orders the writers that read a secret's deletion mark and then write by it
/// (adding a version, soft-deleting, purging), as SQLite's single writer did: it
/// locks the vault's row (`FOR NO KEY UPDATE`, which the foreign-key checks of
/// inserted secrets do not wait for). A missing vault locks nothing.
async fn lock_vault(tx: &mut sqlx::PgConnection, vault: &str) -> Result<(), Error> {
    sqlx::query("SELECT 1 FROM vaults WHERE name = $1 FOR NO KEY UPDATE")
        .bind(vault)
        .execute(tx)
        .await
        .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl VaultStore for PostgresStore {
    async fn vault_create(&self, v: &Vault) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO vaults (name, id, tenant_id, subscription_id, resource_group, location, body, created_at, deleted_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn vault(&self, name: &str) -> Result<Option<Vault>, Error> {
        sqlx::query("SELECT * FROM vaults WHERE name = $1")
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
            "SELECT * FROM vaults WHERE subscription_id = $1 AND ($2::text IS NULL OR resource_group = $2)
             AND (deleted_at IS NOT NULL) = $3 ORDER BY name",
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
        let done = sqlx::query("UPDATE vaults SET body = $1, deleted_at = $2 WHERE name = $3")
            .bind(v.body.to_string())
            .bind(v.deleted_at)
            .bind(&v.name)
            .execute(&self.pool)
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

    async fn vault_purge(&self, name: &str) -> Result<bool, Error> {
        // Its secrets and deletion marks go with it through ON DELETE CASCADE.
        let done = sqlx::query("DELETE FROM vaults WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn secret_add(&self, s: &SecretVersion) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        // A soft-delete committed between the check and the insert would hide the
        // new version under the deletion mark: the vault lock orders them.
        lock_vault(&mut tx, &s.vault).await?;
        let deleted: Option<(i64,)> =
            sqlx::query_as("SELECT deleted_at FROM deleted_secrets WHERE vault = $1 AND name = $2")
                .bind(&s.vault)
                .bind(&s.name)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_error)?;
        if deleted.is_some() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "secret `{}` is deleted but recoverable; recover or purge it first",
                    s.name
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO secrets (vault, name, version, created, updated, enabled, not_before, expires, content_type, tags, wrapped_key, sealed_value)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
        tx.commit().await.map_err(db_error)
    }

    async fn secret(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        deleted: bool,
    ) -> Result<Option<SecretVersion>, Error> {
        let sql = format!(
            "SELECT * FROM secrets s WHERE vault = $1 AND name = $2 AND ($3::text IS NULL OR version = $3) AND {}{LIVE}
             ORDER BY {NEWEST_FIRST} LIMIT 1",
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
        // (vault, name, version) is the key: the version names the latest row.
        let sql = format!(
            "SELECT * FROM secrets s WHERE vault = $1 AND {LIVE} AND version = (
                SELECT version FROM secrets l WHERE l.vault = s.vault AND l.name = s.name ORDER BY {NEWEST_FIRST} LIMIT 1)
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
            "SELECT * FROM secrets s WHERE vault = $1 AND name = $2 AND {LIVE} ORDER BY created, seq"
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
        sqlx::query(
            "UPDATE secrets SET updated = $1, enabled = $2, not_before = $3, expires = $4, content_type = $5, tags = $6
             WHERE vault = $7 AND name = $8 AND version = $9",
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn secret_delete(
        &self,
        vault: &str,
        name: &str,
        deleted_at: i64,
        scheduled_purge: i64,
    ) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        // Two deletes at once must not both count the secret live (the second
        // would then fail on the mark's key instead of answering false), nor a
        // version be added between the count and the mark.
        lock_vault(&mut tx, vault).await?;
        let sql =
            format!("SELECT COUNT(*) FROM secrets s WHERE vault = $1 AND name = $2 AND {LIVE}");
        let (live,): (i64,) = sqlx::query_as(&sql)
            .bind(vault)
            .bind(name)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        if live == 0 {
            return Ok(false);
        }
        sqlx::query("INSERT INTO deleted_secrets (vault, name, deleted_at, scheduled_purge) VALUES ($1, $2, $3, $4)")
            .bind(vault)
            .bind(name)
            .bind(deleted_at)
            .bind(scheduled_purge)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn deleted_secret(
        &self,
        vault: &str,
        name: &str,
    ) -> Result<Option<DeletedSecret>, Error> {
        let mark: Option<(i64, i64)> = sqlx::query_as(
            "SELECT deleted_at, scheduled_purge FROM deleted_secrets WHERE vault = $1 AND name = $2",
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
            sqlx::query_as("SELECT name FROM deleted_secrets WHERE vault = $1 ORDER BY name")
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
        let done = sqlx::query("DELETE FROM deleted_secrets WHERE vault = $1 AND name = $2")
            .bind(vault)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn secret_purge(&self, vault: &str, name: &str) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        lock_vault(&mut tx, vault).await?;
        let done = sqlx::query("DELETE FROM deleted_secrets WHERE vault = $1 AND name = $2")
            .bind(vault)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM secrets WHERE vault = $1 AND name = $2")
            .bind(vault)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
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
        let mut tx = self.begin().await?;
        for (vault, name, version, wrapped) in keys {
            sqlx::query(
                "UPDATE secrets SET wrapped_key = $1 WHERE vault = $2 AND name = $3 AND version = $4",
            )
            .bind(wrapped)
            .bind(vault)
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }
}
