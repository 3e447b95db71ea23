//! The storage listener: the Blob REST API, path-style (`/{account}/{container}/{blob}`).
//!
//! Every request takes the same path: parse it into an [`Operation`], load the
//! account, authenticate (SharedKey now; bearer tokens and SAS slot into
//! [`auth::authenticate`]), authorize once, run the handler, and write one log
//! record. Nothing is read or written before authorization.

mod access;
mod admission;
mod append;
mod auth;
mod batch;
mod blob;
mod block;
mod checksum;
mod conditions;
mod container;
mod copy;
mod delegation;
mod delete;
mod dfs;
mod error;
mod find;
pub(crate) mod hns;
mod lease;
mod list;
mod names;
mod operation;
mod page;
mod policy;
pub(crate) mod protection;
pub(crate) mod sas;
mod service;
mod snapshot;
mod tags;
mod tier;
mod xml;

use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use keyless_store::StorageAccount;

pub(crate) use admission::{admit, delegator_may, rename_source};
pub(crate) use error::StorageError;
use operation::{Operation, Target};

use crate::http::ClientAddr;
use crate::state::SharedState;

/// The service version keyless answers with, and the newest it knows.
pub(crate) const SERVICE_VERSION: &str = "2026-10-06";

/// A parsed, authenticated request.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) state: SharedState,
    pub(crate) account: std::sync::Arc<StorageAccount>,
    pub(crate) container: String,
    pub(crate) blob: String,
    pub(crate) op: Operation,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    /// Response headers a SAS overrides (`rsct` and friends).
    pub(crate) overrides: Vec<(&'static str, String)>,
    /// How the request authenticated.
    pub(crate) auth: auth::Auth,
    /// The client's address.
    pub(crate) client: Option<std::net::IpAddr>,
    /// For a listing that only the path's ACLs allowed, the caller (object id
    /// and groups): the listing then shows only what POSIX `r-x` along each path
    /// lets it see.
    pub(crate) acl_listing: Option<(String, Vec<String>)>,
}

