//! End-to-end tests: a whole keyless server per test, on ephemeral ports.

mod device;
mod directory;
mod lifecycle;
mod refusals;
mod support;
mod tokens;
