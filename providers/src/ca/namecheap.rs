//! `ca: { kind: namecheap, ssl_id }` with the top-level `namecheap:` block: renews a
//! certificate by reissuing it within an SSL subscription the operator bought and activated
//! once in Namecheap's dashboard (first activation wants admin-contact details rota does not
//! model, so a subscription that was never activated is refused with that advice).
//!
//! Calls, as Namecheap documents them:
//! - `namecheap.ssl.getInfo` (<https://www.namecheap.com/support/api/methods/ssl/get-info/>):
//!   `<SSLGetInfoResult Status ReplacedBy>` with `<CertificateDetails><AdministratorEmail>`,
//!   and with `Returncertificate=true&Returntype=Individual` the issued leaf in
//!   `<Certificates><Certificate>` and the CA certificates in `<CaCertificates>`.
//! - `namecheap.ssl.reissue` (<https://www.namecheap.com/support/api/methods/ssl/reissue/>):
//!   only for a certificate in `active` status; `csr`, `WebServerType`, `AdminEmailAddress`,
//!   `ApproverEmail=CNAMECSRHASH` for the first name and `DNSNames`/`DNSApproverEmails` for the
//!   others. It answers `<SSLReissueResult ID>` — a **new** certificate ID (Namecheap KB 9268;
//!   the WHMCS module stores it in place of the old one) — and, per domain,
//!   `<DNSDCValidation><DNS domain><HostName/><Target/></DNS>`: Sectigo's DNS validation is a
//!   CNAME, which rota hands to the DNS solver as [`DcvChallenge::DnsCname`] as it is.
//!
//! Which ID to reissue: the one the operator configured may since have been replaced. Once a
//! reissue is issued, Namecheap marks the old certificate `replaced` with `ReplacedBy` naming
//! the new one, so rota follows `ReplacedBy` from `ssl_id` to the live certificate at each
//! renewal. Namecheap remembers the chain for rota; nothing is lost across restarts or a
//! wiped database. The new ID travels in the order handle to [`CaBackend::await_issuance`],
//! which polls getInfo with a doubling pause (bounded) until the certificate is active.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rota_api::{
    BackendError, CaBackend, ChallengeKind, DcvChallenge, DomainName, IssuedCert, OrderHandle,
    PlacedOrder,
};
use serde_json::json;

use crate::namecheap::xml::Element;
use crate::namecheap::{KIND, NamecheapClient};

/// TTL of the DCV CNAMEs.
const CNAME_TTL: u32 = 300;
/// At most this many `ReplacedBy` hops are followed (a cert reissued weekly for years).
const MAX_REPLACEMENTS: usize = 500;
/// How often getInfo is asked while Sectigo validates: first pause, and the longest one.
const FIRST_POLL: Duration = Duration::from_secs(2);
const LONGEST_POLL: Duration = Duration::from_secs(60);
/// How long issuance may take before rota gives up on this order.
const ISSUANCE_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Reissues within one Namecheap SSL subscription.
pub(crate) struct NamecheapCa {
    client: Arc<NamecheapClient>,
    ssl_id: u64,
}

/// What getInfo says about one certificate.
struct CertInfo {
    status: String,
    replaced_by: Option<u64>,
    admin_email: Option<String>,
    issued: Option<IssuedCert>,
}

impl NamecheapCa {
    /// A CA reissuing the subscription whose certificate was first `ssl_id`.
    pub(crate) fn new(client: Arc<NamecheapClient>, ssl_id: u64) -> Self {
        Self { client, ssl_id }
    }

    async fn info(&self, id: u64, with_certificate: bool) -> Result<CertInfo, BackendError> {
        let mut params = vec![("CertificateID".to_owned(), id.to_string())];
        if with_certificate {
            params.push(("Returncertificate".to_owned(), "true".to_owned()));
            params.push(("Returntype".to_owned(), "Individual".to_owned()));
        }
        let response = self.client.call("namecheap.ssl.getInfo", &params).await?;
        let result = response
            .child("SSLGetInfoResult")
            .ok_or_else(|| missing("namecheap.ssl.getInfo", "SSLGetInfoResult"))?;
        Ok(CertInfo {
            status: result
                .attr("Status")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            replaced_by: result
                .attr("ReplacedBy")
                .and_then(|v| v.trim().parse().ok())
                .filter(|id| *id != 0),
            admin_email: result
                .find(&["CertificateDetails", "AdministratorEmail"])
                .map(|e| e.text().to_owned())
                .filter(|e| !e.is_empty()),
            issued: result
                .find(&["CertificateDetails", "Certificates"])
                .and_then(issued_cert),
        })
    }

