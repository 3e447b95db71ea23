//! End-to-end tests: a whole keyless server per test, on ephemeral ports.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "test helpers fail the test on error"
)]

mod device;
mod directory;
mod lifecycle;
mod rbac;
mod refusals;
mod storage;
mod support;
mod tokens;
