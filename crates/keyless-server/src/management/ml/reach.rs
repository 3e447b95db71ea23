//! Reaching a datastore's data on someone's behalf — a preview, a job's inputs
//! and outputs — through the storage listener, signed the way the identity rule
//! chose: a bearer token of an identity, or the datastore's own key or SAS,
//! fetched from the workspace's vault by the workspace's identity.

use axum::http::{Method, Response, StatusCode};
use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use keyless_core::Principal;
use keyless_core::identity_rule::{StoredCredential, WorkspaceAccess};
use keyless_ml::uri::{DataUri, Location};
use keyless_store::Resource;

use super::super::error::MgmtError;
use super::data::storage_host;
use super::workspaces::acting_identity;
use crate::internal::{Acting, Service};
use crate::state::SharedState;

const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Where the data is and what the datastore says about reaching it.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) location: Location,
    pub(super) credential: StoredCredential,
    pub(super) access: WorkspaceAccess,
    pub(super) secret: Option<String>,
}

/// How a request is signed.
#[derive(Debug)]
pub(super) enum Signer {
    /// A bearer token of this principal; the label says which role it plays.
    Bearer(Principal, &'static str),
    /// The datastore's account key.
    SharedKey(Vec<u8>),
    /// The datastore's SAS token.
    Sas(String),
}

/// A data URI of a workspace → where it is.
pub(super) async fn resolve(
    state: &SharedState,
    ws: &Resource,
    uri: &str,
) -> Result<Target, MgmtError> {
    resolve_at(state, ws, uri, 0).await
}

async fn resolve_at(
    state: &SharedState,
    ws: &Resource,
    uri: &str,
    depth: u8,
) -> Result<Target, MgmtError> {
    let host = storage_host(state);
    match DataUri::parse(uri, &[host.as_str()])? {
        DataUri::Storage(location) => Ok(Target {
            location,
            credential: StoredCredential::None,
            access: WorkspaceAccess::Off,
            secret: None,
        }),
        DataUri::Datastore {
            workspace: named,
            datastore,
            path,
        } => {
            if let Some((_, _, w)) = &named
                && !w.eq_ignore_ascii_case(&ws.name)
            {
                return Err(MgmtError::bad_request(
                    "DatastoreInOtherWorkspace",
                    format!("'{uri}' names workspace {w}; use it from that workspace"),
                ));
            }
            let r = super::datastores::load(state, ws, &datastore).await?;
            let d = super::datastores::parse(&r)?;
            Ok(Target {
                location: d.locate(&path),
                credential: d.credential,
                access: d.workspace_access,
                secret: r
                    .body
                    .get("secretName")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            })
        }
        DataUri::Asset { name, version } if depth == 0 => {
            let prefix = format!("{}/data/{name}/versions/", ws.id);
            let versions = super::children(state, ws, super::DATA_VERSIONS).await?;
            let chosen = versions
                .iter()
                .filter(|r| r.id.starts_with(&prefix))
                .filter(|r| {
                    version.as_ref().is_none_or(|v| {
                        r.body.get("version").and_then(Value::as_str) == Some(v.as_str())
                    })
                })
                .max_by_key(|r| r.created_at)
                .ok_or_else(|| super::not_found("data asset", &name, &ws.name))?;
            let inner = chosen
                .body
                .pointer("/properties/dataUri")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Box::pin(resolve_at(state, ws, &inner, 1)).await
        }
        DataUri::Asset { .. } => Err(MgmtError::bad_request(
            "InvalidDataUri",
            "a data asset points at another data asset",
        )),
    }
}

/// The datastore's stored credential, read from the workspace's vault by the
/// workspace's identity (for `job`, when a job needs it).
pub(super) async fn stored_signer(
    state: &SharedState,
    ws: &Resource,
    target: &Target,
    kind: StoredCredential,
    job: Option<&str>,
) -> Result<Signer, MgmtError> {
    let secret = target.secret.as_deref().ok_or_else(|| {
        keyless_core::Error::internal("the datastore's credential is missing from its record")
    })?;
    let actor = acting_identity(state, ws).await?;
    let acting = Acting::for_job(state, actor, Service::Vault, job)
        .await?
        .trusted_service();
    let vault = super::workspaces::vault_name(ws).unwrap_or_default();
    let (response, bytes) = Acting::send(
        Some(&acting),
        state,
        Service::Vault,
        Method::GET,
        &format!("/{vault}/secrets/{secret}?api-version=7.4"),
        &[],
        Vec::new(),
    )
    .await?;
    if !response.status().is_success() {
        return Err(MgmtError::forbidden(
            "DatastoreCredentialVaultDenied",
            format!(
                "the workspace identity could not read the datastore's credential: {}",
                crate::internal::refusal(&response, &bytes)
            ),
        ));
    }
    let bundle: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let secrets: Value = bundle
        .get("value")
        .and_then(Value::as_str)
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or(Value::Null);
    match kind {
        StoredCredential::AccountKey => {
            let key = secrets
                .get("key")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
                .map_err(|_| {
                    MgmtError::bad_request(
                        "InvalidAccountKey",
                        "the datastore's account key is not base64",
                    )
                })?;
            Ok(Signer::SharedKey(key))
        }
        StoredCredential::Sas => Ok(Signer::Sas(
            secrets
                .get("sasToken")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim_start_matches('?')
                .to_owned(),
        )),
        other => Err(MgmtError::bad_request(
            "CredentialUnsupported",
            format!(
                "keyless reaches data with account keys, SAS tokens and identities; a {} credential is not used yet",
                other.rest_name()
            ),
        )),
    }
}

/// The path of a container, or of a blob in it, percent-encoded.
pub(super) fn blob_path(account: &str, container: &str, blob: &str) -> String {
    let base = format!("/{account}/{}", utf8_percent_encode(container, SEGMENT));
    if blob.is_empty() {
        base
    } else {
        format!("{base}/{}", utf8_percent_encode(blob, SEGMENT))
    }
}

/// One storage request.
#[derive(Debug)]
pub(super) struct Call<'a> {
    pub(super) method: Method,
    pub(super) path: &'a str,
    pub(super) query: &'a [(&'a str, &'a str)],
    pub(super) headers: &'a [(&'a str, &'a str)],
    pub(super) body: Vec<u8>,
}

