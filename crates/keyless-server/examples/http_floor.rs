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
//!   http_floor <certificate chain PEM> <key PEM> <port>

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(cert), Some(key), Some(port)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: http_floor <certificate chain PEM> <key PEM> <port>".into());
    };
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
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = service_fn(move |_: Request<Incoming>| {
                let response = answer(&body);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
