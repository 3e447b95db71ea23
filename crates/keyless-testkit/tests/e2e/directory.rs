//! Directory writes are governed by directory roles; resources by RBAC.

use reqwest::Method;
use serde_json::json;

use keyless_testkit::TestServer;

use crate::support::*;

#[tokio::test]
async fn only_directory_roles_may_change_the_directory() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let alice = user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let alice_token = server
        .user_token(ALICE, ALICE_PASSWORD, MANAGEMENT_SCOPE)
        .await
        .unwrap();

    // Alice reads her own profile but may not create users.
    let (status, me) = server
        .mgmt(Method::GET, "/directory/me", Some(&alice_token), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(me["id"], alice);
    let bob = json!({ "displayName": "Bob", "userPrincipalName": "bob@keyless.local", "password": "Bob-Passw0rd-123" });
    let (status, body) = server
        .mgmt(
            Method::POST,
            "/directory/users",
            Some(&alice_token),
            Some(bob.clone()),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "Authorization_RequestDenied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("User Administrator"),
        "{body}"
    );
    let (status, _) = server
        .mgmt(
            Method::POST,
            "/directory/servicePrincipals",
            Some(&alice_token),
            Some(json!({ "displayName": "x" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);

    // Granted User Administrator, she may; still not applications.
    let (status, _) = server
        .mgmt(
            Method::POST,
            "/directory/roles/User Administrator/members",
            Some(&admin),
            Some(json!({ "principal": ALICE })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let (status, body) = server
        .mgmt(
            Method::POST,
            "/directory/users",
            Some(&alice_token),
            Some(bob),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    let (status, _) = server
        .mgmt(
            Method::POST,
            "/directory/servicePrincipals",
            Some(&alice_token),
            Some(json!({ "displayName": "x" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 403);

    // Bad input names the field.
    let bad = json!({ "displayName": "C", "userPrincipalName": "carol@elsewhere.local", "password": "Carol-Passw0rd-1" });
    let (status, body) = server
        .mgmt(Method::POST, "/directory/users", Some(&admin), Some(bad))
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keyless.local"),
        "{body}"
    );
    let weak = json!({ "displayName": "C", "userPrincipalName": "carol@keyless.local", "password": "short" });
    assert_eq!(
        server
            .mgmt(Method::POST, "/directory/users", Some(&admin), Some(weak))
            .await
            .unwrap()
            .0,
        400
    );
    let unknown = json!({ "displayName": "C", "userPrincipalName": "carol@keyless.local", "password": "Carol-Passw0rd-1", "shoeSize": 9 });
    let (status, body) = server
        .mgmt(
            Method::POST,
            "/directory/users",
            Some(&admin),
            Some(unknown),
        )
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("shoeSize"),
        "{body}"
    );
}

#[tokio::test]
async fn deleting_a_user_removes_its_memberships_and_groups_refuse_cycles() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let (_, g1) = server
        .mgmt(
            Method::POST,
            "/directory/groups",
            Some(&admin),
            Some(json!({ "displayName": "g1" })),
        )
        .await
        .unwrap();
    let (_, g2) = server
        .mgmt(
            Method::POST,
            "/directory/groups",
            Some(&admin),
            Some(json!({ "displayName": "g2" })),
        )
        .await
        .unwrap();
    let add = |group: &str, member: &str| {
        let path = format!("/directory/groups/{group}/members");
        let body = json!({ "member": member });
        let (server, admin) = (&server, &admin);
        async move {
            server
                .mgmt(Method::POST, &path, Some(admin), Some(body))
                .await
                .unwrap()
                .0
        }
    };
    assert_eq!(add("g1", ALICE).await, 204);
    assert_eq!(add("g2", "g1").await, 204);
    assert_eq!(add("g1", "g2").await, 409, "a group may not contain itself");
    let (_, members) = server
        .mgmt(
            Method::GET,
            "/directory/groups/g1/members",
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(members["value"].as_array().unwrap().len(), 1);

    assert_eq!(
        server
            .mgmt(
                Method::DELETE,
                &format!("/directory/users/{ALICE}"),
                Some(&admin),
                None
            )
            .await
            .unwrap()
            .0,
        204
    );
    let (_, members) = server
        .mgmt(
            Method::GET,
            &format!("/directory/groups/{}/members", g1["id"].as_str().unwrap()),
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert!(members["value"].as_array().unwrap().is_empty());
    assert_eq!(
        server
            .mgmt(
                Method::GET,
                &format!("/directory/users/{ALICE}"),
                Some(&admin),
                None
            )
            .await
            .unwrap()
            .0,
        404
    );
    let _ = g2;
}

#[tokio::test]
async fn user_assigned_identities_are_resources_authorized_by_rbac() {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let sub = server.admin.subscription.clone();
    let path = format!(
        "/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.ManagedIdentity/userAssignedIdentities/trainer?api-version=2023-01-31"
    );

    let (status, uai) = server
        .mgmt(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "location": "local" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{uai}");
    let client_id = uai["properties"]["clientId"].as_str().unwrap().to_owned();
    let principal_id = uai["properties"]["principalId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(uai["properties"]["tenantId"], server.admin.tenant);
    let (status, again) = server
        .mgmt(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "location": "local" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        again["properties"]["clientId"],
        client_id.as_str(),
        "an update keeps the identity"
    );

    // The identity is a directory object with its resource id, and cannot sign in.
    let (_, sp) = server
        .mgmt(
            Method::GET,
            &format!("/directory/servicePrincipals/{client_id}"),
            Some(&admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(sp["id"], principal_id);
    assert_eq!(sp["servicePrincipalType"], "ManagedIdentity");
    let (status, body) = client_credentials(&server, &client_id, "anything", STORAGE_SCOPE).await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("managed identit"),
        "{body}"
    );

    // A user without a role is refused with ARM's message naming the action and scope.
    user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    let alice = server
        .user_token(ALICE, ALICE_PASSWORD, MANAGEMENT_SCOPE)
        .await
        .unwrap();
    let (status, body) = server
        .mgmt(Method::GET, &path, Some(&alice), None)
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "AuthorizationFailed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("Microsoft.ManagedIdentity/userAssignedIdentities/read")
            && message.contains(ALICE),
        "{message}"
    );

    // Missing api-version and bad names are refused before anything changes.
    let no_version = path.split('?').next().unwrap();
    let (status, body) = server
        .mgmt(Method::GET, no_version, Some(&admin), None)
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str().unwrap()),
        (400, "MissingApiVersionParameter")
    );
    let bad = path.replace("trainer", "x");
    assert_eq!(
        server
            .mgmt(Method::PUT, &bad, Some(&admin), Some(json!({})))
            .await
            .unwrap()
            .0,
        400
    );

    assert_eq!(
        server
            .mgmt(Method::DELETE, &path, Some(&admin), None)
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        server
            .mgmt(Method::GET, &path, Some(&admin), None)
            .await
            .unwrap()
            .0,
        404
    );
    assert_eq!(
        server
            .mgmt(
                Method::GET,
                &format!("/directory/servicePrincipals/{principal_id}"),
                Some(&admin),
                None
            )
            .await
            .unwrap()
            .0,
        404
    );
}
