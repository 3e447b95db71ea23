//! Authorizing a bearer caller: one RBAC decision per request, at the container
//! (or, for account-level operations, the account) scope.

use axum::http::StatusCode;

use keyless_core::ResourceId;
use keyless_core::rbac::{AccessRequest, Permission};
use keyless_store::StorageAccount;

use super::auth::Identity;
use super::error::StorageError;
use super::operation::Operation;
use crate::state::SharedState;

const CONTAINER_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/read";
const CONTAINER_WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/write";
const CONTAINER_DELETE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/delete";
/// Reading blobs, also what a copy needs of its source.
pub(crate) const BLOB_READ: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
const BLOB_WRITE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write";
/// Appending to a blob (Azure's data action for Append Block).
const BLOB_ADD: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/add/action";
const BLOB_DELETE: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/delete";
const BLOB_TAGS_READ: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read";
/// Setting tags, also what `x-ms-tags` on a write needs besides the write.
pub(crate) const BLOB_TAGS_WRITE: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write";
const BLOB_FILTER: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/filter/action";
const BLOB_MOVE: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/move/action";
/// Changing owners and ACLs of a hierarchical namespace (Storage Blob Data Owner).
pub(crate) const MODIFY_PERMISSIONS: &str =
    "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/modifyPermissions/action";

impl Operation {
    /// What RBAC must grant a bearer caller, as Azure's permission table for blob
    /// operations names it: container operations need an action, blob operations a
    /// data action.
    pub(crate) fn permission(self) -> Permission<'static> {
        use Operation as Op;
        match self {
            Op::ListContainers | Op::GetContainerProperties | Op::GetFilesystemProperties => {
                Permission::Action(CONTAINER_READ)
            }
            Op::CreateContainer
            | Op::SetContainerMetadata
            | Op::CreateFilesystem
            | Op::RestoreContainer => Permission::Action(CONTAINER_WRITE),
            Op::DeleteContainer | Op::DeleteFilesystem => Permission::Action(CONTAINER_DELETE),
            Op::GetContainerAcl => Permission::Action(
                "Microsoft.Storage/storageAccounts/blobServices/containers/getAcl/action",
            ),
            Op::SetContainerAcl => Permission::Action(
                "Microsoft.Storage/storageAccounts/blobServices/containers/setAcl/action",
            ),
            Op::LeaseContainer => Permission::Action(
                "Microsoft.Storage/storageAccounts/blobServices/containers/lease/action",
            ),
            Op::GetBlobTags => Permission::DataAction(BLOB_TAGS_READ),
            Op::SetBlobTags => Permission::DataAction(BLOB_TAGS_WRITE),
            Op::FindBlobsByTags => Permission::DataAction(BLOB_FILTER),
            Op::ListPaths | Op::GetAccessControl | Op::GetPathStatus => {
                Permission::DataAction(BLOB_READ)
            }
            Op::CreatePath | Op::AppendData | Op::FlushData => Permission::DataAction(BLOB_WRITE),
            Op::RenamePath => Permission::DataAction(BLOB_MOVE),
            Op::SetAccessControl | Op::SetAccessControlRecursive => {
                Permission::DataAction(MODIFY_PERMISSIONS)
            }
            Op::DeletePath => Permission::DataAction(BLOB_DELETE),
            Op::GetServiceProperties | Op::GetServiceStats => {
                Permission::Action("Microsoft.Storage/storageAccounts/blobServices/read")
            }
            Op::SetServiceProperties => {
                Permission::Action("Microsoft.Storage/storageAccounts/blobServices/write")
            }
            Op::GetUserDelegationKey => Permission::Action(
                "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action",
            ),
            Op::GetAccountInformation
            | Op::ListBlobs
            | Op::GetBlob
            | Op::GetBlobProperties
            | Op::GetBlobMetadata
            | Op::GetPageRanges
            | Op::GetBlockList => Permission::DataAction(BLOB_READ),
            Op::PutBlob
            | Op::PutBlock
            | Op::PutBlockList
            | Op::SetBlobMetadata
            | Op::SetBlobProperties
            | Op::LeaseBlob
            | Op::SealBlob
            | Op::SetBlobTier
            | Op::PutPage
            | Op::CreateSnapshot
            | Op::UndeleteBlob
            | Op::CopyBlob => Permission::DataAction(BLOB_WRITE),
            Op::AppendBlock => Permission::DataAction(BLOB_ADD),
            Op::DeleteBlob | Op::BlobBatch => Permission::DataAction(BLOB_DELETE),
        }
    }
}

/// The RBAC scope of a request: the container, or the account.
pub(crate) fn scope(account: &StorageAccount, container: &str) -> Result<ResourceId, StorageError> {
    const CONTAINERS: &str = "/blobServices/default/containers/";
    let mut text = String::with_capacity(account.id.len() + CONTAINERS.len() + container.len());
    text.push_str(&account.id);
    if !container.is_empty() {
        text.push_str(CONTAINERS);
        text.push_str(container);
    }
    ResourceId::parse(&text)
        .map_err(|e| StorageError::from(keyless_core::Error::internal(e.to_string())))
}

/// Allows the request if RBAC grants `permission` to the identity at the
/// container; otherwise a 403 that names the identity, the permission and the scope.
pub(crate) fn authorize(
    state: &SharedState,
    account: &StorageAccount,
    identity: &Identity,
    permission: Permission<'_>,
    container: &str,
) -> Result<(), StorageError> {
    let who = Who {
        tenant: identity.tenant,
        principals: &identity.principals,
        name: identity.name(),
        object_id: identity.object_id(),
    };
    authorize_principals(state, account, who, permission, container)
}

/// The identity an RBAC decision is about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub(crate) tenant: keyless_core::TenantId,
    /// The object id, then its groups.
    pub(crate) principals: &'a [keyless_core::ObjectId],
    pub(crate) name: &'a str,
    pub(crate) object_id: &'a str,
}

/// [`authorize`] for any principal (the delegator of a user delegation SAS).
pub(crate) fn authorize_principals(
    state: &SharedState,
    account: &StorageAccount,
    identity: Who<'_>,
    permission: Permission<'_>,
    container: &str,
) -> Result<(), StorageError> {
    let scope = scope(account, container)?;
    let index = state.rbac();
    let request = AccessRequest {
        tenant: identity.tenant,
        principals: identity.principals,
        permission,
        scope: &scope,
    };
    if index.allows(&request) {
        return Ok(());
    }
    let why = index.explain(&request).explanation();
    Err(StorageError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationPermissionMismatch",
        "This request is not authorized to perform this operation using this permission.",
    )
    .explained(format!(
        "{}: {why}",
        crate::http::who(identity.name, identity.object_id)
    )))
}
