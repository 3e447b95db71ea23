//! Creating tenants: the bootstrap tenant on first start, and more on request.
//!
//! A new tenant gets a subscription, a resource group `default`, and an
//! administrator who is Global Administrator of the directory and Owner of the
//! subscription.

use std::path::Path;

use serde::{Deserialize, Serialize};

use keyless_auth::secret;
use keyless_core::directory::DirectoryRole;
use keyless_core::rbac::OWNER_ROLE_ID;
use keyless_core::{Error, ErrorKind, ObjectId, Principal, PrincipalKind, TenantId};
use keyless_store::{MetaStore, ResourceGroup, StoredRoleAssignment, Subscription, Tenant};

/// What a new tenant's administrator needs to sign in. Written once to
/// `admin.json` for the bootstrap tenant; returned once for later tenants.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminCredentials {
    /// The tenant id.
    pub tenant: String,
    /// The administrator's user principal name.
    pub username: String,
    /// The administrator's password.
    pub password: String,
    /// The tenant's first subscription.
    pub subscription: String,
}

/// Creates (or completes, after an interrupted start) a tenant as `plan` describes.
pub(crate) async fn create_tenant(
    store: &dyn MetaStore,
    plan: &AdminCredentials,
    domain: &str,
    now: i64,
) -> Result<(), Error> {
    let tenant_id = TenantId::parse(&plan.tenant)?;
    let tenant = Tenant {
        id: tenant_id,
        domain: domain.to_owned(),
        display_name: domain.to_owned(),
        created_at: now,
    };
    ignore_exists(store.tenant_create(&tenant).await)?;
    let admin = match store.principal_by_upn(&plan.username).await? {
        Some(p) => p,
        None => {
            let p = Principal {
                object_id: ObjectId::new_random(),
                tenant_id,
                kind: PrincipalKind::User,
                display_name: "Administrator".into(),
                user_principal_name: Some(plan.username.clone()),
                app_id: None,
                enabled: true,
                resource_id: None,
                created_at: now,
            };
            let password = plan.password.clone();
            let hash = tokio::task::spawn_blocking(move || secret::hash_password(&password))
                .await
                .map_err(|e| Error::internal(format!("hashing task failed: {e}")))??;
            store.principal_create(&p, Some(&hash)).await?;
            p
        }
    };
    store
        .directory_role_grant(admin.object_id, DirectoryRole::GlobalAdministrator.as_str())
        .await?;
    let sub = Subscription {
        id: plan.subscription.clone(),
        tenant_id,
        display_name: "keyless".into(),
        created_at: now,
    };
    ignore_exists(store.subscription_create(&sub).await)?;
    store
        .resource_group_upsert(&ResourceGroup {
            subscription_id: plan.subscription.clone(),
            name: "default".into(),
            location: "local".into(),
            created_at: now,
        })
        .await?;
    let scope = format!("/subscriptions/{}", plan.subscription);
    let has_owner = store.role_assignments(tenant_id).await?.iter().any(|a| {
        a.principal_id == admin.object_id
            && a.scope.eq_ignore_ascii_case(&scope)
            && a.role_definition_id == OWNER_ROLE_ID
    });
    if !has_owner {
        store
            .role_assignment_create(&StoredRoleAssignment {
                name: uuid::Uuid::new_v4().to_string(),
                tenant_id,
                scope,
                role_definition_id: OWNER_ROLE_ID.into(),
                principal_id: admin.object_id,
                created_at: now,
            })
            .await?;
    }
    Ok(())
}

/// A fresh plan for a tenant with `domain`.
pub(crate) fn plan(domain: &str) -> Result<AdminCredentials, Error> {
    Ok(AdminCredentials {
        tenant: TenantId::new_random().to_string(),
        username: format!("admin@{domain}"),
        password: secret::new_password()?,
        subscription: uuid::Uuid::new_v4().to_string(),
    })
}

/// On first start, creates the bootstrap tenant and writes its administrator's
/// credentials to `admin.json` (mode 0600) before anything else, so that an
/// interrupted start resumes with the same credentials.
pub(crate) async fn bootstrap(
    store: &dyn MetaStore,
    data_dir: &Path,
    domain: &str,
    now: i64,
) -> Result<(), Error> {
    if store.setting("bootstrap.complete").await?.is_some() {
        return Ok(());
    }
    let file = data_dir.join("admin.json");
    let plan = match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice::<AdminCredentials>(&bytes)
            .map_err(|e| Error::internal(format!("`{}` is malformed: {e}", file.display())))?,
        Err(_) => {
            let plan = plan(domain)?;
            let json =
                serde_json::to_vec_pretty(&plan).map_err(|e| Error::internal(e.to_string()))?;
            crate::tls::write_private(&file, &json)?;
            plan
        }
    };
    create_tenant(store, &plan, domain, now).await?;
    store.setting_set("bootstrap.tenant", &plan.tenant).await?;
    store.setting_set("bootstrap.complete", "1").await?;
    tracing::info!(tenant = %plan.tenant, file = %file.display(), "bootstrap tenant created; administrator credentials written once");
    Ok(())
}

fn ignore_exists(result: Result<(), Error>) -> Result<(), Error> {
    match result {
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}
