//! The floor under the storage listener, for `bench/storage.sh --pinned`: the
//! same HTTP and TLS stack as keyless (tokio's multi-threaded runtime, hyper's
//! HTTP/1 and HTTP/2 server with the listeners' own settings
//! ([`keyless_server::connection_builder`]), rustls with the
//! configuration `keyless serve` builds from an operator's certificate, mimalloc),
//! answering every request with one fixed answer shaped like a 4 KiB Get Blob's
//! (the same headers, a body of the same size) and doing nothing else: no
//! authentication, authorization, lookup or log.
//!
//! Its CPU per request, against keyless's and nginx's in the same run, splits
//! keyless's distance to nginx into what the stack costs and what keyless's own
//! work costs. It is a measuring tool, never part of the server.
//!
//! A PUT is the least a durable Put Blob costs on the same stack and disk: its
//! body is read and its MD5 computed (which Azure answers with), then one
//! thread writes the bodies that have arrived into a file and syncs it once for
//! them all, as keyless's commits group its writes, while the next group
//! gathers; the answer (201, Put Blob's headers) waits for that sync. There is
//! no database: no row, no index, no checkpoint. The file is written as a ring
//! of 64 MiB, reused as SQLite reuses its WAL, so that no sync changes its size.
//! `GET /metrics` gives the writes and syncs so far, under the names keyless
//! gives its commit batches.
//!
//!   http_floor <certificate chain PEM> <key PEM> <port> <ring file for PUTs>

use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use base64::Engine;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The headers of a 4 KiB block blob's Get Blob answer, as keyless sends them
/// (values of the same length; hyper adds `date` and `content-length`).
const HEADERS: [(&str, &str); 15] = [
    ("content-type", "application/octet-stream"),
    ("etag", "\"0x18EC51983743DE70\""),
    ("last-modified", "Sat, 05 Dec 2026 09:00:00 GMT"),
    ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
    ("x-ms-blob-content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
    ("accept-ranges", "bytes"),
    ("x-ms-blob-type", "BlockBlob"),
    ("x-ms-creation-time", "Sat, 05 Dec 2026 09:00:00 GMT"),
    ("x-ms-lease-state", "available"),
    ("x-ms-lease-status", "unlocked"),
    ("x-ms-server-encrypted", "true"),
    ("x-ms-access-tier", "Hot"),
    ("x-ms-access-tier-inferred", "true"),
    ("x-ms-request-id", "7c0b5e8e-3f0a-4c47-9a51-2f6d4f7a8b90"),
    ("x-ms-version", "2026-10-06"),
];

fn answer(body: &Bytes) -> Response<Body> {
    let mut response = Response::new(Body::from(body.clone()));
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The headers of a Put Blob's answer, as keyless sends them (hyper adds `date`
/// and `content-length`); `content-md5` is the body's.
const CREATED: [(&str, &str); 6] = [
    ("etag", "\"0x18EC51983743DE70\""),
    ("last-modified", "Sat, 05 Dec 2026 09:00:00 GMT"),
    ("x-ms-request-server-encrypted", "true"),
    ("x-ms-version-id", "2026-12-05T09:00:00.0000000Z"),
    ("x-ms-request-id", "7c0b5e8e-3f0a-4c47-9a51-2f6d4f7a8b90"),
    ("x-ms-version", "2026-10-06"),
];

fn created(md5: &[u8]) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::CREATED;
    let headers = response.headers_mut();
    for (name, value) in CREATED {
        headers.insert(name, HeaderValue::from_static(value));
    }
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5);
    if let Ok(value) = HeaderValue::from_str(&md5) {
        headers.insert("content-md5", value);
    }
    response
}

/// The ring's size.
const RING: u64 = 64 * 1024 * 1024;

/// The bodies waiting for the writing thread, and what it has done.
#[derive(Default)]
struct Journal {
    pending: Mutex<Vec<(Bytes, oneshot::Sender<()>)>>,
    arrived: Condvar,
    writes: AtomicU64,
    syncs: AtomicU64,
}

