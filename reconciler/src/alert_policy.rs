//! When an alert goes out: pure decisions, table-tested. Alerts are about conditions that
//! last (a cert failing to renew, a cert close to expiry and not Ready), so each cert and kind
//! has an episode: an alert goes out when the condition begins, then at most once a day while
//! it lasts — never once per sweep or per retry — and the episode closes when it ends. A
//! success that closes a failure episode is a recovery, announced once.

use time::{Duration, OffsetDateTime};

use rota_api::AlertKind;
use rota_api::status::Reason;
use rota_store::AlertEpisode;

/// While a condition lasts, its alert is repeated after this long.
pub(crate) const REPEAT_AFTER: Duration = Duration::days(1);

/// The kinds whose episodes are failures of a renewal; a success after one is a recovery.
pub(crate) const FAILURE_KINDS: [AlertKind; 2] =
    [AlertKind::RenewalFailed, AlertKind::InstallFailed];

/// What to do about one cert and kind now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether to send the alert now.
    pub send: bool,
    /// The episode to keep; `None` closes it.
    pub episode: Option<AlertEpisode>,
}

/// Whether to alert about a condition that holds (`active`) or has ended at `now`, given the
/// open episode of its kind.
pub(crate) fn decide(active: bool, open: Option<AlertEpisode>, now: OffsetDateTime) -> Verdict {
    let sent = |since| Verdict {
        send: true,
        episode: Some(AlertEpisode {
            since,
            last_sent_at: now,
        }),
    };
    match open {
        _ if !active => Verdict {
            send: false,
            episode: None,
        },
        None => sent(now),
        Some(episode) if now - episode.last_sent_at >= REPEAT_AFTER => sent(episode.since),
        Some(episode) => Verdict {
            send: false,
            episode: Some(episode),
        },
    }
}

/// Which failure kind a renewal that failed for `reason` is: an install failure (the CA
/// issued, the cert did not land — also a cluster node whose key does not match the cert the
/// cluster issued) or any other.
pub(crate) fn failure_kind(reason: Reason) -> AlertKind {
    if matches!(reason, Reason::InstallFailed | Reason::KeyMismatch) {
        AlertKind::InstallFailed
    } else {
        AlertKind::RenewalFailed
    }
}

/// What the expiry warning looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExpiryFacts {
    /// The installed cert's notAfter, if one is installed.
    pub not_after: Option<OffsetDateTime>,
    /// Whether the cert is Ready.
    pub ready: bool,
    /// Whether its last renewal of the current spec failed.
    pub failing: bool,
}

/// Whether the installed cert calls for an expiry warning at `now`: within `alert_before` of
/// its end (or past it), not Ready, and its renewal failing — a cert merely about to be renewed
/// is no news, and one with nothing installed is covered by the failure alert.
pub(crate) fn expiry_warning_due(
    facts: ExpiryFacts,
    alert_before: Duration,
    now: OffsetDateTime,
) -> bool {
    facts.failing && !facts.ready && facts.not_after.is_some_and(|end| end - now <= alert_before)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn episode(since_hours_ago: i64, sent_hours_ago: i64) -> AlertEpisode {
        AlertEpisode {
            since: NOW - Duration::hours(since_hours_ago),
            last_sent_at: NOW - Duration::hours(sent_hours_ago),
        }
    }

    #[test]
    fn an_alert_goes_out_when_a_condition_begins_then_daily() {
        #[rustfmt::skip]
        let rows = [
            ("begins: send, open the episode", true, None,
                Verdict { send: true, episode: Some(episode(0, 0)) }),
            ("still on, sent an hour ago: hold", true, Some(episode(5, 1)),
                Verdict { send: false, episode: Some(episode(5, 1)) }),
            ("still on, sent 23h59m ago: hold", true,
                Some(AlertEpisode { since: NOW - Duration::days(3), last_sent_at: NOW - Duration::hours(24) + Duration::minutes(1) }),
                Verdict { send: false, episode: Some(AlertEpisode {
                    since: NOW - Duration::days(3),
                    last_sent_at: NOW - Duration::hours(24) + Duration::minutes(1),
                }) }),
            ("still on, sent a day ago: send again, same episode", true, Some(episode(48, 24)),
                Verdict { send: true, episode: Some(episode(48, 0)) }),
            ("ended: close quietly", false, Some(episode(5, 1)),
                Verdict { send: false, episode: None }),
            ("never began: nothing", false, None, Verdict { send: false, episode: None }),
        ];
        for (why, active, open, want) in rows {
            assert_eq!(decide(active, open, NOW), want, "{why}");
        }
    }

    #[test]
    fn fifty_sweeps_of_a_lasting_condition_send_once() {
        let mut open = None;
        let mut sent = 0;
        for sweep in 0..50 {
            let verdict = decide(true, open, NOW + Duration::minutes(20 * sweep));
            sent += usize::from(verdict.send);
            open = verdict.episode;
        }
        assert_eq!(sent, 1, "50 sweeps over 16 hours");
    }

    #[test]
    fn an_install_failure_is_its_own_kind() {
        for (reason, want) in [
            (Reason::InstallFailed, AlertKind::InstallFailed),
            (Reason::KeyMismatch, AlertKind::InstallFailed),
            (Reason::Refused, AlertKind::RenewalFailed),
            (Reason::Timeout, AlertKind::RenewalFailed),
            (Reason::DcvFailed, AlertKind::RenewalFailed),
        ] {
            assert_eq!(failure_kind(reason), want, "{reason}");
        }
    }

    #[test]
    fn an_expiry_warning_needs_a_close_end_a_cert_not_ready_and_a_failing_renewal() {
        let window = Duration::days(14);
        let facts = |days: Option<i64>, ready, failing| ExpiryFacts {
            not_after: days.map(|d| NOW + Duration::days(d)),
            ready,
            failing,
        };
        #[rustfmt::skip]
        let rows = [
            ("13 days left, failing", facts(Some(13), false, true), true),
            ("exactly 14 days left, failing", facts(Some(14), false, true), true),
            ("15 days left, failing", facts(Some(15), false, true), false),
            ("expired, failing", facts(Some(-1), false, true), true),
            ("13 days left but Ready (the CA's window is later)", facts(Some(13), true, true), false),
            ("13 days left, not Ready, about to renew: no news yet", facts(Some(13), false, false), false),
            ("nothing installed: the failure alert covers it", facts(None, false, true), false),
        ];
        for (why, facts, want) in rows {
            assert_eq!(expiry_warning_due(facts, window, NOW), want, "{why}");
        }
    }
}
