//! The management listener: the directory API, ARM-shaped resources (subscriptions,
//! resource groups, user-assigned identities) authorized by Azure RBAC, and the
//! server's administration.

mod activity;
mod admin;
mod applications;
mod authorization;
pub(crate) mod blob_services;
pub(crate) mod caller;
pub(crate) mod directory;
mod error;
pub(crate) mod graph;
pub(crate) mod ml;
pub(crate) mod registries;
mod resources;
pub(crate) mod storage_accounts;
mod vaults;

use std::future::Future;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;

pub(crate) use error::MgmtError;

use crate::state::SharedState;

/// The router of the management listener.
pub(crate) fn router(state: SharedState) -> Router {
    Router::new()
        .merge(directory::router())
        .merge(graph::router())
        .merge(applications::router())
        .merge(resources::router())
        .merge(storage_accounts::router())
        .merge(blob_services::router())
        .merge(vaults::router())
        .merge(registries::router())
        .merge(ml::router())
        .merge(admin::router())
        .merge(activity::router())
        .route(
            "/access/explain",
            axum::routing::post(authorization::explain),
        )
        .route("/openapi.json", axum::routing::get(openapi))
        .route(
            "/metadata/endpoints",
            axum::routing::get(crate::cloud::metadata),
        )
        .route("/discovery", axum::routing::get(crate::cloud::discovery))
        .fallback(authorization::dispatch)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            activity::record,
        ))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(state.clone())
        // Jobs' agents: authenticated by the job's secret, not recorded as
        // changes in the activity log.
        .merge(ml::runner::agent::router(state))
}

/// The largest JSON body the management listener reads (axum's default limit).
const MAX_JSON: u64 = 2 * 1024 * 1024;
/// A code version's body (the SDK's snapshot metadata, or a whole upload).
const MAX_CODE: u64 = 256 * 1024 * 1024;

/// Refuses a body declared larger than its operation takes, with ARM's 413.
async fn refuse_large_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let limit = if path.contains("/codes/") && path.contains("/versions/") {
        MAX_CODE
    } else {
        MAX_JSON
    };
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(size) = declared.filter(|n| *n > limit) else {
        return next.run(request).await;
    };
    // The body is read and dropped as the 413 goes out (http::ReadToEnd), so the
    // client, still sending it, reads the 413 instead of a reset connection.
    drop(request);
    error::MgmtError::new(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "RequestBodyTooLarge",
        format!(
            "The request body ({size} bytes) is larger than this operation takes ({limit} bytes)."
        ),
    )
    .into_response()
}

/// The OpenAPI document of this API, kept in the repository beside the code.
pub(crate) const OPENAPI: &str = include_str!("../../../docs/management-openapi.json");

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response()
}

/// A JSON body whose rejections answer in ARM's error shape.
#[derive(Debug)]
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = MgmtError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                MgmtError::bad_request(
                    "InvalidRequestContent",
                    format!("the request body cannot be read: {e}"),
                )
            })?;
        let text = if bytes.is_empty() {
            &b"{}"[..]
        } else {
            &bytes[..]
        };
        serde_json::from_slice(text).map(Body).map_err(|e| {
            MgmtError::bad_request(
                "InvalidRequestContent",
                format!("the request body is not valid: {e}"),
            )
        })
    }
}

/// Runs a handler body and turns its result into a response.
pub(crate) async fn respond(
    work: impl Future<Output = Result<(StatusCode, Value), MgmtError>>,
) -> Response {
    match work.await {
        Ok((status, Value::Null)) => status.into_response(),
        Ok((status, body)) => (status, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The answer of a `checkNameAvailability` call: `{"nameAvailable": true}`, or
/// false with the reason and message `taken` gives for the name. The body names
/// the resource type; another type than `kind` is refused.
pub(crate) async fn name_availability<F, Fut>(
    body: &Value,
    kind: &str,
    taken: F,
) -> Result<Value, MgmtError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<Option<(&'static str, String)>, MgmtError>>,
{
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            MgmtError::bad_request(
                "InvalidRequestContent",
                "the body must name the `name` to check",
            )
        })?;
    if let Some(t) = body.get("type").and_then(Value::as_str)
        && !t.eq_ignore_ascii_case(kind)
    {
        return Err(MgmtError::bad_request(
            "InvalidResourceType",
            format!("this call checks names of {kind}, not {t}"),
        ));
    }
    Ok(match taken(name.to_owned()).await? {
        None => serde_json::json!({ "nameAvailable": true }),
        Some((reason, message)) => {
            serde_json::json!({ "nameAvailable": false, "reason": reason, "message": message })
        }
    })
}

/// Marks the jobs a previous run of the server left unfinished as failed.
/// While the server runs on a shared store: says that it lives, and takes
/// over the jobs of servers that were lost.
pub(crate) async fn keep_jobs(
    state: crate::state::SharedState,
    shutdown: tokio_util::sync::CancellationToken,
) {
    ml::runner::keep_jobs(state, shutdown).await;
}

pub(crate) async fn fail_interrupted_jobs(
    state: &crate::state::SharedState,
) -> Result<(), keyless_core::Error> {
    ml::fail_interrupted_jobs(state).await
}
