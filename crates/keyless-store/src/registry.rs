//! Container registries (`Microsoft.ContainerRegistry/registries`) and their
//! content: blobs addressed by digest (bytes in the [`crate::BlobBackend`],
//! one file per digest and registry), the repositories each blob is in,
//! manifests (small, kept here whole), tags and uploads in progress.
//!
//! A blob belongs to the registry; a repository sees it once it was pushed
//! there or mounted from another repository of the same registry. A registry's
//! admin passwords are stored only sealed.

use std::fmt::Debug;

use async_trait::async_trait;

use keyless_core::{Error, TenantId};

/// A container registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    /// The registry name: 5–50 letters and digits, unique per server, stored
    /// in lower case.
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
    /// `sku`, `tags` and `properties` as JSON.
    pub body: serde_json::Value,
    /// The admin user's `password`, sealed.
    pub password1: Vec<u8>,
    /// The admin user's `password2`, sealed.
    pub password2: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// A blob of a registry: a layer or a config, by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBlob {
    /// The registry.
    pub registry: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// The bytes, in the blob backend.
    pub file_id: String,
    /// Its length.
    pub size: u64,
    /// When it was first pushed.
    pub created_at: i64,
}

/// A manifest in a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The registry.
    pub registry: String,
    /// The repository (`a/b/c`).
    pub repository: String,
    /// `sha256:<hex>` of `body`.
    pub digest: String,
    /// Its media type, as pushed.
    pub media_type: String,
    /// The manifest's bytes, exactly as pushed.
    pub body: Vec<u8>,
    /// When it was pushed.
    pub created_at: i64,
}

/// A tag and the manifest it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag.
    pub name: String,
    /// The manifest's digest.
    pub digest: String,
    /// When the tag last moved.
    pub updated_at: i64,
}

/// An upload in progress: the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The session id, a UUID.
    pub id: String,
    /// The registry.
    pub registry: String,
    /// The repository the blob goes to.
    pub repository: String,
    /// The bytes so far (empty before the first chunk).
    pub file_id: String,
    /// How many bytes were received.
    pub size: u64,
    /// When the session began.
    pub created_at: i64,
}

/// Registries and their content.
#[async_trait]
pub trait RegistryStore: Send + Sync + Debug + 'static {
    /// Creates a registry; `AlreadyExists` when the name is taken.
    async fn registry_create(&self, registry: &Registry) -> Result<(), Error>;
    /// A registry by name.
    async fn registry(&self, name: &str) -> Result<Option<Registry>, Error>;
    /// The registries of a subscription, or of one of its resource groups.
    async fn registries(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<Registry>, Error>;
    /// Writes a registry's body and passwords; `NotFound` when it is gone.
    async fn registry_update(&self, registry: &Registry) -> Result<(), Error>;
    /// Deletes a registry with its content; the files its blobs and uploads
    /// held, for the caller to remove, or `None` when there was no registry.
    async fn registry_delete(&self, name: &str) -> Result<Option<Vec<String>>, Error>;

    /// Records a blob and puts it in `repository`. When the registry already
    /// holds the digest, the stored blob stays and comes back (the caller
    /// removes the file it wrote); otherwise `blob` comes back.
    async fn registry_blob_add(
        &self,
        blob: &RegistryBlob,
        repository: &str,
    ) -> Result<RegistryBlob, Error>;
    /// A blob of the registry, whichever repositories it is in.
    async fn registry_blob(
        &self,
        registry: &str,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, Error>;
    /// A blob as seen from a repository: only when it is in that repository.
    async fn registry_repository_blob(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, Error>;
    /// Puts a blob the registry holds into another repository (a cross-repository
    /// mount); `false` when the registry has no such blob.
    async fn registry_blob_link(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, Error>;
    /// Takes a blob out of a repository; `false` when it was not there.
    async fn registry_blob_unlink(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, Error>;

    /// Stores a manifest (kept as it is when the digest is already there) and,
    /// with `tag`, points the tag at it, in one transaction.
    async fn registry_manifest_put(
        &self,
        manifest: &Manifest,
        tag: Option<&str>,
    ) -> Result<(), Error>;
    /// A manifest by digest.
    async fn registry_manifest(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<Option<Manifest>, Error>;
    /// The manifests of a repository, oldest first.
    async fn registry_manifests(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<Manifest>, Error>;
    /// Deletes a manifest and every tag naming it; `false` when there was none.
    async fn registry_manifest_delete(
        &self,
        registry: &str,
        repository: &str,
        digest: &str,
    ) -> Result<bool, Error>;
    /// A tag of a repository.
    async fn registry_tag(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<Option<Tag>, Error>;
    /// The tags of a repository, by name.
    async fn registry_tags(&self, registry: &str, repository: &str) -> Result<Vec<Tag>, Error>;
    /// Deletes a tag (not its manifest); `false` when there was none.
    async fn registry_tag_delete(
        &self,
        registry: &str,
        repository: &str,
        tag: &str,
    ) -> Result<bool, Error>;
    /// The repositories holding at least one manifest, by name.
    async fn registry_repositories(&self, registry: &str) -> Result<Vec<String>, Error>;
    /// Deletes a repository: its manifests, tags and blob memberships; `false`
    /// when it held none.
    async fn registry_repository_delete(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<bool, Error>;

    /// Begins an upload.
    async fn registry_upload_create(&self, upload: &Upload) -> Result<(), Error>;
    /// An upload by id.
    async fn registry_upload(&self, registry: &str, id: &str) -> Result<Option<Upload>, Error>;
    /// Records more bytes of an upload: `file_id` now holds `size` bytes. Only
    /// when the upload still holds `expected_size` bytes (two chunks sent at
    /// once cannot both land); `false` otherwise.
    async fn registry_upload_advance(
        &self,
        registry: &str,
        id: &str,
        expected_size: u64,
        file_id: &str,
        size: u64,
    ) -> Result<bool, Error>;
    /// Ends an upload; the upload as it was, for the caller to remove its file.
    async fn registry_upload_delete(
        &self,
        registry: &str,
        id: &str,
    ) -> Result<Option<Upload>, Error>;
    /// Uploads begun before `before`, ended; their files, for the caller to remove.
    async fn registry_uploads_expire(&self, before: i64) -> Result<Vec<String>, Error>;
}
