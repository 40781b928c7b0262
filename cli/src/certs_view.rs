//! `rota status` and `rota get certs` as text: one row per cert from [`CertSummary`]s.

use rota_api::DomainName;
use rota_api::config::ConfigIssue;
use rota_api::status::ConditionStatus;
use rota_api::wire::{CertSummary, StatusResponse};
use time::OffsetDateTime;

use crate::human_time::{coarse, days_left, elapsed, timestamp};
use crate::table;

/// `rota status`: a line about rotad, then one line per cert.
pub(crate) fn status_text(status: &StatusResponse, now: OffsetDateTime) -> String {
    let n = status.certs.len();
    let observed = match status.observed_at {
        Some(at) => format!("all observed in {}", elapsed(at - status.started_at)),
        None => "still observing installed certs".to_owned(),
    };
    let mut out = format!(
        "rotad {}   config {}   up {}   {n} cert{}   {observed}
{}",
        status.version,
        status.config_path,
        coarse(now - status.started_at),
        if n == 1 { "" } else { "s" },
        restart_required(&status.restart_required),
    );
    let rows: Vec<Vec<String>> = status
        .certs
        .iter()
        .map(|cert| {
            vec![
                cert.id.to_string(),
                domains(cert),
                days_left(cert.not_after, now),
                cert.ready_reason.to_string(),
                last_renewal(cert),
            ]
        })
        .collect();
    out.push_str(&table::render(
        "",
        &["CERT", "DOMAINS", "EXPIRES", "READY", "LAST RENEWAL"],
        &rows,
    ));
    out
}

/// The line saying which settings wait for a restart, or nothing.
fn restart_required(fields: &[String]) -> String {
    if fields.is_empty() {
        return String::new();
    }
    format!(
        "restart required: {} (changed in the config file; rotad keeps the running values until it restarts)\n",
        fields.join(", ")
    )
}

/// The warning `rota status` puts on stderr when rotad refused the last config change.
pub(crate) fn refused_config_warning(issues: &[ConfigIssue]) -> Option<String> {
    if issues.is_empty() {
        return None;
    }
    let mut lines = vec![
        "warning: rotad refused the last config change and still runs the previous config:"
            .to_owned(),
    ];
    lines.extend(
        issues
            .iter()
            .map(|issue| format!("  {}", issue.to_string().replace('\n', "\n  "))),
    );
    lines.push("fix the file and save it again, or check it with `rota check -f FILE`".to_owned());
    Some(lines.join("\n") + "\n")
}

/// `rota get certs`, optionally with the backend and notAfter columns of `-o wide`.
pub(crate) fn certs_table(certs: &[CertSummary], wide: bool, now: OffsetDateTime) -> String {
    let (headers, rows) = certs_grid(certs, wide, now);
    table::render("", &headers, &rows)
}

/// The headers and cells of [`certs_table`], for a watch that prints rows one at a time.
pub(crate) fn certs_grid(
    certs: &[CertSummary],
    wide: bool,
    now: OffsetDateTime,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let mut headers = vec![
        "ID",
        "DOMAINS",
        "READY",
        "REASON",
        "EXPIRES",
        "LAST RENEWAL",
    ];
    if wide {
        headers.extend(["CA", "DCV", "INSTALL", "NOT AFTER"]);
    }
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|cert| {
            let mut row = vec![
                cert.id.to_string(),
                domains(cert),
                condition_status(cert.ready).to_owned(),
                cert.ready_reason.to_string(),
                days_left(cert.not_after, now),
                last_renewal(cert),
            ];
            if wide {
                row.extend([
                    cert.ca_backend.clone(),
                    cert.dcv_backend.clone().unwrap_or_else(|| "-".to_owned()),
                    cert.install_backend.clone(),
                    cert.not_after.map_or_else(|| "-".to_owned(), timestamp),
                ]);
            }
            row
        })
        .collect();
    (headers, rows)
}

/// `True`, `False` or `Unknown`, as in the API.
pub(crate) fn condition_status(status: ConditionStatus) -> &'static str {
    match status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
        ConditionStatus::Unknown => "Unknown",
    }
}

fn domains(cert: &CertSummary) -> String {
    let names: Vec<&str> = cert.domains.iter().map(DomainName::as_str).collect();
    names.join(",")
}

fn last_renewal(cert: &CertSummary) -> String {
    if cert.issuing {
        return "running".to_owned();
    }
    cert.last_renewal_status
        .map_or("-", |s| s.as_str())
        .to_owned()
}

