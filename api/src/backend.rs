//! The four backend surfaces the renewal pipeline composes: a CA issues, a DCV solver proves
//! domain control, an installer lands the cert, alert sinks tell a human. Each is a trait
//! object built from one config variant by the providers crate's factory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::{AlertSpec, CertSpec, Config, DcvSpec};
use crate::names::{CertId, DomainName, HostPort, SecretString};

/// The kinds of domain-control challenge rota can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChallengeKind {
    /// A record in the domain's DNS: ACME's TXT under `_acme-challenge.<domain>`, or the
    /// CNAME a commercial CA's DNS-based validation asks for.
    Dns01,
    /// A file under `/.well-known/acme-challenge/` on port 80.
    Http01,
}

/// One challenge a CA asks rota to satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum DcvChallenge {
    /// Publish `record_value` as a TXT record at `record_name`.
    Dns01 {
        /// Fully qualified record name.
        record_name: String,
        /// TXT content.
        record_value: String,
        /// Record TTL in seconds.
        ttl: u32,
    },
    /// Publish a CNAME at `record_name` pointing at `target`: Sectigo's DNS-based domain
    /// control validation, as Namecheap's reissue hands it out (`DNSDCValidation`).
    DnsCname {
        /// Fully qualified record name (`_<hash>.<domain>`).
        record_name: String,
        /// Where it points (`<hash>.<hash>.sectigo.com`).
        target: String,
        /// Record TTL in seconds.
        ttl: u32,
    },
    /// Serve `key_authorization` at `http://<domain>/.well-known/acme-challenge/<token>`.
    Http01 {
        /// The domain being validated.
        domain: String,
        /// The challenge token (a file name; validated by solvers).
        token: String,
        /// The response body.
        key_authorization: String,
    },
}

impl DcvChallenge {
    /// Which kind of challenge this is.
    #[must_use]
    pub fn kind(&self) -> ChallengeKind {
        match self {
            Self::Dns01 { .. } | Self::DnsCname { .. } => ChallengeKind::Dns01,
            Self::Http01 { .. } => ChallengeKind::Http01,
        }
    }

    /// A short operator-facing description (`TXT _acme-challenge.a.test`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Dns01 { record_name, .. } => format!("TXT {record_name}"),
            Self::DnsCname {
                record_name,
                target,
                ..
            } => format!("CNAME {record_name} -> {target}"),
            Self::Http01 { domain, token, .. } => {
                format!("http://{domain}/.well-known/acme-challenge/{token}")
            }
        }
    }
}

/// A signed certificate as a CA returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// The leaf, PEM.
    pub cert_pem: String,
    /// Intermediates (and, for a private CA, its root), PEM, leaf excluded.
    pub chain_pem: String,
}

impl IssuedCert {
    /// Leaf followed by the chain, as servers want it.
    #[must_use]
    pub fn fullchain_pem(&self) -> String {
        let mut full = self.cert_pem.clone();
        if !full.ends_with('\n') {
            full.push('\n');
        }
        full.push_str(&self.chain_pem);
        full
    }
}

/// A CA-suggested renewal window (ACME Renewal Information, RFC 9773).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalWindow {
    /// The window opens.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// The window closes.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Where the CA explains why the window moved (e.g. a mass revocation), if it says.
    pub explanation_url: Option<String>,
    /// When to ask again (the CA's `Retry-After`).
    #[serde(with = "time::serde::rfc3339")]
    pub next_check_at: OffsetDateTime,
}

/// Why a certificate is revoked (RFC 5280 §5.3.1 reason codes that ACME accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RevocationReason {
    /// No reason given.
    Unspecified,
    /// The private key is known or suspected to be compromised.
    KeyCompromise,
    /// The subject's details changed.
    AffiliationChanged,
    /// The cert was replaced by another.
    Superseded,
    /// The names are no longer in use.
    CessationOfOperation,
}

impl RevocationReason {
    /// The camelCase name used on the CLI and the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
        }
    }
}

