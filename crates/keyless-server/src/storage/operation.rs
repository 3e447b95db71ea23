//! Parsing a Blob service request into an [`Operation`], in one function.

use axum::http::Method;

use super::error::StorageError;

/// What a request asks of the Blob service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `GET /{account}?comp=list`
    ListContainers,
    /// `GET /{account}?restype=service&comp=properties`
    GetServiceProperties,
    /// `PUT /{account}?restype=service&comp=properties`
    SetServiceProperties,
    /// `GET /{account}?restype=service&comp=stats` (a secondary endpoint's)
    GetServiceStats,
    /// `GET|HEAD …?restype=account&comp=properties` on the account, a container or a blob
    GetAccountInformation,
    /// `POST /{account}?restype=service&comp=userdelegationkey` (bearer only)
    GetUserDelegationKey,
    /// `PUT /{account}/{container}?restype=container`
    CreateContainer,
    /// `DELETE /{account}/{container}?restype=container`
    DeleteContainer,
    /// `GET|HEAD /{account}/{container}?restype=container`
    GetContainerProperties,
    /// `PUT /{account}/{container}?restype=container&comp=metadata`
    SetContainerMetadata,
    /// `PUT /{account}/{container}?restype=container&comp=undelete`
    RestoreContainer,
    /// `PUT /{account}/{container}?restype=container&comp=lease`
    LeaseContainer,
    /// `GET|HEAD /{account}/{container}?restype=container&comp=acl`
    GetContainerAcl,
    /// `PUT /{account}/{container}?restype=container&comp=acl`
    SetContainerAcl,
    /// `GET /{account}/{container}?restype=container&comp=list`
    ListBlobs,
    /// `GET /{account}?comp=blobs&where=…` or `GET /{account}/{container}?restype=container&comp=blobs&where=…`
    FindBlobsByTags,
    /// `PUT /{account}/{container}/{blob}`
    PutBlob,
    /// `PUT …?comp=block`
    PutBlock,
    /// `PUT …?comp=blocklist`
    PutBlockList,
    /// `GET …?comp=blocklist`
    GetBlockList,
    /// `GET /{account}/{container}/{blob}`
    GetBlob,
    /// `HEAD /{account}/{container}/{blob}`
    GetBlobProperties,
    /// `PUT …?comp=metadata`
    SetBlobMetadata,
    /// `GET|HEAD …?comp=metadata`
    GetBlobMetadata,
    /// `PUT …?comp=properties`
    SetBlobProperties,
    /// `DELETE /{account}/{container}/{blob}`
    DeleteBlob,
    /// `GET …?comp=tags`
    GetBlobTags,
    /// `PUT …?comp=tags`
    SetBlobTags,
    /// `PUT …?comp=lease`
    LeaseBlob,
    /// `PUT …?comp=appendblock`
    AppendBlock,
    /// `PUT …?comp=seal`
    SealBlob,
    /// `PUT …?comp=tier`
    SetBlobTier,
    /// `PUT …?comp=page`
    PutPage,
    /// `PUT …?comp=snapshot`
    CreateSnapshot,
    /// `PUT …?comp=undelete`
    UndeleteBlob,
    /// `GET …?comp=pagelist`
    GetPageRanges,
    /// `POST /{account}/{container}?restype=container&comp=batch` (deletes only)
    BlobBatch,
    /// `PUT /{account}/{container}/{blob}` with `x-ms-copy-source` (same server)
    CopyBlob,
    /// DFS `PUT /{account}/{filesystem}?resource=filesystem`
    CreateFilesystem,
    /// DFS `DELETE /{account}/{filesystem}?resource=filesystem`
    DeleteFilesystem,
    /// DFS `HEAD|GET /{account}/{filesystem}?resource=filesystem` without listing
    GetFilesystemProperties,
    /// DFS `GET /{account}/{filesystem}?resource=filesystem&recursive=…`
    ListPaths,
    /// DFS `PUT …?resource=file|directory`
    CreatePath,
    /// DFS `PUT …` with `x-ms-rename-source`
    RenamePath,
    /// DFS `PATCH …?action=append&position=…`
    AppendData,
    /// DFS `PATCH …?action=flush&position=…`
    FlushData,
    /// DFS `HEAD …?action=getAccessControl` (also on the root: `/{filesystem}/`)
    GetAccessControl,
    /// DFS `HEAD …?action=getStatus`
    GetPathStatus,
    /// DFS `PATCH …?action=setAccessControl`
    SetAccessControl,
    /// DFS `PATCH …?action=setAccessControlRecursive&mode=set|modify|remove`
    SetAccessControlRecursive,
    /// DFS `DELETE …?recursive=true|false`
    DeletePath,
}

