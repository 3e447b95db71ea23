//! Data preview: the first rows of a file, or a folder's listing, read through the
//! storage listener as the identity the preview rule chooses — the workspace's
//! managed identity when the datastore asks for it, else the datastore's stored
//! credential, else the caller. The storage applies its network rules (a preview
//! has no client address, so only a trusted-service bypass lets it through a
//! firewall) and records the read under that identity.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::Principal;
use keyless_core::identity_rule::{
    PreviewReader, StoredCredential, WorkspaceAccess, preview_reader,
};
use keyless_ml::uri::{DataUri, Location};

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::data::storage_host;
use super::workspaces::{acting_identity, identities};
use super::{open, system_identity, user_assigned};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// Bytes read from the head of a file.
const HEAD_BYTES: usize = 64 * 1024;
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewBody {
    uri: String,
    rows: Option<usize>,
}

/// Where the data is and what the datastore says about reaching it.
#[derive(Debug)]
struct Target {
    location: Location,
    credential: StoredCredential,
    access: WorkspaceAccess,
    secret: Option<String>,
}

/// How the read is signed.
#[derive(Debug)]
enum Signer {
    Bearer(Principal, &'static str),
    SharedKey(Vec<u8>),
    Sas(String),
}

pub(crate) async fn preview(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<PreviewBody>,
) -> Response {
    respond(async {
        v.require()?;
        let (caller, ws) = open(&state, &headers, (&sub, &rg, &ws), "datastores", "Microsoft.MachineLearningServices/workspaces/datastores/read").await?;
        let target = resolve(&state, &ws, &body.uri, 0).await?;
        let (reader, reason) = preview_reader(target.credential, target.access);
        let signer = match &reader {
            PreviewReader::Caller => Signer::Bearer(caller.principal.clone(), "Caller"),
            PreviewReader::Workspace(WorkspaceAccess::SystemAssigned | WorkspaceAccess::Off) => {
                let p = system_identity(&state, &ws.id).await?.ok_or_else(|| {
                    MgmtError::bad_request("WorkspaceIdentityMissing", format!("the datastore asks for workspace '{}''s system-assigned identity, which the workspace does not have", ws.name))
                })?;
                Signer::Bearer(p, "WorkspaceSystemAssignedIdentity")
            }
            PreviewReader::Workspace(WorkspaceAccess::UserAssigned) => {
                let primary = identities(&ws)?.primary.ok_or_else(|| {
                    MgmtError::bad_request("WorkspaceIdentityMissing", format!("the datastore asks for workspace '{}''s user-assigned identity, and the workspace has none", ws.name))
                })?;
                Signer::Bearer(user_assigned(&state, &primary).await?.1, "WorkspaceUserAssignedIdentity")
            }
            PreviewReader::Credential(kind) => stored_signer(&state, &ws, &target, *kind).await?,
        };
        let identity = match &signer {
            Signer::Bearer(p, kind) => json!({ "type": kind, "objectId": p.object_id.to_string(), "reason": reason }),
            Signer::SharedKey(_) => json!({ "type": "AccountKey", "reason": reason }),
            Signer::Sas(_) => json!({ "type": "Sas", "reason": reason }),
        };
        let rows = body.rows.unwrap_or(10).clamp(1, 1000);
        let outcome = read(&state, &signer, &target.location, rows).await?;
        match outcome {
            Ok(mut shown) => {
                crate::http::set(&mut shown, "uri", body.uri.clone().into());
                crate::http::set(&mut shown, "identity", identity);
                Ok((StatusCode::OK, shown))
            }
            Err((status, why)) => Err(MgmtError::new(
                if status == StatusCode::NOT_FOUND { StatusCode::NOT_FOUND } else { StatusCode::FORBIDDEN },
                "DataPreviewRefused",
                format!(
                    "the preview of {} read as {} ({reason}); the storage answered {status}: {why}",
                    body.uri,
                    identity.get("type").and_then(Value::as_str).unwrap_or("?"),
                ),
            )),
        }
    })
    .await
}

async fn resolve(
    state: &SharedState,
    ws: &keyless_store::Resource,
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
                    format!("'{uri}' names workspace {w}; preview it in that workspace"),
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
            Box::pin(resolve(state, ws, &inner, 1)).await
        }
        DataUri::Asset { .. } => Err(MgmtError::bad_request(
            "InvalidDataUri",
            "a data asset points at another data asset",
        )),
    }
}

