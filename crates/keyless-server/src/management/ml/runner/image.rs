//! A job's image: which one its environment names, and the pull the agent
//! makes as the compute's identity.
//!
//! An environment whose image lies in a registry of this server
//! (`<registry>.<registry suffix>/<repository>:<tag>` or `@sha256:…`) is pulled
//! by the agent and the command runs in it. Any other image (a curated
//! `AzureML-…` environment, `mcr.microsoft.com/…`) cannot be reached from
//! here: the command runs in the compute's host environment, and the job's log
//! says so. An environment that asks for a build is refused: keyless builds no
//! images.
//!
//! The pull is the compute's: its default identity (system- or user-assigned),
//! never the submitting user's, as in Azure. Without AcrPull on the registry the
//! job fails in Preparing (`ImagePullDenied`) and the command never starts.

use serde_json::{Value, json};

use keyless_core::ObjectId;
use keyless_ml::runner::Stop;

use super::super::ENVIRONMENT_VERSIONS;
use super::data::managed_principal;
use super::{Context, Session};
use crate::registry::Who;
use crate::state::SharedState;

/// An image reference split: registry host, repository, tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    pub(crate) host: String,
    pub(crate) repository: String,
    pub(crate) reference: String,
}

/// Splits `host[:port]/repo/sub[:tag|@sha256:…]`; `None` for a name without a
/// registry host.
pub(crate) fn parse(image: &str) -> Option<Reference> {
    let (host, rest) = image.split_once('/')?;
    if !(host.contains('.') || host.contains(':') || host == "localhost") {
        return None;
    }
    let (repository, reference) = if let Some((r, d)) = rest.split_once('@') {
        (r, d.to_owned())
    } else {
        match rest.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t.to_owned()),
            _ => (rest, "latest".to_owned()),
        }
    };
    Some(Reference {
        host: host.to_ascii_lowercase(),
        repository: repository.to_owned(),
        reference,
    })
}

/// The environment version a job's `environment` names, when it is one of the
/// workspace's: `azureml:name:version`, `azureml:name@latest`, or its id.
async fn environment_version(
    state: &SharedState,
    ctx: &Context,
    named: &str,
) -> Result<Option<Value>, Stop> {
    let bare = named.strip_prefix("azureml:").unwrap_or(named);
    if bare.starts_with("/subscriptions/") {
        return Ok(state.store.resource(bare).await?.map(|r| r.body));
    }
    let (name, version) = match bare.split_once('@') {
        Some((n, _label)) => (n, None),
        None => match bare.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (bare, None),
        },
    };
    if let Some(v) = version {
        let id = format!("{}/environments/{name}/versions/{v}", ctx.ws.id);
        return Ok(state.store.resource(&id).await?.map(|r| r.body));
    }
    let prefix = format!("{}/{name}/", ctx.ws.name);
    let newest = state
        .store
        .resources(
            &ctx.ws.subscription_id,
            &ctx.ws.resource_group,
            ENVIRONMENT_VERSIONS,
        )
        .await?
        .into_iter()
        .filter(|r| r.name.starts_with(&prefix))
        .max_by_key(|r| r.created_at);
    Ok(newest.map(|r| r.body))
}

