//! An in-process ACME server double for what pebble 2.4 cannot do: renewal information
//! (RFC 9773), certificate profiles (draft-ietf-acme-profiles) and scripted `rateLimited`
//! answers. It speaks HTTPS on a free loopback port (rota accepts only `https://` directory
//! URLs) with a root it makes itself ([`AcmeDouble::ca_bundle_path`]), answers in RFC 8555's
//! shapes, records every request so a test asserts on what rota sent, and issues real
//! certificates from that root: every authorization is already `valid`, finalize signs the CSR.
//!
//! It verifies no JWS signature and no nonce: it reads the payloads, nothing more.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyIdMethod, KeyPair};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::serve::{TlsListener, tls_acceptor};

mod resources;

/// The root's subject key identifier, so a test can spell the RFC 9773 certIDs it expects.
const ROOT_KEY_ID: [u8; 8] = [0xAC, 0xE0, 0xD0, 0x0B, 0x1E, 0x20, 0x26, 0x11];

/// The ACME resources the double serves; requests are counted per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /dir` (RFC 8555 §7.1.1).
    Directory,
    /// `HEAD`/`GET /nonce` (§7.2).
    NewNonce,
    /// `POST /account` (§7.3).
    NewAccount,
    /// `POST /order` (§7.4).
    NewOrder,
    /// `POST /order/{n}`, `/authz/..`, `/cert/{n}` (POST-as-GET, §6.3).
    Fetch,
    /// `POST /order/{n}/finalize` (§7.4).
    Finalize,
    /// `GET /renewal-info/{certID}` (RFC 9773 §4.1).
    RenewalInfo,
}

/// A renewal window as RFC 9773 §4.2 serves it, with the `Retry-After` sent alongside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuggestedWindow {
    /// `suggestedWindow.start`.
    pub start: OffsetDateTime,
    /// `suggestedWindow.end`.
    pub end: OffsetDateTime,
    /// `explanationURL`.
    pub explanation_url: Option<String>,
    /// Seconds in the `Retry-After` header; no header when `None` (RFC 9773 lets a CA omit it).
    pub retry_after_secs: Option<u64>,
}

impl SuggestedWindow {
    /// The example response of RFC 9773 §4.2 (a window in January 2025, `Retry-After: 21600`).
    #[must_use]
    pub fn rfc9773_example() -> Self {
        Self {
            start: time::macros::datetime!(2025-01-02 04:00 UTC),
            end: time::macros::datetime!(2025-01-03 04:00 UTC),
            explanation_url: Some("https://acme.example.com/docs/ari".to_owned()),
            retry_after_secs: Some(21_600),
        }
    }
}

/// How `newOrder` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewOrderAnswer {
    /// 201 with an order whose authorizations are already valid.
    Accept,
    /// 429 `urn:ietf:params:acme:error:rateLimited` with `Retry-After` (RFC 8555 §6.6, §6.7).
    RateLimited {
        /// Seconds in the `Retry-After` header.
        retry_after_secs: u64,
    },
    /// A problem document `bytes` long: a broken or hostile CA that never stops talking.
    Oversized {
        /// The size of the body.
        bytes: usize,
    },
}

/// What the directory advertises.
#[derive(Debug, Clone, Default)]
pub struct DoubleOptions {
    /// Advertise `renewalInfo` (RFC 9773 §3).
    pub renewal_info: bool,
    /// `meta.profiles`: name → description (draft-ietf-acme-profiles).
    pub profiles: BTreeMap<String, String>,
}

/// One request the double received: where, and the decoded JWS payload (`Null` for GETs and
/// POST-as-GET).
struct Received {
    endpoint: Endpoint,
    payload: Value,
}

type WindowFn = dyn Fn(usize) -> Option<SuggestedWindow> + Send + Sync;

struct Order {
    identifiers: Value,
    replaces: Option<String>,
    profile: Option<String>,
    cert_pem: Option<String>,
}

