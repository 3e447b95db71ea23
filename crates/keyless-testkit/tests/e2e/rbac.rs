//! Role assignments and role definitions on the management listener, and `access explain`.

use reqwest::Method;
use serde_json::{Value, json};

use keyless_testkit::{CLI_CLIENT_ID, TestServer};

use crate::support::*;

const READER: &str = "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const BLOB_READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";
const V: &str = "api-version=2022-04-01";

struct Fixture {
    server: TestServer,
    admin: String,
    sub: String,
    alice: String,
}

async fn fixture() -> Fixture {
    let server = TestServer::start().await.unwrap();
    let admin = server.admin_token().await.unwrap();
    let sub = server.admin.subscription.clone();
    let alice = user(&server, &admin, ALICE, ALICE_PASSWORD).await;
    for rg in ["data", "other"] {
        let (status, _) = server
            .mgmt(
                Method::PUT,
                &format!("/subscriptions/{sub}/resourceGroups/{rg}?api-version=2021-04-01"),
                Some(&admin),
                Some(json!({ "location": "local" })),
            )
            .await
            .unwrap();
        assert_eq!(status, 201);
    }
    Fixture {
        server,
        admin,
        sub,
        alice,
    }
}

impl Fixture {
    fn rg(&self, name: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{name}", self.sub)
    }

    async fn assign(
        &self,
        token: &str,
        scope: &str,
        role: &str,
        principal: &str,
    ) -> (reqwest::StatusCode, Value) {
        let name = uuid_like();
        let body = json!({ "properties": { "roleDefinitionId": format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{role}", self.sub), "principalId": principal } });
        self.server
            .mgmt(
                Method::PUT,
                &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?{V}"),
                Some(token),
                Some(body),
            )
            .await
            .unwrap()
    }

    async fn explain(&self, token: &str, principal: &str, data_action: &str, scope: &str) -> Value {
        let body = json!({ "principal": principal, "dataAction": data_action, "scope": scope });
        let (status, answer) = self
            .server
            .mgmt(Method::POST, "/access/explain", Some(token), Some(body))
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
        answer
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let hex = format!("{t:032x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[tokio::test]
async fn an_assignment_grants_below_its_scope_is_unique_and_can_be_removed() {
    let f = fixture().await;
    let container = format!(
        "{}/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/census",
        f.rg("data")
    );

    let before = f.explain(&f.admin, ALICE, BLOB_READ, &container).await;
    assert_eq!(before["allowed"], false);
    assert!(
        before["explanation"]
            .as_str()
            .unwrap()
            .contains("Storage Blob Data Reader"),
        "{before}"
    );

    let (status, created) = f.assign(&f.admin, &f.rg("data"), READER, &f.alice).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["principalType"], "User");
    let (status, again) = f.assign(&f.admin, &f.rg("data"), READER, &f.alice).await;
    assert_eq!(
        (status.as_u16(), again["error"]["code"].as_str().unwrap()),
        (409, "RoleAssignmentExists")
    );

    let after = f.explain(&f.admin, ALICE, BLOB_READ, &container).await;
    assert_eq!(after["allowed"], true, "{after}");
    assert_eq!(after["grantedBy"]["roleAssignment"], created["name"]);
    let elsewhere = f.explain(&f.admin, ALICE, BLOB_READ, &f.rg("other")).await;
    assert_eq!(elsewhere["allowed"], false);
    let write = f
        .explain(
            &f.admin,
            ALICE,
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            &container,
        )
        .await;
    assert_eq!(write["allowed"], false);

    // Alice may explain her own access, not somebody else's.
    let alice_token = f
        .server
        .user_token(ALICE, ALICE_PASSWORD, MANAGEMENT_SCOPE)
        .await
        .unwrap();
    assert_eq!(
        f.explain(&alice_token, ALICE, BLOB_READ, &container).await["allowed"],
        true
    );
    let (status, _) = f
        .server
        .mgmt(Method::POST, "/access/explain", Some(&alice_token), Some(json!({ "principal": f.server.admin.username, "dataAction": BLOB_READ, "scope": container })))
        .await
        .unwrap();
    assert_eq!(status, 403);

    // Listing: at the subscription everything below shows; filters narrow it.
    let (_, list) = f
        .server
        .mgmt(
            Method::GET,
            &format!(
                "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?{V}",
                f.sub
            ),
            Some(&f.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        list["value"].as_array().unwrap().len(),
        2,
        "the admin's Owner and Alice's reader"
    );
    let filtered = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?{V}&$filter=assignedTo('{}')",
        f.sub, f.alice
    );
    let (_, list) = f
        .server
        .mgmt(Method::GET, &filtered, Some(&f.admin), None)
        .await
        .unwrap();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);

    let (status, _) = f
        .server
        .mgmt(
            Method::DELETE,
            &format!("{}?{V}", created["id"].as_str().unwrap()),
            Some(&f.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        f.explain(&f.admin, ALICE, BLOB_READ, &container).await["allowed"],
        false
    );
}

#[tokio::test]
async fn the_management_api_refuses_callers_without_a_token_the_audience_or_the_action() {
    let f = fixture().await;
    let path = format!(
        "{}/providers/Microsoft.Authorization/roleAssignments/{}?{V}",
        f.rg("data"),
        uuid_like()
    );
    let body = json!({ "properties": { "roleDefinitionId": READER, "principalId": f.alice } });

    let (status, reply) = f
        .server
        .mgmt(Method::PUT, &path, None, Some(body.clone()))
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), reply["error"]["code"].as_str().unwrap()),
        (401, "AuthenticationFailed")
    );

    let storage = f
        .server
        .user_token(
            &f.server.admin.username,
            &f.server.admin.password,
            STORAGE_SCOPE,
        )
        .await
        .unwrap();
    let (status, reply) = f
        .server
        .mgmt(Method::PUT, &path, Some(&storage), Some(body.clone()))
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), reply["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationTokenAudience")
    );

