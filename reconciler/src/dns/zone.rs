//! Which servers are authoritative for a record name: walk up its labels until a name has an
//! SOA of its own (the zone cut), take that zone's NS set, and resolve each host's addresses.
//! Every question goes to the lookup resolver (the system's, normally); the TXT itself is then
//! asked of each address directly.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{Name, RData, RecordType};

use super::DnsError;
use super::query::Nameserver;

/// Asks the lookup resolver `record_type name`; empty when the name has no such records.
pub(crate) async fn lookup(
    resolver: &TokioResolver,
    name: &Name,
    record_type: RecordType,
    timeout: Duration,
) -> Result<Vec<RData>, DnsError> {
    let failed = |detail: String| DnsError::Lookup {
        name: display(name),
        record_type,
        detail,
    };
    match tokio::time::timeout(timeout, resolver.lookup(name.clone(), record_type)).await {
        Err(_) => Err(failed(format!("no answer within {} s", timeout.as_secs()))),
        Ok(Ok(found)) => Ok(found
            .answers()
            .iter()
            // The owner check drops what a CNAME at `name` led to: that belongs to
            // another name, and the callers ask about this one.
            .filter(|record| record.name == *name && record.data.record_type() == record_type)
            .map(|record| record.data.clone())
            .collect()),
        Ok(Err(e)) if e.is_no_records_found() => Ok(Vec::new()),
        Ok(Err(e)) => Err(failed(describe(&e))),
    }
}

/// The nameservers of the zone holding `name`, each address on `port` (53 outside tests).
pub(crate) async fn authoritative_servers(
    resolver: &TokioResolver,
    name: &Name,
    port: u16,
    timeout: Duration,
) -> Result<Vec<Nameserver>, DnsError> {
    let zone = find_zone(resolver, name, timeout).await?;
    let mut hosts: Vec<Name> = lookup(resolver, &zone, RecordType::NS, timeout)
        .await?
        .into_iter()
        .filter_map(|data| match data {
            RData::NS(ns) => Some(ns.0),
            _ => None,
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    let mut servers = Vec::new();
    let mut unresolved = Vec::new();
    for host in &hosts {
        match addresses(resolver, host, timeout).await {
            Ok(ips) => servers.extend(ips.into_iter().map(|ip| Nameserver {
                label: format!("{} ({})", display(host), SocketAddr::new(ip, port)),
                addr: SocketAddr::new(ip, port),
                recursion_desired: false,
            })),
            Err(detail) => {
                // A lame NS entry cannot be asked, and the CA cannot ask it either: the others
                // still decide, but the operator should hear about it.
                tracing::warn!(zone = %display(&zone), nameserver = %display(host), %detail,
                    "skipping a nameserver without an address");
                unresolved.push(format!("{}: {detail}", display(host)));
            }
        }
    }
    if servers.is_empty() {
        return Err(DnsError::NoNameservers {
            zone: display(&zone),
            detail: if hosts.is_empty() {
                "it has no NS records".to_owned()
            } else {
                unresolved.join("; ")
            },
        });
    }
    Ok(servers)
}

/// The closest enclosing zone: the first of `name`, its parent, … that owns an SOA record.
async fn find_zone(
    resolver: &TokioResolver,
    name: &Name,
    timeout: Duration,
) -> Result<Name, DnsError> {
    let mut candidate = name.clone();
    while !candidate.is_root() {
        if !lookup(resolver, &candidate, RecordType::SOA, timeout)
            .await?
            .is_empty()
        {
            return Ok(candidate);
        }
        candidate = candidate.base_name();
    }
    Err(DnsError::NoZone {
        name: display(name),
    })
}

/// Every address of `host`, as the lookup resolver's address strategy orders them.
async fn addresses(
    resolver: &TokioResolver,
    host: &Name,
    timeout: Duration,
) -> Result<Vec<std::net::IpAddr>, String> {
    match tokio::time::timeout(timeout, resolver.lookup_ip(host.clone())).await {
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
        Ok(Ok(found)) if found.iter().next().is_some() => Ok(found.iter().collect()),
        Ok(Ok(_)) => Err("it has no address records".to_owned()),
        Ok(Err(e)) if e.is_no_records_found() => Err("it has no address records".to_owned()),
        Ok(Err(e)) => Err(describe(&e)),
    }
}

/// A name as operators write it: ASCII, no trailing dot.
pub(crate) fn display(name: &Name) -> String {
    let ascii = name.to_ascii();
    match ascii.strip_suffix('.') {
        Some(bare) if !bare.is_empty() => bare.to_owned(),
        _ => ascii,
    }
}

/// A resolver error in a few words.
fn describe(err: &NetError) -> String {
    match err {
        NetError::Timeout => "no answer (timed out)".to_owned(),
        other => other.to_string(),
    }
}
