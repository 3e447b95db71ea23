//! What the token service and a protected endpoint refuse, and how they say so.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use serde_json::json;

use keyless_auth::Clock as _;
use keyless_testkit::{CLI_CLIENT_ID, TestServer};

use crate::support::*;

fn description(body: &serde_json::Value) -> &str {
    body["error_description"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_token_service_refuses_bad_credentials_with_aadsts_codes() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, _, secret) = service_principal(&server, &admin, "app").await;
    let tenant = server.admin.tenant.clone();

    let (status, body) = client_credentials(&server, &app, "not-the-secret", STORAGE_SCOPE).await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap()),
        (401, "invalid_client")
    );
    assert!(description(&body).starts_with("AADSTS7000215"), "{body}");

    let (status, body) = client_credentials(
        &server,
        "8c7c4c3e-0000-4000-8000-000000000000",
        &secret,
        STORAGE_SCOPE,
    )
    .await;
    assert_eq!(status, 400);
    assert!(description(&body).starts_with("AADSTS700016"), "{body}");

    let (status, body) = server
        .token_request(
            "00000000-1111-2222-3333-444444444444",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &app),
                ("client_secret", &secret),
                ("scope", STORAGE_SCOPE),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(description(&body).starts_with("AADSTS90002"), "{body}");

    let (status, body) = server
        .token_request(&tenant, &[("grant_type", "implicit"), ("client_id", &app)])
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap()),
        (400, "unsupported_grant_type")
    );

    let (status, body) =
        client_credentials(&server, &app, &secret, "https://example.com/.default").await;
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap()),
        (400, "invalid_scope")
    );

    let (status, body) = server
        .token_request(
            &tenant,
            &[
                ("grant_type", "password"),
                ("client_id", CLI_CLIENT_ID),
                ("username", &server.admin.username),
                ("password", "wrong"),
                ("scope", STORAGE_SCOPE),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(description(&body).starts_with("AADSTS50126"), "{body}");

    // A disabled application.
    let (status, _) = server
        .mgmt(
            Method::PATCH,
            &format!("/directory/servicePrincipals/{app}"),
            Some(&admin),
            Some(json!({ "accountEnabled": false })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = client_credentials(&server, &app, &secret, STORAGE_SCOPE).await;
    assert_eq!(status, 400);
    assert!(description(&body).starts_with("AADSTS7000112"), "{body}");
}

#[tokio::test]
async fn an_expired_secret_and_a_disabled_user_are_refused() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, _, _) = service_principal(&server, &admin, "app").await;
    let end = jiff::Timestamp::from_second(server.clock.now() + 3600)
        .unwrap()
        .to_string();
    let (status, reset) = server
        .mgmt(
            Method::POST,
            &format!("/directory/servicePrincipals/{app}/credentials/reset"),
            Some(&admin),
            Some(json!({ "endDate": end })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{reset}");
    let secret = reset["password"].as_str().unwrap();
    assert_eq!(
        client_credentials(&server, &app, secret, STORAGE_SCOPE)
            .await
            .0,
        200
    );
    server.clock.advance(2 * 3600);
    let (status, body) = client_credentials(&server, &app, secret, STORAGE_SCOPE).await;
    assert_eq!(status, 401);
    assert!(description(&body).starts_with("AADSTS7000222"), "{body}");

    let admin = server.admin_token().await.unwrap();
    user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let (status, _) = server
        .mgmt(
            Method::PATCH,
            &format!("/directory/users/{ALICE}"),
            Some(&admin),
            Some(json!({ "accountEnabled": false })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let err = server
        .user_token(ALICE, ALICE_PASSWORD, STORAGE_SCOPE)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AADSTS50057"), "{err}");
}

#[tokio::test]
async fn a_protected_endpoint_refuses_missing_tampered_unsigned_misaddressed_and_expired_tokens() {
    let server = TestServer::start().await.unwrap();
    let good = server.admin_token().await.unwrap();
    let me = |token: Option<String>| {
        let server = &server;
        async move {
            server
                .mgmt(Method::GET, "/directory/me", token.as_deref(), None)
                .await
                .unwrap()
        }
    };
    let (status, body) = me(Some(good.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userPrincipalName"], server.admin.username);

    let code = |body: &serde_json::Value| {
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let (status, body) = me(None).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (401, "AuthenticationFailed".into())
    );

    // Tampered: a claim changed after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims(&good);
    c["oid"] = json!("00000000-0000-0000-0000-000000000001");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    let (status, body) = me(Some(forged)).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (401, "InvalidAuthenticationToken".into())
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );

    // Flipped signature bit.
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 1;
    let (status, _) = me(Some(format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(sig)
    )))
    .await;
    assert_eq!(status, 401);

    // alg=none.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        parts[1]
    );
    let (status, body) = me(Some(none)).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (401, "InvalidAuthenticationToken".into())
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`none`"),
        "{body}"
    );

    // A storage token at the management API.
    let storage = server
        .user_token(
            &server.admin.username,
            &server.admin.password,
            STORAGE_SCOPE,
        )
        .await
        .unwrap();
    let (status, body) = me(Some(storage)).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (401, "InvalidAuthenticationTokenAudience".into())
    );

    // Expired: the clock moves past the token's lifetime and skew.
    server.clock.advance(2 * 3600);
    let (status, body) = me(Some(good)).await;
    assert_eq!(
        (status.as_u16(), code(&body)),
        (401, "ExpiredAuthenticationToken".into())
    );
}

#[tokio::test]
async fn a_token_of_tenant_a_reaches_nothing_of_tenant_b() {
    let server = TestServer::start().await.unwrap();
    let admin_a = server.admin_token().await.unwrap();
    let (status, b) = server
        .mgmt(
            Method::POST,
            "/admin/tenants",
            Some(&admin_a),
            Some(json!({ "domain": "fabrikam.local" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{b}");
    let tenant_b = b["tenant"].as_str().unwrap();
    let form = [
        ("grant_type", "password"),
        ("client_id", CLI_CLIENT_ID),
        ("username", b["username"].as_str().unwrap()),
        ("password", b["password"].as_str().unwrap()),
        ("scope", MANAGEMENT_SCOPE),
    ];
    let (status, reply) = server.token_request(tenant_b, &form).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    let admin_b = reply["access_token"].as_str().unwrap();
    assert_eq!(claims(admin_b)["tid"], tenant_b);

    // Tenant B's administrator (Owner of B's subscription) against tenant A's subscription.
    let path = format!(
        "/subscriptions/{}/resourceGroups/default?api-version=2021-04-01",
        server.admin.subscription
    );
    let (status, body) = server
        .mgmt(Method::GET, &path, Some(admin_b), None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "InvalidAuthenticationTokenTenant");
    let put = format!(
        "/subscriptions/{}/resourceGroups/default/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x?api-version=2023-01-31",
        server.admin.subscription
    );
    assert_eq!(
        server
            .mgmt(Method::PUT, &put, Some(admin_b), Some(json!({})))
            .await
            .unwrap()
            .0,
        401
    );
    // And the other way round; each still reaches its own.
    let path_b = format!(
        "/subscriptions/{}/resourceGroups/default?api-version=2021-04-01",
        b["subscription"].as_str().unwrap()
    );
    assert_eq!(
        server
            .mgmt(Method::GET, &path_b, Some(&admin_a), None)
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(
        server
            .mgmt(Method::GET, &path_b, Some(admin_b), None)
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        server
            .mgmt(Method::GET, &path, Some(&admin_a), None)
            .await
            .unwrap()
            .0,
        200
    );

    // A user of tenant A cannot sign in at tenant B's endpoint.
    let form = [
        ("grant_type", "password"),
        ("client_id", CLI_CLIENT_ID),
        ("username", server.admin.username.as_str()),
        ("password", server.admin.password.as_str()),
        ("scope", MANAGEMENT_SCOPE),
    ];
    assert_eq!(server.token_request(tenant_b, &form).await.unwrap().0, 400);
}

#[tokio::test]
async fn a_client_that_trickles_its_header_is_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = TestServer::start().await.unwrap();
    let address = server
        .info
        .identity
        .trim_start_matches("http://")
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // One header line a second, as a slow-loris client would, for up to 30 s.
    let mut closed = false;
    for n in 0..30 {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let line = format!("X-Trickle-{n}: 1\r\n");
        if stream.write_all(line.as_bytes()).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        // An answer before the header is complete (a 408), an end or an error: cut off.
        if tokio::time::timeout(std::time::Duration::from_millis(10), stream.read(&mut buf))
            .await
            .is_ok()
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "the connection was held for 30 s");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[tokio::test]
async fn wrong_passwords_lock_the_name_out_then_it_unlocks_after_a_minute() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let attempt = |password: &'static str, username: &'static str| {
        let server = &server;
        async move {
            let form = [
                ("grant_type", "password"),
                ("client_id", keyless_testkit::CLI_CLIENT_ID),
                ("username", username),
                ("password", password),
                ("scope", STORAGE_SCOPE),
            ];
            server
                .token_request(&server.admin.tenant, &form)
                .await
                .unwrap()
        }
    };
    // A guessing attack: ten wrong passwords, then the right one is refused too.
    for _ in 0..10 {
        let (status, body) = attempt("guess", ALICE).await;
        assert_eq!(status, 400);
        assert!(description(&body).starts_with("AADSTS50126"), "{body}");
    }
    let (status, body) = attempt(ALICE_PASSWORD, ALICE).await;
    assert_eq!(status, 400);
    assert!(description(&body).starts_with("AADSTS50053"), "{body}");
    // A name that does not exist locks the same way: the lockout tells nothing.
    for _ in 0..10 {
        attempt("guess", "nobody@keyless.local").await;
    }
    let (_, body) = attempt("guess", "nobody@keyless.local").await;
    assert!(description(&body).starts_with("AADSTS50053"), "{body}");
    // A minute later alice signs in again.
    server.clock.advance(61);
    let (status, body) = attempt(ALICE_PASSWORD, ALICE).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_token_endpoints_refuse_oversized_scopes_and_bodies() {
    let server = TestServer::start().await.unwrap();
    let url = format!(
        "{}/{}/oauth2/v2.0/devicecode",
        server.info.login, server.admin.tenant
    );
    let long = "x".repeat(3000);
    let form = [
        ("client_id", keyless_testkit::CLI_CLIENT_ID),
        ("scope", long.as_str()),
    ];
    let reply = server.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(reply.status(), 400);
    let huge = "x".repeat(1 << 20);
    let form = [
        ("client_id", keyless_testkit::CLI_CLIENT_ID),
        ("scope", huge.as_str()),
    ];
    let reply = server.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(reply.status(), 413);
    let (status, body) = server
        .token_request(
            &server.admin.tenant,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", "x"),
                ("scope", long.as_str()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(description(&body).starts_with("AADSTS70011"), "{body}");
}
