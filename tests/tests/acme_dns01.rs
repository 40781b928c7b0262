//! DNS-01 end to end against pebble, in process: rota has no DNS solver that talks to
//! pebble-challtestsrv, so the reconciler runs here with the real providers for everything but
//! DCV, which goes to a test-only solver publishing through challtestsrv's management API.
//! Checked: a CNAME at `_acme-challenge.<domain>` makes rota write the TXT record at its
//! target (challtestsrv's log and the audit trail say so), the propagation wait asks the
//! configured nameserver (`daemon.dns_propagation.nameservers` = challtestsrv), pebble
//! validates both names, and the chains verify under pebble's root.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rota_api::config::{AlertSpec, CertSpec, Config, DcvSpec, LoadedConfig};
use rota_api::status::{Step, StepStatus};
use rota_api::{
    AlertBackend, BackendError, BackendFactory, CaBackend, ChallengeKind, DcvBackend, DcvChallenge,
    InstallBackend,
};
use rota_e2e::pebble::{ChallTestSrv, Pebble, PebbleOptions};
use rota_e2e::{assert_chain_verifies, wait_for};
use rota_providers::Providers;
use rota_reconciler::{Reconciler, SystemClock};
use rota_store::{AuditStore, SqliteStore};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

/// Publishes DNS-01 TXT records in challtestsrv and remembers the names it was told.
struct ChallTestSrvSolver {
    dns: Arc<ChallTestSrv>,
    published: Mutex<Vec<String>>,
    removed: Mutex<Vec<String>>,
}

impl ChallTestSrvSolver {
    /// The names in `list`, sorted (the two certs renew concurrently), without a final dot.
    fn names(list: &Mutex<Vec<String>>) -> Vec<String> {
        let names = list.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = names
            .iter()
            .map(|n| n.trim_end_matches('.').to_owned())
            .collect();
        names.sort();
        names
    }
}

fn txt_record(challenge: &DcvChallenge) -> Result<(String, String), BackendError> {
    match challenge {
        DcvChallenge::Dns01 {
            record_name,
            record_value,
            ..
        } => Ok((record_name.clone(), record_value.clone())),
        DcvChallenge::Http01 { .. } | DcvChallenge::DnsCname { .. } => Err(BackendError::Invalid {
            backend: "challtestsrv",
            detail: format!("not a DNS-01 challenge: {}", challenge.describe()),
        }),
    }
}

#[async_trait]
impl DcvBackend for ChallTestSrvSolver {
    fn kind(&self) -> &'static str {
        "challtestsrv"
    }

    fn supported_kinds(&self) -> &[ChallengeKind] {
        &[ChallengeKind::Dns01]
    }

    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let (name, value) = txt_record(challenge)?;
        let dns = Arc::clone(&self.dns);
        let at = name.clone();
        // challtestsrv's management API is driven with blocking curl calls.
        tokio::task::spawn_blocking(move || dns.set_txt(&at, &value))
            .await
            .expect("set-txt");
        self.published.lock().expect("lock").push(name);
        Ok(())
    }

    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let (name, _) = txt_record(challenge)?;
        let dns = Arc::clone(&self.dns);
        let at = name.clone();
        tokio::task::spawn_blocking(move || dns.clear_txt(&at))
            .await
            .expect("clear-txt");
        self.removed.lock().expect("lock").push(name);
        Ok(())
    }
}

/// rota's providers, except that every cert's DCV is the challtestsrv solver (no `dcv:` kind
/// for it exists, so the config names webroot as a placeholder).
struct WithDnsSolver {
    providers: Providers,
    solver: Arc<ChallTestSrvSolver>,
}

impl BackendFactory for WithDnsSolver {
    fn ca(&self, config: &Config, cert: &CertSpec) -> Result<Arc<dyn CaBackend>, BackendError> {
        self.providers.ca(config, cert)
    }

    fn dcv(&self, _: &Config, _: &DcvSpec) -> Result<Arc<dyn DcvBackend>, BackendError> {
        Ok(Arc::clone(&self.solver) as Arc<dyn DcvBackend>)
    }

    fn install(
        &self,
        config: &Config,
        cert: &CertSpec,
    ) -> Result<Arc<dyn InstallBackend>, BackendError> {
        self.providers.install(config, cert)
    }

    fn alert(
        &self,
        config: &Config,
        spec: &AlertSpec,
    ) -> Result<Arc<dyn AlertBackend>, BackendError> {
        self.providers.alert(config, spec)
    }
}

const IDS: [&str; 2] = ["direct", "delegated"];

