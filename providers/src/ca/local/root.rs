//! The local CA's root: `ca.key` (ECDSA P-256, 0600) and the self-signed `ca.pem` (0644) in the
//! CA directory (0700). Created on first use and reloaded ever after: operators add `ca.pem` to
//! their trust stores, so an existing root is never replaced, and a damaged one is an error
//! that says what to do.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData,
};
use rota_api::BackendError;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{KIND, random_serial};
use crate::atomic_write::{create_atomic, create_dir_all_with_mode};

/// How long a new root is valid: long enough to be trusted once and forgotten.
const ROOT_VALIDITY: Duration = Duration::days(3650);

/// Backdating of every notBefore, so a peer whose clock runs a little slow accepts the cert.
pub(super) const CLOCK_SKEW: Duration = Duration::minutes(5);

/// The root cert of the local CA in `directory`: what operators add to their trust stores.
#[must_use]
pub fn root_cert_path(directory: &Path) -> PathBuf {
    directory.join("ca.pem")
}

fn root_key_path(directory: &Path) -> PathBuf {
    directory.join("ca.key")
}

/// A loaded root, ready to sign.
pub(super) struct Root {
    /// Signs leaves; carries the root's subject and key identifier for issuer and AKI.
    pub(super) issuer: Issuer<'static, KeyPair>,
    /// `ca.pem` as on disk, returned as the chain of every leaf.
    pub(super) cert_pem: String,
    /// No leaf may outlive its root.
    pub(super) not_after: OffsetDateTime,
}

/// Loads the root in `directory`, creating whatever part of it is missing. Blocking.
pub(super) fn load_or_create(directory: &Path) -> Result<Root, BackendError> {
    create_dir_all_with_mode(directory, 0o700)
        .map_err(|e| BackendError::io(KIND, "creating", directory, e))?;
    let key_path = root_key_path(directory);
    let cert_path = root_cert_path(directory);
    let key = load_or_create_key(&key_path, &cert_path)?;
    let cert_pem = load_or_create_cert(&cert_path, &key)?;
    let not_after = check_cert(&cert_path, &cert_pem, &key)?;
    let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
        .map_err(|e| damaged(&cert_path, &format!("cannot use it as an issuer: {e}")))?;
    Ok(Root {
        issuer,
        cert_pem,
        not_after,
    })
}

fn load_or_create_key(key_path: &Path, cert_path: &Path) -> Result<KeyPair, BackendError> {
    if let Some(pem) = read_if_present(key_path)? {
        return KeyPair::from_pem(&pem)
            .map_err(|e| damaged(key_path, &format!("not a PKCS#8 private key ({e})")));
    }
    if cert_path.exists() {
        return Err(damaged(
            key_path,
            &format!("missing while {} exists", cert_path.display()),
        ));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| {
        BackendError::io(
            KIND,
            "creating",
            key_path,
            io::Error::other(format!("key generation: {e}")),
        )
    })?;
    match create_atomic(key_path, key.serialize_pem().as_bytes(), 0o600) {
        Ok(()) => Ok(key),
        // Lost a race with another process creating the CA: use its key.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let pem = read_if_present(key_path)?.unwrap_or_default();
            KeyPair::from_pem(&pem)
                .map_err(|e| damaged(key_path, &format!("not a PKCS#8 private key ({e})")))
        }
        Err(e) => Err(BackendError::io(KIND, "creating", key_path, e)),
    }
}

fn load_or_create_cert(cert_path: &Path, key: &KeyPair) -> Result<String, BackendError> {
    if let Some(pem) = read_if_present(cert_path)? {
        return Ok(pem);
    }
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    // A random suffix keeps the roots of different installations apart in a trust store.
    let id: u32 = rand::random();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("rota local CA {id:08x}"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "rota");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + ROOT_VALIDITY;
    params.serial_number = Some(random_serial());
    let pem = params
        .self_signed(key)
        .map_err(|e| {
            BackendError::io(KIND, "creating", cert_path, io::Error::other(e.to_string()))
        })?
        .pem();
    match create_atomic(cert_path, pem.as_bytes(), 0o644) {
        Ok(()) => {
            tracing::info!(path = %cert_path.display(), "created the local CA root; add it to the trust stores of the clients");
            Ok(pem)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Ok(read_if_present(cert_path)?.unwrap_or_default())
        }
        Err(e) => Err(BackendError::io(KIND, "creating", cert_path, e)),
    }
}

/// Checks `ca.pem` belongs to `ca.key` and returns its notAfter.
fn check_cert(cert_path: &Path, pem: &str, key: &KeyPair) -> Result<OffsetDateTime, BackendError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| damaged(cert_path, &format!("not a PEM certificate ({e})")))?;
    let (_, cert) = X509Certificate::from_der(&block.contents)
        .map_err(|e| damaged(cert_path, &format!("not an X.509 certificate ({e})")))?;
    if cert.public_key().raw != key.subject_public_key_info().as_slice() {
        return Err(damaged(
            cert_path,
            "its public key is not the one of ca.key beside it: restore the matching pair",
        ));
    }
    OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
        .map_err(|e| damaged(cert_path, &format!("unusable notAfter ({e})")))
}

fn read_if_present(path: &Path) -> Result<Option<String>, BackendError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackendError::io(KIND, "reading", path, e)),
    }
}

/// A root file that exists but cannot be used; rota never replaces it by itself.
fn damaged(path: &Path, detail: &str) -> BackendError {
    let hint = "restore ca.key and ca.pem from a backup, or move both away to create a new CA \
                that every client must then trust; rota never replaces them by itself";
    BackendError::io(
        KIND,
        "loading",
        path,
        io::Error::new(io::ErrorKind::InvalidData, format!("{detail}: {hint}")),
    )
}
