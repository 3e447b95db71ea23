//! Certificate credentials of service principals: parsing, thumbprints and
//! checking the assertions signed with them.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, digest};
use aws_lc_rs::signature::{self, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use x509_parser::pem::Pem;
use x509_parser::prelude::{FromDer, X509Certificate};

use keyless_core::Error;

use crate::secret::hex;

/// The public part of a certificate credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateCredential {
    /// SHA-1 of the DER certificate, uppercase hex, as Entra shows thumbprints.
    pub thumbprint: String,
    /// The subject public key info, DER.
    pub public_key_der: Vec<u8>,
    /// Not before, seconds since the epoch.
    pub not_before: i64,
    /// Not after, seconds since the epoch.
    pub not_after: i64,
}

impl CertificateCredential {
    /// Reads an RSA certificate from PEM or DER bytes.
    ///
    /// # Errors
    /// [`keyless_core::ErrorKind::InvalidInput`] when the bytes are not an X.509
    /// certificate with an RSA key of 2048 bits or more.
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let der = if bytes.starts_with(b"-----BEGIN") {
            let pem = Pem::iter_from_buffer(bytes)
                .filter_map(Result::ok)
                .find(|p| p.label == "CERTIFICATE")
                .ok_or_else(|| Error::invalid("the PEM text holds no CERTIFICATE block"))?;
            pem.contents
        } else {
            bytes.to_vec()
        };
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| Error::invalid(format!("the certificate cannot be parsed: {e}")))?;
        let spki = cert.tbs_certificate.subject_pki.raw.to_vec();
        ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &spki).map_err(|_| {
            Error::invalid("the certificate's key must be RSA with at least 2048 bits")
        })?;
        Ok(Self {
            thumbprint: hex(digest(&SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref()).to_ascii_uppercase(),
            public_key_der: spki,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// Whether an `x5t` header (base64url of the SHA-1 thumbprint, padded or not) names
/// the certificate with `thumbprint` (uppercase hex).
pub fn x5t_matches(x5t: &str, thumbprint: &str) -> bool {
    let decoded = URL_SAFE
        .decode(x5t)
        .or_else(|_| URL_SAFE_NO_PAD.decode(x5t.trim_end_matches('=')));
    decoded.is_ok_and(|bytes| hex(&bytes).eq_ignore_ascii_case(thumbprint))
}

/// Checks an RS256 signature over `message` with a stored public key.
pub fn verify_rs256(public_key_der: &[u8], message: &[u8], sig: &[u8]) -> bool {
    ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .is_ok_and(|key| key.verify_sig(message, sig).is_ok())
}
