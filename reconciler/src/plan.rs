//! The planner: a pure function from a cert's spec, what was observed and the clock to what
//! should happen. "Needs renewal" is an ordered chain of small policies; the first that fires
//! gives the reason, which goes straight into the `Ready` condition and the audit row.

use std::collections::BTreeSet;

use time::{Duration, OffsetDateTime};

use rota_api::DomainName;
use rota_api::status::{BackoffState, Reason};
use rota_api::wire::InstalledCert;

use crate::backoff;

/// What observing a cert found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// No cert is installed.
    NotInstalled,
    /// A cert is installed; these are its facts.
    Installed(InstalledCert),
    /// Something is installed but could not be read back or parsed.
    Unreadable(String),
}

/// Everything the planner looks at for one cert.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The spec's domains.
    pub domains: &'a [DomainName],
    /// Renew when fewer than this remain before notAfter.
    pub renew_threshold: Duration,
    /// The spec generation.
    pub generation: u64,
    /// What is installed.
    pub observed: &'a Observation,
    /// The stored failure backoff, if any.
    pub backoff: Option<&'a BackoffState>,
    /// When the CA's renewal window (ARI) says to renew, if it publishes one; it then
    /// replaces the `renew_threshold` rule.
    pub ari_renew_at: Option<OffsetDateTime>,
    /// Whether the installed cert is one rota revoked.
    pub revoked: bool,
}

/// What to do about one cert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing until `renew_at`.
    UpToDate {
        /// When the renewal window opens.
        renew_at: OffsetDateTime,
    },
    /// Renew now, for this reason.
    Renew(Reason),
    /// It needs renewing, but the failure backoff holds it until `until`.
    BackingOff {
        /// Why it needs renewing.
        reason: Reason,
        /// When the next automatic attempt may run.
        until: OffsetDateTime,
    },
}

type Policy = fn(&PlanInput<'_>, OffsetDateTime) -> Option<Reason>;

/// The renewal policies, most fundamental first.
const POLICIES: &[Policy] = &[
    not_installed,
    unreadable,
    revoked,
    key_mismatch,
    domains_changed,
    expired,
    ari_window,
    inside_renewal_window,
];

/// Decides what to do about one cert at `now`.
#[must_use]
pub fn plan(input: &PlanInput<'_>, now: OffsetDateTime) -> Plan {
    match POLICIES.iter().find_map(|policy| policy(input, now)) {
        Some(reason) if backoff::holds(input.backoff, input.generation, now) => Plan::BackingOff {
            reason,
            until: input.backoff.map_or(now, |b| b.next_attempt_at),
        },
        Some(reason) => Plan::Renew(reason),
        None => Plan::UpToDate {
            renew_at: installed(input).map_or(now, |c| {
                renewal_time(c, input.ari_renew_at, input.renew_threshold)
            }),
        },
    }
}

/// When `installed` is due for renewal: the time picked inside the CA's renewal window when
/// it publishes one, else `renew_threshold` before notAfter. The one place this is computed.
#[must_use]
pub fn renewal_time(
    installed: &InstalledCert,
    ari_renew_at: Option<OffsetDateTime>,
    renew_threshold: Duration,
) -> OffsetDateTime {
    ari_renew_at.unwrap_or_else(|| installed.not_after.saturating_sub(renew_threshold))
}

/// Whether renewing for `reason` means the cert has no valid cert for its spec (nothing
/// installed, unreadable, revoked, wrong key or names, expired), as opposed to being merely
/// due: the former is acted on at once, even at start.
#[must_use]
pub fn lacks_valid_cert(reason: Reason) -> bool {
    !matches!(reason, Reason::RenewalDue | Reason::AriWindow)
}

fn installed<'a>(input: &PlanInput<'a>) -> Option<&'a InstalledCert> {
    match input.observed {
        Observation::Installed(cert) => Some(cert),
        _ => None,
    }
}

fn not_installed(input: &PlanInput<'_>, _: OffsetDateTime) -> Option<Reason> {
    matches!(input.observed, Observation::NotInstalled).then_some(Reason::NotInstalled)
}

