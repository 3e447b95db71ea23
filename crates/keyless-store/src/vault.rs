//! Key vaults and secret versions. Values are stored only sealed (see
//! `keyless_auth::seal::Envelope`); this layer never sees a plaintext.

use std::fmt::Debug;

use async_trait::async_trait;

use keyless_core::{Error, TenantId};

/// A key vault (`Microsoft.KeyVault/vaults`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    /// The vault name: 3–24 letters, digits and hyphens, unique per server.
    pub name: String,
    /// Its ARM resource id.
    pub id: String,
    /// The tenant that owns it.
    pub tenant_id: TenantId,
    /// Its subscription.
    pub subscription_id: String,
    /// Its resource group.
    pub resource_group: String,
    /// Its location.
    pub location: String,
    /// `properties` and `tags` as JSON.
    pub body: serde_json::Value,
    /// Creation time.
    pub created_at: i64,
    /// When it was soft-deleted.
    pub deleted_at: Option<i64>,
}

/// One version of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretVersion {
    /// The vault.
    pub vault: String,
    /// The secret name (case-insensitive).
    pub name: String,
    /// The version id (32 hex characters).
    pub version: String,
    /// Creation time.
    pub created: i64,
    /// Last change of attributes.
    pub updated: i64,
    /// Whether the version may be read.
    pub enabled: bool,
    /// Not usable before.
    pub not_before: Option<i64>,
    /// Not usable after.
    pub expires: Option<i64>,
    /// `contentType`.
    pub content_type: Option<String>,
    /// Tags.
    pub tags: serde_json::Value,
    /// The data key, sealed under the master key.
    pub wrapped_key: Vec<u8>,
    /// The value, sealed under the data key.
    pub sealed_value: Vec<u8>,
}

/// A soft-deleted secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSecret {
    /// When it was deleted.
    pub deleted_at: i64,
    /// When it will be purged.
    pub scheduled_purge: i64,
    /// Its latest version.
    pub latest: SecretVersion,
}

/// Vaults and secrets.
#[async_trait]
pub trait VaultStore: Send + Sync + Debug + 'static {
    /// Creates a vault; `AlreadyExists` when the name is taken (soft-deleted vaults included).
    async fn vault_create(&self, vault: &Vault) -> Result<(), Error>;
    /// A vault by name, soft-deleted or not.
    async fn vault(&self, name: &str) -> Result<Option<Vault>, Error>;
    /// The vaults of a subscription (or of one resource group), `deleted` or live.
    async fn vaults(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
        deleted: bool,
    ) -> Result<Vec<Vault>, Error>;
    /// Replaces a vault's body and deletion mark.
    async fn vault_update(&self, vault: &Vault) -> Result<(), Error>;
    /// Removes a vault and every secret in it for good.
    async fn vault_purge(&self, name: &str) -> Result<bool, Error>;

    /// Adds a version; `Conflict` while the secret is soft-deleted.
    async fn secret_add(&self, secret: &SecretVersion) -> Result<(), Error>;
    /// A version, or the latest when `version` is `None` (live secrets only unless `deleted`).
    async fn secret(
        &self,
        vault: &str,
        name: &str,
        version: Option<&str>,
        deleted: bool,
    ) -> Result<Option<SecretVersion>, Error>;
    /// The latest version of every live secret, by name.
    async fn secrets(&self, vault: &str) -> Result<Vec<SecretVersion>, Error>;
    /// Every version of a live secret, oldest first.
    async fn secret_versions(&self, vault: &str, name: &str) -> Result<Vec<SecretVersion>, Error>;
    /// Replaces a version's attributes (not its value).
    async fn secret_update(&self, secret: &SecretVersion) -> Result<(), Error>;
    /// Soft-deletes a secret (all versions); `false` when it is not there.
    async fn secret_delete(
        &self,
        vault: &str,
        name: &str,
        deleted_at: i64,
        scheduled_purge: i64,
    ) -> Result<bool, Error>;
    /// A soft-deleted secret.
    async fn deleted_secret(&self, vault: &str, name: &str)
    -> Result<Option<DeletedSecret>, Error>;
    /// Every soft-deleted secret of a vault.
    async fn deleted_secrets(&self, vault: &str) -> Result<Vec<DeletedSecret>, Error>;
    /// Brings a soft-deleted secret back; `false` when it is not deleted.
    async fn secret_recover(&self, vault: &str, name: &str) -> Result<bool, Error>;
    /// Removes a soft-deleted secret for good; `false` when it is not deleted.
    async fn secret_purge(&self, vault: &str, name: &str) -> Result<bool, Error>;
    /// Every version of every secret (for resealing data keys).
    async fn all_secret_versions(&self) -> Result<Vec<SecretVersion>, Error>;
    /// Replaces wrapped data keys, all in one transaction.
    async fn secret_keys_rewrap(
        &self,
        keys: &[(String, String, String, Vec<u8>)],
    ) -> Result<(), Error>;
}
