//! The PostgreSQL store's tokens records.

use async_trait::async_trait;

use keyless_core::{Error, ObjectId, TenantId};

use super::{PostgresStore, db_error};
use crate::meta::rows;
use crate::meta::{AuthorizationCode, DeviceCode, RefreshGrant, SealedSigningKey, TokenStore};

#[async_trait]
impl TokenStore for PostgresStore {
    async fn signing_key_add(&self, key: &SealedSigningKey) -> Result<(), Error> {
        sqlx::query("INSERT INTO signing_keys (kid, sealed, created_at) VALUES ($1, $2, $3)")
            .bind(&key.kid)
            .bind(&key.sealed)
            .bind(key.created_at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SealedSigningKey>, Error> {
        // PostgreSQL has no rowid: keys of the same second are ordered by kid, not
        // by insertion as in SQLite.
        let rows: Vec<(String, Vec<u8>, i64)> = sqlx::query_as(
            "SELECT kid, sealed, created_at FROM signing_keys ORDER BY created_at DESC, seq DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|(kid, sealed, created_at)| SealedSigningKey {
                kid,
                sealed,
                created_at,
            })
            .collect())
    }

    async fn signing_keys_prune(&self, created_before: i64) -> Result<(), Error> {
        sqlx::query("DELETE FROM signing_keys WHERE created_at < $1")
            .bind(created_before)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn signing_key_reseal(&self, kid: &str, sealed: &[u8]) -> Result<(), Error> {
        sqlx::query("UPDATE signing_keys SET sealed = $1 WHERE kid = $2")
            .bind(sealed)
            .bind(kid)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn refresh_token_add(&self, digest: &str, g: &RefreshGrant) -> Result<(), Error> {
        sqlx::query("INSERT INTO refresh_tokens (digest, principal_id, tenant_id, client_id, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(digest)
            .bind(g.principal_id.to_string())
            .bind(g.tenant_id.to_string())
            .bind(&g.client_id)
            .bind(g.expires_at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn refresh_token_take(
        &self,
        digest: &str,
        client_id: &str,
    ) -> Result<Option<RefreshGrant>, Error> {
        // One statement: of two callers at once, the second waits for the first's
        // delete and then finds no row, so the token is handed out once.
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM refresh_tokens WHERE digest = $1 AND lower(client_id) = lower($2) RETURNING principal_id, tenant_id, client_id, expires_at",
        )
        .bind(digest)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|(p, t, client_id, expires_at)| {
            Ok(RefreshGrant {
                principal_id: ObjectId::parse(&p)?,
                tenant_id: TenantId::parse(&t)?,
                client_id,
                expires_at,
            })
        })
        .transpose()
    }

    async fn device_code_add(&self, d: &DeviceCode) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO device_codes (digest, user_code, tenant_id, client_id, scope, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.digest)
        .bind(&d.user_code)
        .bind(d.tenant_id.to_string())
        .bind(&d.client_id)
        .bind(&d.scope)
        .bind(d.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn device_code_by_user_code(&self, user_code: &str) -> Result<Option<DeviceCode>, Error> {
        sqlx::query("SELECT * FROM device_codes WHERE user_code = $1")
            .bind(user_code)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::device_code)
            .transpose()
    }

    async fn device_code_approve(&self, user_code: &str, user: ObjectId) -> Result<(), Error> {
        // Of two approvals at once, the second waits for the first and then finds
        // the code approved already.
        let done = sqlx::query(
            "UPDATE device_codes SET approved_by = $1 WHERE user_code = $2 AND approved_by IS NULL",
        )
        .bind(user.to_string())
        .bind(user_code)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "no pending sign-in has the code `{user_code}`"
            )));
        }
        Ok(())
    }

    async fn device_code_poll(&self, digest: &str) -> Result<Option<DeviceCode>, Error> {
        // One statement, so that an approved code is handed out once even to two
        // pollers at once: an approved code is deleted and returned; a pending one
        // is returned as it is. A poller that finds the approved code deleted by
        // another meanwhile (its delete takes no row) gets nothing: the pending
        // branch returns only codes nobody approved.
        sqlx::query(
            "WITH taken AS (DELETE FROM device_codes WHERE digest = $1 AND approved_by IS NOT NULL RETURNING *)
             SELECT * FROM taken
             UNION ALL
             SELECT * FROM device_codes WHERE digest = $1 AND approved_by IS NULL AND NOT EXISTS (SELECT 1 FROM taken)",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .as_ref()
        .map(rows::device_code)
        .transpose()
    }

    async fn device_codes_expire(&self, now: i64) -> Result<u64, Error> {
        let done = sqlx::query("DELETE FROM device_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn authorization_code_add(&self, a: &AuthorizationCode) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO authorization_codes (digest, tenant_id, principal_id, client_id, scope, redirect_uri, code_challenge, nonce, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&a.digest)
        .bind(a.tenant_id.to_string())
        .bind(a.principal_id.to_string())
        .bind(&a.client_id)
        .bind(&a.scope)
        .bind(&a.redirect_uri)
        .bind(&a.code_challenge)
        .bind(&a.nonce)
        .bind(a.expires_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn authorization_code_take(
        &self,
        digest: &str,
    ) -> Result<Option<AuthorizationCode>, Error> {
        // One statement: of two callers at once, only one gets the row.
        let row = sqlx::query("DELETE FROM authorization_codes WHERE digest = $1 RETURNING *")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::authorization_code).transpose()
    }

    async fn authorization_codes_expire(&self, now: i64) -> Result<u64, Error> {
        let done = sqlx::query("DELETE FROM authorization_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn use_once(&self, key: &str, now: i64, expires_at: i64) -> Result<bool, Error> {
        // Inserted, or taking the place of an expired use: one statement, so
        // of two callers one alone changes a row.
        let done = sqlx::query(
            "INSERT INTO used_once (key, expires_at) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
             WHERE used_once.expires_at <= $3",
        )
        .bind(key)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn used_once_expire(&self, now: i64) -> Result<u64, Error> {
        let done = sqlx::query("DELETE FROM used_once WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn sign_in_failed(
        &self,
        key: &str,
        now: i64,
        window: i64,
        threshold: u32,
        lockout: i64,
    ) -> Result<i64, Error> {
        // One statement, so failures at once on several servers all count.
        // (In `SET`, the table's columns are the row before the update.)
        let (locked_until,): (i64,) = sqlx::query_as(
            "INSERT INTO sign_in_failures (key, since, count, locked_until)
             VALUES ($1, $2, 1, CASE WHEN 1 >= $4 THEN $2 + $5 ELSE 0 END)
             ON CONFLICT (key) DO UPDATE SET
               count = CASE WHEN sign_in_failures.since + $3 <= $2 THEN 1
                            ELSE sign_in_failures.count + 1 END,
               since = CASE WHEN sign_in_failures.since + $3 <= $2 THEN $2
                            ELSE sign_in_failures.since END,
               locked_until = CASE
                 WHEN (CASE WHEN sign_in_failures.since + $3 <= $2 THEN 1
                            ELSE sign_in_failures.count + 1 END) >= $4 THEN $2 + $5
                 ELSE sign_in_failures.locked_until END
             RETURNING locked_until",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .bind(i64::from(threshold))
        .bind(lockout)
        .fetch_one(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(locked_until)
    }

    async fn sign_in_locked_until(&self, key: &str) -> Result<i64, Error> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT locked_until FROM sign_in_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(row.map_or(0, |(until,)| until))
    }

    async fn sign_in_forget(&self, key: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM sign_in_failures WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn sign_in_failures_expire(&self, before: i64, now: i64) -> Result<u64, Error> {
        let done =
            sqlx::query("DELETE FROM sign_in_failures WHERE since < $1 AND locked_until <= $2")
                .bind(before)
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(db_error)?;
        Ok(done.rows_affected())
    }

    async fn setting(&self, key: &str) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.map(|(v,)| v))
    }

    async fn setting_set(&self, key: &str, value: &str) -> Result<(), Error> {
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }
}