impl Ctx {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn header<K: axum::http::header::AsHeaderName>(&self, name: K) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `x-ms-meta-*` headers as (name, value), names lowercase.
    pub(crate) fn metadata(&self) -> Result<Vec<(String, String)>, StorageError> {
        let mut out = Vec::new();
        for (name, value) in &self.headers {
            if let Some(key) = name.as_str().strip_prefix("x-ms-meta-") {
                let valid = !key.is_empty()
                    && key
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(StorageError::bad(
                        "InvalidMetadata",
                        format!("the metadata name `{key}` is not a valid C# identifier"),
                    ));
                }
                let value = value.to_str().map_err(|_| {
                    StorageError::bad(
                        "InvalidMetadata",
                        format!("the metadata `{key}` is not ASCII"),
                    )
                })?;
                out.push((key.to_owned(), value.to_owned()));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// Who made a request, as far as it got: filled in by [`prepare`] for the log.
#[derive(Debug, Default)]
struct Requester {
    account: String,
    auth: &'static str,
    identity: Option<auth::Identity>,
    /// A DFS request: errors go out as JSON.
    dfs: bool,
    /// The identity behind a user delegation SAS.
    delegator: Option<String>,
    /// The operation, once the request was parsed (a refused one is logged as it).
    op: Option<Operation>,
}

/// The job a SAS in `query` was signed for, when keyless signed it for a job's
/// agent: the storage log names the job as it does for the job's tokens.
fn minted_for(state: &SharedState, query: Option<&str>) -> Option<String> {
    let query = query.filter(|q| q.contains("sig=") && state.jobs.any_minted())?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let sig = pairs.iter().find(|(k, _)| k == "sig")?;
    match state.jobs.minted_sas(&sig.1)? {
        crate::jobs::MintedSas::Live(job) | crate::jobs::MintedSas::Revoked(job) => Some(job),
    }
}

/// The path a host-style request was signed over (`/{container}/{blob}`), kept
/// when the request is rewritten to the path style.
#[derive(Debug, Clone)]
struct HostStyle(pub(crate) String);

/// A request to `https://<account>.blob.<keyless storage zone>/…` names its
/// account in the host; it is served as `/<account>/…`, the path style.
fn to_path_style(mut request: Request) -> Request {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().host());
    // Path-style requests (an address or `localhost`) pass without an allocation.
    let Some(account) = host
        .and_then(crate::cloud::account_of_host)
        .map(str::to_owned)
    else {
        return request;
    };
    let path = request.uri().path().to_owned();
    let rewritten = match request.uri().query() {
        Some(q) => format!("/{account}{path}?{q}"),
        None => format!("/{account}{path}"),
    };
    if let Ok(uri) = rewritten.parse() {
        *request.uri_mut() = uri;
        request.extensions_mut().insert(HostStyle(path));
    }
    request
}

/// Answers a request of the storage listener (every path is the storage's).
pub(crate) async fn dispatch(state: SharedState, request: Request) -> Response {
    let started = Instant::now();
    let request = to_path_style(request);
    let time_generated = jiff::Timestamp::from_second(state.now())
        .map(|t| t.to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    let (request_id, bytes_in) = {
        let header = |name: &HeaderName| request.headers().get(name).and_then(|v| v.to_str().ok());
        (
            header(&crate::http::REQUEST_ID)
                .unwrap_or_default()
                .to_owned(),
            header(&axum::http::header::CONTENT_LENGTH)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        )
    };
    let client_request_id = request
        .headers()
        .get(names::X_MS_CLIENT_REQUEST_ID)
        .cloned();
    let job_tag = request
        .extensions()
        .get::<crate::internal::JobTag>()
        .map(|j| j.0.clone())
        .or_else(|| minted_for(&state, request.uri().query()));
    let mut op_name = "Unknown";
    let mut requester = Requester {
        auth: "Anonymous",
        ..Requester::default()
    };
    let origin = request
        .headers()
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut response = if method == axum::http::Method::OPTIONS {
        // A browser's CORS preflight: no credentials, no data.
        op_name = "PreflightBlobRequest";
        requester.account = path
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Box::pin(service::preflight(&state, request.headers(), &path)).await
    } else {
        match Box::pin(prepare(&state, request, peer, &mut requester)).await {
            Ok((ctx, body)) => {
                op_name = ctx.op.log_name();
                match run(ctx, body).await {
                    Ok(r) => r,
                    Err(e) if requester.dfs => e.into_json_response(),
                    Err(e) => e.into_response(),
                }
            }
            Err(e) => {
                if let Some(op) = requester.op {
                    op_name = op.log_name();
                }
                if requester.dfs {
                    e.into_json_response()
                } else {
                    e.into_response()
                }
            }
        }
    };
    if let Some(origin) = origin.filter(|_| method != axum::http::Method::OPTIONS)
        && let Ok(Some(account)) = state.account(&requester.account).await
    {
        service::apply(&account, &origin, method.as_str(), &mut response);
    }
    let failed = !response.status().is_success();
    let headers = response.headers_mut();
    if method == axum::http::Method::HEAD && failed {
        // A HEAD reply carries no body, so no type for one (the error is in
        // `x-ms-error-code`).
        headers.remove(axum::http::header::CONTENT_TYPE);
    }
    headers.insert(
        names::X_MS_VERSION,
        HeaderValue::from_static(SERVICE_VERSION),
    );
    if let Some(id) = client_request_id {
        headers.insert(names::X_MS_CLIENT_REQUEST_ID, id);
    }
    // The `Date` header is hyper's, from its once-a-second clock.
    let (status_text, explanation, bytes_out) = {
        let text = |name: &HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            text(&names::X_MS_ERROR_CODE).unwrap_or_else(|| "Success".to_owned()),
            text(&names::X_KEYLESS_EXPLANATION),
            text(&axum::http::header::CONTENT_LENGTH)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        )
    };
    let decoded = percent_decode_str(&path).decode_utf8_lossy();
    let resource = decoded
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, rest)| rest)
        .to_owned();
    let identity = requester.identity.as_ref();
    let claims = identity.map(|i| &i.claims);
    let record = crate::storage_log::Record {
        time_generated,
        account_name: requester.account,
        operation_name: op_name.to_owned(),
        method: method.as_str().to_owned(),
        path: resource,
        status_code: response.status().as_u16(),
        status_text,
        authentication_type: requester.auth.to_owned(),
        requester_object_id: claims.map(|c| c.oid.clone()).or(requester.delegator),
        requester_tenant_id: claims.map(|c| c.tid.clone()),
        requester_app_id: claims.and_then(|c| c.appid.clone().or_else(|| c.azp.clone())),
        requester_upn: claims.and_then(|c| c.upn.clone()),
        requester_principal_type: identity.map(|i| i.principal_type().to_owned()),
        job_id: claims.and_then(|c| c.xms_job.clone()).or(job_tag),
        caller_ip_address: peer.map(crate::storage_log::caller_ip).unwrap_or_default(),
        request_body_size: bytes_in,
        response_body_size: bytes_out,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        correlation_id: request_id,
        explanation,
    };
    tracing::debug!(
        target: "keyless::storage_log",
        request_id = record.correlation_id,
        operation = op_name,
        status = record.status_code,
        auth = requester.auth,
        "storage request"
    );
    crate::metrics::operation("storage", op_name, record.status_code);
    state.storage_log.append(record).await;
    response
}

