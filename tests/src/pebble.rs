//! Fixtures for the real ACME peer: `pebble`, Let's Encrypt's test CA, and
//! `pebble-challtestsrv`, the mock DNS server pebble resolves names through (both from
//! Debian's `pebble` package). Each picks free loopback ports, waits until it answers, and is
//! killed on drop. Their HTTP interfaces are driven with the real `curl`.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use serde_json::json;

/// How long a fixture may take to answer after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// The file holding the root of pebble's TLS certificate.
const TLS_ROOT: &str = "tls-root.pem";
/// Starts retried when another process took a port between picking and binding it.
const START_ATTEMPTS: usize = 3;
/// The frame every stuck goroutine leads back to when pebble's in-memory store deadlocks
/// (Debian's 2.4.0; upstream's memorystore.go still has it): a new order scanning for a
/// reusable authorization holds the store's read lock and waits for an authorization's lock,
/// which a concurrent authorization fetch holds while it queues for the store behind a writer.
/// Dozens of orders in flight hit it now and then; pebble then never answers again.
const STORE_DEADLOCK_FRAME: &str = "(*MemoryStore).FindValidAuthorization";

/// A running `pebble-challtestsrv` answering DNS on a free port; killed on drop.
pub struct ChallTestSrv {
    process: Process,
    dns: SocketAddr,
    management: u16,
}

impl ChallTestSrv {
    /// Starts the mock DNS (A queries answer 127.0.0.1, no AAAA) with its HTTP-01, HTTPS-01
    /// and TLS-ALPN-01 responders off.
    #[must_use]
    pub fn start() -> Self {
        retry_start("pebble-challtestsrv", || {
            let dns = free_dns_port();
            let management = free_port();
            let mut command = Command::new("pebble-challtestsrv");
            command
                .arg("-dns01")
                .arg(format!("127.0.0.1:{dns}"))
                .arg("-management")
                .arg(format!("127.0.0.1:{management}"))
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""]);
            let mut process = Process::spawn(command, "pebble-challtestsrv");
            process.wait_until_ready(|| {
                [dns, management]
                    .iter()
                    .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
            })?;
            Ok(Self {
                process,
                dns: SocketAddr::from(([127, 0, 0, 1], dns)),
                management,
            })
        })
    }

    /// Where the mock DNS listens (UDP and TCP), for pebble's `-dnsserver`.
    #[must_use]
    pub fn dns_addr(&self) -> SocketAddr {
        self.dns
    }

    /// Adds `value` to the TXT records of `host` (several values may coexist).
    pub fn set_txt(&self, host: &str, value: &str) {
        self.post("set-txt", &json!({ "host": fqdn(host), "value": value }));
    }

    /// Removes every TXT record of `host`.
    pub fn clear_txt(&self, host: &str) {
        self.post("clear-txt", &json!({ "host": fqdn(host) }));
    }

    /// Makes `host` a CNAME of `target`.
    pub fn set_cname(&self, host: &str, target: &str) {
        self.post(
            "set-cname",
            &json!({ "host": fqdn(host), "target": fqdn(target) }),
        );
    }

    /// Answers A queries for `host` with `addresses` instead of the default 127.0.0.1.
    pub fn add_a(&self, host: &str, addresses: &[&str]) {
        self.post(
            "add-a",
            &json!({ "host": fqdn(host), "addresses": addresses }),
        );
    }

    /// What the server logged so far.
    #[must_use]
    pub fn log(&self) -> String {
        self.process.log()
    }

    fn post(&self, path: &str, body: &serde_json::Value) {
        let url = format!("http://127.0.0.1:{}/{path}", self.management);
        if let Err(e) = curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
            &url,
        ]) {
            panic!("pebble-challtestsrv /{path} {body}: {e}");
        }
    }
}

/// How to run pebble; `PebbleOptions::default()` is pebble's defaults minus the random
/// validation sleeps and authorization reuse.
#[derive(Debug, Clone, Default)]
pub struct PebbleOptions {
    dns_server: Option<SocketAddr>,
    http_port: Option<u16>,
    nonce_reject_percent: Option<u8>,
    always_valid: bool,
    authz_reuse_percent: u8,
    eab_keys: Vec<(String, String)>,
    validation_sleep_seconds: Option<u32>,
}

impl PebbleOptions {
    /// Resolve names through `dns` (usually a [`ChallTestSrv`]).
    #[must_use]
    pub fn dns(mut self, dns: &ChallTestSrv) -> Self {
        self.dns_server = Some(dns.dns_addr());
        self
    }