struct Inner {
    base: String,
    options: DoubleOptions,
    root: Issuer<'static, KeyPair>,
    root_pem: String,
    received: Vec<Received>,
    new_order: NewOrderAnswer,
    windows: Arc<WindowFn>,
    orders: Vec<Order>,
    /// certIDs of the certs issued so far, in order.
    issued: Vec<String>,
    /// What was issued when, in order (parallel to `issued`).
    issuances: Vec<Issuance>,
    /// The lifetime of the certs it signs.
    validity: time::Duration,
}

/// One certificate the double signed: for which names, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuance {
    /// The order's identifiers (DNS names).
    pub names: Vec<String>,
    /// When finalize signed it (its notBefore is a minute earlier).
    pub at: OffsetDateTime,
}

type Shared = Arc<Mutex<Inner>>;

/// A running double; stopped on drop.
pub struct AcmeDouble {
    shared: Shared,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AcmeDouble {
    /// Starts the double on a background runtime and returns once it listens.
    #[must_use]
    pub fn start(options: DoubleOptions) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the double");
        listener.set_nonblocking(true).expect("nonblocking");
        let base = format!("https://{}", listener.local_addr().expect("local addr"));
        let mut root_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        root_params.key_identifier_method = KeyIdMethod::PreSpecified(ROOT_KEY_ID.to_vec());
        root_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rota ACME double root");
        let root_key = KeyPair::generate().expect("root key");
        let root_pem = root_params.self_signed(&root_key).expect("root").pem();
        let root = Issuer::new(root_params, root_key);
        let tls = tls_acceptor(&root);
        let dir = tempfile::tempdir().expect("double temp dir");
        std::fs::write(dir.path().join("root.pem"), &root_pem).expect("write root.pem");
        let shared = Arc::new(Mutex::new(Inner {
            base: base.clone(),
            options,
            root,
            root_pem,
            received: Vec::new(),
            new_order: NewOrderAnswer::Accept,
            windows: Arc::new(|_| None),
            orders: Vec::new(),
            issued: Vec::new(),
            issuances: Vec::new(),
            validity: time::Duration::days(90),
        }));
        let (stop, stopped) = oneshot::channel();
        let app = resources::router(Arc::clone(&shared));
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("double runtime");
            runtime.block_on(async move {
                let tcp = TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(TlsListener { tcp, tls }, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve the double");
            });
        });
        Self {
            shared,
            dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `acme.directory_url` for rota.
    #[must_use]
    pub fn directory_url(&self) -> String {
        format!("{}/dir", self.lock().base)
    }

    /// The double's root (TLS and issuing), for `acme.ca_bundle_file` and `openssl verify`.
    #[must_use]
    pub fn ca_bundle_path(&self) -> PathBuf {
        self.dir.path().join("root.pem")
    }

    /// Sets the renewal window served for the n-th issued cert (1-based); `None` → 404.
    pub fn set_renewal_info(
        &self,
        windows: impl Fn(usize) -> Option<SuggestedWindow> + Send + Sync + 'static,
    ) {
        self.lock().windows = Arc::new(windows);
    }

    /// Sets how the next `newOrder` requests are answered.
    pub fn set_new_order(&self, answer: NewOrderAnswer) {
        self.lock().new_order = answer;
    }

    /// How many requests reached `endpoint`.
    #[must_use]
    pub fn count(&self, endpoint: Endpoint) -> usize {
        self.received(endpoint).len()
    }

    /// The payloads `endpoint` received, oldest first.
    #[must_use]
    pub fn received(&self, endpoint: Endpoint) -> Vec<Value> {
        let inner = self.lock();
        let of_endpoint = inner.received.iter().filter(|r| r.endpoint == endpoint);
        of_endpoint.map(|r| r.payload.clone()).collect()
    }

    /// The RFC 9773 §4.1 certIDs of the certs issued so far, oldest first.
    #[must_use]
    pub fn issued_cert_ids(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// Every certificate signed so far, oldest first.
    #[must_use]
    pub fn issuances(&self) -> Vec<Issuance> {
        self.lock().issuances.clone()
    }

    /// Sets the lifetime of the certs signed from now on (90 days unless set), so a test can
    /// make certs come due seconds after they are issued.
    pub fn set_validity(&self, validity: time::Duration) {
        self.lock().validity = validity;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for AcmeDouble {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
