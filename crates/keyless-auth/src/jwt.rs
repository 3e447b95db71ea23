//! Compact JWS (JWT) encoding and decoding with RS256 only.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;

use keyless_core::Error;

use crate::keys::SigningKey;

/// The header fields keyless reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    /// The algorithm; only `RS256` is accepted.
    pub alg: String,
    /// The key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The SHA-1 thumbprint of a certificate, base64url (certificate assertions).
    #[serde(default)]
    pub x5t: Option<String>,
}

/// A token split into its parts, not yet verified.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The decoded header.
    pub header: Header,
    /// `header.payload`, the bytes the signature covers.
    pub signed: &'a str,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

/// Signs `claims` with `key` as an RS256 JWT.
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] when encoding or signing fails.
pub fn sign<C: Serialize>(key: &SigningKey, claims: &C) -> Result<String, Error> {
    #[derive(Serialize)]
    struct OutHeader<'a> {
        typ: &'static str,
        alg: &'static str,
        kid: &'a str,
        x5t: &'a str,
    }
    let header = serde_json::to_vec(&OutHeader {
        typ: "JWT",
        alg: "RS256",
        kid: key.kid(),
        x5t: key.kid(),
    })
    .map_err(|e| Error::internal(format!("header encoding failed: {e}")))?;
    let payload = serde_json::to_vec(claims)
        .map_err(|e| Error::internal(format!("claims encoding failed: {e}")))?;
    let mut token = String::with_capacity(64 + payload.len() * 4 / 3 + 350);
    URL_SAFE_NO_PAD.encode_string(&header, &mut token);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let sig = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig, &mut token);
    Ok(token)
}

/// Splits and decodes a compact JWT without checking the signature.
///
/// # Errors
/// [`keyless_core::ErrorKind::InvalidInput`] when the token is not three base64url
/// parts with a JSON header.
pub fn split(token: &str) -> Result<Parts<'_>, Error> {
    let malformed = || Error::invalid("the token is not a well-formed JWT");
    let mut it = token.splitn(3, '.');
    let (Some(h), Some(p), Some(s)) = (it.next(), it.next(), it.next()) else {
        return Err(malformed());
    };
    if s.contains('.') {
        return Err(malformed());
    }
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| malformed())?;
    let payload = URL_SAFE_NO_PAD
        .decode(p.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let signature = URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let signed = token.get(..h.len() + 1 + p.len()).ok_or_else(malformed)?;
    Ok(Parts {
        header,
        signed,
        payload,
        signature,
    })
}

/// Decodes the payload of `parts` into `C`.
///
/// # Errors
/// [`keyless_core::ErrorKind::InvalidInput`] when the payload is not the expected JSON.
pub fn claims<C: DeserializeOwned>(parts: &Parts<'_>) -> Result<C, Error> {
    serde_json::from_slice(&parts.payload)
        .map_err(|e| Error::invalid(format!("the token's claims are malformed: {e}")))
}
