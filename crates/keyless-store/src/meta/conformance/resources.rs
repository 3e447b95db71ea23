//! Resources, resource groups, role assignments and the activity log.

use super::*;

pub(super) async fn resources_groups_and_role_assignments_round_trip<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    s.subscription_create(&Subscription {
        id: "Sub".into(),
        tenant_id: t,
        display_name: "s".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    assert_eq!(s.subscription("sub").await.unwrap().unwrap().id, "Sub");
    assert_eq!(s.subscriptions(t).await.unwrap().len(), 1);
    assert_eq!(s.subscriptions_all().await.unwrap().len(), 1);
    let g = ResourceGroup {
        subscription_id: "Sub".into(),
        name: "My_RG".into(),
        location: "here".into(),
        created_at: 1,
    };
    assert_eq!(s.resource_group_upsert(&g).await.unwrap(), g);
    let again = ResourceGroup {
        name: "my_rg".into(),
        location: "there".into(),
        ..g.clone()
    };
    assert_eq!(s.resource_group_upsert(&again).await.unwrap(), g);
    let other = ResourceGroup {
        name: "myXrg".into(),
        ..g.clone()
    };
    s.resource_group_upsert(&other).await.unwrap();
    assert_eq!(
        s.resource_group("Sub", "MY_rg").await.unwrap(),
        Some(g.clone())
    );
    assert_eq!(s.resource_groups("Sub").await.unwrap().len(), 2);
    let id = "/subscriptions/Sub/resourceGroups/My_RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/Id1";
    let r = Resource {
        id: id.into(),
        subscription_id: "Sub".into(),
        resource_group: "My_RG".into(),
        kind: "Microsoft.ManagedIdentity/userAssignedIdentities".into(),
        name: "Id1".into(),
        location: "here".into(),
        body: serde_json::json!({"a": 1}),
        created_at: 2,
    };
    s.resource_put(&r).await.unwrap();
    s.resource_put(&Resource {
        body: serde_json::json!({"a": 2}),
        created_at: 99,
        ..r.clone()
    })
    .await
    .unwrap();
    let got = s.resource(&id.to_uppercase()).await.unwrap().unwrap();
    assert_eq!((got.created_at, got.body), (2, serde_json::json!({"a": 2})));
    assert_eq!(
        s.resources(
            "Sub",
            "my_rg",
            "microsoft.managedidentity/userassignedidentities"
        )
        .await
        .unwrap()
        .len(),
        1
    );
    let mut mi = principal(t, PrincipalKind::ManagedIdentity, "mi");
    mi.resource_id = Some(id.into());
    s.principal_create(&mi, None).await.unwrap();
    let mut mi_other = principal(t, PrincipalKind::ManagedIdentity, "mi2");
    mi_other.resource_id = Some("/subscriptions/Sub/resourceGroups/myXrg/providers/x/y".into());
    s.principal_create(&mi_other, None).await.unwrap();
    let u = principal(t, PrincipalKind::User, "u");
    s.principal_create(&u, None).await.unwrap();
    let role = keyless_core::rbac::RoleDefinition {
        id: "Def1".into(),
        name: "Custom".into(),
        description: String::new(),
        actions: vec![],
        not_actions: vec![],
        data_actions: vec![],
        not_data_actions: vec![],
        assignable_scopes: vec![],
        builtin: false,
    };
    s.role_definition_put(&StoredRoleDefinition {
        tenant_id: t,
        role: role.clone(),
        created_at: 0,
    })
    .await
    .unwrap();
    s.role_definition_put(&StoredRoleDefinition {
        tenant_id: t,
        role: keyless_core::rbac::RoleDefinition {
            name: "Renamed".into(),
            ..role.clone()
        },
        created_at: 0,
    })
    .await
    .unwrap();
    assert_eq!(
        s.role_definitions_all().await.unwrap()[0].role.name,
        "Renamed"
    );
    assert_eq!(
        s.role_definition_put(&StoredRoleDefinition {
            tenant_id: t,
            role: keyless_core::rbac::RoleDefinition {
                id: "Def2".into(),
                name: "renamed".into(),
                ..role.clone()
            },
            created_at: 0
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::AlreadyExists
    );
    let assign = |name: &str, scope: &str, def: &str| StoredRoleAssignment {
        name: name.into(),
        tenant_id: t,
        scope: scope.into(),
        role_definition_id: def.into(),
        principal_id: u.object_id,
        created_at: 0,
    };
    s.role_assignment_create(&assign(
        "a1",
        "/subscriptions/Sub/resourceGroups/My_RG",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign(
        "a2",
        "/subscriptions/Sub/resourceGroups/My_RG/providers/p/q",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign(
        "a3",
        "/subscriptions/Sub/resourceGroups/myXrg/providers/p/q",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign(
        "a4",
        "/subscriptions/Sub/resourceGroups/My_RG2",
        "x",
    ))
    .await
    .unwrap();
    s.role_assignment_create(&assign("a5", "/subscriptions/Sub", "def1"))
        .await
        .unwrap();
    assert_eq!(
        s.role_assignment_create(&assign("A1", "/x", "x"))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.role_assignment("A5").await.unwrap().unwrap().name, "a5");
    assert!(s.resource_group_delete("Sub", "my_rg").await.unwrap());
    assert!(!s.resource_group_delete("Sub", "my_rg").await.unwrap());
    assert!(s.principal(mi.object_id).await.unwrap().is_none());
    assert!(s.principal(mi_other.object_id).await.unwrap().is_some());
    assert!(s.resource(id).await.unwrap().is_none());
    let mut left: Vec<_> = s
        .role_assignments(t)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    left.sort();
    assert_eq!(left, ["a3", "a4", "a5"]);
    assert!(s.role_definition_delete("DEF1").await.unwrap());
    assert!(!s.role_definition_delete("DEF1").await.unwrap());
    assert_eq!(s.role_assignments_all().await.unwrap().len(), 2);
    assert!(s.role_assignment_delete("A3").await.unwrap());
    assert!(!s.role_assignment_delete("A3").await.unwrap());
    assert!(!s.resource_delete("/nope").await.unwrap());

    for (n, sub) in [(1, Some("sub")), (2, None), (3, Some("SUB")), (4, None)] {
        s.activity_add(&ActivityEvent {
            id: format!("e{n}"),
            time: n,
            tenant_id: Some(t),
            subscription_id: sub.map(str::to_owned),
            body: serde_json::json!({"n": n}),
        })
        .await
        .unwrap();
    }
    let ids = |v: Vec<ActivityEvent>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.activity(t, Some("Sub"), 0, 10).await.unwrap()),
        ["e1", "e3"]
    );
    assert_eq!(
        ids(s.activity(t, Some("Sub"), 2, 10).await.unwrap()),
        ["e3"]
    );
    assert_eq!(ids(s.activity(t, None, 0, 1).await.unwrap()), ["e2"]);
    assert_eq!(
        ids(s.activity(t, None, 0, usize::MAX).await.unwrap()),
        ["e2", "e4"]
    );
}

pub(super) async fn concurrent_resource_updates_lose_nothing_and_a_claim_is_won_once<
    S: MetaStore,
>(
    s: S,
) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    s.subscription_create(&Subscription {
        id: "sub".into(),
        tenant_id: t,
        display_name: "s".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    let id = "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/jobs/j";
    assert!(
        s.resource_update(id, &mut |_| true)
            .await
            .unwrap()
            .is_none()
    );
    s.resource_put(&Resource {
        id: id.into(),
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        kind: "Microsoft.MachineLearningServices/workspaces/jobs".into(),
        name: "j".into(),
        location: "here".into(),
        body: serde_json::json!({"count": 0, "runner": "dead"}),
        created_at: 1,
    })
    .await
    .unwrap();
    // Twenty read-modify-writes at once: each sees the one before it.
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.resource_update(id, &mut |body| {
                    let n = body["count"].as_i64().unwrap_or(0);
                    body["count"] = (n + 1).into();
                    true
                })
                .await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().unwrap().1);
    }
    let stored = s.resource(id).await.unwrap().unwrap();
    assert_eq!(stored.body["count"], 20);
    // Eight servers claim what the dead one held: one wins, the rest see its claim.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let (after, won) = s
                    .resource_update(id, &mut |body| {
                        if body["runner"] != "dead" {
                            return false;
                        }
                        body["runner"] = format!("server-{i}").into();
                        true
                    })
                    .await
                    .unwrap()
                    .unwrap();
                (
                    won,
                    after.body["runner"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut seen = Vec::new();
    for task in tasks {
        let (won, runner) = task.await.unwrap();
        if won {
            winners.push(runner.clone());
        }
        seen.push(runner);
    }
    assert_eq!(winners.len(), 1, "{seen:?}");
    assert!(seen.iter().all(|r| *r == winners[0]), "{seen:?}");
    assert_eq!(s.resource(id).await.unwrap().unwrap().body["count"], 20);
}

pub(super) async fn resources_written_together_are_written_whole_or_not_at_all<S: MetaStore>(s: S) {
    let t = new_tenant(&s).await;
    s.subscription_create(&Subscription {
        id: "sub".into(),
        tenant_id: t,
        display_name: "s".into(),
        created_at: 0,
    })
    .await
    .unwrap();
    let job = |sub: &str, name: &str| Resource {
        id: format!(
            "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/w/jobs/{name}"
        ),
        subscription_id: sub.into(),
        resource_group: "rg".into(),
        kind: "Microsoft.MachineLearningServices/workspaces/jobs".into(),
        name: name.into(),
        location: "here".into(),
        body: serde_json::json!({ "name": name }),
        created_at: 1,
    };
    async fn listed<S: MetaStore>(s: &S) -> Vec<String> {
        let mut names: Vec<String> = s
            .resources(
                "sub",
                "rg",
                "Microsoft.MachineLearningServices/workspaces/jobs",
            )
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.name)
            .collect();
        names.sort();
        names
    }
    // A pipeline and its steps: the last names a subscription that does not
    // exist, so nothing of the pipeline is written.
    let broken = [job("sub", "p"), job("sub", "p-a"), job("nosub", "p-b")];
    assert!(s.resources_put(&broken).await.is_err());
    assert!(listed(&s).await.is_empty());
    s.resources_put(&[job("sub", "p"), job("sub", "p-a"), job("sub", "p-b")])
        .await
        .unwrap();
    assert_eq!(listed(&s).await, ["p", "p-a", "p-b"]);
    // Written again together, each is replaced.
    let mut again = job("sub", "P-A");
    again.body = serde_json::json!({ "name": "again" });
    s.resources_put(&[again]).await.unwrap();
    assert_eq!(
        s.resource(&job("sub", "p-a").id)
            .await
            .unwrap()
            .unwrap()
            .body["name"],
        "again"
    );
    let ids = [
        job("sub", "p-a").id,
        job("sub", "missing").id,
        job("sub", "P").id,
    ];
    assert_eq!(s.resources_delete(&ids).await.unwrap(), 2);
    assert_eq!(listed(&s).await, ["p-b"]);
}
