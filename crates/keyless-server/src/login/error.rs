//! OAuth2 errors in Entra's JSON shape, with AADSTS codes and a description that
//! says what to change.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use keyless_core::{Error, ErrorKind};

use crate::http::ApiError;

/// A refused token request.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: u32,
    description: String,
}

impl OAuthError {
    /// What went wrong, in the words the response carries.
    pub(crate) fn description(&self) -> String {
        self.description.clone()
    }

    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description: description.into(),
        }
    }

    pub(crate) fn invalid_request(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            code,
            description,
        )
    }

    pub(crate) fn invalid_client(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            description,
        )
    }

    pub(crate) fn invalid_grant(code: u32, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", code, description)
    }

    pub(crate) fn unauthorized_client(code: u32, description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            code,
            description,
        )
    }

    pub(crate) fn invalid_scope(code: u32, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", code, description)
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidInput => Self::invalid_request(900144, e.message()),
            ErrorKind::NotFound => Self::invalid_request(90002, e.message()),
            _ => {
                tracing::error!(error = %e, "token request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    90033,
                    "internal error",
                )
            }
        }
    }
}

impl ApiError for OAuthError {
    fn into_body(self) -> Response {
        let body = json!({
            "error": self.error,
            "error_description": format!("AADSTS{}: {}", self.code, self.description),
            "error_codes": [self.code],
            "timestamp": jiff::Timestamp::now().to_string(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
            "correlation_id": uuid::Uuid::new_v4().to_string(),
        });
        (self.status, Json(body)).into_response()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        self.into_body()
    }
}
