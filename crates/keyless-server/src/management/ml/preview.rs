//! Data preview: the first rows of a file, or a folder's listing, read through the
//! storage listener as the identity the preview rule chooses — the workspace's
//! managed identity when the datastore asks for it, else the datastore's stored
//! credential, else the caller. The storage applies its network rules (a preview
//! has no client address, so only a trusted-service bypass lets it through a
//! firewall) and records the read under that identity.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::identity_rule::{PreviewReader, WorkspaceAccess, preview_reader};
use keyless_ml::uri::Location;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::reach::{Call, Signer, blob_path, resolve, send, stored_signer};
use super::workspaces::identities;
use super::{open, system_identity, user_assigned};
use crate::internal::{Acting, Service};
use crate::state::SharedState;

/// Bytes read from the head of a file.
const HEAD_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct PreviewBody {
    uri: String,
    rows: Option<usize>,
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
        let target = resolve(&state, &ws, &body.uri).await?;
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
            PreviewReader::Credential(kind) => stored_signer(&state, &ws, &target, *kind, None).await?,
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

type Outcome = Result<Value, (StatusCode, String)>;

/// Reads the head of a file; a missing file or a folder path is listed instead.
async fn read(
    state: &SharedState,
    signer: &Signer,
    at: &Location,
    rows: usize,
) -> Result<Outcome, MgmtError> {
    let acting = match signer {
        Signer::Bearer(p, kind) => {
            let acting = Acting::as_principal(state, p.clone(), Service::Storage).await?;
            // The workspace's identity previewing for keyless is the trusted
            // service; a caller previewing as themselves is not.
            Some(if kind.starts_with("Workspace") {
                acting.trusted_service()
            } else {
                acting
            })
        }
        _ => None,
    };
    let base = blob_path(&at.account, &at.container, "");
    if !at.path.is_empty() && !at.path.ends_with('/') {
        let path = blob_path(&at.account, &at.container, &at.path);
        let range = format!("bytes=0-{}", HEAD_BYTES - 1);
        let (response, bytes) = send(
            state,
            signer,
            acting.as_ref(),
            &at.account,
            Call {
                method: Method::GET,
                path: &path,
                query: &[],
                headers: &[("x-ms-range", range.as_str())],
                body: Vec::new(),
            },
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
        Call {
            method: Method::GET,
            path: &base,
            query: &query,
            headers: &[],
            body: Vec::new(),
        },
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
