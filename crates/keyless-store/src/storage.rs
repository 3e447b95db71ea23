//! Storage metadata: accounts, containers, blobs and uncommitted blocks.
//!
//! Rows here are the only references to the files of the [`crate::blob`] backend:
//! a write that replaces or removes rows returns the file ids it released, for the
//! caller to delete after the transaction committed. A crash in between leaves
//! files no row names, which the start-up sweep removes.

use std::collections::HashSet;
use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use keyless_core::acl::PathAcl;
use keyless_core::{Error, TenantId};

/// A storage account. Its keys are sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAccount {
    /// The account name: 3–24 lowercase letters and digits, unique per server.
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
    /// Hierarchical namespace (ADLS Gen2).
    pub hns: bool,
    /// Whether SharedKey and account SAS are accepted.
    pub allow_shared_key: bool,
    /// Other properties as JSON (`tags`, `networkAcls`).
    pub body: serde_json::Value,
    /// `key1`, sealed.
    pub key1: Vec<u8>,
    /// `key2`, sealed.
    pub key2: Vec<u8>,
    /// Creation time.
    pub created_at: i64,
}

/// A container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    /// The account.
    pub account: String,
    /// The container name.
    pub name: String,
    /// Its strong ETag, quoted.
    pub etag: String,
    /// Last modification, seconds since the epoch.
    pub last_modified: i64,
    /// User metadata, names lowercase.
    pub metadata: Vec<(String, String)>,
    /// The root directory's access control (hierarchical-namespace accounts).
    pub acl: Option<PathAcl>,
    /// Lease, public access and stored access policies.
    pub state: ContainerState,
}

/// A lease on a blob or a container, as stored; its state (leased, expired,
/// breaking, broken) follows from the times and the clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The lease id the holder presents.
    pub id: String,
    /// Seconds, or -1 for an infinite lease.
    pub duration: i64,
    /// When a finite lease expires (milliseconds since the epoch).
    pub expires_at: Option<i64>,
    /// When a break that was asked for ends, in milliseconds (the lease is
    /// breaking until then, broken after).
    pub broken_at: Option<i64>,
}

/// A stored access policy of a container (`<SignedIdentifier>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// Its id (`si=` in a SAS), up to 64 characters.
    pub id: String,
    /// `Start`, as sent (ISO 8601), if any.
    pub start: Option<String>,
    /// `Expiry`, as sent, if any.
    pub expiry: Option<String>,
    /// `Permission` letters, if any.
    pub permission: Option<String>,
}

/// What a container holds besides its metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    /// Its lease, if one was ever acquired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// Anonymous read access: `container` or `blob`; `None` is private.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_access: Option<String>,
    /// Stored access policies (at most five).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<AccessPolicy>,
}

impl ContainerState {
    /// Whether this is the state of a fresh container (stored as NULL).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The three kinds of blob.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlobKind {
    /// Committed from blocks, or written whole.
    #[default]
    BlockBlob,
    /// 512-byte pages written at offsets.
    PageBlob,
    /// Blocks appended at the end.
    AppendBlob,
}

impl BlobKind {
    /// The name Azure gives it (`x-ms-blob-type`, `<BlobType>`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockBlob => "BlockBlob",
            Self::PageBlob => "PageBlob",
            Self::AppendBlob => "AppendBlob",
        }
    }
}

/// What a blob holds besides its bytes, properties and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlobState {
    /// Block, page or append.
    #[serde(skip_serializing_if = "is_block")]
    pub kind: BlobKind,
    /// Index tags, in the order set.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Its lease, if one was ever acquired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// An access tier set explicitly, and when (seconds since the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<(String, i64)>,
    /// A page blob's sequence number.
    #[serde(skip_serializing_if = "is_zero")]
    pub sequence_number: u64,
    /// A page blob's written ranges, `(start, end inclusive)`, sorted and disjoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<(u64, u64)>,
    /// An append blob's committed block count.
    #[serde(skip_serializing_if = "is_zero")]
    pub appended_blocks: u64,
    /// An append blob that takes no more blocks.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    /// The version id of this state, when the account keeps versions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// The copy that made this blob, until it is written again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyState>,
}

