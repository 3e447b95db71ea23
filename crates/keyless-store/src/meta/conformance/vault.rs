//! Vaults and the versions of their secrets.

use super::*;

pub(super) async fn secrets_keep_versions_and_deletion_marks<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let v = Vault {
        name: "v1".into(),
        id: "/x".into(),
        tenant_id: t,
        subscription_id: "sub".into(),
        resource_group: "RG".into(),
        location: "l".into(),
        body: serde_json::json!({}),
        created_at: 0,
        deleted_at: None,
    };
    s.vault_create(&v).await.unwrap();
    assert_eq!(
        s.vault_create(&v).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    s.vault_create(&Vault {
        name: "v2".into(),
        resource_group: "other".into(),
        ..v.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.vault("v1").await.unwrap(), Some(v.clone()));
    assert_eq!(s.vaults("sub", None, false).await.unwrap().len(), 2);
    assert_eq!(s.vaults("sub", Some("rg"), false).await.unwrap().len(), 1);
    s.vault_update(
        &Vault {
            deleted_at: Some(5),
            ..v.clone()
        }
        .clone(),
    )
    .await
    .unwrap();
    assert_eq!(s.vaults("sub", None, true).await.unwrap().len(), 1);
    assert_eq!(
        s.vault_update(&Vault {
            name: "nope".into(),
            ..v.clone()
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::NotFound
    );
    s.vault_update(&v).await.unwrap();

    s.secret_add(&secret("v1", "Pass", "a1", 1)).await.unwrap();
    s.secret_add(&secret("v1", "pass", "b2", 2)).await.unwrap();
    s.secret_add(&secret("v1", "zed", "c1", 1)).await.unwrap();
    assert_eq!(
        s.secret_add(&secret("nope", "zed", "c1", 1))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.secret("v1", "PASS", None, false)
            .await
            .unwrap()
            .unwrap()
            .version,
        "b2"
    );
    assert_eq!(
        s.secret("v1", "PASS", Some("a1"), false)
            .await
            .unwrap()
            .unwrap()
            .version,
        "a1"
    );
    assert_eq!(
        s.secret("v1", "PASS", Some("zz"), false).await.unwrap(),
        None
    );
    assert_eq!(s.secret("v1", "PASS", None, true).await.unwrap(), None);
    let latest: Vec<_> = s
        .secrets("v1")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(latest, ["b2", "c1"]);
    let versions: Vec<_> = s
        .secret_versions("v1", "pass")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, ["a1", "b2"]);
    let mut updated = secret("v1", "Pass", "a1", 1);
    updated.enabled = false;
    updated.tags = serde_json::json!({"k": "v"});
    s.secret_update(&updated).await.unwrap();
    assert_eq!(
        s.secret("v1", "pass", Some("a1"), false)
            .await
            .unwrap()
            .unwrap(),
        updated
    );

    assert!(s.secret_delete("v1", "PASS", 10, 20).await.unwrap());
    assert!(!s.secret_delete("v1", "pass", 10, 20).await.unwrap());
    assert!(!s.secret_delete("v1", "none", 10, 20).await.unwrap());
    assert_eq!(s.secret("v1", "pass", None, false).await.unwrap(), None);
    assert_eq!(
        s.secret("v1", "pass", None, true)
            .await
            .unwrap()
            .unwrap()
            .version,
        "b2"
    );
    assert_eq!(
        s.secret_add(&secret("v1", "pass", "d", 3))
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    let del = s.deleted_secret("v1", "Pass").await.unwrap().unwrap();
    assert_eq!(
        (
            del.deleted_at,
            del.scheduled_purge,
            del.latest.version.as_str()
        ),
        (10, 20, "b2")
    );
    assert_eq!(s.deleted_secrets("v1").await.unwrap().len(), 1);
    assert_eq!(s.secrets("v1").await.unwrap().len(), 1);
    assert!(s.secret_recover("v1", "pass").await.unwrap());
    assert!(!s.secret_recover("v1", "pass").await.unwrap());
    assert_eq!(s.secrets("v1").await.unwrap().len(), 2);
    assert!(s.secret_delete("v1", "pass", 10, 20).await.unwrap());
    assert!(!s.secret_purge("v1", "zed").await.unwrap());
    assert!(s.secret_purge("v1", "pass").await.unwrap());
    assert!(!s.secret_purge("v1", "pass").await.unwrap());
    assert_eq!(s.deleted_secret("v1", "pass").await.unwrap(), None);
    s.secret_add(&secret("v1", "pass", "e", 4)).await.unwrap();
    assert_eq!(s.secret_versions("v1", "pass").await.unwrap().len(), 1);

    s.secret_keys_rewrap(&[
        ("v1".into(), "PASS".into(), "e".into(), vec![7]),
        ("v1".into(), "zed".into(), "c1".into(), vec![8]),
    ])
    .await
    .unwrap();
    let mut all: Vec<_> = s
        .all_secret_versions()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.wrapped_key)
        .collect();
    all.sort();
    assert_eq!(all, [vec![7], vec![8]]);
    assert!(s.vault_purge("v1").await.unwrap());
    assert!(!s.vault_purge("v1").await.unwrap());
    assert!(s.all_secret_versions().await.unwrap().is_empty());
}

pub(super) async fn concurrent_secret_writers_keep_the_deletion_mark_consistent<S: MetaStore>(
    s: S,
) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let v = Vault {
        name: "v".into(),
        id: "/x".into(),
        tenant_id: t,
        subscription_id: "sub".into(),
        resource_group: "RG".into(),
        location: "l".into(),
        body: serde_json::json!({}),
        created_at: 0,
        deleted_at: None,
    };
    s.vault_create(&v).await.unwrap();
    for round in 0..20 {
        let name = format!("s{round}");
        s.secret_add(&secret("v", &name, "v0", 0)).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let s = Arc::clone(&s);
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                if i % 2 == 0 {
                    s.secret_delete("v", &name, 1, 2)
                        .await
                        .map(|d| (d as u32, 0))
                } else {
                    match s
                        .secret_add(&secret("v", &name, &format!("v{}", i + 1), 1))
                        .await
                    {
                        Ok(()) => Ok((0, 1)),
                        Err(e) if e.kind() == ErrorKind::Conflict => Ok((0, 0)),
                        Err(e) => Err(e),
                    }
                }
            }));
        }
        let mut deletes = 0;
        let mut added = 0;
        for task in tasks {
            let (d, a) = task.await.unwrap().unwrap();
            deletes += d;
            added += a;
        }
        assert_eq!(deletes, 1);
        // Every version added is under the mark, none after it.
        let deleted = s.secret("v", &name, None, true).await.unwrap();
        assert!(deleted.is_some());
        let hidden = s.secret_versions("v", &name).await.unwrap();
        assert!(hidden.is_empty());
        assert!(s.secret_recover("v", &name).await.unwrap());
        assert_eq!(
            s.secret_versions("v", &name).await.unwrap().len(),
            1 + added as usize
        );
    }
}
