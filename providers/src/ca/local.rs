//! `ca: { kind: local }`: the CA rotad embeds, so the quickstart runs offline and LAN-only
//! services get certs. It runs the same pipeline as any CA: `submit` checks the CSR and asks
//! for no challenge, `await_issuance` signs it with the root from [`root`]. One [`LocalCa`]
//! serves every cert using the same directory, so concurrent renewals share one root.

mod root;

use super::pending::PendingOrders;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rota_api::{BackendError, CaBackend, ChallengeKind, DcvChallenge, DomainName, IssuedCert};
use time::OffsetDateTime;
use tokio::sync::OnceCell;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension};

pub use root::root_cert_path;
use root::{CLOCK_SKEW, Root};

/// The config `kind` of this CA.
const KIND: &str = "local";

/// After this long, a submitted CSR nobody collected belongs to an abandoned renewal.
const ABANDONED_AFTER: Duration = Duration::from_secs(600);

/// The CA of one directory, shared by every cert that issues from it.
pub(crate) struct LocalCa {
    directory: PathBuf,
    /// Loaded (or created) once, on first use; the cell makes creation race-free in-process.
    root: OnceCell<Root>,
    /// Public keys of the CSRs submitted and not yet signed.
    pending: PendingOrders<SubjectPublicKeyInfo>,
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
            pending: PendingOrders::new(ABANDONED_AFTER),
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
    ) -> Result<Vec<DcvChallenge>, BackendError> {
        let public_key = check_csr(domains, csr_pem)?;
        // Loading the root now makes a broken CA directory fail the order, not the signing.
        self.ca.root().await?;
        // `await_issuance` only names domains, so two keys in flight could be mixed up.
        let kept = self
            .ca
            .pending
            .insert_unless(domains, public_key.clone(), |live| *live != public_key);
        if !kept {
            return Err(BackendError::Refused {
                backend: KIND,
                detail: "another cert with the same domains but a different key is being \
                         issued right now; retry once it is done"
                    .into(),
            });
        }
        // The operator controls this CA: there is no domain control to prove.
        Ok(Vec::new())
    }

    async fn await_issuance(&self, domains: &[DomainName]) -> Result<IssuedCert, BackendError> {
        let public_key = self.ca.pending.take(domains).ok_or_else(|| {
            BackendError::invalid(
                KIND,
                "no CSR was submitted for these domains (submit comes before issuance)",
            )
        })?;
        let root = self.ca.root().await?;
        let cert_pem = sign_leaf(root, &public_key, domains, self.validity_days)?;
        Ok(IssuedCert {
            cert_pem,
            chain_pem: root.cert_pem.clone(),
        })
    }
}

/// Parses `csr_pem`, verifies its self-signature and that its SANs are exactly `domains`, and
/// returns the public key to certify.
fn check_csr(domains: &[DomainName], csr_pem: &str) -> Result<SubjectPublicKeyInfo, BackendError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(csr_pem.as_bytes())
        .map_err(|e| BackendError::invalid(KIND, format!("the CSR is not PEM: {e}")))?;
    let (_, csr) = X509CertificationRequest::from_der(&block.contents).map_err(|e| {
        BackendError::invalid(KIND, format!("the CSR is not a PKCS#10 request: {e}"))
    })?;
    csr.verify_signature().map_err(|e| {
        BackendError::invalid(KIND, format!("the CSR's signature does not verify: {e}"))
    })?;
    let mut requested = BTreeSet::new();
    let sans = csr
        .requested_extensions()
        .into_iter()
        .flatten()
        .filter_map(|ext| match ext {
            ParsedExtension::SubjectAlternativeName(san) => Some(san),
            _ => None,
        });
    for name in sans.flat_map(|san| san.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => requested.insert(dns.to_ascii_lowercase()),
            other => {
                return Err(BackendError::invalid(
                    KIND,
                    format!("the CSR asks for a non-DNS name: {other}"),
                ));
            }
        };
    }
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
    SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw).map_err(|e| {
        BackendError::invalid(KIND, format!("the CSR's key type is not supported: {e}"))
    })
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
        .map(|d| rcgen::string::Ia5String::try_from(d.as_str()).map(SanType::DnsName))
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
