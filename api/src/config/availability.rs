//! Refuses every backend this build cannot run yet. The config reference lists kinds whose
//! backends have not landed; they parse (so the error can be precise) and are refused here,
//! never silently ignored. Driven by [`Tagged::availability`], so landing a backend is a
//! one-word change in the schema.

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::{child, last_field};
use super::schema::{Availability, Tagged};

/// A problem, at its `kind` value, for every configured backend that is not available.
pub(crate) fn check_availability(parsed: &Parsed) -> Vec<Problem> {
    let config = &parsed.config;
    let mut found = Vec::new();
    refuse_not_yet(&config.audit, "audit", &mut found);
    if config.cluster.as_ref().is_some_and(|c| c.enabled) {
        found.push(
            Problem::value(
                "cluster.enabled",
                "federation (`cluster.enabled: true`) is not available in this build yet",
            )
            .hint("remove the `cluster:` block or set `enabled: false`"),
        );
    }
    for (path, cert) in parsed.certs() {
        refuse_not_yet(&cert.ca, &child(&path, "ca"), &mut found);
        if let Some(dcv) = &cert.dcv {
            refuse_not_yet(dcv, &child(&path, "dcv"), &mut found);
        }
        refuse_not_yet(&cert.install, &child(&path, "install"), &mut found);
    }
    for (path, alert) in parsed.alerts() {
        refuse_not_yet(alert, &path, &mut found);
    }
    found
}

fn refuse_not_yet<T: Tagged>(value: &T, path: &str, found: &mut Vec<Problem>) {
    if value.availability() == Availability::Available {
        return;
    }
    let label = last_field(path);
    let available: Vec<String> = T::KINDS
        .iter()
        .filter(|kind| T::kind_availability(kind) == Some(Availability::Available))
        .map(|kind| format!("`{label}: {{ kind: {kind} }}`"))
        .collect();
    let hint = if available.is_empty() {
        let what = if path.ends_with(']') {
            "entry"
        } else {
            "block"
        };
        format!("no `{label}` backend is available in this build yet: remove this {what} for now")
    } else {
        format!("available in this build: {}", available.join(", "))
    };
    found.push(
        Problem::value(
            child(path, "kind"),
            format!(
                "`kind: {}` is not available in this build yet",
                value.kind()
            ),
        )
        .hint(hint),
    );
}