/// What a backend call failed with, in terms an operator can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A local file could not be read or written.
    #[error("{backend}: {action} {path}: {source}")]
    Io {
        /// The backend kind.
        backend: &'static str,
        /// What was being done (`writing`, `reading`).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The peer (CA, DNS API, service) answered with a refusal.
    #[error("{backend}: {detail}")]
    Refused {
        /// The backend kind.
        backend: &'static str,
        /// What the peer said, with any problem document.
        detail: String,
    },
    /// The peer could not be reached or answered garbage.
    #[error("{backend}: cannot reach the peer: {detail}")]
    Unreachable {
        /// The backend kind.
        backend: &'static str,
        /// Transport error.
        detail: String,
    },
    /// The peer asked rota to slow down.
    #[error("{backend}: rate limited{}: {detail}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The backend kind.
        backend: &'static str,
        /// The peer's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What the peer said.
        detail: String,
    },
    /// Waiting for the peer took longer than allowed.
    #[error("{backend}: timed out after {}s waiting for {what}", after.as_secs())]
    Timeout {
        /// The backend kind.
        backend: &'static str,
        /// What was awaited.
        what: String,
        /// How long rota waited.
        after: Duration,
    },
    /// The input (CSR, challenge, key) cannot be handled by this backend.
    #[error("{backend}: {detail}")]
    Invalid {
        /// The backend kind.
        backend: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The backend's `kind` is part of the config reference but not compiled into this build.
    #[error("{backend}: not available in this build yet")]
    NotAvailable {
        /// The backend kind.
        backend: &'static str,
    },
}

impl BackendError {
    /// [`BackendError::Invalid`] from `backend`.
    #[must_use]
    pub fn invalid(backend: &'static str, detail: impl Into<String>) -> Self {
        Self::Invalid {
            backend,
            detail: detail.into(),
        }
    }

    /// [`BackendError::Io`] from `backend`: `action` (`reading`, `writing`, …) on `path` failed.
    #[must_use]
    pub fn io(
        backend: &'static str,
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            backend,
            action,
            path: path.into(),
            source,
        }
    }

    /// A CamelCase reason for conditions and metric labels.
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "IoError",
            Self::Refused { .. } => "Refused",
            Self::Unreachable { .. } => "Unreachable",
            Self::RateLimited { .. } => "RateLimited",
            Self::Timeout { .. } => "Timeout",
            Self::Invalid { .. } => "InvalidInput",
            Self::NotAvailable { .. } => "NotAvailable",
        }
    }

    /// The delay the peer asked for before the next attempt, if any.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// An order a CA accepted: the challenges rota must answer, and the handle that collects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    /// The challenges to satisfy before [`CaBackend::await_issuance`].
    pub challenges: Vec<DcvChallenge>,
    /// What [`CaBackend::await_issuance`] takes to find and finish this order.
    pub handle: OrderHandle,
}

/// One order at its CA, as plain data: the CA keeps no order state of its own, so whoever holds
/// the handle (the renewal, or a recovery after a restart) can finish the order with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderHandle {
    /// The CA's own reference to the order (an ACME order URL), when it has one.
    pub locator: Option<String>,
    /// The CSR (PEM) the order is finalized with, so the per-cert key is what gets signed.
    pub csr_pem: String,
    /// What else the CA needs to finish the order (for ACME, the challenges it chose), in the
    /// CA's own shape.
    pub details: serde_json::Value,
}

/// Issues certificates from a certificate authority.
#[async_trait]
pub trait CaBackend: Send + Sync {
    /// The config `kind` (`local`, `acme`, …), for logs and the API.
    fn kind(&self) -> &'static str;

    /// Places an order for `domains` with `csr_pem` and returns the challenges rota must
    /// satisfy with the handle to collect it; `preferred_kinds` lists what the DCV solver
    /// can answer, best first; `replacing` is the installed leaf (PEM) this order replaces.
    async fn submit(
        &self,
        domains: &[DomainName],
        csr_pem: &str,
        preferred_kinds: &[ChallengeKind],
        replacing: Option<&str>,
    ) -> Result<PlacedOrder, BackendError>;

    /// Waits until the CA has validated and signed the order `handle` names.
    async fn await_issuance(&self, handle: &OrderHandle) -> Result<IssuedCert, BackendError>;

    /// Whether this CA may publish renewal windows; when false the reconciler never asks.
    fn offers_renewal_info(&self) -> bool {
        false
    }

    /// The CA's suggested renewal window for `cert_pem`, for CAs that publish one.
    async fn renewal_window(&self, _cert_pem: &str) -> Result<Option<RenewalWindow>, BackendError> {
        Ok(None)
    }

    /// Revokes `cert_pem`.
    async fn revoke(&self, _cert_pem: &str, _reason: RevocationReason) -> Result<(), BackendError> {
        Err(BackendError::invalid(
            self.kind(),
            "this CA does not support revocation",
        ))
    }
}

