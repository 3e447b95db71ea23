//! JWT parsing: the compact form, its header and its claims.
#![no_main]

libfuzzer_sys::fuzz_target!(|token: &str| {
    if let Ok(parts) = keyless_auth::jwt::split(token) {
        let _ = keyless_auth::jwt::claims::<keyless_auth::Claims>(&parts);
    }
});
