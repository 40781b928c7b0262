//! The SSL half of the Namecheap double: `namecheap.ssl.getInfo` and `namecheap.ssl.reissue`
//! in the shapes the parent module's doc cites, over the account's certificates.

use axum::response::Response;

use super::{Inner, error, esc, ok, param};

/// One SSL certificate in the account.
#[derive(Debug, Clone)]
pub struct SslCert {
    /// `active`, `newpurchase`, `purchased`, `replaced`, …
    pub status: String,
    /// The id of the certificate that replaced this one, 0 for none.
    pub replaced_by: u64,
    /// The certificate this one reissues.
    pub reissues: Option<u64>,
    /// The CSR it was (re)issued with.
    pub csr: String,
    /// The DCV CNAMEs asked for: host → target.
    pub dcv: Vec<(String, String)>,
    /// getInfo polls seen since the reissue.
    pub polls: u32,
    /// The issued leaf and chain, once active.
    pub issued: Option<(String, String)>,
}

/// The DNS names of a CSR, in order.
fn csr_names(csr: &str) -> Option<Vec<String>> {
    let parsed = rcgen::CertificateSigningRequestParams::from_pem(csr).ok()?;
    let names: Vec<String> = parsed
        .params
        .subject_alt_names
        .iter()
        .filter_map(|san| match san {
            rcgen::SanType::DnsName(name) => Some(name.to_string()),
            _ => None,
        })
        .collect();
    (!names.is_empty()).then_some(names)
}

fn cert_id(params: &[(String, String)]) -> Option<u64> {
    param(params, "CertificateID").and_then(|v| v.trim().parse().ok())
}

/// Whether every DCV CNAME of `cert` is in the double's zones.
fn dcv_in_place(state: &Inner, cert: &SslCert) -> bool {
    cert.dcv.iter().all(|(host, target)| {
        state.zones.iter().any(|(domain, zone)| {
            let Some(relative) = host.strip_suffix(&format!(".{domain}")) else {
                return false;
            };
            zone.hosts.iter().any(|h| {
                h.kind == "CNAME"
                    && h.name.eq_ignore_ascii_case(relative)
                    && h.address.trim_end_matches('.').eq_ignore_ascii_case(target)
            })
        })
    })
}

pub(super) fn ssl_get_info(state: &mut Inner, params: &[(String, String)]) -> Response {
    let command = "namecheap.ssl.getInfo";
    let Some(id) = cert_id(params).filter(|id| state.certs.contains_key(id)) else {
        return error(command, 2_011_294, "CertificateID is invalid");
    };
    let ready = {
        let cert = state.certs.get_mut(&id).expect("known");
        if cert.status == "purchased" {
            cert.polls += 1;
        }
        cert.status == "purchased" && cert.polls > state.polls_before_issue
    };
    if ready && dcv_in_place(state, &state.certs[&id]) {
        let signer = state.signer.clone().expect("a signer for reissues");
        let cert = state.certs.get_mut(&id).expect("known");
        cert.issued = Some(signer(&cert.csr));
        cert.status = "active".into();
        if let Some(old) = cert.reissues {
            let old = state.certs.get_mut(&old).expect("reissued");
            old.status = "replaced".into();
            old.replaced_by = id;
        }
    }
    let cert = &state.certs[&id];
    let certificates = match (&cert.issued, param(params, "Returncertificate")) {
        (Some((leaf, chain)), Some(v)) if v.eq_ignore_ascii_case("true") => {
            let cas = chain
                .split_inclusive("-----END CERTIFICATE-----")
                .filter(|c| c.contains("BEGIN CERTIFICATE"))
                .map(|c| {
                    format!(
                        "<Certificate Type=\"INTERMEDIATE\"><Certificate><![CDATA[{}]]></Certificate></Certificate>",
                        c.trim()
                    )
                })
                .collect::<Vec<_>>()
                .concat();
            format!(
                "<Certificates CertificateReturned=\"true\" ReturnType=\"INDIVIDUAL\">\
                 <Certificate><![CDATA[{leaf}]]></Certificate><CaCertificates>{cas}</CaCertificates>\
                 </Certificates>"
            )
        }
        _ => String::new(),
    };
    let description = match cert.status.as_str() {
        "active" => "Certificate is Active.",
        "purchased" => "Certificate is being processed.",
        "newpurchase" => "Certificate is not activated.",
        _ => "",
    };
    ok(
        command,
        &format!(
            "<SSLGetInfoResult Status=\"{}\" StatusDescription=\"{description}\" Type=\"positivessl\" \
             IssuedOn=\"\" Expires=\"\" ActivationExpireDate=\"\" OrderId=\"1\" ReplacedBy=\"{}\" SANSCount=\"0\">\
             <CertificateDetails><CSR><![CDATA[{}]]></CSR><CommonName>example</CommonName>\
             <AdministratorName>Ops</AdministratorName><AdministratorEmail>ops@example.com</AdministratorEmail>\
             {certificates}</CertificateDetails><Provider><OrderID>1</OrderID><Name>COMODO</Name></Provider>\
             </SSLGetInfoResult>",
            cert.status, cert.replaced_by, cert.csr
        ),
    )
}