/// Certs `direct` and `delegated` on pebble; DNS checks go to challtestsrv only.
fn config(dns: &ChallTestSrv, pebble: &Pebble, dir: &Path) -> LoadedConfig {
    let d = dir.display();
    let mut text = format!(
        "daemon:\n  check_interval_seconds: 3600\n  dns_propagation:\n    \
         nameservers: [\"{ns}\"]\n    timeout_seconds: 10\n    interval_seconds: 1\n\
         acme:\n  directory_url: {url}\n  account_credentials_file: {d}/account.json\n  \
         ca_bundle_file: {bundle}\ncerts:\n",
        ns = dns.dns_addr(),
        url = pebble.directory_url(),
        bundle = pebble.ca_bundle_path().display(),
    );
    for id in IDS {
        let _ = write!(
            text,
            "  - id: {id}\n    domains: [{id}.rota.test]\n    key_path: {d}/{id}.key\n    \
             ca: {{ kind: acme }}\n    dcv: {{ kind: webroot, directory: {d}/unused }}\n    \
             install: {{ kind: filesystem, directory: {d}/installed/{id} }}\n"
        );
    }
    rota_api::config::load_str(&dir.join("rota.yaml"), text)
        .unwrap_or_else(|e| panic!("config: {e}"))
}

/// The message of the succeeded `step` in the latest renewal of `id`.
fn audited(runtime: &Runtime, store: &SqliteStore, id: &str, step: Step) -> String {
    let steps = runtime.block_on(async {
        let id = rota_api::CertId::new(id).expect("id");
        let renewal = store.renewals(&id, 1).await.expect("renewals")[0].id;
        store.steps(renewal).await.expect("steps")
    });
    let found = steps
        .iter()
        .find(|e| e.step == step && e.status == StepStatus::Succeeded);
    found.map_or_else(
        || panic!("no succeeded {step:?} in {steps:#?}"),
        |e| e.message.clone(),
    )
}

#[test]
fn dns01_waits_for_challtestsrv_and_follows_a_cname_to_where_it_writes() {
    let dns = Arc::new(ChallTestSrv::start());
    let pebble = Pebble::start(&PebbleOptions::default().dns(&dns));
    // `delegated`'s challenge lives in another zone, as with acme-dns style delegation.
    dns.set_cname(
        "_acme-challenge.delegated.rota.test",
        "delegated.validation.rota.test",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let solver = Arc::new(ChallTestSrvSolver {
        dns: Arc::clone(&dns),
        published: Mutex::default(),
        removed: Mutex::default(),
    });
    let factory = Arc::new(WithDnsSolver {
        providers: Providers::new(),
        solver: Arc::clone(&solver),
    });
    let runtime = Runtime::new().expect("runtime");
    let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let (shutdown, clock) = (CancellationToken::new(), Arc::new(SystemClock));
    let loaded = config(&dns, &pebble, dir.path());
    let started = Reconciler::start(loaded, store.clone(), factory, clock, shutdown);
    let reconciler = runtime
        .block_on(started)
        .unwrap_or_else(|e| panic!("start: {e}"));
    for id in IDS {
        let cert = dir.path().join(format!("installed/{id}/cert.pem"));
        wait_for(&format!("{id} installed"), Duration::from_secs(30), || {
            cert.exists().then_some(())
        });
    }
    runtime.block_on(reconciler.shutdown(Duration::from_secs(5)));

    let published = ChallTestSrvSolver::names(&solver.published);
    let expected = [
        "_acme-challenge.direct.rota.test",
        "delegated.validation.rota.test",
    ];
    assert_eq!(
        published, expected,
        "the delegated TXT goes where the CNAME points"
    );
    let removed = ChallTestSrvSolver::names(&solver.removed);
    assert_eq!(removed, expected, "every record is taken down");
    let dns_log = dns.log();
    for action in ["Added", "Removed"] {
        let line =
            format!("{action} DNS-01 TXT challenge for Host \"delegated.validation.rota.test.\"");
        assert!(
            dns_log.contains(&line),
            "challtestsrv saw: {line}\n{dns_log}"
        );
    }
    let published = audited(&runtime, &store, "delegated", Step::PublishDcv);
    assert!(
        published.contains("CNAME from _acme-challenge.delegated.rota.test"),
        "the audit trail says where the record went and why: {published}"
    );
    let propagated = audited(&runtime, &store, "delegated", Step::CheckPropagation);
    assert!(
        propagated.contains(&format!("answered by {}", dns.dns_addr())),
        "the propagation wait asked the configured nameserver: {propagated}"
    );

    let root = pebble.issuer_roots_path();
    for id in IDS {
        assert_chain_verifies(&root, &dir.path().join(format!("installed/{id}")));
    }
}
