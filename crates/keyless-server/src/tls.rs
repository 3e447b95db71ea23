//! TLS for the listeners: keyless's development CA and server certificate,
//! generated into the data dir on first start and reused, or the operator's own.

use std::fs;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use keyless_core::Error;

use crate::config::TlsConfig;

/// The certificate material a server runs with.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The rustls configuration every TLS listener uses.
    pub server_config: Arc<ServerConfig>,
    /// The CA bundle clients should trust, when keyless generated the certificate.
    pub ca_file: Option<PathBuf>,
}

/// Loads or creates the certificates under `<data dir>/tls`.
///
/// # Errors
/// [`keyless_core::ErrorKind::InvalidInput`] for unreadable operator files, and
/// [`keyless_core::ErrorKind::Internal`] when generation fails.
pub fn prepare(data_dir: &Path, public_host: &str, tls: &TlsConfig) -> Result<TlsMaterial, Error> {
    let (chain, key, ca_file) = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    Error::invalid(format!("tls certificate `{}`: {e}", cert.display()))
                })?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::invalid(format!("tls key `{}`: {e}", key.display())))?;
            // The CA that signed it, for clients and jobs that do not trust it
            // already (a private CA).
            if let Some(ca) = &tls.ca {
                let roots = CertificateDer::pem_file_iter(ca)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| Error::invalid(format!("tls ca `{}`: {e}", ca.display())))?;
                if roots.is_empty() {
                    return Err(Error::invalid(format!(
                        "tls ca `{}` holds no certificate",
                        ca.display()
                    )));
                }
            }
            (chain, key, tls.ca.clone())
        }
        (None, None) => {
            let dir = data_dir.join("tls");
            fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            let (ca_pem, ca_key) = ensure_ca(&dir)?;
            let mut names = vec![
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
                "localhost".to_owned(),
                public_host.to_owned(),
                format!("*.blob.{}", crate::cloud::STORAGE_ZONE),
                format!("*.dfs.{}", crate::cloud::STORAGE_ZONE),
                format!("*.vault.{}", crate::cloud::DNS_ZONE),
                format!("*.{}", crate::cloud::REGISTRY_ZONE),
            ];
            names.extend(tls.extra_names.iter().cloned());
            names.sort();
            names.dedup();
            let (cert_pem, key_pem) = ensure_server_cert(&dir, &ca_pem, &ca_key, &names)?;
            let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes())
                .map_err(|e| Error::internal(format!("server certificate: {e}")))?;
            let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
                .map_err(|e| Error::internal(format!("ca certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| Error::internal(format!("server key: {e}")))?;
            (vec![leaf, ca], key, Some(dir.join("ca.pem")))
        }
        _ => {
            return Err(Error::invalid(
                "give both a tls certificate and its key, or neither",
            ));
        }
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::internal(format!("tls: {e}")))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| Error::invalid(format!("tls certificate and key do not fit together: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        server_config: Arc::new(config),
        ca_file,
    })
}

fn ensure_ca(dir: &Path) -> Result<(String, String), Error> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if cert_path.exists() && key_path.exists() {
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    let key = KeyPair::generate().map_err(gen_error)?;
    let cert = ca_params().self_signed(&key).map_err(gen_error)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The CA's parameters. The issuer of server certificates is rebuilt from these
/// rather than parsed back from the PEM, so that its name is encoded byte for byte
/// as in the CA certificate (verifiers compare the raw bytes).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "keyless development CA");
    dn.push(DnType::OrganizationName, "keyless");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    params
}

fn ensure_server_cert(
    dir: &Path,
    ca_pem: &str,
    ca_key: &str,
    names: &[String],
) -> Result<(String, String), Error> {
    let (cert_path, key_path, names_path) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.names"),
    );
    let wanted = names.join("\n");
    if cert_path.exists()
        && key_path.exists()
        && fs::read_to_string(&names_path).is_ok_and(|n| n == wanted)
    {
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    let ca_key = KeyPair::from_pem(ca_key).map_err(gen_error)?;
    let _ = ca_pem;
    let issuer = Issuer::new(ca_params(), ca_key);
    let key = KeyPair::generate().map_err(gen_error)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "keyless");
    params.distinguished_name = dn;
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(gen_error),
        })
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 12, 1);
    let cert = params.signed_by(&key, &issuer).map_err(gen_error)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    write_public(&names_path, wanted.as_bytes())?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes a file readable by its owner only, replacing it atomically.
///
/// # Errors
/// [`keyless_core::ErrorKind::Internal`] naming the file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(path, bytes, 0o600)
}

/// Certificates: nothing secret, but under the data dir, where every file is the
/// server user's alone (jobs get a copy of the CA certificate).
fn write_public(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    write_atomic(path, bytes, 0o600)
}

fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io_error(&tmp, e))?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error(path, e))
}

fn read(path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|e| io_error(path, e))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::internal(format!("`{}`: {e}", path.display()))
}

fn gen_error(e: rcgen::Error) -> Error {
    Error::internal(format!("certificate generation failed: {e}"))
}
