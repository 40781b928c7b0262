//! Spine benchmarks (run with `scripts/bench`, which builds the release binaries first):
//! (a) a start — every installed cert observed, planned and scheduled before `start` returns —
//! with 1,000 and 10,000 installed certs, then one sweep — observe and plan — over 10,000,
//! in process; (b) the idle RSS of the real rotad with 1,000 certs configured.
//! Figures are printed, not asserted: machines are too noisy for timed tests.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_api::BackendFactory;
use rota_api::config::{LoadedConfig, load_file};
use rota_providers::Providers;
use rota_providers::keys::load_or_generate;
use rota_reconciler::{Plan, Reconciler, SystemClock};
use rota_store::{AuditStore, SqliteStore};
use tokio_util::sync::CancellationToken;

const SWEEP_CERTS: usize = 10_000;
const RSS_CERTS: usize = 1_000;
const SWEEP_RUNS: usize = 20;
const START_CERTS: [usize; 2] = [1_000, 10_000];
const HUNG_LOCAL_CERTS: usize = 1_000;
const HUNG_CERTS: usize = 8;

async fn start(
    loaded: LoadedConfig,
    store: Arc<dyn AuditStore>,
    providers: Arc<Providers>,
) -> Reconciler {
    Reconciler::start(
        loaded,
        store,
        providers,
        Arc::new(SystemClock),
        CancellationToken::new(),
    )
    .await
    .unwrap_or_else(|e| panic!("start: {e}"))
}

/// Scratch space in RAM when the machine has it, so setup is not bound by fsync.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("temp dir")
}

fn config_yaml(dir: &Path, certs: usize) -> String {
    let d = dir.display();
    let mut yaml = format!(
        "daemon:\n  database_path: {d}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {d}/rota.sock\n  check_interval_seconds: 3600\nlocal_ca:\n  directory: {d}/ca\ncerts:\n"
    );
    for i in 0..certs {
        let _ = write!(
            yaml,
            "  - id: c{i}\n    domains: [c{i}.bench.test]\n    key_path: {d}/keys/c{i}.key\n    ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {d}/certs/c{i} }}\n"
        );
    }
    yaml
}

async fn sweep_bench() {
    let dir = scratch();
    std::fs::write(
        dir.path().join("rota.yaml"),
        config_yaml(dir.path(), SWEEP_CERTS),
    )
    .expect("config");
    let loaded = load_file(&dir.path().join("rota.yaml")).expect("valid config");
    let providers = Arc::new(Providers::new());
    let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::open_in_memory().expect("store"));

    let setup = Instant::now();
    for spec in &loaded.config.certs {
        let key = load_or_generate(&spec.key_path, spec.key.key_type)
            .expect("key")
            .key;
        let csr = key.csr_pem(&spec.domains).expect("csr");
        let ca = providers.ca(&loaded.config, spec).expect("ca");
        let order = ca
            .submit(&spec.domains, &csr, &[], None)
            .await
            .expect("submit");
        let issued = ca.await_issuance(&order.handle).await.expect("issue");
        let install = providers.install(&loaded.config, spec).expect("install");
        install
            .install(&issued, key.pem(), &spec.domains)
            .await
            .expect("install");
    }
    println!(
        "setup: issued and installed {SWEEP_CERTS} certs in {:.1?}",
        setup.elapsed()
    );

    for certs in START_CERTS {
        let mut subset = loaded.clone();
        subset.config.certs.truncate(certs);
        let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::open_in_memory().expect("store"));
        // The first start stores every cert's conditions; a restart finds them unchanged.
        for when in ["first start", "restart"] {
            let started = Instant::now();
            let reconciler =
                start(subset.clone(), Arc::clone(&store), Arc::clone(&providers)).await;
            println!(
                "{when} with {certs} installed certs, every one observed and scheduled: {:.1?} (target well under 1 s for 1,000)",
                started.elapsed()
            );
            reconciler.shutdown(Duration::from_secs(5)).await;
        }
    }

    let reconciler = start(loaded, store, providers).await;
    let mut runs = Vec::with_capacity(SWEEP_RUNS + 1);
    for _ in 0..=SWEEP_RUNS {
        let started = Instant::now();
        let planned = reconciler.observe_and_plan().await;
        runs.push(started.elapsed());
        let up_to_date = planned
            .iter()
            .filter(|(_, _, p)| matches!(p, Plan::UpToDate { .. }))
            .count();
        assert_eq!(
            up_to_date, SWEEP_CERTS,
            "every cert observed as installed and up to date"
        );
    }
    let cold = runs.remove(0);
    runs.sort();
    println!(
        "sweep (observe + plan) over {SWEEP_CERTS} certs: cold {:.1?}; warm min {:.1?} median {:.1?} max {:.1?} (target <= 50 ms)",
        cold,
        runs[0],
        runs[runs.len() / 2],
        runs[runs.len() - 1]
    );
    reconciler.shutdown(Duration::from_secs(5)).await;
    hung_ca_bench(dir.path()).await;
}

