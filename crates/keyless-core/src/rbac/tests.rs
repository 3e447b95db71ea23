use super::*;
use crate::TenantId;

/// Properties every set of assignments keeps, checked on random ones.
mod properties;

const SB: &str = "Microsoft.Storage/storageAccounts/blobServices";
const ML: &str = "Microsoft.MachineLearningServices/workspaces";
const KV: &str = "Microsoft.KeyVault/vaults";

/// Role, `A` (action) or `D` (data action), operation, expected: written from the
/// Azure built-in roles reference, one line per documented fact.
fn documented() -> Vec<(&'static str, char, String, bool)> {
    let rows: Vec<(&str, char, String, bool)> = vec![
        (
            "Owner",
            'A',
            "Microsoft.Authorization/roleAssignments/write".into(),
            true,
        ),
        (
            "Owner",
            'A',
            "Microsoft.Storage/storageAccounts/listKeys/action".into(),
            true,
        ),
        ("Owner", 'D', format!("{SB}/containers/blobs/read"), false),
        (
            "Contributor",
            'A',
            "Microsoft.Authorization/roleAssignments/write".into(),
            false,
        ),
        (
            "Contributor",
            'A',
            "Microsoft.Authorization/roleAssignments/delete".into(),
            false,
        ),
        (
            "Contributor",
            'A',
            "Microsoft.Authorization/roleAssignments/read".into(),
            true,
        ),
        (
            "Contributor",
            'A',
            "Microsoft.Authorization/elevateAccess/Action".into(),
            false,
        ),
        (
            "Contributor",
            'A',
            "Microsoft.Storage/storageAccounts/write".into(),
            true,
        ),
        (
            "Contributor",
            'A',
            "Microsoft.Storage/storageAccounts/listKeys/action".into(),
            true,
        ),
        (
            "Contributor",
            'D',
            format!("{SB}/containers/blobs/read"),
            false,
        ),
        (
            "Reader",
            'A',
            "Microsoft.Storage/storageAccounts/read".into(),
            true,
        ),
        (
            "Reader",
            'A',
            "Microsoft.Storage/storageAccounts/write".into(),
            false,
        ),
        (
            "Reader",
            'A',
            "Microsoft.Storage/storageAccounts/listKeys/action".into(),
            false,
        ),
        (
            "Reader",
            'A',
            "Microsoft.Authorization/roleAssignments/read".into(),
            true,
        ),
        ("Reader", 'D', format!("{SB}/containers/blobs/read"), false),
        (
            "User Access Administrator",
            'A',
            "Microsoft.Authorization/roleAssignments/write".into(),
            true,
        ),
        (
            "User Access Administrator",
            'A',
            "Microsoft.Authorization/roleAssignments/delete".into(),
            true,
        ),
        (
            "User Access Administrator",
            'A',
            "Microsoft.Storage/storageAccounts/write".into(),
            false,
        ),
        (
            "User Access Administrator",
            'A',
            "Microsoft.Storage/storageAccounts/read".into(),
            true,
        ),
        (
            "Storage Account Contributor",
            'A',
            "Microsoft.Storage/storageAccounts/listKeys/action".into(),
            true,
        ),
        (
            "Storage Account Contributor",
            'A',
            "Microsoft.Storage/storageAccounts/write".into(),
            true,
        ),
        (
            "Storage Account Contributor",
            'A',
            "Microsoft.Authorization/roleAssignments/write".into(),
            false,
        ),
        (
            "Storage Account Contributor",
            'A',
            "Microsoft.Authorization/roleAssignments/read".into(),
            true,
        ),
        (
            "Storage Account Contributor",
            'D',
            format!("{SB}/containers/blobs/read"),
            false,
        ),
        (
            "Storage Blob Data Reader",
            'D',
            format!("{SB}/containers/blobs/read"),
            true,
        ),
        (
            "Storage Blob Data Reader",
            'D',
            format!("{SB}/containers/blobs/write"),
            false,
        ),
        (
            "Storage Blob Data Reader",
            'D',
            format!("{SB}/containers/blobs/delete"),
            false,
        ),
        (
            "Storage Blob Data Reader",
            'A',
            format!("{SB}/containers/read"),
            true,
        ),
        (
            "Storage Blob Data Reader",
            'A',
            format!("{SB}/containers/write"),
            false,
        ),
        (
            "Storage Blob Data Reader",
            'A',
            format!("{SB}/generateUserDelegationKey/action"),
            true,
        ),
        (
            "Storage Blob Data Reader",
            'A',
            "Microsoft.Storage/storageAccounts/listKeys/action".into(),
            false,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/read"),
            true,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/write"),
            true,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/delete"),
            true,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/add/action"),
            true,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/move/action"),
            true,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/modifyPermissions/action"),
            false,
        ),
        (
            "Storage Blob Data Contributor",
            'D',
            format!("{SB}/containers/blobs/manageOwnership/action"),
            false,
        ),
        (
            "Storage Blob Data Contributor",
            'A',
            format!("{SB}/containers/write"),
            true,
        ),
        (
            "Storage Blob Data Owner",
            'D',
            format!("{SB}/containers/blobs/modifyPermissions/action"),
            true,
        ),
        (
            "Storage Blob Data Owner",
            'D',
            format!("{SB}/containers/blobs/manageOwnership/action"),
            true,
        ),
        (
            "Storage Blob Data Owner",
            'D',
            format!("{SB}/containers/blobs/read"),
            true,
        ),
        (
            "Storage Blob Data Owner",
            'A',
            format!("{SB}/containers/delete"),
            true,
        ),
        (
            "Storage Blob Data Owner",
            'A',
            "Microsoft.Storage/storageAccounts/listKeys/action".into(),
            false,
        ),
        (
            "Storage Blob Delegator",
            'A',
            format!("{SB}/generateUserDelegationKey/action"),
            true,
        ),
        (
            "Storage Blob Delegator",
            'D',
            format!("{SB}/containers/blobs/read"),
            false,
        ),
        (
            "Key Vault Secrets User",
            'D',
            format!("{KV}/secrets/getSecret/action"),
            true,
        ),
        (
            "Key Vault Secrets User",
            'D',
            format!("{KV}/secrets/readMetadata/action"),
            true,
        ),
        (
            "Key Vault Secrets User",
            'D',
            format!("{KV}/secrets/setSecret/action"),
            false,
        ),
        (
            "Key Vault Secrets User",
            'D',
            format!("{KV}/secrets/delete"),
            false,
        ),
        (
            "Key Vault Secrets Officer",
            'D',
            format!("{KV}/secrets/setSecret/action"),
            true,
        ),
        (
            "Key Vault Secrets Officer",
            'D',
            format!("{KV}/secrets/getSecret/action"),
            true,
        ),
        (
            "Key Vault Secrets Officer",
            'D',
            format!("{KV}/secrets/delete"),
            true,
        ),
        (
            "Key Vault Secrets Officer",
            'D',
            format!("{KV}/keys/encrypt/action"),
            false,
        ),
        (
            "Key Vault Secrets Officer",
            'A',
            format!("{KV}/write"),
            false,
        ),
        (
            "Key Vault Administrator",
            'D',
            format!("{KV}/keys/encrypt/action"),
            true,
        ),
        (
            "Key Vault Administrator",
            'D',
            format!("{KV}/secrets/getSecret/action"),
            true,
        ),
        ("Key Vault Administrator", 'A', format!("{KV}/write"), false),
        ("Key Vault Administrator", 'A', format!("{KV}/read"), true),
        (
            "Key Vault Reader",
            'D',
            format!("{KV}/secrets/readMetadata/action"),
            true,
        ),
        (
            "Key Vault Reader",
            'D',
            format!("{KV}/secrets/getSecret/action"),
            false,
        ),
        ("Key Vault Reader", 'A', format!("{KV}/read"), true),
        (
            "AcrPull",
            'A',
            "Microsoft.ContainerRegistry/registries/pull/read".into(),
            true,
        ),
        (
            "AcrPull",
            'A',
            "Microsoft.ContainerRegistry/registries/push/write".into(),
            false,
        ),
        (
            "AcrPush",
            'A',
            "Microsoft.ContainerRegistry/registries/push/write".into(),
            true,
        ),
        (
            "AcrPush",
            'A',
            "Microsoft.ContainerRegistry/registries/pull/read".into(),
            true,
        ),
        (
            "Managed Identity Operator",
            'A',
            "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action".into(),
            true,
        ),
        (
            "Managed Identity Operator",
            'A',
            "Microsoft.ManagedIdentity/userAssignedIdentities/read".into(),
            true,
        ),
        (
            "Managed Identity Operator",
            'A',
            "Microsoft.ManagedIdentity/userAssignedIdentities/write".into(),
            false,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/jobs/write"),
            true,
        ),
        ("AzureML Data Scientist", 'A', format!("{ML}/read"), true),
        ("AzureML Data Scientist", 'A', format!("{ML}/write"), false),
        ("AzureML Data Scientist", 'A', format!("{ML}/delete"), false),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/computes/write"),
            false,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/computes/delete"),
            false,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/computes/start/action"),
            true,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/computes/listKeys/action"),
            false,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/listKeys/action"),
            false,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/datastores/listsecrets/action"),
            true,
        ),
        (
            "AzureML Data Scientist",
            'A',
            format!("{ML}/datastores/write"),
            true,
        ),
        (
            "AzureML Data Scientist",
            'A',
            "Microsoft.Storage/storageAccounts/read".into(),
            false,
        ),
        (
            "AzureML Data Scientist",
            'D',
            format!("{SB}/containers/blobs/read"),
            false,
        ),
        (
            "AzureML Compute Operator",
            'A',
            format!("{ML}/computes/write"),
            true,
        ),
        (
            "AzureML Compute Operator",
            'A',
            format!("{ML}/computes/delete"),
            true,
        ),
        (
            "AzureML Compute Operator",
            'A',
            format!("{ML}/jobs/write"),
            false,
        ),
        ("AzureML Compute Operator", 'A', format!("{ML}/read"), false),
    ];
    rows
}

