//! `rota describe cert ID` as text, from a [`CertDetail`]: the spec, the conditions, the
//! installed cert, the backoff, the recent renewals and the last alert to each sink, in
//! kubectl's `describe` layout.

use rota_api::DomainName;
use rota_api::status::{BackoffState, Condition, ConditionType, RenewalRecord};
use rota_api::wire::{AlertDelivery, CertDetail, InstalledCert, KeyInfo};
use time::OffsetDateTime;

use crate::certs_view::condition_status;
use crate::human_time::{elapsed, relative, relative_and_timestamp, timestamp};
use crate::table;

/// The column the values of `Name:`-style fields start at.
const LABEL_WIDTH: usize = 14;

/// The whole description, newline-terminated.
pub(crate) fn describe(detail: &CertDetail, now: OffsetDateTime) -> String {
    let cert = &detail.summary;
    let domains: Vec<&str> = cert.domains.iter().map(DomainName::as_str).collect();
    let backoff = detail.backoff.as_ref().map_or_else(
        || "<none>".to_owned(),
        |b| backoff(b, detail.generation, now),
    );
    let mut out = fields(
        "",
        &[
            ("Name:", cert.id.to_string()),
            (
                "Description:",
                cert.description.clone().unwrap_or_else(|| "-".to_owned()),
            ),
            ("Domains:", domains.join(", ")),
            ("CA:", cert.ca_backend.clone()),
            (
                "DCV:",
                cert.dcv_backend.clone().unwrap_or_else(|| "-".to_owned()),
            ),
            ("Install:", cert.install_backend.clone()),
            ("Key path:", detail.key_path.clone()),
            ("Key:", key_line(detail.key.as_ref())),
        ]
        .into_iter()
        .chain(
            detail
                .next_key
                .as_ref()
                .map(|next| ("Next key:", next_key_line(next))),
        )
        .chain([
            ("Generation:", detail.generation.to_string()),
            ("Backoff:", backoff),
            ("Renews at:", renews_at(detail, now)),
            ("ARI window:", ari_window(detail, now)),
        ])
        .collect::<Vec<_>>(),
    );
    out.push_str(&section("Conditions:", conditions(&detail.conditions, now)));
    out.push_str(&section(
        "Installed certificate:",
        detail.installed.as_ref().map(|c| installed(c, now)),
    ));
    out.push_str(&section("Renewals:", renewals(&detail.renewals, now)));
    out.push_str(&section("Alerts:", alerts(&detail.alerts, now)));
    out
}

/// The key's type and pin, and any warning about it.
fn key_line(key: Option<&KeyInfo>) -> String {
    let Some(key) = key else {
        return "<none yet: generated at the first renewal>".to_owned();
    };
    let mut line = format!("{} (pin-sha256 {})", key.algorithm, key.pin_sha256);
    if let Some(warning) = &key.warning {
        line.push_str("\n  WARNING: ");
        line.push_str(warning);
    }
    line
}

/// The key prepared for the next switch (`key.rotation`): its pin, to publish ahead.
fn next_key_line(next: &KeyInfo) -> String {
    format!(
        "{} (pin-sha256 {}; used from the next key switch)",
        next.algorithm, next.pin_sha256
    )
}

/// When rota plans to renew, and whether the CA's window or the threshold decided it.
fn renews_at(detail: &CertDetail, now: OffsetDateTime) -> String {
    match (detail.renews_at, &detail.renewal_window) {
        (None, _) => "-".to_owned(),
        (Some(at), Some(_)) => format!(
            "{} (picked inside the CA's window)",
            stamp_then_age(at, now)
        ),
        (Some(at), None) => format!(
            "{} (renew_before_days, else renew_threshold_days, before expiry)",
            stamp_then_age(at, now)
        ),
    }
}

/// The CA's suggested renewal window (ARI), or why there is none.
fn ari_window(detail: &CertDetail, now: OffsetDateTime) -> String {
    let Some(window) = &detail.renewal_window else {
        return "<none: the CA publishes no renewal information for this cert>".to_owned();
    };
    let explanation = window
        .explanation_url
        .as_ref()
        .map(|url| format!("; explanation: {url}"))
        .unwrap_or_default();
    format!(
        "{} to {}; next check {}{explanation}",
        timestamp(window.start),
        timestamp(window.end),
        relative(window.next_check_at, now)
    )
}

