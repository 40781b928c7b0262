//! The PEM rota hands to and gets from an ACME CA: the CSR rota built (sent as DER so the
//! per-cert key stays the one on disk), the chain the CA returns (split into leaf and the
//! rest), and the installed leaf's RFC 9773 identifier for `replaces` and renewal info.

use instant_acme::CertificateIdentifier;
use rota_api::{BackendError, IssuedCert};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};

use super::KIND;

const END_CERTIFICATE: &str = "-----END CERTIFICATE-----";

/// The DER of the PKCS#10 request in `csr_pem`.
pub(crate) fn csr_der(csr_pem: &str) -> Result<Vec<u8>, BackendError> {
    CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| {
            BackendError::invalid(
                KIND,
                format!("the CSR is not a PEM certificate request: {e}"),
            )
        })
}

/// The DER of the first certificate in `cert_pem` (the leaf).
pub(crate) fn leaf_der(cert_pem: &str) -> Result<CertificateDer<'static>, BackendError> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| BackendError::invalid(KIND, format!("not a PEM certificate: {e}")))
}

/// The RFC 9773 identifier (AKI keyIdentifier + serial) of the leaf in `cert_pem`.
pub(crate) fn cert_identifier(
    cert_pem: &str,
) -> Result<CertificateIdentifier<'static>, BackendError> {
    let der = leaf_der(cert_pem)?;
    CertificateIdentifier::try_from(&der)
        .map(CertificateIdentifier::into_owned)
        .map_err(|e| BackendError::invalid(KIND, e))
}

/// Splits the CA's PEM chain into the leaf and everything after it, as the CA sent them.
pub(crate) fn split_chain(chain_pem: &str) -> Result<IssuedCert, BackendError> {
    let refused = |why: String| BackendError::Refused {
        backend: KIND,
        detail: format!("the CA returned an unusable certificate chain: {why}"),
    };
    let end = chain_pem
        .find(END_CERTIFICATE)
        .ok_or_else(|| refused("it holds no certificate".into()))?
        + END_CERTIFICATE.len();
    let (leaf, rest) = chain_pem.split_at(end);
    let cert_pem = format!("{}\n", leaf.trim_start());
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| refused(format!("the leaf: {e}")))?;
    let mut chain_pem = rest.trim_start().to_owned();
    for cert in CertificateDer::pem_slice_iter(chain_pem.as_bytes()) {
        cert.map_err(|e| refused(format!("an intermediate: {e}")))?;
    }
    if !chain_pem.is_empty() && !chain_pem.ends_with('\n') {
        chain_pem.push('\n');
    }
    Ok(IssuedCert {
        cert_pem,
        chain_pem,
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair, SerialNumber,
    };

    use super::*;

    /// A CA whose key identifier is `C0 FF EE` and a leaf it signed with serial `CA FE`.
    fn ca_and_leaf() -> (String, String) {
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_identifier_method = KeyIdMethod::PreSpecified(vec![0xC0, 0xFF, 0xEE]);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.clone().self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(["a.test".to_owned()]).unwrap();
        leaf.serial_number = Some(SerialNumber::from_slice(&[0xCA, 0xFE]));
        leaf.use_authority_key_identifier_extension = true;
        let leaf_pem = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap()
            .pem();
        (ca_pem, leaf_pem)
    }

    #[test]
    fn chains_split_into_leaf_and_rest() {
        let (ca, leaf) = ca_and_leaf();
        for (input, chain, why) in [
            (format!("{leaf}{ca}"), ca.clone(), "leaf then intermediate"),
            (format!("{leaf}\n{ca}"), ca.clone(), "blank line between"),
            (format!("{leaf}\r\n{ca}"), ca.clone(), "CRLF between"),
            (
                leaf.trim_end().to_owned(),
                String::new(),
                "leaf alone, no newline",
            ),
            (
                format!("{leaf}{}", ca.trim_end()),
                ca.clone(),
                "chain without final newline",
            ),
        ] {
            let issued = split_chain(&input).unwrap();
            assert_eq!(issued.cert_pem, leaf, "{why}");
            assert_eq!(issued.chain_pem, chain, "{why}");
        }
        for (input, why) in [
            ("", "empty"),
            ("<html>busy</html>", "not PEM"),
            (
                "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
                "bad base64",
            ),
        ] {
            let err = split_chain(input).unwrap_err();
            assert_eq!(err.reason(), "Refused", "{why}: {err}");
        }
    }

    #[test]
    fn certificate_identifiers_follow_rfc_9773() {
        let (ca, leaf) = ca_and_leaf();
        // base64url(C0 FF EE) "." base64url(DER serial 00 CA FE: a leading 0 keeps it positive)
        assert_eq!(cert_identifier(&leaf).unwrap().to_string(), "wP_u.AMr-");
        // A self-signed root from rcgen has no AKI: nothing to identify it by.
        assert_eq!(cert_identifier(&ca).unwrap_err().reason(), "InvalidInput");
        assert_eq!(
            cert_identifier("junk").unwrap_err().reason(),
            "InvalidInput"
        );
    }

    #[test]
    fn csrs_are_sent_as_der() {
        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::new(["a.test".to_owned()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        assert_eq!(csr_der(&csr.pem().unwrap()).unwrap(), csr.der().to_vec());
        assert_eq!(csr_der("nope").unwrap_err().reason(), "InvalidInput");
    }
}