/// What the agent is told about the job's image (`null`: the command runs on
/// the host), with a line for the job's log.
pub(super) async fn plan(
    state: &SharedState,
    ctx: &Context,
) -> Result<(Value, Option<String>), Stop> {
    let Some(environment) = &ctx.command.environment else {
        return Ok((Value::Null, None));
    };
    let (label, props) = match environment {
        Value::String(named) => {
            let body = environment_version(state, ctx, named).await?;
            let props = body.and_then(|b| b.get("properties").cloned());
            (named.clone(), props)
        }
        Value::Object(inline) => (
            "an inline environment".to_owned(),
            Some(Value::Object(inline.clone())),
        ),
        _ => return Ok((Value::Null, None)),
    };
    let Some(props) = props else {
        return Ok((
            Value::Null,
            Some(format!(
                "environment {label} is not one of the workspace's (a curated environment): the command runs in the compute's host environment"
            )),
        ));
    };
    if props.get("build").is_some_and(|b| !b.is_null()) {
        return Err(Stop::failed(
            "ImageBuildNotSupported",
            format!(
                "environment {label} asks for an image to be built from a context; keyless builds no images: push the image to a registry (skopeo, oras) and name it with `image:`"
            ),
        ));
    }
    let Some(image) = props.get("image").and_then(Value::as_str) else {
        return Ok((Value::Null, None));
    };
    let registry = parse(image).and_then(|r| {
        Some((
            crate::cloud::registry_of_host(&r.host)?.to_ascii_lowercase(),
            r,
        ))
    });
    match registry {
        Some((name, r)) => Ok((
            json!({
                "image": image,
                "registry": name,
                "repository": r.repository,
                "reference": r.reference,
            }),
            Some(format!(
                "image {image}: pulled by the compute's identity from registry {name}"
            )),
        )),
        None => Ok((
            Value::Null,
            Some(format!(
                "image {image} is not in a registry of this server: the command runs in the compute's host environment"
            )),
        )),
    }
}

/// `POST /keyless/jobs/{key}/image`: where the image is and a pull token for
/// the compute's identity; `ImagePullDenied` (with the role that would grant
/// the pull) when that identity may not pull.
pub(super) async fn access(state: &SharedState, session: &Session) -> Result<Value, Stop> {
    let ctx = &session.ctx;
    let spec = session
        .spec
        .get("image")
        .filter(|v| !v.is_null())
        .ok_or_else(|| Stop::failed("AgentProtocol", "the job runs in no image"))?;
    let field = |k: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (name, repository, image) = (field("registry"), field("repository"), field("image"));
    let registry = state.store.registry(&name).await?.ok_or_else(|| {
        Stop::failed(
            "ImagePullFailed",
            format!("image {image}: registry {name} does not exist on this server"),
        )
    })?;
    let mi = ctx.compute.default_identity().ok_or_else(|| {
        Stop::failed(
            "ImagePullDenied",
            format!(
                "image {image}: the compute has no managed identity to pull with; give it one (identity: type: system_assigned) and grant it AcrPull on {}",
                registry.id
            ),
        )
    })?;
    let principal = managed_principal(state, &mi.object_id).await?;
    let groups: Vec<ObjectId> = state.store.transitive_groups(principal.object_id).await?;
    let who = Who::managed(&principal, &groups, &ctx.job);
    let token = crate::registry::job_pull(state, &registry, &who, &repository).map_err(|why| {
        Stop::failed(
            "ImagePullDenied",
            format!(
                "image {image}: {why}. Grant the compute's identity AcrPull: az role assignment create --assignee {} --role acrpull --scope {}",
                principal.object_id, registry.id
            ),
        )
    })?;
    Ok(json!({
        "url": state.urls.registry,
        "loginServer": crate::cloud::login_server(&state.urls, &registry.name),
        "repository": repository,
        "reference": field("reference"),
        "token": token,
    }))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn references_split_into_host_repository_and_tag_or_digest() {
        let r = parse("acr1.azurecr.keyless.localhost:10014/team/app:v1").unwrap();
        assert_eq!(
            (r.host.as_str(), r.repository.as_str(), r.reference.as_str()),
            ("acr1.azurecr.keyless.localhost:10014", "team/app", "v1")
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("acr1.azurecr.io/app@{d}")).unwrap();
        assert_eq!(
            (r.repository.as_str(), r.reference.as_str()),
            ("app", d.as_str())
        );
        assert_eq!(parse("localhost:5000/app").unwrap().reference, "latest");
        assert!(parse("ubuntu:22.04").is_none());
        assert!(parse("library/ubuntu").is_none());
    }
}
