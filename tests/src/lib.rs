//! Fixtures for the end-to-end tests: a real `rotad` in a temporary directory, the real
//! `rota` CLI pointed at its socket, and helpers that read what landed on disk with the real
//! `openssl`; the peers the ACME tests run against live in their own modules.

pub mod acme_double;
pub mod acme_peers;
pub mod bind;
pub mod browser;
pub mod cloudflare_double;
pub mod dashboard;
pub mod dsm_double;
pub mod haproxy;
pub mod kube_double;
pub mod namecheap_double;
pub mod nginx;
pub mod pebble;
pub mod serve;
pub mod smtp;
pub mod surreal;
pub mod test_chain;
pub mod webhook;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The directory holding the workspace's built binaries (`target/<profile>/`), or
/// `$ROTA_BIN_DIR`: a copy taken right after the build, for a target directory that other
/// checkouts build into too and may overwrite mid-run.
#[must_use]
pub fn bin_dir() -> PathBuf {
    let dir = std::env::var_os("ROTA_BIN_DIR").map_or_else(
        || {
            let exe = std::env::current_exe().expect("test executable path");
            // Test executables live in target/<profile>/deps/.
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_owned()
        },
        PathBuf::from,
    );
    for bin in ["rota", "rotad", "rota-surreal-test-server"] {
        assert!(
            dir.join(bin).exists(),
            "{} is missing: build the binaries first (`cargo build --bins`, as scripts/test does)",
            dir.join(bin).display()
        );
    }
    dir
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `rotad` with its own state directory; killed on drop.
pub struct Rotad {
    /// Holds the config, database, keys, CA and installed certs.
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    /// Extra environment for rotad and every `rota` run (`${VAR}`, `env:VAR` secrets).
    env: Vec<(String, String)>,
}

impl Rotad {
    /// Writes `config` (with `{dir}` replaced by the state directory) and starts rotad on it.
    #[must_use]
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    /// [`Rotad::start`] with `env` set for rotad and for every `rota` it runs (a test cannot
    /// set its own environment: `std::env::set_var` is unsafe, and unsafe code is forbidden).
    #[must_use]
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        fs::write(dir.path().join("rota.yaml"), text).expect("write config");
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut rotad = Self {
            dir,
            child: None,
            env,
        };
        rotad.restart();
        rotad
    }

    /// The config file path.
    #[must_use]
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("rota.yaml")
    }

    /// A path inside the state directory.
    #[must_use]
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Waits (30 s at most) until cert `id`'s `cert.pem` lands in `installed/ID`, the install
    /// directory the tests' configs use, and its renewal has recorded the outcome; returns the
    /// cert's path.
    // Most callers only wait; the path is there for those that read the cert next.
    #[allow(clippy::must_use_candidate)]
    pub fn wait_installed(&self, id: &str) -> PathBuf {
        let cert = self.path(&format!("installed/{id}/cert.pem"));
        // The file lands before the renewal records its outcome: wait for that too, so what
        // a test reads next (conditions, the last renewal) is the installed state.
        wait_for(
            &format!("{id} to be installed and its renewal recorded"),
            Duration::from_secs(30),
            || {
                if !cert.exists() {
                    return None;
                }
                let item = self.cert_json(id);
                let is = |type_: &str| condition(&item, type_)["status"] == "True";
                let settled = condition(&item, "Issuing")["status"] == "False"
                    && (is("Ready") || is("Failing"));
                settled.then_some(())
            },
        );
        cert
    }

    /// The CLI socket.
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.path("rota.sock")
    }

    /// (Re)starts rotad and waits until its socket answers.
    pub fn restart(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("rotad.log"))
            .expect("log file");
        let child = Command::new(bin_dir().join("rotad"))
            .arg("--config")
            .arg(self.config_path())
            // `ROTAD_LOG=debug,hyper_util=trace` (say) when a test needs rotad's whole story.
            .env(
                "RUST_LOG",
                std::env::var("ROTAD_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rotad");
        self.child = Some(child);
        wait_for("rotad's socket", Duration::from_secs(20), || {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("rotad exited with {status}; log:\n{}", self.log());
            }
            self.rota(&["status"]).status.success().then_some(())
        });
    }

    /// Kills rotad with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill rotad");
            child.wait().expect("reap rotad");
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("rotad running");
        let pid = child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        child.wait().expect("reap rotad")
    }

    /// How rotad exited, if it did (it is still reaped on drop otherwise).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the running rotad.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// The PID of the running rotad.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("rotad running").id()
    }

    /// The TCP address rotad bound (`listen_addr` may ask for port 0), from its start line.
    #[must_use]
    pub fn tcp_addr(&self) -> std::net::SocketAddr {
        let log = self.log();
        let addr = log
            .lines()
            .rev()
            .find(|l| l.contains("rotad started"))
            .and_then(|l| l.split("listen_addr=").nth(1))
            .and_then(|rest| rest.split_whitespace().next());
        addr.and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listen_addr in rotad's start line; log:\n{log}"))
    }

    /// rotad's stderr so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("rotad.log")).unwrap_or_default()
    }

    /// Runs the real `rota` CLI against this rotad.
    #[must_use]
    pub fn rota(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("rota"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run rota")
    }

    /// Starts `rota ARGS` against this rotad without waiting for it; each line of its stdout
    /// arrives on the receiver as it is printed (stderr is discarded).
    #[must_use]
    pub fn spawn_rota(&self, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
        let mut child = Command::new(bin_dir().join("rota"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rota");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines_tx.send(line).ok();
            }
        });
        (child, lines)
    }

    /// Runs `rota` and returns stdout, failing the test (with rotad's log) if it fails.
    #[must_use]
    pub fn rota_ok(&self, args: &[&str]) -> String {
        let out = self.rota(args);
        assert!(
            out.status.success(),
            "rota {args:?} failed ({}):\nstdout: {}\nstderr: {}\nrotad log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `rota get certs -o json`, parsed: a `CertificateList` whose `items` are the certs.
    #[must_use]
    pub fn certs_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.rota_ok(&["get", "certs", "-o", "json"])).expect("json")
    }

    /// The cert object of `id` in `rota get certs -o json`.
    #[must_use]
    pub fn cert_json(&self, id: &str) -> serde_json::Value {
        let certs = self.certs_json();
        certs["items"]
            .as_array()
            .and_then(|items| items.iter().find(|c| c["metadata"]["name"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("{id} in {certs}"))
    }
}

/// The condition of type `type_` in a cert object's `status.conditions`, or `null`.
#[must_use]
pub fn condition<'a>(cert: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    cert["status"]["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or(&serde_json::Value::Null)
}