fn unreadable(input: &PlanInput<'_>, _: OffsetDateTime) -> Option<Reason> {
    matches!(input.observed, Observation::Unreadable(_)).then_some(Reason::ObserveFailed)
}

fn revoked(input: &PlanInput<'_>, _: OffsetDateTime) -> Option<Reason> {
    input.revoked.then_some(Reason::Revoked)
}

fn key_mismatch(input: &PlanInput<'_>, _: OffsetDateTime) -> Option<Reason> {
    installed(input)
        .filter(|c| !c.key_matches)
        .map(|_| Reason::KeyMismatch)
}

fn domains_changed(input: &PlanInput<'_>, _: OffsetDateTime) -> Option<Reason> {
    let cert = installed(input)?;
    (!names_match(input.domains, &cert.sans)).then_some(Reason::DomainsChanged)
}

/// Whether a cert's `sans` are exactly the spec's `domains`, whatever their order and case.
pub(crate) fn names_match(domains: &[DomainName], sans: &[String]) -> bool {
    let wanted: BTreeSet<&str> = domains.iter().map(DomainName::as_str).collect();
    let have: BTreeSet<String> = sans.iter().map(|s| s.to_ascii_lowercase()).collect();
    wanted == have.iter().map(String::as_str).collect()
}

fn expired(input: &PlanInput<'_>, now: OffsetDateTime) -> Option<Reason> {
    installed(input)
        .filter(|c| c.not_after <= now)
        .map(|_| Reason::Expired)
}

fn ari_window(input: &PlanInput<'_>, now: OffsetDateTime) -> Option<Reason> {
    input
        .ari_renew_at
        .filter(|at| *at <= now)
        .map(|_| Reason::AriWindow)
}

