//! Observation: reads back what is installed for each cert and turns it into plain facts
//! (notAfter, SANs, serial, whether it belongs to the key at `key_path`). Parsing and key
//! checks are cached by content and file identity, so a sweep over thousands of unchanged
//! certs costs a read and a `stat` each.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use rota_api::CertId;
use rota_api::wire::InstalledCert;

use crate::desired::CertRuntime;
use crate::locks::lock;
use crate::plan::Observation;

/// How many installed certs are read back at once during a sweep.
const READ_CONCURRENCY: usize = 64;

/// How long an install backend may take to read a cert back before it counts as unreadable,
/// so one slow remote (an API server, a NAS) cannot hold up the observation of every cert.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Below this many certs a sweep is not worth splitting across threads.
const MIN_BLOCKING_CHUNK: usize = 256;

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
    fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }
}

/// What a cached parse was made from: a local file's identity, or the PEM a backend returned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    File(FileStamp),
    Pem(String),
}

/// Where one cert's installed PEM comes from in a sweep.
enum Source {
    /// A local file the observer stats (and reads only when it changed).
    File(PathBuf),
    /// What the install backend's `current_cert_pem` returned.
    Fetched(Result<Option<String>, String>),
}

/// The last parse of each cert's installed leaf.
type LeafCache = HashMap<CertId, (Fingerprint, Result<ParsedLeaf, String>)>;
/// A key file's identity and its raw public key (`None` if unreadable).
type KeyCache = HashMap<PathBuf, (FileStamp, Option<Vec<u8>>)>;

/// Reads installed certs back and remembers what it parsed.
#[derive(Debug, Default)]
pub(crate) struct Observer {
    leaves: Mutex<LeafCache>,
    keys: Mutex<KeyCache>,
}

impl Observer {
    /// Observes one cert.
    pub(crate) async fn observe(self: &Arc<Self>, cert: &Arc<CertRuntime>) -> Observation {
        self.observe_many(std::slice::from_ref(cert))
            .await
            .pop()
            .unwrap_or(Observation::NotInstalled)
    }

    /// Observes many certs. Certs installed as local files are checked by `stat` and only
    /// re-read when the file changed; the others are fetched from their backend concurrently.
    /// Parsing and key checks run off the runtime, split across the machine's cores.
    pub(crate) async fn observe_many(
        self: &Arc<Self>,
        certs: &[Arc<CertRuntime>],
    ) -> Vec<Observation> {
        let sources = fetch_sources(certs).await;
        let parallelism = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let chunk = certs.len().div_ceil(parallelism).max(MIN_BLOCKING_CHUNK);
        let mut batches = tokio::task::JoinSet::new();
        let mut sources = sources.into_iter();
        for (index, certs) in certs.chunks(chunk).enumerate() {
            let this = Arc::clone(self);
            let certs = certs.to_vec();
            let sources: Vec<Source> = sources.by_ref().take(certs.len()).collect();
            batches.spawn_blocking(move || {
                let observed: Vec<Observation> = certs
                    .iter()
                    .zip(sources)
                    .map(|(cert, source)| this.interpret(cert, source))
                    .collect();
                (index, observed)
            });
        }
        let mut parts = Vec::with_capacity(batches.len());
        while let Some(joined) = batches.join_next().await {
            match joined {
                Ok(part) => parts.push(part),
                Err(e) => tracing::error!(error = %e, "observing installed certs panicked"),
            }
        }
        parts.sort_by_key(|(index, _)| *index);
        parts
            .into_iter()
            .flat_map(|(_, observed)| observed)
            .collect()
    }

    fn interpret(&self, cert: &CertRuntime, source: Source) -> Observation {
        let leaf = match source {
            Source::File(path) => self.leaf_from_file(&cert.spec.id, &path),
            Source::Fetched(Err(e)) => return Observation::Unreadable(e),
            Source::Fetched(Ok(None)) => return Observation::NotInstalled,
            Source::Fetched(Ok(Some(pem))) => {
                Some(self.parse_cached(&cert.spec.id, Fingerprint::Pem(pem.clone()), || Ok(pem)))
            }
        };
        match leaf {
            None => Observation::NotInstalled,
            Some(Err(e)) => Observation::Unreadable(e),
            Some(Ok(leaf)) => {
                let key = self.key_cached(&cert.spec.key_path);
                let mut facts = leaf.facts;
                facts.key_matches = key.is_some_and(|k| k == leaf.public_key);
                Observation::Installed(facts)
            }
        }
    }