/// Parses, loads the account, authenticates and authorizes.
async fn prepare(
    state: &SharedState,
    request: Request,
    client: Option<std::net::IpAddr>,
    requester: &mut Requester,
) -> Result<(Ctx, axum::body::Body), StorageError> {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().to_owned();
    let mut segments = raw_path.trim_start_matches('/').splitn(3, '/');
    let account_name = segments.next().unwrap_or_default().to_owned();
    let container = decode(segments.next().unwrap_or_default())?;
    let mut blob = decode(segments.next().unwrap_or_default())?;
    // Azure stores a `\` in a blob name as `/`; every decision below is about
    // the name as stored (SharedKey signs the path as sent, apart).
    if blob.contains('\\') {
        blob = blob.replace('\\', "/");
    }
    if blob.bytes().all(|b| b == b'/') {
        // `/{filesystem}//` is how DFS clients name the root directory.
        blob.clear();
    }
    let target = match (container.is_empty(), blob.is_empty()) {
        (true, _) => Target::Account,
        (false, true) => Target::Container,
        (false, false) => Target::Blob,
    };
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()).map_err(|_| {
            StorageError::bad(
                "InvalidQueryParameterValue",
                "the query string is malformed",
            )
        })?;
    check_version(&parts.headers)?;
    refuse_unsupported(&parts.headers)?;
    let copy_source = parts.headers.contains_key(names::X_MS_COPY_SOURCE);
    let rename_source = parts.headers.contains_key(names::X_MS_RENAME_SOURCE);
    let op = Operation::parse(&parts.method, &query, target, copy_source, rename_source)?;
    snapshot::refuse_writes(op, &query)?;
    requester.dfs = op.is_dfs();
    requester.op = Some(op);
    if requester.dfs {
        blob.truncate(blob.trim_end_matches('/').len());
    }
    if account_name.is_empty() {
        return Err(StorageError::bad(
            "InvalidUri",
            "the request must name an account: `/<account>/…`",
        ));
    }
    requester.account.clone_from(&account_name);
    requester.auth = auth::presented_kind(&parts.headers, &query);
    let account = state.account(&account_name).await?.ok_or_else(|| {
        StorageError::new(
            axum::http::StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The storage account `{account_name}` does not exist on this server."),
        )
    })?;
    // SharedKey signs `/<account>` + the path as the client sent it.
    let signed_path = parts
        .extensions
        .get::<HostStyle>()
        .map_or_else(|| raw_path.clone(), |h| h.0.clone());
    let presented = auth::Presented {
        method: &parts.method,
        raw_path: &signed_path,
        container: &container,
        blob: &blob,
        query: &query,
        headers: &parts.headers,
        client,
    };
    let auth = match auth::authenticate(state, &account, presented).await {
        Ok(auth) => auth,
        // No credentials at all: only a container opened to the public lets in,
        // and only to read; otherwise the refusal stands (the same for a private
        // container and a missing one).
        Err(refused) if requester.auth == "Anonymous" => {
            if !policy::public_read(state, &account, op, &container).await? {
                return Err(refused);
            }
            auth::Auth::Anonymous
        }
        Err(refused) => return Err(refused),
    };
    requester.identity = auth.identity().cloned();
    // Network rules come before any permission: a refused address gets nowhere.
    let trusted_service = parts
        .extensions
        .get::<crate::internal::TrustedService>()
        .is_some();
    admit(&account, client, auth.identity(), trusted_service)?;
    // The one authorization decision of the request.
    let mut acl_listing = None;
    let overrides = match &auth {
        auth::Auth::SharedKey | auth::Auth::Anonymous => Vec::new(),
        // A batch is only an envelope: each of its sub-requests is authenticated
        // and authorized on its own when it is dispatched.
        auth::Auth::Sas(_) | auth::Auth::Bearer(_) if op == Operation::BlobBatch => Vec::new(),
        auth::Auth::Sas(sas) => {
            sas.authorize(op, &container, &blob)?;
            admission::sas_details(
                state,
                &account,
                sas,
                op,
                (&container, &blob),
                &parts.headers,
                client,
            )
            .await?;
            if let Some((oid, tid)) = &sas.delegator {
                // The delegating identity must still hold the permission, now.
                delegator_may(state, &account, oid, tid, op, &container).await?;
                requester.delegator = Some(oid.clone());
            }
            if let Some(agent) = &sas.agent {
                let source = admission::rename_source_path(&parts.headers);
                let acl = hns::AclRequest {
                    op,
                    container: &container,
                    blob: &blob,
                    query: &query,
                    rename_source: source.as_deref(),
                };
                admission::agent_may(state, &account, agent, acl).await?;
            }
            sas.overrides.clone()
        }
        auth::Auth::Bearer(identity) => {
            if let Err(denied) =
                access::authorize(state, &account, identity, op.permission(), &container)
            {
                // RBAC first; on a hierarchical namespace, ACLs may still allow.
                let source = admission::rename_source_path(&parts.headers);
                let by_acl = if account.hns {
                    let request = hns::AclRequest {
                        op,
                        container: &container,
                        blob: &blob,
                        query: &query,
                        rename_source: source.as_deref(),
                    };
                    let groups = identity.groups();
                    let caller = keyless_core::acl::Caller {
                        object_id: identity.object_id(),
                        groups: &groups,
                    };
                    hns::authorize_by_acl(state, &account.name, caller, request).await?
                } else {
                    None
                };
                match by_acl {
                    Some(keyless_core::acl::AclDecision::Allow) => {
                        if matches!(op, Operation::ListBlobs | Operation::ListPaths) {
                            acl_listing =
                                Some((identity.object_id().to_owned(), identity.groups()));
                        }
                    }
                    Some(refused) => return Err(denied.also(&refused.explanation())),
                    None => return Err(denied),
                }
            }
            Vec::new()
        }
    };
    if parts.headers.contains_key(names::X_MS_TAGS) {
        tags::authorize_on_write(state, &account, &auth, op, &container)?;
    }
    if target != Target::Account {
        container::validate_name(&container)?;
    }
    if target == Target::Blob {
        blob::validate_name(&blob)?;
    }
    let ctx = Ctx {
        state: state.clone(),
        account,
        container,
        blob,
        op,
        query,
        headers: parts.headers,
        overrides,
        auth,
        client,
        acl_listing,
    };
    Ok((ctx, body))
}

