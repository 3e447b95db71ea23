//! RS256 signing keys and the ring of keys a server signs and verifies with.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{self, KeyPair as _, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use keyless_core::Error;

/// One RSA-2048 key pair with its key id.
pub struct SigningKey {
    kid: String,
    pair: KeyPair,
    public: ParsedPublicKey,
    jwk: Jwk,
    created_at: i64,
}

/// The public half of a signing key as a JSON Web Key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA`.
    pub kty: String,
    /// Use: `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// The key id.
    pub kid: String,
    /// Same as `kid`, as Entra publishes it.
    pub x5t: String,
    /// The modulus, base64url.
    pub n: String,
    /// The exponent, base64url.
    pub e: String,
    /// The algorithm: `RS256`.
    pub alg: String,
}

impl SigningKey {
    /// Generates a fresh key pair.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when key generation fails.
    pub fn generate(created_at: i64) -> Result<Self, Error> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| Error::internal("rsa key generation failed"))?;
        Self::from_pair(pair, created_at)
    }

    /// Restores a key pair from its PKCS#8 DER encoding.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when the bytes are not an RSA key.
    pub fn from_pkcs8(der: &[u8], created_at: i64) -> Result<Self, Error> {
        let pair = KeyPair::from_pkcs8(der)
            .map_err(|e| Error::internal(format!("stored signing key rejected: {e}")))?;
        Self::from_pair(pair, created_at)
    }

    fn from_pair(pair: KeyPair, created_at: i64) -> Result<Self, Error> {
        let spki = pair
            .public_key()
            .as_der()
            .map_err(|_| Error::internal("public key encoding failed"))?;
        let public = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, spki.as_ref())
            .map_err(|e| Error::internal(format!("public key rejected: {e}")))?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki.as_ref());
        let kid: String = URL_SAFE_NO_PAD
            .encode(digest.as_ref())
            .chars()
            .take(27)
            .collect();
        let components: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
        let jwk = Jwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            kid: kid.clone(),
            x5t: kid.clone(),
            n: URL_SAFE_NO_PAD.encode(&components.n),
            e: URL_SAFE_NO_PAD.encode(&components.e),
            alg: "RS256".into(),
        };
        Ok(Self {
            kid,
            pair,
            public,
            jwk,
            created_at,
        })
    }

    /// The key id carried in token headers.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// When the key was made, seconds since the epoch.
    pub fn created_at(&self) -> i64 {
        self.created_at
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// The private key as PKCS#8 DER, for sealing.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when encoding fails.
    pub fn to_pkcs8(&self) -> Result<Pkcs8V1Der<'static>, Error> {
        self.pair
            .as_der()
            .map_err(|_| Error::internal("private key encoding failed"))
    }

    /// Signs `message` with RSASSA-PKCS1-v1_5 SHA-256.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when signing fails.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut sig,
            )
            .map_err(|_| Error::internal("signing failed"))?;
        Ok(sig)
    }

    /// Checks an RS256 signature made by this key.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        self.public.verify_sig(message, sig).is_ok()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("private", &"[redacted]")
            .finish()
    }
}

/// The keys a server holds: the first signs, all verify.
#[derive(Debug, Clone)]
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
}

impl KeyRing {
    /// A ring of `keys`, newest (the signer) first.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::Internal`] when `keys` is empty.
    pub fn new(keys: Vec<Arc<SigningKey>>) -> Result<Self, Error> {
        if keys.is_empty() {
            return Err(Error::internal("a key ring needs at least one key"));
        }
        Ok(Self { keys })
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &Arc<SigningKey> {
        // INVARIANT: `new` refuses an empty ring and nothing removes keys.
        #[expect(clippy::indexing_slicing, reason = "the ring is never empty")]
        &self.keys[0]
    }

    /// The key with id `kid`, current or previous.
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Every key, newest first, as published at the JWKS endpoint.
    pub fn jwks(&self) -> Vec<&Jwk> {
        self.keys.iter().map(|k| k.jwk()).collect()
    }
}
