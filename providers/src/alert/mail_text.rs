//! The body of an alert mail: what happened in one line, then the facts an operator acts on
//! (domains, the error, the cert's end, the next attempt) and the last audited steps of the
//! latest renewal, so the mail alone says where it broke.

use std::fmt::Write as _;

use rota_api::{AlertEvent, DomainName};

use super::rfc3339;

/// The plain-text body of the mail for `event`.
pub(super) fn alert_body(event: &AlertEvent) -> String {
    let details = &event.details;
    let domains: Vec<&str> = details.domains.iter().map(DomainName::as_str).collect();
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
    let mut body = format!("{}\n\n", event.message);
    for (label, value) in [
        ("Cert", event.cert_id.to_string()),
        ("Event", event.kind.as_str().to_owned()),
        (
            "Domains",
            or_dash((!domains.is_empty()).then(|| domains.join(", "))),
        ),
        ("Error", or_dash(details.error.clone())),
        ("Expires", or_dash(details.not_after.map(rfc3339))),
        (
            "Next attempt",
            or_dash(details.next_attempt_at.map(rfc3339)),
        ),
        ("Sent", rfc3339(event.timestamp)),
    ] {
        let _ = writeln!(body, "{:<14}{value}", format!("{label}:"));
    }
    if !details.recent_steps.is_empty() {
        body.push_str("\nLast steps of the latest renewal:\n");
        for step in &details.recent_steps {
            let _ = writeln!(
                body,
                "  {}  {:<18} {:<9} {}",
                rfc3339(step.at),
                step.step.as_str(),
                step.status.as_str(),
                step.message
            );
        }
    }
    let _ = write!(
        body,
        "\n`rota describe cert {0}` and `rota log {0}` show the rest.\n",
        event.cert_id
    );
    body
}

#[cfg(test)]
mod tests {
    use rota_api::status::{Step, StepEvent, StepStatus};
    use rota_api::{AlertDetails, AlertKind, CertId};
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_body_carries_domains_error_next_attempt_and_steps() {
        let at = datetime!(2026-12-01 12:00 UTC);
        let event = AlertEvent {
            cert_id: CertId::new("web").unwrap(),
            kind: AlertKind::RenewalFailed,
            message: "await_issuance failed: CAA forbids issuance".into(),
            timestamp: at,
            details: AlertDetails {
                domains: vec![
                    DomainName::new("a.test").unwrap(),
                    DomainName::new("www.a.test").unwrap(),
                ],
                error: Some("await_issuance failed: CAA forbids issuance".into()),
                not_after: None,
                next_attempt_at: Some(datetime!(2026-12-01 12:10 UTC)),
                recent_steps: vec![StepEvent {
                    renewal_id: 7,
                    seq: 9,
                    step: Step::AwaitIssuance,
                    status: StepStatus::Failed,
                    message: "CAA forbids issuance".into(),
                    at,
                }],
            },
        };
        assert_eq!(
            alert_body(&event),
            "\
await_issuance failed: CAA forbids issuance

Cert:         web
Event:        renewal_failed
Domains:      a.test, www.a.test
Error:        await_issuance failed: CAA forbids issuance
Expires:      -
Next attempt: 2026-12-01T12:10:00Z
Sent:         2026-12-01T12:00:00Z

Last steps of the latest renewal:
  2026-12-01T12:00:00Z  await_issuance     failed    CAA forbids issuance

`rota describe cert web` and `rota log web` show the rest.
"
        );
    }
}
