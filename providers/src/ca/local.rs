//! `ca: { kind: local }`: the CA rotad embeds, so the quickstart runs offline and LAN-only
//! services get certs. It runs the same pipeline as any CA: `submit` checks the CSR and asks
//! for no challenge and hands the CSR back in the order handle, `await_issuance` checks the
//! handle's CSR again and signs it with the root from [`root`]. One [`LocalCa`] serves every
//! cert using the same directory, so concurrent renewals share one root.

mod root;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rand::RngCore;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SerialNumber, SubjectPublicKeyInfo,
};
use rota_api::{
    BackendError, CaBackend, ChallengeKind, DomainName, IssuedCert, OrderHandle, PlacedOrder,
};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, ParsedExtension};

pub use root::root_cert_path;
use root::{CLOCK_SKEW, Root};

/// The config `kind` of this CA.
const KIND: &str = "local";

/// The CA of one directory, shared by every cert that issues from it.
pub(crate) struct LocalCa {
    directory: PathBuf,
    /// Loaded (or created) once, on first use; the cell makes creation race-free in-process.
    root: OnceCell<Root>,
}

/// A cert's view of a [`LocalCa`]: the shared CA plus this config's leaf validity.
pub(crate) struct LocalCaBackend {
    ca: Arc<LocalCa>,
    validity_days: u32,
}

impl LocalCa {
    /// The CA kept in `directory`; nothing is read or created until the first renewal.
    pub(crate) fn new(directory: &Path) -> Self {
        Self {
            directory: directory.to_owned(),
            root: OnceCell::new(),
        }
    }

    /// This CA as a backend signing leaves valid for `validity_days`.
    pub(crate) fn backend(self: &Arc<Self>, validity_days: u32) -> LocalCaBackend {
        LocalCaBackend {
            ca: Arc::clone(self),
            validity_days,
        }
    }

    async fn root(&self) -> Result<&Root, BackendError> {
        self.root
            .get_or_try_init(|| async {
                let directory = self.directory.clone();
                tokio::task::spawn_blocking(move || root::load_or_create(&directory))
                    .await
                    .map_err(|e| {
                        BackendError::io(
                            KIND,
                            "loading",
                            self.directory.clone(),
                            std::io::Error::other(format!("the loading task failed: {e}")),
                        )
                    })?
            })
            .await
    }
}

#[async_trait]
impl CaBackend for LocalCaBackend {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn submit(
        &self,
        domains: &[DomainName],
        csr_pem: &str,
        _preferred_kinds: &[ChallengeKind],
        _replacing: Option<&str>,
    ) -> Result<PlacedOrder, BackendError> {
        let (_, requested) = parse_csr(csr_pem)?;
        let requested: BTreeSet<String> = requested.into_iter().collect();
        let expected: BTreeSet<String> = domains.iter().map(|d| d.as_str().to_owned()).collect();
        if requested != expected {
            let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
            return Err(BackendError::invalid(
                KIND,
                format!(
                    "the CSR's SANs [{}] are not the cert's domains [{}]",
                    list(&requested),
                    list(&expected)
                ),
            ));
        }
        // Loading the root now makes a broken CA directory fail the order, not the signing.
        self.ca.root().await?;
        // The operator controls this CA: there is no domain control to prove.
        Ok(PlacedOrder {
            challenges: Vec::new(),
            handle: OrderHandle {
                locator: None,
                csr_pem: csr_pem.to_owned(),
                details: serde_json::Value::Null,
            },
        })
    }

    async fn await_issuance(&self, handle: &OrderHandle) -> Result<IssuedCert, BackendError> {
        // The handle is plain data that may have been kept anywhere: check its CSR again.
        let (public_key, requested) = parse_csr(&handle.csr_pem)?;
        let domains = requested
            .iter()
            .map(|name| DomainName::new(name.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                BackendError::invalid(
                    KIND,
                    format!("the CSR asks for a name that is not a domain: {e}"),
                )
            })?;
        let root = self.ca.root().await?;
        let cert_pem = sign_leaf(root, &public_key, &domains, self.validity_days)?;
        Ok(IssuedCert {
            cert_pem,
            chain_pem: root.cert_pem.clone(),
        })
    }
}

/// Parses `csr_pem` and verifies its self-signature; returns the public key to certify and the
/// DNS names it asks for (lower-cased, in the CSR's order, without repeats).
fn parse_csr(csr_pem: &str) -> Result<(SubjectPublicKeyInfo, Vec<String>), BackendError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| BackendError::invalid(KIND, format!("the CSR is not PEM: {e}")))?;
    let (_, csr) = X509CertificationRequest::from_der(&block.contents).map_err(|e| {
        BackendError::invalid(KIND, format!("the CSR is not a PKCS#10 request: {e}"))
    })?;
    csr.verify_signature().map_err(|e| {
        BackendError::invalid(KIND, format!("the CSR's signature does not verify: {e}"))
    })?;
    let mut requested = Vec::new();
    let sans = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        });
    for name in sans.flat_map(|san| san.general_names.iter()) {
        let Some(text) = crate::san::text(name) else {
            return Err(BackendError::invalid(
                KIND,
                format!("the CSR asks for a name that is neither DNS nor IP: {name}"),
            ));
        };
        if !requested.contains(&text) {
            requested.push(text);
        }
    }
    let public_key = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)
        .map_err(|e| {
            BackendError::invalid(KIND, format!("the CSR's key type is not supported: {e}"))
        })?;
    Ok((public_key, requested))
}

/// Signs a leaf for `domains` over the CSR's key, valid `validity_days` but never past the root.
fn sign_leaf(
    root: &Root,
    public_key: &SubjectPublicKeyInfo,
    domains: &[DomainName],
    validity_days: u32,
) -> Result<String, BackendError> {
    let now = OffsetDateTime::now_utc();
    if validity_days == 0 {
        return Err(BackendError::invalid(
            KIND,
            "local_ca.validity_days must be at least 1",
        ));
    }
    if root.not_after <= now {
        return Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "the local CA root expired on {}: move ca.key and ca.pem away to create a new one",
                root.not_after
            ),
        });
    }
    // Validation bounds `validity_days`; past the year 9999 the root's end is the cap anyway.
    let not_after = now
        .checked_add(time::Duration::days(i64::from(validity_days)))
        .map_or(root.not_after, |end| end.min(root.not_after));
    let first = domains
        .first()
        .ok_or_else(|| BackendError::invalid(KIND, "a cert needs at least one domain"))?;
    let mut params = CertificateParams::default();
    params.subject_alt_names = domains
        .iter()
        .map(crate::san::entry)
        .collect::<Result<_, _>>()
        .map_err(|e| BackendError::invalid(KIND, format!("a domain cannot go into a SAN: {e}")))?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, first.as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - CLOCK_SKEW;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    params
        .signed_by(public_key, &root.issuer)
        .map(|cert| cert.pem())
        .map_err(|e| BackendError::invalid(KIND, format!("cannot sign the certificate: {e}")))
}

/// A random positive 128-bit serial (RFC 5280 §4.1.2.2 wants them unique, at most 20 octets).
fn random_serial() -> SerialNumber {
    let mut bytes = [0_u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    // A clear top bit keeps the DER INTEGER positive without a padding octet.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests;
