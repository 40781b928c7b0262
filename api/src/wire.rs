//! What rotad and its clients exchange over HTTP (TCP or the UNIX socket). Every response
//! carries [`PROTOCOL_HEADER`]; a client that sees another version stops instead of misparsing.

pub mod certificate;
pub mod cluster;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::backend::{AlertKind, RenewalWindow, RevocationReason};
use crate::config::ConfigIssue;
use crate::names::{CertId, DomainName};
use crate::status::{
    BackoffState, Condition, ConditionStatus, Reason, RenewalRecord, RenewalStatus, StepEvent,
};

/// Formats a time the way operators read it everywhere in rota (CLI, API objects, alerts,
/// annotations): RFC 3339, UTC, whole seconds.
#[must_use]
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The wire protocol version this build speaks (2 since `registrar_backend` became `dcv_backend`).
pub const PROTOCOL_VERSION: u32 = 2;

/// The header carrying [`PROTOCOL_VERSION`] on every response, and on mutating requests.
pub const PROTOCOL_HEADER: &str = "x-rota-protocol";

/// `GET /api/status`: the daemon and a summary of every cert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusResponse {
    /// rotad's version.
    pub version: String,
    /// The config file rotad runs from.
    pub config_path: String,
    /// When rotad started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When rotad had observed every installed cert (it does so before answering at all).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub observed_at: Option<OffsetDateTime>,
    /// The errors of the last config change that was refused, if the running config is stale.
    pub config_errors: Vec<ConfigIssue>,
    /// Settings changed in the config file that rotad reads only at start (listener, socket,
    /// database paths), kept at their running values until it restarts.
    #[serde(default)]
    pub restart_required: Vec<String>,
    /// One row per cert.
    pub certs: Vec<CertSummary>,
}

/// One row of `rota status` / `rota get certs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertSummary {
    /// The cert's id.
    pub id: CertId,
    /// Its description.
    pub description: Option<String>,
    /// Its domains.
    pub domains: Vec<DomainName>,
    /// `ca.kind`.
    pub ca_backend: String,
    /// `dcv.kind`, if any.
    pub dcv_backend: Option<String>,
    /// `install.kind`.
    pub install_backend: String,
    /// The installed cert's notAfter.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// The `Ready` condition's status.
    pub ready: ConditionStatus,
    /// The `Ready` condition's reason.
    pub ready_reason: Reason,
    /// Whether a renewal is running.
    pub issuing: bool,
    /// How the last renewal ended.
    pub last_renewal_status: Option<RenewalStatus>,
}

/// Facts read back from the installed cert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledCert {
    /// Serial number, hex.
    pub serial: String,
    /// Issuer DN.
    pub issuer: String,
    /// notBefore.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// DNS SANs.
    pub sans: Vec<String>,
    /// Whether its public key is the key at `key_path`.
    pub key_matches: bool,
    /// Its public key's algorithm and size (`ECDSA P-256`, `RSA 2048`).
    #[serde(default)]
    pub key_type: String,
    /// SHA-256 of its DER, as colon-separated upper-case hex (how browsers show it).
    #[serde(default)]
    pub sha256_fingerprint: String,
}

/// The private key at a cert's `key_path`, as rotad read it: never the key, only what
/// identifies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// `ecdsa-p256`, `ecdsa-p384`, `rsa-2048`, `rsa-3072`, `rsa-4096`, or `other`.
    pub algorithm: String,
    /// Base64 SHA-256 of its SubjectPublicKeyInfo: the pin HPKP-style app pins use (its hex
    /// form is a DANE `TLSA 3 1 1` record's data).
    pub pin_sha256: String,
    /// Why the key is not what the config asks for, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `GET /api/certs/{id}`: everything `rota describe cert` shows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertDetail {
    /// The summary row.
    pub summary: CertSummary,
    /// Where the key lives.
    pub key_path: String,
    /// The key there, when there is one rotad can read.
    #[serde(default)]
    pub key: Option<KeyInfo>,
    /// The key prepared at `<key_path>.next` under `key.rotation`, which the next switch uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_key: Option<KeyInfo>,
    /// The spec generation.
    pub generation: u64,
    /// All conditions.
    pub conditions: Vec<Condition>,
    /// The installed cert, if one could be read.
    pub installed: Option<InstalledCert>,
    /// Failure backoff, if the cert is in one.
    pub backoff: Option<BackoffState>,
    /// The CA's suggested renewal window (ARI), when it publishes one.
    #[serde(default)]
    pub renewal_window: Option<RenewalWindow>,
    /// When rota will renew: the time picked inside the window, else the threshold's date.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub renews_at: Option<OffsetDateTime>,
    /// The most recent renewals, newest first.
    pub renewals: Vec<RenewalRecord>,
    /// The last alert about this cert each sink was sent, by sink.
    #[serde(default)]
    pub alerts: Vec<AlertDelivery>,
}

