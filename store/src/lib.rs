//! The audit store: every renewal as a row with its step events, the certs issued, each
//! cert's conditions and backoff, and the DCV journal that makes crashes recoverable.
//! [`AuditStore`] is what the reconciler and server see; [`SqliteStore`] is the default
//! single-node implementation; [`SurrealStore`] (feature `surreal`, on by default) is the
//! one several nodes share.

mod codec;
mod sqlite;
#[cfg(feature = "surreal")]
mod surreal;

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use time::OffsetDateTime;

use rota_api::DcvChallenge;
use rota_api::config::DcvSpec;
use rota_api::status::{
    BackoffState, Condition, Reason, RenewalRecord, RenewalStatus, Step, StepEvent, StepStatus,
};
use rota_api::wire::AlertDelivery;
use rota_api::{AlertKind, CertId, RevocationReason};

pub use sqlite::SqliteStore;
#[cfg(feature = "surreal")]
pub use surreal::{SurrealLockCoordinator, SurrealOptions, SurrealStore};

/// A cert as issued, kept for the audit trail and for cluster distribution. No private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCertRow {
    /// The cert.
    pub cert_id: CertId,
    /// The renewal that produced it.
    pub renewal_id: i64,
    /// Leaf PEM.
    pub cert_pem: String,
    /// Chain PEM (leaf excluded).
    pub chain_pem: String,
    /// Serial, hex.
    pub serial: String,
    /// notAfter.
    pub not_after: OffsetDateTime,
    /// When rota received it.
    pub issued_at: OffsetDateTime,
}

/// Which spec a cert's generation number stands for: it goes up by one whenever the hash of
/// the cert's spec changes, so `generation` reads like Kubernetes' `metadata.generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecGeneration {
    /// The hash of the spec (non-negative, to fit SQLite's INTEGER).
    pub spec_hash: u64,
    /// How many distinct specs the cert has had, this one included.
    pub generation: u64,
}

/// One finished renewal, as the metrics count it.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewalOutcome {
    /// The cert renewed.
    pub cert_id: CertId,
    /// How it ended (never `running`).
    pub status: RenewalStatus,
    /// How long it ran, in seconds.
    pub seconds: f64,
}

/// How many alert deliveries one sink made, and whether they went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertDeliveryCount {
    /// The sink's label.
    pub sink_label: String,
    /// Delivered (`true`) or failed.
    pub delivered: bool,
    /// How many.
    pub count: u64,
}

/// An open alert episode of one cert and kind: the condition it alerts about (a failure, an
/// expiry warning) began at `since` and was last sent at `last_sent_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertEpisode {
    /// When the condition began.
    pub since: OffsetDateTime,
    /// When an alert about it last went out.
    pub last_sent_at: OffsetDateTime,
}

/// A DCV response that was (or was about to be) published and not yet confirmed removed.
#[derive(Debug, Clone, PartialEq)]
pub struct DcvJournalEntry {
    /// Journal row id.
    pub id: i64,
    /// The renewal that published it.
    pub renewal_id: i64,
    /// The cert.
    pub cert_id: CertId,
    /// The solver that published it, so it can be removed even if the cert left the config.
    pub dcv: DcvSpec,
    /// What was published.
    pub challenge: DcvChallenge,
    /// When it was journalled.
    pub journalled_at: OffsetDateTime,
}

/// What a store operation failed with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed an operation.
    #[error("audit store: {context}: {source}")]
    Sqlite {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: rusqlite::Error,
    },
    /// SurrealDB refused or failed an operation, or could not be reached.
    #[error("audit store: {context}: {detail}")]
    Surreal {
        /// What was being done.
        context: &'static str,
        /// What SurrealDB (or the connection to it) said.
        detail: String,
    },
    /// SurrealDB refused a write because another node's transaction wrote the same records
    /// first; the same write sent again does not meet that transaction.
    #[error("audit store: {context}: {detail}")]
    Conflict {
        /// What was being done.
        context: &'static str,
        /// What SurrealDB said.
        detail: String,
    },
    /// The database file or its directory could not be prepared.
    #[error("audit store: {context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path concerned.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A stored value could not be decoded (written by a newer rota, or edited by hand).
    #[error("audit store: cannot decode {what}: {detail}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// Why.
        detail: String,
    },
    /// A cluster write was refused because this node no longer leads under the term it
    /// started with: another node took the lease since.
    #[error(
        "audit store: {action} refused: this node no longer leads under term {term} ({detail})"
    )]
    Fenced {
        /// What was refused.
        action: &'static str,
        /// The term the node believed it led under.
        term: u64,
        /// Who holds the lease now, as far as the store knows.
        detail: String,
    },
    /// The worker thread died (a panic inside the driver).
    #[error("audit store: worker failed: {0}")]
    Worker(String),
}

