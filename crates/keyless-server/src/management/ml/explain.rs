//! Which identity would read a data URI in each context of a workspace — a job with
//! `identity: user_identity`, a job with a managed identity or none on each compute,
//! serverless, a data preview — and whether that identity may read it now.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::identity_rule::{
    self, Compute, JobIdentity, ManagedIdentity, PreviewReader, Reader, StoredCredential,
    WorkspaceAccess,
};
use keyless_core::rbac::{AccessRequest, Permission};
use keyless_core::{ObjectId, Principal, PrincipalKind, ResourceId};
use keyless_ml::uri::{DataUri, Location};

use super::super::caller::authorize;
use super::super::directory::{principal_json, resolve};
use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::data::storage_host;
use super::workspaces::identities;
use super::{COMPUTES, children, open, system_identity, user_assigned};
use crate::state::SharedState;

const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";

#[derive(Debug, Deserialize)]
pub(crate) struct ExplainBody {
    /// Who submits the job or asks for the preview.
    principal: String,
    /// The data URI.
    uri: String,
}

pub(crate) async fn explain(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, rg, ws)): Path<(String, String, String)>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<ExplainBody>,
) -> Response {
    respond(async {
        v.require()?;
        let (caller, ws) = open(&state, &headers, (&sub, &rg, &ws), "datastores", "Microsoft.MachineLearningServices/workspaces/datastores/read").await?;
        let who = resolve(&state, caller.principal.tenant_id, &body.principal).await?;
        if who.object_id != caller.principal.object_id {
            authorize(&state, &caller, "Microsoft.Authorization/roleAssignments/read", &ResourceId::parse(&ws.id)?).await?;
        }
        let host = storage_host(&state);
        let (location, credential, access, datastore) = match DataUri::parse(&body.uri, &[host.as_str()])? {
            DataUri::Datastore { datastore, path, .. } => {
                let r = super::datastores::load(&state, &ws, &datastore).await?;
                let d = super::datastores::parse(&r)?;
                (d.locate(&path), d.credential, d.workspace_access, Some(datastore))
            }
            DataUri::Storage(location) => (location, StoredCredential::None, WorkspaceAccess::Off, None),
            DataUri::Asset { .. } => {
                return Err(MgmtError::bad_request("InvalidDataUri", "explain a data asset by the URI it points at"));
            }
        };
        let mut contexts = Vec::new();
        let mut computes: Vec<Compute> = Vec::new();
        for r in children(&state, &ws, COMPUTES).await? {
            computes.push(super::computes::rule_view(&state, &r).await?);
        }
        let mut workspace_uais = Vec::new();
        for id in identities(&ws)?.ids.user_assigned {
            let (_, p) = user_assigned(&state, &id).await?;
            workspace_uais.push(managed(&p, false));
        }
        computes.push(Compute::Serverless { workspace_user_assigned: workspace_uais });
        for compute in &computes {
            let name = match compute {
                Compute::Target { name, .. } => name.clone(),
                Compute::Serverless { .. } => "serverless".to_owned(),
            };
            for (label, job) in [("user_identity", JobIdentity::User), ("managed", JobIdentity::Managed { client_id: None, object_id: None }), ("none", JobIdentity::Absent)] {
                let context = format!("job on {name}, identity: {label}");
                let entry = match identity_rule::job_data_reader(credential, &job, compute) {
                    Ok(choice) => {
                        let principal = match &choice.reader {
                            Reader::SubmittingUser => Some(who.clone()),
                            Reader::Managed(mi) => match ObjectId::parse(&mi.object_id) {
                                Ok(oid) => state.store.principal(oid).await?,
                                Err(_) => None,
                            },
                            Reader::Credential(_) => None,
                        };
                        judged(&state, &location, &context, &choice.reader.to_string(), &choice.reason, principal.as_ref(), credential).await
                    }
                    Err(refusal) => json!({ "context": context, "reader": Value::Null, "allowed": false, "explanation": refusal.0 }),
                };
                contexts.push(entry);
            }
        }
        let (preview, reason) = identity_rule::preview_reader(credential, access);
        let (reader, principal) = match preview {
            PreviewReader::Caller => (format!("the caller ({})", who.display_name), Some(who.clone())),
            PreviewReader::Credential(kind) => (format!("the datastore's stored {} credential", kind.rest_name()), None),
            PreviewReader::Workspace(WorkspaceAccess::UserAssigned) => {
                let primary = identities(&ws)?.primary;
                let p = match primary {
                    Some(id) => Some(user_assigned(&state, &id).await?.1),
                    None => None,
                };
                ("the workspace's primary user-assigned identity".to_owned(), p)
            }
            PreviewReader::Workspace(_) => ("the workspace's system-assigned identity".to_owned(), system_identity(&state, &ws.id).await?),
        };
        contexts.push(judged(&state, &location, "data preview", &reader, reason, principal.as_ref(), credential).await);
        Ok((
            StatusCode::OK,
            json!({
                "uri": body.uri,
                "principal": principal_json(&who),
                "datastore": datastore,
                "location": { "account": location.account, "container": location.container, "path": location.path },
                "credential": credential.rest_name(),
                "contexts": contexts,
            }),
        ))
    })
    .await
}

fn managed(p: &Principal, system_assigned: bool) -> ManagedIdentity {
    ManagedIdentity {
        object_id: p.object_id.to_string(),
        client_id: p.app_id.map(|a| a.to_string()).unwrap_or_default(),
        system_assigned,
    }
}

/// Whether the chosen reader may read the location, by RBAC (the storage's first
/// question; on a hierarchical namespace ACLs may still add access).
async fn judged(
    state: &SharedState,
    at: &Location,
    context: &str,
    reader: &str,
    reason: &str,
    principal: Option<&Principal>,
    credential: StoredCredential,
) -> Value {
    let Some(p) = principal else {
        let explanation = if credential == StoredCredential::None {
            "no identity is available to read".to_owned()
        } else {
            format!(
                "a stored {} credential is checked by the storage when used, not by role assignments",
                credential.rest_name()
            )
        };
        return json!({ "context": context, "reader": reader, "reason": reason, "allowed": Value::Null, "explanation": explanation });
    };
    let account = match state.account(&at.account).await {
        Ok(Some(a)) => a,
        _ => {
            return json!({ "context": context, "reader": reader, "reason": reason, "allowed": false, "explanation": format!("storage account `{}` does not exist on this server", at.account) });
        }
    };
    let scope_text = format!(
        "{}/blobServices/default/containers/{}",
        account.id, at.container
    );
    let Ok(scope) = ResourceId::parse(&scope_text) else {
        return json!({ "context": context, "reader": reader, "allowed": false, "explanation": "the container name is not valid" });
    };
    let mut ids = vec![p.object_id];
    if p.kind != PrincipalKind::Group {
        ids.extend(
            state
                .store
                .transitive_groups(p.object_id)
                .await
                .unwrap_or_default(),
        );
    }
    let decision = state.rbac().explain(&AccessRequest {
        tenant: p.tenant_id,
        principals: &ids,
        permission: Permission::DataAction(BLOB_READ),
        scope: &scope,
    });
    json!({
        "context": context,
        "reader": reader,
        "reason": reason,
        "principal": p.object_id.to_string(),
        "allowed": decision.is_allowed(),
        "explanation": decision.explanation(),
    })
}