async fn stored_signer(
    state: &SharedState,
    ws: &keyless_store::Resource,
    target: &Target,
    kind: StoredCredential,
) -> Result<Signer, MgmtError> {
    let secret = target.secret.as_deref().ok_or_else(|| {
        keyless_core::Error::internal("the datastore's credential is missing from its record")
    })?;
    // The workspace's identity fetches the credential from the vault, as Azure's service does.
    let actor = acting_identity(state, ws).await?;
    let acting = Acting::as_principal(state, actor, Service::Vault).await?;
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
            "PreviewCredentialUnsupported",
            format!(
                "keyless previews data with account keys, SAS tokens and identities; a {} credential is not used for preview yet",
                other.rest_name()
            ),
        )),
    }
}

type Outcome = Result<Value, (StatusCode, String)>;

/// Reads the head of a file; a missing file or a folder path is listed instead.
async fn read(
    state: &SharedState,
    signer: &Signer,
    at: &Location,
    rows: usize,
) -> Result<Outcome, MgmtError> {
    let acting = match signer {
        Signer::Bearer(p, _) => {
            Some(Acting::as_principal(state, p.clone(), Service::Storage).await?)
        }
        _ => None,
    };
    let base = format!(
        "/{}/{}",
        at.account,
        utf8_percent_encode(&at.container, SEGMENT)
    );
    if !at.path.is_empty() && !at.path.ends_with('/') {
        let path = format!("{base}/{}", utf8_percent_encode(&at.path, SEGMENT));
        let range = format!("bytes=0-{}", HEAD_BYTES - 1);
        let (response, bytes) = send(
            state,
            signer,
            acting.as_ref(),
            &at.account,
            &path,
            &[],
            &[("x-ms-range", range.as_str())],
        )
        .await?;
        let status = response.status();
        if status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            let table: Vec<Vec<String>> = text.lines().take(rows).map(split_csv).collect();
            return Ok(Ok(json!({ "kind": "file", "rows": table })));
        }
        if status != StatusCode::NOT_FOUND {
            return Ok(Err((status, crate::internal::refusal(&response, &bytes))));
        }
    }
    let prefix = if at.path.is_empty() || at.path.ends_with('/') {
        at.path.clone()
    } else {
        format!("{}/", at.path)
    };
    let query = [
        ("restype", "container"),
        ("comp", "list"),
        ("delimiter", "/"),
        ("maxresults", "200"),
        ("prefix", prefix.as_str()),
    ];
    let (response, bytes) = send(
        state,
        signer,
        acting.as_ref(),
        &at.account,
        &base,
        &query,
        &[],
    )
    .await?;
    if !response.status().is_success() {
        return Ok(Err((
            response.status(),
            crate::internal::refusal(&response, &bytes),
        )));
    }
    let xml = String::from_utf8_lossy(&bytes);
    let entries: Vec<&str> = xml
        .split("<Name>")
        .skip(1)
        .filter_map(|s| s.split("</Name>").next())
        .collect();
    if entries.is_empty() && !at.path.is_empty() {
        return Ok(Err((
            StatusCode::NOT_FOUND,
            format!(
                "nothing exists at '{}' in container '{}'",
                at.path, at.container
            ),
        )));
    }
    Ok(Ok(json!({ "kind": "folder", "entries": entries })))
}

async fn send(
    state: &SharedState,
    signer: &Signer,
    acting: Option<&Acting>,
    account: &str,
    path: &str,
    query: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Result<(axum::http::Response<()>, bytes::Bytes), MgmtError> {
    let version = crate::storage::SERVICE_VERSION;
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers: Vec<(String, String)> = vec![
        ("x-ms-version".into(), version.into()),
        ("x-ms-date".into(), date),
    ];
    headers.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    match signer {
        Signer::SharedKey(key) => {
            let signed = keyless_auth::shared_key::SignedRequest {
                method: "GET",
                account,
                path,
                query: &pairs,
                headers: &headers,
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
        path.to_owned()
    } else {
        format!("{path}?{query_text}")
    };
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(Acting::send(
        acting,
        state,
        Service::Storage,
        Method::GET,
        &uri,
        &borrowed,
        Vec::new(),
    )
    .await?)
}

/// Splits one CSV line, honouring double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_lines_split_with_quotes() {
        assert_eq!(
            super::split_csv("a,\"b,c\",\"d\"\"e\"\r"),
            vec!["a", "b,c", "d\"e"]
        );
    }
}
