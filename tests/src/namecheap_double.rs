//! A Namecheap XML API double (`/xml.response`): the calls rota makes, in the shapes Namecheap
//! documents (<https://www.namecheap.com/support/api/intro/>), as a form POST or a query.
//!
//! - Global parameters `ApiUser`, `ApiKey`, `UserName`, `ClientIp`, `Command` on every call. A
//!   `ClientIp` off the whitelist is error 1011150 "Invalid request IP: <ip>" (as quoted in
//!   go-namecheap-sdk#4); a wrong key 1011102. Errors come as HTTP 200 with `Status="ERROR"`.
//! - `namecheap.domains.getList` (<https://www.namecheap.com/support/api/methods/domains/get-list/>):
//!   `<DomainGetListResult><Domain Name IsOurDNS/></DomainGetListResult>` and
//!   `<Paging><TotalItems><CurrentPage><PageSize>`.
//! - `namecheap.domains.dns.getHosts` (<https://www.namecheap.com/support/api/methods/domains-dns/get-hosts/>):
//!   `<DomainDNSGetHostsResult Domain EmailType IsUsingOurDNS><host HostId Name Type Address
//!   MXPref TTL/>` — lower-case `host`, as real answers have it, attributes XML-escaped.
//! - `namecheap.domains.dns.setHosts` (<https://www.namecheap.com/support/api/methods/domains-dns/set-hosts/>):
//!   replaces the whole list with `HostNameN`/`RecordTypeN`/`AddressN`/`MXPrefN`/`TTLN`; MX
//!   records survive only with `EmailType=MX` (billputer/go-namecheap#7).
//! - `namecheap.ssl.getInfo` (<https://www.namecheap.com/support/api/methods/ssl/get-info/>):
//!   `<SSLGetInfoResult Status ReplacedBy><CertificateDetails><AdministratorEmail>…
//!   <Certificates><Certificate>PEM</Certificate><CaCertificates><Certificate Type>
//!   <Certificate>PEM</Certificate></Certificate></CaCertificates></Certificates>`.
//! - `namecheap.ssl.reissue` (<https://www.namecheap.com/support/api/methods/ssl/reissue/>): only
//!   for ACTIVE certificates; answers `<SSLReissueResult ID="<new id>" IsSuccess="true">
//!   <DNSDCValidation ValueAvailable="true"><DNS domain><HostName/><Target/></DNS>` (the shape
//!   of Namecheap's WHMCS module and ISI.Extensions' models); the new certificate becomes
//!   active (the old one `replaced`, `ReplacedBy` the new) once its DCV CNAMEs are in the
//!   double's own DNS and it has been polled [`NamecheapDouble::polls_before_issue`] times.
//! - Test knobs: a page-size cap, latency on `getHosts` (to widen race windows), and
//!   injected HTTP failures.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};

use crate::serve::Served;

mod ssl;

pub use ssl::SslCert;
use ssl::{ssl_get_info, ssl_reissue};

/// One host record as Namecheap keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Relative name (`@`, `www`, `_acme-challenge`).
    pub name: String,
    /// `A`, `MX`, `TXT`, `URL`, …
    pub kind: String,
    /// Address or value.
    pub address: String,
    /// MX preference.
    pub mx_pref: String,
    /// TTL.
    pub ttl: String,
}

impl Host {
    /// A record with MXPref 10 and TTL 1800, the panel's defaults.
    #[must_use]
    pub fn new(name: &str, kind: &str, address: &str) -> Self {
        Self {
            name: name.into(),
            kind: kind.into(),
            address: address.into(),
            mx_pref: "10".into(),
            ttl: "1800".into(),
        }
    }
}

/// A domain's DNS as the double holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    /// `MX`, `MXE`, `FWD`, `OX`, …
    pub email_type: String,
    /// Whether the domain uses Namecheap's nameservers.
    pub using_our_dns: bool,
    /// The records.
    pub hosts: Vec<Host>,
}

/// Signs a CSR (PEM) into (leaf PEM, chain PEM) when a reissue completes.
pub type Signer = Arc<dyn Fn(&str) -> (String, String) + Send + Sync>;

