//! Shared scaffolding: a [`World`] (a scratch directory with a SQLite store on file, a manual
//! clock and the fakes), a config builder, and polling waits that fail the test after a
//! timeout instead of hanging it.

pub mod cluster_store;
pub mod fakes;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rota_api::wire::InstalledCert;
use rota_reconciler::Observation;
use tokio_util::sync::CancellationToken;

use rota_api::config::{LoadedConfig, load_str_with_env};
use rota_api::status::{Condition, ConditionType, RenewalRecord, RenewalStatus};
use rota_api::{BackendFactory, CertId, ChallengeKind};
use rota_reconciler::{Clock, ManualClock, Reconciler};
use rota_store::{AuditStore, SqliteStore};

use fakes::FakeFactory;

/// How long any wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);
/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(5);

/// A cert id known to be valid.
pub fn id(s: &str) -> CertId {
    CertId::new(s).expect("a valid cert id")
}

/// Runs `check` until it returns `Some`, and returns that; fails the test after [`WAIT`].
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let poll = async {
        loop {
            if let Some(found) = check().await {
                return found;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One of `cert`'s conditions; fails the test when it has none of that type.
pub fn condition(reconciler: &Reconciler, cert: &str, type_: ConditionType) -> Condition {
    reconciler
        .state(&id(cert))
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("`{cert}` has no {type_:?} condition"))
}

/// A scratch installation: everything a reconciler needs, with fakes for the backends.
pub struct World {
    dir: Arc<tempfile::TempDir>,
    /// The time every component sees.
    pub clock: Arc<ManualClock>,
    /// The audit store, on a file in the scratch directory.
    pub store: Arc<SqliteStore>,
    /// The backends.
    pub fakes: Arc<FakeFactory>,
}

impl World {
    /// A fresh directory and store; the DCV solver answers `kinds`. The clock starts at the
    /// wall-clock time, because the local CA that signs for the fakes reads the wall clock.
    pub fn new(kinds: &[ChallengeKind]) -> Self {
        let dir = Arc::new(tempfile::tempdir().expect("a scratch directory"));
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        Self::open(dir, clock, kinds)
    }

    /// The same directory, store file and clock as after a restart of rotad: the store is
    /// reopened from its file, and the backends are new fakes answering `kinds`.
    pub fn restart(&self, kinds: &[ChallengeKind]) -> Self {
        Self::open(Arc::clone(&self.dir), Arc::clone(&self.clock), kinds)
    }

    fn open(dir: Arc<tempfile::TempDir>, clock: Arc<ManualClock>, kinds: &[ChallengeKind]) -> Self {
        let store = SqliteStore::open(&dir.path().join("rota.db")).expect("the audit store");
        Self {
            dir,
            clock,
            store: Arc::new(store),
            fakes: Arc::new(FakeFactory::new(kinds)),
        }
    }

    /// A valid config with `certs` (id, domains), each with a `dcv:` block, its own key and
    /// install directory, and one alert sink (a webhook, faked). Certs whose id starts with
    /// `acme-` use `ca: { kind: acme }` (faked by [`FakeFactory::acme`]), the others the
    /// local CA.
    pub fn config(&self, max_concurrent: usize, certs: &[(&str, &[&str])]) -> LoadedConfig {
        self.config_with(
            &format!("  max_concurrent_renewals: {max_concurrent}\n"),
            certs,
        )
    }

    /// As [`World::config`], with `daemon_lines` (indented YAML) in the `daemon:` block.
    pub fn config_with(&self, daemon_lines: &str, certs: &[(&str, &[&str])]) -> LoadedConfig {
        let d = self.dir.path().display();
        let mut text = format!(
            "daemon:\n  database_path: {d}/rota.db\n{daemon_lines}\
             local_ca: {{ directory: {d}/ca }}\n\
             acme: {{ directory_url: 'https://acme.test/directory', \
             account_credentials_file: {d}/acme.json }}\ncerts:\n"
        );
        for (cert, domains) in certs {
            let domains = domains.join(", ");
            let ca = if cert.starts_with("acme-") {
                "acme"
            } else {
                "local"
            };
            let _ = write!(
                text,
                "  - id: {cert}\n    domains: [{domains}]\n    key_path: {d}/{cert}.key\n    \
                 ca: {{ kind: {ca} }}\n    dcv: {{ kind: webroot, directory: {d}/www }}\n    \
                 install: {{ kind: filesystem, directory: {d}/{cert} }}\n"
            );
        }
        // The fake factory answers every alert sink with `FakeFactory::alerts`.
        text.push_str("alerts:\n  - { kind: webhook, url: 'https://hooks.test/rota' }\n");
        let path = self.dir.path().join("rota.yaml");
        load_str_with_env(&path, text, &|_| None).expect("a valid config")
    }

    /// A file in this world's scratch directory.
    pub fn file(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a reconciler on this world's store, fakes and clock.
    pub async fn start(&self, loaded: LoadedConfig) -> Reconciler {
        Reconciler::start(
            loaded,
            Arc::clone(&self.store) as Arc<dyn AuditStore>,
            Arc::clone(&self.fakes) as Arc<dyn BackendFactory>,
            Arc::clone(&self.clock) as Arc<dyn Clock>,
            CancellationToken::new(),
        )
        .await
        .expect("the reconciler starts")
    }

    /// Starts a reconciler on this world's store, fakes and clock, as a member of a cluster
    /// whose lease is kept by `coordinator` and whose shared side is `cluster` (a 60 s lease,
    /// so the election runs every 20 s of this world's clock).
    pub async fn start_in_cluster(
        &self,
        loaded: LoadedConfig,
        coordinator: &Arc<fakes::FakeCoordinator>,
        cluster: &Arc<fakes::FakeClusterStore>,
    ) -> Reconciler {
        let cluster = rota_reconciler::Cluster {
            coordinator: Arc::clone(coordinator) as Arc<dyn rota_api::cluster::ClusterCoordinator>,
            store: Some(Arc::clone(cluster) as Arc<dyn rota_store::ClusterStore>),
            coordinator_kind: "surreal_lock",
            lease: Duration::from_secs(60),
        };
        Reconciler::start_in_cluster(
            loaded,
            Arc::clone(&self.store) as Arc<dyn AuditStore>,
            Arc::clone(&self.fakes) as Arc<dyn BackendFactory>,
            Arc::clone(&self.clock) as Arc<dyn Clock>,
            CancellationToken::new(),
            cluster,
        )
        .await
        .expect("the reconciler starts")
    }

    /// Waits until `cert` has `n` finished renewals and nothing more running or queued, and
    /// returns its renewals, newest first.
    pub async fn renewals_done(
        &self,
        reconciler: &Reconciler,
        cert: &str,
        n: usize,
    ) -> Vec<RenewalRecord> {
        let cert = id(cert);
        let what = format!("{n} finished renewal(s) of `{cert}`");
        eventually(&what, async || {
            let rows = self.store.renewals(&cert, 100).await.expect("renewals");
            let finished = rows
                .iter()
                .filter(|r| r.status != RenewalStatus::Running)
                .count();
            (finished >= n && !reconciler.is_busy(&cert)).then_some(rows)
        })
        .await
    }

    /// Sweeps and asserts the sweep left `cert` alone: nothing queued, no order sent to the CA.
    pub async fn sweep_skips(&self, reconciler: &Reconciler, cert: &str) {
        let orders = self.fakes.ca.submits();
        reconciler.sweep().await;
        assert!(!reconciler.is_busy(&id(cert)), "the sweep queued `{cert}`");
        assert_eq!(self.fakes.ca.submits(), orders, "an order for `{cert}`");
    }

    /// Asserts `cert` carries no backoff, in memory nor in the store, and returns what is
    /// installed for it.
    pub async fn installed_without_backoff(
        &self,
        reconciler: &Reconciler,
        cert: &str,
    ) -> InstalledCert {
        let state = reconciler.state(&id(cert));
        assert_eq!(state.backoff, None, "backoff in memory");
        let stored = self.store.backoffs().await.expect("backoffs");
        assert!(
            !stored.contains_key(&id(cert)),
            "backoff in the store: {stored:?}"
        );
        let Some(Observation::Installed(installed)) = state.observed else {
            panic!("nothing installed for {cert}: {:?}", state.observed);
        };
        installed
    }
}