/// Proves control of a domain by answering a CA's challenge.
#[async_trait]
pub trait DcvBackend: Send + Sync {
    /// The config `kind` (`webroot`, `cloudflare`, …).
    fn kind(&self) -> &'static str;

    /// The challenge kinds this solver can answer, best first.
    fn supported_kinds(&self) -> &[ChallengeKind];

    /// Whether this particular challenge can be answered.
    fn supports(&self, challenge: &DcvChallenge) -> bool {
        self.supported_kinds().contains(&challenge.kind())
    }

    /// Makes the response visible to the CA. Idempotent.
    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError>;

    /// Takes the response down. Idempotent: removing what is gone succeeds.
    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError>;

    /// The DNS server this solver writes its records to, when it should be the one asked
    /// whether a DNS-01 record is visible (instead of `daemon.dns_propagation`'s servers):
    /// the operator's own primary, which answers for its zone with authority.
    fn readiness_server(&self) -> Option<&HostPort> {
        None
    }
}

/// Lands an issued cert where the service that uses it reads it.
#[async_trait]
pub trait InstallBackend: Send + Sync {
    /// The config `kind` (`filesystem`, `nginx`, …).
    fn kind(&self) -> &'static str;

    /// Writes the cert, chain and key, and triggers any reload.
    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        domains: &[DomainName],
    ) -> Result<(), BackendError>;

    /// Reads back the installed leaf, PEM, so the reconciler can observe it.
    async fn current_cert_pem(&self, _cert_id: &CertId) -> Result<Option<String>, BackendError> {
        Ok(None)
    }

    /// The local file `current_cert_pem` reads, for backends that install to one: a sweep then
    /// checks it with `stat` and re-reads only what changed.
    fn current_cert_path(&self, _cert_id: &CertId) -> Option<PathBuf> {
        None
    }
}

/// What an alert is about; the snake_case name is the webhook envelope's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A renewal attempt failed (before anything was issued, or at any step but install).
    RenewalFailed,
    /// The CA issued a cert but installing it failed.
    InstallFailed,
    /// The installed cert expires within `daemon.alert_before_days` and is not Ready.
    ExpiryWarning,
    /// A renewal succeeded after one or more failures.
    RenewalRecovered,
    /// An operator asked for a test alert (`rota alert test`).
    Test,
}

impl AlertKind {
    /// The snake_case name, as on the wire and in the store.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RenewalFailed => "renewal_failed",
            Self::InstallFailed => "install_failed",
            Self::ExpiryWarning => "expiry_warning",
            Self::RenewalRecovered => "renewal_recovered",
            Self::Test => "test",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// One notification sent to every alert sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// The cert concerned.
    pub cert_id: CertId,
    /// What happened.
    pub kind: AlertKind,
    /// Operator-facing text.
    pub message: String,
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// What a longer notification (an email) adds to `message`.
    pub details: AlertDetails,
}

/// The facts a human needs to act on an alert without opening a shell first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDetails {
    /// The cert's domains.
    pub domains: Vec<DomainName>,
    /// The error of the last attempt, when one failed.
    pub error: Option<String>,
    /// The installed cert's notAfter, when one is installed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// When rotad tries again on its own, when it will.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The last steps of the most recent renewal, oldest first.
    pub recent_steps: Vec<crate::status::StepEvent>,
}

/// Delivers notifications to a human.
#[async_trait]
pub trait AlertBackend: Send + Sync {
    /// The config `kind` (`email`, `webhook`).
    fn kind(&self) -> &'static str;

    /// Sends one event. Errors are logged by the caller, never fatal to a renewal.
    async fn dispatch(&self, event: &AlertEvent) -> Result<(), BackendError>;
}

/// Turns config variants into running backends; the providers crate implements it, tests fake it.
pub trait BackendFactory: Send + Sync {
    /// The CA for `cert`.
    fn ca(&self, config: &Config, cert: &CertSpec) -> Result<Arc<dyn CaBackend>, BackendError>;
    /// The DCV solver for `spec`.
    fn dcv(&self, config: &Config, spec: &DcvSpec) -> Result<Arc<dyn DcvBackend>, BackendError>;
    /// The installer for `cert`.
    fn install(
        &self,
        config: &Config,
        cert: &CertSpec,
    ) -> Result<Arc<dyn InstallBackend>, BackendError>;
    /// The alert sink for `spec`.
    fn alert(
        &self,
        config: &Config,
        spec: &AlertSpec,
    ) -> Result<Arc<dyn AlertBackend>, BackendError>;
}
