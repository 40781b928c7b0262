//! A webhook receiver as a fixture: an axum server on a free port of 127.0.0.1, in a thread
//! of its own (so sync end-to-end tests and async provider tests can both use it), that keeps
//! every request it gets and answers each with the next status of a script (200 once the
//! script runs out), after an optional delay.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The request path.
    pub path: String,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
    /// Its `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// Its body, parsed as JSON (`Null` if it was not JSON).
    pub body: serde_json::Value,
}

#[derive(Default)]
struct Script {
    hooks: Vec<Hook>,
    statuses: VecDeque<StatusCode>,
    delay: Duration,
}

type Shared = Arc<Mutex<Script>>;

fn lock(script: &Shared) -> std::sync::MutexGuard<'_, Script> {
    script.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running receiver; stopped on drop.
pub struct WebhookReceiver {
    addr: SocketAddr,
    script: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Starts a receiver that answers 200 until told otherwise.
    #[must_use]
    pub fn start() -> Self {
        let script = Shared::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, addr) = std::sync::mpsc::channel();
        let state = Arc::clone(&script);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("the receiver's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("a free port");
                bound
                    .send(listener.local_addr().expect("its address"))
                    .expect("the test waits for the address");
                let app = Router::new()
                    .route("/{*path}", post(receive))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the receiver serves");
            });
        });
        let addr = addr.recv().expect("the receiver's address");
        Self {
            addr,
            script,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The URL to configure; its path stands for the secret part of a real webhook URL.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}/incoming/s3cr3t-path", self.addr)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn answer(&self, statuses: &[u16]) {
        lock(&self.script).statuses = statuses
            .iter()
            .map(|s| StatusCode::from_u16(*s).expect("a valid status"))
            .collect();
    }

    /// Every request from now on waits this long before its answer.
    pub fn delay(&self, delay: Duration) {
        lock(&self.script).delay = delay;
    }

    /// Every request so far, in arrival order.
    #[must_use]
    pub fn hooks(&self) -> Vec<Hook> {
        lock(&self.script).hooks.clone()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(
    State(script): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let hook = Hook {
        path: uri.path().to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    };
    let (status, delay) = {
        let mut script = lock(&script);
        script.hooks.push(hook);
        let status = script.statuses.pop_front().unwrap_or(StatusCode::OK);
        (status, script.delay)
    };
    tokio::time::sleep(delay).await;
    status
}
