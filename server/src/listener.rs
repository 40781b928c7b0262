//! The TCP listener and the guard settings it was bound with. Whether a token is required,
//! where it is read from, which Host headers are served and which cert TLS presents are
//! captured once, at bind time: the running config may change under a hot reload, but the
//! bound listener never becomes weaker than it was when it started (decision 2).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use rota_api::SecretSource;
use rota_api::config::{Config, DaemonConfig};

use crate::dashboard::session::Sessions;
use crate::tls::{ServedCert, TlsListener};

/// How the bound TCP listener guards requests; fixed for the life of the process.
#[derive(Debug)]
pub(crate) struct ListenerSecurity {
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// Where the bearer token is read (at every request, so a rotated file is picked up);
    /// `None` makes TCP read-only.
    pub token: Option<SecretSource>,
    /// Reads need the token too: a listener reachable from other hosts, with a token set.
    pub reads_need_token: bool,
    /// `daemon.allowed_hosts`, lower-cased.
    allowed_hosts: Vec<String>,
    /// Whether it serves HTTPS (the session cookie is then `Secure`).
    pub tls: bool,
    /// The dashboard's logged-in sessions on this listener.
    pub sessions: Sessions,
}

impl ListenerSecurity {
    /// The guard settings of a listener bound to `addr` under `config`.
    pub(crate) fn capture(daemon: &DaemonConfig, addr: SocketAddr) -> Self {
        Self {
            addr,
            token: daemon.api_token_file.clone(),
            reads_need_token: daemon.api_token_file.is_some() && !addr.ip().is_loopback(),
            allowed_hosts: daemon
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            tls: daemon.tls.is_some(),
            sessions: Sessions::default(),
        }
    }

    /// Whether a request whose Host header is `host` is meant for this listener: the bound
    /// address, a loopback name or address, or a name in `daemon.allowed_hosts`. A port, when
    /// given, must be the bound one, except for allowed hosts (a reverse proxy in front of
    /// rotad forwards its own public port).
    pub(crate) fn serves_host(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let name = name.to_ascii_lowercase();
        if self.allowed_hosts.contains(&name) {
            return true;
        }
        let bound_ip = self.addr.ip();
        let is_loopback_name = name == "localhost"
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || (ip == bound_ip && !ip.is_unspecified()));
        is_loopback_name && port.is_none_or(|p| p == self.addr.port())
    }
}

/// `name[:port]` or `[v6]:port` → the name (without brackets) and the port; `None` when the
/// port is not a number.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        (inside, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    (!name.is_empty()).then_some((name, port))
}

/// The bound TCP listener, plain or TLS.
pub(crate) enum ApiListener {
    /// Plain HTTP.
    Plain(TcpListener),
    /// HTTPS with a cert rota manages.
    Tls(TlsListener),
}

impl ApiListener {
    /// Binds `daemon.listen_addr`, with TLS when `daemon.tls` names a cert; returns the
    /// listener and the guard settings captured for it.
    pub(crate) async fn bind(config: &Config) -> anyhow::Result<(Self, Arc<ListenerSecurity>)> {
        let addr = config.daemon.listen_addr;
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding daemon.listen_addr {addr}"))?;
        let bound = tcp.local_addr().unwrap_or(addr);
        let security = Arc::new(ListenerSecurity::capture(&config.daemon, bound));
        let listener = match &config.daemon.tls {
            None => Self::Plain(tcp),
            // Validation guarantees the cert; should it be missing, refuse to start rather
            // than serve in clear text what was meant to be encrypted.
            Some(tls) => {
                let dir = config
                    .certs
                    .iter()
                    .find(|c| c.id == tls.cert_id)
                    .and_then(|c| c.install.pem_directory())
                    .with_context(|| {
                        format!(
                            "daemon.tls.cert_id `{}` names no cert installed as PEM files",
                            tls.cert_id
                        )
                    })?;
                let served = ServedCert::new(tls.cert_id.clone(), dir.to_owned());
                Self::Tls(TlsListener::start(tcp, served)?)
            }
        };
        Ok((listener, security))
    }

    /// `https` or `http`, for the start-up log line.
    pub(crate) fn scheme(&self) -> &'static str {
        match self {
            Self::Plain(_) => "http",
            Self::Tls(_) => "https",
        }
    }

    /// Serves `app` until `stop` is cancelled.
    pub(crate) async fn serve(self, app: Router, stop: CancellationToken) -> std::io::Result<()> {
        let stopped = async move { stop.cancelled().await };
        match self {
            Self::Plain(tcp) => axum::serve(tcp, app).with_graceful_shutdown(stopped).await,
            Self::Tls(tls) => axum::serve(tls, app).with_graceful_shutdown(stopped).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(listen: &str, allowed: &[&str]) -> ListenerSecurity {
        let daemon = DaemonConfig {
            allowed_hosts: allowed.iter().map(|h| (*h).to_owned()).collect(),
            ..DaemonConfig::default()
        };
        ListenerSecurity::capture(&daemon, listen.parse().unwrap())
    }

    #[test]
    fn host_header_table() {
        let loopback = security("127.0.0.1:7878", &["Rota.Example.com"]);
        let wildcard = security("0.0.0.0:7878", &[]);
        let v6 = security("[::1]:7878", &[]);
        for (listener, host, served, why) in [
            (&loopback, "127.0.0.1:7878", true, "the bound address"),
            (
                &loopback,
                "127.0.0.1",
                true,
                "the bound address without a port",
            ),
            (
                &loopback,
                "localhost:7878",
                true,
                "localhost on the bound port",
            ),
            (&loopback, "LOCALHOST", true, "names compare without case"),
            (&loopback, "[::1]:7878", true, "the IPv6 loopback"),
            (
                &loopback,
                "localhost:8080",
                false,
                "another port is another service",
            ),
            (&loopback, "rota.example.com", true, "an allowed host"),
            (
                &loopback,
                "rota.example.com:443",
                true,
                "an allowed host behind a proxy port",
            ),
            (
                &loopback,
                "evil.example:7878",
                false,
                "a rebinding attacker's name",
            ),
            (
                &loopback,
                "127.0.0.1.evil.example",
                false,
                "a name that only starts like an address",
            ),
            (
                &loopback,
                "localhost:x",
                false,
                "a port that is not a number",
            ),
            (&loopback, "", false, "no name"),
            (
                &wildcard,
                "0.0.0.0:7878",
                false,
                "the unspecified address names no host",
            ),
            (
                &wildcard,
                "192.0.2.10:7878",
                false,
                "a LAN address must be listed",
            ),
            (&v6, "[::1]:7878", true, "the bound IPv6 address"),
        ] {
            assert_eq!(listener.serves_host(host), served, "{host}: {why}");
        }
    }
}