struct Inner {
    api_user: String,
    username: String,
    api_key: String,
    whitelist: Vec<String>,
    zones: BTreeMap<String, Zone>,
    page_cap: Option<usize>,
    latency: Duration,
    failures: Vec<u16>,
    calls: Vec<String>,
    certs: BTreeMap<u64, SslCert>,
    next_cert: u64,
    polls_before_issue: u32,
    signer: Option<Signer>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running Namecheap double.
pub struct NamecheapDouble {
    inner: Shared,
    served: Served,
}

impl NamecheapDouble {
    /// An account `username` (API user the same) with key `api_key`, whitelisting `client_ip`.
    #[must_use]
    pub fn start(username: &str, api_key: &str, client_ip: &str) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            api_user: username.into(),
            username: username.into(),
            api_key: api_key.into(),
            whitelist: vec![client_ip.into()],
            zones: BTreeMap::new(),
            page_cap: None,
            latency: Duration::ZERO,
            failures: Vec::new(),
            calls: Vec::new(),
            certs: BTreeMap::new(),
            next_cert: 900_000,
            polls_before_issue: 1,
            signer: None,
        }));
        let app = Router::new()
            .route("/xml.response", get(by_query).post(by_form))
            .with_state(Arc::clone(&inner));
        Self {
            inner,
            served: Served::http(app),
        }
    }

    /// The `namecheap.api_url` that reaches this double.
    #[must_use]
    pub fn api_url(&self) -> String {
        format!("{}/xml.response", self.served.base_url())
    }

    /// Adds `domain` with `zone`.
    pub fn add_domain(&self, domain: &str, zone: Zone) {
        lock(&self.inner).zones.insert(domain.into(), zone);
    }

    /// The zone of `domain` as it is now.
    #[must_use]
    pub fn zone(&self, domain: &str) -> Zone {
        lock(&self.inner).zones[domain].clone()
    }

    /// Serves at most `cap` domains per `getList` page.
    pub fn cap_page_size(&self, cap: usize) {
        lock(&self.inner).page_cap = Some(cap);
    }

    /// Delays every `getHosts` answer by `latency`.
    pub fn host_latency(&self, latency: Duration) {
        lock(&self.inner).latency = latency;
    }

    /// Answers the next call with HTTP `status` (429 with `Retry-After: 1`).
    pub fn fail_next(&self, status: u16) {
        lock(&self.inner).failures.push(status);
    }

    /// Every command received, in order.
    #[must_use]
    pub fn calls(&self) -> Vec<String> {
        lock(&self.inner).calls.clone()
    }

    /// Adds an SSL certificate with `status`; returns its id.
    #[must_use]
    pub fn add_cert(&self, status: &str) -> u64 {
        let mut inner = lock(&self.inner);
        let id = inner.next_cert;
        inner.next_cert += 1;
        inner.certs.insert(
            id,
            SslCert {
                status: status.into(),
                replaced_by: 0,
                reissues: None,
                csr: String::new(),
                dcv: Vec::new(),
                polls: 0,
                issued: None,
            },
        );
        id
    }

    /// The certificate `id`.
    #[must_use]
    pub fn cert(&self, id: u64) -> SslCert {
        lock(&self.inner).certs[&id].clone()
    }

    /// Ids of every certificate, in order.
    #[must_use]
    pub fn cert_ids(&self) -> Vec<u64> {
        lock(&self.inner).certs.keys().copied().collect()
    }

    /// How a completed reissue is signed.
    pub fn sign_with(&self, signer: Signer) {
        lock(&self.inner).signer = Some(signer);
    }

    /// How many getInfo polls a reissue waits (with its CNAMEs in place) before it is issued.
    pub fn polls_before_issue(&self, polls: u32) {
        lock(&self.inner).polls_before_issue = polls;
    }
}

async fn by_query(
    State(inner): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    answer(&inner, &params).await
}

async fn by_form(
    State(inner): State<Shared>,
    Form(params): Form<Vec<(String, String)>>,
) -> Response {
    answer(&inner, &params).await
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// XML-escapes an attribute value or text.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn ok(command: &str, inside: &str) -> Response {
    xml(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ApiResponse Status=\"OK\" \
         xmlns=\"http://api.namecheap.com/xml.response\"><Errors /><Warnings />\
         <RequestedCommand>{command}</RequestedCommand><CommandResponse Type=\"{command}\">{inside}\
         </CommandResponse><Server>DOUBLE</Server><GMTTimeDifference>--5:00</GMTTimeDifference>\
         <ExecutionTime>0.01</ExecutionTime></ApiResponse>"
    ))
}

fn error(command: &str, number: u64, text: &str) -> Response {
    xml(format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<ApiResponse Status=\"ERROR\" \
         xmlns=\"http://api.namecheap.com/xml.response\"><Errors><Error Number=\"{number}\">{}\
         </Error></Errors><Warnings /><RequestedCommand>{command}</RequestedCommand>\
         <Server>DOUBLE</Server><GMTTimeDifference>--5:00</GMTTimeDifference>\
         <ExecutionTime>0.01</ExecutionTime></ApiResponse>",
        esc(text)
    ))
}

async fn answer(inner: &Shared, params: &[(String, String)]) -> Response {
    let command = param(params, "Command")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let latency = {
        let mut state = lock(inner);
        state.calls.push(command.clone());
        if !state.failures.is_empty() {
            let status = state.failures.remove(0);
            let status = StatusCode::from_u16(status).expect("status");
            return (status, [(header::RETRY_AFTER, "1")], "Service Unavailable").into_response();
        }
        if let Some(refusal) = authenticate(&state, params, &command) {
            return refusal;
        }
        state.latency
    };
    if command == "namecheap.domains.dns.gethosts" && !latency.is_zero() {
        // Read the state after the wait, as a slow server would: a write that lands meanwhile
        // is what the reader sees.
        tokio::time::sleep(latency).await;
    }
    let mut state = lock(inner);
    match command.as_str() {
        "namecheap.domains.getlist" => get_list(&state, params),
        "namecheap.domains.dns.gethosts" => get_hosts(&state, params),
        "namecheap.domains.dns.sethosts" => set_hosts(&mut state, params),
        "namecheap.ssl.getinfo" => ssl_get_info(&mut state, params),
        "namecheap.ssl.reissue" => ssl_reissue(&mut state, params),
        other => error(other, 1_010_900, "Invalid Command"),
    }
}

