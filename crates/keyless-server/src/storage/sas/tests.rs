//! Signatures of every SAS layout keyless verifies, and what each reaches.

use super::*;

#[test]
fn a_snapshot_sas_reaches_the_snapshot_it_signs_and_nothing_else() {
    let keys = [vec![3u8; 32], vec![4u8; 32]];
    let now = 1_800_000_100;
    let (st, se) = (iso(1_800_000_000), iso(1_800_003_600));
    let shot = "2027-01-15T08:00:00.0000000Z";
    let text = [
        "r",
        &st,
        &se,
        "/blob/acct/data/a.csv",
        "",
        "",
        "",
        "2020-12-06",
        "bs",
        shot,
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = keyless_auth::shared_key::sign(&keys[0], &text);
    let query = |snapshot: Option<&str>| -> Vec<(String, String)> {
        let mut q: Vec<(String, String)> = [
            ("sp", "r"),
            ("st", st.as_str()),
            ("se", se.as_str()),
            ("sv", "2020-12-06"),
            ("sr", "bs"),
            ("sig", sig.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        q.extend(snapshot.map(|s| ("snapshot".to_owned(), s.to_owned())));
        q
    };
    let at = |q: &[(String, String)]| verify_sas("acct", ("data", "a.csv"), &keys, q, now, None);
    assert!(at(&query(Some(shot))).is_ok());
    assert!(at(&query(None)).is_err(), "the blob itself");
    assert!(
        at(&query(Some("2027-01-15T08:00:01.0000000Z"))).is_err(),
        "another snapshot"
    );
}

#[test]
fn older_versions_verify_with_the_fields_they_sign_and_nothing_else() {
    let keys = [vec![7u8; 32], vec![9u8; 32]];
    let now = 1_800_000_100;
    let (st, se) = (iso(1_800_000_000), iso(1_800_003_600));
    let canonical = "/blob/acct/data/a.csv";
    // 2016-05-31: no `sr`, no snapshot time, no encryption scope in the text.
    let text = [
        "r",
        &st,
        &se,
        canonical,
        "",
        "",
        "",
        "2016-05-31",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = keyless_auth::shared_key::sign(&keys[0], &text);
    let fields = |sp: &str, sv: &str, sr: &str| -> Vec<(String, String)> {
        [
            ("sp", sp),
            ("st", &st),
            ("se", &se),
            ("sv", sv),
            ("sr", sr),
            ("sig", &sig),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let at = |q: &[(String, String)], blob: &str| {
        verify_sas("acct", ("data", blob), &keys, q, now, None)
    };
    let sas = at(&fields("r", "2016-05-31", "b"), "a.csv").unwrap();
    assert!(sas.grants('r') && !sas.grants('w'));
    assert!(
        at(&fields("rw", "2016-05-31", "b"), "a.csv").is_err(),
        "a letter added"
    );
    assert!(
        at(&fields("r", "2020-12-06", "b"), "a.csv").is_err(),
        "another version's layout"
    );
    assert!(
        at(&fields("r", "2016-05-31", "c"), "a.csv").is_err(),
        "widened to the container"
    );
    assert!(
        at(&fields("r", "2016-05-31", "b"), "b.csv").is_err(),
        "another blob"
    );
    assert!(
        at(&fields("r", "2014-02-14", "b"), "a.csv").is_err(),
        "older than 2015-04-05"
    );

    // An account SAS of 2016-05-31 signs no encryption scope.
    let text = ["acct", "rl", "b", "sco", &st, &se, "", "", "2016-05-31", ""].join("\n");
    let sig = keyless_auth::shared_key::sign(&keys[1], &text);
    let q: Vec<(String, String)> = [
        ("sp", "rl"),
        ("ss", "b"),
        ("srt", "sco"),
        ("st", st.as_str()),
        ("se", se.as_str()),
        ("sv", "2016-05-31"),
        ("sig", sig.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert!(at(&q, "a.csv").is_ok_and(|s| s.grants('l')));
    let mut with_scope = q.clone();
    with_scope.push(("ses".into(), "scope".into()));
    assert!(
        at(&with_scope, "a.csv").is_ok(),
        "an unsigned field of a later version changes nothing it grants"
    );

    // A user delegation SAS keeps its 2020-12-06 floor.
    let mut delegated = fields("r", "2019-12-12", "b");
    delegated.push((
        "skoid".into(),
        "00000000-0000-0000-0000-000000000001".into(),
    ));
    let err = at(&delegated, "a.csv").unwrap_err();
    assert!(format!("{err:?}").contains("2020-12-06"), "{err:?}");
}

#[test]
fn a_server_signed_container_sas_verifies_and_is_bounded_to_its_container() {
    let keys = [vec![7u8; 32], vec![9u8; 32]];
    let grant = ContainerGrant {
        account: "acct",
        container: "code-1",
        oid: "00000000-0000-0000-0000-000000000001",
        tid: "00000000-0000-0000-0000-000000000002",
        permissions: "racw",
        start: 1_800_000_000,
        expiry: 1_800_003_600,
    };
    let query: Vec<(String, String)> = sign_container_delegation(&keys[0], grant)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            (k.to_owned(), v.into_owned())
        })
        .collect();
    let sas = verify_sas(
        "acct",
        ("code-1", "src/a.py"),
        &keys,
        &query,
        1_800_000_100,
        None,
    );
    assert!(sas.is_ok_and(|s| s.delegator.is_some()));
    let other = verify_sas(
        "acct",
        ("other", "a.py"),
        &keys,
        &query,
        1_800_000_100,
        None,
    );
    assert!(other.is_err(), "the SAS names one container");
    let late = verify_sas(
        "acct",
        ("code-1", "a.py"),
        &keys,
        &query,
        1_800_003_700,
        None,
    );
    assert!(late.is_err(), "the SAS expires");
}

fn decode(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| {
            let v = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
            (k.to_owned(), v.into_owned())
        })
        .collect()
}

#[test]
fn a_server_signed_blob_sas_reaches_its_blob_alone_with_its_permissions_alone() {
    let keys = [vec![7u8; 32], vec![9u8; 32]];
    let query = decode(&sign_blob(
        &keys[1],
        ("acct", "data", "in/a b.csv"),
        "r",
        1_800_000_000,
        1_800_000_900,
    ));
    let at = |blob: &str, now: i64| verify_sas("acct", ("data", blob), &keys, &query, now, None);
    let sas = at("in/a b.csv", 1_800_000_100);
    assert!(sas.as_ref().is_ok_and(|s| s.grants('r') && !s.grants('w')));
    assert!(
        sas.is_ok_and(|s| s.needs("w").is_err()),
        "a read SAS writes nothing"
    );
    assert!(at("in/other.csv", 1_800_000_100).is_err(), "another blob");
    assert!(at("in/a b.csv", 1_800_001_000).is_err(), "past its expiry");
    let forged: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| {
            let v = if k == "sp" {
                "rw".to_owned()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    assert!(
        verify_sas(
            "acct",
            ("data", "in/a b.csv"),
            &keys,
            &forged,
            1_800_000_100,
            None
        )
        .is_err(),
        "widened permissions break the signature"
    );
}
