//! What the service modules share: request ids, the client address, bearer
//! extraction, the error trait and the listener loops.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody as _};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use crate::state::SharedState;

/// The header carrying the id of each request, as Azure names it.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");

/// The address a request came from, set on every request by the listener loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub(crate) SocketAddr);

/// What went wrong inside a request answered with a 5xx, set on the response
/// (never sent) for the listener's log line of it.
#[derive(Debug, Clone)]
pub(crate) struct Cause(pub(crate) String);

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

/// What a listener answers with: its service's routes, or, on the storage
/// listener, the storage dispatcher called directly (its router has no route
/// but the fallback).
#[derive(Clone)]
pub(crate) enum Routes {
    Router(Router),
    Storage(SharedState),
}

/// What every listener puts around its routes, in one service: the request id
/// (`x-ms-request-id`, a new UUID, set on the request for the handlers and on the
/// response), the client's address, the request's span, the request metrics, an
/// error line for a 5xx answer, and the health endpoints: `/healthz` (the
/// process answers), `/metrics` and `/readyz` (it serves what the store holds:
/// on a shared store, only while it follows the change feed).
///
/// One service rather than a stack of tower layers, each of which boxed or
/// moved the request's future and looked the request id up again: on the
/// storage listener the stack cost a tenth of a small GET's CPU.
pub(crate) struct Front {
    routes: Routes,
    listener: &'static str,
    ready: Arc<AtomicBool>,
}

impl Front {
    pub(crate) fn new(routes: Routes, listener: &'static str, ready: Arc<AtomicBool>) -> Self {
        Self {
            routes,
            listener,
            ready,
        }
    }

    async fn answer(&self, mut request: Request<Body>, peer: SocketAddr) -> Response {
        let started = Instant::now();
        let method = request.method().clone();
        // Always the server's own, as Azure's: a client's `x-ms-request-id` would let
        // it file its requests under another's id in the logs (a client names its
        // request in `x-ms-client-request-id`).
        let mut text = uuid::Uuid::encode_buffer();
        let id = HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text))
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        request.headers_mut().insert(REQUEST_ID, id.clone());
        let shown_id = id.to_str().unwrap_or_default();
        let span = match self.routes {
            // None on the storage listener: its requests' records in the storage
            // log carry their id (`CorrelationId`), and the line below names it
            // for a failure with its cause. A span, with its id formatted into it
            // and entered at every poll, cost a sixteenth of a small GET.
            Routes::Storage(_) => None,
            Routes::Router(_) => Some(tracing::info_span!(
                "request",
                method = %method,
                // The path only: query strings may carry signatures.
                path = %request.uri().path(),
                client = %peer,
                request_id = %shown_id,
            )),
        };
        request.extensions_mut().insert(ClientAddr(peer));
        let mut response = match &span {
            Some(span) => self.route(request).instrument(span.clone()).await,
            None => self.route(request).await,
        };
        let elapsed = started.elapsed();
        let status = response.status();
        crate::metrics::request(self.listener, &method, status.as_u16(), elapsed);
        let cause = response.extensions_mut().remove::<Cause>();
        let cause = cause.as_ref().map(|c| c.0.as_str());
        let log = |id: Option<&str>| {
            if status.is_server_error() {
                tracing::error!(request_id = id, status = status.as_u16(), latency = ?elapsed, cause, "response failed");
            } else {
                tracing::debug!(request_id = id, status = status.as_u16(), latency = ?elapsed, "answered");
            }
        };
        match &span {
            Some(span) => span.in_scope(|| log(None)),
            None => log(Some(shown_id)),
        }
        response.headers_mut().entry(REQUEST_ID).or_insert(id);
        if method == Method::HEAD {
            without_body(&mut response);
        }
        response
    }

    async fn route(&self, request: Request<Body>) -> Response {
        let health = matches!(*request.method(), Method::GET | Method::HEAD);
        match request.uri().path() {
            "/healthz" if health => return healthz(),
            "/metrics" if health => return crate::metrics::render().await,
            "/readyz" if health => return readyz(self.ready.load(Ordering::Acquire)),
            _ => {}
        }
        match &self.routes {
            Routes::Storage(state) => crate::storage::dispatch(Arc::clone(state), request).await,
            Routes::Router(router) => match router.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
        }
    }
}

