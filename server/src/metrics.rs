//! `/metrics` in the Prometheus text format (0.0.4), read from the same reconciler state and
//! audit store the API answers from. Names follow Prometheus conventions: a `rota_` prefix,
//! base units (seconds), `_total` on counters, `_timestamp_seconds` on Unix times; one `cert`
//! label per certificate, as cert-manager labels by certificate name.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use rota_api::status::ConditionStatus;
use rota_api::wire::CertSummary;
use rota_api::wire::cluster::ClusterRole;
use rota_store::{AlertDeliveryCount, RenewalOutcome};

use crate::state::AppState;
use crate::views;

/// Upper bounds of the renewal duration histogram's buckets, in seconds.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];

/// `GET /metrics`.
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    match render(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "audit store failed while answering /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the audit store cannot be read",
            )
                .into_response()
        }
    }
}

/// `GET /readyz`: the store answers and a config is loaded.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.last_renewal_statuses().await {
        Ok(_) if state.reconciler.started().1.is_some() => "ready".into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: not every cert observed yet",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "readiness check: the audit store cannot be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit store cannot be read",
            )
                .into_response()
        }
    }
}

async fn render(state: &AppState) -> Result<String, rota_store::StoreError> {
    let summaries = views::summaries(state).await?;
    let outcomes = state.store.renewal_outcomes().await?;
    let deliveries = state.store.alert_delivery_counts().await?;
    let mut out = String::with_capacity(256 * summaries.len() + 2048);
    cert_gauges(&mut out, state, &summaries);
    renewals(&mut out, &outcomes);
    alerts(&mut out, &deliveries);
    header_lines(
        &mut out,
        "rota_last_sweep_timestamp_seconds",
        "gauge",
        "When the last periodic sweep finished, as a Unix time (0 before the first).",
    );
    let last_sweep = state.reconciler.last_sweep().map_or(0.0, unix);
    sample(
        &mut out,
        "rota_last_sweep_timestamp_seconds",
        &[],
        last_sweep,
    );
    // Without federation every rotad acts on its own certs, so it is its own leader.
    let leading = state
        .reconciler
        .cluster()
        .is_none_or(|view| view.role == ClusterRole::Leader);
    header_lines(
        &mut out,
        "rota_leader",
        "gauge",
        "1 when this rotad is the one that renews (always without federation), 0 on a follower.",
    );
    sample(
        &mut out,
        "rota_leader",
        &[],
        if leading { 1.0 } else { 0.0 },
    );
    header_lines(
        &mut out,
        "rota_certificates",
        "gauge",
        "Certificates in the running config.",
    );
    sample(&mut out, "rota_certificates", &[], summaries.len() as f64);
    Ok(out)
}

/// Per cert: notAfter, Ready, and when rotad will renew it.
fn cert_gauges(out: &mut String, state: &AppState, summaries: &[CertSummary]) {
    const NOT_AFTER: &str = "rota_certificate_not_after_timestamp_seconds";
    const READY: &str = "rota_certificate_ready";
    const RENEWAL: &str = "rota_certificate_renewal_timestamp_seconds";
    header_lines(
        out,
        NOT_AFTER,
        "gauge",
        "The installed certificate's notAfter, as a Unix time.",
    );
    for s in summaries {
        if let Some(t) = s.not_after {
            sample(out, NOT_AFTER, &[("cert", s.id.as_str())], unix(t));
        }
    }
    header_lines(
        out,
        READY,
        "gauge",
        "1 when the certificate's Ready condition is True, else 0.",
    );
    for s in summaries {
        let ready = f64::from(u8::from(s.ready == ConditionStatus::True));
        sample(out, READY, &[("cert", s.id.as_str())], ready);
    }
    header_lines(
        out,
        RENEWAL,
        "gauge",
        "When rotad will renew the installed certificate (threshold or CA renewal window), as a Unix time.",
    );
    for cert in &state.reconciler.desired().certs {
        if let Some(t) = state.reconciler.renews_at(cert) {
            sample(out, RENEWAL, &[("cert", cert.spec.id.as_str())], unix(t));
        }
    }
}

/// Finished renewals: a counter per cert and result, and a duration histogram per result.
fn renewals(out: &mut String, outcomes: &[RenewalOutcome]) {
    const BUCKET: &str = "rota_renewal_duration_seconds_bucket";
    let mut totals: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    let mut hist: BTreeMap<&str, ([u64; DURATION_BUCKETS.len()], u64, f64)> = BTreeMap::new();
    for o in outcomes {
        *totals
            .entry((o.cert_id.as_str(), o.status.as_str()))
            .or_default() += 1;
        let (buckets, count, sum) = hist.entry(o.status.as_str()).or_default();
        for (bound, n) in DURATION_BUCKETS.iter().zip(buckets.iter_mut()) {
            *n += u64::from(o.seconds <= *bound);
        }
        *count += 1;
        *sum += o.seconds;
    }
    header_lines(
        out,
        "rota_renewals_total",
        "counter",
        "Finished renewals, by certificate and result.",
    );
    for ((cert, result), n) in &totals {
        let labels = [("cert", *cert), ("result", *result)];
        sample(out, "rota_renewals_total", &labels, *n as f64);
    }
    header_lines(
        out,
        "rota_renewal_duration_seconds",
        "histogram",
        "How long finished renewals ran, by result.",
    );
    for (result, (buckets, count, sum)) in &hist {
        for (bound, n) in DURATION_BUCKETS.iter().zip(buckets) {
            let le = bound.to_string();
            sample(out, BUCKET, &[("result", result), ("le", &le)], *n as f64);
        }
        sample(
            out,
            BUCKET,
            &[("result", result), ("le", "+Inf")],
            *count as f64,
        );
        sample(
            out,
            "rota_renewal_duration_seconds_sum",
            &[("result", result)],
            *sum,
        );
        let count = *count as f64;
        sample(
            out,
            "rota_renewal_duration_seconds_count",
            &[("result", result)],
            count,
        );
    }
}

/// Alert deliveries by sink and result.
fn alerts(out: &mut String, deliveries: &[AlertDeliveryCount]) {
    const TOTAL: &str = "rota_alert_deliveries_total";
    header_lines(
        out,
        TOTAL,
        "counter",
        "Alert deliveries, by sink and result.",
    );
    for d in deliveries {
        let result = if d.delivered { "delivered" } else { "failed" };
        let labels = [("sink", d.sink_label.as_str()), ("result", result)];
        sample(out, TOTAL, &labels, d.count as f64);
    }
}

fn header_lines(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Escapes a label value as the text format requires: backslash, quote, newline.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn unix(t: OffsetDateTime) -> f64 {
    t.unix_timestamp() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("sink", "a\"b\\c\nd")], 1.0);
        assert_eq!(out, "m{sink=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
