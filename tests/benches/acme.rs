//! ACME issuance benchmark (run with `scripts/bench-acme`, which installs certbot and lego and
//! builds the release binaries first): N certs with distinct names on pebble
//! (`PEBBLE_VA_NOSLEEP=1`, no nonce rejection), HTTP-01 through one nginx webroot, issued by
//! (a) rotad with `max_concurrent_renewals: 64`, (b) certbot, one `certonly --webroot` run per
//! cert, (c) lego, one `run --http.webroot` per cert, (d) 8 lego runs in parallel, then
//! (e) rotad again at pebble's default 5 % `badNonce` rate. Prints wall times, per-cert times
//! and the ratios against the targets (rota ≤ 1/20 of certbot, ≤ 1/6 of 8 parallel legos).
//! Figures are printed, not asserted: machines are too noisy for timed tests. pebble itself
//! sometimes deadlocks under that many orders in flight; such a rotad run is detected (no
//! progress, then pebble's goroutine dump), reported, and redone on a fresh pebble.
//!
//! Arguments: `--n N` (default 200) and any of `rota certbot lego lego8` to run only those.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rota_e2e::Rotad;
use rota_e2e::nginx::Nginx;
use rota_e2e::pebble::{ChallTestSrv, Pebble, PebbleOptions};

/// How many lego processes run at once in (d).
const LEGO_PARALLEL: usize = 8;
/// rotad's concurrency in (a) and (e).
const ROTA_CONCURRENCY: usize = 64;
/// A whole rotad run takes a few seconds; this long without a new cert means pebble is stuck.
const STALLED_AFTER: Duration = Duration::from_secs(20);
/// Runs discarded for pebble's deadlock before the bench gives up.
const DEADLOCK_RETRIES: usize = 3;

/// pebble, its DNS and the one nginx every client's webroot goes through.
struct Bench {
    pebble: Pebble,
    options: PebbleOptions,
    webroot: tempfile::TempDir,
    _nginx: Nginx,
    _dns: ChallTestSrv,
}

impl Bench {
    /// `nonce_reject`: pebble's `PEBBLE_WFE_NONCEREJECT`, or its default when `None`.
    fn start(nonce_reject: Option<u8>) -> Self {
        let webroot = tempfile::tempdir().expect("webroot");
        let nginx = Nginx::start(webroot.path());
        let dns = ChallTestSrv::start();
        let mut options = PebbleOptions::default().dns(&dns).http_port(nginx.port());
        if let Some(percent) = nonce_reject {
            options = options.nonce_reject_percent(percent);
        }
        Self {
            pebble: Pebble::start(&options),
            options,
            webroot,
            _nginx: nginx,
            _dns: dns,
        }
    }

    /// A fresh pebble in place of one that deadlocked.
    fn restart_pebble(&mut self) {
        self.pebble = Pebble::start(&self.options);
    }

    fn webroot(&self) -> String {
        self.webroot.path().display().to_string()
    }

    fn bundle(&self) -> PathBuf {
        self.pebble.ca_bundle_path()
    }
}

/// rotad with `n` certs, from start until every cert is installed; `None` when pebble
/// deadlocked on the way (see [`Pebble::quit_and_find_store_deadlock`]).
fn rota(bench: &mut Bench, n: usize, prefix: &str) -> Option<Duration> {
    let mut yaml = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n  \
         max_concurrent_renewals: {ROTA_CONCURRENCY}\n\
         acme:\n  directory_url: {url}\n  account_credentials_file: {{dir}}/account.json\n  \
         ca_bundle_file: {bundle}\ncerts:\n",
        url = bench.pebble.directory_url(),
        bundle = bench.bundle().display(),
    );
    for i in 0..n {
        let _ = write!(
            yaml,
            "  - id: {prefix}{i}\n    domains: [{prefix}{i}.bench.test]\n    \
             key_path: {{dir}}/keys/{i}.key\n    ca: {{ kind: acme }}\n    \
             dcv: {{ kind: webroot, directory: {root} }}\n    \
             install: {{ kind: filesystem, directory: {{dir}}/installed/{i} }}\n",
            root = bench.webroot(),
        );
    }
    let started = Instant::now();
    let rotad = Rotad::start(&yaml);
    let (mut installed, mut progressed) = (0, Instant::now());
    while installed < n {
        std::thread::sleep(Duration::from_millis(50));
        let now = (0..n)
            .filter(|i| rotad.path(&format!("installed/{i}/cert.pem")).exists())
            .count();
        if now > installed {
            (installed, progressed) = (now, Instant::now());
        } else if progressed.elapsed() > STALLED_AFTER {
            // A failed renewal backs off for minutes, so a stall never resolves by itself.
            assert!(
                bench.pebble.quit_and_find_store_deadlock(),
                "rotad installed {installed} of {n} certs, then nothing for {STALLED_AFTER:?}; \
                 rotad's log:\n{}\npebble's log:\n{}",
                rotad.log(),
                bench.pebble.log()
            );
            return None;
        }
    }
    Some(started.elapsed())
}

/// [`rota`], on a fresh pebble each time pebble deadlocks (at most [`DEADLOCK_RETRIES`]).
fn rota_despite_pebble(bench: &mut Bench, n: usize, prefix: &str) -> Duration {
    for _ in 0..DEADLOCK_RETRIES {
        if let Some(took) = rota(bench, n, prefix) {
            return took;
        }
        println!(
            "   pebble deadlocked in its own store (lock-order bug, see tests/src/pebble.rs); \
             run discarded, pebble restarted"
        );
        bench.restart_pebble();
    }
    panic!("pebble deadlocked in {DEADLOCK_RETRIES} runs in a row");
}

