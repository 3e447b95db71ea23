//! Sealing secrets at rest: AES-256-GCM under a master key kept outside the
//! metadata store, with the secret's identity bound as associated data.
//!
//! Vault secrets use envelope encryption: each value has its own data key, and
//! only the data key is sealed under the master key, so rotating the master key
//! rewraps data keys without touching values. During a rotation the key file
//! holds the new key and the previous one (64 bytes): sealing uses the first,
//! opening tries both.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use keyless_core::Error;

const VERSION: u8 = 1;

/// The key-encryption key (and, during a rotation, the previous one). Its
/// `Debug` never shows the bytes.
pub struct MasterKey {
    key: LessSafeKey,
    previous: Option<LessSafeKey>,
}

/// A value sealed under its own data key, with the data key sealed under the
/// master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The data key, sealed under the master key.
    pub wrapped_key: Vec<u8>,
    /// The value, sealed under the data key.
    pub sealed: Vec<u8>,
}

fn aes_key(bytes: &[u8]) -> Result<LessSafeKey, Error> {
    let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| {
        Error::invalid(format!(
            "a master key is {} bytes, not {}",
            MasterKey::LEN,
            bytes.len()
        ))
    })?;
    Ok(LessSafeKey::new(unbound))
}

fn seal_with(key: &LessSafeKey, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| Error::internal("random source failed"))?;
    let mut buf = plaintext.to_vec();
    key.seal_in_place_append_tag(
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

fn open_with(key: &LessSafeKey, context: &str, sealed: &[u8]) -> Option<Vec<u8>> {
    let (version, rest) = sealed.split_first()?;
    if *version != VERSION || rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, body) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = body.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buf)
        .ok()?;
    Some(plain.to_vec())
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

    /// A master key from its bytes: 32 (one key) or 64 (the current key, then
    /// the previous one, as a rotation leaves them until it completes).
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::InvalidInput`] for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        match bytes.len() {
            Self::LEN => Ok(Self {
                key: aes_key(bytes)?,
                previous: None,
            }),
            n if n == 2 * Self::LEN => {
                let (current, previous) = bytes.split_at(Self::LEN);
                Ok(Self {
                    key: aes_key(current)?,
                    previous: Some(aes_key(previous)?),
                })
            }
            n => Err(Error::invalid(format!(
                "a master key is {} bytes (or {} during a rotation), not {n}",
                Self::LEN,
                2 * Self::LEN
            ))),
        }
    }

    /// Encrypts `plaintext`, binding `context` (what the secret is) as associated data.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when encryption fails.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        seal_with(&self.key, context, plaintext)
    }

    /// Decrypts what [`MasterKey::seal`] made under the same `context` (with this
    /// key or, during a rotation, the previous one).
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] with an integrity message when the sealed
    /// bytes were altered, belong to another context, or another key sealed them.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        open_with(&self.key, context, sealed)
            .or_else(|| {
                self.previous
                    .as_ref()
                    .and_then(|p| open_with(p, context, sealed))
            })
            .ok_or_else(|| {
                Error::internal(format!("integrity check failed for sealed `{context}`"))
            })
    }

    /// Seals `plaintext` under a fresh data key bound to `context`, and the data
    /// key under the master key.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when the random source or encryption fails.
    pub fn seal_envelope(&self, context: &str, plaintext: &[u8]) -> Result<Envelope, Error> {
        let data_key = Self::generate_bytes()?;
        let sealed = seal_with(&aes_key(&data_key)?, context, plaintext)?;
        let wrapped_key = self.seal(&format!("data-key:{context}"), &data_key)?;
        Ok(Envelope {
            wrapped_key,
            sealed,
        })
    }

    /// Opens what [`MasterKey::seal_envelope`] made under the same `context`.
    ///
    /// # Errors
    /// An integrity error when either part was altered or belongs elsewhere.
    pub fn open_envelope(&self, context: &str, envelope: &Envelope) -> Result<Vec<u8>, Error> {
        let data_key = self.open(&format!("data-key:{context}"), &envelope.wrapped_key)?;
        open_with(&aes_key(&data_key)?, context, &envelope.sealed).ok_or_else(|| {
            Error::internal(format!("integrity check failed for sealed `{context}`"))
        })
    }

    /// Reseals a data key (or any sealed value) under the current key: what a
    /// rotation does to everything the previous key sealed.
    ///
    /// # Errors
    /// An integrity error when `sealed` does not open.
    pub fn reseal(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, Error> {
        self.seal(context, &self.open(context, sealed)?)
    }

    /// The context a data key of `context` is sealed under (for [`MasterKey::reseal`]).
    #[must_use]
    pub fn data_key_context(context: &str) -> String {
        format!("data-key:{context}")
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

    #[test]
    fn envelopes_bind_their_context_and_survive_a_rotation() {
        let old_bytes = MasterKey::generate_bytes().unwrap();
        let old = MasterKey::from_bytes(&old_bytes).unwrap();
        let env = old
            .seal_envelope("secret:kv1/db/v1", b"hunter2-distinct")
            .unwrap();
        assert!(!env.sealed.windows(8).any(|w| w == b"hunter2-"));
        assert_eq!(
            old.open_envelope("secret:kv1/db/v1", &env).unwrap(),
            b"hunter2-distinct"
        );
        assert!(old.open_envelope("secret:kv1/db/v2", &env).is_err());
        let mut tampered = env.clone();
        tampered.sealed[5] ^= 1;
        assert!(old.open_envelope("secret:kv1/db/v1", &tampered).is_err());

        // A rotation: the file holds the new key, then the old one, until every data key is resealed.
        let new_bytes = MasterKey::generate_bytes().unwrap();
        let both =
            MasterKey::from_bytes(&[new_bytes.as_slice(), old_bytes.as_slice()].concat()).unwrap();
        let context = MasterKey::data_key_context("secret:kv1/db/v1");
        let rewrapped = Envelope {
            wrapped_key: both.reseal(&context, &env.wrapped_key).unwrap(),
            sealed: env.sealed.clone(),
        };
        let new = MasterKey::from_bytes(&new_bytes).unwrap();
        assert_eq!(
            new.open_envelope("secret:kv1/db/v1", &rewrapped).unwrap(),
            b"hunter2-distinct"
        );
        assert!(
            new.open_envelope("secret:kv1/db/v1", &env).is_err(),
            "the old wrapping needs the old key"
        );
    }
}
