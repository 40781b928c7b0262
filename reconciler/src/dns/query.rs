//! One TXT question to one nameserver, asked directly (not through a resolver's cache): UDP
//! first, TCP when the answer did not fit in a datagram. The answer is kept as what the server
//! said, so a propagation timeout can tell the operator what each lagging server returned.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::tcp::TcpClientStream;
use hickory_resolver::net::udp::UdpClientStream;
use hickory_resolver::net::xfer::{DnsHandle, FirstAnswer};
use hickory_resolver::proto::op::{DnsRequestOptions, DnsResponse, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};

/// A server that must see the TXT record before the CA is asked to validate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Nameserver {
    /// How the operator knows it: `ns1.example.com (192.0.2.53:53)` or `192.0.2.53:53`.
    pub(crate) label: String,
    /// Where to send the question.
    pub(crate) addr: SocketAddr,
    /// Set for configured servers (they may be resolvers); off for authoritative ones, which
    /// must answer from their own zone data.
    pub(crate) recursion_desired: bool,
}

/// What one server answered to `TXT <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxtAnswer {
    /// The TXT records it returned (possibly none), each one's strings joined.
    Records(Vec<String>),
    /// NXDOMAIN: the name does not exist there.
    NoSuchName,
    /// Any other error response code (SERVFAIL, REFUSED, …).
    Error(ResponseCode),
    /// No usable answer: timeout, unreachable, garbage.
    NoAnswer(String),
}

impl TxtAnswer {
    /// Whether the answer contains `value` (other TXT records may sit beside it, e.g. the
    /// challenge for the wildcard of the same name).
    pub(crate) fn has(&self, value: &str) -> bool {
        matches!(self, Self::Records(values) if values.iter().any(|v| v == value))
    }

    fn from_response(response: &DnsResponse) -> Self {
        match response.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Self::NoSuchName,
            code => return Self::Error(code),
        }
        let values = response
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                // A long value may be split into several character-strings; TXT means them
                // joined (RFC 7208 §3.3 spells out the usual reading).
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        Self::Records(values)
    }
}

impl fmt::Display for TxtAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Records(values) if values.is_empty() => f.write_str("no TXT record"),
            Self::Records(values) => {
                f.write_str("TXT ")?;
                for (i, value) in values.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{value:?}")?;
                }
                Ok(())
            }
            Self::NoSuchName => f.write_str("NXDOMAIN (no such name)"),
            Self::Error(code) => write!(f, "error {code}"),
            Self::NoAnswer(detail) => write!(f, "nothing ({detail})"),
        }
    }
}

/// Asks `server` for `TXT name`, giving up after `timeout` per transport.
pub(crate) async fn ask_txt(server: &Nameserver, name: &Name, timeout: Duration) -> TxtAnswer {
    let query = Query::query(name.clone(), RecordType::TXT);
    let mut options = DnsRequestOptions::default();
    options.recursion_desired = server.recursion_desired;
    let provider = TokioRuntimeProvider::default();
    // The client retransmits within `timeout`, so one lost datagram is not a failed round.
    let udp = UdpClientStream::builder(server.addr, provider.clone())
        .with_timeout(Some(timeout))
        .exchange();
    let response = match send(&udp, query.clone(), options, timeout).await {
        Ok(response) if response.metadata.truncation => {
            // Several TXT records (a wildcard and its base name, stale ones) can overflow
            // a datagram; TCP gets the whole set.
            let tcp = TcpClientStream::exchange(server.addr, None, timeout, None, provider);
            match tokio::time::timeout(timeout, tcp).await {
                Ok(Ok(tcp)) => send(&tcp, query, options, timeout).await,
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(timed_out(timeout)),
            }
        }
        other => other,
    };
    match response {
        Ok(response) => TxtAnswer::from_response(&response),
        Err(detail) => TxtAnswer::NoAnswer(detail),
    }
}

/// Sends one query on `handle`; the outer timeout bounds it even if the transport's own
/// timer were not to fire.
async fn send(
    handle: &impl DnsHandle,
    query: Query,
    options: DnsRequestOptions,
    timeout: Duration,
) -> Result<DnsResponse, String> {
    match tokio::time::timeout(timeout, handle.lookup(query, options).first_answer()).await {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(NetError::Timeout)) | Err(_) => Err(timed_out(timeout)),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

fn timed_out(after: Duration) -> String {
    format!("timed out after {} ms", after.as_millis())
}
