//! Errors of the management listener in ARM's shape: `{"error":{"code","message"}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use keyless_core::{Error, ErrorKind};

use crate::http::ApiError;

/// A refused or failed management request.
#[derive(Debug, Clone)]
pub(crate) struct MgmtError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl MgmtError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The message, as the caller would read it.
    pub(crate) fn message(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }

    pub(crate) fn unauthenticated(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    pub(crate) fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub(crate) fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<Error> for MgmtError {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::NotFound => Self::not_found("NotFound", e.message()),
            ErrorKind::AlreadyExists => Self::new(StatusCode::CONFLICT, "Conflict", e.message()),
            ErrorKind::Conflict => Self::new(StatusCode::CONFLICT, "Conflict", e.message()),
            ErrorKind::PreconditionFailed => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                e.message(),
            ),
            ErrorKind::InvalidInput => Self::bad_request("InvalidRequestContent", e.message()),
            ErrorKind::Unauthenticated => {
                Self::unauthenticated("AuthenticationFailed", e.message())
            }
            ErrorKind::Forbidden => Self::forbidden("AuthorizationFailed", e.message()),
            ErrorKind::Unavailable | ErrorKind::Internal => {
                tracing::error!(error = %e, "management request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalServerError",
                    "internal error",
                )
            }
        }
    }
}

impl ApiError for MgmtError {
    fn into_body(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": { "code": self.code, "message": self.message } })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = format!(
                "Bearer authorization_uri=\"\", error=\"invalid_token\", error_description=\"{}\"",
                self.message.replace('"', "'")
            );
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        response
            .headers_mut()
            .insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
        response
    }
}

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        self.into_body()
    }
}
