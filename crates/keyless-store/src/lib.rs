//! Persistence for keyless behind object-safe traits.
//!
//! [`MetaStore`] holds metadata: the directory, credentials, signing keys, refresh
//! tokens and device codes, subscriptions, resource groups, resources and role
//! assignments. The SQLite implementation (feature `sqlite`, the default) is the
//! embedded default; nothing outside this crate writes SQL. [`BlobBackend`] holds
//! blob bytes: local files by default, or any object store `object_store`
//! reaches ([`ObjectStoreBlobs`]).
//!
//! Depends on `keyless-core` only among the workspace crates.

#[cfg(not(feature = "sqlite"))]
compile_error!("keyless-store needs a metadata backend: enable the `sqlite` feature");

pub mod blob;
#[cfg(test)]
mod blob_conformance;
pub mod meta;
pub mod objects;
pub mod registry;
pub mod storage;
pub mod vault;

pub use blob::{BlobBackend, ByteStream, Extended, LocalFiles, Written};
pub use meta::*;
pub use objects::ObjectStoreBlobs;
pub use registry::*;
pub use storage::*;
pub use vault::*;
