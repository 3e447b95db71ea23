//! The keyless cloud: the document in ARM's `/metadata/endpoints` format that
//! tells Azure SDKs (azure-ai-ml through `ARM_CLOUD_METADATA_URL`) where the
//! resource manager and the login service are, and the names they derive from
//! it: the Azure ML audience and the storage host names.
//!
//! The SDKs derive two names on their own. The ML audience is `https://ml.azure.`
//! followed by the portal host without its first two labels, so the portal
//! `portal.azure.keyless.localhost` gives [`ML_AUDIENCE`]. Storage URLs are
//! `https://<account>.blob.<suffixes.storage>`, so the suffix is
//! `core.keyless.localhost:<storage port>`, and those names reach the storage
//! listener through the host entries `keyless hosts` prints.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::{SharedState, Urls};

/// The cloud's name, as `AZUREML_CURRENT_CLOUD` names it.
pub const NAME: &str = "keyless";
/// The DNS zone of the names SDKs derive.
pub const DNS_ZONE: &str = "keyless.localhost";
/// The portal the document names; nothing is served there.
pub const PORTAL: &str = "https://portal.azure.keyless.localhost/";
/// The audience of Azure ML tokens in this cloud, exactly as the SDK checks it.
pub const ML_AUDIENCE: &str = "https://ml.azure.keyless.localhost";
/// The storage zone below which `<account>.blob.` and `<account>.dfs.` names live.
pub const STORAGE_ZONE: &str = "core.keyless.localhost";
/// The zone of registries' login servers (`<registry>.azurecr.keyless.localhost`),
/// as `azurecr.io` is Azure's.
pub const REGISTRY_ZONE: &str = "azurecr.keyless.localhost";

/// The port of a listener URL (`https://host:port`).
fn port(url: &str) -> &str {
    url.rsplit_once(':')
        .map_or("443", |(_, p)| p.trim_end_matches('/'))
}

/// `suffixes.storage`: the zone and the storage listener's port.
pub fn storage_suffix(storage_url: &str) -> String {
    format!("{STORAGE_ZONE}:{}", port(storage_url))
}

/// The registry suffix: the zone and the registry listener's port.
pub fn registry_suffix(registry_url: &str) -> String {
    format!("{REGISTRY_ZONE}:{}", port(registry_url))
}

/// A registry's login server: `<name>.<zone>:<registry port>`.
pub(crate) fn login_server(urls: &Urls, name: &str) -> String {
    format!("{name}.{}", registry_suffix(&urls.registry))
}

/// The registry a login server's host name (`<registry>.<zone>[:port]`) names.
pub(crate) fn registry_of_host(host: &str) -> Option<&str> {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let (registry, zone) = name.split_once('.')?;
    (zone.eq_ignore_ascii_case(REGISTRY_ZONE) && !registry.is_empty()).then_some(registry)
}

/// The URL of the cloud document on the management listener.
pub fn metadata_url(management_url: &str) -> String {
    format!(
        "{}/metadata/endpoints?api-version=2019-05-01",
        management_url.trim_end_matches('/')
    )
}

/// Where Microsoft Graph is served: `/graph/` on the management listener. It is
/// also Graph's resource id in the keyless cloud, as `https://graph.microsoft.com/`
/// is in Azure's; tokens for either name carry Graph's audience.
pub(crate) fn graph_url(urls: &Urls) -> String {
    format!("{}/graph/", urls.management.trim_end_matches('/'))
}

/// The vault a vault host name (`<vault>.vault.<zone>[:port]`) names.
pub(crate) fn vault_of_host(host: &str) -> Option<&str> {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let (vault, zone) = name.split_once('.')?;
    let zone = zone.strip_prefix("vault.")?;
    (zone.eq_ignore_ascii_case(DNS_ZONE) && !vault.is_empty()).then_some(vault)
}

/// The account a storage host name (`<account>.blob.<zone>[:port]`) names.
pub(crate) fn account_of_host(host: &str) -> Option<&str> {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let (account, rest) = name.split_once('.')?;
    let zone = rest
        .strip_prefix("blob.")
        .or_else(|| rest.strip_prefix("dfs."))?;
    zone.eq_ignore_ascii_case(STORAGE_ZONE).then_some(account)
}

