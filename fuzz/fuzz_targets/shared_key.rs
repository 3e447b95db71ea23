//! SharedKey and SharedKey Lite canonicalization of arbitrary requests.
#![no_main]

use keyless_auth::shared_key::{SignedRequest, string_to_sign, string_to_sign_lite};

libfuzzer_sys::fuzz_target!(|input: (&str, &str, Vec<(String, String)>, Vec<(String, String)>)| {
    let (method, path, query, headers) = input;
    let request = SignedRequest {
        method,
        account: "account",
        path,
        query: &query,
        headers: &headers,
    };
    let _ = string_to_sign(&request);
    let _ = string_to_sign_lite(&request);
});