/// The copy that made a blob (Azure's copy properties). keyless copies
/// synchronously: a copy it records has succeeded whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyState {
    /// The copy's id, as the Copy Blob response gave it.
    pub id: String,
    /// The source URL, as the request gave it.
    pub source: String,
    /// When it completed (seconds since the epoch).
    pub completed_at: i64,
    /// The bytes copied.
    pub size: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's `skip_serializing_if` passes a reference"
)]
fn is_block(kind: &BlobKind) -> bool {
    *kind == BlobKind::BlockBlob
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's `skip_serializing_if` passes a reference"
)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl BlobState {
    /// Whether this is the state of a fresh block blob (stored as NULL).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Standard HTTP properties stored with a blob.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobProperties {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-MD5`, raw bytes.
    pub content_md5: Option<Vec<u8>>,
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// In a file of the [`crate::blob`] backend.
    File(String),
    /// In the row itself (small blobs): committed with the metadata.
    Inline(Bytes),
}

impl Content {
    /// The backend file, when there is one.
    #[must_use]
    pub fn file_id(&self) -> Option<&str> {
        match self {
            Self::File(id) => Some(id),
            Self::Inline(_) => None,
        }
    }
}

/// A committed block blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The account.
    pub account: String,
    /// The container.
    pub container: String,
    /// The blob name.
    pub name: String,
    /// Its strong ETag, quoted.
    pub etag: String,
    /// Creation time (kept across overwrites).
    pub created_at: i64,
    /// Last modification.
    pub last_modified: i64,
    /// Length in bytes.
    pub size: u64,
    /// Where the bytes are.
    pub content: Content,
    /// HTTP properties.
    pub properties: BlobProperties,
    /// User metadata.
    pub metadata: Vec<(String, String)>,
    /// The committed block list: (block id, size).
    pub committed_blocks: Vec<(String, u64)>,
    /// A directory of a hierarchical namespace (empty, `hdi_isfolder=true`).
    pub is_dir: bool,
    /// Its access control (hierarchical-namespace accounts).
    pub acl: Option<PathAcl>,
    /// Type, tags, lease, tier and the type's own state.
    pub state: BlobState,
}

/// What a kept earlier state of a blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainedKind {
    /// Taken on request (Snapshot Blob), or of a blob overwritten while the
    /// account keeps deleted blobs.
    Snapshot,
    /// A previous version, kept because the account keeps versions.
    Version,
    /// The blob itself, deleted while the account keeps deleted blobs.
    Deleted,
}

impl RetainedKind {
    /// The name stored in the `kind` column.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Version => "version",
            Self::Deleted => "deleted",
        }
    }

    /// The kind named `text`, if any.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "snapshot" => Some(Self::Snapshot),
            "version" => Some(Self::Version),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// An earlier state of a blob, kept with bytes of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    /// Snapshot, version or deleted blob.
    pub kind: RetainedKind,
    /// Its name: the snapshot time, the version id or the time of deletion.
    pub id: String,
    /// When it was deleted under a retention policy, and when it goes for good.
    pub deleted: Option<(i64, i64)>,
    /// The blob as it was.
    pub blob: Blob,
}

/// What a write or a delete keeps of the blob it replaces or removes, in the
/// same transaction. A blob that carries a version id is kept as that version
/// whatever `kind` says: versions outlive the setting that made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keep {
    /// What a blob without a version id is kept as; `None`: it is not kept.
    pub kind: Option<RetainedKind>,
    /// Its name; a version keeps the version id it had when it has one.
    pub id: String,
    /// Kept as deleted under a retention policy: when, and until when. A delete
    /// that keeps the blob deleted keeps its live snapshots deleted too.
    pub deleted: Option<(i64, i64)>,
}

/// A container kept deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedContainer {
    /// The container as it was, under its own name.
    pub container: Container,
    /// Which deletion of that name it is.
    pub version: String,
    /// When it was deleted, and when it goes for good.
    pub deleted: (i64, i64),
}

/// The name a deleted container is kept under: no request can name it (a
/// container name has no `/`).
#[must_use]
pub fn deleted_container_name(name: &str, version: &str) -> String {
    format!("$deleted/{name}/{version}")
}

/// An uncommitted block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The account.
    pub account: String,
    /// The container.
    pub container: String,
    /// The blob the block was staged for.
    pub blob: String,
    /// The block id (base64, as sent).
    pub block_id: String,
    /// Length in bytes.
    pub size: u64,
    /// The file holding the bytes.
    pub file_id: String,
    /// When it was staged.
    pub created_at: i64,
}

/// A page of a listing.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    /// Only names starting with this.
    pub prefix: &'a str,
    /// Only names after this.
    pub marker: &'a str,
    /// At most this many.
    pub max: usize,
}

/// Decides, inside the write's transaction, whether it may change the current container.
pub type ContainerCheck<'a> = &'a (dyn Fn(&Container) -> Result<(), Error> + Send + Sync);

/// Decides, inside the write's transaction, whether it may replace the current blob.
pub type Precondition<'a> = &'a (dyn Fn(Option<&Blob>) -> Result<(), Error> + Send + Sync);