    /// The live certificate of the subscription: `ssl_id`, or what replaced it, and so on.
    async fn current(&self) -> Result<(u64, CertInfo), BackendError> {
        let mut id = self.ssl_id;
        for _ in 0..MAX_REPLACEMENTS {
            let info = self.info(id, false).await?;
            match info.replaced_by {
                Some(next) if info.status == "replaced" => id = next,
                _ => return Ok((id, info)),
            }
        }
        Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "certificate {} was replaced more than {MAX_REPLACEMENTS} times; set `ca.ssl_id` \
                 to the current certificate ID from Namecheap's dashboard",
                self.ssl_id
            ),
        })
    }
}

fn missing(command: &str, element: &str) -> BackendError {
    BackendError::Unreachable {
        backend: KIND,
        detail: format!("{command}: no <{element}> in the answer"),
    }
}

/// The leaf and chain in getInfo's `<Certificates>`, when it holds them.
fn issued_cert(certificates: &Element) -> Option<IssuedCert> {
    let leaf = certificates.child("Certificate")?.text();
    if !leaf.contains("BEGIN CERTIFICATE") {
        return None;
    }
    let mut chain = String::new();
    if let Some(cas) = certificates.child("CaCertificates") {
        for ca in cas.children("Certificate") {
            let pem = ca.child("Certificate").map_or(ca.text(), Element::text);
            if pem.contains("BEGIN CERTIFICATE") {
                chain.push_str(pem);
                chain.push('\n');
            }
        }
    }
    Some(IssuedCert {
        cert_pem: format!("{leaf}\n"),
        chain_pem: chain,
    })
}

/// Why a certificate in `status` cannot be reissued, in the operator's terms.
fn not_reissuable(id: u64, status: &str) -> BackendError {
    let detail = match status {
        "newpurchase" | "new" | "purchased" | "pending" => format!(
            "certificate {id} has not been activated yet (status `{status}`): activate it once \
             in Namecheap's dashboard (SSL Certificates > Activate); rota reissues it after that"
        ),
        _ => format!(
            "certificate {id} is `{status}`, and only an `active` certificate can be reissued: \
             check the subscription in Namecheap's dashboard"
        ),
    };
    BackendError::Refused {
        backend: KIND,
        detail,
    }
}

/// The reissue parameters for `domains`: the first by `ApproverEmail`, the rest in `DNSNames`,
/// every one validated by a CNAME.
fn reissue_params(
    id: u64,
    csr_pem: &str,
    admin_email: &str,
    domains: &[DomainName],
) -> Vec<(String, String)> {
    let method = "CNAMECSRHASH";
    let mut params = vec![
        ("CertificateID".to_owned(), id.to_string()),
        ("csr".to_owned(), csr_pem.to_owned()),
        ("WebServerType".to_owned(), "other".to_owned()),
        ("AdminEmailAddress".to_owned(), admin_email.to_owned()),
        ("ApproverEmail".to_owned(), method.to_owned()),
    ];
    let others: Vec<String> = domains.iter().skip(1).map(ToString::to_string).collect();
    if !others.is_empty() {
        params.push(("DNSNames".to_owned(), others.join(",")));
        let methods = vec![method; others.len()];
        params.push(("DNSApproverEmails".to_owned(), methods.join(",")));
    }
    params
}

