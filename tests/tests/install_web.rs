//! The `nginx` and `haproxy` installers end to end: the real rotad renews on its local CA and
//! installs into a real nginx and a real HAProxy; what they serve is read with `openssl
//! s_client`, never from what rota wrote.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rota_e2e::haproxy::Haproxy;
use rota_e2e::nginx::Nginx;
use rota_e2e::{Rotad, condition, serial_hex, served_serial, wait_for};

const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an nginx reload may take to reach every worker.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);
const DOMAINS: [&str; 2] = ["web.rota.test", "www.rota.test"];

/// A config with one local-CA cert `web` for [`DOMAINS`], installed by `install` (the YAML
/// mapping's lines, indented for the `install:` block).
fn config(install: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n\
         local_ca:\n  directory: {{dir}}/ca\n  validity_days: 90\n\
         certs:\n  - id: web\n    domains: [{domains}]\n    key_path: {{dir}}/keys/web.key\n    \
         ca: {{ kind: local }}\n    install:\n{install}",
        domains = DOMAINS.join(", ")
    )
}

/// `argv` as a YAML flow list (JSON strings are valid YAML scalars).
fn yaml_list(argv: &[String]) -> String {
    serde_json::to_string(argv).expect("argv as JSON")
}

/// A self-signed placeholder for `web`, as an operator puts in place so the server can start
/// before rota first installs: (cert PEM, key PEM).
fn placeholder() -> (String, String) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(DOMAINS.map(str::to_owned).to_vec()).expect("params");
    let cert = params.self_signed(&key).expect("self-signed cert");
    (cert.pem(), key.serialize_pem())
}

/// Waits until `web` is Ready, and returns the serial rotad installed in `cert_dir`.
fn wait_ready(rotad: &Rotad, cert_dir: &Path) -> String {
    wait_for("web to be installed and Ready", ISSUE_TIMEOUT, || {
        let certs = rotad.certs_json();
        (condition(&certs["items"][0], "Ready")["status"] == "True").then_some(())
    });
    serial_hex(&cert_dir.join("cert.pem"))
}

/// The serial served for each domain, in `DOMAINS` order.
fn served_serials(port: u16) -> Vec<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    DOMAINS
        .iter()
        .map(|sni| served_serial(addr, Some(sni), None))
        .collect()
}

/// The serial served for every domain, which must be the same for all.
fn served_for_every_domain(port: u16) -> String {
    let serials = served_serials(port);
    assert!(serials.iter().all(|s| *s == serials[0]), "{serials:?}");
    serials[0].clone()
}

/// Waits until nginx serves `serial` for every domain. A reload is asynchronous: a worker of
/// the old generation may still accept a connection for a moment after rotad's own check
/// saw the new cert, so one handshake right after the install proves nothing either way.
fn nginx_comes_to_serve(port: u16, serial: &str, what: &str) {
    wait_for(what, RELOAD_TIMEOUT, || {
        served_serials(port)
            .iter()
            .all(|s| s == serial)
            .then_some(())
    });
}

#[test]
fn nginx_serves_each_renewal_and_keeps_the_old_cert_when_its_config_is_broken() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = placeholder();
    std::fs::write(certs.path().join("fullchain.pem"), cert).unwrap();
    std::fs::write(certs.path().join("privkey.pem"), key).unwrap();
    let nginx = Nginx::start_tls(certs.path());
    let placeholder_serial = served_for_every_domain(nginx.port());

    let rotad = Rotad::start(&config(&format!(
        "      kind: nginx\n      directory: {dir}\n      test_command: {test}\n      \
         reload_command: {reload}\n      verify_address: 127.0.0.1:{port}\n",
        dir = certs.path().display(),
        test = yaml_list(&nginx.test_command()),
        reload = yaml_list(&nginx.reload_command()),
        port = nginx.port(),
    )));
    let first = wait_ready(&rotad, certs.path());
    assert_ne!(first, placeholder_serial);
    nginx_comes_to_serve(nginx.port(), &first, "the first install to be served");

    let master = nginx.pid();
    let _ = rotad.rota_ok(&["renew", "web"]);
    let second = serial_hex(&certs.path().join("cert.pem"));
    assert_ne!(second, first, "a renewal issues a new cert");
    nginx_comes_to_serve(nginx.port(), &second, "the renewal to be served");
    assert_eq!(nginx.pid(), master, "reloaded, not restarted");

    nginx.break_config();
    let renew = rotad.rota(&["renew", "web"]);
    assert!(
        !renew.status.success(),
        "the install must fail with a broken nginx config"
    );
    let certs_json = rotad.certs_json();
    let failing = condition(&certs_json["items"][0], "Failing");
    assert_eq!(failing["status"], "True", "{certs_json}");
    assert_eq!(failing["reason"], "InstallFailed", "{certs_json}");
    let message = failing["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("-t") && message.contains("no_such_directive"),
        "the message names the test command and quotes nginx: {message}"
    );
    assert_eq!(
        served_for_every_domain(nginx.port()),
        second,
        "nginx keeps serving the old cert"
    );
    assert_eq!(
        serial_hex(&certs.path().join("cert.pem")),
        second,
        "the old files are back on disk, so nginx's next start serves them too"
    );
}

