use std::time::Duration;

use super::files::CURRENT;
use super::*;

/// Every record of account `a`.
fn all_of_a() -> Filter {
    Filter {
        account: "a".into(),
        ..Filter::default()
    }
}

fn record(account: &str, path: &str, status: u16, upn: Option<&str>) -> Record {
    Record {
        time_generated: "2026-11-22T10:00:00Z".into(),
        account_name: account.into(),
        path: path.into(),
        status_code: status,
        requester_upn: upn.map(Into::into),
        requester_object_id: upn.map(|_| "oid-1".into()),
        ..Record::default()
    }
}

#[test]
fn caller_addresses_read_as_display_writes_them() {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut addresses: Vec<IpAddr> = (0..=255u8)
        .map(|o| IpAddr::V4(Ipv4Addr::new(o, 255 - o, o / 10, o % 100)))
        .collect();
    addresses.extend([
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V4(Ipv4Addr::BROADCAST),
        IpAddr::V4(Ipv4Addr::new(10, 0, 100, 9)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
    ]);
    for ip in addresses {
        assert_eq!(caller_ip(ip), ip.to_string());
    }
}

#[test]
fn a_record_is_written_as_serde_json_writes_it() {
    let full = Record {
        time_generated: "2026-11-22T10:00:00Z".into(),
        account_name: "acct".into(),
        operation_name: "GetBlob".into(),
        method: "GET".into(),
        path: "data/dir/a b.csv".into(),
        status_code: 403,
        status_text: "AuthorizationPermissionMismatch".into(),
        authentication_type: "OAuth".into(),
        requester_object_id: Some("6f0c1a52-0000-4000-8000-000000000001".into()),
        requester_tenant_id: Some("72f988bf-0000-4000-8000-000000000002".into()),
        requester_app_id: Some("app".into()),
        requester_upn: Some("ann@t.local".into()),
        requester_principal_type: Some("User".into()),
        job_id: Some("job-1".into()),
        caller_ip_address: "127.0.0.1".into(),
        request_body_size: u64::MAX,
        response_body_size: 4096,
        duration_ms: 0.123_456_7,
        correlation_id: "1c5c7a3e-0000-4000-8000-000000000003".into(),
        explanation: Some("ann may not read: no assignment".into()),
    };
    // Whatever a path or an explanation holds: quotes, backslashes, every
    // control character, DEL, non-ASCII text, and escapes past a vector's width.
    let controls: String = (0u8..0x20).map(char::from).collect();
    let tricky = [
        "say \"hi\"",
        "C:\\dir\\file",
        controls.as_str(),
        "\u{7f}caf\u{e9} \u{1f600} \u{2028}\u{2029} \u{20ac}",
        "a long plain path that fills more than one vector register, then a \" at its end\"",
        "",
    ];
    let mut records = vec![Record::default(), full.clone()];
    for text in tricky {
        records.push(Record {
            path: text.into(),
            explanation: Some(text.into()),
            requester_upn: Some(text.into()),
            duration_ms: 1e-7,
            ..full.clone()
        });
    }
    records.push(Record {
        duration_ms: 12_345.678,
        ..Record::default()
    });
    for record in records {
        let mut ours = Vec::new();
        record.write_json(&mut ours);
        // serde_json's bytes, the line separators escaped: one line per record.
        assert_eq!(
            String::from_utf8(ours.clone()).unwrap(),
            escape_line_separators(serde_json::to_string(&record).unwrap())
        );
        assert!(!String::from_utf8_lossy(&ours).contains(['\u{2028}', '\u{2029}']));
        let back: Record = serde_json::from_slice(&ours).unwrap();
        assert_eq!(back, record);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_durable_filtered_and_survive_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = StorageLog::open(dir.path()).unwrap();
    log.append(record("a", "data/x.csv", 200, Some("ann@t.local")))
        .await;
    log.append(record("a", "data/y.csv", 403, Some("bob@t.local")))
        .await;
    log.append(record("b", "data/x.csv", 200, None)).await;
    log.flush().await;
    // Rotate by hand, as the size limit would; both files are read, in order.
    std::fs::rename(dir.path().join(CURRENT), dir.path().join("storage-1.jsonl")).unwrap();
    let log = StorageLog::open(dir.path()).unwrap();
    log.append(record("a", "other/z", 201, Some("ann@t.local")))
        .await;
    filters_hold(&log).await;
}

/// Records that cannot be written (a full disk: the log's file is `/dev/full`)
/// are held, not dropped, and written once the file can take them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_wait_out_a_full_disk_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let current = dir.path().join(CURRENT);
    std::os::unix::fs::symlink("/dev/full", &current).unwrap();
    let log = StorageLog::open(dir.path()).unwrap();
    log.append(record("a", "data/kept", 201, Some("ann@t.local")))
        .await;
    let held = tokio::time::timeout(Duration::from_millis(500), log.flush()).await;
    assert!(
        held.is_err(),
        "the log said a record was written to a full disk"
    );
    // Room again: the writer opens the file anew.
    std::fs::remove_file(&current).unwrap();
    let all = all_of_a();
    let found = tokio::time::timeout(Duration::from_secs(30), log.query(all, 10))
        .await
        .expect("the record was not written once there was room")
        .unwrap();
    assert_eq!(
        found.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["data/kept"]
    );
}

/// A store in a new database of the PostgreSQL server `KEYLESS_TEST_POSTGRES_URL`
/// names; `None` (the test skipped) when it names none.
async fn fresh_store() -> Option<keyless_store::PostgresStore> {
    let Ok(url) = std::env::var("KEYLESS_TEST_POSTGRES_URL") else {
        eprintln!("KEYLESS_TEST_POSTGRES_URL is not set: skipped");
        return None;
    };
    Some(
        keyless_store::PostgresStore::connect_fresh(&url)
            .await
            .unwrap(),
    )
}

/// Several servers' log in a shared PostgreSQL store answers the same queries
/// the same way (when `KEYLESS_TEST_POSTGRES_URL` names a server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_log_is_filtered_as_files_are() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let one = StorageLog::shared(store.clone(), "storage", &dir.path().join("one")).unwrap();
    let other = StorageLog::shared(store.clone(), "storage", &dir.path().join("other")).unwrap();
    one.append(record("a", "data/x.csv", 200, Some("ann@t.local")))
        .await;
    one.flush().await;
    other
        .append(record("a", "data/y.csv", 403, Some("bob@t.local")))
        .await;
    other.append(record("b", "data/x.csv", 200, None)).await;
    other.flush().await;
    one.append(record("a", "other/z", 201, Some("ann@t.local")))
        .await;
    filters_hold(&one).await;
    // Another log of the same store holds none of these.
    let vault = StorageLog::shared(store, "vault", &dir.path().join("vault")).unwrap();
    let none = vault.query(all_of_a(), 10).await.unwrap();
    assert!(none.is_empty());
}