/// Sends `call` to the storage listener, signed by `signer`; `acting` carries the
/// bearer token (and the job, for the storage log).
pub(super) async fn send(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    account: &str,
    call: Call<'_>,
) -> Result<(Response<()>, Bytes), MgmtError> {
    let version = crate::storage::SERVICE_VERSION;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers: Vec<(String, String)> = vec![
        ("x-ms-version".into(), version.into()),
        ("x-ms-date".into(), date),
    ];
    headers.extend(
        call.headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut pairs: Vec<(String, String)> = call
        .query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    match signer {
        Signer::SharedKey(key) => {
            let mut signed_headers = headers.clone();
            if !call.body.is_empty() {
                signed_headers.push(("content-length".into(), call.body.len().to_string()));
            }
            let signed = keyless_auth::shared_key::SignedRequest {
                method: call.method.as_str(),
                account,
                path: call.path,
                query: &pairs,
                headers: &signed_headers,
            };
            let signature = keyless_auth::shared_key::sign(
                key,
                &keyless_auth::shared_key::string_to_sign(&signed),
            );
            headers.push((
                "authorization".into(),
                format!("SharedKey {account}:{signature}"),
            ));
        }
        Signer::Sas(token) => {
            let parsed: Vec<(String, String)> =
                serde_urlencoded::from_str(token).unwrap_or_default();
            pairs.extend(parsed);
        }
        Signer::Bearer(..) => {}
    }
    let query_text = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    let uri = if query_text.is_empty() {
        call.path.to_owned()
    } else {
        format!("{}?{query_text}", call.path)
    };
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(Acting::send(
        acting,
        state,
        Service::Storage,
        call.method,
        &uri,
        &borrowed,
        call.body,
    )
    .await?)
}

/// A storage refusal: its status and explanation.
pub(super) type Refused = (StatusCode, String);

fn refused(response: &Response<()>, body: &[u8]) -> Refused {
    (response.status(), crate::internal::refusal(response, body))
}

/// Names of the blobs under `prefix` (every page).
pub(super) async fn list(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    at: &Location,
    prefix: &str,
) -> Result<Result<Vec<(String, u64)>, Refused>, MgmtError> {
    let mut names = Vec::new();
    let mut marker = String::new();
    loop {
        let mut query = vec![
            ("restype", "container"),
            ("comp", "list"),
            ("maxresults", "5000"),
            ("prefix", prefix),
        ];
        if !marker.is_empty() {
            query.push(("marker", marker.as_str()));
        }
        let path = blob_path(&at.account, &at.container, "");
        let (response, bytes) = send(
            state,
            signer,
            acting,
            &at.account,
            Call {
                method: Method::GET,
                path: &path,
                query: &query,
                headers: &[],
                body: Vec::new(),
            },
        )
        .await?;
        if !response.status().is_success() {
            return Ok(Err(refused(&response, &bytes)));
        }
        let xml = String::from_utf8_lossy(&bytes);
        for blob in xml.split("<Blob>").skip(1) {
            let name = between(blob, "<Name>", "</Name>").map(unescape);
            let size = between(blob, "<Content-Length>", "</Content-Length>")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            // Directories of hierarchical accounts appear as empty blobs marked as such.
            let directory = blob.contains("<hdi_isfolder>true</hdi_isfolder>");
            if let Some(name) = name
                && !directory
            {
                names.push((name, size));
            }
        }
        marker = between(&xml, "<NextMarker>", "</NextMarker>")
            .map(unescape)
            .unwrap_or_default();
        if marker.is_empty() {
            return Ok(Ok(names));
        }
    }
}

fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = text.find(open)? + open.len();
    let rest = text.get(start..)?;
    let end = rest.find(close)?;
    rest.get(..end)
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Reads one blob whole.
pub(super) async fn get(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    at: &Location,
    blob: &str,
) -> Result<Result<Bytes, Refused>, MgmtError> {
    let path = blob_path(&at.account, &at.container, blob);
    let (response, bytes) = send(
        state,
        signer,
        acting,
        &at.account,
        Call {
            method: Method::GET,
            path: &path,
            query: &[],
            headers: &[],
            body: Vec::new(),
        },
    )
    .await?;
    if response.status().is_success() {
        Ok(Ok(bytes))
    } else {
        Ok(Err(refused(&response, &bytes)))
    }
}

/// The size of one blob, read with its properties (no bytes).
pub(super) async fn head(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    at: &Location,
    blob: &str,
) -> Result<Result<u64, Refused>, MgmtError> {
    let path = blob_path(&at.account, &at.container, blob);
    let (response, bytes) = send(
        state,
        signer,
        acting,
        &at.account,
        Call {
            method: Method::HEAD,
            path: &path,
            query: &[],
            headers: &[],
            body: Vec::new(),
        },
    )
    .await?;
    if response.status().is_success() {
        Ok(Ok(response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)))
    } else {
        Ok(Err(refused(&response, &bytes)))
    }
}

