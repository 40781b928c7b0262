//! The persistent private key of each cert, at its `key_path`. It is generated once (ECDSA
//! P-256) and reused on every renewal, because operators pin it: an existing key file is never
//! regenerated nor overwritten, and one rota cannot read is an error, not a reason to replace
//! it. The renewer loads it (step 1) and builds the CSR from it (step 2).

use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData,
    SanType,
};
use rota_api::{DomainName, SecretString};

use crate::atomic_write::{create_atomic, create_dir_all_with_mode};

/// What loading or using a cert's key failed with; each variant names the key file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file exists but cannot be read.
    #[error("cannot read the private key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The key file exists but does not hold a key rota can sign with.
    #[error(
        "{path} is not a private key rota can use ({detail}): it must be an unencrypted PKCS#8 PEM \
         (`-----BEGIN PRIVATE KEY-----`) holding an ECDSA P-256/P-384, Ed25519 or RSA key. \
         Convert it with `openssl pkcs8 -topk8 -nocrypt -in {path} -out {path}.pkcs8` and move \
         that into place, or move the file away to let rota generate a new key (a new key breaks \
         pinning). rota never replaces an existing key file"
    )]
    Unusable {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        detail: String,
    },
    /// A new key could not be generated.
    #[error("cannot generate a private key for {path}: {detail}")]
    Generate {
        /// Where the key was to be written.
        path: PathBuf,
        /// What the crypto library said.
        detail: String,
    },
    /// A new key (or its directory) could not be written.
    #[error("cannot write the new private key {path}: {source}")]
    Write {
        /// The key file or the directory that could not be created.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// The CSR could not be built from the key.
    #[error("cannot build a CSR with the key {path}: {detail}")]
    Csr {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// A cert's private key, loaded from (or just written to) its `key_path`.
pub struct CertKey {
    path: PathBuf,
    pair: KeyPair,
    pem: SecretString,
}

impl fmt::Debug for CertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key material stays out of logs; the path and algorithm are enough to debug.
        f.debug_struct("CertKey")
            .field("path", &self.path)
            .field("algorithm", self.pair.algorithm())
            .finish_non_exhaustive()
    }
}

/// The outcome of [`load_or_generate`].
#[derive(Debug)]
pub struct LoadedKey {
    /// The key.
    pub key: CertKey,
    /// True when the file was missing and this call generated and wrote the key.
    pub generated: bool,
}

/// Loads the key at `key_path`, or generates an ECDSA P-256 key there (0600, missing parent
/// directories 0700) when there is no file. Blocking: call it from `spawn_blocking`.
pub fn load_or_generate(key_path: &Path) -> Result<LoadedKey, KeyError> {
    match std::fs::read(key_path) {
        Ok(bytes) => load(key_path, &bytes).map(|key| LoadedKey {
            key,
            generated: false,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => generate(key_path),
        Err(source) => Err(KeyError::Read {
            path: key_path.to_owned(),
            source,
        }),
    }
}

fn load(path: &Path, bytes: &[u8]) -> Result<CertKey, KeyError> {
    let unusable = |detail: String| KeyError::Unusable {
        path: path.to_owned(),
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| unusable("not a text file".into()))?;
    let pair = KeyPair::from_pem(text).map_err(|e| unusable(e.to_string()))?;
    warn_if_exposed(path);
    Ok(CertKey::new(path, pair))
}

/// A private key others can read is not secret any more; say so, but keep working with it.
fn warn_if_exposed(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "the private key is readable by group or others: chmod 600 it"
            );
        }
    }
}

fn generate(path: &Path) -> Result<LoadedKey, KeyError> {
    let write_error = |path: &Path, source| KeyError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir_all_with_mode(dir, 0o700).map_err(|e| write_error(dir, e))?;
    }
    let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| KeyError::Generate {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    let key = CertKey::new(path, pair);
    match create_atomic(path, key.pem.expose().as_bytes(), 0o600) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "generated a new ECDSA P-256 private key");
            Ok(LoadedKey {
                key,
                generated: true,
            })
        }
        // Another renewal sharing this key_path wrote one first: theirs is the key now.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
                path: path.to_owned(),
                source,
            })?;
            load(path, &bytes).map(|key| LoadedKey {
                key,
                generated: false,
            })
        }
        Err(e) => Err(write_error(path, e)),
    }
}

impl CertKey {
    fn new(path: &Path, pair: KeyPair) -> Self {
        // Normalised to the PKCS#8 PEM of the key alone, which is what installers write out.
        let pem = SecretString::new(pair.serialize_pem());
        Self {
            path: path.to_owned(),
            pair,
            pem,
        }
    }

