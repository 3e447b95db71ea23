//! SAS verification (every field, both layouts of user delegation SAS) and its
//! scope checks, plus the dates its fields carry.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&str, &str, &str)| {
    let (query, container, blob) = input;
    keyless_server::fuzzing::sas(query, container, blob);
    keyless_server::fuzzing::dates(query);
});
