//! Checks every number a config holds against its range (the table is in `ranges`).

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::child;
use super::ranges::bound_of;
use super::schema::AlertSpec;

/// A problem for every number outside its range.
pub(crate) fn check_ranges(parsed: &Parsed) -> Vec<Problem> {
    numbers(parsed)
        .into_iter()
        .filter_map(|(path, value)| {
            let bound = bound_of(&path)?;
            let (min, max) = (*bound.range.start(), *bound.range.end());
            (!bound.range.contains(&value)).then(|| {
                Problem::value(path, format!("must be from {min} to {max}, found {value}"))
                    .hint(bound.hint)
            })
        })
        .collect()
}

/// Every bounded number that parsed, with its field path.
fn numbers(parsed: &Parsed) -> Vec<(String, u64)> {
    let config = &parsed.config;
    let mut numbers = Vec::new();
    if parsed.usable("daemon") {
        let daemon = &config.daemon;
        let dns = &daemon.dns_propagation;
        numbers.extend(
            [
                (
                    "daemon.check_interval_seconds",
                    daemon.check_interval_seconds,
                ),
                (
                    "daemon.renew_threshold_days",
                    daemon.renew_threshold_days.into(),
                ),
                (
                    "daemon.max_concurrent_renewals",
                    daemon.max_concurrent_renewals as u64,
                ),
                (
                    "daemon.renewal_timeout_seconds",
                    daemon.renewal_timeout_seconds,
                ),
                (
                    "daemon.dns_propagation.timeout_seconds",
                    dns.timeout_seconds,
                ),
                (
                    "daemon.dns_propagation.interval_seconds",
                    dns.interval_seconds,
                ),
            ]
            .map(|(path, value)| (path.to_owned(), value)),
        );
    }
    if parsed.usable("local_ca") {
        numbers.push((
            "local_ca.validity_days".to_owned(),
            config.local_ca.validity_days.into(),
        ));
    }
    if let Some(cluster) = &config.cluster {
        numbers.push(("cluster.lease_seconds".to_owned(), cluster.lease_seconds));
    }
    for (path, alert) in parsed.alerts() {
        numbers.push(match alert {
            AlertSpec::Webhook(hook) => (child(&path, "timeout_seconds"), hook.timeout_seconds),
            AlertSpec::Email(email) => (child(&path, "smtp_port"), email.smtp_port.into()),
        });
    }
    numbers
}