    /// The key as PKCS#8 PEM, for installers that write `privkey.pem`.
    #[must_use]
    pub fn pem(&self) -> &SecretString {
        &self.pem
    }

    /// The DER `SubjectPublicKeyInfo`, to compare with the public key of an issued cert.
    #[must_use]
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.subject_public_key_info()
    }

    /// A PEM CSR signed by this key, with every domain as a DNS SAN and the first as CN.
    pub fn csr_pem(&self, domains: &[DomainName]) -> Result<String, KeyError> {
        let csr_error = |detail: String| KeyError::Csr {
            path: self.path.clone(),
            detail,
        };
        let first = domains
            .first()
            .ok_or_else(|| csr_error("a CSR needs at least one domain".into()))?;
        let mut params = CertificateParams::default();
        // Built by hand rather than with `CertificateParams::new`, which would turn a
        // numeric-looking name into an IP SAN.
        params.subject_alt_names = domains
            .iter()
            .map(|d| {
                rcgen::string::Ia5String::try_from(d.as_str())
                    .map(SanType::DnsName)
                    .map_err(|e| csr_error(format!("{d}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
        params
            .serialize_request(&self.pair)
            .and_then(|csr| csr.pem())
            .map_err(|e| csr_error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(names: &[&str]) -> Vec<DomainName> {
        names.iter().map(|n| DomainName::new(n).unwrap()).collect()
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generates_once_then_reloads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/web/key.pem");
        let first = load_or_generate(&path).unwrap();
        assert!(first.generated);
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(&dir.path().join("keys")), 0o700);
        assert_eq!(mode_of(&dir.path().join("keys/web")), 0o700);
        let second = load_or_generate(&path).unwrap();
        assert!(!second.generated);
        assert_eq!(first.key.pem(), second.key.pem());
        assert_eq!(first.key.public_key_der(), second.key.public_key_der());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            second.key.pem().expose()
        );
    }

    #[test]
    fn garbage_is_an_error_and_is_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        std::fs::write(&path, b"not a key\n").unwrap();
        let err = load_or_generate(&path).unwrap_err();
        assert!(matches!(err, KeyError::Unusable { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("openssl pkcs8"), "{message}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key\n");
    }

    #[test]
    fn a_sec1_key_is_refused_with_the_conversion_hint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ec.pem");
        let status = std::process::Command::new("openssl")
            .args([
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
            ])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let before = std::fs::read(&path).unwrap();
        let err = load_or_generate(&path).unwrap_err();
        assert!(err.to_string().contains("PKCS#8"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn loads_openssl_pkcs8_keys_of_each_supported_kind() {
        let dir = tempfile::tempdir().unwrap();
        for (name, args) in [
            (
                "p384",
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
            ),
            ("ed25519", &["-algorithm", "ED25519"][..]),
            (
                "rsa",
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"][..],
            ),
        ] {
            let path = dir.path().join(format!("{name}.pem"));
            let status = std::process::Command::new("openssl")
                .arg("genpkey")
                .args(args)
                .arg("-out")
                .arg(&path)
                .status()
                .unwrap();
            assert!(status.success(), "{name}");
            let loaded = load_or_generate(&path).unwrap();
            assert!(!loaded.generated, "{name}");
            loaded.key.csr_pem(&domains(&["a.test"])).unwrap();
        }
    }

    #[test]
    fn csr_carries_every_domain_and_verifies() {
        use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension};
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_generate(&dir.path().join("k.pem")).unwrap().key;
        let pem = key
            .csr_pem(&domains(&["a.test", "*.b.test", "10.0.0.1"]))
            .unwrap();
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .unwrap();
        csr.verify_signature().unwrap();
        let cn = csr.certification_request_info.subject.to_string();
        assert_eq!(cn, "CN=a.test");
        let sans: Vec<String> = csr
            .requested_extensions()
            .unwrap()
            .filter_map(|ext| match ext {
                ParsedExtension::SubjectAlternativeName(san) => Some(san),
                _ => None,
            })
            .flat_map(|san| san.general_names.iter())
            .map(|name| match name {
                GeneralName::DNSName(dns) => (*dns).to_owned(),
                other => panic!("unexpected SAN {other:?}"),
            })
            .collect();
        assert_eq!(sans, ["a.test", "*.b.test", "10.0.0.1"]);
        assert_eq!(
            csr.certification_request_info.subject_pki.raw,
            key.public_key_der()
        );
        assert!(key.csr_pem(&[]).is_err());
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = load_or_generate(&dir.path().join("k.pem")).unwrap().key;
        let printed = format!("{key:?}");
        assert!(!printed.contains("PRIVATE"), "{printed}");
    }
}
