//! Status in the Kubernetes shape: per-cert conditions with a typed reason, plus the records
//! of renewals and their steps that the audit store keeps.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::names::CertId;

/// The condition types a cert carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionType {
    /// A valid cert matching the spec is installed and outside its renewal window.
    Ready,
    /// A renewal is in flight.
    Issuing,
    /// The last attempt failed.
    Failing,
}

/// A condition's truth value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not observed yet.
    Unknown,
}

/// Why a condition has its status; also why a renewal was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The installed cert is valid, matches the spec and is not due.
    UpToDate,
    /// No cert is installed yet.
    NotInstalled,
    /// The installed cert does not belong to the key at `key_path`.
    KeyMismatch,
    /// The installed cert's names differ from the spec's domains.
    DomainsChanged,
    /// The installed cert has expired.
    Expired,
    /// The installed cert is inside the renewal window.
    RenewalDue,
    /// The spec changed and has not been reconciled yet.
    SpecChanged,
    /// An operator asked for a renewal.
    Forced,
    /// A renewal is running.
    Renewing,
    /// No renewal is running.
    Idle,
    /// The last renewal failed.
    RenewalFailed,
    /// The last renewal succeeded.
    RenewalSucceeded,
    /// The daemon stopped during the last renewal.
    Interrupted,
    /// The installed cert could not be read back.
    ObserveFailed,
    /// The CA's renewal window (ARI) says to renew now.
    AriWindow,
    /// The installed cert was revoked.
    Revoked,
    /// The peer asked rota to slow down.
    RateLimited,
    /// The CA or another peer could not be reached.
    Unreachable,
    /// The CA refused the order, the CSR or the signing.
    Refused,
    /// Domain-control validation could not be published, checked or removed.
    DcvFailed,
    /// A peer took too long, or the renewal hit its deadline.
    Timeout,
    /// The cert was issued but could not be installed; retries install it without a new order.
    InstallFailed,
    /// The key at `key_path` could not be read, parsed or written.
    KeyUnreadable,
    /// The request cannot be handled as configured (a profile the CA lacks, a kind not built).
    Misconfigured,
    /// The audit store failed.
    StoreFailed,
    /// A bug: the renewal panicked. It is failed on its own; other renewals go on.
    Panicked,
    /// A cluster node installed the cert another node issued (the shared store's newest).
    ClusterSync,
    /// In a cluster, this node lost the leader lease during the renewal; the new leader
    /// renews in its turn.
    LostLeadership,
}

impl Reason {
    /// The CamelCase name, as in the API.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpToDate => "UpToDate",
            Self::NotInstalled => "NotInstalled",
            Self::KeyMismatch => "KeyMismatch",
            Self::DomainsChanged => "DomainsChanged",
            Self::Expired => "Expired",
            Self::RenewalDue => "RenewalDue",
            Self::SpecChanged => "SpecChanged",
            Self::Forced => "Forced",
            Self::Renewing => "Renewing",
            Self::Idle => "Idle",
            Self::RenewalFailed => "RenewalFailed",
            Self::RenewalSucceeded => "RenewalSucceeded",
            Self::Interrupted => "Interrupted",
            Self::ObserveFailed => "ObserveFailed",
            Self::AriWindow => "AriWindow",
            Self::Revoked => "Revoked",
            Self::RateLimited => "RateLimited",
            Self::Unreachable => "Unreachable",
            Self::Refused => "Refused",
            Self::DcvFailed => "DcvFailed",
            Self::Timeout => "Timeout",
            Self::InstallFailed => "InstallFailed",
            Self::KeyUnreadable => "KeyUnreadable",
            Self::Misconfigured => "Misconfigured",
            Self::StoreFailed => "StoreFailed",
            Self::Panicked => "Panicked",
            Self::ClusterSync => "ClusterSync",
            Self::LostLeadership => "LostLeadership",
        }
    }

    /// Parses the CamelCase name back (for stores that keep it as text).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One condition of one cert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    /// Which condition.
    #[serde(rename = "type")]
    pub type_: ConditionType,
    /// Its truth value.
    pub status: ConditionStatus,
    /// Why, as a typed reason.
    pub reason: Reason,
    /// Operator-facing detail.
    pub message: String,
    /// When `status` last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub last_transition_time: OffsetDateTime,
    /// The spec generation this was computed for.
    pub observed_generation: u64,
}

/// How a renewal ended, or that it is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalStatus {
    /// Still in flight.
    Running,
    /// Issued and installed.
    Succeeded,
    /// A step failed.
    Failed,
    /// The daemon stopped before it ended.
    Interrupted,
}

impl RenewalStatus {
    /// The snake-case name, as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// The steps of the renewer pipeline, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Load or generate the key at `key_path`.
    LoadKey,
    /// Build the CSR.
    GenerateCsr,
    /// Submit it to the CA.
    SubmitOrder,
    /// Check the DCV solver can answer every challenge.
    CheckChallenges,
    /// Publish a challenge response.
    PublishDcv,
    /// Wait until every nameserver answers the DNS-01 records.
    CheckPropagation,
    /// Wait for the CA to validate and sign.
    AwaitIssuance,
    /// Take a challenge response down.
    RemoveDcv,
    /// Record the issued cert in the audit store.
    PersistCert,
    /// Install it.
    Install,
    /// Revoke the installed cert at the CA (an operator's request, not part of a renewal).
    Revoke,
}

impl Step {
    /// The snake-case name, as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadKey => "load_key",
            Self::GenerateCsr => "generate_csr",
            Self::SubmitOrder => "submit_order",
            Self::CheckChallenges => "check_challenges",
            Self::PublishDcv => "publish_dcv",
            Self::CheckPropagation => "check_propagation",
            Self::AwaitIssuance => "await_issuance",
            Self::RemoveDcv => "remove_dcv",
            Self::PersistCert => "persist_cert",
            Self::Install => "install",
            Self::Revoke => "revoke",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// Whether a step began, finished or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step began.
    Started,
    /// The step finished.
    Succeeded,
    /// The step failed.
    Failed,
}

impl StepStatus {
    /// The snake-case name, as stored and shown.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Parses the stored name.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// One audited step of one renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEvent {
    /// The renewal it belongs to.
    pub renewal_id: i64,
    /// Position within the renewal, from 1.
    pub seq: u32,
    /// Which step.
    pub step: Step,
    /// Began, finished or failed.
    pub status: StepStatus,
    /// Operator-facing detail.
    pub message: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// One renewal attempt of one cert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalRecord {
    /// Store-assigned id.
    pub id: i64,
    /// The cert renewed.
    pub cert_id: CertId,
    /// Why it was started.
    pub trigger: Reason,
    /// How it ended.
    pub status: RenewalStatus,
    /// What went wrong, when it failed.
    pub error: Option<String>,
    /// When it began.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// Whether it was a dry run (`rota renew --dry-run`): nothing installed, nothing live
    /// changed. Absent in replies of an older rotad.
    #[serde(default)]
    pub dry_run: bool,
}

/// A cert's failure backoff: how many attempts failed in a row and when the next may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffState {
    /// Consecutive failures.
    pub failures: u32,
    /// Earliest time of the next automatic attempt.
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    /// The spec generation the failures were for; a new spec clears the backoff.
    pub generation: u64,
}