/// A start and a sweep over 1,000 installed local-CA certs plus `HUNG_CERTS` ACME certs whose
/// CA accepts connections and never answers: neither may wait for the ACME CA.
async fn hung_ca_bench(dir: &Path) {
    // Connections queue in the backlog and their TLS handshakes are never answered.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = hung.local_addr().expect("port").port();
    let d = dir.display();
    let mut yaml = config_yaml(dir, HUNG_LOCAL_CERTS).replace(
        "certs:\n",
        &format!(
            "acme:\n  directory_url: https://127.0.0.1:{port}/dir\n  \
             account_credentials_file: {d}/acme.json\ncerts:\n"
        ),
    );
    for i in 0..HUNG_CERTS {
        // An installed cert (a copy of c0's), so the reconciler asks the CA for its window.
        let installed = dir.join(format!("certs/hung{i}"));
        std::fs::create_dir_all(&installed).expect("install dir");
        for file in ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"] {
            std::fs::copy(dir.join("certs/c0").join(file), installed.join(file)).expect("copy");
        }
        let _ = write!(
            yaml,
            "  - id: hung{i}\n    domains: [c0.bench.test]\n    key_path: {d}/keys/c0.key\n    \
             ca: {{ kind: acme }}\n    dcv: {{ kind: webroot, directory: {d}/www }}\n    \
             install: {{ kind: filesystem, directory: {d}/certs/hung{i} }}\n"
        );
    }
    let path = dir.join("hung.yaml");
    std::fs::write(&path, yaml).expect("config");
    let loaded = load_file(&path).expect("valid config");
    let store: Arc<dyn AuditStore> = Arc::new(SqliteStore::open_in_memory().expect("store"));
    let started = Instant::now();
    let reconciler = start(loaded, store, Arc::new(Providers::new())).await;
    let start_time = started.elapsed();
    let swept = Instant::now();
    reconciler.sweep().await;
    println!(
        "with an ACME CA that never answers ({HUNG_CERTS} certs) and {HUNG_LOCAL_CERTS} local certs: \
         start {start_time:.1?}, sweep {:.1?} (neither waits for the CA)",
        swept.elapsed()
    );
    drop(hung);
}

/// Prints rotad's resident memory (and its peak), after it has sat idle for 3 s.
fn report_idle_rss(rotad: &rota_e2e::Rotad, when: &str) {
    std::thread::sleep(Duration::from_secs(3));
    let pid = rotad.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let mib = |name: &str| {
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        kib as f64 / 1024.0
    };
    println!(
        "rotad RSS with {RSS_CERTS} certs, idle {when}: {:.1} MB (peak {:.1} MB)",
        mib("VmRSS:"),
        mib("VmHWM:")
    );
}

fn rss_bench() {
    let yaml = config_yaml(Path::new("{dir}"), RSS_CERTS);
    let mut rotad = rota_e2e::Rotad::start(&yaml);
    let issuing = Instant::now();
    rota_e2e::wait_for("all certs issued", Duration::from_secs(600), || {
        (0..RSS_CERTS)
            .all(|i| rotad.path(&format!("certs/c{i}/cert.pem")).exists())
            .then_some(())
    });
    println!(
        "rotad issued {RSS_CERTS} certs at boot in {:.1?}",
        issuing.elapsed()
    );
    report_idle_rss(&rotad, "after issuing them");
    rotad.stop();
    rotad.restart();
    report_idle_rss(&rotad, "after a restart (target <= 25 MB)");
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks one benchmark.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    if wanted("sweep") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(sweep_bench());
    }
    if wanted("rss") {
        rss_bench();
    }
}