/// `Name:        value` lines, values aligned at [`LABEL_WIDTH`] past `indent`.
fn fields(indent: &str, fields: &[(&str, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| format!("{indent}{name:<LABEL_WIDTH$}{value}\n"))
        .collect::<Vec<_>>()
        .concat()
}

/// `Name:` on its own line and `body` indented below it, or `Name:  <none>`.
fn section(name: &str, body: Option<String>) -> String {
    match body {
        Some(body) => format!("{name}\n{body}"),
        None => format!(
            "{name:<width$}<none>\n",
            width = LABEL_WIDTH.max(name.len() + 2)
        ),
    }
}

fn conditions(conditions: &[Condition], now: OffsetDateTime) -> Option<String> {
    let rows: Vec<Vec<String>> = conditions
        .iter()
        .map(|c| {
            vec![
                condition_type(c.type_).to_owned(),
                condition_status(c.status).to_owned(),
                c.reason.to_string(),
                relative_and_timestamp(c.last_transition_time, now),
                c.message.clone(),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| {
        table::render(
            "  ",
            &["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"],
            &rows,
        )
    })
}

fn condition_type(t: ConditionType) -> &'static str {
    match t {
        ConditionType::Ready => "Ready",
        ConditionType::Issuing => "Issuing",
        ConditionType::Failing => "Failing",
    }
}

fn installed(cert: &InstalledCert, now: OffsetDateTime) -> String {
    let key = if cert.key_matches {
        "yes"
    } else {
        "NO: the cert does not belong to the key at the key path"
    };
    fields(
        "  ",
        &[
            ("Serial:", cert.serial.clone()),
            ("Issuer:", cert.issuer.clone()),
            ("Not before:", stamp_then_age(cert.not_before, now)),
            ("Not after:", stamp_then_age(cert.not_after, now)),
            ("SANs:", cert.sans.join(", ")),
            ("Key matches:", key.to_owned()),
        ],
    )
}

fn stamp_then_age(t: OffsetDateTime, now: OffsetDateTime) -> String {
    format!("{} ({})", timestamp(t), relative(t, now))
}

fn backoff(backoff: &BackoffState, generation: u64, now: OffsetDateTime) -> String {
    let failures = backoff.failures;
    let plural = if failures == 1 { "" } else { "s" };
    let mut text = format!(
        "{failures} failure{plural} in a row; next automatic attempt {}",
        relative_and_timestamp(backoff.next_attempt_at, now)
    );
    if backoff.generation != generation {
        text.push_str(" (for an older spec: no longer applies)");
    }
    text
}

fn renewals(renewals: &[RenewalRecord], now: OffsetDateTime) -> Option<String> {
    let rows: Vec<Vec<String>> = renewals
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                if r.dry_run {
                    format!("{} (dry run)", r.trigger)
                } else {
                    r.trigger.to_string()
                },
                r.status.as_str().to_owned(),
                relative_and_timestamp(r.started_at, now),
                r.finished_at
                    .map_or_else(|| "-".to_owned(), |end| elapsed(end - r.started_at)),
                r.error.clone().unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    (!rows.is_empty()).then(|| {
        table::render(
            "  ",
            &["ID", "TRIGGER", "STATUS", "STARTED", "DURATION", "ERROR"],
            &rows,
        )
    })
}

/// The last alert each sink was sent about this cert, and whether it took it.
fn alerts(deliveries: &[AlertDelivery], now: OffsetDateTime) -> Option<String> {
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            vec![
                format!("{} {}", d.sink, d.sink_label),
                relative_and_timestamp(d.at, now),
                d.kind.as_str().to_owned(),
                d.error.clone().unwrap_or_else(|| "delivered".to_owned()),
            ]
        })
        .collect();
    (!rows.is_empty())
        .then(|| table::render("  ", &["SINK", "LAST SENT", "EVENT", "RESULT"], &rows))
}

#[cfg(test)]
mod tests {
    use rota_api::status::{ConditionStatus, Reason, RenewalStatus};
    use rota_api::wire::AlertDelivery;
    use rota_api::{AlertKind, CertId, RenewalWindow};
    use time::Duration;

    use super::*;
    use crate::certs_view::tests::{NOW, web};