    /// The parsed leaf at `path`, `None` when no file is there.
    fn leaf_from_file(&self, id: &CertId, path: &Path) -> Option<Result<ParsedLeaf, String>> {
        let unreadable = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
        match FileStamp::of(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(unreadable(e))),
            Ok(stamp) => Some(self.parse_cached(id, Fingerprint::File(stamp), || {
                std::fs::read_to_string(path).map_err(unreadable)
            })),
        }
    }

    /// The cached parse if `fingerprint` matches it, else `read()` parsed and cached.
    fn parse_cached(
        &self,
        id: &CertId,
        fingerprint: Fingerprint,
        read: impl FnOnce() -> Result<String, String>,
    ) -> Result<ParsedLeaf, String> {
        if let Some((cached, parsed)) = lock(&self.leaves).get(id)
            && *cached == fingerprint
        {
            return parsed.clone();
        }
        let parsed = read().and_then(|pem| parse_leaf(&pem));
        lock(&self.leaves).insert(id.clone(), (fingerprint, parsed.clone()));
        parsed
    }

    /// The raw public key of the key at `path`, or `None` if it is missing or unreadable.
    fn key_cached(&self, path: &Path) -> Option<Vec<u8>> {
        let stamp = FileStamp::of(path).ok()?;
        if let Some((cached, key)) = lock(&self.keys).get(path)
            && *cached == stamp
        {
            return key.clone();
        }
        let key = std::fs::read_to_string(path)
            .ok()
            .and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok())
            .map(|pair| rcgen::PublicKeyData::der_bytes(&pair).to_vec());
        lock(&self.keys).insert(path.to_owned(), (stamp, key.clone()));
        key
    }

    /// Forgets what was cached for certs no longer configured.
    pub(crate) fn retain(&self, keep: impl Fn(&CertId) -> bool) {
        lock(&self.leaves).retain(|id, _| keep(id));
    }
}

/// Each cert's source: its local file, or what its backend returned (fetched concurrently).
async fn fetch_sources(certs: &[Arc<CertRuntime>]) -> Vec<Source> {
    let mut sources: Vec<Source> = certs
        .iter()
        .map(|c| match c.install.current_cert_path(&c.spec.id) {
            Some(path) => Source::File(path),
            None => Source::Fetched(Ok(None)),
        })
        .collect();
    let remote: Vec<usize> = (0..certs.len())
        .filter(|&i| matches!(sources[i], Source::Fetched(_)))
        .collect();
    for chunk in remote.chunks(READ_CONCURRENCY) {
        let mut reads = tokio::task::JoinSet::new();
        for &i in chunk {
            let cert = Arc::clone(&certs[i]);
            reads.spawn(async move {
                let read = cert.install.current_cert_pem(&cert.spec.id);
                let pem = match tokio::time::timeout(FETCH_TIMEOUT, read).await {
                    Ok(pem) => pem.map_err(|e| e.to_string()),
                    Err(_) => Err(format!(
                        "the {} installer did not answer within {}s",
                        cert.install.kind(),
                        FETCH_TIMEOUT.as_secs()
                    )),
                };
                (i, pem)
            });
        }
        while let Some(joined) = reads.join_next().await {
            match joined {
                Ok((i, pem)) => sources[i] = Source::Fetched(pem),
                Err(e) => tracing::error!(error = %e, "reading an installed cert panicked"),
            }
        }
    }
    sources
}

/// Parses the first certificate of a PEM document into facts (`key_matches` left false).
pub fn inspect_pem(pem: &str) -> Result<InstalledCert, String> {
    parse_leaf(pem).map(|leaf| leaf.facts)
}

/// The DER SubjectPublicKeyInfo of the first certificate of a PEM document.
pub(crate) fn leaf_spki(pem: &str) -> Result<Vec<u8>, String> {
    with_leaf(pem, |cert| Ok(cert.public_key().raw.to_vec()))
}

/// Runs `read` on the first certificate of a PEM document.
fn with_leaf<T>(
    pem: &str,
    read: impl FnOnce(&X509Certificate<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    let (_, cert) = X509Certificate::from_der(&block.contents)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    read(&cert)
}

fn parse_leaf(pem: &str) -> Result<ParsedLeaf, String> {
    with_leaf(pem, parse_facts)
}

fn parse_facts(cert: &X509Certificate<'_>) -> Result<ParsedLeaf, String> {
    let time = |t: x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| e.to_string())
    };
    let sans = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(rota_providers::san::text)
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
            key_type: key_type(cert),
            sha256_fingerprint: fingerprint(cert.as_raw()),
        },
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// The public key's algorithm and size, as an operator names it.
fn key_type(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::EC(point)) => format!("ECDSA P-{}", point.key_size()),
        _ if spki.algorithm.algorithm == x509_parser::oid_registry::OID_SIG_ED25519 => {
            "Ed25519".to_owned()
        }
        _ => spki.algorithm.algorithm.to_id_string(),
    }
}

/// SHA-256 of the certificate's DER, colon-separated upper-case hex.
fn fingerprint(der: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, der);
    let mut hex = String::with_capacity(digest.as_ref().len() * 3);
    for (i, b) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            hex.push(':');
        }
        let _ = write!(hex, "{b:02X}");
    }
    hex
}
