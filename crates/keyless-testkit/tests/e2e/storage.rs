//! The Blob API through an independent client: Rust's `object_store`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::TryStreamExt;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use reqwest::Method;
use serde_json::json;

use keyless_auth::shared_key::{SignedRequest, sign, string_to_sign};
use keyless_testkit::TestServer;

async fn account(server: &TestServer) -> (String, String) {
    let admin = server.admin_token().await.unwrap();
    let path = format!(
        "/subscriptions/{}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/objects?api-version=2023-05-01",
        server.admin.subscription
    );
    let (status, body) = server
        .mgmt(
            Method::PUT,
            &path,
            Some(&admin),
            Some(json!({ "location": "local" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let keys_path = path.replace("?api-version", "/listKeys?api-version");
    let (_, keys) = server
        .mgmt(Method::POST, &keys_path, Some(&admin), Some(json!({})))
        .await
        .unwrap();
    (
        "objects".to_owned(),
        keys["keys"][0]["value"].as_str().unwrap().to_owned(),
    )
}

/// Creates a container with a SharedKey request (object_store does not create containers).
async fn create_container(server: &TestServer, account: &str, key: &str, name: &str) {
    let path = format!("/{account}/{name}");
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let headers = vec![
        ("x-ms-date".to_owned(), date.clone()),
        ("x-ms-version".to_owned(), "2026-10-06".to_owned()),
    ];
    let query = vec![("restype".to_owned(), "container".to_owned())];
    let text = string_to_sign(&SignedRequest {
        method: "PUT",
        account,
        path: &path,
        query: &query,
        headers: &headers,
    });
    let sig = sign(&STANDARD.decode(key).unwrap(), &text);
    let reply = server
        .http
        .put(format!("{}{path}?restype=container", server.info.storage))
        .header("x-ms-date", date)
        .header("x-ms-version", "2026-10-06")
        .header("content-length", "0")
        .header("authorization", format!("SharedKey {account}:{sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "{}", reply.text().await.unwrap());
}

#[tokio::test]
async fn object_store_puts_gets_lists_and_deletes() {
    let server = TestServer::start().await.unwrap();
    let (account, key) = account(&server).await;
    create_container(&server, &account, &key, "datasets").await;
    let ca = std::fs::read(server.info.ca_file.as_ref().unwrap()).unwrap();
    let store = MicrosoftAzureBuilder::new()
        .with_account(&account)
        .with_access_key(&key)
        .with_container_name("datasets")
        .with_endpoint(format!("{}/{account}", server.info.storage))
        .with_client_options(
            ClientOptions::new()
                .with_root_certificate(object_store::Certificate::from_pem(&ca).unwrap()),
        )
        .build()
        .unwrap();

    let small = Path::from("train/part-0.csv");
    store
        .put(&small, PutPayload::from_static(b"x,y\n1,2\n"))
        .await
        .unwrap();
    let big: Vec<u8> = (0..(11 * 1024 * 1024)).map(|i| (i % 251) as u8).collect();
    let large = Path::from("train/part-1.bin");
    let mut upload = store.put_multipart(&large).await.unwrap();
    for chunk in big.chunks(5 * 1024 * 1024) {
        upload
            .put_part(PutPayload::from(chunk.to_vec()))
            .await
            .unwrap();
    }
    upload.complete().await.unwrap();

    assert_eq!(
        store
            .get(&small)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"x,y\n1,2\n"
    );
    let got = store.get(&large).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), big.len());
    assert!(got.as_ref() == big.as_slice());
    let range = store.get_range(&large, 1000..2000).await.unwrap();
    assert_eq!(range.as_ref(), &big[1000..2000]);
    let head = store.head(&large).await.unwrap();
    assert_eq!(head.size, big.len() as u64);

    let listed: Vec<_> = store
        .list(Some(&Path::from("train")))
        .try_collect()
        .await
        .unwrap();
    let mut names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    names.sort();
    assert_eq!(names, ["train/part-0.csv", "train/part-1.bin"]);
    let with_delimiter = store.list_with_delimiter(None).await.unwrap();
    assert_eq!(with_delimiter.common_prefixes, [Path::from("train")]);

    store.delete(&small).await.unwrap();
    let err = store.get(&small).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");

    // A wrong key is refused.
    let wrong = MicrosoftAzureBuilder::new()
        .with_account(&account)
        .with_access_key(STANDARD.encode([7u8; 64]))
        .with_container_name("datasets")
        .with_endpoint(format!("{}/{account}", server.info.storage))
        .with_client_options(
            ClientOptions::new()
                .with_root_certificate(object_store::Certificate::from_pem(&ca).unwrap()),
        )
        .build()
        .unwrap();
    assert!(wrong.get(&large).await.is_err());
}

/// A storage token of the admin of a new tenant, and the admin of the first.
async fn storage_tokens(server: &TestServer) -> (String, String) {
    let admin = server.admin_token().await.unwrap();
    let (status, b) = server
        .mgmt(
            Method::POST,
            "/admin/tenants",
            Some(&admin),
            Some(json!({ "domain": "fabrikam.local" })),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{b}");
    let storage_token = |tenant: String, username: String, password: String| async move {
        let form = [
            ("grant_type", "password"),
            ("client_id", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"),
            ("username", username.as_str()),
            ("password", password.as_str()),
            ("scope", "https://storage.azure.com/.default"),
        ];
        let (status, reply) = server.token_request(&tenant, &form).await.unwrap();
        assert_eq!(status, 200, "{reply}");
        reply["access_token"].as_str().unwrap().to_owned()
    };
    let own = storage_token(
        server.admin.tenant.clone(),
        server.admin.username.clone(),
        server.admin.password.clone(),
    )
    .await;
    let foreign = storage_token(
        b["tenant"].as_str().unwrap().to_owned(),
        b["username"].as_str().unwrap().to_owned(),
        b["password"].as_str().unwrap().to_owned(),
    )
    .await;
    (own, foreign)
}

#[tokio::test]
async fn bearer_tokens_of_another_tenant_or_past_their_expiry_are_refused() {
    let server = TestServer::start().await.unwrap();
    let (account, key) = account(&server).await;
    create_container(&server, &account, &key, "data").await;
    let (own, foreign) = storage_tokens(&server).await;
    let list = format!(
        "{}/{account}/data?restype=container&comp=list",
        server.info.storage
    );
    let get = |token: String| {
        let request = server
            .http
            .get(&list)
            .header("x-ms-version", "2026-10-06")
            .header("authorization", format!("Bearer {token}"));
        async move { request.send().await.unwrap() }
    };

    // The admin is Owner of the subscription, which grants no data action.
    let reply = get(own.clone()).await;
    assert_eq!(reply.status(), 403);
    assert_eq!(
        reply.headers()["x-ms-error-code"],
        "AuthorizationPermissionMismatch"
    );
    let why = reply.headers()["x-keyless-explanation"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        why.contains("blobs/read") && why.contains("Storage Blob Data Reader"),
        "{why}"
    );

    let reply = get(foreign).await;
    assert_eq!(reply.status(), 403);
    assert_eq!(reply.headers()["x-ms-error-code"], "AuthenticationFailed");
    assert!(!reply.headers().contains_key("www-authenticate"));
    assert!(reply.text().await.unwrap().contains("cross-tenant"));

    // An Authorization header that is not text is refused, not read as none
    // (which would leave the request to a SAS in its query, or to anonymous access).
    let garbled = reqwest::header::HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap();
    let reply = server
        .http
        .get(&list)
        .header("x-ms-version", "2026-10-06")
        .header("authorization", garbled)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 403);
    assert_eq!(reply.headers()["x-ms-error-code"], "AuthenticationFailed");
    assert!(reply.text().await.unwrap().contains("visible ASCII"));

    server.clock.advance(2 * 3600);
    let reply = get(own).await;
    assert_eq!(reply.status(), 401);
    assert_eq!(
        reply.headers()["x-ms-error-code"],
        "InvalidAuthenticationInfo"
    );
    let challenge = reply.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer authorization_uri={}/{}/oauth2/authorize resource_id=https://storage.azure.com",
            server.info.login, server.admin.tenant
        )
    );
    assert!(reply.text().await.unwrap().contains("expired"));
}

/// Sends a request signed with SharedKey Lite over `signed_path` (the real path
/// unless a test tampers with it).
async fn send_lite(
    server: &TestServer,
    (account, key): (&str, &str),
    method: Method,
    path: &str,
    signed_path: &str,
    body: &'static [u8],
) -> reqwest::Response {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let mut headers = vec![
        ("x-ms-date".to_owned(), date),
        ("x-ms-version".to_owned(), "2026-10-06".to_owned()),
    ];
    if method == Method::PUT {
        headers.push(("x-ms-blob-type".to_owned(), "BlockBlob".to_owned()));
        headers.push(("content-type".to_owned(), "text/plain".to_owned()));
    }
    let text = keyless_auth::shared_key::string_to_sign_lite(&SignedRequest {
        method: method.as_str(),
        account,
        path: signed_path,
        query: &[],
        headers: &headers,
    });
    let sig = sign(&STANDARD.decode(key).unwrap(), &text);
    let mut request = server
        .http
        .request(method, format!("{}{path}", server.info.storage))
        .header("authorization", format!("SharedKeyLite {account}:{sig}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn shared_key_lite_signs_requests_and_a_signature_for_another_path_is_refused() {
    let server = TestServer::start().await.unwrap();
    let (account, key) = account(&server).await;
    create_container(&server, &account, &key, "lite").await;
    let creds = (account.as_str(), key.as_str());
    let path = format!("/{account}/lite/note.txt");

    let put = send_lite(&server, creds, Method::PUT, &path, &path, b"light").await;
    assert_eq!(put.status(), 201, "{}", put.text().await.unwrap());
    let get = send_lite(&server, creds, Method::GET, &path, &path, b"").await;
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "text/plain");
    assert_eq!(get.bytes().await.unwrap().as_ref(), b"light");

    let elsewhere = format!("/{account}/lite/other.txt");
    let forged = send_lite(&server, creds, Method::GET, &path, &elsewhere, b"").await;
    assert_eq!(forged.status(), 403);
    assert_eq!(forged.headers()["x-ms-error-code"], "AuthenticationFailed");
}
