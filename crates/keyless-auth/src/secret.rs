//! Passwords, client secrets and opaque tokens: generation, hashing, checking.
//!
//! Passwords are chosen by people, so they are hashed with argon2id. Client
//! secrets, refresh tokens and device codes are generated here with 256 bits of
//! entropy or more, so a SHA-256 digest is enough to store them safely and keeps
//! token issuance fast.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use keyless_core::Error;

/// Hashes a password with argon2id and a random salt (PHC string format).
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] when hashing fails.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Error::internal("random source failed"))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::internal(format!("salt encoding failed: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches a hash made by [`hash_password`].
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Checks that a password chosen by a person is acceptable.
///
/// # Errors
/// [`keyless_core::ErrorKind::InvalidInput`] saying what the password lacks.
pub fn check_password_policy(password: &str) -> Result<(), Error> {
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if password.chars().count() < 12 || classes.iter().filter(|&&c| c).count() < 3 {
        return Err(Error::invalid(
            "the password must have at least 12 characters from three of: lowercase, uppercase, digits, symbols",
        ));
    }
    Ok(())
}

/// `n` random bytes.
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] when the random source fails.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::internal("random source failed"))?;
    Ok(bytes)
}

/// A random token of 32 bytes, base64url: refresh tokens and device codes.
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] when the random source fails.
pub fn random_token() -> Result<String, Error> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes(32)?))
}

/// A new client secret in Entra's style: 40 characters, the first three of which are
/// its public hint.
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] when the random source fails.
pub fn new_client_secret() -> Result<String, Error> {
    let text = STANDARD_NO_PAD
        .encode(random_bytes(30)?)
        .replace(['+', '/'], "~");
    Ok(text)
}

/// A random password for generated accounts, satisfying [`check_password_policy`].
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] when the random source fails.
pub fn new_password() -> Result<String, Error> {
    Ok(format!(
        "Kl-{}9a",
        URL_SAFE_NO_PAD.encode(random_bytes(18)?)
    ))
}

/// The stored digest of a high-entropy secret: hex SHA-256.
pub fn digest_secret(secret: &str) -> String {
    hex(digest(&SHA256, secret.as_bytes()).as_ref())
}

/// Compares a presented secret with a stored digest in constant time.
pub fn secret_matches(secret: &str, stored_digest: &str) -> bool {
    verify_slices_are_equal(digest_secret(secret).as_bytes(), stored_digest.as_bytes()).is_ok()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("Correct-Horse-9").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("Correct-Horse-9", &hash));
        assert!(!verify_password("correct-horse-9", &hash));
        assert!(!verify_password("Correct-Horse-9", "garbage"));
    }

    #[test]
    fn secrets_are_digested_and_compared() {
        let s = new_client_secret().unwrap();
        assert_eq!(s.len(), 40);
        let d = digest_secret(&s);
        assert!(secret_matches(&s, &d));
        assert!(!secret_matches("nope", &d));
    }

    #[test]
    fn password_policy() {
        assert!(check_password_policy("short1A!").is_err());
        assert!(check_password_policy("alllowercaseletters").is_err());
        assert!(check_password_policy("Long-enough-pass1").is_ok());
        assert!(check_password_policy(&new_password().unwrap()).is_ok());
    }
}