/// A record the shared store refuses for what it holds is kept in the
/// server's file, and neither its batch nor later records are held up (when
/// `KEYLESS_TEST_POSTGRES_URL` names a server).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_shared_log_refuses_is_set_aside_and_the_log_goes_on() {
    let Some(store) = fresh_store().await else {
        return;
    };
    // Whatever a future record holds that PostgreSQL refuses (a NUL once),
    // here a trigger refuses one path as a data exception.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF NEW.path = 'data/poison' THEN
             RAISE EXCEPTION 'refused' USING ERRCODE = '22023';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON request_logs
           FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let aside_dir = dir.path().join("logs").join("storage-refused");
    let log = StorageLog::shared(store, "storage", &aside_dir).unwrap();
    let at = |second: u8, r: Record| Record {
        time_generated: format!("2026-11-22T10:00:0{second}Z"),
        ..r
    };
    let written = async {
        for (second, path) in [(1, "data/before"), (2, "data/poison"), (3, "data/after")] {
            log.append(at(second, record("a", path, 201, Some("ann@t.local"))))
                .await;
        }
        log.flush().await;
        log.append(at(4, record("a", "data/later", 200, None)))
            .await;
        let all = all_of_a();
        log.query(all, 10).await
    };
    let found = tokio::time::timeout(Duration::from_secs(30), written)
        .await
        .expect("the log is held up")
        .unwrap();
    // The set-aside record is found through the shared log too, in its place.
    let paths = |records: &[Record]| records.iter().map(|r| r.path.clone()).collect::<Vec<_>>();
    assert_eq!(
        paths(&found),
        ["data/before", "data/poison", "data/after", "data/later"]
    );
    assert_eq!(
        found[1].requester_upn.as_deref(),
        Some("ann@t.local"),
        "{found:?}"
    );
    let first_two = log.query(all_of_a(), 2).await.unwrap();
    assert_eq!(paths(&first_two), ["data/before", "data/poison"]);
    let refused_only = Filter {
        path_prefix: Some("data/p".into()),
        ..all_of_a()
    };
    let found = log.query(refused_only, 10).await.unwrap();
    assert_eq!(paths(&found), ["data/poison"]);
    let of_b = Filter {
        account: "b".into(),
        ..Filter::default()
    };
    assert!(log.query(of_b, 10).await.unwrap().is_empty());
    let kept = super::files::read(&aside_dir, &all_of_a(), 10).unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].path, "data/poison");
    assert_eq!(kept[0].requester_upn.as_deref(), Some("ann@t.local"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(aside_dir.join(CURRENT))
            .unwrap()
            .permissions(),
    ) & 0o777;
    assert_eq!(mode & 0o077, 0, "the file is the server's alone: {mode:o}");
}

