//! Device-code sign-in.

use keyless_testkit::{CLI_CLIENT_ID, TestServer};

use crate::support::*;

#[tokio::test]
async fn a_device_code_is_pending_until_a_person_approves_it() {
    let server = TestServer::start().await.unwrap();
    let url = format!(
        "{}/{}/oauth2/v2.0/devicecode",
        server.info.login, server.admin.tenant
    );
    let start: serde_json::Value = server
        .http
        .post(url)
        .form(&[
            ("client_id", CLI_CLIENT_ID),
            (
                "scope",
                "https://management.azure.com/.default offline_access",
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = start["device_code"].as_str().unwrap();
    let user_code = start["user_code"].as_str().unwrap();
    assert!(start["message"].as_str().unwrap().contains(user_code));
    assert_eq!(
        start["verification_uri"],
        format!("{}/devicelogin", server.info.login)
    );

    let poll = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
        ("client_id", CLI_CLIENT_ID),
        ("device_code", device_code),
    ];
    let (status, body) = server
        .token_request(&server.admin.tenant, &poll)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"].as_str().unwrap()),
        (400, "authorization_pending")
    );

    let page = format!("{}/devicelogin", server.info.login);
    let wrong = [
        ("user_code", user_code),
        ("username", server.admin.username.as_str()),
        ("password", "nope"),
    ];
    assert_eq!(
        server
            .http
            .post(&page)
            .form(&wrong)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let right = [
        ("user_code", user_code),
        ("username", server.admin.username.as_str()),
        ("password", server.admin.password.as_str()),
    ];
    let approved = server.http.post(&page).form(&right).send().await.unwrap();
    assert_eq!(approved.status(), 200);

    let (status, body) = server
        .token_request(&server.admin.tenant, &poll)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["upn"],
        server.admin.username
    );
    assert!(body["refresh_token"].is_string());
    let (status, _) = server
        .token_request(&server.admin.tenant, &poll)
        .await
        .unwrap();
    assert_eq!(status, 400, "a device code is redeemed once");
}
