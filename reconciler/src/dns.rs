//! DNS-01 readiness. A CA validates a DNS-01 challenge by asking one of the zone's
//! authoritative nameservers, so the renewer must not ask the CA to validate until every one of
//! them serves the new TXT value; otherwise the validation may hit a secondary that has not
//! caught up and the order fails. [`DnsChecker`] answers two questions for the renewer:
//! where the TXT must be written ([`DnsChecker::resolve_target`] follows a CNAME at
//! `_acme-challenge.<domain>` into a delegated zone), and when it is visible everywhere
//! ([`DnsChecker::wait_for_txt`]). Which servers are asked comes from
//! `daemon.dns_propagation`: the configured `nameservers`, or else the authoritative servers
//! of the record's zone, found through the system resolver; a solver that writes to one DNS
//! server of the operator's own (`dcv: rfc2136`) names it, and then that server alone is
//! asked ([`DnsChecker::asking_only`]), for an answer from its own zone data.

mod query;
mod zone;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{ResolverBuilder, TokioResolver};
use rota_api::config::DnsPropagation;
use rota_api::names::HostPort;
use tokio::task::JoinSet;
use tokio::time::Instant;

use query::{Nameserver, TxtAnswer};
use zone::display;

/// How long one question to one server may take (the client retransmits inside it).
const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one lookup through the resolver may take, its own retries included.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// CNAME links followed before giving up; resolvers stop at about this depth too.
const MAX_CNAME_LINKS: usize = 8;

/// Checks DNS-01 records: where they must be written and whether they are visible yet.
pub(crate) struct DnsChecker {
    /// Asked for CNAME, SOA, NS and addresses: the configured nameservers, else the system's
    /// resolver; the error says why neither could be set up.
    resolver: Result<TokioResolver, String>,
    /// `daemon.dns_propagation.nameservers`; empty means the zone's authoritative servers.
    configured: Vec<SocketAddr>,
    /// The one server to ask instead, when the DCV solver writes to it.
    readiness_server: Option<HostPort>,
    /// Give up on propagation after this long.
    timeout: Duration,
    /// Ask again after this long.
    interval: Duration,
    /// One question to one server.
    query_timeout: Duration,
    /// The port authoritative servers listen on: 53, except for the tests' fake servers.
    authoritative_port: u16,
}

/// How a successful propagation wait went, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PropagationReport {
    /// The servers that were asked and now answer the value.
    pub(crate) servers: Vec<String>,
    /// Rounds of questions asked; 1 means it was already visible everywhere.
    pub(crate) rounds: u32,
    /// From the first question to the last matching answer.
    pub(crate) elapsed: Duration,
}

/// Why a DNS-01 record could not be located or confirmed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DnsError {
    /// The resolver could not be set up (bad `nameservers` entry, unreadable resolv.conf).
    #[error("DNS checks cannot start: {detail}")]
    Setup {
        /// What is wrong.
        detail: String,
    },
    /// The record name is not a DNS name.
    #[error("`{name}` is not a valid DNS name: {detail}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What the parser said.
        detail: String,
    },
    /// A lookup through the resolver failed (not merely "no such record").
    #[error("looking up {record_type} {name} failed: {detail}")]
    Lookup {
        /// The name asked about.
        name: String,
        /// The record type asked for.
        record_type: RecordType,
        /// What went wrong.
        detail: String,
    },
    /// The CNAME chain at the challenge name comes back to a name it already passed.
    #[error("the CNAME chain at {name} loops: {}", chain.join(" -> "))]
    CnameLoop {
        /// Where the chain starts.
        name: String,
        /// Every name in it, the repeated one last.
        chain: Vec<String>,
    },
    /// The CNAME chain at the challenge name is longer than rota follows.
    #[error("the CNAME chain at {name} has more than {MAX_CNAME_LINKS} links: {}", chain.join(" -> "))]
    CnameChainTooLong {
        /// Where the chain starts.
        name: String,
        /// The names followed so far.
        chain: Vec<String>,
    },
    /// Neither the name nor any parent has an SOA record.
    #[error("no DNS zone contains {name}: neither it nor any parent domain has an SOA record")]
    NoZone {
        /// The record name.
        name: String,
    },
    /// The zone's nameservers could not be listed or have no address.
    #[error("cannot ask the nameservers of zone {zone}: {detail}")]
    NoNameservers {
        /// The zone.
        zone: String,
        /// Why.
        detail: String,
    },
    /// The DCV solver's own DNS server has no address.
    #[error("cannot find the address of DNS server {server}: {detail}")]
    ServerAddress {
        /// The server as configured (`host:port`).
        server: String,
        /// Why.
        detail: String,
    },
    /// Finding the authoritative servers alone used up the propagation timeout.
    #[error("finding the nameservers for {name} took longer than the {}s propagation timeout", after.as_secs())]
    DiscoveryTimeout {
        /// The record name.
        name: String,
        /// The timeout.
        after: Duration,
    },
    /// Some servers still did not answer the value when the timeout ran out.
    #[error(
        "TXT {name} {value:?} was not visible on every nameserver after {:.1}s: {}",
        waited.as_secs_f64(),
        lagging.iter().map(|(server, answer)| format!("{server} answered {answer}"))
            .collect::<Vec<_>>().join("; ")
    )]
    NotPropagated {
        /// The record name.
        name: String,
        /// The value waited for.
        value: String,
        /// How long rota waited.
        waited: Duration,
        /// Each server still lagging, with its last answer.
        lagging: Vec<(String, String)>,
    },
}