    let alice = f
        .server
        .user_token(ALICE, ALICE_PASSWORD, MANAGEMENT_SCOPE)
        .await
        .unwrap();
    let (status, reply) = f
        .server
        .mgmt(Method::PUT, &path, Some(&alice), Some(body))
        .await
        .unwrap();
    assert_eq!(status, 403);
    assert_eq!(reply["error"]["code"], "AuthorizationFailed");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(ALICE) && message.contains(&f.alice),
        "{message}"
    );
    assert!(
        message.contains("Microsoft.Authorization/roleAssignments/write")
            && message.contains(&f.rg("data")),
        "{message}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_the_reason() {
    let f = fixture().await;
    let rg = f.rg("data");
    let put = |path: String, body: Value| {
        let f = &f;
        async move {
            f.server
                .mgmt(Method::PUT, &path, Some(&f.admin), Some(body))
                .await
                .unwrap()
        }
    };
    let body = |role: &str, principal: &str| json!({ "properties": { "roleDefinitionId": role, "principalId": principal } });
    let code = |r: &Value| r["error"]["code"].as_str().unwrap_or_default().to_owned();

    let (s, r) = put(
        format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignments/{}?{V}",
            uuid_like()
        ),
        body("Shoe Polisher", &f.alice),
    )
    .await;
    assert_eq!(
        (s.as_u16(), code(&r)),
        (400, "RoleDefinitionDoesNotExist".into())
    );
    let (s, r) = put(
        format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignments/{}?{V}",
            uuid_like()
        ),
        body(READER, "00000000-1111-4111-8111-000000000000"),
    )
    .await;
    assert_eq!((s.as_u16(), code(&r)), (400, "PrincipalNotFound".into()));
    let (s, r) = put(
        format!("{rg}/providers/Microsoft.Authorization/roleAssignments/not-a-guid?{V}"),
        body(READER, &f.alice),
    )
    .await;
    assert_eq!(
        (s.as_u16(), code(&r)),
        (400, "InvalidRoleAssignmentId".into())
    );
    let (s, r) = put(
        format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignments/{}",
            uuid_like()
        ),
        body(READER, &f.alice),
    )
    .await;
    assert_eq!(
        (s.as_u16(), code(&r)),
        (400, "MissingApiVersionParameter".into())
    );
    let (s, r) = put(format!("/subscriptions/{}/resourceGroups/nope/providers/Microsoft.Authorization/roleAssignments/{}?{V}", f.sub, uuid_like()), body(READER, &f.alice)).await;
    assert_eq!(
        (s.as_u16(), code(&r)),
        (404, "ResourceGroupNotFound".into())
    );
    let (s, r) = put(
        format!(
            "/tenants/x/providers/Microsoft.Authorization/roleAssignments/{}?{V}",
            uuid_like()
        ),
        body(READER, &f.alice),
    )
    .await;
    assert_eq!((s.as_u16(), code(&r)), (400, "InvalidScope".into()));
    let (s, r) = put(
        format!(
            "{rg}/providers/Microsoft.Authorization/roleAssignments/{}?{V}",
            uuid_like()
        ),
        json!({ "properties": { "principalId": f.alice } }),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("roleDefinitionId"),
        "{r}"
    );
}

