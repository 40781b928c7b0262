//! `dcv: { kind: namecheap }` with the top-level `namecheap:` block: answers DNS-01 through
//! Namecheap's DNS API, which has no per-record edit. `namecheap.domains.dns.setHosts`
//! replaces a domain's whole host list, so each publish and each removal reads the list
//! (`getHosts`), changes rota's one record (ACME's TXT, or a CA's DCV CNAME), and writes
//! every other record back exactly as read: name, type, address, MX preference and TTL, plus
//! the domain's `EmailType`, without which Namecheap drops the MX records
//! (billputer/go-namecheap#7). Two changes to one domain
//! at once would each write back a list missing the other's record, so they take turns on a
//! lock per domain that every cert of the daemon shares.
//!
//! Calls, as Namecheap documents them:
//! - `namecheap.domains.getList` (<https://www.namecheap.com/support/api/methods/domains/get-list/>),
//!   paged by `Page`/`PageSize` with `<Paging><TotalItems>`: which of the account's domains
//!   holds the record. Its name gives the `SLD`/`TLD` split, right for multi-label TLDs
//!   (`example.co.uk` is `example` + `co.uk`) without a suffix list of rota's own.
//! - `namecheap.domains.dns.getHosts` (<https://www.namecheap.com/support/api/methods/domains-dns/get-hosts/>):
//!   `<DomainDNSGetHostsResult EmailType IsUsingOurDNS><host Name Type Address MXPref TTL/>`;
//!   a domain on other nameservers (`IsUsingOurDNS="false"`) is refused, since what the API
//!   would edit is not what the world resolves.
//! - `namecheap.domains.dns.setHosts` (<https://www.namecheap.com/support/api/methods/domains-dns/set-hosts/>):
//!   `HostNameN`, `RecordTypeN`, `AddressN`, `MXPrefN`, `TTLN` for N = 1…, and `EmailType`.
//!
//! The XML is read by [`crate::namecheap::xml`]: element and attribute names in any case
//! (real answers say `<host>`), every entity decoded, so TXT values with `&`, `<` or `"` and
//! URL redirect records survive the round trip unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rota_api::{BackendError, ChallengeKind, DcvBackend, DcvChallenge};

use super::record::ChallengeRecord;
use crate::namecheap::xml::Element;
use crate::namecheap::{KIND, NamecheapClient};

/// Domains per `getList` page: the most Namecheap serves.
const DOMAINS_PER_PAGE: u32 = 100;
/// The lowest TTL Namecheap accepts.
const MIN_TTL: u32 = 60;

/// One lock per domain, shared by every Namecheap solver of the daemon.
#[derive(Debug, Default)]
pub(crate) struct DomainLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl DomainLocks {
    fn for_domain(&self, domain: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry(domain.to_owned()).or_default())
    }
}

/// One host record as `getHosts` gives it and `setHosts` takes it back, untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Host {
    name: String,
    kind: String,
    address: String,
    mx_pref: String,
    ttl: String,
}

/// A domain's host list and the mail setting that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostList {
    email_type: Option<String>,
    hosts: Vec<Host>,
}

/// A domain of the account, split as the API wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Domain {
    name: String,
}

impl Domain {
    /// `SLD` and `TLD`: the first label, and the rest.
    fn split(&self) -> [(String, String); 2] {
        let (sld, tld) = self.name.split_once('.').unwrap_or((&self.name, ""));
        [
            ("SLD".to_owned(), sld.to_owned()),
            ("TLD".to_owned(), tld.to_owned()),
        ]
    }

    /// `fqdn` relative to this domain (`@` for the apex).
    fn host_of(&self, fqdn: &str) -> String {
        match fqdn.strip_suffix(&self.name) {
            Some("") => "@".to_owned(),
            Some(rest) => rest.trim_end_matches('.').to_owned(),
            None => fqdn.to_owned(),
        }
    }
}

/// Publishes DCV records (ACME TXT, CA CNAME) through Namecheap's DNS API.
pub(crate) struct NamecheapDcv {
    client: Arc<NamecheapClient>,
    locks: Arc<DomainLocks>,
}

impl NamecheapDcv {
    /// A solver calling through `client`, taking turns per domain on `locks`.
    pub(crate) fn new(client: Arc<NamecheapClient>, locks: Arc<DomainLocks>) -> Self {
        Self { client, locks }
    }