impl Operation {
    /// Whether the operation belongs to the DFS API (errors as JSON).
    pub(crate) fn is_dfs(self) -> bool {
        matches!(
            self,
            Self::CreateFilesystem
                | Self::DeleteFilesystem
                | Self::GetFilesystemProperties
                | Self::ListPaths
                | Self::CreatePath
                | Self::RenamePath
                | Self::AppendData
                | Self::FlushData
                | Self::GetAccessControl
                | Self::GetPathStatus
                | Self::SetAccessControl
                | Self::SetAccessControlRecursive
                | Self::DeletePath
        )
    }
}

impl Operation {
    /// The operation's name as Azure's storage logs write it.
    pub(crate) fn log_name(self) -> &'static str {
        use Operation as Op;
        match self {
            Op::ListContainers => "ListContainers",
            Op::GetServiceProperties => "GetBlobServiceProperties",
            Op::GetAccountInformation => "GetAccountInformation",
            Op::SetServiceProperties => "SetBlobServiceProperties",
            Op::GetServiceStats => "GetBlobServiceStats",
            Op::GetUserDelegationKey => "GetUserDelegationKey",
            Op::CreateContainer => "CreateContainer",
            Op::RestoreContainer => "RestoreContainer",
            Op::DeleteContainer => "DeleteContainer",
            Op::GetContainerProperties => "GetContainerProperties",
            Op::SetContainerMetadata => "SetContainerMetadata",
            Op::ListBlobs => "ListBlobs",
            Op::LeaseContainer => "LeaseContainer",
            Op::GetContainerAcl => "GetContainerACL",
            Op::SetContainerAcl => "SetContainerACL",
            Op::FindBlobsByTags => "FindBlobsByTags",
            Op::GetBlobTags => "GetBlobTags",
            Op::SetBlobTags => "SetBlobTags",
            Op::LeaseBlob => "LeaseBlob",
            Op::AppendBlock => "AppendBlock",
            Op::SealBlob => "SealBlob",
            Op::SetBlobTier => "SetBlobTier",
            Op::PutPage => "PutPage",
            Op::GetPageRanges => "GetPageRegions",
            Op::CreateSnapshot => "SnapshotBlob",
            Op::UndeleteBlob => "UndeleteBlob",
            Op::PutBlob => "PutBlob",
            Op::PutBlock => "PutBlock",
            Op::PutBlockList => "PutBlockList",
            Op::GetBlockList => "GetBlockList",
            Op::GetBlob => "GetBlob",
            Op::GetBlobProperties => "GetBlobProperties",
            Op::GetBlobMetadata => "GetBlobMetadata",
            Op::SetBlobMetadata => "SetBlobMetadata",
            Op::SetBlobProperties => "SetBlobProperties",
            Op::DeleteBlob => "DeleteBlob",
            Op::BlobBatch => "BlobBatch",
            Op::CopyBlob => "CopyBlob",
            Op::CreateFilesystem => "CreateFilesystem",
            Op::DeleteFilesystem => "DeleteFilesystem",
            Op::GetFilesystemProperties => "GetFilesystemProperties",
            Op::ListPaths => "ListFilesystemDir",
            Op::CreatePath => "CreatePath",
            Op::RenamePath => "RenamePath",
            Op::AppendData => "AppendFile",
            Op::FlushData => "FlushFile",
            Op::GetAccessControl => "GetPathAccessControl",
            Op::GetPathStatus => "GetPathStatus",
            Op::SetAccessControl => "SetPathAccessControl",
            Op::SetAccessControlRecursive => "SetPathAccessControlRecursive",
            Op::DeletePath => "DeletePath",
        }
    }
}

/// Where a request points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Account,
    Container,
    Blob,
}

