//! Observation: reads back what is installed for each cert and turns it into plain facts
//! (notAfter, SANs, serial, whether it belongs to the key at `key_path`). Parsing and key
//! checks are cached by content and file identity, so a sweep over thousands of unchanged
//! certs costs a read and a `stat` each.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use rota_api::CertId;
use rota_api::wire::InstalledCert;

use crate::desired::CertRuntime;
use crate::plan::Observation;

/// How many installed certs are read back at once during a sweep.
const READ_CONCURRENCY: usize = 64;

/// A parsed leaf: its facts (without the key check) and its raw public key.
#[derive(Debug, Clone)]
struct ParsedLeaf {
    facts: InstalledCert,
    public_key: Vec<u8>,
}

/// Identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let m = std::fs::metadata(path).ok()?;
        Some(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// Reads installed certs back and remembers what it parsed.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    leaves: Mutex<HashMap<CertId, (String, Result<ParsedLeaf, String>)>>,
    keys: Mutex<HashMap<PathBuf, (FileStamp, Option<Vec<u8>>)>>,
}

impl Observer {
    /// Observes one cert.
    pub(crate) async fn observe(self: &Arc<Self>, cert: &Arc<CertRuntime>) -> Observation {
        self.observe_many(std::slice::from_ref(cert))
            .await
            .pop()
            .unwrap_or(Observation::NotInstalled)
    }

    /// Observes many certs: reads are concurrent, parsing and key checks run off the runtime.
    pub(crate) async fn observe_many(
        self: &Arc<Self>,
        certs: &[Arc<CertRuntime>],
    ) -> Vec<Observation> {
        let mut pems = Vec::with_capacity(certs.len());
        for chunk in certs.chunks(READ_CONCURRENCY) {
            let mut reads = tokio::task::JoinSet::new();
            for (i, cert) in chunk.iter().enumerate() {
                let cert = Arc::clone(cert);
                reads.spawn(async move { (i, cert.install.current_cert_pem(&cert.spec.id).await) });
            }
            let mut chunk_pems: Vec<_> = (0..chunk.len()).map(|_| Ok(None)).collect();
            while let Some(joined) = reads.join_next().await {
                match joined {
                    Ok((i, pem)) => chunk_pems[i] = pem.map_err(|e| e.to_string()),
                    Err(e) => tracing::error!(error = %e, "reading an installed cert panicked"),
                }
            }
            pems.extend(chunk_pems);
        }
        let this = Arc::clone(self);
        let certs = certs.to_vec();
        tokio::task::spawn_blocking(move || {
            certs
                .iter()
                .zip(pems)
                .map(|(cert, pem)| this.interpret(cert, pem))
                .collect()
        })
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "interpreting installed certs panicked");
            Vec::new()
        })
    }

    fn interpret(&self, cert: &CertRuntime, pem: Result<Option<String>, String>) -> Observation {
        let pem = match pem {
            Err(e) => return Observation::Unreadable(e),
            Ok(None) => return Observation::NotInstalled,
            Ok(Some(pem)) => pem,
        };
        let leaf = self.parse_cached(&cert.spec.id, pem);
        match leaf {
            Err(e) => Observation::Unreadable(e),
            Ok(leaf) => {
                let key = self.key_cached(&cert.spec.key_path);
                let mut facts = leaf.facts;
                facts.key_matches = key.is_some_and(|k| k == leaf.public_key);
                Observation::Installed(facts)
            }
        }
    }

    fn parse_cached(&self, id: &CertId, pem: String) -> Result<ParsedLeaf, String> {
        let mut leaves = self.leaves.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached_pem, parsed)) = leaves.get(id) {
            if *cached_pem == pem {
                return parsed.clone();
            }
        }
        let parsed = parse_leaf(&pem);
        leaves.insert(id.clone(), (pem, parsed.clone()));
        parsed
    }

    /// The raw public key of the key at `path`, or `None` if it is missing or unreadable.
    fn key_cached(&self, path: &Path) -> Option<Vec<u8>> {
        let stamp = FileStamp::of(path)?;
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, key)) = keys.get(path) {
            if *cached == stamp {
                return key.clone();
            }
        }
        let key = std::fs::read_to_string(path)
            .ok()
            .and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok())
            .map(|pair| rcgen::PublicKeyData::der_bytes(&pair).to_vec());
        keys.insert(path.to_owned(), (stamp, key.clone()));
        key
    }

    /// Forgets what was cached for certs no longer configured.
    pub(crate) fn retain(&self, keep: impl Fn(&CertId) -> bool) {
        self.leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|id, _| keep(id));
    }
}

/// Parses the first certificate of a PEM document into facts (`key_matches` left false).
pub fn inspect_pem(pem: &str) -> Result<InstalledCert, String> {
    parse_leaf(pem).map(|leaf| leaf.facts)
}

fn parse_leaf(pem: &str) -> Result<ParsedLeaf, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let (_, cert) = X509Certificate::from_der(&block.contents)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let time = |t: x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| e.to_string())
    };
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(format!("unreadable subjectAltName: {e}")),
    };
    let serial = cert.raw_serial().iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok(ParsedLeaf {
        facts: InstalledCert {
            serial,
            issuer: cert.issuer().to_string(),
            not_before: time(cert.validity().not_before)?,
            not_after: time(cert.validity().not_after)?,
            sans,
            key_matches: false,
        },
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}