    /// The account's domain that holds `fqdn` (the longest one, should several).
    async fn domain_for(&self, fqdn: &str) -> Result<Domain, BackendError> {
        let mut best: Option<String> = None;
        let mut seen = 0;
        let mut page = 1;
        loop {
            let params = [
                ("PageSize".to_owned(), DOMAINS_PER_PAGE.to_string()),
                ("Page".to_owned(), page.to_string()),
            ];
            let response = self
                .client
                .call("namecheap.domains.getList", &params)
                .await?;
            let listed = response
                .child("DomainGetListResult")
                .map(|r| r.children("Domain").collect::<Vec<_>>())
                .unwrap_or_default();
            for name in listed.iter().filter_map(|d| d.attr("Name")) {
                let name = name.to_ascii_lowercase();
                let holds = fqdn == name || fqdn.ends_with(&format!(".{name}"));
                if holds && best.as_ref().is_none_or(|b| name.len() > b.len()) {
                    best = Some(name);
                }
            }
            // Counted rather than computed from the page size asked for: the server may serve
            // fewer a page than asked.
            seen += listed.len();
            let total: usize = response
                .find(&["Paging", "TotalItems"])
                .and_then(|t| t.text().parse().ok())
                .unwrap_or(0);
            if listed.is_empty() || seen >= total {
                break;
            }
            page += 1;
        }
        best.map(|name| Domain { name }).ok_or_else(|| BackendError::Refused {
            backend: KIND,
            detail: format!(
                "no domain of this Namecheap account holds {fqdn}: the domain must be registered \
                 in the account `namecheap.username` names"
            ),
        })
    }

    async fn get_hosts(&self, domain: &Domain) -> Result<HostList, BackendError> {
        let response = self
            .client
            .call("namecheap.domains.dns.getHosts", &domain.split())
            .await?;
        read_hosts(&response, &domain.name)
    }

    async fn set_hosts(&self, domain: &Domain, list: &HostList) -> Result<(), BackendError> {
        let command = "namecheap.domains.dns.setHosts";
        let response = self.client.call(command, &set_params(domain, list)).await?;
        let ok = response
            .child("DomainDNSSetHostsResult")
            .and_then(|r| r.attr("IsSuccess"))
            .is_some_and(|s| s.eq_ignore_ascii_case("true"));
        if ok {
            Ok(())
        } else {
            Err(BackendError::Refused {
                backend: KIND,
                detail: format!("{command} for {}: IsSuccess is not true", domain.name),
            })
        }
    }

    /// Reads the host list of the domain holding `fqdn`, lets `change` edit it, and writes it
    /// back when it changed, holding the domain's lock throughout.
    async fn edit(
        &self,
        fqdn: &str,
        change: impl FnOnce(&Domain, &mut HostList),
    ) -> Result<bool, BackendError> {
        let domain = self.domain_for(fqdn).await?;
        let lock = self.locks.for_domain(&domain.name);
        let _turn = lock.lock().await;
        let before = self.get_hosts(&domain).await?;
        let mut after = before.clone();
        change(&domain, &mut after);
        if after == before {
            return Ok(false);
        }
        self.set_hosts(&domain, &after).await?;
        Ok(true)
    }
}

/// The host list in a `getHosts` answer for `domain`; a domain on other nameservers is refused.
fn read_hosts(response: &Element, domain: &str) -> Result<HostList, BackendError> {
    let result =
        response
            .child("DomainDNSGetHostsResult")
            .ok_or_else(|| BackendError::Unreachable {
                backend: KIND,
                detail:
                    "namecheap.domains.dns.getHosts: no <DomainDNSGetHostsResult> in the answer"
                        .into(),
            })?;
    if result
        .attr("IsUsingOurDNS")
        .is_some_and(|v| v.eq_ignore_ascii_case("false"))
    {
        return Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "{domain} does not use Namecheap's DNS (IsUsingOurDNS=false), so records set \
                 through the API would not be served: switch it to Namecheap BasicDNS, or use \
                 the DCV solver of the DNS provider that serves it"
            ),
        });
    }
    let hosts = result
        .children("host")
        .map(|h| {
            let field = |name: &str| h.attr(name).unwrap_or_default().to_owned();
            Host {
                name: field("Name"),
                kind: field("Type"),
                address: field("Address"),
                mx_pref: field("MXPref"),
                ttl: field("TTL"),
            }
        })
        .collect();
    Ok(HostList {
        // An empty `EmailType` (no mail set up) is not sent back: there is nothing to keep.
        email_type: result
            .attr("EmailType")
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned),
        hosts,
    })
}

