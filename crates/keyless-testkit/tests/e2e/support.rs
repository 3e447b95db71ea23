//! Helpers shared by the end-to-end tests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::{Value, json};

use keyless_testkit::TestServer;

pub(crate) const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
pub(crate) const MANAGEMENT_SCOPE: &str = "https://management.azure.com/.default";

/// The decoded claims of a JWT (unchecked).
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// The decoded header of a JWT (unchecked).
pub(crate) fn header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// Creates a service principal with a secret; returns (app id, object id, secret).
pub(crate) async fn service_principal(
    server: &TestServer,
    admin: &str,
    name: &str,
) -> (String, String, String) {
    let (status, body) = server
        .mgmt(
            Method::POST,
            "/directory/servicePrincipals",
            Some(admin),
            Some(json!({ "displayName": name })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let s = |k: &str| body[k].as_str().unwrap().to_owned();
    (s("appId"), s("objectId"), s("password"))
}

/// Creates a user; returns the object id.
pub(crate) async fn user(server: &TestServer, admin: &str, upn: &str, password: &str) -> String {
    let body = json!({ "displayName": upn, "userPrincipalName": upn, "password": password });
    let (status, reply) = server
        .mgmt(Method::POST, "/directory/users", Some(admin), Some(body))
        .await
        .unwrap();
    assert_eq!(status, 201, "{reply}");
    reply["id"].as_str().unwrap().to_owned()
}

/// A client-credentials token request with a secret.
pub(crate) async fn client_credentials(
    server: &TestServer,
    app: &str,
    secret: &str,
    scope: &str,
) -> (reqwest::StatusCode, Value) {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", app),
        ("client_secret", secret),
        ("scope", scope),
    ];
    server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap()
}

pub(crate) const ALICE: &str = "alice@keyless.local";
pub(crate) const ALICE_PASSWORD: &str = "Alice-Passw0rd!";
