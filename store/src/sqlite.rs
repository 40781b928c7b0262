//! [`SqliteStore`]: the default, single-file audit store. One rusqlite connection sits behind
//! a mutex; every trait method moves its SQL onto tokio's blocking pool through
//! [`SqliteStore::run`], so the reconciler's runtime threads never wait on the disk. The SQL
//! itself lives in one submodule per table family (`renewals`, `dcv`, `cert_state`), the
//! schema and its migrations in `migrate`, and the file preparation in `db_file`.

mod alerts;
mod cert_state;
mod codec;
mod db_file;
mod dcv;
mod migrate;
mod renewals;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags};
use time::OffsetDateTime;

use rota_api::DcvChallenge;
use rota_api::config::DcvSpec;
use rota_api::status::{
    BackoffState, Condition, Reason, RenewalRecord, RenewalStatus, Step, StepEvent, StepStatus,
};
use rota_api::{CertId, RevocationReason};

use rota_api::AlertKind;
use rota_api::wire::AlertDelivery;

use crate::{
    AlertDeliveryCount, AlertEpisode, AuditStore, DcvJournalEntry, IssuedCertRow, RenewalOutcome,
    SpecGeneration, StoreError,
};
use codec::Context as _;

/// How long a statement waits for another process's lock (an operator's `sqlite3` shell, a
/// second rotad started by mistake) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The audit store in one SQLite file (WAL mode, schema versioned by `PRAGMA user_version`).
#[derive(Debug)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens the database at `path`, creating it (0600, parents 0700) and migrating its schema.
    ///
    /// Synchronous: it touches the disk, so call it before serving or from `spawn_blocking`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        db_file::prepare(path)?;
        // No CREATE: the file exists with the right mode by now, and SQLite must not make
        // another. No URI: a `database_path` starting with `file:` is a file name.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).context("opening the database")?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .context("setting the busy timeout")?;
        db_file::enable_wal(&conn, path)?;
        Self::init(conn)
    }

    /// A private in-memory database with the full schema, for tests of other crates.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().context("opening an in-memory database")?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        // NORMAL is crash-safe in WAL mode (a power loss may drop the last commits, never
        // corrupt); the one write that must survive a power loss, the DCV journal, asks for
        // FULL itself.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .context("setting synchronous=NORMAL")?;
        conn.pragma_update(None, "foreign_keys", true)
            .context("enabling foreign keys")?;
        migrate::run(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `work` on the connection on tokio's blocking pool.
    async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            // A panic inside `work` unwinds through rusqlite's `Transaction` drop, which rolls
            // back, so the connection behind a poisoned lock is still consistent: keep using it
            // rather than failing every later call.
            let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Worker(e.to_string()))?
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn open_renewal(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
    ) -> Result<RenewalRecord, StoreError> {
        let cert_id = cert_id.clone();
        self.run(move |conn| renewals::open(conn, &cert_id, trigger, at, false))
            .await
    }

    async fn open_dry_run(
        &self,
        cert_id: &CertId,
        trigger: Reason,
        at: OffsetDateTime,
    ) -> Result<RenewalRecord, StoreError> {
        let cert_id = cert_id.clone();
        self.run(move |conn| renewals::open(conn, &cert_id, trigger, at, true))
            .await
    }

    async fn record_step(
        &self,
        renewal_id: i64,
        step: Step,
        status: StepStatus,
        message: &str,
        at: OffsetDateTime,
    ) -> Result<StepEvent, StoreError> {
        let message = message.to_owned();
        self.run(move |conn| renewals::record_step(conn, renewal_id, step, status, &message, at))
            .await
    }

    async fn close_renewal(
        &self,
        renewal_id: i64,
        status: RenewalStatus,
        error: Option<&str>,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let error = error.map(str::to_owned);
        self.run(move |conn| renewals::close(conn, renewal_id, status, error.as_deref(), at))
            .await
    }

    async fn interrupt_open_renewals(
        &self,
        at: OffsetDateTime,
    ) -> Result<Vec<RenewalRecord>, StoreError> {
        self.run(move |conn| renewals::interrupt_running(conn, at))
            .await
    }

    async fn renewal(&self, renewal_id: i64) -> Result<Option<RenewalRecord>, StoreError> {
        self.run(move |conn| renewals::by_id(conn, renewal_id))
            .await
    }

    async fn renewals(
        &self,
        cert_id: &CertId,
        limit: usize,
    ) -> Result<Vec<RenewalRecord>, StoreError> {
        let cert_id = cert_id.clone();
        self.run(move |conn| renewals::newest_first(conn, &cert_id, limit))
            .await
    }

    async fn last_renewal_statuses(&self) -> Result<HashMap<CertId, RenewalStatus>, StoreError> {
        self.run(|conn| renewals::last_statuses(conn)).await
    }

    async fn last_renewals(&self) -> Result<HashMap<CertId, RenewalRecord>, StoreError> {
        self.run(|conn| renewals::last_renewals(conn)).await
    }

    async fn renewal_outcomes(&self) -> Result<Vec<RenewalOutcome>, StoreError> {
        self.run(|conn| renewals::outcomes(conn)).await
    }

    async fn alert_delivery_counts(&self) -> Result<Vec<AlertDeliveryCount>, StoreError> {
        self.run(|conn| alerts::delivery_counts(conn)).await
    }

    async fn steps(&self, renewal_id: i64) -> Result<Vec<StepEvent>, StoreError> {
        self.run(move |conn| renewals::steps(conn, renewal_id))
            .await
    }

    async fn journal_dcv(
        &self,
        renewal_id: i64,
        cert_id: &CertId,
        dcv: &DcvSpec,
        challenge: &DcvChallenge,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let entry = dcv::NewEntry::encode(renewal_id, cert_id, dcv, challenge, at)?;
        self.run(move |conn| dcv::journal(conn, &entry)).await
    }

    async fn clear_dcv(&self, journal_id: i64) -> Result<(), StoreError> {
        self.run(move |conn| dcv::clear(conn, journal_id)).await
    }

    async fn pending_dcv(&self) -> Result<Vec<DcvJournalEntry>, StoreError> {
        self.run(|conn| dcv::pending(conn)).await
    }

    async fn record_issued_cert(&self, row: &IssuedCertRow) -> Result<(), StoreError> {
        let row = row.clone();
        self.run(move |conn| cert_state::record_issued_cert(conn, &row))
            .await
    }

    async fn latest_issued_cert(
        &self,
        cert_id: &CertId,
    ) -> Result<Option<IssuedCertRow>, StoreError> {
        let cert_id = cert_id.clone();
        self.run(move |conn| cert_state::latest_issued_cert(conn, &cert_id))
            .await
    }

    async fn put_conditions(
        &self,
        cert_id: &CertId,
        conditions: &[Condition],
    ) -> Result<(), StoreError> {
        let cert_id = cert_id.clone();
        let conditions = conditions.to_vec();
        self.run(move |conn| cert_state::put_conditions(conn, &cert_id, &conditions))
            .await
    }

    async fn all_conditions(&self) -> Result<HashMap<CertId, Vec<Condition>>, StoreError> {
        self.run(|conn| cert_state::all_conditions(conn)).await
    }

    async fn put_backoff(
        &self,
        cert_id: &CertId,
        backoff: Option<&BackoffState>,
    ) -> Result<(), StoreError> {
        let cert_id = cert_id.clone();
        let backoff = backoff.cloned();
        self.run(move |conn| cert_state::put_backoff(conn, &cert_id, backoff.as_ref()))
            .await
    }

    async fn backoffs(&self) -> Result<HashMap<CertId, BackoffState>, StoreError> {
        self.run(|conn| cert_state::backoffs(conn)).await
    }

    async fn put_spec_generation(
        &self,
        cert_id: &CertId,
        generation: SpecGeneration,
    ) -> Result<(), StoreError> {
        let cert_id = cert_id.clone();
        self.run(move |conn| cert_state::put_spec_generation(conn, &cert_id, generation))
            .await
    }

    async fn spec_generations(&self) -> Result<HashMap<CertId, SpecGeneration>, StoreError> {
        self.run(|conn| cert_state::spec_generations(conn)).await
    }

    async fn record_revocation(
        &self,
        cert_id: &CertId,
        serial: &str,
        reason: RevocationReason,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let (cert_id, serial) = (cert_id.clone(), serial.to_owned());
        self.run(move |conn| cert_state::record_revocation(conn, &cert_id, &serial, reason, at))
            .await
    }

    async fn revoked_serials(&self) -> Result<HashMap<CertId, BTreeSet<String>>, StoreError> {
        self.run(|conn| cert_state::revoked_serials(conn)).await
    }

    async fn put_alert_episode(
        &self,
        cert_id: &CertId,
        kind: AlertKind,
        episode: Option<&AlertEpisode>,
    ) -> Result<(), StoreError> {
        let (cert_id, episode) = (cert_id.clone(), episode.copied());
        self.run(move |conn| alerts::put_episode(conn, &cert_id, kind, episode.as_ref()))
            .await
    }

    async fn alert_episodes(
        &self,
    ) -> Result<HashMap<CertId, HashMap<AlertKind, AlertEpisode>>, StoreError> {
        self.run(|conn| alerts::episodes(conn)).await
    }

    async fn record_alert_delivery(
        &self,
        cert_id: &CertId,
        delivery: &AlertDelivery,
    ) -> Result<(), StoreError> {
        let (cert_id, delivery) = (cert_id.clone(), delivery.clone());
        self.run(move |conn| alerts::record_delivery(conn, &cert_id, &delivery))
            .await
    }

    async fn last_alert_deliveries(
        &self,
        cert_id: &CertId,
    ) -> Result<Vec<AlertDelivery>, StoreError> {
        let cert_id = cert_id.clone();
        self.run(move |conn| alerts::last_deliveries(conn, &cert_id))
            .await
    }
}
