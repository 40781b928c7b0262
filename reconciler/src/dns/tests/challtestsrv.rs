//! `pebble-challtestsrv` (Debian's `pebble` package) as a child process: a real DNS server on
//! a free loopback port whose TXT and CNAME records the tests set through its management API.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

/// A running `pebble-challtestsrv`; killed on drop.
pub(super) struct ChallTestSrv {
    child: Child,
    /// Where it answers DNS (UDP and TCP).
    pub(super) dns: SocketAddr,
    management: Management,
}

/// The management API's address; `Copy` so a background task can change records later.
#[derive(Clone, Copy)]
pub(super) struct Management(SocketAddr);

impl ChallTestSrv {
    /// Starts it with only the DNS server and the management API, and waits until both listen.
    pub(super) fn start() -> Self {
        // A port picked free may be taken before the server binds it; try again then.
        for _ in 0..3 {
            let dns = free_dns_port();
            let management = free_port();
            let mut child = Command::new("pebble-challtestsrv")
                .arg("-dns01")
                .arg(format!("127.0.0.1:{dns}"))
                .arg("-management")
                .arg(format!("127.0.0.1:{management}"))
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run pebble-challtestsrv (apt-get install pebble)");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if [dns, management]
                    .iter()
                    .all(|port| TcpStream::connect(("127.0.0.1", *port)).is_ok())
                {
                    return Self {
                        child,
                        dns: SocketAddr::from(([127, 0, 0, 1], dns)),
                        management: Management(SocketAddr::from(([127, 0, 0, 1], management))),
                    };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("pebble-challtestsrv did not start");
    }

    /// A handle on the management API.
    pub(super) fn management(&self) -> Management {
        self.management
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Management {
    /// Adds `value` to the TXT records of `host` (a fully qualified name, trailing dot).
    pub(super) fn set_txt(self, host: &str, value: &str) {
        self.post("set-txt", &json!({ "host": host, "value": value }));
    }

    /// Makes `host` a CNAME of `target`.
    pub(super) fn set_cname(self, host: &str, target: &str) {
        self.post("set-cname", &json!({ "host": host, "target": target }));
    }

    /// POSTs `body` to `/path` over HTTP/1.0 and checks for a 2xx.
    fn post(self, path: &str, body: &serde_json::Value) {
        let body = body.to_string();
        let mut stream = TcpStream::connect(self.0).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            stream,
            "POST /{path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.0 2") || response.starts_with("HTTP/1.1 2"),
            "/{path} {body}: {response}"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

/// A port free for both UDP and TCP, since the DNS server listens on both.
fn free_dns_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
