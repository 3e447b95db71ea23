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

    // A file the running server left open to others: a second server refused for
    // the dir in use does not touch it.
    let probe = server.data_dir().join("probe");
    std::fs::write(&probe, b"x").unwrap();
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = server.start_on_same_dir().await.unwrap_err().to_string();
    assert!(err.contains("in use"), "{err}");
    let probe_mode = std::fs::metadata(&probe).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        probe_mode, 0o644,
        "the refused server changed the dir in use"
    );
    std::fs::remove_file(&probe).unwrap();

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

/// Files and folders under `dir` whose mode lets anyone but the owner in.
fn open_to_others(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.permissions().mode() & 0o077 != 0 {
                found.push((entry.path(), meta.permissions().mode() & 0o7777));
            }
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

#[tokio::test]
async fn nothing_under_the_data_dir_is_open_to_other_users_even_after_an_older_server() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    // Something in every kind of file the server writes: directory, keys,
    // certificates, the metadata database, logs.
    service_principal(&server, &admin, "modes").await;
    let (status, body) = server
        .mgmt(Method::GET, "/directory/me", Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let open = open_to_others(&server.data_dir());
    assert!(open.is_empty(), "readable by others: {open:?}");
    // A data dir left by a server that did not restrict its files is closed at start.
    let dir = server.data_dir();
    std::fs::set_permissions(
        dir.join("admin.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("old")).unwrap();
    std::fs::set_permissions(dir.join("old"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = server.restart().await.unwrap();
    let open = open_to_others(&server.data_dir());
    assert!(
        open.is_empty(),
        "readable by others after a restart: {open:?}"
    );
}
