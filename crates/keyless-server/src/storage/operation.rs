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
    /// `PUT /{account}/{container}?restype=container`
    CreateContainer,
    /// `DELETE /{account}/{container}?restype=container`
    DeleteContainer,
    /// `GET|HEAD /{account}/{container}?restype=container`
    GetContainerProperties,
    /// `PUT /{account}/{container}?restype=container&comp=metadata`
    SetContainerMetadata,
    /// `GET /{account}/{container}?restype=container&comp=list`
    ListBlobs,
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
    /// `POST /{account}/{container}?restype=container&comp=batch` (deletes only)
    BlobBatch,
    /// `PUT /{account}/{container}/{blob}` with `x-ms-copy-source` (same server)
    CopyBlob,
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
    ) -> Result<Self, StorageError> {
        let q = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let (restype, comp) = (q("restype"), q("comp"));
        let m = method.as_str();
        let op = match (target, m, restype, comp) {
            (Target::Account, "GET", None, Some("list")) => Self::ListContainers,
            (Target::Account, "GET", Some("service"), Some("properties")) => {
                Self::GetServiceProperties
            }
            (Target::Account, "PUT", Some("service"), Some("properties")) => {
                Self::SetServiceProperties
            }
            (Target::Container, "PUT", Some("container"), None) => Self::CreateContainer,
            (Target::Container, "DELETE", Some("container"), None) => Self::DeleteContainer,
            (Target::Container, "GET" | "HEAD", Some("container"), None | Some("metadata")) => {
                Self::GetContainerProperties
            }
            (Target::Container, "PUT", Some("container"), Some("metadata")) => {
                Self::SetContainerMetadata
            }
            (Target::Container, "GET", Some("container"), Some("list")) => Self::ListBlobs,
            (Target::Container, "POST", Some("container"), Some("batch")) => Self::BlobBatch,
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
            _ => {
                let what = match (comp, restype, copy_source) {
                    (_, _, true) => "copy from a URL".to_owned(),
                    (Some(c), _, _) => format!("comp={c}"),
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
        ];
        for (method, query, target, expected) in cases {
            assert_eq!(
                Operation::parse(&method, &query, target, false).unwrap(),
                expected,
                "{method} {query:?}"
            );
        }
    }

    #[test]
    fn unsupported_requests_name_what_is_missing() {
        let err = Operation::parse(&Method::PUT, &q(&[("comp", "lease")]), Target::Blob, false)
            .unwrap_err();
        assert_eq!(err.code(), "UnsupportedOperation");
        let err = Operation::parse(&Method::PUT, &q(&[("comp", "block")]), Target::Blob, true)
            .unwrap_err();
        assert_eq!(err.code(), "UnsupportedOperation");
        assert_eq!(
            Operation::parse(&Method::PUT, &q(&[]), Target::Blob, true).unwrap(),
            Operation::CopyBlob
        );
    }
}
