//! Serves an axum router over plain HTTP on a free loopback port, on its own runtime, for the
//! vendor doubles that rota reaches over `http://` (a kubeconfig's `server`, a DSM on port 5000).

use std::net::SocketAddr;

use tokio::sync::oneshot;

/// A router being served; stopped on drop.
pub struct Served {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts serving `app` and returns once the port listens.
    #[must_use]
    pub fn http(app: axum::Router) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a double");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("double runtime");
            runtime.block_on(async move {
                let tcp = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(tcp, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve a double");
            });
        });
        Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
