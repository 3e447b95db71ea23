//! The managed-identity endpoint (plain HTTP on loopback, like Azure's IMDS).
//!
//! It answers the request shapes of IMDS, App Service and Azure ML computes.
//! Tokens are issued here only to jobs that run on keyless computes, each
//! authenticated by its own secret; every other caller is told, with a status the
//! clients do not retry, that no managed identity is available to it. That lets
//! `DefaultAzureCredential` on a developer's machine move on to the next
//! credential instead of probing the public IMDS address.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::state::SharedState;

/// The router of the identity listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new()
        .route("/metadata/identity/oauth2/token", get(no_identity))
        .route("/msi/token", get(no_identity))
        .with_state(state)
}

async fn no_identity() -> Response {
    let message = "no managed identity is available to this caller: keyless issues managed-identity tokens only to jobs running on its computes";
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "error": "invalid_request",
            "error_description": message,
            "statusCode": 400,
            "message": message,
        })),
    )
        .into_response()
}
