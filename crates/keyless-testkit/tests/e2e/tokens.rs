//! Grants of the token service and the shape of what they issue.

use reqwest::Method;
use serde_json::json;

use keyless_testkit::{CLI_CLIENT_ID, TestServer};

use crate::support::*;

#[tokio::test]
async fn client_credentials_issue_entra_shaped_tokens_that_verify_at_the_jwks() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, oid, secret) = service_principal(&server, &admin, "reader-app").await;

    let (status, body) = client_credentials(&server, &app, &secret, STORAGE_SCOPE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let lifetime = body["expires_in"].as_i64().unwrap();
    assert!(
        (3600..=5400).contains(&lifetime),
        "Entra-like lifetime, got {lifetime}"
    );
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());
    let token = body["access_token"].as_str().unwrap();

    let c = claims(token);
    let tid = &server.admin.tenant;
    assert_eq!(c["aud"], "https://storage.azure.com");
    assert_eq!(c["iss"], format!("{}/{tid}/v2.0", server.info.login));
    assert_eq!(c["tid"], *tid);
    assert_eq!(c["oid"], oid);
    assert_eq!(c["sub"], oid);
    assert_eq!(c["appid"], app);
    assert_eq!(c["azp"], app);
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["appidacr"], "1");
    assert!(c.get("upn").is_none());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        lifetime
    );

    // The key that signed it is published in the tenant's JWKS, found through discovery.
    let discovery: serde_json::Value = server
        .http
        .get(format!(
            "{}/{tid}/v2.0/.well-known/openid-configuration",
            server.info.login
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], c["iss"]);
    assert_eq!(
        discovery["token_endpoint"],
        format!("{}/{tid}/oauth2/v2.0/token", server.info.login)
    );
    let jwks: serde_json::Value = server
        .http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = header(token)["kid"].clone();
    assert_eq!(header(token)["alg"], "RS256");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("signing key in JWKS");
    assert_eq!(key["kty"], "RSA");
    assert_eq!(key["e"], "AQAB");
}

#[tokio::test]
async fn v1_endpoint_takes_a_resource_and_answers_with_expires_on() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, _, secret) = service_principal(&server, &admin, "v1-app").await;
    let url = format!("{}/{}/oauth2/token", server.info.login, server.admin.tenant);
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", &app),
        ("client_secret", &secret),
        ("resource", "https://vault.azure.net"),
    ];
    let body: serde_json::Value = server
        .http
        .post(url)
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["resource"], "https://vault.azure.net");
    let expires_on: i64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        expires_on,
        claims(body["access_token"].as_str().unwrap())["exp"]
            .as_i64()
            .unwrap()
    );
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["aud"],
        "https://vault.azure.net"
    );
}

#[tokio::test]
async fn password_sign_in_gives_user_claims_an_id_token_and_a_single_use_refresh_token() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let alice = user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let (_, group) = server
        .mgmt(
            Method::POST,
            "/directory/groups",
            Some(&admin),
            Some(json!({ "displayName": "scientists" })),
        )
        .await
        .unwrap();
    let (_, outer) = server
        .mgmt(
            Method::POST,
            "/directory/groups",
            Some(&admin),
            Some(json!({ "displayName": "staff" })),
        )
        .await
        .unwrap();
    let add = |g: &serde_json::Value, m: &str| {
        let path = format!("/directory/groups/{}/members", g["id"].as_str().unwrap());
        let body = json!({ "member": m });
        let server = &server;
        let admin = &admin;
        async move {
            server
                .mgmt(Method::POST, &path, Some(admin), Some(body))
                .await
                .unwrap()
                .0
        }
    };
    assert_eq!(add(&group, ALICE).await, 204);
    assert_eq!(add(&outer, group["id"].as_str().unwrap()).await, 204);

    let form = [
        ("grant_type", "password"),
        ("client_id", CLI_CLIENT_ID),
        ("username", ALICE),
        ("password", ALICE_PASSWORD),
        (
            "scope",
            "https://storage.azure.com/.default openid profile offline_access",
        ),
        ("client_info", "1"),
    ];
    let (status, body) = server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["oid"], alice);
    assert_eq!(c["upn"], ALICE);
    assert_eq!(c["idtyp"], "user");
    assert_eq!(c["appid"], CLI_CLIENT_ID);
    assert_eq!(c["scp"], "user_impersonation");
    let groups: Vec<&str> = c["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        groups.contains(&group["id"].as_str().unwrap())
            && groups.contains(&outer["id"].as_str().unwrap()),
        "nested groups: {groups:?}"
    );
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["aud"], CLI_CLIENT_ID);
    assert_eq!(id["preferred_username"], ALICE);
    assert!(body["client_info"].is_string());

    let refresh = body["refresh_token"].as_str().unwrap();
    let again = [
        ("grant_type", "refresh_token"),
        ("client_id", CLI_CLIENT_ID),
        ("refresh_token", refresh),
        ("scope", MANAGEMENT_SCOPE),
    ];
    let (status, renewed) = server
        .token_request(&server.admin.tenant, &again)
        .await
        .unwrap();
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(
        claims(renewed["access_token"].as_str().unwrap())["aud"],
        "https://management.azure.com/"
    );
    assert_ne!(
        renewed["refresh_token"], body["refresh_token"],
        "refresh tokens rotate"
    );
    let (status, replay) = server
        .token_request(&server.admin.tenant, &again)
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert_eq!(replay["error"], "invalid_grant");
}

