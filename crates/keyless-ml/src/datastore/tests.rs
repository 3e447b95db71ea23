use serde_json::json;

use super::*;

#[test]
fn names_are_lowercase_digits_and_underscores() {
    for ok in ["mydata", "blob_credless", "a1"] {
        assert!(validate_name(ok).is_ok(), "{ok}");
    }
    for bad in ["my-data", "MyData", "", "a b"] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_stored_body_never_holds_the_secret() -> Result<(), Error> {
    let props = json!({
        "datastoreType": "AzureDataLakeGen2", "accountName": "lake1", "filesystem": "raw",
        "credentials": { "credentialsType": "ServicePrincipal", "tenantId": "t", "clientId": "c",
                         "secrets": { "secretsType": "ServicePrincipal", "clientSecret": "hunter2" } },
    });
    let (store, secret) = Datastore::from_rest("adls_sp", &props)?;
    assert_eq!(store.credential, StoredCredential::ServicePrincipal);
    let secret = secret.ok_or_else(|| Error::invalid("no secret"))?;
    assert_eq!(
        secret.to_rest(),
        json!({ "secretsType": "ServicePrincipal", "clientSecret": "hunter2" })
    );
    assert!(!format!("{secret:?}").contains("hunter2"));
    let rest = store.to_rest(false);
    assert!(!rest.to_string().contains("hunter2"));
    assert_eq!(rest["credentials"]["clientId"], "c");
    assert_eq!(rest["endpoint"], "core.windows.net");
    Ok(())
}

#[test]
fn protocols_and_preview_identity_are_checked() {
    let with = |extra: serde_json::Value| {
        let mut p = json!({ "datastoreType": "AzureBlob", "accountName": "acct1", "containerName": "data" });
        if let (Some(m), Some(e)) = (p.as_object_mut(), extra.as_object()) {
            m.extend(e.clone());
        }
        Datastore::from_rest("d", &p)
    };
    assert!(with(json!({ "protocol": "abfss" })).is_err());
    assert!(with(json!({ "protocol": "wasbs" })).is_ok());
    assert!(with(json!({ "serviceDataAccessAuthIdentity": "Everyone" })).is_err());
    let ws = with(json!({ "serviceDataAccessAuthIdentity": "WorkspaceSystemAssignedIdentity" }));
    assert_eq!(
        ws.map(|(d, _)| d.workspace_access).ok(),
        Some(WorkspaceAccess::SystemAssigned)
    );
    assert!(with(json!({ "accountName": "Bad-Name" })).is_err());
}

#[test]
fn a_stored_body_reads_back_without_its_secret() -> Result<(), Error> {
    let props = json!({
        "datastoreType": "AzureBlob", "accountName": "acct1", "containerName": "data",
        "credentials": { "credentialsType": "AccountKey", "secrets": { "secretsType": "AccountKey", "key": "k" } },
    });
    let (store, _) = Datastore::from_rest("blob_key", &props)?;
    let back = Datastore::from_stored("blob_key", &store.to_rest(false))?;
    assert_eq!(back.credential, StoredCredential::AccountKey);
    // A new credential without its secret is still refused.
    assert!(Datastore::from_rest("blob_key", &store.to_rest(false)).is_err());
    Ok(())
}
