//! Blob XML request bodies (Put Block List).
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    keyless_server::fuzzing::block_list(body);
});