impl Operation {
    /// Parses method, query and target; names what is not supported.
    pub(crate) fn parse(
        method: &Method,
        query: &[(String, String)],
        target: Target,
        copy_source: bool,
        rename_source: bool,
    ) -> Result<Self, StorageError> {
        let q = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (restype, comp) = (q("restype"), q("comp"));
        let m = method.as_str();
        if let Some(op) = Self::parse_dfs(m, target, q("resource"), q("action"), rename_source)
            .or_else(|| {
                (target == Target::Blob && m == "DELETE" && q("recursive").is_some())
                    .then_some(Self::DeletePath)
            })
        {
            return Ok(op);
        }
        let op = match (target, m, restype, comp) {
            (_, "GET" | "HEAD", Some("account"), Some("properties")) => Self::GetAccountInformation,
            (Target::Account, "GET", None, Some("list")) => Self::ListContainers,
            (Target::Account, "GET", None, Some("blobs")) => Self::FindBlobsByTags,
            (Target::Container, "GET", Some("container"), Some("blobs")) => Self::FindBlobsByTags,
            (Target::Container, "PUT", Some("container"), Some("lease")) => Self::LeaseContainer,
            (Target::Container, "GET" | "HEAD", Some("container"), Some("acl")) => {
                Self::GetContainerAcl
            }
            (Target::Container, "PUT", Some("container"), Some("acl")) => Self::SetContainerAcl,
            (Target::Account, "GET", Some("service"), Some("properties")) => {
                Self::GetServiceProperties
            }
            (Target::Account, "PUT", Some("service"), Some("properties")) => {
                Self::SetServiceProperties
            }
            (Target::Account, "GET", Some("service"), Some("stats")) => Self::GetServiceStats,
            (Target::Account, "POST", Some("service"), Some("userdelegationkey")) => {
                Self::GetUserDelegationKey
            }
            (Target::Container, "PUT", Some("container"), None) => Self::CreateContainer,
            (Target::Container, "DELETE", Some("container"), None) => Self::DeleteContainer,
            (Target::Container, "GET" | "HEAD", Some("container"), None | Some("metadata")) => {
                Self::GetContainerProperties
            }
            (Target::Container, "PUT", Some("container"), Some("metadata")) => {
                Self::SetContainerMetadata
            }
            (Target::Container, "PUT", Some("container"), Some("undelete")) => {
                Self::RestoreContainer
            }
            (Target::Container, "GET", Some("container"), Some("list")) => Self::ListBlobs,
            (Target::Container, "POST", Some("container"), Some("batch")) => Self::BlobBatch,
            // The JavaScript SDK sends a service's batch as a container's
            // (`restype=container`) when the account is in the path.
            (Target::Account, "POST", None | Some("container"), Some("batch")) => Self::BlobBatch,
            (Target::Blob, "PUT", None, None) if !copy_source => Self::PutBlob,
            (Target::Blob, "PUT", None, None) => Self::CopyBlob,
            (Target::Blob, "PUT", None, Some("block")) if !copy_source => Self::PutBlock,
            (Target::Blob, "PUT", None, Some("blocklist")) => Self::PutBlockList,
            (Target::Blob, "GET", None, Some("blocklist")) => Self::GetBlockList,
            (Target::Blob, "GET", None, None) => Self::GetBlob,
            (Target::Blob, "HEAD", None, None) => Self::GetBlobProperties,
            (Target::Blob, "PUT", None, Some("metadata")) => Self::SetBlobMetadata,
            (Target::Blob, "GET" | "HEAD", None, Some("metadata")) => Self::GetBlobMetadata,
            (Target::Blob, "PUT", None, Some("properties")) => Self::SetBlobProperties,
            (Target::Blob, "DELETE", None, None) => Self::DeleteBlob,
            (Target::Blob, "GET", None, Some("tags")) => Self::GetBlobTags,
            (Target::Blob, "PUT", None, Some("tags")) => Self::SetBlobTags,
            (Target::Blob, "PUT", None, Some("lease")) => Self::LeaseBlob,
            (Target::Blob, "PUT", None, Some("appendblock")) if !copy_source => Self::AppendBlock,
            (Target::Blob, "PUT", None, Some("seal")) => Self::SealBlob,
            (Target::Blob, "PUT", None, Some("tier")) => Self::SetBlobTier,
            (Target::Blob, "PUT", None, Some("page")) if !copy_source => Self::PutPage,
            (Target::Blob, "GET", None, Some("pagelist")) => Self::GetPageRanges,
            (Target::Blob, "PUT", None, Some("snapshot")) => Self::CreateSnapshot,
            (Target::Blob, "PUT", None, Some("undelete")) => Self::UndeleteBlob,
            _ => {
                let what = match (comp, restype, copy_source) {
                    (_, _, true) => "copy from a URL".to_owned(),
                    (Some(c), Some(r), _) => format!("restype={r}&comp={c}"),
                    (Some(c), None, _) => format!("comp={c}"),
                    (None, Some(r), _) => format!("restype={r}"),
                    (None, None, _) => "this request".to_owned(),
                };
                return Err(StorageError::bad(
                    "UnsupportedOperation",
                    format!(
                        "keyless does not support `{m}` with {what} on a {target:?} (yet); no data was changed"
                    ),
                ));
            }
        };
        Ok(op)
    }
}

