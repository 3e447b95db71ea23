//! The metadata store: records, and the traits that read and write them.
//!
//! Every method is atomic: it takes effect whole or not at all. Lookups of a
//! missing record return `Ok(None)`; writes that name a missing record fail with
//! [`keyless_core::ErrorKind::NotFound`], and duplicates with
//! [`keyless_core::ErrorKind::AlreadyExists`].

use std::fmt::Debug;

use async_trait::async_trait;

use keyless_core::{ClientId, Error, ObjectId, Principal, PrincipalKind, TenantId};

#[cfg(test)]
mod conformance;
#[cfg(feature = "postgres")]
mod postgres;
mod rows;
mod sqlite;

#[cfg(feature = "postgres")]
pub use postgres::{CHANGES, LogQuery, LogRow, PostgresStore, redact};
pub use sqlite::SqliteStore;
#[cfg(feature = "postgres")]
pub use sqlx::postgres::{PgListener, PgNotification};

/// A directory (tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// The tenant id.
    pub id: TenantId,
    /// The domain of its users' names, e.g. `keyless.local`.
    pub domain: String,
    /// A human-readable name.
    pub display_name: String,
    /// Creation time.
    pub created_at: i64,
}

/// A subscription: the root of a tenant's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The subscription GUID.
    pub id: String,
    /// The tenant that owns it.
    pub tenant_id: TenantId,
    /// A human-readable name.
    pub display_name: String,
    /// Creation time.
    pub created_at: i64,
}

/// A resource group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    /// The subscription it lies in.
    pub subscription_id: String,
    /// Its name.
    pub name: String,
    /// Its location.
    pub location: String,
    /// Creation time.
    pub created_at: i64,
}

/// An ARM resource below a resource group, kept as its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The resource id as first written.
    pub id: String,
    /// The subscription it lies in.
    pub subscription_id: String,
    /// Its resource group.
    pub resource_group: String,
    /// `Namespace/type`, e.g. `Microsoft.ManagedIdentity/userAssignedIdentities`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its location.
    pub location: String,
    /// The JSON body (`properties`, `tags`, …).
    pub body: serde_json::Value,
    /// Creation time.
    pub created_at: i64,
}

/// What a credential is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKind {
    /// A client secret, stored as its digest.
    Secret {
        /// SHA-256 of the secret, hex.
        digest: String,
        /// The secret's first characters, shown to owners.
        hint: String,
    },
    /// A certificate's public key.
    Certificate {
        /// SHA-1 thumbprint, uppercase hex.
        thumbprint: String,
        /// The subject public key info, DER.
        public_key: Vec<u8>,
    },
    /// A federated identity credential: tokens of `issuer` about `subject`.
    Federated {
        /// The trusted issuer.
        issuer: String,
        /// The subject the assertion must carry.
        subject: String,
        /// Audiences the assertion may carry.
        audiences: Vec<String>,
    },
}

/// A credential of a service principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The key id.
    pub id: String,
    /// The service principal it belongs to.
    pub principal_id: ObjectId,
    /// A name for people.
    pub display_name: String,
    /// The kind and its material.
    pub kind: CredentialKind,
    /// Valid from.
    pub starts_at: i64,
    /// Valid until.
    pub expires_at: i64,
}

/// A signing key sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSigningKey {
    /// The key id.
    pub kid: String,
    /// The sealed PKCS#8 bytes.
    pub sealed: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    /// The signed-in principal.
    pub principal_id: ObjectId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The client the token was issued to.
    pub client_id: String,
    /// Expiry.
    pub expires_at: i64,
}

/// A pending device-code sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCode {
    /// SHA-256 of the device code the client polls with.
    pub digest: String,
    /// The short code a person types.
    pub user_code: String,
    /// The tenant of the request.
    pub tenant_id: TenantId,
    /// The client that asked.
    pub client_id: String,
    /// The requested scope.
    pub scope: String,
    /// Expiry.
    pub expires_at: i64,
    /// The user who approved it, once approved.
    pub approved_by: Option<ObjectId>,
}

/// An authorization code a user's browser sign-in yielded, until the client
/// redeems it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationCode {
    /// SHA-256 of the code.
    pub digest: String,
    /// The tenant of the sign-in.
    pub tenant_id: TenantId,
    /// The user who signed in.
    pub principal_id: ObjectId,
    /// The client that asked.
    pub client_id: String,
    /// The requested scope.
    pub scope: String,
    /// The redirect URI the code was sent to; the redemption must name it again.
    pub redirect_uri: String,
    /// The PKCE challenge (S256) the redemption's verifier must meet.
    pub code_challenge: String,
    /// The client's nonce, echoed in the ID token.
    pub nonce: Option<String>,
    /// Expiry.
    pub expires_at: i64,
}

