//! The PostgreSQL store's resources records.

use async_trait::async_trait;
use sqlx::Row;

use keyless_core::{Error, TenantId};

use super::{PostgresStore, db_error};
use crate::meta::rows::{self, corrupt};
use crate::meta::{
    ActivityEvent, Resource, ResourceGroup, ResourceStore, StoredRoleAssignment,
    StoredRoleDefinition, Subscription,
};

#[async_trait]
impl ResourceStore for PostgresStore {
    async fn subscription_create(&self, s: &Subscription) -> Result<(), Error> {
        sqlx::query("INSERT INTO subscriptions (id, tenant_id, display_name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&s.id)
            .bind(s.tenant_id.to_string())
            .bind(&s.display_name)
            .bind(s.created_at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, Error> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, tenant_id, display_name, created_at FROM subscriptions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.map(|(id, t, display_name, created_at)| {
            Ok(Subscription {
                id,
                tenant_id: TenantId::parse(&t)?,
                display_name,
                created_at,
            })
        })
        .transpose()
    }

    async fn subscriptions(&self, tenant_id: TenantId) -> Result<Vec<Subscription>, Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, tenant_id, display_name, created_at FROM subscriptions WHERE tenant_id = $1 ORDER BY created_at, id",
        )
        .bind(tenant_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, t, display_name, created_at)| {
                Ok(Subscription {
                    id,
                    tenant_id: TenantId::parse(&t)?,
                    display_name,
                    created_at,
                })
            })
            .collect()
    }

    async fn resource_group_upsert(&self, g: &ResourceGroup) -> Result<ResourceGroup, Error> {
        // A concurrent insert of the same group makes this one wait for its commit
        // and then do nothing; the read below sees the committed group.
        sqlx::query("INSERT INTO resource_groups (subscription_id, name, location, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(&g.subscription_id)
            .bind(&g.name)
            .bind(&g.location)
            .bind(g.created_at)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        self.resource_group(&g.subscription_id, &g.name)
            .await?
            .ok_or_else(|| Error::internal("a resource group vanished while it was created"))
    }

    async fn resource_group(
        &self,
        subscription_id: &str,
        name: &str,
    ) -> Result<Option<ResourceGroup>, Error> {
        let row: Option<(String, String, String, i64)> = sqlx::query_as(
            "SELECT subscription_id, name, location, created_at FROM resource_groups WHERE subscription_id = $1 AND name = $2",
        )
        .bind(subscription_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(row.map(
            |(subscription_id, name, location, created_at)| ResourceGroup {
                subscription_id,
                name,
                location,
                created_at,
            },
        ))
    }

    async fn resource_groups(&self, subscription_id: &str) -> Result<Vec<ResourceGroup>, Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT subscription_id, name, location, created_at FROM resource_groups WHERE subscription_id = $1 ORDER BY name",
        )
        .bind(subscription_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(
                |(subscription_id, name, location, created_at)| ResourceGroup {
                    subscription_id,
                    name,
                    location,
                    created_at,
                },
            )
            .collect())
    }

    async fn resource_put(&self, r: &Resource) -> Result<(), Error> {
        put_query(r).execute(&self.pool).await.map_err(db_error)?;
        Ok(())
    }

    async fn resources_put(&self, resources: &[Resource]) -> Result<(), Error> {
        let mut tx = self.begin().await?;
        for r in resources {
            put_query(r).execute(&mut *tx).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn resource_update(
        &self,
        id: &str,
        change: &mut (dyn for<'v> FnMut(&'v mut serde_json::Value) -> bool + Send),
    ) -> Result<Option<(Resource, bool)>, Error> {
        let key = id.to_ascii_lowercase();
        let mut tx = self.begin().await?;
        let Some(row) = sqlx::query("SELECT * FROM resources WHERE id_key = $1 FOR UPDATE")
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
        else {
            return Ok(None);
        };
        let mut resource = rows::resource(&row)?;
        if !change(&mut resource.body) {
            return Ok(Some((resource, false)));
        }
        sqlx::query("UPDATE resources SET body = $1 WHERE id_key = $2")
            .bind(resource.body.to_string())
            .bind(&key)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(Some((resource, true)))
    }

    async fn resource(&self, id: &str) -> Result<Option<Resource>, Error> {
        sqlx::query("SELECT * FROM resources WHERE id_key = $1")
            .bind(id.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::resource)
            .transpose()
    }

    async fn resources(
        &self,
        subscription_id: &str,
        resource_group: &str,
        kind: &str,
    ) -> Result<Vec<Resource>, Error> {
        let rows = sqlx::query("SELECT * FROM resources WHERE subscription_id = $1 AND resource_group = $2 AND type = $3 ORDER BY name, id_key")
            .bind(subscription_id)
            .bind(resource_group)
            .bind(kind)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::resource).collect()
    }

    async fn resources_delete(&self, ids: &[String]) -> Result<u64, Error> {
        let mut tx = self.begin().await?;
        let mut deleted = 0;
        for id in ids {
            deleted += sqlx::query("DELETE FROM resources WHERE id_key = $1")
                .bind(id.to_ascii_lowercase())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?
                .rows_affected();
        }
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    async fn resource_delete(&self, id: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM resources WHERE id_key = $1")
            .bind(id.to_ascii_lowercase())
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn subscriptions_all(&self) -> Result<Vec<Subscription>, Error> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT id, tenant_id, display_name, created_at FROM subscriptions ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(id, t, display_name, created_at)| {
                Ok(Subscription {
                    id,
                    tenant_id: TenantId::parse(&t)?,
                    display_name,
                    created_at,
                })
            })
            .collect()
    }

    async fn resource_group_delete(
        &self,
        subscription_id: &str,
        name: &str,
    ) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        let scope =
            format!("/subscriptions/{subscription_id}/resourcegroups/{name}").to_ascii_lowercase();
        // What lies below the group, as a LIKE pattern: the scope's own `%`, `_`
        // and `\` stand for themselves (PostgreSQL's LIKE escapes with `\`).
        let below = rows::like_prefix(&format!("{scope}/"));
        // Managed identities that are resources of the group go with it (and their
        // memberships and assignments through ON DELETE CASCADE). `resource_id` is
        // `nocase`, on which LIKE is refused: it is compared lowercased (ASCII
        // only, as SQLite's lower()) in the "C" collation.
        sqlx::query(
            "DELETE FROM principals WHERE lower(resource_id COLLATE \"C\") = $1 OR lower(resource_id COLLATE \"C\") LIKE $2",
        )
        .bind(&scope)
        .bind(&below)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        sqlx::query("DELETE FROM role_assignments WHERE scope_key = $1 OR scope_key LIKE $2")
            .bind(&scope)
            .bind(&below)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        sqlx::query("DELETE FROM resources WHERE subscription_id = $1 AND resource_group = $2")
            .bind(subscription_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let done =
            sqlx::query("DELETE FROM resource_groups WHERE subscription_id = $1 AND name = $2")
                .bind(subscription_id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn role_assignment_create(&self, a: &StoredRoleAssignment) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO role_assignments (name, tenant_id, scope, scope_key, role_definition_id, principal_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.name)
        .bind(a.tenant_id.to_string())
        .bind(&a.scope)
        .bind(a.scope.to_ascii_lowercase())
        .bind(&a.role_definition_id)
        .bind(a.principal_id.to_string())
        .bind(a.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn activity_add(&self, e: &ActivityEvent) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO activity_log (id, time, tenant_id, subscription_id, body) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&e.id)
        .bind(e.time)
        .bind(e.tenant_id.map(|t| t.to_string()))
        .bind(&e.subscription_id)
        .bind(e.body.to_string())
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn activity(
        &self,
        tenant_id: TenantId,
        subscription_id: Option<&str>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<ActivityEvent>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // PostgreSQL has no rowid: events of the same second are ordered by id, not
        // by insertion as in SQLite.
        let rows = match subscription_id {
            Some(sub) => {
                sqlx::query(
                    "SELECT * FROM activity_log WHERE subscription_id = $1 AND time >= $2 ORDER BY time, seq LIMIT $3",
                )
                .bind(sub)
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(
                    "SELECT * FROM activity_log WHERE tenant_id = $1 AND subscription_id IS NULL AND time >= $2 ORDER BY time, seq LIMIT $3",
                )
                .bind(tenant_id.to_string())
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db_error)?;
        rows.iter()
            .map(|row| {
                let c = |e| corrupt("activity event", e);
                let tenant: Option<String> = row.try_get("tenant_id").map_err(c)?;
                Ok(ActivityEvent {
                    id: row.try_get("id").map_err(c)?,
                    time: row.try_get("time").map_err(c)?,
                    tenant_id: tenant.as_deref().map(TenantId::parse).transpose()?,
                    subscription_id: row.try_get("subscription_id").map_err(c)?,
                    body: serde_json::from_str(&row.try_get::<String, _>("body").map_err(c)?)
                        .map_err(|e| corrupt("activity event", e))?,
                })
            })
            .collect()
    }

    async fn role_assignments_all(&self) -> Result<Vec<StoredRoleAssignment>, Error> {
        let rows = sqlx::query("SELECT * FROM role_assignments ORDER BY created_at, name")
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(rows::assignment).collect()
    }

    async fn role_assignment(&self, name: &str) -> Result<Option<StoredRoleAssignment>, Error> {
        sqlx::query("SELECT * FROM role_assignments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .as_ref()
            .map(rows::assignment)
            .transpose()
    }

    async fn role_assignment_delete(&self, name: &str) -> Result<bool, Error> {
        let done = sqlx::query("DELETE FROM role_assignments WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn role_definition_put(&self, d: &StoredRoleDefinition) -> Result<(), Error> {
        let body = serde_json::to_string(&d.role).map_err(|e| Error::internal(e.to_string()))?;
        sqlx::query(
            "INSERT INTO role_definitions (id, tenant_id, name, body, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, body = EXCLUDED.body",
        )
        .bind(&d.role.id)
        .bind(d.tenant_id.to_string())
        .bind(&d.role.name)
        .bind(body)
        .bind(d.created_at)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn role_definitions_all(&self) -> Result<Vec<StoredRoleDefinition>, Error> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT tenant_id, body, created_at FROM role_definitions ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.into_iter()
            .map(|(t, body, created_at)| {
                Ok(StoredRoleDefinition {
                    tenant_id: TenantId::parse(&t)?,
                    role: serde_json::from_str(&body).map_err(|e| corrupt("role definition", e))?,
                    created_at,
                })
            })
            .collect()
    }

    async fn role_definition_delete(&self, id: &str) -> Result<bool, Error> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM role_assignments WHERE role_definition_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let done = sqlx::query("DELETE FROM role_definitions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(done.rows_affected() > 0)
    }

    async fn role_assignments(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<StoredRoleAssignment>, Error> {
        let rows = sqlx::query(
            "SELECT * FROM role_assignments WHERE tenant_id = $1 ORDER BY created_at, name",
        )
        .bind(tenant_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(rows::assignment).collect()
    }
}

/// The upsert of one resource, for the pool or a transaction.
fn put_query(r: &Resource) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(
        "INSERT INTO resources (id_key, id, subscription_id, resource_group, type, name, location, body, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id_key) DO UPDATE SET location = EXCLUDED.location, body = EXCLUDED.body",
    )
    .bind(r.id.to_ascii_lowercase())
    .bind(&r.id)
    .bind(&r.subscription_id)
    .bind(&r.resource_group)
    .bind(&r.kind)
    .bind(&r.name)
    .bind(&r.location)
    .bind(r.body.to_string())
    .bind(r.created_at)
}
