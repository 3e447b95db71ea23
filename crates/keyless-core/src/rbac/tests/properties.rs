use proptest::prelude::*;

use super::super::*;
use super::{scope, subscriptions, tenant};
use crate::ObjectId;

fn arb_scope() -> impl Strategy<Value = ResourceId> {
    (0usize..3, 0usize..3, 0usize..3).prop_map(|(rg, acct, depth)| {
        let mut s = "/subscriptions/s1".to_owned();
        if depth > 0 {
            s.push_str(&format!("/resourceGroups/rg{rg}"));
        }
        if depth > 1 {
            s.push_str(&format!(
                "/providers/Microsoft.Storage/storageAccounts/a{acct}"
            ));
        }
        scope(&s)
    })
}

fn arb_assignment(principals: Vec<ObjectId>) -> impl Strategy<Value = RoleAssignment> {
    let roles: Vec<String> = builtin_roles().iter().map(|r| r.id.clone()).collect();
    (arb_scope(), 0..roles.len(), 0..principals.len()).prop_map(move |(scope, r, p)| {
        RoleAssignment {
            name: format!("{r}-{p}-{}", scope.key()),
            scope,
            role_definition_id: roles[r].clone(),
            principal_id: principals[p],
        }
    })
}

const OPERATIONS: [(char, &str); 5] = [
    ('A', "Microsoft.Authorization/roleAssignments/write"),
    ('A', "Microsoft.Storage/storageAccounts/read"),
    (
        'D',
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read",
    ),
    ('D', "Microsoft.KeyVault/vaults/secrets/getSecret/action"),
    (
        'A',
        "Microsoft.MachineLearningServices/workspaces/jobs/write",
    ),
];

fn principals_fixture() -> Vec<ObjectId> {
    (0..4)
        .map(|i| ObjectId::parse(&format!("00000000-0000-4000-8000-00000000000{i}")).unwrap())
        .collect()
}

proptest! {
    #[test]
    fn adding_an_assignment_never_removes_access(
        base in prop::collection::vec(arb_assignment(principals_fixture()), 0..12),
        extra in arb_assignment(principals_fixture()),
        target in arb_scope(),
        op in 0..OPERATIONS.len(),
        who in 0usize..4,
    ) {
        let principals = principals_fixture();
        let (kind, operation) = OPERATIONS[op];
        let permission = if kind == 'A' { Permission::Action(operation) } else { Permission::DataAction(operation) };
        let asking = [principals[who]];
        let before = RbacIndex::new(builtin_roles().iter().cloned(), base.clone(), subscriptions());
        let mut more = base;
        more.push(extra);
        let after = RbacIndex::new(builtin_roles().iter().cloned(), more, subscriptions());
        let request = AccessRequest { tenant: tenant(), principals: &asking, permission, scope: &target };
        prop_assert!(!before.check(&request).is_allowed() || after.check(&request).is_allowed());
        prop_assert_eq!(before.allows(&request), before.check(&request).is_allowed());
        prop_assert_eq!(after.allows(&request), after.check(&request).is_allowed());
    }

    #[test]
    fn removing_an_assignment_never_adds_access(
        base in prop::collection::vec(arb_assignment(principals_fixture()), 1..12),
        drop in 0usize..12,
        target in arb_scope(),
        op in 0..OPERATIONS.len(),
        who in 0usize..4,
    ) {
        let principals = principals_fixture();
        let (kind, operation) = OPERATIONS[op];
        let permission = if kind == 'A' { Permission::Action(operation) } else { Permission::DataAction(operation) };
        let asking = [principals[who]];
        let full = RbacIndex::new(builtin_roles().iter().cloned(), base.clone(), subscriptions());
        let mut fewer = base;
        fewer.remove(drop % fewer.len());
        let less = RbacIndex::new(builtin_roles().iter().cloned(), fewer, subscriptions());
        let request = AccessRequest { tenant: tenant(), principals: &asking, permission, scope: &target };
        prop_assert!(!less.check(&request).is_allowed() || full.check(&request).is_allowed());
    }

    #[test]
    fn an_assignment_never_reaches_outside_its_scope(
        assignment in arb_assignment(principals_fixture()),
        target in arb_scope(),
        op in 0..OPERATIONS.len(),
    ) {
        let (kind, operation) = OPERATIONS[op];
        let permission = if kind == 'A' { Permission::Action(operation) } else { Permission::DataAction(operation) };
        let index = RbacIndex::new(builtin_roles().iter().cloned(), [assignment.clone()], subscriptions());
        let asking = [assignment.principal_id];
        let decision = index.check(&AccessRequest { tenant: tenant(), principals: &asking, permission, scope: &target });
        if decision.is_allowed() {
            prop_assert!(assignment.scope.contains(&target));
        }
    }

    #[test]
    fn tenant_a_never_reaches_tenant_b(
        base in prop::collection::vec(arb_assignment(principals_fixture()), 0..12),
        rg in 0usize..3,
        op in 0..OPERATIONS.len(),
        who in 0usize..4,
    ) {
        // The same assignments, moved into tenant B's subscription.
        let moved: Vec<RoleAssignment> = base
            .into_iter()
            .map(|a| RoleAssignment { scope: scope(&a.scope.as_str().replacen("/subscriptions/s1", "/subscriptions/s2", 1)), ..a })
            .collect();
        let index = RbacIndex::new(builtin_roles().iter().cloned(), moved, subscriptions());
        let (kind, operation) = OPERATIONS[op];
        let permission = if kind == 'A' { Permission::Action(operation) } else { Permission::DataAction(operation) };
        let target = scope(&format!("/subscriptions/s2/resourceGroups/rg{rg}"));
        let asking = [principals_fixture()[who]];
        let request = AccessRequest { tenant: tenant(), principals: &asking, permission, scope: &target };
        prop_assert!(!index.check(&request).is_allowed());
        prop_assert!(!index.allows(&request));
    }
}