    fn detail() -> CertDetail {
        let summary = web();
        let not_after = summary.not_after.expect("web is installed");
        CertDetail {
            summary,
            key_path: "/etc/rota/keys/web.key".into(),
            key: None,
            next_key: None,
            generation: 77,
            conditions: vec![Condition {
                type_: ConditionType::Ready,
                status: ConditionStatus::True,
                reason: Reason::UpToDate,
                message: "valid until 2025-05-01".into(),
                last_transition_time: NOW - Duration::days(3),
                observed_generation: 77,
            }],
            installed: Some(InstalledCert {
                serial: "0a1b2c".into(),
                issuer: "CN=R11, O=Let's Encrypt".into(),
                not_before: NOW - Duration::days(3),
                not_after,
                sans: vec!["example.com".into(), "www.example.com".into()],
                key_matches: true,
                key_type: "ECDSA P-256".into(),
                sha256_fingerprint: "AB:CD".into(),
            }),
            backoff: Some(BackoffState {
                failures: 2,
                next_attempt_at: NOW + Duration::hours(4),
                generation: 76,
            }),
            renewal_window: Some(RenewalWindow {
                start: NOW + Duration::days(30),
                end: NOW + Duration::days(32),
                explanation_url: Some("https://ca.test/incident".into()),
                next_check_at: NOW + Duration::hours(6),
            }),
            renews_at: Some(NOW + Duration::days(31)),
            renewals: vec![RenewalRecord {
                id: 42,
                cert_id: CertId::new("web").expect("valid id"),
                trigger: Reason::RenewalDue,
                status: RenewalStatus::Succeeded,
                error: None,
                started_at: NOW - Duration::days(3),
                finished_at: Some(NOW - Duration::days(3) + Duration::milliseconds(4_200)),
                dry_run: false,
            }],
            alerts: vec![
                AlertDelivery {
                    sink: 0,
                    sink_label: "email to ops@example.com".into(),
                    kind: AlertKind::RenewalFailed,
                    at: NOW - Duration::days(4),
                    error: None,
                },
                AlertDelivery {
                    sink: 1,
                    sink_label: "webhook to https://hooks.example.com".into(),
                    kind: AlertKind::RenewalRecovered,
                    at: NOW - Duration::days(3),
                    error: Some("webhook: the receiver answered 404 Not Found".into()),
                },
            ],
        }
    }

    #[test]
    fn describe_shows_spec_conditions_installed_cert_and_renewals() {
        assert_eq!(
            describe(&detail(), NOW),
            "\
Name:         web
Description:  public site
Domains:      example.com, www.example.com
CA:           acme
DCV:          cloudflare
Install:      nginx
Key path:     /etc/rota/keys/web.key
Key:          <none yet: generated at the first renewal>
Generation:   77
Backoff:      2 failures in a row; next automatic attempt in 4h (2025-03-01T16:00:00Z) (for an older spec: no longer applies)
Renews at:    2025-04-01T12:00:00Z (in 31d) (picked inside the CA's window)
ARI window:   2025-03-31T12:00:00Z to 2025-04-02T12:00:00Z; next check in 6h; explanation: https://ca.test/incident
Conditions:
  TYPE    STATUS   REASON     LAST TRANSITION                 MESSAGE
  Ready   True     UpToDate   3d ago (2025-02-26T12:00:00Z)   valid until 2025-05-01
Installed certificate:
  Serial:       0a1b2c
  Issuer:       CN=R11, O=Let's Encrypt
  Not before:   2025-02-26T12:00:00Z (3d ago)
  Not after:    2025-05-01T15:00:00Z (in 61d)
  SANs:         example.com, www.example.com
  Key matches:  yes
Renewals:
  ID   TRIGGER      STATUS      STARTED                         DURATION   ERROR
  42   RenewalDue   succeeded   3d ago (2025-02-26T12:00:00Z)   4.2s       -
Alerts:
  SINK                                     LAST SENT                       EVENT               RESULT
  0 email to ops@example.com               4d ago (2025-02-25T12:00:00Z)   renewal_failed      delivered
  1 webhook to https://hooks.example.com   3d ago (2025-02-26T12:00:00Z)   renewal_recovered   webhook: the receiver answered 404 Not Found
"
        );
    }

    #[test]
    fn missing_parts_read_none() {
        let mut detail = detail();
        detail.installed = None;
        detail.backoff = None;
        detail.renewal_window = None;
        detail.renews_at = None;
        detail.conditions.clear();
        detail.renewals.clear();
        detail.alerts.clear();
        let text = describe(&detail, NOW);
        for line in [
            "Backoff:      <none>",
            "Renews at:    -",
            "ARI window:   <none: the CA publishes no renewal information for this cert>",
            "Conditions:   <none>",
            "Installed certificate:  <none>",
            "Renewals:     <none>",
            "Alerts:       <none>",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} in\n{text}");
        }
    }
}
