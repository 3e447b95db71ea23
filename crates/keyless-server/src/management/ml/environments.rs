//! Environment versions: what a job asks to run in (an image, a conda file, a
//! build context). keyless records them so clients that register one (azure-ai-ml
//! registers an inline `Environment(image=…)` as `CliV2AnonymousEnvironment`)
//! can refer to it; the local backend runs commands on the host and does not
//! build or pull images.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use keyless_store::Resource;

use super::super::error::MgmtError;
use super::super::resources::ApiVersion;
use super::super::{Body, respond};
use super::{ENVIRONMENT_VERSIONS, VersionPath, load_version, version_json};
use crate::state::SharedState;

/// `PUT …/environments/{name}/versions/{version}`.
pub(crate) async fn put(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        v.require()?;
        keyless_ml::names::asset(&p.name, "environment name")?;
        keyless_ml::names::asset(&p.version, "environment version")?;
        let (caller, ws) = p.open(&state, &headers, "environments", "Microsoft.MachineLearningServices/workspaces/environments/write").await?;
        let props = body
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let image = props.get("image").and_then(Value::as_str).filter(|s| !s.is_empty());
        let build = props.get("build").filter(|b| b.is_object());
        if image.is_none() == build.is_none() {
            return Err(MgmtError::bad_request(
                "InvalidEnvironment",
                "an environment version names exactly one of `properties.image` and `properties.build`",
            ));
        }
        let id = format!("{}/environments/{}/versions/{}", ws.id, p.name, p.version);
        if let Some(existing) = state.store.resource(&id).await?
            && existing.body.get("properties") == Some(&Value::Object(props.clone()))
        {
            return Ok((StatusCode::OK, version_json(ENVIRONMENT_VERSIONS, &existing)));
        }
        let resource = Resource {
            id: id.clone(),
            subscription_id: ws.subscription_id.clone(),
            resource_group: ws.resource_group.clone(),
            kind: ENVIRONMENT_VERSIONS.into(),
            name: format!("{}/{}/{}", ws.name, p.name, p.version),
            location: ws.location.clone(),
            body: json!({ "version": p.version, "properties": props }),
            created_at: state.now(),
        };
        state.store.resource_put(&resource).await?;
        tracing::info!(actor = %caller.principal.object_id, environment = %id, "environment version stored");
        Ok((StatusCode::CREATED, version_json(ENVIRONMENT_VERSIONS, &resource)))
    })
    .await
}

/// `GET …/environments/{name}/versions/{version}`.
pub(crate) async fn show(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(p): Path<VersionPath>,
    Query(v): Query<ApiVersion>,
) -> Response {
    respond(async {
        v.require()?;
        let (_, ws) = p
            .open(
                &state,
                &headers,
                "environments",
                "Microsoft.MachineLearningServices/workspaces/environments/read",
            )
            .await?;
        let r = load_version(
            &state,
            &ws,
            &p,
            ("environments", ENVIRONMENT_VERSIONS, "environment version"),
        )
        .await?;
        Ok((StatusCode::OK, version_json(ENVIRONMENT_VERSIONS, &r)))
    })
    .await
}