/// Runs the operation. Each operation's future is boxed apart: inline, the
/// largest of them set the size of every request's future, and all of it was
/// copied into the heap on every request (25 KB for a small GET).
async fn run(ctx: Ctx, body: axum::body::Body) -> Result<Response, StorageError> {
    use Operation as Op;
    match ctx.op {
        Op::ListContainers => Box::pin(container::list(&ctx)).await,
        Op::GetServiceProperties => Ok(service::get(&ctx)),
        Op::GetAccountInformation => Ok(container::account_information(&ctx)),
        Op::SetServiceProperties => Box::pin(service::set(&ctx, body)).await,
        // Replication statistics come from a secondary endpoint, and keyless
        // keeps one copy of an account.
        Op::GetServiceStats => Err(StorageError::bad(
            "InvalidQueryParameterValue",
            "Value for one of the query parameters specified in the request URI is invalid: service statistics are served by a read-access geo-redundant account's secondary endpoint, which keyless does not have",
        )),
        Op::GetUserDelegationKey => Box::pin(delegation::get_key(&ctx, body)).await,
        Op::CreateContainer => Box::pin(container::create(&ctx)).await,
        Op::RestoreContainer => Box::pin(container::restore(&ctx)).await,
        Op::DeleteContainer => Box::pin(container::delete(&ctx)).await,
        Op::GetContainerProperties => Box::pin(container::properties(&ctx)).await,
        Op::SetContainerMetadata => Box::pin(container::set_metadata(&ctx)).await,
        Op::ListBlobs => Box::pin(list::list(&ctx)).await,
        Op::LeaseContainer => Box::pin(lease::container(&ctx)).await,
        Op::GetContainerAcl => Box::pin(policy::get(&ctx)).await,
        Op::SetContainerAcl => Box::pin(policy::set(&ctx, body)).await,
        Op::FindBlobsByTags => Box::pin(find::run(&ctx)).await,
        Op::GetBlobTags => Box::pin(blob::get_tags(&ctx)).await,
        Op::SetBlobTags => Box::pin(blob::set_tags(&ctx, body)).await,
        Op::LeaseBlob => Box::pin(lease::blob(&ctx)).await,
        Op::AppendBlock => Box::pin(append::append_block(&ctx, body)).await,
        Op::SealBlob => Box::pin(append::seal(&ctx)).await,
        Op::SetBlobTier => Box::pin(tier::set(&ctx)).await,
        Op::PutPage => Box::pin(page::put_page(&ctx, body)).await,
        Op::GetPageRanges => Box::pin(page::ranges(&ctx)).await,
        Op::CreateSnapshot => Box::pin(snapshot::create(&ctx)).await,
        Op::UndeleteBlob => Box::pin(delete::undelete(&ctx)).await,
        Op::PutBlob => Box::pin(blob::put(&ctx, body)).await,
        Op::PutBlock => Box::pin(block::put_block(&ctx, body)).await,
        Op::PutBlockList => Box::pin(block::put_block_list(&ctx, body)).await,
        Op::GetBlockList => Box::pin(block::block_list(&ctx)).await,
        Op::GetBlob => Box::pin(blob::get(&ctx, true)).await,
        Op::GetBlobProperties => Box::pin(blob::get(&ctx, false)).await,
        Op::GetBlobMetadata => Box::pin(blob::metadata(&ctx)).await,
        Op::SetBlobMetadata => Box::pin(blob::set_metadata(&ctx)).await,
        Op::SetBlobProperties => Box::pin(blob::set_properties(&ctx)).await,
        Op::DeleteBlob => Box::pin(delete::delete(&ctx)).await,
        Op::BlobBatch => Box::pin(batch::run(&ctx, body)).await,
        Op::CopyBlob => Box::pin(copy::run(&ctx)).await,
        Op::CreateFilesystem => Box::pin(container::create(&ctx)).await,
        Op::DeleteFilesystem => Box::pin(container::delete(&ctx)).await,
        Op::GetFilesystemProperties => Box::pin(container::properties(&ctx)).await,
        Op::ListPaths => Box::pin(dfs::list(&ctx)).await,
        Op::CreatePath => Box::pin(dfs::create(&ctx)).await,
        Op::RenamePath => Box::pin(dfs::rename(&ctx)).await,
        Op::AppendData => Box::pin(dfs::append(&ctx, body)).await,
        Op::FlushData => Box::pin(dfs::flush(&ctx)).await,
        Op::GetAccessControl | Op::GetPathStatus => Box::pin(dfs::status(&ctx)).await,
        Op::SetAccessControl => Box::pin(dfs::set_access(&ctx)).await,
        Op::SetAccessControlRecursive => Box::pin(dfs::set_access_recursive(&ctx)).await,
        Op::DeletePath => Box::pin(dfs::delete(&ctx)).await,
    }
}

