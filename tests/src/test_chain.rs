//! Certificates for installer tests that need real PEM but no CA: a root, optionally an
//! intermediate, and a leaf for some names, signed with rcgen.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A leaf, its chain and its key, PEM.
#[derive(Debug, Clone)]
pub struct TestChain {
    /// The leaf.
    pub leaf_pem: String,
    /// What signed it, leaf excluded: the intermediate, then the root unless `public`.
    pub chain_pem: String,
    /// The leaf's private key.
    pub key_pem: String,
    /// The root alone.
    pub root_pem: String,
}

impl TestChain {
    /// A leaf for `names` under a private root (the chain is the root itself, as the local CA
    /// serves it).
    #[must_use]
    pub fn private(names: &[&str]) -> Self {
        let (root, root_pem) = ca("rota test root", None);
        let (leaf_pem, key_pem) = leaf(names, &root);
        Self {
            leaf_pem,
            chain_pem: root_pem.clone(),
            key_pem,
            root_pem,
        }
    }

    /// A leaf for `names` under an intermediate, as a public CA serves it: the chain holds the
    /// intermediate only, never the root.
    #[must_use]
    pub fn public(names: &[&str]) -> Self {
        let (root, root_pem) = ca("rota test public root", None);
        let (intermediate, intermediate_pem) = ca("rota test intermediate", Some(&root));
        let (leaf_pem, key_pem) = leaf(names, &intermediate);
        Self {
            leaf_pem,
            chain_pem: intermediate_pem,
            key_pem,
            root_pem,
        }
    }
}

/// A signing CA and its certificate, PEM.
fn ca(name: &str, parent: Option<&Issuer<'static, KeyPair>>) -> (Issuer<'static, KeyPair>, String) {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    let cert = match parent {
        Some(parent) => params.clone().signed_by(&key, parent),
        None => params.clone().self_signed(&key),
    }
    .expect("CA cert");
    (Issuer::new(params, key), cert.pem())
}

fn leaf(names: &[&str], issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let params = CertificateParams::new(names).expect("leaf params");
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("leaf cert");
    (cert.pem(), key.serialize_pem())
}

/// A CA shaped like a commercial one (a root and an intermediate) that signs CSRs, for
/// doubles of CAs that issue from the operator's CSR (Namecheap's reissue).
pub struct CsrSigner {
    intermediate: Issuer<'static, KeyPair>,
    intermediate_pem: String,
    /// The root, PEM: what a verifier trusts.
    pub root_pem: String,
}

impl Default for CsrSigner {
    fn default() -> Self {
        let (root, root_pem) = ca("rota test sectigo-like root", None);
        let (intermediate, intermediate_pem) =
            ca("rota test sectigo-like intermediate", Some(&root));
        Self {
            intermediate,
            intermediate_pem,
            root_pem,
        }
    }
}

impl CsrSigner {
    /// Signs `csr_pem` for 90 days from now: (leaf PEM, chain PEM = the intermediate).
    ///
    /// # Panics
    /// On a CSR rcgen cannot read: the doubles only sign what rota sent.
    #[must_use]
    pub fn sign(&self, csr_pem: &str) -> (String, String) {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("a CSR");
        let now = time::OffsetDateTime::now_utc();
        csr.params.not_before = now - time::Duration::minutes(5);
        csr.params.not_after = now + time::Duration::days(90);
        let leaf = csr.signed_by(&self.intermediate).expect("sign the CSR");
        (leaf.pem(), self.intermediate_pem.clone())
    }
}
