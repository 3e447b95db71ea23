//! The ACL check of a read ten directories deep, every path with a full ACL
//! (32 entries: 27 named users, a named group, the 4 base entries), the caller
//! reaching it through the last of its 8 groups.
//! `cargo bench -p keyless-core --bench acl`

#![allow(missing_docs, reason = "criterion's macros define undocumented items")]
#![allow(clippy::unwrap_used, reason = "benchmark setup")]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use keyless_core::acl::{
    AclDecision, Caller, Change, Need, PathAcl, Perm, Step, check, parse_entries,
};

fn acl(group: &str) -> PathAcl {
    let mut entries: Vec<String> = (0..27)
        .map(|i| format!("user:{i:08}-0000-0000-0000-000000000000:r-x"))
        .collect();
    entries.push(format!("group:{group}:r-x"));
    let mut a = PathAcl::root("owner");
    a.apply(
        Change::Modify,
        &parse_entries(&entries.join(","), true).unwrap(),
        true,
    )
    .unwrap();
    a
}

fn bench(c: &mut Criterion) {
    let group = "99999999-0000-0000-0000-000000000007";
    let groups: Vec<String> = (0..8)
        .map(|i| format!("99999999-0000-0000-0000-00000000000{i}"))
        .collect();
    let acls: Vec<PathAcl> = (0..10).map(|_| acl(group)).collect();
    let names: Vec<String> = (0..10).map(|i| format!("/d{i}")).collect();
    let steps: Vec<Step<'_>> = names
        .iter()
        .zip(&acls)
        .map(|(path, acl)| Step { path, acl })
        .collect();
    let file = acl(group);
    let target = Some(Step {
        path: "/d9/file.csv",
        acl: &file,
    });
    let caller = Caller {
        object_id: "caller-not-named",
        groups: &groups,
    };
    let read = Need {
        target: Perm::READ,
        parent: Perm::NONE,
    };
    assert_eq!(check(&steps, target, caller, read), AclDecision::Allow);
    c.bench_function(
        "acl check: read 10 levels deep, 32-entry ACLs, via a group",
        |b| {
            b.iter(|| check(black_box(&steps), target, black_box(caller), read));
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
