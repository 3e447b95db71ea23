//! Blob service errors: Azure's XML body and `x-ms-error-code` header.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use keyless_core::{Error, ErrorKind};

use super::xml::escape;
use crate::http::{ApiError, ascii_header};

/// A refused or failed storage request.
#[derive(Debug, Clone)]
pub(crate) struct StorageError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Why an authorization failed: the identity, the missing permission, the scope.
    explanation: Option<String>,
    /// What few refusals carry besides (boxed: errors travel in every `Result`).
    more: Option<Box<More>>,
}

/// The rarer parts of a refusal.
#[derive(Debug, Clone, Default)]
struct More {
    /// A `WWW-Authenticate` challenge, on 401s a token client can answer.
    challenge: Option<String>,
    /// Why authentication failed, as Azure's `AuthenticationErrorDetail` element.
    auth_detail: Option<String>,
    /// The size a refused range was judged against (`Content-Range: bytes */size`).
    range_of: Option<u64>,
    /// What went wrong inside, for a 5xx: the listener's log line of the
    /// request names it (the client sees only that the server failed).
    cause: Option<String>,
}

impl StorageError {
    fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
}

impl StorageError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            explanation: None,
            more: None,
        }
    }

    /// Names the size an unsatisfiable range was judged against, as a
    /// `Content-Range: bytes */size` header.
    pub(crate) fn with_range_of(mut self, size: u64) -> Self {
        self.more().range_of = Some(size);
        self
    }

    /// A refusal by authorization, explained: sent as the `x-keyless-explanation`
    /// header and a `KeylessExplanation` element.
    pub(crate) fn explained(mut self, explanation: impl Into<String>) -> Self {
        self.explanation = Some(explanation.into());
        self
    }

    /// Adds a bearer challenge.
    pub(crate) fn with_challenge(mut self, challenge: String) -> Self {
        self.more().challenge = Some(challenge);
        self
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn auth(message: impl Into<String>) -> Self {
        let detail = message.into();
        let mut e = Self::new(
            StatusCode::FORBIDDEN,
            "AuthenticationFailed",
            format!(
                "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature. {detail}"
            ),
        );
        e.more().auth_detail = Some(detail);
        e
    }

    pub(crate) fn container_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ContainerNotFound",
            "The specified container does not exist.",
        )
    }

    pub(crate) fn blob_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "BlobNotFound",
            "The specified blob does not exist.",
        )
    }

    pub(crate) fn condition_not_met() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            "ConditionNotMet",
            "The condition specified using HTTP conditional header(s) is not met.",
        )
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }
}

impl From<Error> for StorageError {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "ResourceNotFound", e.message())
            }
            ErrorKind::AlreadyExists => {
                Self::new(StatusCode::CONFLICT, "ResourceAlreadyExists", e.message())
            }
            ErrorKind::Conflict => Self::new(
                StatusCode::CONFLICT,
                "OperationNotAllowedInCurrentState",
                e.message(),
            ),
            ErrorKind::PreconditionFailed => Self::condition_not_met(),
            ErrorKind::InvalidInput => Self::bad("InvalidInput", e.message()),
            ErrorKind::Unauthenticated => Self::auth(e.message()),
            ErrorKind::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                "AuthorizationPermissionMismatch",
                e.message(),
            ),
            ErrorKind::Unavailable | ErrorKind::Internal => {
                let mut failed = Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "The server encountered an internal error. Please retry the request.",
                );
                failed.more().cause = Some(e.to_string());
                failed
            }
        }
    }
}

impl ApiError for StorageError {
    fn into_body(mut self) -> Response {
        let detail = self
            .explanation
            .as_deref()
            .map(|e| format!("<KeylessExplanation>{}</KeylessExplanation>", escape(e)))
            .unwrap_or_default();
        let more = self.more.take().map(|m| *m).unwrap_or_default();
        let detail = match &more.auth_detail {
            Some(d) => format!(
                "<AuthenticationErrorDetail>{}</AuthenticationErrorDetail>{detail}",
                escape(d)
            ),
            None => detail,
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{}</Code><Message>{}</Message>{detail}</Error>",
            self.code,
            escape(&self.message)
        );
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/xml")],
            body,
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-ms-error-code", HeaderValue::from_static(self.code));
        if let Some(value) = self.explanation.as_deref().map(ascii_header) {
            response
                .headers_mut()
                .insert("x-keyless-explanation", value);
        }
        if let Some(value) = more
            .range_of
            .and_then(|n| HeaderValue::from_str(&format!("bytes */{n}")).ok())
        {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
        if let Some(value) = more.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(cause) = more.cause {
            response.extensions_mut().insert(crate::http::Cause(cause));
        }
        response
    }
}

impl StorageError {
    /// The DFS API's shape: `{"error":{"code","message"}}`, Blob codes renamed
    /// as DFS names them.
    pub(crate) fn into_json_response(self) -> Response {
        let code = match self.code {
            "ContainerNotFound" => "FilesystemNotFound",
            "ContainerAlreadyExists" => "FilesystemAlreadyExists",
            "BlobNotFound" => "PathNotFound",
            other => other,
        };
        let error = match &self.explanation {
            Some(e) => {
                serde_json::json!({ "code": code, "message": self.message, "keylessExplanation": e })
            }
            None => serde_json::json!({ "code": code, "message": self.message }),
        };
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "error": error }).to_string(),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert("x-ms-error-code", HeaderValue::from_static(code));
        if let Some(value) = self.explanation.as_deref().map(ascii_header) {
            headers.insert("x-keyless-explanation", value);
        }
        let more = self.more.map(|m| *m).unwrap_or_default();
        if let Some(value) = more.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(cause) = more.cause {
            response.extensions_mut().insert(crate::http::Cause(cause));
        }
        response
    }

    /// Adds to the explanation (the ACL half after the RBAC half).
    pub(crate) fn also(mut self, more: &str) -> Self {
        self.explanation = Some(match self.explanation {
            Some(e) => format!("{e}; and {more}"),
            None => more.to_owned(),
        });
        self
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        self.into_body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_internal_failure_keeps_its_cause_for_the_log_and_from_the_client() {
        let cause = "cannot write /data/blobs/ab/cd: disk full";
        for dfs in [false, true] {
            let error = StorageError::from(keyless_core::Error::internal(cause));
            let mut response = if dfs {
                error.into_json_response()
            } else {
                error.into_response()
            };
            assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let kept = response.extensions_mut().remove::<crate::http::Cause>();
            assert_eq!(kept.map(|c| c.0).as_deref(), Some(cause));
            let sent = format!("{:?}", response.headers());
            assert!(!sent.contains("disk full"), "{sent}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(
                body.contains("InternalError") && !body.contains("disk full"),
                "{body}"
            );
        }
        // A refusal has no cause to log.
        let refused = StorageError::bad("InvalidInput", "no").into_response();
        assert!(refused.extensions().get::<crate::http::Cause>().is_none());
    }
}