/// Everything rota records about renewals; async so remote stores fit behind it.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Opens a `running` renewal row for `cert_id`.
    async fn open_renewal(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
    ) -> Result<RenewalRecord, StoreError>;

    /// Opens a `running` row for a dry run of `cert_id`: audited like a renewal, marked as a
    /// dry run, and left out of [`AuditStore::last_renewal_statuses`].
    async fn open_dry_run(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
    ) -> Result<RenewalRecord, StoreError>;

    /// Appends a step event to a renewal; `seq` is assigned by the store.
    async fn record_step(
        &self,
        renewal_id: i64,
        step: Step,
        status: StepStatus,
        message: &str,
        at: OffsetDateTime,
    ) -> Result<StepEvent, StoreError>;

    /// Closes a renewal with its final status.
    async fn close_renewal(
        &self,
        renewal_id: i64,
        status: RenewalStatus,
        error: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Closes every `running` row as `interrupted` (called at start) and returns them.
    async fn interrupt_open_renewals(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<RenewalRecord>, StoreError>;

    /// One renewal by id.
    async fn renewal(&self, renewal_id: i64) -> Result<Option<RenewalRecord>, StoreError>;

    /// The most recent renewals of a cert, newest first.
    async fn renewals(
        &self,
        cert_id: &CertId,
        limit: usize,
    ) -> Result<Vec<RenewalRecord>, StoreError>;

    /// The status of each cert's most recent live renewal (dry runs left out).
    async fn last_renewal_statuses(&self) -> Result<HashMap<CertId, RenewalStatus>, StoreError>;

    /// Each cert's most recent renewal.
    async fn last_renewals(&self) -> Result<HashMap<CertId, RenewalRecord>, StoreError>;

    /// Every finished renewal of every cert (the metrics' counters and histogram).
    async fn renewal_outcomes(&self) -> Result<Vec<RenewalOutcome>, StoreError>;

    /// Alert deliveries counted by sink and result (the metrics' counter).
    async fn alert_delivery_counts(&self) -> Result<Vec<AlertDeliveryCount>, StoreError>;

    /// A renewal's step events, in order.
    async fn steps(&self, renewal_id: i64) -> Result<Vec<StepEvent>, StoreError>;

    /// Records a DCV publish before it is made; returns the journal id.
    async fn journal_dcv(
        &self,
        renewal_id: i64,
        cert_id: &CertId,
        dcv: &DcvSpec,
        challenge: &DcvChallenge,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError>;

    /// Drops a journal entry once its record is confirmed removed.
    async fn clear_dcv(&self, journal_id: i64) -> Result<(), StoreError>;

    /// Journal entries not yet cleared, oldest first.
    async fn pending_dcv(&self) -> Result<Vec<DcvJournalEntry>, StoreError>;

    /// Keeps an issued cert.
    async fn record_issued_cert(&self, row: &IssuedCertRow) -> Result<(), StoreError>;

    /// The most recently issued cert for `cert_id`.
    async fn latest_issued_cert(
        &self,
        cert_id: &CertId,
    ) -> Result<Option<IssuedCertRow>, StoreError>;

    /// Replaces a cert's conditions.
    async fn put_conditions(
        &self,
        cert_id: &CertId,
        conditions: &[Condition],
    ) -> Result<(), StoreError>;

    /// Every cert's conditions.
    async fn all_conditions(&self) -> Result<HashMap<CertId, Vec<Condition>>, StoreError>;

    /// Sets (or with `None` clears) a cert's failure backoff.
    async fn put_backoff(
        &self,
        cert_id: &CertId,
        backoff: Option<&BackoffState>,
    ) -> Result<(), StoreError>;

    /// Every cert's backoff.
    async fn backoffs(&self) -> Result<HashMap<CertId, BackoffState>, StoreError>;

    /// Sets a cert's spec hash and the generation it was given.
    async fn put_spec_generation(
        &self,
        cert_id: &CertId,
        generation: SpecGeneration,
    ) -> Result<(), StoreError>;

    /// Every cert's spec hash and generation.
    async fn spec_generations(&self) -> Result<HashMap<CertId, SpecGeneration>, StoreError>;

    /// Remembers that the cert's `serial` was revoked through rota (idempotent).
    async fn record_revocation(
        &self,
        cert_id: &CertId,
        serial: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<(), StoreError>;

    /// Every serial revoked through rota, per cert.
    async fn revoked_serials(&self) -> Result<HashMap<CertId, BTreeSet<String>>, StoreError>;

    /// Opens or updates (`Some`) or closes (`None`) the cert's alert episode of `kind`.
    async fn put_alert_episode(
        &self,
        cert_id: &CertId,
        kind: AlertKind,
        episode: Option<&AlertEpisode>,
    ) -> Result<(), StoreError>;

    /// Every open alert episode, per cert and kind.
    async fn alert_episodes(
        &self,
    ) -> Result<HashMap<CertId, HashMap<AlertKind, AlertEpisode>>, StoreError>;

    /// Appends one alert delivery (or failed delivery) to the audit trail.
    async fn record_alert_delivery(
        &self,
        cert_id: &CertId,
        delivery: &AlertDelivery,
    ) -> Result<(), StoreError>;

    /// The newest delivery to each sink about `cert_id`, by sink.
    async fn last_alert_deliveries(
        &self,
        cert_id: &CertId,
    ) -> Result<Vec<AlertDelivery>, StoreError>;
}

/// A cluster node as it last reported itself through [`ClusterStore::heartbeat`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its `cluster.node_id`.
    pub node_id: String,
    /// When it last reported.
    pub last_seen: OffsetDateTime,
    /// The rota version it runs.
    pub version: String,
    /// The term it leads under, if it believes it leads.
    pub leader_term: Option<u64>,
}

/// A `rota renew` made on a follower, waiting for the leader to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalRequest {
    /// Store-assigned id.
    pub id: i64,
    /// The cert to renew.
    pub cert_id: CertId,
    /// The node the request was made on.
    pub requested_by: String,
    /// When it was made.
    pub requested_at: OffsetDateTime,
}

/// What the nodes of a cluster share besides the audit trail: liveness, forwarded renewal
/// requests, news of issued certs, and the fence that keeps a deposed leader from issuing.
#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// Sets the term this node leads under (`None`: it follows). The first call turns
    /// fencing on for good: from then on [`AuditStore::open_renewal`] and
    /// [`AuditStore::record_issued_cert`] succeed only while the lease still names this node
    /// under that term, and fail with [`StoreError::Fenced`] otherwise (always, when following).
    fn set_fence(&self, term: Option<u64>);

    /// Fails with [`StoreError::Fenced`] unless the lease still names this node under the
    /// fenced term: checked right before a CA is asked to issue.
    async fn check_fence(&self) -> Result<(), StoreError>;

    /// Records that this node is alive at `at`, and whether it leads.
    async fn heartbeat(
        &self,
        at: OffsetDateTime,
        leader_term: Option<u64>,
    ) -> Result<(), StoreError>;

    /// Every node that ever reported, by node id.
    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Leaves a renewal request for the leader; returns its id.
    async fn request_renewal(
        &self,
        cert_id: &CertId,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError>;

    /// Removes and returns every waiting request, oldest first (the leader's to run).
    async fn take_renewal_requests(&self) -> Result<Vec<RenewalRequest>, StoreError>;

    /// A channel that receives the cert id of every issued cert recorded from now on, by
    /// any node (a SurrealDB live query). It closes when the connection drops, so a caller
    /// also polls [`AuditStore::latest_issued_cert`] now and then, and subscribes again.
    async fn watch_issued(&self) -> Result<tokio::sync::mpsc::Receiver<CertId>, StoreError>;

    /// Wakes whenever a renewal request is left, like [`ClusterStore::watch_issued`].
    async fn watch_requests(&self) -> Result<tokio::sync::mpsc::Receiver<CertId>, StoreError>;
}