#[tokio::test]
async fn a_federated_assertion_from_keyless_signs_in_its_service_principal() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, oid, _) = service_principal(&server, &admin, "workload").await;
    let issuer = format!("{}/{}/v2.0", server.info.login, server.admin.tenant);
    let credential =
        json!({ "name": "ci", "issuer": issuer, "subject": "system:serviceaccount:ml:trainer" });
    let (status, body) = server
        .mgmt(
            Method::POST,
            &format!("/directory/servicePrincipals/{app}/federatedCredentials"),
            Some(&admin),
            Some(credential),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["audiences"], json!(["api://AzureADTokenExchange"]));

    let mint = |subject: &str| {
        let path = format!("/directory/servicePrincipals/{app}/federatedTokens");
        let body = json!({ "subject": subject });
        let (server, admin) = (&server, &admin);
        async move {
            server
                .mgmt(Method::POST, &path, Some(admin), Some(body))
                .await
                .unwrap()
                .1["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let exchange = |assertion: String| {
        let (server, app) = (&server, &app);
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                ("client_id", app.as_str()),
                ("client_assertion", assertion.as_str()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("scope", STORAGE_SCOPE),
            ];
            server
                .token_request(&server.admin.tenant, &form)
                .await
                .unwrap()
        }
    };

    let (status, body) = exchange(mint("system:serviceaccount:ml:trainer").await).await;
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["oid"], oid);
    assert_eq!(c["appidacr"], "2");

    let (status, body) = exchange(mint("system:serviceaccount:ml:other").await).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700213"),
        "{body}"
    );

    // A keyless access token is not a federated assertion: wrong audience.
    let (status, body) = exchange(admin.clone()).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700213")
            || body["error_description"]
                .as_str()
                .unwrap()
                .starts_with("AADSTS700212"),
        "{body}"
    );
}

#[tokio::test]
async fn federated_assertions_of_unknown_issuers_or_audiences_are_refused() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let (app, _, _) = service_principal(&server, &admin, "workload").await;
    let issuer = format!("{}/{}/v2.0", server.info.login, server.admin.tenant);
    let credential =
        json!({ "name": "ci", "issuer": issuer, "subject": "job", "audiences": ["api://other"] });
    let path = format!("/directory/servicePrincipals/{app}/federatedCredentials");
    assert_eq!(
        server
            .mgmt(Method::POST, &path, Some(&admin), Some(credential))
            .await
            .unwrap()
            .0,
        201
    );
    let (_, minted) = server
        .mgmt(
            Method::POST,
            &format!("/directory/servicePrincipals/{app}/federatedTokens"),
            Some(&admin),
            Some(json!({ "subject": "job" })),
        )
        .await
        .unwrap();
    let form = |assertion: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", app.clone()),
            ("client_assertion", assertion.to_owned()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
            ),
            ("scope", STORAGE_SCOPE.to_owned()),
        ]
    };
    let send = |f: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .token_request(&server.admin.tenant, &f)
                .await
                .unwrap()
        }
    };
    // The token audience is api://AzureADTokenExchange, the credential wants api://other.
    let (status, body) = send(form(minted["token"].as_str().unwrap())).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700212"),
        "{body}"
    );

    // Another issuer altogether: a token of a second tenant.
    let (_, other) = server
        .mgmt(
            Method::POST,
            "/admin/tenants",
            Some(&admin),
            Some(json!({ "domain": "other.local" })),
        )
        .await
        .unwrap();
    let other_admin = server
        .token_request(
            other["tenant"].as_str().unwrap(),
            &[
                ("grant_type", "password"),
                ("client_id", CLI_CLIENT_ID),
                ("username", other["username"].as_str().unwrap()),
                ("password", other["password"].as_str().unwrap()),
                ("scope", STORAGE_SCOPE),
            ],
        )
        .await
        .unwrap()
        .1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = send(form(&other_admin)).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS700211"),
        "{body}"
    );
}

