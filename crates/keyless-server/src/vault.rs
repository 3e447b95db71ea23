//! The vault listener (Key Vault secrets REST). Until secrets are served here,
//! every request is answered with Key Vault's error shape.

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::SharedState;

/// The router of the vault listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new().fallback(unsupported).with_state(state)
}

async fn unsupported(request: Request) -> Response {
    let message = format!(
        "keyless does not serve `{} {}` yet: key vault is not enabled on this server",
        request.method(),
        request.uri().path()
    );
    (
        StatusCode::NOT_IMPLEMENTED,
        Json(json!({ "error": { "code": "NotImplemented", "message": message } })),
    )
        .into_response()
}