#[tokio::test]
async fn group_assignments_reach_members_and_inheritance_follows_the_scope_tree() {
    let f = fixture().await;
    let (_, team) = f
        .server
        .mgmt(
            Method::POST,
            "/directory/groups",
            Some(&f.admin),
            Some(json!({ "displayName": "team" })),
        )
        .await
        .unwrap();
    let (_, outer) = f
        .server
        .mgmt(
            Method::POST,
            "/directory/groups",
            Some(&f.admin),
            Some(json!({ "displayName": "outer" })),
        )
        .await
        .unwrap();
    for (group, member) in [("team", ALICE), ("outer", "team")] {
        let path = format!("/directory/groups/{group}/members");
        assert_eq!(
            f.server
                .mgmt(
                    Method::POST,
                    &path,
                    Some(&f.admin),
                    Some(json!({ "member": member }))
                )
                .await
                .unwrap()
                .0,
            204
        );
    }
    let (status, _) = f
        .assign(
            &f.admin,
            &f.rg("data"),
            CONTRIBUTOR,
            outer["id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(status, 201);

    let alice = f
        .server
        .user_token(ALICE, ALICE_PASSWORD, MANAGEMENT_SCOPE)
        .await
        .unwrap();
    let identity = |rg: &str| {
        format!(
            "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/job-identity?api-version=2023-01-31",
            f.rg(rg)
        )
    };
    assert_eq!(
        f.server
            .mgmt(
                Method::PUT,
                &identity("data"),
                Some(&alice),
                Some(json!({}))
            )
            .await
            .unwrap()
            .0,
        201,
        "Contributor through two groups"
    );
    assert_eq!(
        f.server
            .mgmt(
                Method::PUT,
                &identity("other"),
                Some(&alice),
                Some(json!({}))
            )
            .await
            .unwrap()
            .0,
        403,
        "not in a sibling group"
    );
    // Contributor cannot hand out roles.
    let (status, _) = f.assign(&alice, &f.rg("data"), READER, &f.alice).await;
    assert_eq!(status, 403);

    // Leaving the group takes the access away at once, with the same token.
    let path = format!("/directory/groups/team/members/{ALICE}");
    assert_eq!(
        f.server
            .mgmt(Method::DELETE, &path, Some(&f.admin), None)
            .await
            .unwrap()
            .0,
        204
    );
    assert_eq!(
        f.server
            .mgmt(Method::GET, &identity("data"), Some(&alice), None)
            .await
            .unwrap()
            .0,
        403
    );
    let _ = team;
}

#[tokio::test]
async fn deleting_a_group_or_a_principal_deletes_their_assignments() {
    let f = fixture().await;
    let (_, sp) = f
        .server
        .mgmt(
            Method::POST,
            "/directory/servicePrincipals",
            Some(&f.admin),
            Some(json!({ "displayName": "etl" })),
        )
        .await
        .unwrap();
    let sp_id = sp["objectId"].as_str().unwrap();
    assert_eq!(
        f.assign(&f.admin, &f.rg("data"), READER, &f.alice).await.0,
        201
    );
    assert_eq!(
        f.assign(&f.admin, &f.rg("other"), READER, sp_id).await.0,
        201
    );
    let uai = format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/in-data?api-version=2023-01-31",
        f.rg("data")
    );
    assert_eq!(
        f.server
            .mgmt(Method::PUT, &uai, Some(&f.admin), Some(json!({})))
            .await
            .unwrap()
            .0,
        201
    );
    let count = || async {
        let (_, list) = f
            .server
            .mgmt(
                Method::GET,
                &format!(
                    "/subscriptions/{}/providers/Microsoft.Authorization/roleAssignments?{V}",
                    f.sub
                ),
                Some(&f.admin),
                None,
            )
            .await
            .unwrap();
        list["value"].as_array().unwrap().len()
    };
    assert_eq!(count().await, 3);

    let (status, _) = f
        .server
        .mgmt(
            Method::DELETE,
            &format!("{}?api-version=2021-04-01", f.rg("data")),
            Some(&f.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(count().await, 2);
    assert_eq!(
        f.server
            .mgmt(
                Method::GET,
                &format!("{}?api-version=2021-04-01", f.rg("data")),
                Some(&f.admin),
                None
            )
            .await
            .unwrap()
            .0,
        404
    );
    let (status, _) = f
        .server
        .mgmt(
            Method::GET,
            "/directory/servicePrincipals/in-data",
            Some(&f.admin),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 404, "the group's identity went with it");

    assert_eq!(
        f.server
            .mgmt(
                Method::DELETE,
                &format!("/directory/servicePrincipals/{sp_id}"),
                Some(&f.admin),
                None
            )
            .await
            .unwrap()
            .0,
        204
    );
    assert_eq!(count().await, 1, "only the admin's Owner is left");
}

#[tokio::test]
async fn custom_roles_grant_their_actions_within_their_assignable_scopes() {
    let f = fixture().await;
    let id = uuid_like();
    let definition = json!({ "properties": {
        "roleName": "Identity Reader",
        "description": "reads identities",
        "permissions": [{ "actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/read"] }],
        "assignableScopes": [f.rg("data")],
    }});
    let path = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{id}?{V}",
        f.sub
    );
    let (status, created) = f
        .server
        .mgmt(Method::PUT, &path, Some(&f.admin), Some(definition.clone()))
        .await
        .unwrap();
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["properties"]["type"], "CustomRole");
    let clash = json!({ "properties": { "roleName": "Reader", "permissions": [{}], "assignableScopes": [f.rg("data")] } });
    let other = format!(
        "/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions/{}?{V}",
        f.sub,
        uuid_like()
    );
    assert_eq!(
        f.server
            .mgmt(Method::PUT, &other, Some(&f.admin), Some(clash))
            .await
            .unwrap()
            .0,
        409
    );

    let (status, reply) = f
        .assign(
            &f.admin,
            &format!("/subscriptions/{}", f.sub),
            &id,
            &f.alice,
        )
        .await;
    assert_eq!(
        (status.as_u16(), reply["error"]["code"].as_str().unwrap()),
        (400, "InvalidRoleAssignmentScope")
    );
    assert_eq!(
        f.assign(&f.admin, &f.rg("data"), &id, &f.alice).await.0,
        201
    );

    let uai = format!(
        "{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/seen?api-version=2023-01-31",
        f.rg("data")
    );
    assert_eq!(
        f.server
            .mgmt(Method::PUT, &uai, Some(&f.admin), Some(json!({})))
            .await
            .unwrap()
            .0,
        201
    );
    let alice = f
        .server
        .user_token(ALICE, ALICE_PASSWORD, MANAGEMENT_SCOPE)
        .await
        .unwrap();
    assert_eq!(
        f.server
            .mgmt(Method::GET, &uai, Some(&alice), None)
            .await
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        f.server
            .mgmt(Method::PUT, &uai, Some(&alice), Some(json!({})))
            .await
            .unwrap()
            .0,
        403
    );

    let (_, list) = f
        .server
        .mgmt(Method::GET, &format!("/subscriptions/{}/providers/Microsoft.Authorization/roleDefinitions?{V}&$filter=roleName eq 'Identity Reader'", f.sub), Some(&f.admin), None)
        .await
        .unwrap();
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tenants_do_not_reach_each_others_assignments() {
    let f = fixture().await;
    let (_, b) = f
        .server
        .mgmt(
            Method::POST,
            "/admin/tenants",
            Some(&f.admin),
            Some(json!({ "domain": "b.local" })),
        )
        .await
        .unwrap();
    let form = [
        ("grant_type", "password"),
        ("client_id", CLI_CLIENT_ID),
        ("username", b["username"].as_str().unwrap()),
        ("password", b["password"].as_str().unwrap()),
        ("scope", MANAGEMENT_SCOPE),
    ];
    let (_, reply) = f
        .server
        .token_request(b["tenant"].as_str().unwrap(), &form)
        .await
        .unwrap();
    let admin_b = reply["access_token"].as_str().unwrap().to_owned();
    let (_, me_b) = f
        .server
        .mgmt(Method::GET, "/directory/me", Some(&admin_b), None)
        .await
        .unwrap();

    // B's administrator cannot assign in A's tenant; A cannot assign B's principal.
    let (status, reply) = f.assign(&admin_b, &f.rg("data"), READER, &f.alice).await;
    assert_eq!(
        (status.as_u16(), reply["error"]["code"].as_str().unwrap()),
        (401, "InvalidAuthenticationTokenTenant")
    );
    let (status, reply) = f
        .assign(
            &f.admin,
            &f.rg("data"),
            READER,
            me_b["id"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        (status.as_u16(), reply["error"]["code"].as_str().unwrap()),
        (400, "PrincipalNotFound")
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_and_lists_the_operations() {
    let f = fixture().await;
    let doc: Value = f
        .server
        .http
        .get(format!("{}/openapi.json", f.server.info.management))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/directory/users",
        "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}",
        "/{scope}/providers/Microsoft.Authorization/roleAssignments/{roleAssignmentName}",
        "/access/explain",
    ] {
        assert!(paths.contains_key(p), "{p}");
    }
    // Every documented GET without parameters is answered by a real handler.
    for (p, ops) in paths {
        if p.contains('{') || ops.get("get").is_none() {
            continue;
        }
        let (status, body) = f
            .server
            .mgmt(
                Method::GET,
                &format!("{p}?api-version=2022-04-01"),
                Some(&f.admin),
                None,
            )
            .await
            .unwrap();
        assert!(status.is_success(), "{p}: {status} {body}");
    }
}
