//! The storage listener (Blob and DFS REST). Until the blob engine is served here,
//! every request is answered with Azure's error shape saying the operation is not
//! supported, after nothing has been read or written.

use axum::Router;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::state::SharedState;

/// The router of the storage listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new().fallback(unsupported).with_state(state)
}

async fn unsupported(request: Request) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>UnsupportedOperation</Code><Message>keyless does not serve `{} {}` yet: blob storage is not enabled on this server.</Message></Error>",
        request.method(),
        request
            .uri()
            .path()
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    );
    (
        StatusCode::NOT_IMPLEMENTED,
        [
            (header::CONTENT_TYPE, "application/xml"),
            (
                header::HeaderName::from_static("x-ms-error-code"),
                "UnsupportedOperation",
            ),
        ],
        body,
    )
        .into_response()
}
