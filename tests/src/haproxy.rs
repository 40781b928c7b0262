//! The real HAProxy as a peer: `/usr/sbin/haproxy` in the foreground (one process, no master)
//! with an admin socket in its own temp dir, terminating TLS on a free loopback port with the
//! combined PEM at a path the test chooses (rota's `cert_storage_name`), and answering every
//! HTTP request with `200 ok`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pebble::free_port;
use crate::wait_for;

/// Where Debian's `haproxy` package puts the binary.
const HAPROXY: &str = "/usr/sbin/haproxy";
/// Starts tried when another process took the port between picking and binding it.
const START_ATTEMPTS: usize = 3;

/// A running HAProxy; stopped on drop.
pub struct Haproxy {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Haproxy {
    /// Starts HAProxy serving TLS with the combined PEM at `crt` (which must exist: HAProxy
    /// refuses to start without it) and waits until both the port and the admin socket answer.
    #[must_use]
    pub fn start(crt: &Path) -> Self {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut haproxy = Self::spawn(crt);
            let ready = wait_for("haproxy to listen", Duration::from_secs(10), || {
                if let Ok(Some(status)) = haproxy.child.try_wait() {
                    return Some(Err(status));
                }
                let up = TcpStream::connect(("127.0.0.1", haproxy.port)).is_ok()
                    && UnixStream::connect(haproxy.socket()).is_ok();
                up.then_some(Ok(()))
            });
            match ready {
                Ok(()) => return haproxy,
                Err(status) => last_error = format!("exited with {status}:\n{}", haproxy.log()),
            }
        }
        panic!("haproxy did not start in {START_ATTEMPTS} attempts; last {last_error}");
    }

    fn spawn(crt: &Path) -> Self {
        let dir = tempfile::tempdir().expect("haproxy temp dir");
        let port = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        fs::write(&cfg, config(dir.path(), crt, port)).expect("write haproxy.cfg");
        let log = fs::File::create(dir.path().join("haproxy.log")).expect("haproxy log");
        let child = Command::new(HAPROXY)
            // -db: stay in the foreground, one process, so its PID is the child's.
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {HAPROXY} (apt-get install haproxy): {e}"));
        Self { dir, port, child }
    }

    /// The loopback port it serves TLS on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its admin socket (`level admin`).
    #[must_use]
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The PID of the process the fixture started, which must still be running.
    #[must_use]
    pub fn pid(&mut self) -> u32 {
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "haproxy exited; log:\n{}",
            self.log()
        );
        self.child.id()
    }

    /// The `Pid:` HAProxy itself reports on its admin socket (`show info`).
    #[must_use]
    pub fn reported_pid(&self) -> u32 {
        let info = self.admin("show info\n");
        info.lines()
            .find_map(|l| l.strip_prefix("Pid: "))
            .and_then(|pid| pid.trim().parse().ok())
            .unwrap_or_else(|| panic!("no Pid in `show info`:\n{info}"))
    }

    /// Sends one command to the admin socket and returns the answer.
    #[must_use]
    pub fn admin(&self, command: &str) -> String {
        let mut socket = UnixStream::connect(self.socket()).expect("connect to haproxy's socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("socket timeout");
        socket
            .write_all(command.as_bytes())
            .expect("send to haproxy");
        let mut answer = String::new();
        socket
            .read_to_string(&mut answer)
            .expect("haproxy's answer");
        answer
    }

    /// What HAProxy printed so far.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        crate::terminate(&mut self.child);
    }
}

/// A haproxy.cfg whose socket lives in `dir`; HTTP mode so a kept-alive connection can send
/// one request before a cert swap and another after it.
fn config(dir: &Path, crt: &Path, port: u16) -> String {
    format!(
        "global\n  stats socket {socket} mode 600 level admin\n  \
         tune.ssl.default-dh-param 2048\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  \
         timeout server 60s\n  timeout http-keep-alive 60s\n\
         frontend tls\n  bind 127.0.0.1:{port} ssl crt {crt}\n  \
         http-request return status 200 content-type text/plain string ok\n",
        socket = dir.join("admin.sock").display(),
        crt = crt.display(),
    )
}
