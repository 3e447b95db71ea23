//! Registries: blobs, manifests, tags and uploads.

use super::*;

pub(super) async fn registries_keep_blobs_manifests_tags_and_uploads<S: MetaStore>(s: S) {
    let t = new_tenant(&s).await;
    let r = Registry {
        name: "acr1".into(),
        id: "/x".into(),
        tenant_id: t,
        subscription_id: "sub".into(),
        resource_group: "RG".into(),
        location: "l".into(),
        body: serde_json::json!({"properties": {"adminUserEnabled": false}}),
        password1: vec![1, 2],
        password2: vec![3],
        created_at: 7,
    };
    s.registry_create(&r).await.unwrap();
    assert_eq!(
        s.registry_create(&r).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(s.registry("acr1").await.unwrap(), Some(r.clone()));
    assert_eq!(s.registries("sub", Some("rg")).await.unwrap().len(), 1);
    assert!(s.registries("sub", Some("other")).await.unwrap().is_empty());
    let changed = Registry {
        password1: vec![9],
        body: serde_json::json!({"properties": {"adminUserEnabled": true}}),
        ..r.clone()
    };
    s.registry_update(&changed).await.unwrap();
    assert_eq!(s.registry("acr1").await.unwrap(), Some(changed));

    // A digest is stored once per registry: a second push keeps the first file.
    let blob = RegistryBlob {
        registry: "acr1".into(),
        digest: "sha256:aa".into(),
        file_id: "f1".into(),
        size: 10,
        created_at: 1,
    };
    assert_eq!(s.registry_blob_add(&blob, "app").await.unwrap(), blob);
    let again = RegistryBlob {
        file_id: "f2".into(),
        ..blob.clone()
    };
    assert_eq!(s.registry_blob_add(&again, "other").await.unwrap(), blob);
    assert!(s.file_ids().await.unwrap().contains("f1"));
    // A repository sees a blob only once it was pushed or mounted there.
    assert!(
        s.registry_repository_blob("acr1", "third", "sha256:aa")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.registry_blob_link("acr1", "third", "sha256:aa")
            .await
            .unwrap()
    );
    assert!(
        !s.registry_blob_link("acr1", "third", "sha256:bb")
            .await
            .unwrap()
    );
    assert_eq!(
        s.registry_repository_blob("acr1", "third", "sha256:aa")
            .await
            .unwrap(),
        Some(blob.clone())
    );
    assert!(
        s.registry_blob_unlink("acr1", "third", "sha256:aa")
            .await
            .unwrap()
    );
    assert!(
        !s.registry_blob_unlink("acr1", "third", "sha256:aa")
            .await
            .unwrap()
    );
    assert!(
        s.registry_blob("acr1", "sha256:aa")
            .await
            .unwrap()
            .is_some()
    );

    let m = Manifest {
        registry: "acr1".into(),
        repository: "app".into(),
        digest: "sha256:m1".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        body: b"{}".to_vec(),
        created_at: 2,
    };
    s.registry_manifest_put(&m, Some("v1")).await.unwrap();
    s.registry_manifest_put(&m, Some("latest")).await.unwrap();
    let m2 = Manifest {
        digest: "sha256:m2".into(),
        created_at: 3,
        ..m.clone()
    };
    s.registry_manifest_put(&m2, Some("latest")).await.unwrap();
    let tags = s.registry_tags("acr1", "app").await.unwrap();
    let named: Vec<_> = tags
        .iter()
        .map(|t| (t.name.as_str(), t.digest.as_str()))
        .collect();
    assert_eq!(named, [("latest", "sha256:m2"), ("v1", "sha256:m1")]);
    assert_eq!(
        s.registry_manifest("acr1", "app", "sha256:m1")
            .await
            .unwrap(),
        Some(m.clone())
    );
    assert!(
        s.registry_manifest("acr1", "other", "sha256:m1")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.registry_manifests("acr1", "app").await.unwrap(),
        [m.clone(), m2.clone()]
    );
    assert_eq!(s.registry_repositories("acr1").await.unwrap(), ["app"]);
    // Deleting a manifest takes its tags; deleting a tag leaves the manifest.
    assert!(
        s.registry_manifest_delete("acr1", "app", "sha256:m1")
            .await
            .unwrap()
    );
    assert!(s.registry_tag("acr1", "app", "v1").await.unwrap().is_none());
    assert!(
        s.registry_tag_delete("acr1", "app", "latest")
            .await
            .unwrap()
    );
    assert!(
        !s.registry_tag_delete("acr1", "app", "latest")
            .await
            .unwrap()
    );
    assert!(
        s.registry_manifest("acr1", "app", "sha256:m2")
            .await
            .unwrap()
            .is_some()
    );

    // An upload advances only from the size its writer saw.
    let u = Upload {
        id: "u1".into(),
        registry: "acr1".into(),
        repository: "app".into(),
        file_id: String::new(),
        size: 0,
        created_at: 5,
    };
    s.registry_upload_create(&u).await.unwrap();
    assert!(
        s.registry_upload_advance("acr1", "u1", 0, "p1", 4)
            .await
            .unwrap()
    );
    assert!(
        !s.registry_upload_advance("acr1", "u1", 0, "p2", 4)
            .await
            .unwrap()
    );
    assert!(s.registry_upload("acr2", "u1").await.unwrap().is_none());
    assert_eq!(
        s.registry_upload("acr1", "u1")
            .await
            .unwrap()
            .map(|u| u.size),
        Some(4)
    );
    assert!(s.file_ids().await.unwrap().contains("p1"));
    s.registry_upload_create(&Upload {
        id: "u2".into(),
        file_id: "p3".into(),
        created_at: 100,
        ..u.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.registry_uploads_expire(50).await.unwrap(), ["p1"]);
    assert!(s.registry_upload("acr1", "u1").await.unwrap().is_none());

    // Deleting the registry gives back every file it held.
    assert!(s.registry_repository_delete("acr1", "app").await.unwrap());
    assert!(s.registry_repositories("acr1").await.unwrap().is_empty());
    let mut files = s.registry_delete("acr1").await.unwrap().unwrap();
    files.sort();
    assert_eq!(files, ["f1", "p3"]);
    assert!(s.registry("acr1").await.unwrap().is_none());
    assert!(s.registry_delete("acr1").await.unwrap().is_none());
    assert!(!s.file_ids().await.unwrap().contains("f1"));
}