/// The refusal for a caller the account does not accept, if it does not.
fn authenticate(state: &Inner, params: &[(String, String)], command: &str) -> Option<Response> {
    if param(params, "ApiUser") != Some(state.api_user.as_str())
        || param(params, "UserName") != Some(state.username.as_str())
    {
        return Some(error(command, 1_011_104, "Parameter UserName is invalid"));
    }
    if param(params, "ApiKey") != Some(state.api_key.as_str()) {
        return Some(error(
            command,
            1_011_102,
            "API Key is invalid or API access has not been enabled",
        ));
    }
    let ip = param(params, "ClientIp").unwrap_or_default();
    if !state.whitelist.iter().any(|w| w == ip) {
        return Some(error(
            command,
            1_011_150,
            &format!("Invalid request IP: {ip}"),
        ));
    }
    None
}

fn get_list(state: &Inner, params: &[(String, String)]) -> Response {
    let command = "namecheap.domains.getList";
    let asked: usize = param(params, "PageSize")
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let size = state.page_cap.map_or(asked, |cap| asked.min(cap)).max(1);
    let page: usize = param(params, "Page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let domains = state
        .zones
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .enumerate()
        .map(|(i, (name, zone))| {
            format!(
                "<Domain ID=\"{}\" Name=\"{}\" User=\"{}\" IsExpired=\"false\" IsOurDNS=\"{}\"/>",
                100 + i,
                esc(name),
                esc(&state.username),
                zone.using_our_dns
            )
        })
        .collect::<Vec<_>>()
        .concat();
    ok(
        command,
        &format!(
            "<DomainGetListResult>{domains}</DomainGetListResult><Paging><TotalItems>{}</TotalItems>\
             <CurrentPage>{page}</CurrentPage><PageSize>{size}</PageSize></Paging>",
            state.zones.len()
        ),
    )
}

fn domain_of(params: &[(String, String)]) -> String {
    format!(
        "{}.{}",
        param(params, "SLD").unwrap_or_default(),
        param(params, "TLD").unwrap_or_default()
    )
}

fn get_hosts(state: &Inner, params: &[(String, String)]) -> Response {
    let command = "namecheap.domains.dns.getHosts";
    let domain = domain_of(params);
    let Some(zone) = state.zones.get(&domain) else {
        return error(command, 2_019_166, "Domain not found");
    };
    let hosts = zone
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            format!(
                "<host HostId=\"{}\" Name=\"{}\" Type=\"{}\" Address=\"{}\" MXPref=\"{}\" TTL=\"{}\" \
                 AssociatedAppTitle=\"\" FriendlyName=\"\" IsActive=\"true\" IsDDNSEnabled=\"false\" />",
                i + 1,
                esc(&h.name),
                esc(&h.kind),
                esc(&h.address),
                esc(&h.mx_pref),
                esc(&h.ttl)
            )
        })
        .collect::<Vec<_>>()
        .concat();
    ok(
        command,
        &format!(
            "<DomainDNSGetHostsResult Domain=\"{}\" EmailType=\"{}\" IsUsingOurDNS=\"{}\">{hosts}\
             </DomainDNSGetHostsResult>",
            esc(&domain),
            esc(&zone.email_type),
            zone.using_our_dns
        ),
    )
}

fn set_hosts(state: &mut Inner, params: &[(String, String)]) -> Response {
    let command = "namecheap.domains.dns.setHosts";
    let domain = domain_of(params);
    let Some(zone) = state.zones.get_mut(&domain) else {
        return error(command, 2_019_166, "Domain not found");
    };
    let email_type = param(params, "EmailType").unwrap_or_default().to_owned();
    let mut hosts = Vec::new();
    for n in 1.. {
        let Some(name) = param(params, &format!("HostName{n}")) else {
            break;
        };
        let field = |f: &str| {
            param(params, &format!("{f}{n}"))
                .unwrap_or_default()
                .to_owned()
        };
        let host = Host {
            name: name.to_owned(),
            kind: field("RecordType"),
            address: field("Address"),
            mx_pref: param(params, &format!("MXPref{n}"))
                .unwrap_or("10")
                .to_owned(),
            ttl: param(params, &format!("TTL{n}"))
                .unwrap_or("1800")
                .to_owned(),
        };
        if host.kind == "MX" && email_type != "MX" {
            continue;
        }
        hosts.push(host);
    }
    zone.hosts = hosts;
    zone.email_type = email_type;
    ok(
        command,
        &format!(
            "<DomainDNSSetHostsResult Domain=\"{}\" IsSuccess=\"true\" />",
            esc(&domain)
        ),
    )
}
