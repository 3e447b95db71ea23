//! The token endpoints' form body.
#![no_main]

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    keyless_server::fuzzing::token_form(body);
});
