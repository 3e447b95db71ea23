//! ARM resource ids, the RBAC scopes.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: (&str, &str)| {
    let (a, b) = input;
    if let (Ok(a), Ok(b)) = (keyless_core::ResourceId::parse(a), keyless_core::ResourceId::parse(b)) {
        let _ = a.to_string();
        let _ = a == b;
    }
});