/// A [`Front`] serving one connection, from `peer`.
struct Connection {
    front: Arc<Front>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<hyper::body::Incoming>> for Connection {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response, Self::Error>> + Send>>;

    fn call(&self, request: Request<hyper::body::Incoming>) -> Self::Future {
        let front = Arc::clone(&self.front);
        let peer = self.peer;
        let (parts, body) = request.into_parts();
        // A client that asked to be told before it sends (`Expect: 100-continue`)
        // sends nothing to drain when it is refused.
        let body = if body.is_end_stream() || parts.headers.contains_key(header::EXPECT) {
            Body::new(body)
        } else {
            Body::new(ReadToEnd(Some(body)))
        };
        let request = Request::from_parts(parts, body);
        Box::pin(async move { Ok(front.answer(request, peer).await) })
    }
}

/// At most this much of a body its handler left unread is read and dropped.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
/// For at most this long.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// A request's body that is read to its end, and dropped, when its handler stops
/// reading it: a refusal (a 401 challenge, a 403, a 413) is answered before its
/// body is read. HTTP/1 closes a connection whose request body is left unread,
/// and closing a socket with bytes still unread resets it: the client, still
/// sending or about to read the answer, got the reset instead of the answer (the
/// registry SDK sends every request once without a token, to be challenged).
/// Read to its end, the body leaves the connection open for the next request.
/// A body declared larger than [`DRAIN_BYTES`] is not read; its connection closes.
struct ReadToEnd(Option<hyper::body::Incoming>);

impl hyper::body::Body for ReadToEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.0.as_mut() {
            Some(body) => std::pin::Pin::new(body).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(hyper::body::Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.as_ref().map_or_else(
            || hyper::body::SizeHint::with_exact(0),
            hyper::body::Body::size_hint,
        )
    }
}

impl Drop for ReadToEnd {
    fn drop(&mut self) {
        let Some(body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() || body.size_hint().lower() > DRAIN_BYTES {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(drain(Body::new(body)));
    }
}

/// Reads `body` and drops what it reads, to its end or its first error, for at
/// most [`DRAIN_BYTES`] and [`DRAIN_TIME`]: a client that sends without end
/// holds no task of the server's beyond those.
async fn drain(body: Body) {
    use futures_util::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut left = DRAIN_BYTES;
    let read = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            match left.checked_sub(chunk.len() as u64) {
                Some(rest) => left = rest,
                None => return,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// A HEAD's answer: the GET's headers (its length among them) without its body.
/// HTTP/1 drops the body on its own; over HTTP/2 a HEAD's answer that sends one is a
/// protocol error, and the client resets the stream.
fn without_body(response: &mut Response) {
    if !response.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(length) = response.body().size_hint().exact()
    {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    *response.body_mut() = Body::empty();
}

fn readyz(ready: bool) -> Response {
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

fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

/// How long a client may take to send a request's header.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/1 and HTTP/2 settings every listener serves its connections with
/// (the benchmark's floor serves with them too).
pub fn connection_builder() -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    // A client gets this long for a request's whole header, however slowly it
    // trickles in; then the connection is closed (hyper needs a timer for it).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Serves `front` on `listener` until `shutdown`, over TLS when `tls` is given.
/// In-flight requests get `drain` to finish once shutdown begins.
pub(crate) async fn serve(
    listener: TcpListener,
    front: Front,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    let tasks = TaskTracker::new();
    let builder = Arc::new(connection_builder());
    let front = Arc::new(front);
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
        let service = Connection {
            front: Arc::clone(&front),
            peer,
        };
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use futures_util::{StreamExt as _, stream};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_never_ends_is_drained_for_its_time_and_no_longer() {
        let never = stream::pending::<Result<bytes::Bytes, std::io::Error>>();
        let draining = tokio::spawn(drain(Body::from_stream(never)));
        tokio::time::sleep(DRAIN_TIME - Duration::from_millis(1)).await;
        tokio::task::yield_now().await;
        assert!(!draining.is_finished(), "the drain gave up early");
        // The clock is paused: it moves only when every task waits, so this
        // bound is no time the test takes.
        tokio::time::timeout(Duration::from_secs(3600), draining)
            .await
            .expect("the drain outlived its time")
            .unwrap();
    }

    #[tokio::test]
    async fn a_body_that_never_ends_is_drained_for_its_bytes_and_no_more() {
        let read = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&read);
        let chunk = bytes::Bytes::from(vec![0u8; 64 * 1024]);
        // Each chunk after a yield, as a socket's come: the test's own bound
        // can then fire.
        let endless = stream::unfold((), move |()| {
            let (counted, chunk) = (Arc::clone(&counted), chunk.clone());
            async move {
                tokio::task::yield_now().await;
                counted.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Some((Ok::<_, std::io::Error>(chunk), ()))
            }
        });
        tokio::time::timeout(Duration::from_secs(60), drain(Body::from_stream(endless)))
            .await
            .expect("the drain did not stop at its byte bound");
        let read = read.load(Ordering::Relaxed);
        assert!(
            (DRAIN_BYTES..=DRAIN_BYTES + 64 * 1024).contains(&read),
            "{read} bytes read"
        );
    }

    #[tokio::test]
    async fn a_body_is_drained_to_its_end() {
        let read = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&read);
        let three = stream::iter(0..3).map(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"chunk"))
        });
        drain(Body::from_stream(three)).await;
        assert_eq!(read.load(Ordering::Relaxed), 3);
    }
}
