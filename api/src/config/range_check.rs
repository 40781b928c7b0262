//! Checks every number a config holds against its range (the table is in `ranges`).

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::child;
use super::ranges::bound_of;
use super::schema::{AlertSpec, CaSpec, KeyRotation, LocalCa};

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
                ("daemon.alert_before_days", daemon.alert_before_days.into()),
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
    for (path, cert) in parsed.certs() {
        if let Some(days) = cert.renew_before_days {
            numbers.push((child(&path, "renew_before_days"), days.into()));
        }
        if let KeyRotation::AfterDays(days) = cert.key.rotation {
            let rotation = child(&child(&path, "key"), "rotation");
            numbers.push((child(&rotation, "after_days"), days.into()));
        }
        if let CaSpec::Local(LocalCa {
            validity_days: Some(days),
        }) = cert.ca
        {
            numbers.push((child(&child(&path, "ca"), "validity_days"), days.into()));
        }
        if let Some(hook) = cert.install.post_command() {
            numbers.push((
                child(&child(&path, "install"), "post_command_timeout_seconds"),
                hook.timeout.as_secs(),
            ));
        }
    }
    for (path, alert) in parsed.alerts() {
        numbers.push(match alert {
            AlertSpec::Webhook(hook) => (child(&path, "timeout_seconds"), hook.timeout_seconds),
            AlertSpec::Email(email) => (child(&path, "smtp_port"), email.smtp_port.into()),
        });
    }
    numbers
}

#[cfg(test)]
mod tests {
    use super::super::ranges::BOUNDS;

    /// A config with every bounded number at 0, below every range.
    const ALL_ZERO: &str = "\
daemon:
  check_interval_seconds: 0
  renew_threshold_days: 0
  max_concurrent_renewals: 0
  renewal_timeout_seconds: 0
  alert_before_days: 0
  dns_propagation: { timeout_seconds: 0, interval_seconds: 0 }
local_ca: { validity_days: 0 }
cluster: { enabled: true, node_id: a, lease_seconds: 0 }
alerts:
  - { kind: webhook, url: 'https://hooks.test/x', timeout_seconds: 0 }
  - { kind: email, smtp_host: smtp.test, smtp_port: 0, tls: starttls, from: r@a.test, to: [a@a.test] }
certs:
  - id: web
    domains: [a.test]
    key_path: k
    key: { rotation: { after_days: 0 } }
    ca: { kind: local, validity_days: 0 }
    renew_before_days: 0
    install: { kind: filesystem, directory: out, post_command: [/bin/true], post_command_timeout_seconds: 0 }
";

    #[test]
    fn every_bound_in_the_table_is_checked() {
        let errors = super::super::load_str_with_env(
            std::path::Path::new("/etc/rota/rota.yaml"),
            ALL_ZERO.to_owned(),
            &|_| None,
        )
        .expect_err("every number is out of range");
        let paths: Vec<String> = errors
            .0
            .iter()
            .map(|issue| issue.path.replace(|c: char| c.is_ascii_digit(), ""))
            .collect();
        for bound in BOUNDS {
            assert!(
                paths.iter().any(|p| p == bound.path),
                "`{}` has a range but no check reaches it: {paths:?}",
                bound.path
            );
        }
    }
}
