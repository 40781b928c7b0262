//! [`SurrealStore`]: the audit store on SurrealDB, embedded (`mem://`, `surrealkv://`,
//! `file://`) or remote (`ws://`, `wss://`, `http://`, `https://`). It is the store several
//! rotad nodes share: renewal rows carry the node that ran them, so a node that restarts
//! closes only its own interrupted renewals. No private key is ever written to it.

mod cluster;
mod renewals;
mod schema;
mod state;

pub use cluster::SurrealLockCoordinator;

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use surrealdb::Surreal;
use surrealdb::engine::any::Any;
use surrealdb::opt::auth::{Database, Root};
use surrealdb::types::{Object, SurrealValue, Value};
use time::OffsetDateTime;

use rota_api::DcvChallenge;
use rota_api::config::DcvSpec;
use rota_api::status::{
    BackoffState, Condition, Reason, RenewalRecord, RenewalStatus, Step, StepEvent, StepStatus,
};
use rota_api::wire::AlertDelivery;
use rota_api::{AlertKind, CertId, RevocationReason};

use crate::{
    AlertDeliveryCount, AlertEpisode, AuditStore, DcvJournalEntry, IssuedCertRow, RenewalOutcome,
    SpecGeneration, StoreError,
};

/// Where and as whom to connect: the `audit: { kind: surrealdb }` block, secrets resolved.
#[derive(Clone)]
pub struct SurrealOptions {
    /// `mem://`, `surrealkv://path`, `file://path` (the same engine), `rocksdb://path` (when
    /// built with the `surreal-rocksdb` feature), `ws://`, `wss://`, `http://` or `https://`.
    pub endpoint: String,
    /// SurrealDB namespace.
    pub namespace: String,
    /// SurrealDB database.
    pub database: String,
    /// User and password for a remote server; embedded engines need none.
    pub credentials: Option<(String, String)>,
    /// The name this node writes on its renewal rows (`cluster.node_id`, or the host's name).
    pub node: String,
}

impl std::fmt::Debug for SurrealOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurrealOptions")
            .field("endpoint", &self.endpoint)
            .field("namespace", &self.namespace)
            .field("database", &self.database)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("node", &self.node)
            .finish()
    }
}

/// The audit store in a SurrealDB database (schema versioned in `rota_meta:schema`).
#[derive(Debug, Clone)]
pub struct SurrealStore {
    db: Surreal<Any>,
    node: String,
    /// Steps of one renewal are numbered by the node running it; this keeps two of its own
    /// concurrent steps from reading the same last `seq`.
    steps: std::sync::Arc<tokio::sync::Mutex<()>>,
    /// Whether this node may write as the cluster's leader; shared by every clone.
    fence: cluster::FenceCell,
}