    /// Resolve names through the DNS server at `addr` (e.g. a [`crate::bind::Bind`]).
    #[must_use]
    pub fn dns_server(mut self, addr: SocketAddr) -> Self {
        self.dns_server = Some(addr);
        self
    }

    /// The port pebble connects to for HTTP-01 (e.g. an nginx serving the webroot).
    #[must_use]
    pub fn http_port(mut self, port: u16) -> Self {
        self.http_port = Some(port);
        self
    }

    /// Reject this share of valid nonces with `badNonce` (pebble's default is 5).
    #[must_use]
    pub fn nonce_reject_percent(mut self, percent: u8) -> Self {
        self.nonce_reject_percent = Some(percent);
        self
    }

    /// Skip validation: every challenge succeeds.
    #[must_use]
    pub fn always_valid(mut self) -> Self {
        self.always_valid = true;
        self
    }

    /// Sleep a random time of up to `seconds` before each validation, as pebble does by
    /// default (with 15), so challenge answers stay published for a while.
    #[must_use]
    pub fn validation_sleep(mut self, seconds: u32) -> Self {
        self.validation_sleep_seconds = Some(seconds);
        self
    }

    /// Reuse a valid authorization for this share of new orders.
    #[must_use]
    pub fn authz_reuse_percent(mut self, percent: u8) -> Self {
        self.authz_reuse_percent = percent;
        self
    }

    /// Require external account binding, accepting `kid` with the base64url HMAC `key`.
    #[must_use]
    pub fn eab_key(mut self, kid: &str, key: &str) -> Self {
        self.eab_keys.push((kid.to_owned(), key.to_owned()));
        self
    }
}

/// A running pebble with its own TLS root and config; killed on drop.
pub struct Pebble {
    process: Process,
    dir: tempfile::TempDir,
    listen: u16,
    management: u16,
}

impl Pebble {
    /// Writes a config and a TLS cert for 127.0.0.1/localhost, starts pebble and waits until
    /// its directory answers.
    #[must_use]
    pub fn start(options: &PebbleOptions) -> Self {
        retry_start("pebble", || {
            let dir = tempfile::tempdir().expect("temp dir");
            write_tls_files(dir.path());
            let (listen, management) = (free_port(), free_port());
            let config = dir.path().join("pebble-config.json");
            let text = config_json(options, dir.path(), listen, management);
            fs::write(&config, text).expect("write the pebble config");
            let mut process = Process::spawn(pebble_command(options, &config), "pebble");
            let bundle = dir.path().join(TLS_ROOT).display().to_string();
            let url = format!("https://127.0.0.1:{listen}/dir");
            process.wait_until_ready(|| curl(&["--cacert", &bundle, &url]).is_ok())?;
            Ok(Self {
                process,
                dir,
                listen,
                management,
            })
        })
    }

