//! Sealing secrets at rest: AES-256-GCM under a master key kept outside the
//! metadata store, with the secret's identity bound as associated data.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use keyless_core::Error;

const VERSION: u8 = 1;

/// The key-encryption key. Its `Debug` never shows the bytes.
pub struct MasterKey {
    key: LessSafeKey,
}

impl MasterKey {
    /// The number of bytes of a master key.
    pub const LEN: usize = 32;

    /// Generates fresh key bytes.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when the random source fails.
    pub fn generate_bytes() -> Result<[u8; Self::LEN], Error> {
        let mut bytes = [0u8; Self::LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| Error::internal("random source failed"))?;
        Ok(bytes)
    }

    /// A master key from its bytes.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::InvalidInput`] when `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| {
            Error::invalid(format!(
                "a master key is {} bytes, not {}",
                Self::LEN,
                bytes.len()
            ))
        })?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts `plaintext`, binding `context` (what the secret is) as associated data.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when encryption fails.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| Error::internal("random source failed"))?;
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut buf,
            )
            .map_err(|_| Error::internal("sealing failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// Decrypts what [`MasterKey::seal`] made under the same `context`.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] with an integrity message when the sealed
    /// bytes were altered, belong to another context, or another key sealed them.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        let integrity =
            || Error::internal(format!("integrity check failed for sealed `{context}`"));
        let (version, rest) = sealed.split_first().ok_or_else(integrity)?;
        if *version != VERSION || rest.len() < NONCE_LEN {
            return Err(integrity());
        }
        let (nonce, body) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| integrity())?;
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| integrity())?;
        Ok(plain.to_vec())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trips_and_detects_tampering() {
        let key = MasterKey::from_bytes(&MasterKey::generate_bytes().unwrap()).unwrap();
        let sealed = key.seal("signing-key:k1", b"top secret").unwrap();
        assert_eq!(key.open("signing-key:k1", &sealed).unwrap(), b"top secret");
        assert!(!sealed.windows(10).any(|w| w == b"top secret"));

        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            key.open("signing-key:k1", &flipped)
                .unwrap_err()
                .message()
                .contains("integrity")
        );
        assert!(
            key.open("signing-key:k2", &sealed).is_err(),
            "another context must not open it"
        );

        let other = MasterKey::from_bytes(&MasterKey::generate_bytes().unwrap()).unwrap();
        assert!(other.open("signing-key:k1", &sealed).is_err());
        assert!(MasterKey::from_bytes(b"short").is_err());
    }
}