/// One alert's delivery to one sink, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDelivery {
    /// The sink's position in `alerts:` (from 0).
    pub sink: usize,
    /// The sink, as `rota` names it (`webhook to https://hooks.example.com`); no secret.
    pub sink_label: String,
    /// What the alert was about.
    pub kind: AlertKind,
    /// When it was sent.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Why the sink did not take it, or `None` when it did.
    pub error: Option<String>,
}

/// `POST /api/alerts/test`: send a test alert to every sink, or to one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AlertTestRequest {
    /// Only this sink (its position in `alerts:`, from 0).
    pub sink: Option<usize>,
}

/// The answer to an [`AlertTestRequest`]: one result per sink tried.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertTestResponse {
    /// Each sink's result, in config order.
    pub results: Vec<AlertTestResult>,
}

/// Whether one sink took the test alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertTestResult {
    /// The sink's position in `alerts:`.
    pub sink: usize,
    /// The sink, as `rota` names it.
    pub sink_label: String,
    /// Why it failed, or `None` when it took the alert.
    pub error: Option<String>,
}

/// `GET /api/certs/{id}/log`: one renewal and its steps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenewalLog {
    /// The renewal.
    pub renewal: RenewalRecord,
    /// Its steps, in order.
    pub events: Vec<StepEvent>,
}

/// One line of the NDJSON stream `POST /api/certs/{id}/renew` answers with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RenewProgress {
    /// The request joined a renewal of the cert that was already queued or running, rather
    /// than starting one; its events follow from the first.
    Attached,
    /// This node follows in a cluster: the request was forwarded to the leader, and the
    /// leader's renewal is followed through the shared store.
    Forwarded {
        /// The leader as this node last saw it, if it knows one.
        leader: Option<String>,
    },
    /// The renewal row was opened.
    Started {
        /// Its id.
        renewal_id: i64,
    },
    /// A step event was recorded.
    Step(StepEvent),
    /// The renewal ended.
    Finished {
        /// Its final status.
        status: RenewalStatus,
        /// What went wrong, if it failed.
        error: Option<String>,
    },
}

/// `POST /api/certs/{id}/revoke`: revoke the installed cert.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeRequest {
    /// Why.
    pub reason: RevocationReason,
}

/// The answer to a successful [`RevokeRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// The audit row of the revocation (`rota log ID --renewal N`).
    pub audit_id: i64,
    /// The serial revoked.
    pub serial: String,
    /// Where the compromised key was moved, for `keyCompromise`.
    pub retired_key: Option<String>,
    /// Whether a replacement was queued at once.
    pub replacement_queued: bool,
}

/// `POST /api/config`: a new config to validate and, unless `dry_run`, apply.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyRequest {
    /// The file's text, exactly as it should be written.
    pub yaml: String,
    /// Validate and diff only.
    pub dry_run: bool,
}

/// The answer to a valid [`ApplyRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyResponse {
    /// Unified diff of the running file against the submitted one (empty when identical).
    pub diff: String,
    /// Whether the file was written (false for dry runs and identical files).
    pub applied: bool,
    /// Certs that are new.
    pub added: Vec<CertId>,
    /// Certs whose spec changed.
    pub changed: Vec<CertId>,
    /// Certs that are gone.
    pub removed: Vec<CertId>,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable machine code (`not_found`, `invalid_config`, …).
    pub code: String,
    /// Operator-facing text.
    pub message: String,
    /// For `invalid_config`, every problem found.
    #[serde(default)]
    pub config_errors: Vec<ConfigIssue>,
}
