//! The directory and what signs in against it: tenants, principals, credentials,
//! signing keys, tokens and codes.

use super::*;

pub(super) async fn tenants_principals_and_credentials_keep_their_keys_and_cases<S: MetaStore>(
    s: S,
) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    assert_eq!(s.tenant("t.LOCAL").await.unwrap().unwrap().id, t);
    assert_eq!(
        s.tenant(&t.to_string().to_uppercase())
            .await
            .unwrap()
            .unwrap()
            .id,
        t
    );
    assert_eq!(s.tenants().await.unwrap().len(), 1);
    assert_eq!(
        s.tenant_create(&Tenant {
            id: TenantId::new_random(),
            domain: "t.LOCAL".into(),
            display_name: "x".into(),
            created_at: 0
        })
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::AlreadyExists
    );
    let mut u = principal(t, PrincipalKind::User, "u");
    u.user_principal_name = Some("Alice@T.local".into());
    s.principal_create(&u, Some("hash")).await.unwrap();
    let mut sp = principal(t, PrincipalKind::ServicePrincipal, "sp");
    sp.app_id = Some(ClientId::new_random());
    s.principal_create(&sp, None).await.unwrap();
    let mut mi = principal(t, PrincipalKind::ManagedIdentity, "mi");
    mi.resource_id = Some("/subscriptions/S/resourceGroups/G/providers/x/MI".into());
    s.principal_create(&mi, None).await.unwrap();
    assert_eq!(
        s.principal_by_upn("alice@t.LOCAL").await.unwrap().unwrap(),
        u
    );
    assert_eq!(
        s.principal_by_app_id(sp.app_id.unwrap())
            .await
            .unwrap()
            .unwrap(),
        sp
    );
    assert_eq!(
        s.principal_by_resource_id("/SUBSCRIPTIONS/s/resourcegroups/g/providers/x/mi")
            .await
            .unwrap()
            .unwrap(),
        mi
    );
    assert_eq!(s.principal(u.object_id).await.unwrap().unwrap(), u);
    assert_eq!(s.principals(t, None).await.unwrap().len(), 3);
    assert_eq!(
        s.principals(t, Some(PrincipalKind::User)).await.unwrap(),
        vec![u.clone()]
    );
    assert_eq!(
        s.password_hash(u.object_id).await.unwrap().as_deref(),
        Some("hash")
    );
    assert_eq!(s.password_hash(sp.object_id).await.unwrap(), None);
    s.principal_set_enabled(u.object_id, false).await.unwrap();
    assert!(!s.principal(u.object_id).await.unwrap().unwrap().enabled);
    assert_eq!(
        s.principal_set_enabled(ObjectId::new_random(), false)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    let g1 = principal(t, PrincipalKind::Group, "g1");
    let g2 = principal(t, PrincipalKind::Group, "g2");
    s.principal_create(&g1, None).await.unwrap();
    s.principal_create(&g2, None).await.unwrap();
    s.group_add_member(g1.object_id, g2.object_id)
        .await
        .unwrap();
    s.group_add_member(g1.object_id, g2.object_id)
        .await
        .unwrap();
    s.group_add_member(g2.object_id, u.object_id).await.unwrap();
    assert_eq!(
        s.group_add_member(g2.object_id, g1.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        s.group_add_member(g1.object_id, g1.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Conflict
    );
    assert_eq!(
        s.group_add_member(g1.object_id, ObjectId::new_random())
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        s.group_members(g1.object_id).await.unwrap(),
        vec![g2.object_id]
    );
    let mut above = vec![g1.object_id, g2.object_id];
    above.sort_by_key(|o| o.to_string());
    assert_eq!(s.transitive_groups(u.object_id).await.unwrap(), above);
    s.group_remove_member(g2.object_id, u.object_id)
        .await
        .unwrap();
    assert_eq!(
        s.group_remove_member(g2.object_id, u.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );

    let creds = [
        CredentialKind::Secret {
            digest: "d".into(),
            hint: "h".into(),
        },
        CredentialKind::Certificate {
            thumbprint: "AB".into(),
            public_key: vec![1, 2],
        },
        CredentialKind::Federated {
            issuer: "i".into(),
            subject: "s".into(),
            audiences: vec!["a".into()],
        },
    ];
    for (n, kind) in creds.iter().enumerate() {
        s.credential_add(&Credential {
            id: format!("c{n}"),
            principal_id: sp.object_id,
            display_name: "c".into(),
            kind: kind.clone(),
            starts_at: n as i64,
            expires_at: 9,
        })
        .await
        .unwrap();
    }
    let listed = s.credentials(sp.object_id).await.unwrap();
    assert_eq!(
        listed.iter().map(|c| c.kind.clone()).collect::<Vec<_>>(),
        creds.to_vec()
    );
    s.credential_replace_secrets(
        sp.object_id,
        &Credential {
            id: "new".into(),
            principal_id: sp.object_id,
            display_name: "c".into(),
            kind: creds[0].clone(),
            starts_at: 5,
            expires_at: 9,
        },
    )
    .await
    .unwrap();
    let ids: Vec<_> = s
        .credentials(sp.object_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["c1", "c2", "new"]);
    assert_eq!(
        s.credential_replace_secrets(
            ObjectId::new_random(),
            &Credential {
                id: "x".into(),
                principal_id: ObjectId::new_random(),
                display_name: "c".into(),
                kind: creds[0].clone(),
                starts_at: 5,
                expires_at: 9
            }
        )
        .await
        .unwrap_err()
        .kind(),
        ErrorKind::NotFound
    );
    s.directory_role_grant(u.object_id, "b").await.unwrap();
    s.directory_role_grant(u.object_id, "a").await.unwrap();
    s.directory_role_grant(u.object_id, "a").await.unwrap();
    assert_eq!(s.directory_roles(u.object_id).await.unwrap(), ["a", "b"]);
    s.principal_delete(sp.object_id).await.unwrap();
    assert!(s.credentials(sp.object_id).await.unwrap().is_empty());
    assert_eq!(
        s.principal_delete(sp.object_id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

pub(super) async fn concurrent_memberships_never_close_a_cycle<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    for _ in 0..20 {
        let a = principal(t, PrincipalKind::Group, "a");
        let b = principal(t, PrincipalKind::Group, "b");
        let c = principal(t, PrincipalKind::Group, "c");
        for g in [&a, &b, &c] {
            s.principal_create(g, None).await.unwrap();
        }
        // a ∋ b, b ∋ c, c ∋ a: all three at once; one at least must fail.
        let pairs = [
            (a.object_id, b.object_id),
            (b.object_id, c.object_id),
            (c.object_id, a.object_id),
        ];
        let tasks: Vec<_> = pairs
            .into_iter()
            .map(|(g, m)| {
                let s = Arc::clone(&s);
                tokio::spawn(async move { s.group_add_member(g, m).await })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => ok += 1,
                Err(e) => assert_eq!(e.kind(), ErrorKind::Conflict),
            }
        }
        assert_eq!(ok, 2);
    }
}

pub(super) async fn concurrent_secret_replacements_leave_one_secret<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let sp = principal(t, PrincipalKind::ServicePrincipal, "sp");
    s.principal_create(&sp, None).await.unwrap();
    for round in 0..10 {
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let s = Arc::clone(&s);
                let id = sp.object_id;
                tokio::spawn(async move {
                    s.credential_replace_secrets(
                        id,
                        &Credential {
                            id: format!("r{round}-{i}"),
                            principal_id: id,
                            display_name: "c".into(),
                            kind: CredentialKind::Secret {
                                digest: "d".into(),
                                hint: "h".into(),
                            },
                            starts_at: 0,
                            expires_at: 9,
                        },
                    )
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(s.credentials(sp.object_id).await.unwrap().len(), 1);
    }
}

pub(super) async fn signing_keys_refresh_tokens_and_device_codes_round_trip<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let u = principal(t, PrincipalKind::User, "u");
    s.principal_create(&u, None).await.unwrap();
    for (kid, at) in [("k1", 1), ("k2", 2), ("k3", 3)] {
        s.signing_key_add(&SealedSigningKey {
            kid: kid.into(),
            sealed: vec![at as u8],
            created_at: at,
        })
        .await
        .unwrap();
    }
    let kids: Vec<_> = s
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["k3", "k2", "k1"]);
    s.signing_keys_prune(2).await.unwrap();
    s.signing_key_reseal("k2", &[9, 9]).await.unwrap();
    let keys = s.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[1].sealed, vec![9, 9]);

    let grant = RefreshGrant {
        principal_id: u.object_id,
        tenant_id: t,
        client_id: "Client".into(),
        expires_at: 5,
    };
    s.refresh_token_add("r", &grant).await.unwrap();
    assert_eq!(
        s.refresh_token_add("r", &grant).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.refresh_token_take("r", "other").await.unwrap(), None);
    assert_eq!(
        s.refresh_token_take("r", "CLIENT").await.unwrap(),
        Some(grant.clone())
    );
    assert_eq!(s.refresh_token_take("r", "client").await.unwrap(), None);

    let code = DeviceCode {
        digest: "d".into(),
        user_code: "UC".into(),
        tenant_id: t,
        client_id: "c".into(),
        scope: "s".into(),
        expires_at: 10,
        approved_by: None,
    };
    s.device_code_add(&code).await.unwrap();
    assert_eq!(
        s.device_code_by_user_code("UC").await.unwrap(),
        Some(code.clone())
    );
    assert_eq!(s.device_code_poll("d").await.unwrap(), Some(code.clone()));
    assert_eq!(s.device_code_poll("d").await.unwrap(), Some(code.clone()));
    assert_eq!(s.device_code_poll("nope").await.unwrap(), None);
    s.device_code_approve("UC", u.object_id).await.unwrap();
    assert_eq!(
        s.device_code_approve("UC", u.object_id)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    let approved = s.device_code_poll("d").await.unwrap().unwrap();
    assert_eq!(approved.approved_by, Some(u.object_id));
    assert_eq!(s.device_code_poll("d").await.unwrap(), None);

    let auth = AuthorizationCode {
        digest: "a".into(),
        tenant_id: t,
        principal_id: u.object_id,
        client_id: "c".into(),
        scope: "s".into(),
        redirect_uri: "r".into(),
        code_challenge: "x".into(),
        nonce: Some("n".into()),
        expires_at: 5,
    };
    s.authorization_code_add(&auth).await.unwrap();
    assert_eq!(s.authorization_code_take("a").await.unwrap(), Some(auth));
    assert_eq!(s.authorization_code_take("a").await.unwrap(), None);

    assert_eq!(s.setting("k").await.unwrap(), None);
    s.setting_set("k", "1").await.unwrap();
    s.setting_set("k", "2").await.unwrap();
    assert_eq!(s.setting("k").await.unwrap().as_deref(), Some("2"));
}

pub(super) async fn a_token_or_code_is_taken_by_one_caller_only<S: MetaStore>(s: S) {
    let s = Arc::new(s);
    let t = new_tenant(&*s).await;
    let u = principal(t, PrincipalKind::User, "u");
    s.principal_create(&u, None).await.unwrap();
    for round in 0..20 {
        let digest = format!("d{round}");
        s.refresh_token_add(
            &digest,
            &RefreshGrant {
                principal_id: u.object_id,
                tenant_id: t,
                client_id: "c".into(),
                expires_at: 5,
            },
        )
        .await
        .unwrap();
        s.device_code_add(&DeviceCode {
            digest: digest.clone(),
            user_code: format!("U{round}"),
            tenant_id: t,
            client_id: "c".into(),
            scope: "s".into(),
            expires_at: 10,
            approved_by: None,
        })
        .await
        .unwrap();
        s.device_code_approve(&format!("U{round}"), u.object_id)
            .await
            .unwrap();
        s.authorization_code_add(&AuthorizationCode {
            digest: digest.clone(),
            tenant_id: t,
            principal_id: u.object_id,
            client_id: "c".into(),
            scope: "s".into(),
            redirect_uri: "r".into(),
            code_challenge: "x".into(),
            nonce: None,
            expires_at: 5,
        })
        .await
        .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = Arc::clone(&s);
                let digest = digest.clone();
                tokio::spawn(async move {
                    (
                        s.refresh_token_take(&digest, "c").await.unwrap().is_some() as u32,
                        s.device_code_poll(&digest).await.unwrap().is_some() as u32,
                        s.authorization_code_take(&digest).await.unwrap().is_some() as u32,
                    )
                })
            })
            .collect();
        let mut sums = (0, 0, 0);
        for task in tasks {
            let (a, b, c) = task.await.unwrap();
            sums = (sums.0 + a, sums.1 + b, sums.2 + c);
        }
        assert_eq!(sums, (1, 1, 1));
    }
    assert_eq!(s.device_codes_expire(100).await.unwrap(), 0);
}

pub(super) async fn a_key_is_used_once_until_it_expires_and_by_one_caller<S: MetaStore>(s: S) {
    assert!(s.use_once("app:jti-1", 100, 200).await.unwrap());
    assert!(!s.use_once("app:jti-1", 150, 250).await.unwrap());
    assert!(s.use_once("app:jti-2", 150, 250).await.unwrap());
    // Expired: it may be used again (a new assertion that reuses an old `jti`).
    assert!(s.use_once("app:jti-1", 200, 300).await.unwrap());
    assert!(!s.use_once("app:jti-1", 250, 300).await.unwrap());
    // Eight callers at once: one is first.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.use_once("app:race", 100, 200).await.unwrap() })
        })
        .collect();
    let mut firsts = 0;
    for task in tasks {
        firsts += usize::from(task.await.unwrap());
    }
    assert_eq!(firsts, 1);
    assert_eq!(s.used_once_expire(260).await.unwrap(), 2);
    assert!(!s.use_once("app:jti-1", 260, 400).await.unwrap());
    assert!(s.use_once("app:jti-2", 260, 400).await.unwrap());
}