fn decode(segment: &str) -> Result<String, StorageError> {
    percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            StorageError::bad(
                "InvalidUri",
                "the request path is not valid UTF-8 once decoded",
            )
        })
}

/// Features keyless does not implement are refused before anything is done,
/// never silently dropped: a writer that sent its own encryption key must not
/// believe its data is protected by it.
fn refuse_unsupported(headers: &HeaderMap) -> Result<(), StorageError> {
    static HEADERS: [(HeaderName, &str); 4] = [
        (names::X_MS_ENCRYPTION_KEY, "customer-provided keys"),
        (names::X_MS_ENCRYPTION_KEY_SHA256, "customer-provided keys"),
        (names::X_MS_ENCRYPTION_ALGORITHM, "customer-provided keys"),
        (names::X_MS_ENCRYPTION_SCOPE, "encryption scopes"),
    ];
    // One pass over the request's few headers rather than a lookup of each name.
    let refused = headers
        .keys()
        .find_map(|sent| HEADERS.iter().find(|(name, _)| name == sent));
    if let Some((name, feature)) = refused {
        return Err(StorageError::bad(
            "UnsupportedHeader",
            format!(
                "One of the HTTP headers specified in the request is not supported: `{name}` ({feature}) is not implemented by keyless, and nothing was done."
            ),
        ));
    }
    Ok(())
}