/// The `setHosts` parameters that write `list` to `domain`.
fn set_params(domain: &Domain, list: &HostList) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = domain.split().into();
    for (i, host) in list.hosts.iter().enumerate() {
        let n = i + 1;
        params.push((format!("HostName{n}"), host.name.clone()));
        params.push((format!("RecordType{n}"), host.kind.clone()));
        params.push((format!("Address{n}"), host.address.clone()));
        if !host.mx_pref.is_empty() {
            params.push((format!("MXPref{n}"), host.mx_pref.clone()));
        }
        if !host.ttl.is_empty() {
            params.push((format!("TTL{n}"), host.ttl.clone()));
        }
    }
    if let Some(email_type) = &list.email_type {
        params.push(("EmailType".to_owned(), email_type.clone()));
    }
    params
}

/// Whether `host`, named `name` in its domain, is `record`.
fn is_ours(host: &Host, name: &str, record: &ChallengeRecord<'_>) -> bool {
    host.kind.eq_ignore_ascii_case(record.kind)
        && host.name.eq_ignore_ascii_case(name)
        && record.matches(&host.address)
}

#[async_trait]
impl DcvBackend for NamecheapDcv {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn supported_kinds(&self) -> &[ChallengeKind] {
        &[ChallengeKind::Dns01]
    }

    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let record = ChallengeRecord::of(KIND, challenge)?;
        let changed = self
            .edit(&record.fqdn, |domain, list| {
                let name = domain.host_of(&record.fqdn);
                if !list.hosts.iter().any(|h| is_ours(h, &name, &record)) {
                    // A CNAME target is written fully qualified, as Namecheap's panel shows it.
                    let address = match record.kind {
                        "CNAME" => format!("{}.", record.value),
                        _ => record.value.to_owned(),
                    };
                    list.hosts.push(Host {
                        name,
                        kind: record.kind.to_owned(),
                        address,
                        mx_pref: "10".to_owned(),
                        ttl: record.ttl.max(MIN_TTL).to_string(),
                    });
                }
            })
            .await?;
        tracing::info!(record = %record.fqdn, kind = record.kind, already = !changed, "record published through Namecheap");
        Ok(())
    }

    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let record = ChallengeRecord::of(KIND, challenge)?;
        let changed = self
            .edit(&record.fqdn, |domain, list| {
                let name = domain.host_of(&record.fqdn);
                list.hosts.retain(|h| !is_ours(h, &name, &record));
            })
            .await?;
        tracing::info!(record = %record.fqdn, kind = record.kind, already = !changed, "record removed through Namecheap");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namecheap::xml::parse;

    fn hosts_answer(attrs: &str, hosts: &str) -> Element {
        parse(&format!(
            "<CommandResponse><DomainDNSGetHostsResult Domain=\"example.co.uk\" {attrs}>{hosts}\
             </DomainDNSGetHostsResult></CommandResponse>"
        ))
        .unwrap()
    }

    #[test]
    fn multi_label_tlds_split_after_the_first_label() {
        let domain = Domain {
            name: "example.co.uk".into(),
        };
        assert_eq!(
            domain.split(),
            [
                ("SLD".to_owned(), "example".to_owned()),
                ("TLD".to_owned(), "co.uk".to_owned())
            ]
        );
        assert_eq!(
            domain.host_of("_acme-challenge.www.example.co.uk"),
            "_acme-challenge.www"
        );
        assert_eq!(domain.host_of("example.co.uk"), "@");
    }

    #[test]
    fn a_round_trip_sends_back_every_field_and_the_email_type() {
        let answer = hosts_answer(
            "EmailType=\"MX\" IsUsingOurDNS=\"true\"",
            "<host HostId=\"1\" Name=\"@\" Type=\"MX\" Address=\"mx.example.net.\" MXPref=\"5\" TTL=\"1800\"/>\
             <Host HostId=\"2\" Name=\"txt\" Type=\"TXT\" Address=\"a&amp;b&lt;c&quot;\" MXPref=\"10\" TTL=\"60\"/>",
        );
        let list = read_hosts(&answer, "example.co.uk").unwrap();
        let domain = Domain {
            name: "example.co.uk".into(),
        };
        let params = set_params(&domain, &list);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("SLD"), Some("example"));
        assert_eq!(get("TLD"), Some("co.uk"));
        assert_eq!(get("RecordType1"), Some("MX"));
        assert_eq!(get("MXPref1"), Some("5"));
        assert_eq!(get("TTL1"), Some("1800"));
        assert_eq!(get("Address2"), Some("a&b<c\""));
        assert_eq!(get("EmailType"), Some("MX"));
    }

    #[test]
    fn a_domain_on_other_nameservers_is_refused() {
        let answer = hosts_answer("EmailType=\"\" IsUsingOurDNS=\"false\"", "");
        let err = read_hosts(&answer, "example.co.uk")
            .unwrap_err()
            .to_string();
        assert!(err.contains("IsUsingOurDNS=false"), "{err}");
    }
}