const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const OTHER_TENANT: &str = "22222222-2222-2222-2222-222222222222";
const RG: &str = "/subscriptions/s1/resourceGroups/rg";

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn scope(text: &str) -> ResourceId {
    ResourceId::parse(text).unwrap()
}

fn subscriptions() -> Vec<(String, TenantId)> {
    vec![
        ("s1".into(), tenant()),
        ("s2".into(), TenantId::parse(OTHER_TENANT).unwrap()),
    ]
}

#[test]
fn every_builtin_role_the_issue_names_exists_with_its_guid() {
    for (name, id) in [
        ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"),
        ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c"),
        ("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7"),
        (
            "User Access Administrator",
            "18d7d88d-d35e-4fb5-a5c3-7773c4a72b9d",
        ),
        (
            "Storage Account Contributor",
            "17d1049b-9a84-46fb-8f53-869881c3d3ab",
        ),
        (
            "Storage Blob Data Owner",
            "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
        ),
        (
            "Storage Blob Data Contributor",
            "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
        ),
        (
            "Storage Blob Data Reader",
            "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        ),
        (
            "Storage Blob Delegator",
            "db58b8e5-c6ad-4a2a-8342-4190687cbf4a",
        ),
        (
            "Key Vault Administrator",
            "00482a5a-887f-4fb3-b363-3b7fe8e74483",
        ),
        (
            "Key Vault Secrets Officer",
            "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
        ),
        (
            "Key Vault Secrets User",
            "4633458b-17de-408a-b874-0445c86b69e6",
        ),
        ("Key Vault Reader", "21090545-7ca7-4776-b22c-e363652d74d2"),
        ("AcrPull", "7f951dda-4ed3-4680-a7ca-43fe172d538d"),
        ("AcrPush", "8311e382-0749-4cb8-b61a-304f252e45ec"),
        ("AcrDelete", "c2f4ef07-c644-48eb-af81-4b1b4947fb11"),
        (
            "Managed Identity Operator",
            "f1a07417-d97a-45cb-824c-7a7467783830",
        ),
        (
            "AzureML Data Scientist",
            "f6c7c914-8db3-469d-8ca1-694a8f32e121",
        ),
        (
            "AzureML Compute Operator",
            "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
        ),
    ] {
        let role = builtin_role(name).unwrap_or_else(|| panic!("missing {name}"));
        assert_eq!(role.id, id, "{name}");
        assert_eq!(builtin_role(id).unwrap().name, name);
        assert!(role.builtin);
    }
    assert_eq!(builtin_roles().len(), 19);
}

#[test]
fn wildcards_match_like_azure() {
    assert!(action_matches(
        "*",
        "Microsoft.Storage/storageAccounts/read"
    ));
    assert!(action_matches(
        "*/read",
        "Microsoft.Storage/storageAccounts/read"
    ));
    assert!(!action_matches(
        "*/read",
        "Microsoft.Storage/storageAccounts/write"
    ));
    assert!(action_matches(
        "Microsoft.Authorization/*/Write",
        "microsoft.authorization/roleAssignments/write"
    ));
    assert!(!action_matches(
        "Microsoft.Authorization/*/Write",
        "Microsoft.Storage/x/write"
    ));
    assert!(action_matches(
        "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
        "Microsoft.ManagedIdentity/userAssignedIdentities/a/b/read"
    ));
    assert!(action_matches(
        "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
        "Microsoft.ManagedIdentity/userAssignedIdentities/read"
    ));
    assert!(!action_matches("Microsoft.Storage/*", "Microsoft.Stor"));
    assert!(!action_matches(
        "Microsoft.Storage/read",
        "Microsoft.Storage/readx"
    ));
    // Without a wildcard: the same operation in any case, and nothing longer or shorter.
    assert!(action_matches(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "microsoft.storage/STORAGEACCOUNTS/blobServices/containers/blobs/READ"
    ));
    assert!(!action_matches(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/rea"
    ));
    assert!(!action_matches(
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/reed"
    ));
}

/// How the principal holds the assignment.
#[derive(Debug, Clone, Copy)]
enum Route {
    Direct,
    Group,
    NestedFiveLevels,
    Unrelated,
}

/// Where the check happens relative to the assignment's scope.
#[derive(Debug, Clone, Copy)]
enum Relation {
    At,
    Below,
    Above,
    Sibling,
}

#[test]
fn the_decision_table_from_the_documentation() {
    let user = ObjectId::new_random();
    let groups: Vec<ObjectId> = (0..5).map(|_| ObjectId::new_random()).collect();
    let stranger = ObjectId::new_random();
    let mut cases = 0;
    for (role_name, kind, operation, documented_allow) in documented() {
        let role = builtin_role(role_name).unwrap();
        for route in [
            Route::Direct,
            Route::Group,
            Route::NestedFiveLevels,
            Route::Unrelated,
        ] {
            for relation in [
                Relation::At,
                Relation::Below,
                Relation::Above,
                Relation::Sibling,
            ] {
                let holder = match route {
                    Route::Direct => user,
                    Route::Group => groups[0],
                    Route::NestedFiveLevels => groups[4],
                    Route::Unrelated => stranger,
                };
                let assignment = RoleAssignment {
                    name: "a".into(),
                    scope: scope(RG),
                    role_definition_id: role.id.clone(),
                    principal_id: holder,
                };
                let target = match relation {
                    Relation::At => scope(RG),
                    Relation::Below => scope(&format!(
                        "{RG}/providers/Microsoft.Storage/storageAccounts/acct/blobServices/default/containers/c"
                    )),
                    Relation::Above => scope("/subscriptions/s1"),
                    Relation::Sibling => scope("/subscriptions/s1/resourceGroups/rg2"),
                };
                let index = RbacIndex::new(
                    builtin_roles().iter().cloned(),
                    [assignment],
                    subscriptions(),
                );
                let mut principals = vec![user];
                principals.extend(groups.iter().copied());
                let permission = if kind == 'A' {
                    Permission::Action(&operation)
                } else {
                    Permission::DataAction(&operation)
                };
                let request = AccessRequest {
                    tenant: tenant(),
                    principals: &principals,
                    permission,
                    scope: &target,
                };
                let decision = index.check(&request);
                assert_eq!(index.allows(&request), decision.is_allowed());
                let expected = documented_allow
                    && !matches!(route, Route::Unrelated)
                    && matches!(relation, Relation::At | Relation::Below);
                assert_eq!(
                    decision.is_allowed(),
                    expected,
                    "{role_name} {kind} {operation} {route:?} {relation:?}: {}",
                    decision.explanation()
                );
                cases += 1;
            }
        }
    }
    assert!(cases >= 200, "{cases} cases");
}

#[test]
fn a_denial_names_what_was_missing_and_which_roles_would_grant_it() {
    let index = RbacIndex::new(builtin_roles().iter().cloned(), [], subscriptions());
    let read = format!("{SB}/containers/blobs/read");
    let target = scope(RG);
    let decision = index.explain(&AccessRequest {
        tenant: tenant(),
        principals: &[ObjectId::new_random()],
        permission: Permission::DataAction(&read),
        scope: &target,
    });
    let text = decision.explanation();
    assert!(
        text.contains(&read) && text.contains(RG) && text.contains("Storage Blob Data Reader"),
        "{text}"
    );
}

#[test]
fn a_principal_never_reaches_another_tenants_scope() {
    let p = ObjectId::new_random();
    let theirs = scope("/subscriptions/s2/resourceGroups/rg");
    let assignment = RoleAssignment {
        name: "a".into(),
        scope: theirs.clone(),
        role_definition_id: OWNER_ROLE_ID.into(),
        principal_id: p,
    };
    let index = RbacIndex::new(
        builtin_roles().iter().cloned(),
        [assignment],
        subscriptions(),
    );
    let decision = index.check(&AccessRequest {
        tenant: tenant(),
        principals: &[p],
        permission: Permission::Action("Microsoft.Storage/storageAccounts/read"),
        scope: &theirs,
    });
    assert!(
        matches!(
            decision,
            Decision::Deny {
                reason: DenyReason::CrossTenant { .. },
                ..
            }
        ),
        "{decision:?}"
    );
    let request = AccessRequest {
        tenant: tenant(),
        principals: &[p],
        permission: Permission::Action("Microsoft.Storage/storageAccounts/read"),
        scope: &theirs,
    };
    assert!(!index.allows(&request));
    // The subscription is found whatever the case of the id.
    let shouted = scope("/SUBSCRIPTIONS/S2/resourceGroups/rg");
    assert_eq!(
        index.tenant_of(&shouted),
        index.tenant_of(&theirs),
        "{shouted}"
    );
    assert!(index.tenant_of(&theirs).is_some());
    assert!(!index.allows(&AccessRequest {
        scope: &shouted,
        ..request
    }));
    let unknown = scope("/subscriptions/s9");
    let decision = index.check(&AccessRequest {
        tenant: tenant(),
        principals: &[p],
        permission: Permission::Action("x/read"),
        scope: &unknown,
    });
    assert!(matches!(
        decision,
        Decision::Deny {
            reason: DenyReason::UnknownScope,
            ..
        }
    ));
}

#[test]
fn custom_roles_are_assignable_only_within_their_scopes() {
    let custom = RoleDefinition {
        id: "c0ffee00-0000-4000-8000-000000000001".into(),
        name: "Blob Lister".into(),
        description: String::new(),
        actions: vec![format!("{SB}/containers/read")],
        not_actions: vec![],
        data_actions: vec![],
        not_data_actions: vec![],
        assignable_scopes: vec![RG.into()],
        builtin: false,
    };
    assert!(custom.assignable_at(&scope(&format!("{RG}/providers/x/y/z"))));
    assert!(!custom.assignable_at(&scope("/subscriptions/s1")));
    assert!(
        builtin_role("Reader")
            .unwrap()
            .assignable_at(&scope("/subscriptions/s1"))
    );
}

#[test]
fn many_assignments_of_one_principal_use_the_scope_index() {
    let p = ObjectId::new_random();
    let reader = builtin_role("Storage Blob Data Reader").unwrap();
    let assignments: Vec<RoleAssignment> = (0..100)
        .map(|i| RoleAssignment {
            name: format!("a{i}"),
            scope: scope(&format!(
                "{RG}/providers/Microsoft.Storage/storageAccounts/acct{i}"
            )),
            role_definition_id: reader.id.clone(),
            principal_id: p,
        })
        .collect();
    let index = RbacIndex::new(
        builtin_roles().iter().cloned(),
        assignments,
        subscriptions(),
    );
    let read = format!("{SB}/containers/blobs/read");
    let check = |account: &str| {
        let target = scope(&format!(
            "{RG}/providers/Microsoft.Storage/storageAccounts/{account}/blobServices/default/containers/c"
        ));
        index.check(&AccessRequest {
            tenant: tenant(),
            principals: &[p],
            permission: Permission::DataAction(&read),
            scope: &target,
        })
    };
    match check("acct42") {
        Decision::Allow { assignment, .. } => assert_eq!(assignment, "a42"),
        other => panic!("{other:?}"),
    }
    assert!(
        !check("acct420").is_allowed(),
        "acct42 is not a prefix of acct420 at a segment boundary"
    );
}
