//! The pure core of keyless: identifiers, principals, ARM resource ids (the RBAC
//! scopes), role definitions and the RBAC decision function, directory roles and
//! the shared error type.
//!
//! Nothing here performs I/O or depends on async runtimes, HTTP or SQL; the other
//! crates build on these types.

pub mod acl;
pub mod directory;
pub mod error;
pub mod id;
pub mod identity_rule;
pub mod principal;
pub mod rbac;
pub mod resource_id;

pub use error::{Error, ErrorKind};
pub use id::{ClientId, ObjectId, TenantId};
pub use principal::{Principal, PrincipalKind};
pub use resource_id::ResourceId;