    /// The ACME directory URL.
    #[must_use]
    pub fn directory_url(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.listen)
    }

    /// The root that signed pebble's TLS certificate: `acme.ca_bundle_file`.
    #[must_use]
    pub fn ca_bundle_path(&self) -> PathBuf {
        self.dir.path().join(TLS_ROOT)
    }

    /// The root pebble issues certificates under (new on every start), from its management
    /// interface.
    #[must_use]
    pub fn issuer_roots_pem(&self) -> String {
        self.management_get("roots/0")
    }

    /// What pebble's management interface says of the cert with this hex serial:
    /// `{"Status": "Valid" | "Revoked", "Reason": <RFC 5280 code>, …}`.
    #[must_use]
    pub fn cert_status(&self, serial_hex: &str) -> serde_json::Value {
        let text = self.management_get(&format!("cert-status-by-serial/{serial_hex}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("cert status {text:?}: {e}"))
    }

    fn management_get(&self, path: &str) -> String {
        let url = format!("https://127.0.0.1:{}/{path}", self.management);
        curl(&[
            "--cacert",
            &self.ca_bundle_path().display().to_string(),
            &url,
        ])
        .unwrap_or_else(|e| panic!("GET {url} from pebble's management interface: {e}"))
    }

    /// What pebble logged so far (it logs every account, order and validation).
    #[must_use]
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// [`Pebble::issuer_roots_pem`] written to a file in pebble's directory, as
    /// `openssl verify -CAfile` takes it.
    #[must_use]
    pub fn issuer_roots_path(&self) -> PathBuf {
        let path = self.dir.path().join("issuer-roots.pem");
        fs::write(&path, self.issuer_roots_pem()).expect("write pebble's issuer root");
        path
    }

    /// Ends pebble with SIGQUIT, on which the Go runtime prints every goroutine's stack to the
    /// log, and says whether those stacks show the store deadlock ([`STORE_DEADLOCK_FRAME`]).
    /// The stacks stay readable through [`Pebble::log`].
    pub fn quit_and_find_store_deadlock(&mut self) -> bool {
        self.process.quit_with_stack_dump();
        self.log().contains(STORE_DEADLOCK_FRAME)
    }

    /// How many accounts pebble has created since it started.
    #[must_use]
    pub fn accounts_created(&self) -> usize {
        self.log().matches("accounts in memory").count()
    }
}

fn pebble_command(options: &PebbleOptions, config: &Path) -> Command {
    let mut command = Command::new("pebble");
    command.arg("-config").arg(config);
    if let Some(dns) = options.dns_server {
        command.arg("-dnsserver").arg(dns.to_string());
    }
    match options.validation_sleep_seconds {
        Some(seconds) => command.env("PEBBLE_VA_SLEEPTIME", seconds.to_string()),
        None => command.env("PEBBLE_VA_NOSLEEP", "1"),
    };
    command.env("PEBBLE_AUTHZREUSE", options.authz_reuse_percent.to_string());
    if let Some(percent) = options.nonce_reject_percent {
        command.env("PEBBLE_WFE_NONCEREJECT", percent.to_string());
    }
    if options.always_valid {
        command.env("PEBBLE_VA_ALWAYS_VALID", "1");
    }
    command
}

fn config_json(options: &PebbleOptions, dir: &Path, listen: u16, management: u16) -> String {
    let mac_keys: serde_json::Map<String, serde_json::Value> = options
        .eab_keys
        .iter()
        .map(|(kid, key)| (kid.clone(), json!(key)))
        .collect();
    json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{management}"),
        "certificate": dir.join("tls-cert.pem"),
        "privateKey": dir.join("tls-key.pem"),
        // Nothing listens on a fresh free port: HTTP-01 fails unless a test points it somewhere.
        "httpPort": options.http_port.unwrap_or_else(free_port),
        "tlsPort": free_port(),
        "ocspResponderURL": "",
        "externalAccountBindingRequired": !options.eab_keys.is_empty(),
        "externalAccountMACKeys": mac_keys,
    }})
    .to_string()
}

/// A throwaway root and a cert for 127.0.0.1 and localhost it signed (Debian's pebble ships
/// no test certs).
fn write_tls_files(dir: &Path) {
    let mut root = CertificateParams::default();
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.distinguished_name
        .push(rcgen::DnType::CommonName, "rota test pebble TLS root");
    let root_key = KeyPair::generate().expect("root key");
    let root_pem = root
        .clone()
        .self_signed(&root_key)
        .expect("root cert")
        .pem();
    let issuer = Issuer::new(root, root_key);
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("leaf params");
    leaf.subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf_pem = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert").pem();
    fs::write(dir.join(TLS_ROOT), root_pem).expect("write root");
    fs::write(dir.join("tls-cert.pem"), leaf_pem).expect("write cert");
    fs::write(dir.join("tls-key.pem"), leaf_key.serialize_pem()).expect("write key");
}

/// A child process whose output goes to a log file; killed on drop.
pub(crate) struct Process {
    child: Child,
    log: tempfile::NamedTempFile,
    name: &'static str,
}

impl Process {
    pub(crate) fn spawn(mut command: Command, name: &'static str) -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let out = log.reopen().expect("log file");
        let err = log.reopen().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {name} (scripts/test installs its Debian package): {e}")
            });
        Self { child, log, name }
    }

    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Polls `ready` every 50 ms; `Err` when the process exited (a port race), panics when it
    /// is still not ready after [`READY_TIMEOUT`].
    pub(crate) fn wait_until_ready(
        &mut self,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited ({status}):\n{}", self.name, self.log()));
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {READY_TIMEOUT:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGQUIT and waits (bounded) for the process to exit.
    fn quit_with_stack_dump(&mut self) {
        let sent = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        assert!(
            sent.is_ok_and(|s| s.success()),
            "cannot send SIGQUIT to {}",
            self.name
        );
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} still running {READY_TIMEOUT:?} after SIGQUIT",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn retry_start<T>(name: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    for _ in 0..START_ATTEMPTS {
        match start() {
            Ok(started) => return started,
            Err(e) => last = e,
        }
    }
    panic!("{name} did not start in {START_ATTEMPTS} attempts; last: {last}");
}

/// A loopback TCP port free right now (bound, read, released).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// A loopback port free for both UDP and TCP, as a DNS server needs.
pub(crate) fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind a free UDP port");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

/// Runs `curl` with `args`, failing on HTTP errors; the body on success.
fn curl(args: &[&str]) -> Result<String, String> {
    let output = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run curl (Debian package `curl`): {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
