//! Serves an axum router for the vendor doubles on a free loopback port, on its own runtime:
//! over plain HTTP (DSM's port 5000), or over TLS with a certificate for `127.0.0.1` and
//! `localhost` signed by a root the test makes ([`TlsListener`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, Issuer, KeyPair};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// A router being served; stopped on drop.
pub struct Served {
    addr: SocketAddr,
    scheme: &'static str,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Served {
    /// Starts serving `app` over plain HTTP and returns once the port listens.
    #[must_use]
    pub fn http(app: axum::Router) -> Self {
        Self::start(app, None)
    }

    /// Starts serving `app` over TLS with a certificate `root` signs.
    #[must_use]
    pub fn https(app: axum::Router, root: &Issuer<'static, KeyPair>) -> Self {
        Self::start(app, Some(tls_acceptor(root)))
    }

    fn start(app: axum::Router, tls: Option<TlsAcceptor>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a double");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("double runtime");
            runtime.block_on(async move {
                let tcp = TcpListener::from_std(listener).expect("tokio listener");
                let stopped = async move {
                    let _ = stopped.await;
                };
                let served = match tls {
                    Some(tls) => {
                        axum::serve(TlsListener { tcp, tls }, app)
                            .with_graceful_shutdown(stopped)
                            .await
                    }
                    None => axum::serve(tcp, app).with_graceful_shutdown(stopped).await,
                };
                served.expect("serve a double");
            });
        });
        Self {
            addr,
            scheme,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>` or `https://…`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
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

/// Accepts TCP and completes the TLS handshake before handing the stream to axum.
pub struct TlsListener {
    /// Where connections arrive.
    pub tcp: TcpListener,
    /// The handshake, with the double's certificate.
    pub tls: TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.tcp.accept().await else {
                // Out of file descriptors and the like: give the system a moment.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            let handshake = self.tls.accept(stream);
            if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), handshake).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A TLS acceptor presenting a certificate for `127.0.0.1` and `localhost` that `root` signs.
#[must_use]
pub fn tls_acceptor(root: &Issuer<'static, KeyPair>) -> TlsAcceptor {
    let key = KeyPair::generate().expect("TLS key");
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("TLS params");
    let cert = params.signed_by(&key, root).expect("TLS cert");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("TLS config");
    TlsAcceptor::from(Arc::new(config))
}
