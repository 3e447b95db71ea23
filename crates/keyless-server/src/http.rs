//! What the service modules share: request ids, the client address, bearer
//! extraction, the error trait and the listener loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The header carrying the id of each request, as Azure names it.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// The address a request came from, set on every request by the listener loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// An error a service returns, rendered in that service's error format.
pub(crate) trait ApiError: std::fmt::Debug {
    /// The response: status, service-specific code and body.
    fn into_body(self) -> Response;
}

/// Sets `key` on a JSON object (a no-op on anything else).
pub(crate) fn set(target: &mut serde_json::Value, key: &str, value: serde_json::Value) {
    if let Some(map) = target.as_object_mut() {
        map.insert(key.to_owned(), value);
    }
}

/// The bearer token of a request, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Adds request ids, tracing and the health endpoints to a service router:
/// `/healthz` (the process answers) and `/readyz` (it serves what the store
/// holds: on a shared store, only while it follows the change feed).
pub(crate) fn finish(router: Router, listener: &'static str, ready: Arc<AtomicBool>) -> Router {
    router
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(crate::metrics::render))
        .route(
            "/readyz",
            axum::routing::get(move || async move { readyz(ready.load(Ordering::Acquire)) }),
        )
        .layer(axum::middleware::from_fn(move |request, next| {
            crate::metrics::track(listener, request, next)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            // The path only: query strings may carry signatures.
            let client = req.extensions().get::<ClientAddr>().map(|c| tracing::field::display(c.0));
            let id = req.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), client, request_id = %id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

fn readyz(ready: bool) -> axum::response::Response {
    let (status, body) = if ready {
        (StatusCode::OK, r#"{"status":"ready"}"#)
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"status":"not ready: the change feed of the shared store is not followed"}"#,
        )
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn healthz() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

/// How long a client may take to send a request's header.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown`, over TLS when `tls` is given.
/// In-flight requests get `drain` to finish once shutdown begins.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let tasks = TaskTracker::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // A client gets this long for a request's whole header, however slowly it
    // trickles in; then the connection is closed (hyper needs a timer for it).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(ClientAddr(peer));
                    req
                });
        let service = TowerToHyperService::new(service);
        let watcher = graceful.watcher();
        let builder = Arc::clone(&builder);
        let tls = tls.clone();
        tasks.spawn(async move {
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(tls_stream), service);
                            watcher.watch(conn.into_owned()).await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "tls handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let conn =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    watcher.watch(conn.into_owned()).await
                }
            };
            if let Err(e) = result {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tasks.close();
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

/// An identity as explanations name it: `identity <name> (object id <oid>)`,
/// or `identity <oid>` when it has no other name.
pub(crate) fn who(name: &str, object_id: &str) -> String {
    if name.eq_ignore_ascii_case(object_id) {
        format!("identity {object_id}")
    } else {
        format!("identity {name} (object id {object_id})")
    }
}

/// A header value from any text: characters outside visible ASCII become `?`.
pub(crate) fn ascii_header(text: &str) -> HeaderValue {
    let clean: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("?"))
}