/// A stored role assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoleAssignment {
    /// The GUID name.
    pub name: String,
    /// The tenant whose resources it concerns.
    pub tenant_id: TenantId,
    /// The scope as written.
    pub scope: String,
    /// The role definition GUID.
    pub role_definition_id: String,
    /// The principal.
    pub principal_id: ObjectId,
    /// Creation time.
    pub created_at: i64,
}

/// A custom role definition of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoleDefinition {
    /// The tenant that defined it.
    pub tenant_id: TenantId,
    /// The definition (with `builtin` false).
    pub role: keyless_core::rbac::RoleDefinition,
    /// Creation time.
    pub created_at: i64,
}

/// The directory: tenants, principals, groups, credentials and directory roles.
#[async_trait]
pub trait DirectoryStore: Send + Sync + Debug + 'static {
    /// Creates a tenant.
    async fn tenant_create(&self, tenant: &Tenant) -> Result<(), Error>;
    /// Every tenant.
    async fn tenants(&self) -> Result<Vec<Tenant>, Error>;
    /// A tenant by id or domain.
    async fn tenant(&self, id_or_domain: &str) -> Result<Option<Tenant>, Error>;

    /// Creates a principal, with a password hash for users.
    async fn principal_create(
        &self,
        principal: &Principal,
        password_hash: Option<&str>,
    ) -> Result<(), Error>;
    /// A principal by object id.
    async fn principal(&self, object_id: ObjectId) -> Result<Option<Principal>, Error>;
    /// A user by user principal name (case-insensitive).
    async fn principal_by_upn(&self, upn: &str) -> Result<Option<Principal>, Error>;
    /// A service principal or managed identity by application (client) id.
    async fn principal_by_app_id(&self, app_id: ClientId) -> Result<Option<Principal>, Error>;
    /// A managed identity by resource id (case-insensitive).
    async fn principal_by_resource_id(&self, resource_id: &str)
    -> Result<Option<Principal>, Error>;
    /// The principals of a tenant, of one kind or all.
    async fn principals(
        &self,
        tenant_id: TenantId,
        kind: Option<PrincipalKind>,
    ) -> Result<Vec<Principal>, Error>;
    /// Enables or disables a principal.
    async fn principal_set_enabled(&self, object_id: ObjectId, enabled: bool) -> Result<(), Error>;
    /// Deletes a principal with its memberships, credentials, roles and role assignments.
    async fn principal_delete(&self, object_id: ObjectId) -> Result<(), Error>;
    /// A user's password hash.
    async fn password_hash(&self, object_id: ObjectId) -> Result<Option<String>, Error>;

    /// Adds `member` to `group`; adding a present member is not an error.
    /// A membership that would make a group contain itself is refused as `Conflict`.
    async fn group_add_member(&self, group: ObjectId, member: ObjectId) -> Result<(), Error>;
    /// Removes `member` from `group`.
    async fn group_remove_member(&self, group: ObjectId, member: ObjectId) -> Result<(), Error>;
    /// The direct members of `group`.
    async fn group_members(&self, group: ObjectId) -> Result<Vec<ObjectId>, Error>;
    /// Every group `member` belongs to, directly or through nested groups.
    async fn transitive_groups(&self, member: ObjectId) -> Result<Vec<ObjectId>, Error>;

    /// Adds a credential.
    async fn credential_add(&self, credential: &Credential) -> Result<(), Error>;
    /// The credentials of a principal.
    async fn credentials(&self, principal_id: ObjectId) -> Result<Vec<Credential>, Error>;
    /// Removes every secret of a principal and adds `replacement` in one step.
    async fn credential_replace_secrets(
        &self,
        principal_id: ObjectId,
        replacement: &Credential,
    ) -> Result<(), Error>;

    /// Removes one credential of a principal by its id; false when it has none such.
    async fn credential_remove(&self, principal_id: ObjectId, id: &str) -> Result<bool, Error>;

    /// Grants a directory role (by its name).
    async fn directory_role_grant(&self, principal_id: ObjectId, role: &str) -> Result<(), Error>;
    /// The directory roles a principal holds directly.
    async fn directory_roles(&self, principal_id: ObjectId) -> Result<Vec<String>, Error>;
}