impl Drop for Rotad {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts rotad on `config` (with `{dir}` replaced by a new state directory, which `prepare`
/// may fill first) expecting it to refuse to start; returns the directory and what rotad printed.
#[must_use]
pub fn rotad_refuses(config: &str, prepare: impl FnOnce(&Path)) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    prepare(dir.path());
    let path = dir.path().join("rota.yaml");
    fs::write(
        &path,
        config.replace("{dir}", &dir.path().display().to_string()),
    )
    .expect("write config");
    let mut child = Command::new(bin_dir().join("rotad"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rotad");
    let exited = wait_for("rotad to refuse to start", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    assert!(
        !exited.success(),
        "rotad started although it should have refused"
    );
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("read rotad's stderr");
    }
    (dir, stderr)
}

/// Stops a peer the way its service manager would: SIGTERM, so a master process stops its
/// workers too, then SIGKILL if it is still there after a grace period.
pub(crate) fn terminate(child: &mut Child) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Asserts with `openssl verify` that the `cert.pem` installed in `dir` chains, through the
/// `chain.pem` beside it, to the PEM root(s) in `root`.
pub fn assert_chain_verifies(root: &Path, dir: &Path) {
    let out = openssl(&[
        "verify",
        "-CAfile",
        &root.display().to_string(),
        "-untrusted",
        &dir.join("chain.pem").display().to_string(),
        &dir.join("cert.pem").display().to_string(),
    ]);
    assert!(
        out.trim_end().ends_with(": OK"),
        "openssl verify {}: {out}",
        dir.display()
    );
}

/// Runs `openssl` with `args` and returns stdout; panics with stderr if it fails.
#[must_use]
pub fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The subjectAltName extension of the certificate at `path`, as openssl prints it.
#[must_use]
pub fn sans_of(path: &Path) -> String {
    openssl(&[
        "x509",
        "-in",
        &path.display().to_string(),
        "-noout",
        "-ext",
        "subjectAltName",
    ])
}

/// The serial of the certificate at `path`, as openssl prints it.
#[must_use]
pub fn serial_of(path: &Path) -> String {
    openssl(&[
        "x509",
        "-in",
        &path.display().to_string(),
        "-noout",
        "-serial",
    ])
}

/// The serial of the certificate at `path` as lowercase hex, the way CAs name it.
#[must_use]
pub fn serial_hex(path: &Path) -> String {
    let serial = serial_of(path);
    serial.trim().trim_start_matches("serial=").to_lowercase()
}

/// The serial (lowercase hex, as [`serial_hex`] gives it) of the cert a TLS server at `addr`
/// presents, read with the real `openssl s_client`; with `sni` as the server name, and, when
/// `ca` is given, only if the cert chains to the root(s) there.
#[must_use]
pub fn served_serial(addr: std::net::SocketAddr, sni: Option<&str>, ca: Option<&Path>) -> String {
    let mut command = Command::new("openssl");
    command.args(["s_client", "-connect", &addr.to_string(), "-showcerts"]);
    if let Some(sni) = sni {
        command.args(["-servername", sni]);
    }
    if let Some(ca) = ca {
        command.arg("-CAfile").arg(ca).arg("-verify_return_error");
    }
    let out = command
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let verified = ca.is_none() || text.contains("Verify return code: 0 (ok)");
    assert!(
        out.status.success() && verified,
        "handshake with {addr} failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem_start = text.find("-----BEGIN CERTIFICATE-----").expect("a cert");
    let pem_end = text[pem_start..]
        .find("-----END CERTIFICATE-----")
        .map(|i| pem_start + i + "-----END CERTIFICATE-----".len())
        .expect("a whole cert");
    let leaf = tempfile::NamedTempFile::new().expect("temp file");
    fs::write(leaf.path(), &text[pem_start..pem_end]).expect("write the served leaf");
    serial_hex(leaf.path())
}

/// The public key of the certificate at `path`, PEM.
#[must_use]
pub fn cert_pubkey(path: &Path) -> String {
    openssl(&[
        "x509",
        "-in",
        &path.display().to_string(),
        "-noout",
        "-pubkey",
    ])
}

/// The public key of the private key at `path`, PEM.
#[must_use]
pub fn key_pubkey(path: &Path) -> String {
    openssl(&["pkey", "-in", &path.display().to_string(), "-pubout"])
}

/// The file's permission bits.
#[must_use]
pub fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}
