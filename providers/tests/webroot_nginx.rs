//! `dcv: { kind: webroot }` against the real nginx (Debian's `nginx-light`): what the solver
//! publishes is what a web server serves at `/.well-known/acme-challenge/<token>`, byte for
//! byte, and a removed challenge is a 404.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_api::config::{DcvSpec, WebrootDcv};
use rota_api::{BackendFactory, DcvBackend, DcvChallenge};
use rota_providers::Providers;

/// Where Debian's `nginx` / `nginx-light` package puts the binary.
const NGINX: &str = "/usr/sbin/nginx";

/// nginx in the foreground serving one webroot on a free loopback port; killed on drop.
struct Nginx {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Nginx {
    /// Starts nginx serving `webroot` and waits until it accepts connections.
    fn start(webroot: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("nginx.conf");
        fs::write(&conf, config(dir.path(), webroot, port)).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf)
            // Where errors go before the config's `error_log` is read.
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {NGINX} (apt-get install nginx-light): {e}"));
        let mut nginx = Self { dir, port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// `GET path` over HTTP/1.0; the status code and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: a.test\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        (status, body.to_owned())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL on the master; its workers exit when they see the parent gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A config writing nothing outside `dir`. `user root`: the tests run as root, and nginx's
/// default `nobody` workers could not read the 0700 temp dirs the webroot lives in (the
/// directive is ignored when nginx is not started as root).
fn config(dir: &Path, webroot: &Path, port: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/client_body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
         server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
        root = webroot.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_serves_the_published_key_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let webroot = dir.path().join("www");
    fs::create_dir(&webroot).unwrap();
    let nginx = Nginx::start(&webroot);

    let config =
        rota_api::config::load_str(&dir.path().join("rota.yaml"), "certs: []\n".to_owned())
            .unwrap()
            .config;
    let spec = DcvSpec::Webroot(WebrootDcv {
        directory: webroot.clone(),
    });
    let dcv: Arc<dyn DcvBackend> = Providers::new().dcv(&config, &spec).unwrap();
    let token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    let key_authorization = format!("{token}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI");
    let challenge = DcvChallenge::Http01 {
        domain: "a.test".into(),
        token: token.into(),
        key_authorization: key_authorization.clone(),
    };
    let url = format!("/.well-known/acme-challenge/{token}");

    assert_eq!(nginx.get(&url).0, 404, "nothing published yet");
    dcv.publish(&challenge).await.unwrap();
    let (status, body) = nginx.get(&url);
    assert_eq!(status, 200, "{}", nginx.error_log());
    assert_eq!(body, key_authorization);

    dcv.remove(&challenge).await.unwrap();
    assert_eq!(nginx.get(&url).0, 404);
}