#[cfg(test)]
pub(crate) mod tests {
    use rota_api::CertId;
    use rota_api::status::{Reason, RenewalStatus};
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    /// The fixed "now" every view test renders against.
    pub(crate) const NOW: OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);

    /// A cert that is installed and up to date, valid for 61 more days.
    pub(crate) fn web() -> CertSummary {
        CertSummary {
            id: CertId::new("web").expect("valid id"),
            description: Some("public site".into()),
            domains: vec![
                DomainName::new("example.com").expect("valid name"),
                DomainName::new("www.example.com").expect("valid name"),
            ],
            ca_backend: "acme".into(),
            dcv_backend: Some("cloudflare".into()),
            install_backend: "nginx".into(),
            not_after: Some(NOW + Duration::days(61) + Duration::hours(3)),
            ready: ConditionStatus::True,
            ready_reason: Reason::UpToDate,
            issuing: false,
            last_renewal_status: Some(RenewalStatus::Succeeded),
        }
    }

    /// A cert that was never issued and whose first renewal is running.
    fn nas() -> CertSummary {
        CertSummary {
            id: CertId::new("nas").expect("valid id"),
            description: None,
            domains: vec![DomainName::new("nas.lan").expect("valid name")],
            ca_backend: "local".into(),
            dcv_backend: None,
            install_backend: "filesystem".into(),
            not_after: None,
            ready: ConditionStatus::False,
            ready_reason: Reason::NotInstalled,
            issuing: true,
            last_renewal_status: None,
        }
    }

    #[test]
    fn get_certs_is_a_kubectl_table() {
        assert_eq!(
            certs_table(&[web(), nas()], false, NOW),
            "\
ID    DOMAINS                       READY   REASON         EXPIRES   LAST RENEWAL
web   example.com,www.example.com   True    UpToDate       61d       succeeded
nas   nas.lan                       False   NotInstalled   -         running
"
        );
    }

    #[test]
    fn wide_adds_backends_and_not_after() {
        let wide = certs_table(&[web(), nas()], true, NOW);
        let lines: Vec<&str> = wide.lines().collect();
        assert!(lines[0].ends_with("LAST RENEWAL   CA      DCV          INSTALL      NOT AFTER"));
        assert!(lines[1].ends_with("acme    cloudflare   nginx        2025-05-01T15:00:00Z"));
        assert!(lines[2].ends_with("local   -            filesystem   -"));
    }

    #[test]
    fn status_has_a_daemon_line_then_one_line_per_cert() {
        let status = StatusResponse {
            version: "0.6.0".into(),
            config_path: "/etc/rota/rota.yaml".into(),
            started_at: NOW - Duration::hours(5),
            observed_at: Some(NOW - Duration::hours(5) + Duration::milliseconds(40)),
            config_errors: vec![],
            restart_required: vec![],
            certs: vec![web(), nas()],
        };
        assert_eq!(
            status_text(&status, NOW),
            "\
rotad 0.6.0   config /etc/rota/rota.yaml   up 5h   2 certs   all observed in 0.0s
CERT   DOMAINS                       EXPIRES   READY          LAST RENEWAL
web    example.com,www.example.com   61d       UpToDate       succeeded
nas    nas.lan                       -         NotInstalled   running
"
        );
        let pending = StatusResponse {
            restart_required: vec!["daemon.listen_addr".into(), "daemon.tls".into()],
            ..status
        };
        assert!(
            status_text(&pending, NOW).lines().nth(1).is_some_and(
                |l| l.starts_with("restart required: daemon.listen_addr, daemon.tls (")
            ),
            "{}",
            status_text(&pending, NOW)
        );
    }

    #[test]
    fn refused_config_is_a_warning_listing_each_issue() {
        assert_eq!(refused_config_warning(&[]), None);
        let issue = ConfigIssue {
            file: "/etc/rota/rota.yaml".into(),
            line: 4,
            column: 7,
            path: "certs[0].ca.kind".into(),
            message: "unknown kind `acmee`".into(),
            hint: Some("one of local, namecheap, acme".into()),
        };
        let warning = refused_config_warning(&[issue]).expect("a warning");
        assert_eq!(
            warning,
            "\
warning: rotad refused the last config change and still runs the previous config:
  /etc/rota/rota.yaml:4:7: certs[0].ca.kind: unknown kind `acmee`
      hint: one of local, namecheap, acme
fix the file and save it again, or check it with `rota check -f FILE`
"
        );
    }
}
