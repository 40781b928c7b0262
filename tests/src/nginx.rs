//! The real nginx as a peer: `/usr/sbin/nginx` in the foreground with every path it writes
//! (pid, logs, temp dirs) in its own temp dir, on a free loopback port. It serves a webroot
//! (the HTTP-01 tests point pebble's validation port at it, so the CA fetches challenge files
//! exactly as it would from a production web server) or TLS from a directory of PEM files
//! (rota's `nginx` installer writes them, tests and reloads it with the commands given here).

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pebble::free_port;
use crate::wait_for;

/// Where Debian's `nginx` / `nginx-light` package puts the binary.
const NGINX: &str = "/usr/sbin/nginx";
/// Starts tried when another process took the port between picking and binding it.
const START_ATTEMPTS: usize = 3;

/// A running nginx serving one directory; killed on drop.
pub struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Nginx {
    /// Starts nginx serving `webroot` on a free 127.0.0.1 port and waits until it answers.
    #[must_use]
    pub fn start(webroot: &Path) -> Self {
        Self::start_serving(&Serving::Webroot(webroot.to_owned()))
    }

    /// Starts nginx serving TLS on a free 127.0.0.1 port with `fullchain.pem` and
    /// `privkey.pem` from `cert_dir` (which must hold a cert already: nginx refuses to start
    /// without one), answering every request with `200 ok`.
    #[must_use]
    pub fn start_tls(cert_dir: &Path) -> Self {
        Self::start_serving(&Serving::Tls(cert_dir.to_owned()))
    }

    /// Starts nginx serving `serving` and waits until it accepts connections; tries another
    /// port when the picked one was taken before nginx could bind it.
    fn start_serving(serving: &Serving) -> Self {
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            let mut nginx = Self::spawn(serving);
            let listening = wait_for("nginx to listen", Duration::from_secs(10), || {
                if let Ok(Some(status)) = nginx.child.try_wait() {
                    return Some(Err(status));
                }
                TcpStream::connect(("127.0.0.1", nginx.port)).ok().map(Ok)
            });
            match listening {
                Ok(_) => return nginx,
                Err(status) => last_error = format!("exited with {status}:\n{}", nginx.error_log()),
            }
        }
        panic!("nginx did not start in {START_ATTEMPTS} attempts; last {last_error}");
    }

    fn spawn(serving: &Serving) -> Self {
        let dir = tempfile::tempdir().expect("nginx temp dir");
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, config(dir.path(), port, serving)).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .args(paths_args(dir.path()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {NGINX} (apt-get install nginx-light): {e}"));
        Self { dir, port, child }
    }

    /// The loopback port it listens on.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops (`true`) or resumes (`false`) nginx, master and worker, with SIGSTOP/SIGCONT: while
    /// it is stopped a client's request (pebble validating HTTP-01) hangs, then completes.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let master = self.child.id().to_string();
        let workers = Command::new("pkill").args([signal, "-P", &master]).status();
        let master = Command::new("kill").args([signal, &master]).status();
        assert!(
            workers.is_ok_and(|s| s.success()) && master.is_ok_and(|s| s.success()),
            "cannot send {signal} to nginx"
        );
    }

    /// The PID of nginx's master process, which a reload keeps.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `nginx -t` on this instance's config, as argv (for rota's `test_command`).
    #[must_use]
    pub fn test_command(&self) -> Vec<String> {
        let mut argv = vec![NGINX.to_owned(), "-t".to_owned()];
        argv.extend(paths_args(self.dir.path()));
        argv
    }

    /// `nginx -s reload` for this instance, as argv (for rota's `reload_command`).
    #[must_use]
    pub fn reload_command(&self) -> Vec<String> {
        let mut argv = vec![NGINX.to_owned()];
        argv.extend(paths_args(self.dir.path()));
        argv.extend(["-s".to_owned(), "reload".to_owned()]);
        argv
    }

    /// Adds a directive nginx does not know to its config file, as a bad hand edit would: the
    /// running nginx goes on with the config it loaded, and `nginx -t` fails from now on.
    pub fn break_config(&self) {
        let conf = self.path("nginx.conf");
        let mut text = fs::read_to_string(&conf).expect("read nginx.conf");
        text.push_str("no_such_directive on;\n");
        fs::write(&conf, text).expect("write nginx.conf");
    }

    /// Every request it served so far, one line each: `METHOD PATH STATUS`.
    #[must_use]
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.path("access.log")).unwrap_or_default()
    }

    /// Its error log (startup failures, files it could not serve).
    #[must_use]
    pub fn error_log(&self) -> String {
        fs::read_to_string(self.path("error.log")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers, which would otherwise
        // outlive it.
        crate::terminate(&mut self.child);
    }
}

/// The arguments that point nginx at the instance in `dir`: its prefix, its config, and its
/// error log (which also gets the errors from before the config is read, e.g. a bad -c path).
fn paths_args(dir: &Path) -> Vec<String> {
    let d = dir.display();
    [
        "-p",
        &d.to_string(),
        "-c",
        &format!("{d}/nginx.conf"),
        "-e",
        &format!("{d}/error.log"),
    ]
    .map(str::to_owned)
    .to_vec()
}

/// What the one `server` block serves.
enum Serving {
    /// Plain HTTP from this document root.
    Webroot(PathBuf),
    /// TLS with `fullchain.pem` and `privkey.pem` from this directory; every request gets `200 ok`.
    Tls(PathBuf),
}

/// An nginx.conf that writes nothing outside `dir`; `user root` because the temp dirs are 0700
/// and the tests run as root (nginx ignores the directive when it is not started as root).
fn config(dir: &Path, port: u16, serving: &Serving) -> String {
    let d = dir.display();
    let (ssl, server) = match serving {
        Serving::Webroot(root) => ("", format!("root {};", root.display())),
        Serving::Tls(certs) => (
            " ssl",
            format!(
                "ssl_certificate {c}/fullchain.pem;\n    ssl_certificate_key {c}/privkey.pem;\n    \
                 return 200 ok;",
                c = certs.display()
            ),
        ),
    };
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 512; }}\n\
         http {{\n  log_format line '$request_method $uri $status';\n  \
         access_log {d}/access.log line;\n  client_body_temp_path {d}/client_body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         server {{\n    listen 127.0.0.1:{port}{ssl};\n    server_name _;\n    {server}\n  }}\n}}\n"
    )
}
