//! The range of every number in the config. Each bound has a reason: the lower ones keep rota
//! doing useful work, the upper ones keep every accepted value far from what would overflow
//! time arithmetic (`now + interval`) or allocate absurdly (a semaphore of `usize::MAX`
//! permits). The README's configuration section lists the same table.

use std::ops::RangeInclusive;

/// One bounded number: its field path (`[]` for any list index), its range, and a hint.
pub(super) struct Bound {
    pub path: &'static str,
    pub range: RangeInclusive<u64>,
    pub hint: &'static str,
}

const DAY: u64 = 24 * 60 * 60;

pub(super) const BOUNDS: &[Bound] = &[
    Bound {
        path: "daemon.check_interval_seconds",
        range: 1..=7 * DAY,
        hint: "the safety-net sweep runs every this many seconds; 3600 (an hour) is the default, a week the most",
    },
    Bound {
        path: "daemon.renew_threshold_days",
        range: 1..=365,
        hint: "renew this many days before expiry; 30 is the default, and no public cert lives a year any more",
    },
    Bound {
        path: "daemon.max_concurrent_renewals",
        range: 1..=1024,
        hint: "how many renewals may run at once against one CA; 4 is the default",
    },
    Bound {
        path: "daemon.renewal_timeout_seconds",
        range: 1..=DAY,
        hint: "a renewal still running after this many seconds is stopped; 900 (15 minutes) is the default",
    },
    Bound {
        path: "daemon.alert_before_days",
        range: 1..=365,
        hint: "warn when a failing cert has fewer than this many days left; 14 is the default",
    },
    Bound {
        path: "daemon.dns_propagation.timeout_seconds",
        range: 1..=DAY,
        hint: "how long to wait for DNS-01 records to show; 300 (five minutes) is the default",
    },
    Bound {
        path: "daemon.dns_propagation.interval_seconds",
        range: 1..=3600,
        hint: "how often to ask the nameservers again; 5 is the default",
    },
    Bound {
        path: "local_ca.validity_days",
        range: 1..=3650,
        hint: "the lifetime of the certs the local CA signs; 90 is the default, ten years the most",
    },
    Bound {
        // The lease is refreshed every third of it; under 3 s that rounds down to a busy loop.
        path: "cluster.lease_seconds",
        range: 3..=3600,
        hint: "the leader lease, refreshed every third of it; 60 seconds is the default",
    },
    Bound {
        path: "certs[].renew_before_days",
        range: 1..=365,
        hint: "renew this cert this many days before expiry; without it `daemon.renew_threshold_days` applies",
    },
    Bound {
        path: "certs[].key.rotation.after_days",
        range: 1..=3650,
        hint: "switch to the prepared `.next` key once the current one is this many days old; ten years the most",
    },
    Bound {
        path: "certs[].ca.validity_days",
        range: 1..=3650,
        hint: "the lifetime of this cert from the local CA; without it `local_ca.validity_days` applies",
    },
    Bound {
        path: "certs[].install.post_command_timeout_seconds",
        range: 1..=3600,
        hint: "how long the deploy hook may run before it is killed; 60 seconds is the default, an hour the most",
    },
    Bound {
        path: "alerts[].timeout_seconds",
        range: 1..=300,
        hint: "how long one webhook call may take; 10 seconds is the default",
    },
    Bound {
        path: "alerts[].smtp_port",
        range: 1..=65535,
        hint: "the SMTP port: usually 587 (STARTTLS) or 465 (implicit TLS)",
    },
];

/// The range of the number at `path` (e.g. `alerts[2].timeout_seconds`), if it is one.
pub(crate) fn range_of(path: &str) -> Option<&'static RangeInclusive<u64>> {
    bound_of(path).map(|b| &b.range)
}

/// The bound of the number at `path`, if it is one.
pub(super) fn bound_of(path: &str) -> Option<&'static Bound> {
    let pattern = without_indices(path);
    BOUNDS.iter().find(|b| b.path == pattern)
}

/// `alerts[2].timeout_seconds` → `alerts[].timeout_seconds`.
fn without_indices(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_list_index_matches_the_pattern() {
        for (path, expected, why) in [
            ("alerts[3].timeout_seconds", Some(300), "an item of a list"),
            ("daemon.renew_threshold_days", Some(365), "a plain field"),
            ("daemon.listen_addr", None, "not a bounded number"),
        ] {
            assert_eq!(range_of(path).map(|r| *r.end()), expected, "{path}: {why}");
        }
    }
}