/// The new certificate ID and the DCV CNAMEs of a reissue answer.
fn read_reissue(response: &Element) -> Result<(u64, Vec<DcvChallenge>), BackendError> {
    let command = "namecheap.ssl.reissue";
    let result = response
        .child("SSLReissueResult")
        .ok_or_else(|| missing(command, "SSLReissueResult"))?;
    let new_id: u64 = result
        .attr("ID")
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| missing(command, "SSLReissueResult ID"))?;
    let challenges: Vec<DcvChallenge> = result
        .child("DNSDCValidation")
        .map(|v| {
            v.children("DNS")
                .filter_map(|dns| {
                    let host = dns.child("HostName")?.text();
                    let target = dns.child("Target")?.text();
                    (!host.is_empty() && !target.is_empty()).then(|| DcvChallenge::DnsCname {
                        record_name: host.to_owned(),
                        target: target.to_owned(),
                        ttl: CNAME_TTL,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if challenges.is_empty() {
        return Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "{command} created certificate {new_id} but gave no DNS validation record \
                 (<DNSDCValidation>); finish its validation in Namecheap's dashboard"
            ),
        });
    }
    Ok((new_id, challenges))
}

#[async_trait]
impl CaBackend for NamecheapCa {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn submit(
        &self,
        domains: &[DomainName],
        csr_pem: &str,
        preferred_kinds: &[ChallengeKind],
        _replacing: Option<&str>,
    ) -> Result<PlacedOrder, BackendError> {
        if !preferred_kinds.contains(&ChallengeKind::Dns01) {
            return Err(BackendError::invalid(
                KIND,
                "Namecheap validates by a DNS CNAME: the cert needs a DNS solver \
                 (`dcv: { kind: namecheap }` or `dcv: { kind: cloudflare }`)",
            ));
        }
        let (id, info) = self.current().await?;
        if info.status != "active" {
            return Err(not_reissuable(id, &info.status));
        }
        let admin_email = info.admin_email.ok_or_else(|| {
            missing(
                "namecheap.ssl.getInfo",
                "CertificateDetails/AdministratorEmail",
            )
        })?;
        let response = self
            .client
            .call(
                "namecheap.ssl.reissue",
                &reissue_params(id, csr_pem, &admin_email, domains),
            )
            .await?;
        let (new_id, challenges) = read_reissue(&response)?;
        tracing::info!(
            ssl_id = self.ssl_id,
            reissued = id,
            new_certificate = new_id,
            "Namecheap reissue placed"
        );
        Ok(PlacedOrder {
            challenges,
            handle: OrderHandle {
                locator: Some(new_id.to_string()),
                csr_pem: csr_pem.to_owned(),
                details: json!({ "ssl_id": self.ssl_id, "reissued": id }),
            },
        })
    }

    async fn await_issuance(&self, handle: &OrderHandle) -> Result<IssuedCert, BackendError> {
        let id: u64 = handle
            .locator
            .as_deref()
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| {
                BackendError::invalid(KIND, "the order handle names no certificate ID")
            })?;
        let started = tokio::time::Instant::now();
        let mut pause = FIRST_POLL;
        loop {
            let info = self.info(id, true).await?;
            match (info.status.as_str(), info.issued) {
                ("active", Some(issued)) => return Ok(issued),
                // Still with Sectigo: Namecheap's in-between statuses.
                ("active" | "purchased" | "pending" | "inprogress" | "newpurchase", _) => {}
                (status, _) => {
                    return Err(BackendError::Refused {
                        backend: KIND,
                        detail: format!(
                            "certificate {id} ended `{status}` instead of being issued"
                        ),
                    });
                }
            }
            if started.elapsed() + pause > ISSUANCE_DEADLINE {
                return Err(BackendError::Timeout {
                    backend: KIND,
                    what: format!("certificate {id} to be issued"),
                    after: ISSUANCE_DEADLINE,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(LONGEST_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namecheap::xml::parse;

    #[test]
    fn a_reissue_answer_gives_the_new_id_and_its_cnames() {
        let answer = parse(
            "<CommandResponse><SSLReissueResult ID=\"747253\" IsSuccess=\"true\">\
             <DNSDCValidation ValueAvailable=\"true\"><DNS domain=\"a.test\">\
             <HostName><![CDATA[_abc.a.test]]></HostName><Target><![CDATA[1.2.sectigo.com]]></Target>\
             </DNS></DNSDCValidation></SSLReissueResult></CommandResponse>",
        )
        .unwrap();
        let (id, challenges) = read_reissue(&answer).unwrap();
        assert_eq!(id, 747_253);
        assert_eq!(
            challenges,
            [DcvChallenge::DnsCname {
                record_name: "_abc.a.test".into(),
                target: "1.2.sectigo.com".into(),
                ttl: CNAME_TTL
            }]
        );
    }

    #[test]
    fn only_the_first_name_goes_by_approver_email() {
        let domains: Vec<DomainName> = ["a.test", "b.test", "c.test"]
            .iter()
            .map(|d| DomainName::new(d).unwrap())
            .collect();
        let params = reissue_params(7, "CSR", "ops@a.test", &domains);
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("ApproverEmail"), Some("CNAMECSRHASH"));
        assert_eq!(get("DNSNames"), Some("b.test,c.test"));
        assert_eq!(get("DNSApproverEmails"), Some("CNAMECSRHASH,CNAMECSRHASH"));
    }

    #[test]
    fn a_never_activated_subscription_says_to_activate_it_once() {
        let text = not_reissuable(9, "newpurchase").to_string();
        assert!(
            text.contains("activate it once in Namecheap's dashboard"),
            "{text}"
        );
    }
}
