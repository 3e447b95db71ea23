//! The PostgreSQL store's directory records.

use async_trait::async_trait;
use sqlx::Row;

use keyless_core::{ClientId, Error, ErrorKind, ObjectId, Principal, PrincipalKind, TenantId};

use super::{PostgresStore, db_error};
use crate::meta::rows::{self, PRINCIPAL_COLUMNS};
use crate::meta::{Credential, DirectoryStore, Tenant};

/// The key of the transaction-scoped advisory lock that orders the writers of
/// group memberships, so that each one's cycle check sees every membership
/// added before it (`"klgroups"` in ASCII).
const GROUP_MEMBERSHIP_LOCK: i64 = 0x6b6c_6772_6f75_7073;

async fn insert_credential<'c, E: sqlx::PgExecutor<'c>>(
    exec: E,
    c: &Credential,
) -> Result<(), Error> {
    let cols = rows::credential_columns(c)?;
    sqlx::query(
        "INSERT INTO credentials (id, principal_id, kind, display_name, hint, secret_digest, thumbprint, public_key, issuer, subject, audiences, starts_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&c.id)
    .bind(c.principal_id.to_string())
    .bind(cols.kind)
    .bind(&c.display_name)
    .bind(cols.hint)
    .bind(cols.digest)
    .bind(cols.thumbprint)
    .bind(cols.public_key)
    .bind(cols.issuer)
    .bind(cols.subject)
    .bind(cols.audiences)
    .bind(c.starts_at)
    .bind(c.expires_at)
    .execute(exec)
    .await
    .map_err(db_error)?;
    Ok(())
}

impl PostgresStore {
    async fn principal_where(
        &self,
        clause: &str,
        value: String,
    ) -> Result<Option<Principal>, Error> {
        let sql = format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE {clause}");
        sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::principal)
            .transpose()
    }
}

