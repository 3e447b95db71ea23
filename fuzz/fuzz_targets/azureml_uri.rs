//! `azureml://`, `abfss://`, `wasbs://` and `https://` data URIs.
#![no_main]

libfuzzer_sys::fuzz_target!(|uri: &str| {
    let _ = keyless_ml::uri::DataUri::parse(uri, &["127.0.0.1:10000"]);
});
