//! The environment of a job's command, and the job's own endpoint: which
//! identities it may issue, under which secret. The secret is also the job
//! agent's credential for the agent API.

use std::collections::BTreeMap;

use keyless_core::identity_rule::{Compute, JobIdentity, ManagedIdentity};

use super::data::{Values, managed_principal};
use keyless_ml::runner::Stop;

use super::Context;
use crate::jobs::{Grant, Issues};
use crate::state::SharedState;

/// What the job's agent is handed besides its plan.
pub(super) struct Prepared {
    /// The command's whole environment, but for the identity endpoint's
    /// variables, which the agent adds for its node-local endpoint.
    pub(super) env: BTreeMap<String, String>,
    /// The job's secret (the agent's credential).
    pub(super) secret: String,
    /// Whether the job's endpoint issues any identity.
    pub(super) identity: bool,
}

/// The command's environment, and the job's grant.
pub(super) async fn environment(
    state: &SharedState,
    ctx: &mut Context,
    inputs: &Values,
    outputs: &Values,
    resumed: Option<(&str, &str)>,
) -> Result<Prepared, Stop> {
    let mut env: BTreeMap<String, String> = ctx
        .command
        .environment_variables
        .clone()
        .into_iter()
        .collect();
    // A job's own PATH and LANG win; HOME is its folder.
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
    env.insert("HOME".into(), ctx.visible.display().to_string());
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    if let Some(ca) = state.jobs.ca_file.get() {
        // The job cannot reach the data dir: it gets a copy of the CA certificate.
        let copy = ctx.workdir.join("ca.pem");
        tokio::fs::copy(ca, &copy).await.map_err(|e| {
            Stop::failed(
                "JobPreparationFailed",
                format!("cannot copy the CA certificate for the job: {e}"),
            )
        })?;
        for name in ["REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"] {
            env.insert(name.into(), ctx.seen(&copy));
        }
    }
    let job_name = ctx.job.rsplit('/').next().unwrap_or(&ctx.job).to_owned();
    let parts: Vec<&str> = ctx.ws.id.split('/').collect();
    env.insert("AZUREML_RUN_ID".into(), job_name);
    env.insert(
        "AZUREML_ARM_SUBSCRIPTION".into(),
        parts.get(2).copied().unwrap_or_default().into(),
    );
    env.insert(
        "AZUREML_ARM_RESOURCEGROUP".into(),
        ctx.ws.resource_group.clone(),
    );
    env.insert(
        "AZUREML_ARM_WORKSPACE_NAME".into(),
        ctx.ws.id.rsplit('/').next().unwrap_or_default().into(),
    );
    env.insert(
        "KEYLESS_STORAGE_ENDPOINT".into(),
        state.urls.storage.clone(),
    );
    env.insert("AZURE_AUTHORITY_HOST".into(), state.urls.login.clone());
    // The cloud, for the SDKs and the azure-cli a job runs (`az login --identity`):
    // keyless's cloud document, and none of az's calls to the public cloud. A job's
    // own setting of any of them wins.
    for (name, value) in [
        (
            "ARM_CLOUD_METADATA_URL",
            crate::cloud::metadata_url(&state.urls.management),
        ),
        ("AZUREML_CURRENT_CLOUD", crate::cloud::NAME.to_owned()),
        ("AZURE_CORE_INSTANCE_DISCOVERY", "false".to_owned()),
        ("AZURE_CORE_COLLECT_TELEMETRY", "false".to_owned()),
        ("AZURE_CORE_SURVEY_MESSAGE", "false".to_owned()),
    ] {
        env.entry(name.into()).or_insert(value);
    }
    for (k, v) in inputs {
        env.insert(format!("AZURE_ML_INPUT_{k}"), v.clone());
    }
    for (k, v) in outputs {
        env.insert(format!("AZURE_ML_OUTPUT_{k}"), v.clone());
    }
    // The job's identity endpoint.
    let issues = match &ctx.command.identity {
        JobIdentity::User => Some(Issues::User(ctx.submitter.clone())),
        other => {
            let mut attached = Vec::new();
            let mis: Vec<ManagedIdentity> = match &ctx.compute {
                Compute::Target {
                    system_assigned,
                    user_assigned,
                    ..
                } => system_assigned
                    .iter()
                    .chain(user_assigned)
                    .cloned()
                    .collect(),
                Compute::Serverless {
                    workspace_user_assigned,
                } => workspace_user_assigned.clone(),
            };
            for mi in &mis {
                attached.push(managed_principal(state, &mi.object_id).await?);
            }
            let chosen = match other {
                JobIdentity::Managed {
                    client_id,
                    object_id,
                } => mis.iter().find(|mi| {
                    client_id
                        .as_deref()
                        .is_none_or(|c| mi.client_id.eq_ignore_ascii_case(c))
                        && object_id
                            .as_deref()
                            .is_none_or(|o| mi.object_id.eq_ignore_ascii_case(o))
                }),
                _ => ctx.compute.default_identity(),
            };
            let default = chosen.and_then(|mi| {
                attached
                    .iter()
                    .find(|p| p.object_id.to_string() == mi.object_id)
                    .cloned()
            });
            default.map(|default| {
                env.insert(
                    "DEFAULT_IDENTITY_CLIENT_ID".into(),
                    default.app_id.map(|a| a.to_string()).unwrap_or_default(),
                );
                Issues::Managed { default, attached }
            })
        }
    };
    let identity = issues.is_some();
    // A job followed again after a restart keeps its key and secret: its agent
    // holds them.
    let (key, secret, secret_digest) = match resumed {
        Some((key, digest)) => (key.to_owned(), String::new(), digest.to_owned()),
        None => {
            let key = keyless_auth::secret::random_token()?
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect::<String>();
            let secret = keyless_auth::secret::random_token()?;
            let digest = keyless_auth::secret::digest_secret(&secret);
            (key, secret, digest)
        }
    };
    state.jobs.grant(
        &key,
        Grant {
            job: ctx.job.clone(),
            secret_digest,
            issues,
        },
    );
    ctx.grant_key = Some(key);
    let described = match &ctx.command.identity {
        JobIdentity::User => "the submitting user's tokens".to_owned(),
        _ if identity => format!(
            "the compute's managed identity (DEFAULT_IDENTITY_CLIENT_ID={})",
            env.get("DEFAULT_IDENTITY_CLIENT_ID")
                .map_or("", String::as_str)
        ),
        _ => "none (the compute has no managed identity)".to_owned(),
    };
    ctx.log
        .line(&format!("identity endpoint: {described}"))
        .await;
    Ok(Prepared {
        env,
        secret,
        identity,
    })
}