#[async_trait]
impl DirectoryStore for PostgresStore {
    async fn tenant_create(&self, t: &Tenant) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO tenants (id, domain, display_name, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(t.id.to_string())
        .bind(&t.domain)
        .bind(&t.display_name)
        .bind(t.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, Error> {
        // The id breaks ties of the creation time (SQLite's order of insertion).
        let rows = sqlx::query("SELECT * FROM tenants ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::tenant).collect()
    }

    async fn tenant(&self, id_or_domain: &str) -> Result<Option<Tenant>, Error> {
        // `domain` is `nocase`: the comparison is case-blind.
        sqlx::query("SELECT * FROM tenants WHERE id = lower($1) OR domain = $1")
            .bind(id_or_domain)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::tenant)
            .transpose()
    }

    async fn principal_create(
        &self,
        p: &Principal,
        password_hash: Option<&str>,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO principals (object_id, tenant_id, kind, display_name, upn, app_id, resource_id, password_hash, enabled, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(p.object_id.to_string())
        .bind(p.tenant_id.to_string())
        .bind(p.kind.as_str())
        .bind(&p.display_name)
        .bind(&p.user_principal_name)
        .bind(p.app_id.map(|a| a.to_string()))
        .bind(&p.resource_id)
        .bind(password_hash)
        .bind(p.enabled)
        .bind(p.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn principal(&self, object_id: ObjectId) -> Result<Option<Principal>, Error> {
        self.principal_where("object_id = $1", object_id.to_string())
            .await
    }

    async fn principal_by_upn(&self, upn: &str) -> Result<Option<Principal>, Error> {
        // `upn`, `app_id` and `resource_id` are `nocase`: case-blind as in SQLite.
        self.principal_where("upn = $1", upn.to_owned()).await
    }

    async fn principal_by_app_id(&self, app_id: ClientId) -> Result<Option<Principal>, Error> {
        self.principal_where("app_id = $1", app_id.to_string())
            .await
    }

    async fn principal_by_resource_id(
        &self,
        resource_id: &str,
    ) -> Result<Option<Principal>, Error> {
        self.principal_where("resource_id = $1", resource_id.to_owned())
            .await
    }

    async fn principals(
        &self,
        tenant_id: TenantId,
        kind: Option<PrincipalKind>,
    ) -> Result<Vec<Principal>, Error> {
        let sql = format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE tenant_id = $1 AND ($2::text IS NULL OR kind = $2)
             ORDER BY created_at, display_name, object_id"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant_id.to_string())
            .bind(kind.map(PrincipalKind::as_str))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::principal).collect()
    }

    async fn principal_set_enabled(&self, object_id: ObjectId, enabled: bool) -> Result<(), Error> {
        let done = sqlx::query("UPDATE principals SET enabled = $1 WHERE object_id = $2")
            .bind(enabled)
            .bind(object_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "principal `{object_id}` does not exist"
            )));
        }
        Ok(())
    }

    async fn principal_delete(&self, object_id: ObjectId) -> Result<(), Error> {
        // Memberships, credentials, directory roles, refresh tokens and role
        // assignments go with the principal through ON DELETE CASCADE.
        let done = sqlx::query("DELETE FROM principals WHERE object_id = $1")
            .bind(object_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "principal `{object_id}` does not exist"
            )));
        }
        Ok(())
    }

    async fn password_hash(&self, object_id: ObjectId) -> Result<Option<String>, Error> {
        let row = sqlx::query("SELECT password_hash FROM principals WHERE object_id = $1")
            .bind(object_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(row.and_then(|r| r.try_get::<Option<String>, _>(0).ok().flatten()))
    }

    async fn group_add_member(&self, group: ObjectId, member: ObjectId) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        // Writers run concurrently here: two memberships checked at once could each
        // pass the check and together close a cycle. The lock orders the writers of
        // memberships; each statement after it sees what the previous holder
        // committed (READ COMMITTED takes a snapshot per statement).
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(GROUP_MEMBERSHIP_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // Refuse a cycle: the group must not already be reachable from the member.
        let cycle: Option<(i32,)> = sqlx::query_as(
            "WITH RECURSIVE below(id) AS (SELECT $1::text COLLATE \"C\" UNION SELECT gm.member_id FROM group_members gm JOIN below ON gm.group_id = below.id)
             SELECT 1 FROM below WHERE id = $2 LIMIT 1",
        )
        .bind(member.to_string())
        .bind(group.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if cycle.is_some() {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("adding `{member}` to `{group}` would make the group contain itself"),
            ));
        }
        sqlx::query(
            "INSERT INTO group_members (group_id, member_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(group.to_string())
        .bind(member.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn group_remove_member(&self, group: ObjectId, member: ObjectId) -> Result<(), Error> {
        let done = sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND member_id = $2")
            .bind(group.to_string())
            .bind(member.to_string())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        if done.rows_affected() == 0 {
            return Err(Error::not_found(format!(
                "`{member}` is not a member of group `{group}`"
            )));
        }
        Ok(())
    }

    async fn group_members(&self, group: ObjectId) -> Result<Vec<ObjectId>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT member_id FROM group_members WHERE group_id = $1 ORDER BY member_id",
        )
        .bind(group.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|(id,)| ObjectId::parse(id)).collect()
    }

    async fn transitive_groups(&self, member: ObjectId) -> Result<Vec<ObjectId>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "WITH RECURSIVE above(id) AS (SELECT group_id FROM group_members WHERE member_id = $1
                 UNION SELECT gm.group_id FROM group_members gm JOIN above ON gm.member_id = above.id)
             SELECT id FROM above ORDER BY id",
        )
        .bind(member.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(|(id,)| ObjectId::parse(id)).collect()
    }

    async fn credential_add(&self, credential: &Credential) -> Result<(), Error> {
        insert_credential(&self.pool, credential).await
    }

    async fn credentials(&self, principal_id: ObjectId) -> Result<Vec<Credential>, Error> {
        let rows =
            sqlx::query("SELECT * FROM credentials WHERE principal_id = $1 ORDER BY starts_at, id")
                .bind(principal_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(db_error)?;
        rows.iter().map(rows::credential).collect()
    }

    async fn credential_replace_secrets(
        &self,
        principal_id: ObjectId,
        replacement: &Credential,
    ) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        // Two replacements at once would each delete only the secrets their
        // snapshot saw and both insert theirs, leaving two. Locking the principal
        // orders them: the second deletes what the first added. (A missing
        // principal locks nothing; the insert then fails as NotFound.)
        sqlx::query("SELECT 1 FROM principals WHERE object_id = $1 FOR UPDATE")
            .bind(principal_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM credentials WHERE principal_id = $1 AND kind = 'secret'")
            .bind(principal_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        insert_credential(&mut *tx, replacement).await?;
        tx.commit().await.map_err(db_error)
    }

    async fn credential_remove(&self, principal_id: ObjectId, id: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM credentials WHERE principal_id = $1 AND id = $2")
            .bind(principal_id.to_string())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn directory_role_grant(&self, principal_id: ObjectId, role: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO directory_roles (principal_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(principal_id.to_string())
        .bind(role)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn directory_roles(&self, principal_id: ObjectId) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT role FROM directory_roles WHERE principal_id = $1 ORDER BY role",
        )
        .bind(principal_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows.into_iter().map(|(r,)| r).collect())
    }
}