/// The cloud document: a list with one cloud, in ARM's format.
pub(crate) fn document(urls: &Urls) -> Value {
    let slash = |u: &str| format!("{}/", u.trim_end_matches('/'));
    let management = slash(&urls.management);
    json!([{
        "name": NAME,
        "portal": PORTAL,
        "resourceManager": management,
        "authentication": {
            "loginEndpoint": slash(&urls.login),
            "audiences": [management, "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "suffixes": {
            "storage": storage_suffix(&urls.storage),
            "keyVaultDns": format!("vault.{DNS_ZONE}:{}", port(&urls.vault)),
            "acrLoginServer": registry_suffix(&urls.registry),
            "storageSyncEndpointSuffix": format!("afs.{DNS_ZONE}"),
        },
        "media": "",
        "graph": "",
        "graphAudience": "",
        "sqlManagement": "",
        "microsoftGraphResourceId": graph_url(urls),
        "appInsightsResourceId": "",
        "appInsightsTelemetryChannelResourceId": "",
        "batch": "",
        "gallery": "",
        "activeDirectoryDataLake": "",
        "vmImageAliasDoc": "",
    }])
}

/// `GET /metadata/endpoints`: served without authentication, as ARM serves it.
pub(crate) async fn metadata(State(state): State<SharedState>) -> Response {
    json_response(document(&state.urls))
}

/// `GET /discovery`: where a workspace's run history is (this listener), served
/// without authentication, as Azure ML's discovery service is.
pub(crate) async fn discovery(State(state): State<SharedState>) -> Response {
    let base = state.urls.management.trim_end_matches('/').to_owned();
    json_response(json!({
        "api": base,
        "catalog": base,
        "experimentation": base,
        "history": base,
        "modelmanagement": base,
        "pipelines": base,
        "studio": base,
    }))
}

fn json_response(v: Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ml_audience_is_what_the_sdk_derives_from_the_portal() {
        // The SDK: `https://ml.azure.` + the portal host without its first two labels.
        let host = PORTAL
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .splitn(3, '.')
            .nth(2)
            .unwrap_or_default();
        assert_eq!(format!("https://ml.azure.{host}"), ML_AUDIENCE);
    }

    #[test]
    fn storage_host_names_give_their_account() {
        assert_eq!(
            account_of_host("censusdata.blob.core.keyless.localhost:10000"),
            Some("censusdata")
        );
        assert_eq!(
            account_of_host("lake.dfs.core.keyless.localhost"),
            Some("lake")
        );
        assert_eq!(account_of_host("127.0.0.1:10000"), None);
        assert_eq!(account_of_host("acct.blob.core.windows.net"), None);
        assert_eq!(account_of_host("acct.queue.core.keyless.localhost"), None);
    }

    #[test]
    fn the_document_names_the_listeners() {
        let urls = Urls {
            login: "https://127.0.0.1:1".into(),
            management: "https://127.0.0.1:2".into(),
            storage: "https://127.0.0.1:3".into(),
            vault: "https://127.0.0.1:4".into(),
            identity: "http://127.0.0.1:5".into(),
            registry: "https://127.0.0.1:6".into(),
        };
        let doc = document(&urls);
        assert_eq!(doc[0]["resourceManager"], "https://127.0.0.1:2/");
        assert_eq!(
            doc[0]["authentication"]["loginEndpoint"],
            "https://127.0.0.1:1/"
        );
        assert_eq!(doc[0]["suffixes"]["storage"], "core.keyless.localhost:3");
        assert_eq!(
            doc[0]["suffixes"]["acrLoginServer"],
            "azurecr.keyless.localhost:6"
        );
        assert_eq!(
            registry_of_host("myacr.azurecr.keyless.localhost:6"),
            Some("myacr")
        );
        assert_eq!(registry_of_host("myacr.azurecr.io"), None);
        assert_eq!(registry_of_host("127.0.0.1:6"), None);
        assert!(metadata_url(&urls.management).contains("https://127.0.0.1:2/"));
    }
}
