//! TLS on the TCP listener with a cert rota manages (`daemon.tls.cert_id`), so the bearer token
//! never crosses the network in clear text. The cert is read from its install directory
//! (certbot's `fullchain.pem` and `privkey.pem`) and read again whenever `fullchain.pem`
//! changes, so a renewal is served from the next handshake on, without a restart. Until the
//! cert is first installed every handshake is refused: rotad never falls back to plain HTTP on
//! a listener configured for TLS.

use std::fmt;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use rota_api::CertId;

/// A client that has not finished its handshake by then is dropped, so slow clients cannot
/// pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// The cert the listener presents, re-read from disk when it is renewed.
pub(crate) struct ServedCert {
    id: CertId,
    dir: PathBuf,
    provider: Arc<CryptoProvider>,
    state: Mutex<Served>,
}

/// What was last loaded, and the last failure (logged once, not at every handshake).
#[derive(Default)]
struct Served {
    current: Option<(FileStamp, Arc<CertifiedKey>)>,
    last_error: Option<String>,
}

/// Identifies one version of `fullchain.pem`: rota replaces it by rename, so a renewal gives
/// it a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl ServedCert {
    /// Serves cert `id` from its install directory `dir`.
    pub(crate) fn new(id: CertId, dir: PathBuf) -> Self {
        Self {
            id,
            dir,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            state: Mutex::new(Served::default()),
        }
    }

    /// The cert to present now, reloaded first if `fullchain.pem` changed. A new version that
    /// does not load (say, read between the writes of a key change) leaves the previous one in
    /// service until the next handshake tries again. The files are small and local, so this
    /// runs inline in the handshake.
    fn current(&self) -> Option<Arc<CertifiedKey>> {
        let fullchain = self.dir.join("fullchain.pem");
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let loaded = std::fs::metadata(&fullchain)
            .map_err(|e| format!("cannot read {}: {e}", fullchain.display()))
            .and_then(|meta| {
                let stamp = FileStamp {
                    inode: meta.ino(),
                    len: meta.len(),
                    modified: meta.modified().ok(),
                };
                match &state.current {
                    Some((seen, key)) if *seen == stamp => Ok((stamp, Arc::clone(key))),
                    _ => self.load().map(|key| (stamp, key)),
                }
            });
        match loaded {
            Ok((stamp, key)) => {
                if state
                    .current
                    .as_ref()
                    .is_none_or(|(seen, _)| *seen != stamp)
                {
                    tracing::info!(cert_id = %self.id, dir = %self.dir.display(), "TCP listener now serves the installed cert");
                }
                state.current = Some((stamp, key));
                state.last_error = None;
            }
            Err(error) => {
                if state.last_error.as_ref() != Some(&error) {
                    tracing::warn!(cert_id = %self.id, %error, "the TLS cert cannot be loaded; handshakes are refused until it is installed");
                    state.last_error = Some(error);
                }
            }
        }
        state.current.as_ref().map(|(_, key)| Arc::clone(key))
    }

    fn load(&self) -> Result<Arc<CertifiedKey>, String> {
        let fullchain = self.dir.join("fullchain.pem");
        let privkey = self.dir.join("privkey.pem");
        let chain = CertificateDer::pem_file_iter(&fullchain)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| format!("cannot read {}: {e}", fullchain.display()))?;
        if chain.is_empty() {
            return Err(format!("{} holds no certificate", fullchain.display()));
        }
        // The key's bytes never appear in an error: only the file and what kind of failure.
        let key = PrivateKeyDer::from_pem_file(&privkey)
            .map_err(|e| format!("cannot read the private key {}: {e}", privkey.display()))?;
        CertifiedKey::from_der(chain, key, &self.provider)
            .map(Arc::new)
            .map_err(|e| {
                format!(
                    "{} does not match {}: {e}",
                    privkey.display(),
                    fullchain.display()
                )
            })
    }
}

impl fmt::Debug for ServedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServedCert")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// A TCP listener that hands the server connections whose TLS handshake is done; handshakes
/// run in their own tasks, so one slow client does not hold up the others.
pub(crate) struct TlsListener {
    local: SocketAddr,
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor_task: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp`, presenting `served`.
    pub(crate) fn start(tcp: TcpListener, served: ServedCert) -> anyhow::Result<Self> {
        let local = tcp.local_addr()?;
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&served.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(served));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        let acceptor_task = tokio::spawn(accept_loop(tcp, acceptor, tx));
        Ok(Self {
            local,
            accepted,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "accepting a TCP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The acceptor task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed cert and its key, as PEM.
    fn issued() -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec!["a.test".to_owned()]).unwrap();
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    fn served_leaf(served: &ServedCert) -> Option<Vec<u8>> {
        served
            .current()
            .map(|key| key.end_entity_cert().unwrap().as_ref().to_vec())
    }

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }

    /// Writes like the installer does: a new file renamed over the old one.
    fn install(dir: &std::path::Path, name: &str, pem: &str) {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }

    #[test]
    fn nothing_is_served_before_the_install_and_a_renewal_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let served = ServedCert::new(CertId::new("web").unwrap(), dir.path().to_owned());
        assert!(
            served.current().is_none(),
            "no cert yet: handshakes refused"
        );

        let (first, first_key) = issued();
        install(dir.path(), "privkey.pem", &first_key);
        install(dir.path(), "fullchain.pem", &first);
        assert_eq!(served_leaf(&served), Some(der(&first)));

        // A new key's chain lands before its key: the old pair stays in service.
        let (second, second_key) = issued();
        install(dir.path(), "fullchain.pem", &second);
        assert_eq!(
            served_leaf(&served),
            Some(der(&first)),
            "mismatched pair not served"
        );
        install(dir.path(), "privkey.pem", &second_key);
        assert_eq!(
            served_leaf(&served),
            Some(der(&second)),
            "the new pair once complete"
        );
    }
}
