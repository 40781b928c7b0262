//! `rota log ID` as text, from a [`RenewalLog`]: the renewal's header, then every audited step
//! with its time. [`step_line`] is shared with `rota renew`, which prints the same lines live.

use rota_api::status::{StepEvent, StepStatus};
use rota_api::wire::RenewalLog;
use time::OffsetDateTime;

use crate::human_time::{elapsed, relative_and_timestamp, timestamp};

/// The longest step name (`check_challenges`), so messages line up.
const STEP_WIDTH: usize = 16;

/// `✓ load_key          generated ECDSA P-256 key`: a mark for the status, the step, its message.
pub(crate) fn step_line(event: &StepEvent) -> String {
    let mark = match event.status {
        StepStatus::Started => '…',
        StepStatus::Succeeded => '✓',
        StepStatus::Failed => '✗',
    };
    format!(
        "{mark} {:<STEP_WIDTH$}  {}",
        event.step.as_str(),
        event.message
    )
    .trim_end()
    .to_owned()
}

/// The whole log, newline-terminated.
pub(crate) fn renewal_log(log: &RenewalLog, now: OffsetDateTime) -> String {
    let renewal = &log.renewal;
    let finished = renewal.finished_at.map_or_else(
        || "-".to_owned(),
        |end| {
            format!(
                "{} (took {})",
                timestamp(end),
                elapsed(end - renewal.started_at)
            )
        },
    );
    let header = [
        ("Renewal:", renewal.id.to_string()),
        ("Cert:", renewal.cert_id.to_string()),
        ("Trigger:", renewal.trigger.to_string()),
        ("Status:", renewal.status.as_str().to_owned()),
        ("Started:", relative_and_timestamp(renewal.started_at, now)),
        ("Finished:", finished),
        (
            "Error:",
            renewal.error.clone().unwrap_or_else(|| "-".to_owned()),
        ),
    ];
    let mut out: Vec<String> = header
        .iter()
        .map(|(name, value)| format!("{name:<10}{value}\n"))
        .collect();
    if renewal.dry_run {
        out.insert(
            3,
            "Dry run:  yes (nothing was installed; the live cert, key and backoff were left as they were)\n"
                .to_owned(),
        );
    }
    out.push(
        if log.events.is_empty() {
            "Steps:    <none>\n"
        } else {
            "Steps:\n"
        }
        .to_owned(),
    );
    out.extend(log.events.iter().map(|event| {
        format!(
            "  {}  +{:<7}  {}\n",
            timestamp(event.at),
            elapsed(event.at - renewal.started_at),
            step_line(event)
        )
    }));
    out.concat()
}

#[cfg(test)]
mod tests {
    use rota_api::CertId;
    use rota_api::status::{Reason, RenewalRecord, RenewalStatus, Step};
    use time::Duration;

    use super::*;
    use crate::certs_view::tests::NOW;

    fn event(seq: u32, step: Step, status: StepStatus, message: &str, ms: i64) -> StepEvent {
        StepEvent {
            renewal_id: 7,
            seq,
            step,
            status,
            message: message.into(),
            at: NOW - Duration::minutes(3) + Duration::milliseconds(ms),
        }
    }

    #[test]
    fn step_lines_mark_the_outcome_and_align_messages() {
        let rows = [
            (
                StepStatus::Started,
                Step::AwaitIssuance,
                "polling",
                "… await_issuance    polling",
            ),
            (
                StepStatus::Succeeded,
                Step::LoadKey,
                "ok",
                "✓ load_key          ok",
            ),
            (
                StepStatus::Failed,
                Step::Install,
                "denied",
                "✗ install           denied",
            ),
            (
                StepStatus::Succeeded,
                Step::CheckChallenges,
                "",
                "✓ check_challenges",
            ),
        ];
        for (status, step, message, expected) in rows {
            assert_eq!(step_line(&event(1, step, status, message, 0)), expected);
        }
    }

    #[test]
    fn log_shows_the_renewal_then_each_step_with_its_time() {
        let log = RenewalLog {
            renewal: RenewalRecord {
                id: 7,
                cert_id: CertId::new("web").expect("valid id"),
                trigger: Reason::Forced,
                status: RenewalStatus::Failed,
                error: Some("install: nginx -t failed".into()),
                started_at: NOW - Duration::minutes(3),
                finished_at: Some(NOW - Duration::minutes(3) + Duration::seconds(75)),
                dry_run: false,
            },
            events: vec![
                event(
                    1,
                    Step::LoadKey,
                    StepStatus::Succeeded,
                    "generated ECDSA P-256 key",
                    120,
                ),
                event(
                    2,
                    Step::Install,
                    StepStatus::Failed,
                    "nginx -t failed",
                    75_000,
                ),
            ],
        };
        assert_eq!(
            renewal_log(&log, NOW),
            "\
Renewal:  7
Cert:     web
Trigger:  Forced
Status:   failed
Started:  3m ago (2025-03-01T11:57:00Z)
Finished: 2025-03-01T11:58:15Z (took 1m15s)
Error:    install: nginx -t failed
Steps:
  2025-03-01T11:57:00Z  +0.1s     ✓ load_key          generated ECDSA P-256 key
  2025-03-01T11:58:15Z  +1m15s    ✗ install           nginx -t failed
"
        );
    }
}