#[tokio::test]
async fn on_behalf_of_exchanges_a_users_token_for_another_resource() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let alice = user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let (app, _, secret) = service_principal(&server, &admin, "middle-tier").await;
    let for_app = server
        .user_token(ALICE, ALICE_PASSWORD, &format!("api://{app}/.default"))
        .await
        .unwrap();
    assert_eq!(claims(&for_app)["aud"], format!("api://{app}"));

    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("requested_token_use", "on_behalf_of"),
        ("client_id", app.as_str()),
        ("client_secret", secret.as_str()),
        ("assertion", for_app.as_str()),
        ("scope", STORAGE_SCOPE),
    ];
    let (status, body) = server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["oid"], alice);
    assert_eq!(c["appid"], app);
    assert_eq!(c["aud"], "https://storage.azure.com");

    // A token for another audience is not accepted as the assertion.
    let storage = server
        .user_token(ALICE, ALICE_PASSWORD, STORAGE_SCOPE)
        .await
        .unwrap();
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("requested_token_use", "on_behalf_of"),
        ("client_id", app.as_str()),
        ("client_secret", secret.as_str()),
        ("assertion", storage.as_str()),
        ("scope", STORAGE_SCOPE),
    ];
    let (status, body) = server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS50013"),
        "{body}"
    );
}

#[tokio::test]
async fn a_refresh_token_shown_to_another_client_is_refused_and_not_spent() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let form = [
        ("grant_type", "password"),
        ("client_id", CLI_CLIENT_ID),
        ("username", ALICE),
        ("password", ALICE_PASSWORD),
        ("scope", "https://storage.azure.com/.default offline_access"),
    ];
    let (status, body) = server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap();
    // Another public client (Azure PowerShell's id) presents alice's refresh token.
    let stolen = [
        ("grant_type", "refresh_token"),
        ("client_id", "1950a258-227b-4e31-a9cf-717495945fc2"),
        ("refresh_token", refresh),
        ("scope", STORAGE_SCOPE),
    ];
    let (status, refused) = server
        .token_request(&server.admin.tenant, &stolen)
        .await
        .unwrap();
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"], "invalid_grant");
    // The token's own client still redeems it.
    let own = [
        ("grant_type", "refresh_token"),
        ("client_id", CLI_CLIENT_ID),
        ("refresh_token", refresh),
        ("scope", STORAGE_SCOPE),
    ];
    let (status, renewed) = server
        .token_request(&server.admin.tenant, &own)
        .await
        .unwrap();
    assert_eq!(status, 200, "{renewed}");
}

#[tokio::test]
async fn a_confidential_applications_id_without_its_secret_cannot_sign_a_user_in() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let (app, _, secret) = service_principal(&server, &admin, "confidential").await;
    let mut form = vec![
        ("grant_type", "password"),
        ("client_id", app.as_str()),
        ("username", ALICE),
        ("password", ALICE_PASSWORD),
        ("scope", STORAGE_SCOPE),
    ];
    let (status, body) = server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS7000218"),
        "{body}"
    );
    // With its secret, the application signs the user in, and tokens name it.
    form.push(("client_secret", secret.as_str()));
    let (status, body) = server
        .token_request(&server.admin.tenant, &form)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["appid"], app);
}