/// Whether `signer` may write `blob`, asked without writing it: a Put Blob
/// whose condition (`If-Match` on an entity tag no blob has) cannot hold. The
/// storage authorizes a request before it weighs its conditions, so a refusal
/// is a 403 and a permitted write ends in 412 (or 404 when nothing is there).
pub(super) async fn may_write(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    at: &Location,
    blob: &str,
) -> Result<Result<(), Refused>, MgmtError> {
    let path = blob_path(&at.account, &at.container, blob);
    let (response, bytes) = send(
        state,
        signer,
        acting,
        &at.account,
        Call {
            method: Method::PUT,
            path: &path,
            query: &[],
            headers: &[
                ("x-ms-blob-type", "BlockBlob"),
                ("if-match", "\"0x0-keyless-write-check\""),
            ],
            body: Vec::new(),
        },
    )
    .await?;
    match response.status() {
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Ok(Err(refused(&response, &bytes))),
        _ => Ok(Ok(())),
    }
}

/// Writes one blob whole.
pub(super) async fn put(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    at: &Location,
    blob: &str,
    body: Vec<u8>,
) -> Result<Result<(), Refused>, MgmtError> {
    let path = blob_path(&at.account, &at.container, blob);
    let (response, bytes) = send(
        state,
        signer,
        acting,
        &at.account,
        Call {
            method: Method::PUT,
            path: &path,
            query: &[],
            headers: &[("x-ms-blob-type", "BlockBlob")],
            body,
        },
    )
    .await?;
    if response.status().is_success() {
        Ok(Ok(()))
    } else {
        Ok(Err(refused(&response, &bytes)))
    }
}