pub(super) fn ssl_reissue(state: &mut Inner, params: &[(String, String)]) -> Response {
    let command = "namecheap.ssl.reissue";
    let Some(id) = cert_id(params).filter(|id| state.certs.contains_key(id)) else {
        return error(command, 2_011_294, "CertificateID is invalid");
    };
    if state.certs[&id].status != "active" {
        return error(command, 2_011_331, "Status is invalid");
    }
    let csr = param(params, "csr").unwrap_or_default().to_owned();
    if !csr.contains("BEGIN CERTIFICATE REQUEST") || param(params, "WebServerType").is_none() {
        return error(command, 2_011_166, "csr or WebServerType is missing");
    }
    if param(params, "AdminEmailAddress").is_none() {
        return error(command, 2_011_166, "AdminEmailAddress is missing");
    }
    // The names come from the CSR: its first SAN is validated by `ApproverEmail`, the rest
    // are listed in `DNSNames` with one method each in `DNSApproverEmails`.
    let Some(names) = csr_names(&csr) else {
        return error(command, 2_011_166, "csr is invalid");
    };
    let listed: Vec<&str> = param(params, "DNSNames")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let methods: Vec<&str> = param(params, "DNSApproverEmails")
        .map(|l| {
            l.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let extra: Vec<&str> = names[1..].iter().map(String::as_str).collect();
    if listed != extra || methods.len() != listed.len() {
        return error(
            command,
            2_011_166,
            "DNSNames must list the CSR's other names, with a DCV method each",
        );
    }
    if param(params, "ApproverEmail") != Some("CNAMECSRHASH")
        || methods.iter().any(|m| *m != "CNAMECSRHASH")
    {
        return error(
            command,
            2_011_166,
            "the double answers CNAMECSRHASH validation only",
        );
    }
    let new_id = state.next_cert;
    state.next_cert += 1;
    // Sectigo's shape: `_<hash>.<domain>` CNAME `<hash>.<hash>.sectigo.com`; the double's
    // hashes only need to be stable per reissue.
    let dcv: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                format!("_{new_id:x}dcv.{n}"),
                format!("{new_id:x}.ca{new_id:x}.sectigo.com"),
            )
        })
        .collect();
    let dns = dcv
        .iter()
        .zip(&names)
        .map(|((host, target), name)| {
            format!(
                "<DNS domain=\"{}\"><HostName><![CDATA[{host}]]></HostName><Target><![CDATA[{target}]]></Target></DNS>",
                esc(name)
            )
        })
        .collect::<Vec<_>>()
        .concat();
    state.certs.insert(
        new_id,
        SslCert {
            status: "purchased".into(),
            replaced_by: 0,
            reissues: Some(id),
            csr,
            dcv,
            polls: 0,
            issued: None,
        },
    );
    ok(
        command,
        &format!(
            "<SSLReissueResult ID=\"{new_id}\" IsSuccess=\"true\"><DNSDCValidation ValueAvailable=\"true\">{dns}\
             </DNSDCValidation></SSLReissueResult>"
        ),
    )
}