pub(super) async fn sign_in_failures_lock_at_the_threshold_within_the_window_and_all_count<
    S: MetaStore,
>(
    s: S,
) {
    // Threshold 3 within 60 s locks for 30 s.
    assert!(s.sign_in_failed("name:a", 100, 60, 3, 30).await.unwrap() <= 100);
    assert!(s.sign_in_failed("name:a", 110, 60, 3, 30).await.unwrap() <= 110);
    assert_eq!(
        s.sign_in_failed("name:a", 120, 60, 3, 30).await.unwrap(),
        150
    );
    assert_eq!(s.sign_in_locked_until("name:a").await.unwrap(), 150);
    assert_eq!(s.sign_in_locked_until("name:b").await.unwrap(), 0);
    // Failures a window apart do not add up.
    assert!(s.sign_in_failed("name:c", 100, 60, 3, 30).await.unwrap() <= 100);
    assert!(s.sign_in_failed("name:c", 130, 60, 3, 30).await.unwrap() <= 130);
    assert!(s.sign_in_failed("name:c", 161, 60, 3, 30).await.unwrap() <= 161);
    assert!(s.sign_in_failed("name:c", 170, 60, 3, 30).await.unwrap() <= 170);
    // A right password forgets them.
    s.sign_in_forget("name:c").await.unwrap();
    assert_eq!(s.sign_in_locked_until("name:c").await.unwrap(), 0);
    assert!(s.sign_in_failed("name:c", 171, 60, 3, 30).await.unwrap() <= 171);
    // Forty failures at once, as from several servers: all count.
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.sign_in_failed("addr:x", 500, 60, 40, 30).await.unwrap() })
        })
        .collect();
    let mut locked = 0;
    for task in tasks {
        locked += usize::from(task.await.unwrap() == 530);
    }
    assert_eq!(locked, 1, "exactly the fortieth failure locks");
    assert_eq!(s.sign_in_locked_until("addr:x").await.unwrap(), 530);
    // Old failures whose locks ended are forgotten; a live lock stays.
    assert_eq!(s.sign_in_failures_expire(400, 200).await.unwrap(), 2);
    assert_eq!(s.sign_in_locked_until("name:a").await.unwrap(), 0);
    assert_eq!(s.sign_in_locked_until("addr:x").await.unwrap(), 530);
}