impl Operation {
    fn parse_dfs(
        method: &str,
        target: Target,
        resource: Option<&str>,
        action: Option<&str>,
        rename_source: bool,
    ) -> Option<Self> {
        use Target::{Blob, Container};
        Some(match (target, method, resource, action) {
            (Container, "PUT", Some("filesystem"), None) => Self::CreateFilesystem,
            (Container, "DELETE", Some("filesystem"), None) => Self::DeleteFilesystem,
            (Container, "HEAD", Some("filesystem"), None) => Self::GetFilesystemProperties,
            (Container, "GET", Some("filesystem"), None) => Self::ListPaths,
            (Blob, "PUT", Some("file" | "directory"), None) if !rename_source => Self::CreatePath,
            (Blob, "PUT", _, None) if rename_source => Self::RenamePath,
            (Blob, "PATCH", None, Some("append")) => Self::AppendData,
            (Blob, "PATCH", None, Some("flush")) => Self::FlushData,
            (Blob | Container, "HEAD", None, Some("getAccessControl")) => Self::GetAccessControl,
            (Blob, "HEAD", None, Some("getStatus")) => Self::GetPathStatus,
            (Blob | Container, "PATCH", None, Some("setAccessControl")) => Self::SetAccessControl,
            (Blob | Container, "PATCH", None, Some("setAccessControlRecursive")) => {
                Self::SetAccessControlRecursive
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn requests_of_the_rest_reference_parse_to_their_operations() {
        let cases = [
            (
                Method::GET,
                q(&[("comp", "list")]),
                Target::Account,
                Operation::ListContainers,
            ),
            (
                Method::PUT,
                q(&[("restype", "container")]),
                Target::Container,
                Operation::CreateContainer,
            ),
            (
                Method::PUT,
                q(&[("restype", "container"), ("comp", "undelete")]),
                Target::Container,
                Operation::RestoreContainer,
            ),
            (
                Method::PUT,
                q(&[("comp", "undelete")]),
                Target::Blob,
                Operation::UndeleteBlob,
            ),
            (
                Method::DELETE,
                q(&[("restype", "container")]),
                Target::Container,
                Operation::DeleteContainer,
            ),
            (
                Method::HEAD,
                q(&[("restype", "container")]),
                Target::Container,
                Operation::GetContainerProperties,
            ),
            (
                Method::GET,
                q(&[("restype", "container"), ("comp", "list"), ("prefix", "a")]),
                Target::Container,
                Operation::ListBlobs,
            ),
            (
                Method::PUT,
                q(&[("restype", "container"), ("comp", "metadata")]),
                Target::Container,
                Operation::SetContainerMetadata,
            ),
            (Method::PUT, q(&[]), Target::Blob, Operation::PutBlob),
            (
                Method::PUT,
                q(&[("comp", "block"), ("blockid", "AAA=")]),
                Target::Blob,
                Operation::PutBlock,
            ),
            (
                Method::PUT,
                q(&[("comp", "blocklist")]),
                Target::Blob,
                Operation::PutBlockList,
            ),
            (
                Method::GET,
                q(&[("comp", "blocklist"), ("blocklisttype", "all")]),
                Target::Blob,
                Operation::GetBlockList,
            ),
            (Method::GET, q(&[]), Target::Blob, Operation::GetBlob),
            (
                Method::HEAD,
                q(&[]),
                Target::Blob,
                Operation::GetBlobProperties,
            ),
            (
                Method::PUT,
                q(&[("comp", "metadata")]),
                Target::Blob,
                Operation::SetBlobMetadata,
            ),
            (
                Method::PUT,
                q(&[("comp", "properties")]),
                Target::Blob,
                Operation::SetBlobProperties,
            ),
            (Method::DELETE, q(&[]), Target::Blob, Operation::DeleteBlob),
            (
                Method::POST,
                q(&[("comp", "batch")]),
                Target::Account,
                Operation::BlobBatch,
            ),
            (
                Method::POST,
                q(&[("restype", "container"), ("comp", "batch")]),
                Target::Container,
                Operation::BlobBatch,
            ),
        ];
        for (method, query, target, expected) in cases {
            assert_eq!(
                Operation::parse(&method, &query, target, false, false).unwrap(),
                expected,
                "{method} {query:?}"
            );
        }
    }

    #[test]
    fn unsupported_requests_name_what_is_missing() {
        let err = Operation::parse(
            &Method::PUT,
            &q(&[("comp", "incrementalcopy")]),
            Target::Blob,
            false,
            false,
        )
        .unwrap_err();
        assert_eq!(err.code(), "UnsupportedOperation");
        let err = Operation::parse(
            &Method::PUT,
            &q(&[("comp", "block")]),
            Target::Blob,
            true,
            false,
        )
        .unwrap_err();
        assert_eq!(err.code(), "UnsupportedOperation");
        assert_eq!(
            Operation::parse(&Method::PUT, &q(&[]), Target::Blob, true, false).unwrap(),
            Operation::CopyBlob
        );
    }
}
