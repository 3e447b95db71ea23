//! The storage operation parser: method, query string and target, as a request
//! presents them before any authentication.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&[u8], &str, u8, bool, bool)| {
    let (method, query, target, copy, rename) = input;
    keyless_server::fuzzing::storage_operation(method, query, target, copy, rename);
});