impl DnsChecker {
    /// Built from `daemon.dns_propagation` (api/src/config/schema.rs `DnsPropagation`).
    pub(crate) fn new(config: &DnsPropagation) -> Self {
        let configured: Result<Vec<SocketAddr>, String> = config
            .nameservers
            .iter()
            .map(|server| {
                server.parse().map_err(|_| {
                    format!("daemon.dns_propagation.nameservers: `{server}` is not address:port")
                })
            })
            .collect();
        let (resolver, configured) = match configured {
            Ok(servers) => (lookup_resolver(&servers), servers),
            Err(detail) => (Err(detail), Vec::new()),
        };
        Self {
            resolver,
            configured,
            readiness_server: None,
            timeout: Duration::from_secs(config.timeout_seconds),
            // Validation refuses 0; the floor keeps a hand-built config from spinning.
            interval: Duration::from_secs(config.interval_seconds.max(1)),
            query_timeout: QUERY_TIMEOUT,
            authoritative_port: 53,
        }
    }

    /// Asks only `server` whether records are visible (the server a solver writes to, which
    /// answers from its own zone data); CNAMEs are still followed as `daemon.dns_propagation`
    /// says, since a delegation is set up in the public DNS.
    pub(crate) fn asking_only(mut self, server: Option<&HostPort>) -> Self {
        self.readiness_server = server.cloned();
        self
    }

    /// Follows a CNAME chain at `record_name` (e.g. `_acme-challenge.a.test` →
    /// `a-test.acme.delegated.test`), so the TXT is written where it points (delegation to
    /// another zone). Returns the final name, or `record_name` itself when there is no CNAME.
    pub(crate) async fn resolve_target(&self, record_name: &str) -> Result<String, DnsError> {
        let resolver = self.resolver()?;
        let start = fqdn(record_name)?;
        let mut chain = vec![start.clone()];
        let mut current = start.clone();
        while let Some(target) = cname_at(resolver, &current).await? {
            let looped = chain.contains(&target);
            chain.push(target.clone());
            let names = || chain.iter().map(display).collect();
            if looped {
                return Err(DnsError::CnameLoop {
                    name: display(&start),
                    chain: names(),
                });
            }
            if chain.len() > MAX_CNAME_LINKS {
                return Err(DnsError::CnameChainTooLong {
                    name: display(&start),
                    chain: names(),
                });
            }
            current = target;
        }
        Ok(display(&current))
    }