fn check_version(headers: &HeaderMap) -> Result<(), StorageError> {
    let Some(v) = headers.get(names::X_MS_VERSION) else {
        return Ok(());
    };
    let v = v.to_str().unwrap_or_default();
    let well_formed =
        v.len() == 10 && v.as_bytes().get(4) == Some(&b'-') && v.as_bytes().get(7) == Some(&b'-');
    if !well_formed || !("2015-02-21"..="2027-12-31").contains(&v) {
        return Err(StorageError::bad(
            "InvalidHeaderValue",
            format!(
                "The value for one of the HTTP headers is not in the correct format: x-ms-version `{v}` is not a service version keyless supports (2015-02-21 to {SERVICE_VERSION})."
            ),
        ));
    }
    Ok(())
}

/// Entry points of the fuzz targets (feature `fuzzing`): what an unauthenticated
/// request reaches before any check, with arbitrary input.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz {
    use axum::http::Method;

    use super::operation::{Operation, Target};

    /// Parses a request's query string and operation.
    pub(crate) fn operation(method: &[u8], query: &str, target: u8, copy: bool, rename: bool) {
        let Ok(method) = Method::from_bytes(method) else {
            return;
        };
        let Ok(query) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
            return;
        };
        let target = match target % 3 {
            0 => Target::Account,
            1 => Target::Container,
            _ => Target::Blob,
        };
        if let Ok(op) = Operation::parse(&method, &query, target, copy, rename) {
            let _ = op.permission();
            let _ = super::snapshot::refuse_writes(op, &query);
        }
        let _ = super::refuse_unsupported(&axum::http::HeaderMap::new());
    }

    /// Verifies a SAS query against a fixed key, then asks what it allows.
    pub(crate) fn sas(query: &str, container: &str, blob: &str) {
        let Ok(query) = serde_urlencoded::from_str::<Vec<(String, String)>>(query) else {
            return;
        };
        let keys = [vec![7u8; 64], vec![9u8; 64]];
        if let Ok(sas) = super::sas::verify_sas(
            "account",
            (container, blob),
            &keys,
            &query,
            1_800_000_000,
            None,
        ) {
            let _ = sas.authorize(Operation::GetBlob, container, blob);
            let _ = sas.authorize_move_source(container, blob);
        }
    }

    /// Parses a Put Block List body.
    pub(crate) fn block_list(body: &[u8]) {
        let _ = super::xml::parse_block_list(body);
    }

    /// Reads dates in the two formats requests carry.
    pub(crate) fn dates(text: &str) {
        let _ = super::xml::parse_http_date(text);
        let _ = super::xml::parse_iso8601(text);
    }

    /// Unframes a structured message (CRC-64 segments).
    pub(crate) fn structured(body: &[u8], content: u64, chunk: usize) {
        let _ = super::checksum::unframe(body, content, chunk);
    }
}
