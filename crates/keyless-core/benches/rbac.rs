//! One RBAC check with 1,000 / 10,000 / 100,000 assignments and a principal in
//! five levels of nested groups: `cargo bench -p keyless-core --bench rbac`.
#![allow(missing_docs, reason = "criterion generates undocumented items")]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "a benchmark stops at the first failure"
)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

use keyless_core::rbac::{
    AccessRequest, Permission, RbacIndex, RoleAssignment, builtin_role, builtin_roles,
};
use keyless_core::{ObjectId, ResourceId, TenantId};

const READ: &str = "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read";

fn bench(c: &mut Criterion) {
    let tenant = TenantId::parse("11111111-1111-1111-1111-111111111111").unwrap();
    let reader = builtin_role("Storage Blob Data Reader").unwrap().id.clone();
    let contributor = builtin_role("Contributor").unwrap().id.clone();
    let user = ObjectId::new_random();
    let groups: Vec<ObjectId> = (0..5).map(|_| ObjectId::new_random()).collect();
    let mut principals = vec![user];
    principals.extend(&groups);
    let target = ResourceId::parse(
        "/subscriptions/s1/resourceGroups/rg7/providers/Microsoft.Storage/storageAccounts/data7/blobServices/default/containers/census",
    )
    .unwrap();

    let mut group = c.benchmark_group("rbac_check");
    for n in [1_000usize, 10_000, 100_000] {
        // Everyone else's assignments, spread over 1,000 principals and many scopes,
        // plus a few on the path of the checked principal's outermost group.
        let others: Vec<ObjectId> = (0..1_000).map(|_| ObjectId::new_random()).collect();
        let mut assignments: Vec<RoleAssignment> = (0..n)
            .map(|i| RoleAssignment {
                name: format!("a{i}"),
                scope: ResourceId::parse(&format!("/subscriptions/s1/resourceGroups/rg{}/providers/Microsoft.Storage/storageAccounts/data{}", i % 97, i % 1013)).unwrap(),
                role_definition_id: if i % 2 == 0 { reader.clone() } else { contributor.clone() },
                principal_id: others[i % others.len()],
            })
            .collect();
        for i in 0..20 {
            assignments.push(RoleAssignment {
                name: format!("g{i}"),
                scope: ResourceId::parse(&format!("/subscriptions/s1/resourceGroups/rg{i}"))
                    .unwrap(),
                role_definition_id: if i == 7 {
                    reader.clone()
                } else {
                    contributor.clone()
                },
                principal_id: groups[4],
            });
        }
        let index = RbacIndex::new(
            builtin_roles().iter().cloned(),
            assignments,
            [("s1".to_owned(), tenant)],
        );
        let request = AccessRequest {
            tenant,
            principals: &principals,
            permission: Permission::DataAction(READ),
            scope: &target,
        };
        assert!(index.check(&request).is_allowed());
        group.bench_with_input(BenchmarkId::new("allow_via_nested_group", n), &n, |b, _| {
            b.iter(|| black_box(index.check(black_box(&request))))
        });
        // The data plane's question: allowed or not, without the decision's strings.
        assert!(index.allows(&request));
        group.bench_with_input(
            BenchmarkId::new("allows_via_nested_group", n),
            &n,
            |b, _| b.iter(|| black_box(index.allows(black_box(&request)))),
        );
        let deny = AccessRequest {
            permission: Permission::DataAction(
                "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write",
            ),
            ..request
        };
        group.bench_with_input(BenchmarkId::new("deny", n), &n, |b, _| {
            b.iter(|| black_box(index.check(black_box(&deny))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