    /// Waits until every server that must answer (the configured `nameservers`, or else every
    /// authoritative nameserver of the zone containing `record_name`) returns a TXT record
    /// equal to `value` at `record_name`, asking every `interval_seconds` for at most
    /// `timeout_seconds` (plus the last round's queries, a few seconds at most).
    pub(crate) async fn wait_for_txt(
        &self,
        record_name: &str,
        value: &str,
    ) -> Result<PropagationReport, DnsError> {
        let name = fqdn(record_name)?;
        let started = Instant::now();
        let deadline = started + self.timeout;
        let servers = tokio::time::timeout_at(deadline, self.servers_for(&name))
            .await
            .map_err(|_| DnsError::DiscoveryTimeout {
                name: display(&name),
                after: self.timeout,
            })??;
        let mut pending = servers.clone();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let answers = ask_all(&pending, &name, self.query_timeout).await;
            let lagging: Vec<(Nameserver, TxtAnswer)> = pending
                .into_iter()
                .zip(answers)
                .filter(|(_, answer)| !answer.has(value))
                .collect();
            tracing::debug!(record = %display(&name), rounds, lagging = lagging.len(),
                "asked the nameservers for the DNS-01 record");
            if lagging.is_empty() {
                return Ok(PropagationReport {
                    servers: servers.into_iter().map(|server| server.label).collect(),
                    rounds,
                    elapsed: started.elapsed(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DnsError::NotPropagated {
                    name: display(&name),
                    value: value.to_owned(),
                    waited: now - started,
                    lagging: lagging
                        .into_iter()
                        .map(|(server, answer)| (server.label, answer.to_string()))
                        .collect(),
                });
            }
            pending = lagging.into_iter().map(|(server, _)| server).collect();
            // The last round runs at the deadline itself, so a record that arrives just in
            // time is still seen.
            tokio::time::sleep_until((now + self.interval).min(deadline)).await;
        }
    }

    fn resolver(&self) -> Result<&TokioResolver, DnsError> {
        self.resolver.as_ref().map_err(|detail| DnsError::Setup {
            detail: detail.clone(),
        })
    }

    /// The servers that must answer the TXT at `name`.
    async fn servers_for(&self, name: &Name) -> Result<Vec<Nameserver>, DnsError> {
        if let Some(server) = &self.readiness_server {
            return Ok(vec![solver_server(server).await?]);
        }
        let resolver = self.resolver()?;
        if self.configured.is_empty() {
            return zone::authoritative_servers(
                resolver,
                name,
                self.authoritative_port,
                LOOKUP_TIMEOUT,
            )
            .await;
        }
        Ok(self
            .configured
            .iter()
            .map(|addr| Nameserver {
                label: addr.to_string(),
                addr: *addr,
                recursion_desired: true,
            })
            .collect())
    }
}

/// The DCV solver's own server, asked without recursion so it answers from its zone data.
async fn solver_server(server: &HostPort) -> Result<Nameserver, DnsError> {
    let unknown = |detail: String| DnsError::ServerAddress {
        server: server.to_string(),
        detail,
    };
    let addr = tokio::net::lookup_host((server.host(), server.port()))
        .await
        .map_err(|e| unknown(e.to_string()))?
        .next()
        .ok_or_else(|| unknown("the name has no address".to_owned()))?;
    Ok(Nameserver {
        label: server.to_string(),
        addr,
        recursion_desired: false,
    })
}

/// The resolver for CNAME, SOA, NS and address lookups: `servers` when configured (so a
/// split-horizon setup sees what its own servers see), else the system's.
fn lookup_resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder: ResolverBuilder<_> = if servers.is_empty() {
        TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's resolver configuration: {e}"))?
    } else {
        let name_servers = servers
            .iter()
            .map(|addr| {
                let connection = |mut c: ConnectionConfig| {
                    c.port = addr.port();
                    c
                };
                let connections = vec![
                    connection(ConnectionConfig::udp()),
                    connection(ConnectionConfig::tcp()),
                ];
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            provider,
        )
    };
    let options: &mut ResolverOpts = builder.options_mut();
    // Every check must see the DNS as it is now: a cached "no such CNAME" from before the
    // operator added it would send the TXT to the wrong zone.
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Never;
    options.timeout = QUERY_TIMEOUT;
    builder
        .build()
        .map_err(|e| format!("cannot set up the DNS resolver: {e}"))
}

/// The target of the CNAME at `name`, if there is one.
async fn cname_at(resolver: &TokioResolver, name: &Name) -> Result<Option<Name>, DnsError> {
    let found = zone::lookup(resolver, name, RecordType::CNAME, LOOKUP_TIMEOUT).await?;
    Ok(found.into_iter().find_map(|data| match data {
        RData::CNAME(cname) => Some(cname.0),
        _ => None,
    }))
}

/// Asks every server at once, answers in the order of `servers`.
async fn ask_all(servers: &[Nameserver], name: &Name, timeout: Duration) -> Vec<TxtAnswer> {
    let mut tasks = JoinSet::new();
    for (i, server) in servers.iter().enumerate() {
        let (server, name) = (server.clone(), name.clone());
        tasks.spawn(async move { (i, query::ask_txt(&server, &name, timeout).await) });
    }
    let mut answers = vec![TxtAnswer::NoAnswer("the query task failed".to_owned()); servers.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((i, answer)) = joined {
            answers[i] = answer;
        }
    }
    answers
}

/// `record_name` as an absolute name, so no search domain is ever appended.
fn fqdn(record_name: &str) -> Result<Name, DnsError> {
    let bare = record_name.strip_suffix('.').unwrap_or(record_name);
    let invalid = |detail: String| DnsError::InvalidName {
        name: record_name.to_owned(),
        detail,
    };
    if bare.is_empty() {
        return Err(invalid("the name is empty".to_owned()));
    }
    Name::from_ascii(format!("{bare}.")).map_err(|e| invalid(e.to_string()))
}