impl Journal {
    /// Hands a body to the writing thread; `done` is told once it is synced.
    fn submit(&self, body: Bytes, done: oneshot::Sender<()>) {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pending.push((body, done));
        // The thread looks again before it waits: only an empty list needs a wake.
        if pending.len() == 1 {
            self.arrived.notify_one();
        }
    }

    /// The writing thread: every body that has arrived, then one sync for them.
    fn run(&self, file: &std::fs::File) -> std::io::Result<()> {
        let mut at = 0u64;
        loop {
            let group = {
                let mut pending = self
                    .pending
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                while pending.is_empty() {
                    pending = self
                        .arrived
                        .wait(pending)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                std::mem::take(&mut *pending)
            };
            for (body, _) in &group {
                let len = body.len() as u64;
                if at + len > RING {
                    at = 0;
                }
                file.write_all_at(body, at)?;
                at += len.div_ceil(4096) * 4096;
            }
            file.sync_data()?;
            self.writes.fetch_add(group.len() as u64, Ordering::Relaxed);
            self.syncs.fetch_add(1, Ordering::Relaxed);
            for (_, done) in group {
                let _ = done.send(());
            }
        }
    }

    fn metrics(&self) -> Response<Body> {
        Response::new(Body::from(format!(
            "keyless_store_commit_batch_writes_sum {}\nkeyless_store_commit_batch_writes_count {}\n",
            self.writes.load(Ordering::Relaxed),
            self.syncs.load(Ordering::Relaxed)
        )))
    }
}

/// A PUT: its body read and hashed, then answered once the body is on the disk.
async fn put(request: Request<Incoming>, journal: &Journal) -> Response<Body> {
    let Ok(body) = axum::body::to_bytes(Body::new(request.into_body()), 256 << 20).await else {
        let mut refused = Response::new(Body::empty());
        *refused.status_mut() = StatusCode::BAD_REQUEST;
        return refused;
    };
    let md5 = Md5::digest(&body);
    let (done, durable) = oneshot::channel();
    journal.submit(body, done);
    if durable.await.is_err() {
        let mut failed = Response::new(Body::empty());
        *failed.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        return failed;
    }
    created(&md5)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(cert), Some(key), Some(port), Some(ring)) =
        (args.next(), args.next(), args.next(), args.next())
    else {
        return Err(
            "usage: http_floor <certificate chain PEM> <key PEM> <port> <ring file for PUTs>"
                .into(),
        );
    };
    // The ring written whole first, so that no later write allocates.
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(ring)?;
    let zeros = vec![0u8; 1 << 20];
    for n in 0..RING / (1 << 20) {
        file.write_all_at(&zeros, n * (1 << 20))?;
    }
    file.sync_all()?;
    let journal = Arc::new(Journal::default());
    {
        let journal = Arc::clone(&journal);
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || {
                if let Err(e) = journal.run(&file) {
                    eprintln!("http_floor: the ring cannot be written: {e}");
                    std::process::exit(1);
                }
            })?;
    }
    // Read as `keyless serve --tls-cert --tls-key` reads them; nothing is written.
    let tls = keyless_server::config::TlsConfig {
        cert: Some(PathBuf::from(cert)),
        key: Some(PathBuf::from(key)),
        ..Default::default()
    };
    let material = keyless_server::tls::prepare(&PathBuf::new(), "127.0.0.1", &tls)?;
    let acceptor = TlsAcceptor::from(material.server_config);
    let listener = TcpListener::bind(("127.0.0.1", port.parse::<u16>()?)).await?;
    let builder = Arc::new(keyless_server::connection_builder());
    let body = Bytes::from(vec![0x5a; 4096]);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (acceptor, builder, body) = (acceptor.clone(), Arc::clone(&builder), body.clone());
        let journal = Arc::clone(&journal);
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |request: Request<Incoming>| {
                let (body, journal) = (body.clone(), Arc::clone(&journal));
                async move {
                    Ok::<_, std::convert::Infallible>(match *request.method() {
                        Method::PUT => put(request, &journal).await,
                        _ if request.uri().path() == "/metrics" => journal.metrics(),
                        _ => answer(&body),
                    })
                }
            });
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