impl SurrealStore {
    /// Connects, signs in (as a database user, else a root user), selects the namespace and
    /// database, and defines or migrates the schema.
    pub async fn connect(options: &SurrealOptions) -> Result<Self, StoreError> {
        let endpoint = engine_endpoint(&options.endpoint)?;
        let db = surrealdb::engine::any::connect(endpoint)
            .await
            .map_err(fail("connecting"))?;
        if let Some((username, password)) = &options.credentials {
            let as_database = db
                .signin(Database {
                    namespace: options.namespace.clone(),
                    database: options.database.clone(),
                    username: username.clone(),
                    password: password.clone(),
                })
                .await;
            if let Err(database_error) = as_database {
                db.signin(Root {
                    username: username.clone(),
                    password: password.clone(),
                })
                .await
                .map_err(|root_error| StoreError::Surreal {
                    context: "signing in",
                    detail: format!(
                        "as a database user of {}/{}: {database_error}; as a root user: \
                         {root_error}",
                        options.namespace, options.database
                    ),
                })?;
            }
        }
        // Selecting a namespace or database that does not exist yet defines it: nodes that
        // connect at the same moment conflict on that, and all but one must ask again.
        let mut attempt = 1;
        while let Err(e) = db
            .use_ns(&options.namespace)
            .use_db(&options.database)
            .await
        {
            if attempt == CONFLICT_ATTEMPTS || !is_conflict(&e) {
                return Err(fail("selecting the namespace and database")(e));
            }
            attempt += 1;
        }
        let store = Self {
            db,
            node: options.node.clone(),
            steps: std::sync::Arc::default(),
            fence: cluster::FenceCell::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The connection, for the cluster coordinator that shares it.
    #[must_use]
    pub fn connection(&self) -> &Surreal<Any> {
        &self.db
    }

    /// The node name this store writes on its rows.
    #[must_use]
    pub fn node(&self) -> &str {
        &self.node
    }
}

/// The endpoint as the SDK spells it: `file://` is rota's name for the embedded on-disk
/// engine, which SurrealDB 3 calls `surrealkv://`; unknown schemes are refused here, with
/// the list, rather than by the SDK.
fn engine_endpoint(endpoint: &str) -> Result<String, StoreError> {
    let (scheme, rest) = endpoint.split_once("://").unwrap_or((endpoint, ""));
    let known = ["mem", "surrealkv", "rocksdb", "ws", "wss", "http", "https"];
    match scheme {
        "file" => Ok(format!("surrealkv://{rest}")),
        "rocksdb" if !cfg!(feature = "surreal-rocksdb") => Err(StoreError::Surreal {
            context: "connecting",
            detail: format!(
                "`{endpoint}`: this build has no RocksDB engine (cargo feature \
                 `surreal-rocksdb`); use `surrealkv://` or `file://` for an embedded database"
            ),
        }),
        known_scheme if known.contains(&known_scheme) => Ok(endpoint.to_owned()),
        _ => Err(StoreError::Surreal {
            context: "connecting",
            detail: format!(
                "`{endpoint}` is not a SurrealDB endpoint: use mem://, surrealkv://PATH, \
                 file://PATH, ws://, wss://, http:// or https://"
            ),
        }),
    }
}

/// Query parameters, named as the statements use them (`$name`).
#[derive(Default)]
struct Vars(surrealdb::types::Variables);

impl Vars {
    fn new() -> Self {
        Self::default()
    }

    /// Adds `$name`.
    fn with(mut self, name: &str, value: impl SurrealValue) -> Self {
        self.0.insert(name, value);
        self
    }
}

impl SurrealStore {
    /// Runs `sql` with `vars` and `$node` (this node's id), fails on the first statement
    /// that failed, and decodes the result of the last statement.
    async fn last<T>(&self, context: &'static str, sql: &str, vars: Vars) -> Result<T, StoreError>
    where
        T: SurrealValue,
        usize: surrealdb::opt::QueryResult<T>,
    {
        let mut vars = vars.0;
        vars.insert("node", self.node.as_str());
        let mut results = self
            .db
            .query(sql.to_owned())
            .bind(Object::from(vars))
            .await
            .map_err(fail(context))?;
        let mut errors: Vec<_> = results.take_errors().into_iter().collect();
        errors.sort_by_key(|(index, _)| *index);
        // A transaction that lost a conflict says so on its COMMIT alone.
        if let Some((_, conflict)) = errors.iter().find(|(_, e)| is_conflict(e)) {
            return Err(StoreError::Conflict {
                context,
                detail: conflict.to_string(),
            });
        }
        // Once a statement in a transaction fails, every other one fails with "not executed"
        // or "cancelled"; the error that says why is the first that is not one of those.
        let cause = errors.iter().map(|(_, e)| e.to_string()).find(|m| {
            !m.contains("not executed")
                && !m.contains("cancelled transaction")
                && !m.starts_with("Cannot COMMIT")
        });
        if let Some(detail) = cause.or_else(|| errors.first().map(|(_, e)| e.to_string())) {
            return Err(StoreError::Surreal { context, detail });
        }
        let last = results.num_statements().saturating_sub(1);
        results.take(last).map_err(fail(context))
    }

    /// Runs `sql` with `vars` for its effect alone.
    async fn exec(&self, context: &'static str, sql: &str, vars: Vars) -> Result<(), StoreError> {
        self.last::<Value>(context, sql, vars).await.map(drop)
    }
}

/// How many times a request that lost a write conflict to another node is sent.
pub(crate) const CONFLICT_ATTEMPTS: usize = 5;

/// Whether SurrealDB refused a request because another transaction wrote the same keys
/// first; the same request sent again does not meet it.
fn is_conflict(error: &surrealdb::Error) -> bool {
    error.query_details() == Some(&surrealdb::types::QueryError::TransactionConflict)
}

/// Wraps an SDK error with what was being done.
pub(crate) fn fail(context: &'static str) -> impl FnOnce(surrealdb::Error) -> StoreError {
    move |e| {
        let detail = e.to_string();
        if is_conflict(&e) {
            StoreError::Conflict { context, detail }
        } else {
            StoreError::Surreal { context, detail }
        }
    }
}

/// Formats a time for a time field, or says why it cannot be stored.
fn time_field(at: OffsetDateTime) -> Result<String, StoreError> {
    crate::codec::format_time(at).map_err(|detail| StoreError::Surreal {
        context: "encoding a time",
        detail,
    })
}

#[async_trait]
impl AuditStore for SurrealStore {
    async fn open_renewal(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
    ) -> Result<RenewalRecord, StoreError> {
        self.open(cert_id, trigger, at, false).await
    }

    async fn open_dry_run(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
    ) -> Result<RenewalRecord, StoreError> {
        self.open(cert_id, trigger, at, true).await
    }

    async fn record_step(
        &self,
        renewal_id: i64,
        step: Step,
        status: StepStatus,
        message: &str,
        at: OffsetDateTime,
    ) -> Result<StepEvent, StoreError> {
        self.step(renewal_id, step, status, message, at).await
    }

    async fn close_renewal(
        &self,
        renewal_id: i64,
        status: RenewalStatus,
        error: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.close(renewal_id, status, error, at).await
    }

    async fn interrupt_open_renewals(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<RenewalRecord>, StoreError> {
        self.interrupt_running(at).await
    }

    async fn renewal(&self, renewal_id: i64) -> Result<Option<RenewalRecord>, StoreError> {
        self.renewal_by_num(renewal_id).await
    }

    async fn renewals(
        &self,
        cert_id: &CertId,
        limit: usize,
    ) -> Result<Vec<RenewalRecord>, StoreError> {
        self.newest_first(cert_id, limit).await
    }

    async fn last_renewal_statuses(&self) -> Result<HashMap<CertId, RenewalStatus>, StoreError> {
        Ok(self
            .newest_per_cert(true)
            .await?
            .into_iter()
            .map(|(id, r)| (id, r.status))
            .collect())
    }

    async fn last_renewals(&self) -> Result<HashMap<CertId, RenewalRecord>, StoreError> {
        self.newest_per_cert(false).await
    }

    async fn renewal_outcomes(&self) -> Result<Vec<RenewalOutcome>, StoreError> {
        self.outcomes().await
    }

    async fn alert_delivery_counts(&self) -> Result<Vec<AlertDeliveryCount>, StoreError> {
        self.delivery_counts().await
    }

    async fn steps(&self, renewal_id: i64) -> Result<Vec<StepEvent>, StoreError> {
        self.steps_of(renewal_id).await
    }

    async fn journal_dcv(
        &self,
        renewal_id: i64,
        cert_id: &CertId,
        dcv: &DcvSpec,
        challenge: &DcvChallenge,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        self.journal(renewal_id, cert_id, dcv, challenge, at).await
    }

    async fn clear_dcv(&self, journal_id: i64) -> Result<(), StoreError> {
        self.clear_journal(journal_id).await
    }

    async fn pending_dcv(&self) -> Result<Vec<DcvJournalEntry>, StoreError> {
        self.pending_journal().await
    }

    async fn record_issued_cert(&self, row: &IssuedCertRow) -> Result<(), StoreError> {
        self.insert_issued_cert(row).await
    }

    async fn latest_issued_cert(
        &self,
        cert_id: &CertId,
    ) -> Result<Option<IssuedCertRow>, StoreError> {
        self.newest_issued_cert(cert_id).await
    }

    async fn put_conditions(
        &self,
        cert_id: &CertId,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        self.write_conditions(cert_id, conditions).await
    }

    async fn all_conditions(&self) -> Result<HashMap<CertId, Vec<Condition>>, StoreError> {
        self.read_conditions().await
    }

    async fn put_backoff(
        &self,
        cert_id: &CertId,
        backoff: Option<&BackoffState>,
    ) -> Result<(), StoreError> {
        self.write_backoff(cert_id, backoff).await
    }

    async fn backoffs(&self) -> Result<HashMap<CertId, BackoffState>, StoreError> {
        self.read_backoffs().await
    }

    async fn put_spec_generation(
        &self,
        cert_id: &CertId,
        generation: SpecGeneration,
    ) -> Result<(), StoreError> {
        self.write_generation(cert_id, generation).await
    }

    async fn spec_generations(&self) -> Result<HashMap<CertId, SpecGeneration>, StoreError> {
        self.read_generations().await
    }

    async fn record_revocation(
        &self,
        cert_id: &CertId,
        serial: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.write_revocation(cert_id, serial, reason, at).await
    }

    async fn revoked_serials(&self) -> Result<HashMap<CertId, BTreeSet<String>>, StoreError> {
        self.read_revocations().await
    }

    async fn put_alert_episode(
        &self,
        cert_id: &CertId,
        kind: AlertKind,
        episode: Option<&AlertEpisode>,
    ) -> Result<(), StoreError> {
        self.write_episode(cert_id, kind, episode).await
    }

    async fn alert_episodes(
        &self,
    ) -> Result<HashMap<CertId, HashMap<AlertKind, AlertEpisode>>, StoreError> {
        self.read_episodes().await
    }

    async fn record_alert_delivery(
        &self,
        cert_id: &CertId,
        delivery: &AlertDelivery,
    ) -> Result<(), StoreError> {
        self.write_delivery(cert_id, delivery).await
    }

    async fn last_alert_deliveries(
        &self,
        cert_id: &CertId,
    ) -> Result<Vec<AlertDelivery>, StoreError> {
        self.newest_deliveries(cert_id).await
    }
}