/// Token machinery: signing keys, refresh tokens, device codes, settings.
#[async_trait]
pub trait TokenStore: Send + Sync + Debug + 'static {
    /// Adds a sealed signing key.
    async fn signing_key_add(&self, key: &SealedSigningKey) -> Result<(), Error>;
    /// Every signing key, newest first.
    async fn signing_keys(&self) -> Result<Vec<SealedSigningKey>, Error>;
    /// Removes keys created before `created_before`.
    async fn signing_keys_prune(&self, created_before: i64) -> Result<(), Error>;
    /// Replaces the sealed bytes of a signing key (a master-key rotation).
    async fn signing_key_reseal(&self, kid: &str, sealed: &[u8]) -> Result<(), Error>;

    /// Stores a refresh token by its digest.
    async fn refresh_token_add(&self, digest: &str, grant: &RefreshGrant) -> Result<(), Error>;
    /// Removes and returns a refresh token issued to `client_id` (each is used
    /// once). A token issued to another client is left as it is, and `None`
    /// returned, so presenting it with the wrong client does not spend it.
    async fn refresh_token_take(
        &self,
        digest: &str,
        client_id: &str,
    ) -> Result<Option<RefreshGrant>, Error>;

    /// Stores a device code.
    async fn device_code_add(&self, code: &DeviceCode) -> Result<(), Error>;
    /// A device code by the user code a person typed.
    async fn device_code_by_user_code(&self, user_code: &str) -> Result<Option<DeviceCode>, Error>;
    /// Marks a device code approved by `user`.
    async fn device_code_approve(&self, user_code: &str, user: ObjectId) -> Result<(), Error>;
    /// A device code by digest; removed when it is approved (each approval yields one token).
    async fn device_code_poll(&self, digest: &str) -> Result<Option<DeviceCode>, Error>;
    /// Removes the device codes that expired before `now`; returns how many.
    async fn device_codes_expire(&self, now: i64) -> Result<u64, Error>;

    /// Stores an authorization code.
    async fn authorization_code_add(&self, code: &AuthorizationCode) -> Result<(), Error>;
    /// Removes and returns an authorization code: each is presented once, and a
    /// failed redemption spends it too.
    async fn authorization_code_take(
        &self,
        digest: &str,
    ) -> Result<Option<AuthorizationCode>, Error>;
    /// Removes the authorization codes that expired before `now`; returns how many.
    async fn authorization_codes_expire(&self, now: i64) -> Result<u64, Error>;
    /// Records `key` as used until `expires_at`: `Ok(true)` the first time,
    /// `Ok(false)` when it was used already and has not expired by `now`. Of
    /// callers presenting one key at once, one alone gets `true`.
    async fn use_once(&self, key: &str, now: i64, expires_at: i64) -> Result<bool, Error>;
    /// Forgets the used keys that expired before `now`; returns how many.
    async fn used_once_expire(&self, now: i64) -> Result<u64, Error>;
    /// Counts a wrong password under `key` at `now`: failures less than
    /// `window` seconds apart from the first add up, and the `threshold`-th
    /// locks the key for `lockout` seconds. Returns until when the key is locked
    /// (in the past when it is not). Concurrent failures all count.
    async fn sign_in_failed(
        &self,
        key: &str,
        now: i64,
        window: i64,
        threshold: u32,
        lockout: i64,
    ) -> Result<i64, Error>;
    /// Until when `key` is locked; 0 when it never was.
    async fn sign_in_locked_until(&self, key: &str) -> Result<i64, Error>;
    /// Forgets the failures under `key` (a right password).
    async fn sign_in_forget(&self, key: &str) -> Result<(), Error>;
    /// Forgets the failures counted before `before` whose lock, if any, ended by
    /// `now`; returns how many.
    async fn sign_in_failures_expire(&self, before: i64, now: i64) -> Result<u64, Error>;

    /// A server setting.
    async fn setting(&self, key: &str) -> Result<Option<String>, Error>;
    /// Writes a server setting.
    async fn setting_set(&self, key: &str, value: &str) -> Result<(), Error>;
}