fn inside_renewal_window(input: &PlanInput<'_>, now: OffsetDateTime) -> Option<Reason> {
    if input.ari_renew_at.is_some() {
        return None;
    }
    installed(input)
        .filter(|c| renewal_time(c, None, input.renew_threshold) <= now)
        .map(|_| Reason::RenewalDue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

    fn cert(days_left: i64, sans: &[&str], key_matches: bool) -> Observation {
        Observation::Installed(InstalledCert {
            serial: "01".into(),
            issuer: "CN=test".into(),
            not_before: NOW - Duration::days(10),
            not_after: NOW + Duration::days(days_left),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
            key_matches,
            key_type: "ECDSA P-256".into(),
            sha256_fingerprint: String::new(),
        })
    }

    /// The planner's input for `observed` under a 30-day threshold, with nothing else known.
    fn input<'a>(domains: &'a [DomainName], observed: &'a Observation) -> PlanInput<'a> {
        PlanInput {
            domains,
            renew_threshold: Duration::days(30),
            generation: 1,
            observed,
            backoff: None,
            ari_renew_at: None,
            revoked: false,
        }
    }

    fn backoff(generation: u64, hours_left: i64) -> BackoffState {
        BackoffState {
            failures: 2,
            next_attempt_at: NOW + Duration::hours(hours_left),
            generation,
        }
    }

    #[test]
    fn table() {
        let domains = [
            DomainName::new("a.test").unwrap(),
            DomainName::new("www.a.test").unwrap(),
        ];
        let both = ["a.test", "www.a.test"];
        let unreadable = Observation::Unreadable("garbage".into());
        #[rustfmt::skip]
        let rows: Vec<(&str, Observation, Option<BackoffState>, Plan)> = vec![
            ("nothing installed", Observation::NotInstalled, None, Plan::Renew(Reason::NotInstalled)),
            ("unreadable install", unreadable, None, Plan::Renew(Reason::ObserveFailed)),
            ("fresh and matching", cert(60, &both, true), None,
                Plan::UpToDate { renew_at: NOW + Duration::days(30) }),
            ("SAN order does not matter", cert(60, &["www.a.test", "A.TEST"], true), None,
                Plan::UpToDate { renew_at: NOW + Duration::days(30) }),
            ("inside the window", cert(29, &both, true), None, Plan::Renew(Reason::RenewalDue)),
            ("exactly at the threshold", cert(30, &both, true), None, Plan::Renew(Reason::RenewalDue)),
            ("expired beats due", cert(-1, &both, true), None, Plan::Renew(Reason::Expired)),
            ("a domain added", cert(60, &["a.test"], true), None, Plan::Renew(Reason::DomainsChanged)),
            ("a domain removed", cert(60, &["a.test", "www.a.test", "old.a.test"], true), None,
                Plan::Renew(Reason::DomainsChanged)),
            ("key replaced beats domains", cert(60, &["a.test"], false), None,
                Plan::Renew(Reason::KeyMismatch)),
            ("due but backing off", cert(10, &both, true), Some(backoff(1, 2)),
                Plan::BackingOff { reason: Reason::RenewalDue, until: NOW + Duration::hours(2) }),
            ("backoff over", cert(10, &both, true), Some(backoff(1, -1)), Plan::Renew(Reason::RenewalDue)),
            ("backoff of an older spec is ignored", cert(10, &both, true), Some(backoff(9, 2)),
                Plan::Renew(Reason::RenewalDue)),
            ("backoff does not matter when up to date", cert(60, &both, true), Some(backoff(1, 2)),
                Plan::UpToDate { renew_at: NOW + Duration::days(30) }),
        ];
        for (why, observed, backoff, want) in rows {
            let input = PlanInput {
                backoff: backoff.as_ref(),
                ..input(&domains, &observed)
            };
            assert_eq!(plan(&input, NOW), want, "{why}");
        }
    }

    #[test]
    fn ari_replaces_the_threshold() {
        let domains = [DomainName::new("a.test").unwrap()];
        #[rustfmt::skip]
        let rows: Vec<(&str, Observation, Option<i64>, Plan)> = vec![
            ("window time reached", cert(60, &["a.test"], true), Some(-1), Plan::Renew(Reason::AriWindow)),
            ("window time ahead, although inside the threshold", cert(10, &["a.test"], true), Some(2),
                Plan::UpToDate { renew_at: NOW + Duration::hours(2) }),
            ("no ARI: the threshold rules", cert(10, &["a.test"], true), None, Plan::Renew(Reason::RenewalDue)),
            ("expiry still beats a later window", cert(-1, &["a.test"], true), Some(5), Plan::Renew(Reason::Expired)),
            ("a changed spec beats the window", cert(60, &["b.test"], true), Some(5), Plan::Renew(Reason::DomainsChanged)),
        ];
        for (why, observed, ari_hours, want) in rows {
            let input = PlanInput {
                ari_renew_at: ari_hours.map(|h| NOW + Duration::hours(h)),
                ..input(&domains, &observed)
            };
            assert_eq!(plan(&input, NOW), want, "{why}");
        }
    }

    #[test]
    fn a_revoked_cert_is_replaced_whatever_its_dates() {
        let domains = [DomainName::new("a.test").unwrap()];
        #[rustfmt::skip]
        let rows: Vec<(&str, Observation, Option<BackoffState>, Plan)> = vec![
            ("fresh, but revoked", cert(80, &["a.test"], true), None, Plan::Renew(Reason::Revoked)),
            ("its key moved aside (keyCompromise)", cert(80, &["a.test"], false), None,
                Plan::Renew(Reason::Revoked)),
            ("a failed replacement still backs off", cert(80, &["a.test"], true), Some(backoff(1, 2)),
                Plan::BackingOff { reason: Reason::Revoked, until: NOW + Duration::hours(2) }),
        ];
        for (why, observed, backoff, want) in rows {
            let input = PlanInput {
                backoff: backoff.as_ref(),
                // The CA's window is weeks away: revocation does not wait for it.
                ari_renew_at: Some(NOW + Duration::days(40)),
                revoked: true,
                ..input(&domains, &observed)
            };
            assert_eq!(plan(&input, NOW), want, "{why}");
        }
    }
}