pub(super) async fn device_codes_nobody_approved_are_deleted_once_expired<S: MetaStore>(store: S) {
    let tenant = tenant(&store).await;
    for (n, expires_at) in [(1, 100), (2, 200)] {
        store
            .device_code_add(&crate::meta::DeviceCode {
                digest: format!("d{n}"),
                user_code: format!("U{n}"),
                tenant_id: tenant,
                client_id: "c".into(),
                scope: "s".into(),
                expires_at,
                approved_by: None,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.device_codes_expire(150).await.unwrap(), 1);
    assert!(
        store
            .device_code_by_user_code("U1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .device_code_by_user_code("U2")
            .await
            .unwrap()
            .is_some()
    );
}

pub(super) async fn a_credential_is_removed_alone_and_only_from_its_principal<S: MetaStore>(
    store: S,
) {
    use crate::meta::{Credential, CredentialKind};
    use keyless_core::{ClientId, ObjectId, Principal, PrincipalKind};
    let tenant = tenant(&store).await;
    let sp = |name: &str| Principal {
        object_id: ObjectId::new_random(),
        tenant_id: tenant,
        kind: PrincipalKind::ServicePrincipal,
        display_name: name.into(),
        user_principal_name: None,
        app_id: Some(ClientId::new_random()),
        enabled: true,
        resource_id: None,
        created_at: 0,
    };
    let (a, b) = (sp("a"), sp("b"));
    store.principal_create(&a, None).await.unwrap();
    store.principal_create(&b, None).await.unwrap();
    let secret = |owner: &Principal, id: &str| Credential {
        id: id.into(),
        principal_id: owner.object_id,
        display_name: id.into(),
        kind: CredentialKind::Secret {
            digest: "d".into(),
            hint: "abc".into(),
        },
        starts_at: 0,
        expires_at: 10,
    };
    store.credential_add(&secret(&a, "a1")).await.unwrap();
    store.credential_add(&secret(&a, "a2")).await.unwrap();
    store.credential_add(&secret(&b, "b1")).await.unwrap();

    // Another principal's credential id removes nothing.
    assert!(!store.credential_remove(a.object_id, "b1").await.unwrap());
    assert!(store.credential_remove(a.object_id, "a1").await.unwrap());
    assert!(!store.credential_remove(a.object_id, "a1").await.unwrap());
    let left: Vec<String> = store
        .credentials(a.object_id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["a2"]);
    assert_eq!(store.credentials(b.object_id).await.unwrap().len(), 1);
}

pub(super) async fn an_authorization_code_is_taken_once_and_expires<S: MetaStore>(store: S) {
    use crate::meta::AuthorizationCode;
    let tenant = tenant(&store).await;
    let code = |digest: &str, expires_at| AuthorizationCode {
        digest: digest.into(),
        tenant_id: tenant,
        principal_id: keyless_core::ObjectId::new_random(),
        client_id: "c".into(),
        scope: "s".into(),
        redirect_uri: "http://localhost:1".into(),
        code_challenge: "x".into(),
        nonce: None,
        expires_at,
    };
    store.authorization_code_add(&code("a", 100)).await.unwrap();
    store.authorization_code_add(&code("b", 200)).await.unwrap();
    let taken = store.authorization_code_take("a").await.unwrap().unwrap();
    assert_eq!(taken.redirect_uri, "http://localhost:1");
    assert_eq!(store.authorization_code_take("a").await.unwrap(), None);
    assert_eq!(store.authorization_codes_expire(150).await.unwrap(), 0);
    assert_eq!(store.authorization_codes_expire(250).await.unwrap(), 1);
    assert_eq!(store.authorization_code_take("b").await.unwrap(), None);
}