/// Runs `command` and panics with its output if it fails.
fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// certbot, one `certonly --webroot` run per cert, sharing one config dir (one account).
fn certbot(bench: &Bench, n: usize) -> Duration {
    let certbot = std::env::var("CERTBOT").unwrap_or_else(|_| "certbot".to_owned());
    let dir = tempfile::tempdir().expect("certbot dir");
    let d = dir.path();
    let started = Instant::now();
    for i in 0..n {
        let domain = format!("c{i}.bench.test");
        run(
            Command::new(&certbot)
                .env("REQUESTS_CA_BUNDLE", bench.bundle())
                .args([
                    "certonly",
                    "--webroot",
                    "-w",
                    &bench.webroot(),
                    "-d",
                    &domain,
                ])
                .args(["--server", &bench.pebble.directory_url()])
                .arg("--config-dir")
                .arg(d.join("config"))
                .arg("--work-dir")
                .arg(d.join("work"))
                .arg("--logs-dir")
                .arg(d.join("logs"))
                .args(["--non-interactive", "--agree-tos"])
                .arg("--register-unsafely-without-email"),
            &format!("certbot for {domain}"),
        );
    }
    started.elapsed()
}

/// One `lego run --http.webroot` for `domain`, keeping its account under `path`.
fn lego_once(bench: &Bench, path: &Path, domain: &str) {
    run(
        Command::new("lego")
            .env("LEGO_CA_CERTIFICATES", bench.bundle())
            .args(["--server", &bench.pebble.directory_url()])
            .args(["--accept-tos", "--email", "bench@rota.test"])
            .arg("--path")
            .arg(path)
            .args([
                "--http",
                "--http.webroot",
                &bench.webroot(),
                "-d",
                domain,
                "run",
            ]),
        &format!("lego for {domain}"),
    );
}

/// lego for `n` certs with `parallel` processes at a time, each worker with its own account.
fn lego(bench: &Bench, n: usize, parallel: usize, prefix: &str) -> Duration {
    let dir = tempfile::tempdir().expect("lego dir");
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for worker in 0..parallel {
            let (next, path) = (&next, dir.path().join(worker.to_string()));
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    lego_once(bench, &path, &format!("{prefix}{i}.bench.test"));
                }
            });
        }
    });
    started.elapsed()
}

fn report(name: &str, took: Duration, n: usize) {
    println!(
        "{name:<34} {:>9.2} s   {:>8.3} s/cert",
        took.as_secs_f64(),
        took.as_secs_f64() / n as f64
    );
}

fn ratio(what: &str, rota: Option<Duration>, other: Option<Duration>, target: f64) {
    if let (Some(rota), Some(other)) = (rota, other) {
        let ratio = rota.as_secs_f64() / other.as_secs_f64();
        let verdict = if ratio <= target { "meets" } else { "MISSES" };
        println!("{what:<34} {ratio:>9.4}   (target ≤ {target:.4}: {verdict})");
    }
}

/// `--n N` and the parts to run (all when none is named); cargo's own `--bench` is ignored.
fn args() -> (usize, Vec<String>) {
    let mut n = 200;
    let mut parts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--bench" => {}
            part @ ("rota" | "certbot" | "lego" | "lego8") => parts.push(part.to_owned()),
            other => panic!("unknown argument {other}: expected --n N, rota, certbot, lego, lego8"),
        }
    }
    if parts.is_empty() {
        parts = ["rota", "certbot", "lego", "lego8"]
            .map(str::to_owned)
            .into();
    }
    (n, parts)
}

fn main() {
    let (n, parts) = args();
    let wanted = |part: &str| parts.iter().any(|p| p == part);
    println!(
        "ACME issuance of {n} certs on pebble (PEBBLE_VA_NOSLEEP=1), HTTP-01 via one nginx webroot"
    );
    let mut bench = Bench::start(Some(0));
    println!("-- PEBBLE_WFE_NONCEREJECT=0");
    let rota_time = wanted("rota").then(|| rota_despite_pebble(&mut bench, n, "r"));
    let named = format!("rotad, max_concurrent_renewals {ROTA_CONCURRENCY}");
    rota_time.inspect(|t| report(&named, *t, n));
    let certbot_time = wanted("certbot").then(|| certbot(&bench, n));
    certbot_time.inspect(|t| report("certbot, one run per cert", *t, n));
    let sequential_time = wanted("lego").then(|| lego(&bench, n, 1, "l"));
    sequential_time.inspect(|t| report("lego, one run per cert", *t, n));
    let parallel_time = wanted("lego8").then(|| lego(&bench, n, LEGO_PARALLEL, "p"));
    let named = format!("lego, {LEGO_PARALLEL} runs in parallel");
    parallel_time.inspect(|t| report(&named, *t, n));
    ratio("rota / certbot", rota_time, certbot_time, 1.0 / 20.0);
    ratio("rota / lego ×8", rota_time, parallel_time, 1.0 / 6.0);
    drop(bench);
    if wanted("rota") {
        let mut bench = Bench::start(None);
        println!("-- pebble's default PEBBLE_WFE_NONCEREJECT (5 %)");
        report(
            &format!("rotad, max_concurrent_renewals {ROTA_CONCURRENCY}"),
            rota_despite_pebble(&mut bench, n, "d"),
            n,
        );
    }
}
