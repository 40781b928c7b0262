//! Fixtures for the dashboard tests: HTTP over rotad's TCP listener with curl (as a browser
//! or an attacker would send it, cookies and all), a login that returns the session cookie
//! and the page's CSRF token, and a WebSocket watcher that records every message `/ws` sends.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

/// What an HTTP call answered.
#[derive(Debug, Clone)]
pub struct Page {
    /// The status (0 when no HTTP answer came).
    pub status: u16,
    /// The response headers, as received.
    pub headers: String,
    /// The body.
    pub body: String,
}

impl Page {
    /// The value of the first header `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// `method path` on rotad's TCP listener at `addr` with extra headers and a form body.
#[must_use]
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[String],
    form: Option<&str>,
) -> Page {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-D", "-", "-o", "-", "-X", method]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(body) = form {
        cmd.args([
            "-H",
            "content-type: application/x-www-form-urlencoded",
            "--data-binary",
            body,
        ]);
    }
    let out = cmd
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Page {
        status,
        headers: head.to_owned(),
        body: body.to_owned(),
    }
}

/// Logs in with `token`; returns the `Cookie:` header of the session.
#[must_use]
pub fn login(addr: SocketAddr, token: &str) -> String {
    let page = http(addr, "POST", "/login", &[], Some(&format!("token={token}")));
    assert_eq!(page.status, 303, "login accepted: {page:?}");
    let set = page.header("set-cookie").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} in {set}");
    }
    let pair = set.split(';').next().expect("name=value");
    format!("Cookie: {pair}")
}

/// The CSRF token in the first form of `html`.
#[must_use]
pub fn csrf_in(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..].split('"').next().expect("token").to_owned()
}

/// A WebSocket client on `/ws` that records every text message, on its own thread.
pub struct LiveWatch {
    messages: Arc<Mutex<Vec<String>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveWatch {
    /// Connects to `ws://addr{path}` with `headers` (a session cookie, say) and waits until
    /// the connection is open.
    #[must_use]
    pub fn start(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}{path}")
            .into_client_request()
            .expect("ws request");
        for (k, v) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                v.parse().expect("header value"),
            );
        }
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let seen = Arc::clone(&messages);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let (mut socket, _) = tokio_tungstenite::connect_async(request)
                    .await
                    .expect("WebSocket connects");
                opened_tx.send(()).ok();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        message = socket.next() => match message {
                            Some(Ok(m)) if m.is_text() => {
                                let text = m.into_text().expect("text").to_string();
                                seen.lock().expect("lock").push(text);
                            }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
            });
        });
        opened
            .recv_timeout(Duration::from_secs(10))
            .expect("the WebSocket opened");
        Self {
            messages,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Every message so far.
    #[must_use]
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().expect("lock").clone()
    }
}

impl Drop for LiveWatch {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}