/// Subscriptions, resource groups, resources and role assignments.
#[async_trait]
pub trait ResourceStore: Send + Sync + Debug + 'static {
    /// Creates a subscription.
    async fn subscription_create(&self, subscription: &Subscription) -> Result<(), Error>;
    /// A subscription by id.
    async fn subscription(&self, id: &str) -> Result<Option<Subscription>, Error>;
    /// The subscriptions of a tenant.
    async fn subscriptions(&self, tenant_id: TenantId) -> Result<Vec<Subscription>, Error>;

    /// Creates a resource group, or returns the existing one unchanged.
    async fn resource_group_upsert(&self, group: &ResourceGroup) -> Result<ResourceGroup, Error>;
    /// A resource group.
    async fn resource_group(
        &self,
        subscription_id: &str,
        name: &str,
    ) -> Result<Option<ResourceGroup>, Error>;
    /// The resource groups of a subscription.
    async fn resource_groups(&self, subscription_id: &str) -> Result<Vec<ResourceGroup>, Error>;

    /// Creates or replaces a resource.
    async fn resource_put(&self, resource: &Resource) -> Result<(), Error>;
    /// Creates or replaces several resources in one transaction: all of them,
    /// or none when one cannot be written.
    async fn resources_put(&self, resources: &[Resource]) -> Result<(), Error>;
    /// A resource by id (case-insensitive).
    async fn resource(&self, id: &str) -> Result<Option<Resource>, Error>;
    /// Changes a resource's body in one transaction: `change` sees the body as
    /// stored and says whether to write it back, and no other write of the
    /// resource comes between (servers sharing the store included). `Ok(None)`
    /// when there is no such resource; otherwise the resource as it stands
    /// after, and whether `change` wrote it.
    async fn resource_update(
        &self,
        id: &str,
        change: &mut (dyn for<'v> FnMut(&'v mut serde_json::Value) -> bool + Send),
    ) -> Result<Option<(Resource, bool)>, Error>;
    /// The resources of a type in a resource group.
    async fn resources(
        &self,
        subscription_id: &str,
        resource_group: &str,
        kind: &str,
    ) -> Result<Vec<Resource>, Error>;
    /// Deletes a resource; `Ok(false)` when there was none.
    async fn resource_delete(&self, id: &str) -> Result<bool, Error>;
    /// Deletes several resources in one transaction; how many there were.
    async fn resources_delete(&self, ids: &[String]) -> Result<u64, Error>;

    /// Every subscription of every tenant.
    async fn subscriptions_all(&self) -> Result<Vec<Subscription>, Error>;
    /// Deletes a resource group with everything in it: its resources, the managed
    /// identities they are, and every role assignment at or below it. `Ok(false)`
    /// when there was none.
    async fn resource_group_delete(&self, subscription_id: &str, name: &str)
    -> Result<bool, Error>;

    /// Creates a role assignment.
    async fn role_assignment_create(&self, assignment: &StoredRoleAssignment) -> Result<(), Error>;
    /// Every role assignment of a tenant.
    async fn role_assignments(
        &self,
        tenant_id: TenantId,
    ) -> Result<Vec<StoredRoleAssignment>, Error>;
    /// Every role assignment of every tenant.
    async fn role_assignments_all(&self) -> Result<Vec<StoredRoleAssignment>, Error>;
    /// A role assignment by its GUID name.
    async fn role_assignment(&self, name: &str) -> Result<Option<StoredRoleAssignment>, Error>;
    /// Deletes a role assignment; `Ok(false)` when there was none.
    async fn role_assignment_delete(&self, name: &str) -> Result<bool, Error>;

    /// Creates or replaces a custom role definition (unique name per tenant).
    async fn role_definition_put(&self, definition: &StoredRoleDefinition) -> Result<(), Error>;
    /// Every custom role definition of every tenant.
    async fn role_definitions_all(&self) -> Result<Vec<StoredRoleDefinition>, Error>;
    /// Deletes a custom role definition and its assignments; `Ok(false)` when there was none.
    async fn role_definition_delete(&self, id: &str) -> Result<bool, Error>;

    /// Appends an event to the activity log (never changed afterwards).
    async fn activity_add(&self, event: &ActivityEvent) -> Result<(), Error>;
    /// The events of a subscription (or, with `None`, the tenant's events that
    /// belong to no subscription, such as directory changes) at or after
    /// `since`, oldest first, at most `limit`.
    async fn activity(
        &self,
        tenant_id: TenantId,
        subscription_id: Option<&str>,
        since: i64,
        limit: usize,
    ) -> Result<Vec<ActivityEvent>, Error>;
}

/// One event of the activity log.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEvent {
    /// A unique id (`eventDataId`).
    pub id: String,
    /// When it happened, seconds since the epoch.
    pub time: i64,
    /// The caller's tenant, when the caller was authenticated.
    pub tenant_id: Option<TenantId>,
    /// The subscription the scope lies in, if any.
    pub subscription_id: Option<String>,
    /// The event as served: caller, operation, scope, status, address.
    pub body: serde_json::Value,
}

/// Telling the other servers that share the store what changed, so that they
/// drop what they keep in memory about it.
#[async_trait]
pub trait ChangeFeed: Send + Sync + Debug + 'static {
    /// Announces `change` (a short text the servers agree on) to every server
    /// following the store's feed, this one included. A store no other server
    /// shares has nobody to tell: the default does nothing.
    async fn announce(&self, change: &str) -> Result<(), Error> {
        let _ = change;
        Ok(())
    }
}

/// The whole metadata store.
pub trait MetaStore:
    DirectoryStore
    + TokenStore
    + ResourceStore
    + ChangeFeed
    + crate::storage::StorageStore
    + crate::vault::VaultStore
    + crate::registry::RegistryStore
{
}

impl<
    T: DirectoryStore
        + TokenStore
        + ResourceStore
        + ChangeFeed
        + crate::storage::StorageStore
        + crate::vault::VaultStore
        + crate::registry::RegistryStore,
> MetaStore for T
{
}