#[test]
fn haproxy_swaps_the_cert_without_a_reload_and_keeps_open_connections() {
    let crt_dir = tempfile::tempdir().unwrap();
    let storage = crt_dir.path().join("web.pem");
    let (cert, key) = placeholder();
    std::fs::write(&storage, format!("{cert}{key}")).unwrap();
    let mut haproxy = Haproxy::start(&storage);
    let pid = haproxy.pid();
    assert_eq!(haproxy.reported_pid(), pid);

    let rotad = Rotad::start(&config(&format!(
        "      kind: haproxy\n      directory: {{dir}}/installed/web\n      socket_path: {socket}\n      \
         cert_storage_name: {storage}\n      verify_address: 127.0.0.1:{port}\n",
        socket = haproxy.socket().display(),
        storage = storage.display(),
        port = haproxy.port(),
    )));
    let installed = rotad.path("installed/web");
    let first = wait_ready(&rotad, &installed);
    assert_eq!(
        served_for_every_domain(haproxy.port()),
        first,
        "the first install is served"
    );

    let mut open = KeptConnection::open(haproxy.port(), DOMAINS[0]);
    open.get();
    let _ = rotad.rota_ok(&["renew", "web"]);
    let second = serial_hex(&installed.join("cert.pem"));
    assert_ne!(second, first, "a renewal issues a new cert");
    assert_eq!(
        served_for_every_domain(haproxy.port()),
        second,
        "swapped in"
    );
    open.get();
    assert_eq!(
        haproxy.pid(),
        pid,
        "the same process serves: no reload, no restart"
    );
    assert_eq!(haproxy.reported_pid(), pid);
    assert_eq!(
        serial_hex(&storage),
        second,
        "the combined PEM HAProxy loads at start is the new cert too"
    );
    let transactions = haproxy.admin("show ssl cert\n");
    assert!(
        !transactions.contains('*'),
        "no transaction left open: {transactions}"
    );
}

#[test]
fn a_cert_haproxy_refuses_fails_the_install_and_changes_nothing() {
    let crt_dir = tempfile::tempdir().unwrap();
    let loaded = crt_dir.path().join("web.pem");
    let (cert, key) = placeholder();
    std::fs::write(&loaded, format!("{cert}{key}")).unwrap();
    let haproxy = Haproxy::start(&loaded);
    let addr = SocketAddr::from(([127, 0, 0, 1], haproxy.port()));
    let placeholder_serial = served_serial(addr, Some(DOMAINS[0]), None);

    // A storage name HAProxy never loaded, as a typo in the config would give.
    let unknown = crt_dir.path().join("other.pem");
    let rotad = Rotad::start(&config(&format!(
        "      kind: haproxy\n      directory: {{dir}}/installed/web\n      socket_path: {socket}\n      \
         cert_storage_name: {unknown}\n",
        socket = haproxy.socket().display(),
        unknown = unknown.display(),
    )));
    let failing = wait_for("the install to fail", ISSUE_TIMEOUT, || {
        let certs = rotad.certs_json();
        let failing = condition(&certs["items"][0], "Failing").clone();
        (failing["status"] == "True").then_some(failing)
    });
    assert_eq!(failing["reason"], "InstallFailed", "{failing}");
    let message = failing["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not referenced by the configuration")
            && message.contains("`cert_storage_name` must be exactly the path"),
        "HAProxy's words and what to do: {message}"
    );
    assert_eq!(
        served_serial(addr, Some(DOMAINS[0]), None),
        placeholder_serial
    );
    assert!(
        !unknown.exists(),
        "the files of a refused first install are removed"
    );
    assert!(!rotad.path("installed/web/cert.pem").exists());
    let transactions = haproxy.admin("show ssl cert\n");
    assert!(
        !transactions.contains('*'),
        "the transaction was aborted: {transactions}"
    );
}

/// A TLS connection kept open by `openssl s_client`, on which HTTP requests are sent one by one.
struct KeptConnection {
    client: Child,
    replies: mpsc::Receiver<Vec<u8>>,
}

impl KeptConnection {
    fn open(port: u16, sni: &str) -> Self {
        let mut client = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-connect",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["-servername", sni])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_client");
        let mut stdout = client.stdout.take().expect("s_client's stdout");
        let (send, replies) = mpsc::channel();
        std::thread::spawn(move || {
            let mut chunk = [0; 4096];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 || send.send(chunk[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Self { client, replies }
    }

    /// Sends a request on the open connection and waits for HAProxy's `200 ok`.
    fn get(&mut self) {
        let stdin = self.client.stdin.as_mut().expect("s_client's stdin");
        stdin
            .write_all(b"GET / HTTP/1.1\r\nHost: web.rota.test\r\n\r\n")
            .expect("send a request on the open connection");
        stdin.flush().expect("flush");
        let mut reply = Vec::new();
        while !reply.ends_with(b"\r\n\r\nok") {
            let chunk = self
                .replies
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| {
                    panic!(
                        "no answer on the open connection ({e}); got {:?}",
                        String::from_utf8_lossy(&reply)
                    )
                });
            reply.extend(chunk);
        }
        assert!(
            reply.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&reply)
        );
    }
}

impl Drop for KeptConnection {
    fn drop(&mut self) {
        let _ = self.client.kill();
        let _ = self.client.wait();
    }
}
