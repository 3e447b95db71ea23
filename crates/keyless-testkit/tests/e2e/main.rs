//! End-to-end tests: a whole keyless server per test, on ephemeral ports.