/// Accounts, containers, blobs and blocks.
#[async_trait]
pub trait StorageStore: Send + Sync + Debug + 'static {
    /// Creates an account; `AlreadyExists` when the name is taken anywhere on the server.
    async fn account_create(&self, account: &StorageAccount) -> Result<(), Error>;
    /// An account by name.
    async fn account(&self, name: &str) -> Result<Option<StorageAccount>, Error>;
    /// The accounts of a subscription, or of one of its resource groups.
    async fn accounts(
        &self,
        subscription_id: &str,
        resource_group: Option<&str>,
    ) -> Result<Vec<StorageAccount>, Error>;
    /// Replaces an account's mutable fields (flags, body, keys).
    async fn account_update(&self, account: &StorageAccount) -> Result<(), Error>;
    /// Deletes an account with its containers, blobs and blocks; returns the files released.
    async fn account_delete(&self, name: &str) -> Result<Option<Vec<String>>, Error>;

    /// Creates a container; `AlreadyExists` when it exists.
    async fn container_create(&self, container: &Container) -> Result<(), Error>;
    /// A container.
    async fn container(&self, account: &str, name: &str) -> Result<Option<Container>, Error>;
    /// A page of containers, by name.
    async fn containers(&self, account: &str, page: Page<'_>) -> Result<Vec<Container>, Error>;
    /// Replaces a container's metadata, access control, state and ETag if `check`
    /// accepts the current one; `NotFound` when it does not exist.
    async fn container_update(
        &self,
        container: &Container,
        check: ContainerCheck<'_>,
    ) -> Result<(), Error>;
    /// Deletes a container with its blobs and blocks if `check` accepts it; returns
    /// the files released (`None` when it does not exist).
    async fn container_delete(
        &self,
        account: &str,
        name: &str,
        check: ContainerCheck<'_>,
    ) -> Result<Option<Vec<String>>, Error> {
        self.container_delete_keeping(account, name, check, None)
            .await
    }

    /// Deletes a container as [`Self::container_delete`] does, or, with `keep`
    /// (its version, when it was deleted, until when), keeps it and its blobs
    /// deleted until it is restored or its retention ends.
    async fn container_delete_keeping(
        &self,
        account: &str,
        name: &str,
        check: ContainerCheck<'_>,
        keep: Option<(&str, i64, i64)>,
    ) -> Result<Option<Vec<String>>, Error>;
    /// The containers kept deleted, under `prefix`, by name then version.
    async fn containers_deleted(
        &self,
        account: &str,
        prefix: &str,
    ) -> Result<Vec<DeletedContainer>, Error>;
    /// Restores a deleted container (named and versioned) as `to`: `NotFound`
    /// when there is no such deleted container, `AlreadyExists` when `to` exists.
    async fn container_restore(
        &self,
        account: &str,
        name: &str,
        version: &str,
        to: &str,
    ) -> Result<(), Error>;

    /// A blob.
    async fn blob(&self, account: &str, container: &str, name: &str)
    -> Result<Option<Blob>, Error>;
    /// A blob to read, not to change: a store that keeps recently read rows
    /// hands out its own copy instead of a clone.
    async fn blob_shared(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<std::sync::Arc<Blob>>, Error> {
        Ok(self
            .blob(account, container, name)
            .await?
            .map(std::sync::Arc::new))
    }
    /// A page of blobs, by name, without their bytes (inline content comes back empty).
    async fn blobs(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
    ) -> Result<Vec<Blob>, Error>;
    /// Blobs that carry index tags, without their bytes, by container then name,
    /// after `after` (`(container, name)`), at most `max`; in `container` alone
    /// when one is given.
    async fn tagged_blobs(
        &self,
        account: &str,
        container: Option<&str>,
        after: (&str, &str),
        max: usize,
    ) -> Result<Vec<Blob>, Error>;
    /// Writes a blob if `check` accepts the current one (atomically with the check),
    /// dropping every uncommitted block of that name. The new blob keeps the lease
    /// of the one it replaces unless it brings its own. Returns the files released.
    async fn blob_put(&self, blob: &Blob, check: Precondition<'_>) -> Result<Vec<String>, Error> {
        self.blob_put_keeping(blob, check, None).await
    }
    /// [`Self::blob_put`], keeping the blob it replaces as `keep` says (its file
    /// then goes to the kept row instead of being released).
    async fn blob_put_keeping(
        &self,
        blob: &Blob,
        check: Precondition<'_>,
        keep: Option<&Keep>,
    ) -> Result<Vec<String>, Error>;
    /// Changes a blob's properties, metadata, state and ETag (not its bytes) if `check` accepts it.
    async fn blob_update(&self, blob: &Blob, check: Precondition<'_>) -> Result<(), Error>;
    /// Deletes a blob if `check` accepts it; returns the files released (`NotFound` when absent).
    async fn blob_delete(
        &self,
        account: &str,
        container: &str,
        name: &str,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error> {
        self.blob_delete_keeping(account, container, name, check, None)
            .await
    }
    /// [`Self::blob_delete`], keeping the blob as `keep` says.
    async fn blob_delete_keeping(
        &self,
        account: &str,
        container: &str,
        name: &str,
        check: Precondition<'_>,
        keep: Option<&Keep>,
    ) -> Result<Vec<String>, Error>;

    /// Renames a path of a hierarchical namespace and, for a directory, everything
    /// under it, in one transaction. A file may replace a file (its bytes are
    /// released); nothing replaces a directory. `NotFound` when `from` is absent.
    async fn path_rename(
        &self,
        account: &str,
        container: &str,
        from: &str,
        to: &str,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error>;
    /// Deletes a path and, with `recursive`, everything under it; a directory with
    /// children and no `recursive` is a `Conflict`. Returns the files released.
    async fn path_delete(
        &self,
        account: &str,
        container: &str,
        name: &str,
        recursive: bool,
        check: Precondition<'_>,
    ) -> Result<Vec<String>, Error>;
    /// Replaces the access control of many paths at once (recursive ACL changes).
    async fn acl_update(
        &self,
        account: &str,
        container: &str,
        acls: &[(String, PathAcl)],
    ) -> Result<(), Error>;

    /// Stages a block (replacing one with the same id); returns the file released.
    async fn block_put(&self, block: &Block) -> Result<Option<String>, Error>;
    /// The id of one of a blob's staged blocks (they all have the same length),
    /// or `None` when it has none.
    async fn staged_block_id(
        &self,
        account: &str,
        container: &str,
        blob: &str,
    ) -> Result<Option<String>, Error>;
    /// The uncommitted blocks of a blob.
    async fn blocks(&self, account: &str, container: &str, blob: &str)
    -> Result<Vec<Block>, Error>;
    /// The names, after `page.marker` and under `page.prefix`, that have staged
    /// blocks (with or without a committed blob).
    async fn staged_names(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
    ) -> Result<Vec<String>, Error>;
    /// Removes uncommitted blocks staged before `before`; returns the files released.
    async fn blocks_expire(&self, before: i64) -> Result<Vec<String>, Error>;

    /// Writes (or replaces) a kept state of a blob, with bytes of its own.
    /// Returns the file of the row it replaced, if any.
    async fn retained_put(&self, kept: &Retained) -> Result<Option<String>, Error>;
    /// A kept state of a blob, by kind and name, deleted or not.
    async fn retained_one(
        &self,
        account: &str,
        container: &str,
        name: &str,
        kind: RetainedKind,
        id: &str,
    ) -> Result<Option<Retained>, Error>;
    /// The kept states of a blob, by name (oldest first), every kind, deleted or not.
    async fn retained(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Vec<Retained>, Error>;
    /// The names, after `page.marker` and under `page.prefix`, that have kept
    /// states of the given kinds; `deleted` says whether rows deleted under a
    /// retention policy count.
    async fn retained_names(
        &self,
        account: &str,
        container: &str,
        page: Page<'_>,
        kinds: &[RetainedKind],
        deleted: bool,
    ) -> Result<Vec<String>, Error>;
    /// Deletes kept states of a blob: of `kind` (every kind when `None`), the one
    /// named `id` or all of them. With `soft`, they are marked deleted (when, until
    /// when) instead, and the ones already so marked are left alone. Returns the
    /// files released.
    async fn retained_delete(
        &self,
        account: &str,
        container: &str,
        name: &str,
        which: (Option<RetainedKind>, Option<&str>),
        soft: Option<(i64, i64)>,
    ) -> Result<Vec<String>, Error>;
    /// Undelete Blob: every kept state of the blob deleted under a retention policy
    /// is restored; when the blob itself is gone, its latest deleted state becomes
    /// the blob again and earlier ones become snapshots. `NotFound` when there is
    /// neither a blob nor anything deleted to restore.
    async fn undelete(&self, account: &str, container: &str, name: &str) -> Result<(), Error>;
    /// Deletes for good the kept states and containers whose retention ended
    /// before `now`; returns the files released.
    async fn retained_expire(&self, now: i64) -> Result<Vec<String>, Error>;
    /// Every file id a row refers to (for the start-up sweep).
    async fn file_ids(&self) -> Result<HashSet<String>, Error>;
}
