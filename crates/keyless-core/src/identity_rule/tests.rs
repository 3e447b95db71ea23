//! The rules as a table, written from Azure ML's documents (the reference's
//! "which identity is used" section), one row per case.

use super::*;

fn mi(object_id: &str, system_assigned: bool) -> ManagedIdentity {
    ManagedIdentity {
        object_id: object_id.into(),
        client_id: format!("client-{object_id}"),
        system_assigned,
    }
}

fn cluster_sai() -> Compute {
    Compute::Target {
        name: "cpu-cluster".into(),
        system_assigned: Some(mi("sai", true)),
        user_assigned: vec![],
    }
}

fn cluster_uais() -> Compute {
    Compute::Target {
        name: "cpu-cluster".into(),
        system_assigned: None,
        user_assigned: vec![mi("uai1", false), mi("uai2", false)],
    }
}

fn cluster_none() -> Compute {
    Compute::Target {
        name: "bare".into(),
        system_assigned: None,
        user_assigned: vec![],
    }
}

fn serverless() -> Compute {
    Compute::Serverless {
        workspace_user_assigned: vec![mi("wsuai", false)],
    }
}

fn managed(client: Option<&str>) -> JobIdentity {
    JobIdentity::Managed {
        client_id: client.map(str::to_owned),
        object_id: None,
    }
}

/// What the row expects: a reader, or a refusal containing the given words.
#[derive(Debug)]
enum Want {
    Reads(Reader),
    Refused(&'static str),
}

#[test]
fn the_documented_table_holds() {
    use StoredCredential as C;
    use Want::{Reads, Refused};
    let rows: Vec<(&str, C, JobIdentity, Compute, Want)> = vec![
        // 1. Stored credentials win, whatever the job asks for.
        (
            "key + user",
            C::AccountKey,
            JobIdentity::User,
            cluster_sai(),
            Reads(Reader::Credential(C::AccountKey)),
        ),
        (
            "sas + managed",
            C::Sas,
            managed(None),
            cluster_uais(),
            Reads(Reader::Credential(C::Sas)),
        ),
        (
            "sp + absent",
            C::ServicePrincipal,
            JobIdentity::Absent,
            cluster_none(),
            Reads(Reader::Credential(C::ServicePrincipal)),
        ),
        (
            "cert + aml_token",
            C::Certificate,
            JobIdentity::AmlToken,
            serverless(),
            Reads(Reader::Credential(C::Certificate)),
        ),
        // 2a. user_identity reads as the submitting user, on any compute.
        (
            "none + user on SAI cluster",
            C::None,
            JobIdentity::User,
            cluster_sai(),
            Reads(Reader::SubmittingUser),
        ),
        (
            "none + user on bare cluster",
            C::None,
            JobIdentity::User,
            cluster_none(),
            Reads(Reader::SubmittingUser),
        ),
        (
            "none + user serverless",
            C::None,
            JobIdentity::User,
            serverless(),
            Reads(Reader::SubmittingUser),
        ),
        // 2b. managed: default MI (SAI, else first UAI), or the UAI named by client id.
        (
            "none + managed on SAI cluster",
            C::None,
            managed(None),
            cluster_sai(),
            Reads(Reader::Managed(mi("sai", true))),
        ),
        (
            "none + managed on UAI cluster",
            C::None,
            managed(None),
            cluster_uais(),
            Reads(Reader::Managed(mi("uai1", false))),
        ),
        (
            "none + managed client_id uai2",
            C::None,
            managed(Some("client-uai2")),
            cluster_uais(),
            Reads(Reader::Managed(mi("uai2", false))),
        ),
        (
            "none + managed unknown client_id",
            C::None,
            managed(Some("client-other")),
            cluster_uais(),
            Refused("not a user-assigned identity attached"),
        ),
        (
            "none + managed client_id of the SAI",
            C::None,
            managed(Some("client-sai")),
            cluster_sai(),
            Refused("not a user-assigned identity attached"),
        ),
        (
            "none + managed on bare cluster",
            C::None,
            managed(None),
            cluster_none(),
            Refused("has none"),
        ),
        (
            "none + managed serverless",
            C::None,
            managed(None),
            serverless(),
            Reads(Reader::Managed(mi("wsuai", false))),
        ),
        // 2c. identity omitted: the compute's default MI.
        (
            "none + absent on SAI cluster",
            C::None,
            JobIdentity::Absent,
            cluster_sai(),
            Reads(Reader::Managed(mi("sai", true))),
        ),
        (
            "none + absent on UAI cluster",
            C::None,
            JobIdentity::Absent,
            cluster_uais(),
            Reads(Reader::Managed(mi("uai1", false))),
        ),
        (
            "none + absent on bare cluster",
            C::None,
            JobIdentity::Absent,
            cluster_none(),
            Refused("has none"),
        ),
        // Unconfirmed in the documents; keyless's stated choices.
        (
            "none + absent serverless",
            C::None,
            JobIdentity::Absent,
            serverless(),
            Reads(Reader::SubmittingUser),
        ),
        (
            "none + aml_token",
            C::None,
            JobIdentity::AmlToken,
            cluster_sai(),
            Refused("aml_token"),
        ),
    ];
    for (case, credential, job, compute, want) in rows {
        let got = job_data_reader(credential, &job, &compute);
        match (&want, &got) {
            (Want::Reads(reader), Ok(choice)) => assert_eq!(&choice.reader, reader, "{case}"),
            (Want::Refused(words), Err(refusal)) => {
                assert!(refusal.0.contains(words), "{case}: {refusal}");
            }
            _ => panic!("{case}: wanted {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_job_never_mixes_user_and_managed_identity() {
    // Whatever the compute offers, user_identity never yields a managed identity,
    // and managed never yields the user.
    for compute in [cluster_sai(), cluster_uais(), cluster_none(), serverless()] {
        if let Ok(c) = job_data_reader(StoredCredential::None, &JobIdentity::User, &compute) {
            assert_eq!(c.reader, Reader::SubmittingUser);
        }
        if let Ok(c) = job_data_reader(StoredCredential::None, &managed(None), &compute) {
            assert!(matches!(c.reader, Reader::Managed(_)), "{compute:?}");
        }
    }
}

#[test]
fn preview_follows_the_datastore_toggle() {
    use PreviewReader as P;
    use StoredCredential as C;
    use WorkspaceAccess as W;
    // The service-side preview column: credential/none × workspace MSI on/off.
    let rows = [
        (
            C::AccountKey,
            W::SystemAssigned,
            P::Workspace(W::SystemAssigned),
        ),
        (C::None, W::SystemAssigned, P::Workspace(W::SystemAssigned)),
        (C::None, W::UserAssigned, P::Workspace(W::UserAssigned)),
        (C::Sas, W::Off, P::Credential(C::Sas)),
        (C::None, W::Off, P::Caller),
    ];
    for (credential, access, want) in rows {
        assert_eq!(
            preview_reader(credential, access).0,
            want,
            "{credential:?} {access:?}"
        );
    }
}

#[test]
fn default_identity_is_the_sai_else_the_first_uai() {
    let both = Compute::Target {
        name: "c".into(),
        system_assigned: Some(mi("sai", true)),
        user_assigned: vec![mi("uai1", false)],
    };
    assert_eq!(both.default_identity(), Some(&mi("sai", true)));
    assert_eq!(cluster_uais().default_identity(), Some(&mi("uai1", false)));
    assert_eq!(cluster_none().default_identity(), None);
}