#[test]
fn two_runs_of_records_merge_in_time_order_up_to_the_limit() {
    let at = |time: &str, path: &str| Record {
        time_generated: time.into(),
        path: path.into(),
        ..Record::default()
    };
    let kept = || {
        vec![
            at("2026-11-22T10:00:01Z", "k1"),
            at("2026-11-22T10:00:03.5Z", "k3"),
            at("2026-11-22T10:00:05Z", "k5"),
        ]
    };
    let aside = || {
        vec![
            at("2026-11-22T10:00:00Z", "a0"),
            // Before k3, although its text sorts after k3's.
            at("2026-11-22T10:00:03Z", "a3"),
            at("2026-11-22T10:00:05Z", "a5"),
        ]
    };
    let paths = |records: Vec<Record>| records.into_iter().map(|r| r.path).collect::<Vec<_>>();
    assert_eq!(
        paths(in_time_order(kept(), aside(), 10)),
        ["a0", "k1", "a3", "k3", "k5", "a5"]
    );
    assert_eq!(paths(in_time_order(kept(), aside(), 3)), ["a0", "k1", "a3"]);
    assert_eq!(
        paths(in_time_order(kept(), Vec::new(), 10)),
        ["k1", "k3", "k5"]
    );
    assert_eq!(paths(in_time_order(Vec::new(), aside(), 2)), ["a0", "a3"]);
}

/// The queries over records a/data/x.csv (ann, 200), a/data/y.csv (bob, 403),
/// b/data/x.csv and a/other/z (ann, 201), written in that order.
async fn filters_hold(log: &StorageLog) {
    let all = |f: Filter| {
        let log = log.clone();
        async move { log.query(f, 100).await.unwrap() }
    };
    let a = all(all_of_a()).await;
    assert_eq!(
        a.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["data/x.csv", "data/y.csv", "other/z"]
    );
    let denied = all(Filter {
        account: "a".into(),
        status: Some(403),
        ..Filter::default()
    })
    .await;
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0].requester_upn.as_deref(), Some("bob@t.local"));
    let ann = all(Filter {
        account: "a".into(),
        principal: Some("ANN@t.local".into()),
        path_prefix: Some("/data/".into()),
        ..Filter::default()
    })
    .await;
    assert_eq!(ann.len(), 1);
    let later = all(Filter {
        account: "a".into(),
        since: Some("2026-11-22T10:00:01Z".into()),
        ..Filter::default()
    })
    .await;
    assert!(later.is_empty());
    assert!(
        log.query(
            Filter {
                account: "a".into(),
                since: Some("yesterday".into()),
                ..Filter::default()
            },
            10
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn a_line_cut_short_by_a_crash_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let whole = serde_json::to_string(&record("a", "c/b", 200, None)).unwrap();
    std::fs::write(
        dir.path().join(CURRENT),
        format!("{whole}\n{}", &whole[..20]),
    )
    .unwrap();
    let log = StorageLog::open(dir.path()).unwrap();
    log.append(record("a", "c/after", 200, None)).await;
    let found = log.query(all_of_a(), 10).await.unwrap();
    assert_eq!(
        found.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["c/b", "c/after"]
    );
}
