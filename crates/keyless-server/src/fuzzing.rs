//! The parsers an unauthenticated request reaches, for the fuzz targets in
//! `fuzz/` (feature `fuzzing`; never in a server build). Each takes arbitrary
//! input and must return, whatever it is given.

/// The storage operation parser, on a method, a query string and a target kind.
pub fn storage_operation(method: &[u8], query: &str, target: u8, copy: bool, rename: bool) {
    crate::storage::fuzz::operation(method, query, target, copy, rename);
}

/// SAS verification and scope checks, on a query string and a path.
pub fn sas(query: &str, container: &str, blob: &str) {
    crate::storage::fuzz::sas(query, container, blob);
}

/// The Put Block List XML body.
pub fn block_list(body: &[u8]) {
    crate::storage::fuzz::block_list(body);
}

/// RFC 1123 and ISO 8601 dates from headers and SAS fields.
pub fn dates(text: &str) {
    crate::storage::fuzz::dates(text);
}

/// The structured-message (CRC-64) unframer, fed in chunks of `chunk` bytes.
pub fn structured_message(body: &[u8], content: u64, chunk: usize) {
    crate::storage::fuzz::structured(body, content, chunk);
}

/// The OAuth form body of the token endpoints.
pub fn token_form(body: &[u8]) {
    crate::login::fuzz::token_form(body);
}
