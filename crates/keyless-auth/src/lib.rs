//! Cryptography and credentials of keyless: RS256 token signing with rotating key
//! rings, the one token verification function every listener uses (with its
//! cache), certificate credentials, password and client-secret hashing, and
//! sealing of secrets at rest with AES-256-GCM.
//!
//! All primitives come from `aws-lc-rs`. Depends on `keyless-core` only; no I/O
//! except what callers hand in.

pub mod cert;
pub mod claims;
pub mod clock;
pub mod jwt;
pub mod keys;
pub mod seal;
pub mod secret;
pub mod shared_key;
pub mod verify;

pub use claims::Claims;
pub use clock::{Clock, ManualClock, SystemClock};
pub use keys::{Jwk, KeyRing, SigningKey};
pub use seal::MasterKey;
pub use verify::{TokenVerifier, VerifyError};
