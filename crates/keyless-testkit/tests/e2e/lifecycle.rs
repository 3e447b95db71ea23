//! Keys, restarts and the data dir.

use std::os::unix::fs::PermissionsExt;

use reqwest::Method;

use keyless_testkit::TestServer;

use crate::support::*;

#[tokio::test]
async fn rotation_keeps_the_previous_key_until_the_next_rotation() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let old_kid = header(&admin)["kid"].clone();
    let (status, body) = server
        .mgmt(
            Method::POST,
            "/admin/signingKeys/rotate",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let jwks_url = format!(
        "{}/{}/discovery/v2.0/keys",
        server.info.login, server.admin.tenant
    );
    let jwks: serde_json::Value = server
        .http
        .get(&jwks_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&serde_json::Value> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert_eq!(kids.len(), 2);
    assert_eq!(*kids[0], body["kid"], "the new key is listed first");
    assert!(kids.contains(&&old_kid));

    assert_eq!(
        server
            .mgmt(Method::GET, "/directory/me", Some(&admin), None)
            .await
            .unwrap()
            .0,
        200,
        "old tokens stay valid"
    );
    let fresh = server.admin_token().await.unwrap();
    assert_eq!(header(&fresh)["kid"], body["kid"]);

    assert_eq!(
        server
            .mgmt(
                Method::POST,
                "/admin/signingKeys/rotate",
                Some(&fresh),
                None
            )
            .await
            .unwrap()
            .0,
        200
    );
    let (status, refused) = server
        .mgmt(Method::GET, "/directory/me", Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(
        status, 401,
        "a key two rotations old no longer verifies: {refused}"
    );
    assert_eq!(
        server
            .mgmt(Method::GET, "/directory/me", Some(&fresh), None)
            .await
            .unwrap()
            .0,
        200
    );
}

#[tokio::test]
async fn a_restart_keeps_users_secrets_and_keys_and_a_second_server_is_refused() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, _, secret) = service_principal(&server, &admin, "durable").await;
    let token = client_credentials(&server, &app, &secret, STORAGE_SCOPE)
        .await
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let err = server.start_on_same_dir().await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");

    let mode = |name: &str| {
        std::fs::metadata(server.data_dir().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("admin.json"), 0o600);
    assert_eq!(mode("master.key"), 0o600);
    assert_eq!(
        std::fs::metadata(server.data_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    let old_jwks = format!(
        "{}/{}/discovery/v2.0/keys",
        server.info.login, server.admin.tenant
    );
    let before: serde_json::Value = server
        .http
        .get(&old_jwks)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let server = server.restart().await.unwrap();
    let after: serde_json::Value = server
        .http
        .get(format!(
            "{}/{}/discovery/v2.0/keys",
            server.info.login, server.admin.tenant
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        before["keys"], after["keys"],
        "signing keys survive a restart"
    );
    let (status, body) = client_credentials(&server, &app, &secret, STORAGE_SCOPE).await;
    assert_eq!(status, 200, "the secret survives: {body}");
    assert_eq!(
        claims(&token)["iss"].as_str().unwrap().split('/').nth(3),
        Some(server.admin.tenant.as_str())
    );
    assert!(
        server.admin_token().await.is_ok(),
        "admin.json still signs in"
    );
}
