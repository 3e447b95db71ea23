//! Operational metrics in Prometheus's text format, at `/metrics` on every
//! listener: requests by listener, method and status with their latency, storage
//! operations by name and status, tokens issued by grant, changes on the feed,
//! job starts and ends and unfinished jobs by status, and (from the store)
//! group-commit sizes and row-cache hits. Labels name no account, principal or path: the endpoint
//! answers without authentication, like `/healthz`.

use std::sync::OnceLock;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 250 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Group-commit sizes, in writes per commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The process's recorder, installed on first use. When another recorder is
/// installed already (a test harness), the handle renders this one's metrics:
/// none.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new().set_buckets(BUCKETS).and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("keyless_store_commit_batch_writes".into()),
                BATCH_BUCKETS,
            )
        });
        let builder = match builder {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: buckets refused; summaries instead");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("metrics: another recorder is installed; /metrics stays empty");
        }
        handle
    })
}

/// Installs the recorder (once per process) before the first request.
pub(crate) fn install() {
    let _ = handle();
}

/// `/metrics`.
pub(crate) async fn render() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}

/// Counts a request of `listener` answered with `status` after `elapsed`.
pub(crate) fn request(
    listener: &'static str,
    method: &axum::http::Method,
    status: u16,
    elapsed: std::time::Duration,
) {
    let method = method_label(method);
    HANDLES.with_borrow_mut(|h| {
        h.histograms
            .entry(listener)
            .or_insert_with(|| {
                metrics::histogram!("keyless_http_request_duration_seconds", "listener" => listener)
            })
            .record(elapsed.as_secs_f64());
        h.counter(("http", listener, method, status), || {
            metrics::counter!("keyless_http_requests_total", "listener" => listener, "method" => method, "status" => status_label(status))
        })
        .increment(1);
    });
}

/// The handles of the per-request metrics, by their labels, for the thread that
/// records them: the recorder's own lookup builds its key (allocating the
/// labels) and hashes it on every call. Every label is static or a status, so
/// the maps stay small, and no client can choose their keys: they hash with
/// foldhash, which costs a fifth of the standard SipHash on such keys.
#[derive(Default)]
struct Handles {
    counters: foldhash::HashMap<CounterLabels, metrics::Counter>,
    histograms: foldhash::HashMap<&'static str, metrics::Histogram>,
}

/// (kind, then the counter's labels in order, then the status).
type CounterLabels = (&'static str, &'static str, &'static str, u16);

impl Handles {
    fn counter(
        &mut self,
        labels: CounterLabels,
        make: impl FnOnce() -> metrics::Counter,
    ) -> &metrics::Counter {
        self.counters.entry(labels).or_insert_with(make)
    }
}

thread_local! {
    static HANDLES: std::cell::RefCell<Handles> = std::cell::RefCell::default();
}

/// A storage, vault or registry request, as its log record names it.
pub(crate) fn operation(log: &'static str, operation: &'static str, status: u16) {
    HANDLES.with_borrow_mut(|h| {
        h.counter(("operation", log, operation, status), || {
            metrics::counter!(
                "keyless_operations_total",
                "log" => log,
                "operation" => operation,
                "status" => status_label(status)
            )
        })
        .increment(1);
    });
}

/// A method as a label. Any other than the common ones is `OTHER`: a client
/// may send methods of its own invention, and each would be a new series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// A status code as a label; the ones keyless answers with, without an allocation.
fn status_label(status: u16) -> metrics::SharedString {
    let known = match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        412 => "412",
        416 => "416",
        500 => "500",
        _ => return metrics::SharedString::from(status.to_string()),
    };
    metrics::SharedString::const_str(known)
}

/// A token issued at the token endpoint, by grant type.
pub(crate) fn token_issued(grant: &str) {
    metrics::counter!("keyless_tokens_issued_total", "grant" => grant.to_owned()).increment(1);
}

/// A change applied from the feed (`received`) or announced on it (`sent`).
pub(crate) fn change(direction: &'static str) {
    metrics::counter!("keyless_feed_changes_total", "direction" => direction).increment(1);
}

/// A job this server started or saw end.
pub(crate) fn job(event: &'static str) {
    metrics::counter!("keyless_jobs_total", "event" => event).increment(1);
}

/// A job this server runs moved from `from` (`None`: it is new to this
/// server) to `to`: `keyless_jobs` counts this server's unfinished jobs by
/// status.
pub(crate) fn job_status(from: Option<&str>, to: &str) {
    const FINISHED: [&str; 3] = ["Completed", "Failed", "Canceled"];
    if let Some(from) = from.filter(|f| !FINISHED.contains(f)) {
        metrics::gauge!("keyless_jobs", "status" => from.to_owned()).decrement(1.0);
    }
    if !FINISHED.contains(&to) {
        metrics::gauge!("keyless_jobs", "status" => to.to_owned()).increment(1.0);
    }
}
