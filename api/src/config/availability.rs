//! Refuses every backend this build cannot run yet. The config reference lists kinds whose
//! backends have not landed, or whose cargo feature this build left out; they parse (so the
//! error can be precise) and are refused here, never silently ignored. Driven by [`Tagged::availability`], so landing a backend is a
//! one-word change in the schema.

use super::blocks::Parsed;
use super::error::Problem;
use super::field_path::{child, last_field};
use super::schema::{Availability, Coordinator, Tagged};

/// A problem, at its `kind` value, for every configured backend that is not available.
pub(crate) fn check_availability(parsed: &Parsed) -> Vec<Problem> {
    let config = &parsed.config;
    let mut found = Vec::new();
    refuse_not_yet(&config.audit, "audit", &mut found);
    if let Some(cluster) = &config.cluster
        && cluster.coordinator == Coordinator::KubernetesLease
        && let Availability::BuiltWithout(feature) = Availability::K8S
    {
        found.push(
            Problem::value(
                "cluster.coordinator",
                format!("`coordinator: kubernetes_lease` is not available: rota was built without feature `{feature}`"),
            )
            .hint(format!("rebuild with the default features (or `--features {feature}`), or use `coordinator: surreal_lock`")),
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
    let feature = match value.availability() {
        Availability::Available => return,
        Availability::NotYet => None,
        Availability::BuiltWithout(feature) => Some(feature),
    };
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
    let message = match feature {
        None => format!(
            "`kind: {}` is not available in this build yet",
            value.kind()
        ),
        Some(feature) => format!(
            "`kind: {}` is not available: rota was built without feature `{feature}`",
            value.kind()
        ),
    };
    let hint = match feature {
        None => hint,
        Some(feature) => {
            format!("rebuild with the default features (or `--features {feature}`); {hint}")
        }
    };
    found.push(Problem::value(child(path, "kind"), message).hint(hint));
}
