//! Whole cert objects in cert-manager's `Certificate` shape (`rota_api::wire::certificate`),
//! served at `GET /api/certificates` and `GET /api/certificates/{id}`. Everything computed —
//! generation, conditions, renewal time, backoff — is taken from the describe view
//! ([`views::detail`]), so the object and `rota describe cert` can never disagree; this module
//! only adds the spec as written and renames into the object's vocabulary.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use rota_api::CertId;
use rota_api::config::AsWrittenError;
use rota_api::status::{Condition, RenewalStatus};
use rota_api::wire::CertDetail;
use rota_api::wire::certificate::{
    API_VERSION, Certificate, CertificateCondition, CertificateList, CertificateStatus,
    LastRenewal, ObjectMeta, RenewalWindowStatus,
};
use rota_store::StoreError;

use crate::error::{ApiError, parse_id};
use crate::state::AppState;
use crate::views;

/// `GET /api/certificates`: every cert, in config order.
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<CertificateList>, ApiError> {
    let desired = state.reconciler.desired();
    let specs = desired
        .loaded
        .certs_as_written()
        .map_err(|e| as_written_failed(&e))?;
    let mut items = Vec::with_capacity(specs.len());
    for (cert, spec) in desired.certs.iter().zip(specs) {
        // A cert removed by a reload since `desired` was read is left out, as if listed later.
        if let Some(detail) = detail(&state, &cert.spec.id).await? {
            items.push(certificate(detail, spec));
        }
    }
    Ok(Json(CertificateList {
        api_version: API_VERSION.to_owned(),
        kind: "CertificateList".to_owned(),
        items,
    }))
}

/// `GET /api/certificates/{id}`: one cert.
pub(crate) async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Certificate>, ApiError> {
    let id = parse_id(&id)?;
    let desired = state.reconciler.desired();
    let row = desired
        .certs
        .iter()
        .position(|c| c.spec.id == id)
        .ok_or_else(|| ApiError::not_found(&id))?;
    let spec = desired
        .loaded
        .certs_as_written()
        .map_err(|e| as_written_failed(&e))?
        .swap_remove(row);
    let detail = detail(&state, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(&id))?;
    Ok(Json(certificate(detail, spec)))
}

async fn detail(state: &AppState, id: &CertId) -> Result<Option<CertDetail>, ApiError> {
    views::detail(state, id)
        .await
        .map_err(|e: StoreError| ApiError::store(&e))
}

fn as_written_failed(err: &AsWrittenError) -> ApiError {
    tracing::error!(error = %err, "cannot show the config's certs as written");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "config_unreadable",
        err.to_string(),
    )
}

/// The object for a cert whose describe view is `detail` and whose entry in `rota.yaml` is
/// `spec`.
fn certificate(detail: CertDetail, spec: serde_yaml::Value) -> Certificate {
    // Dry runs change nothing live, so they are not the cert's last renewal.
    let latest = detail.renewals.iter().find(|r| !r.dry_run);
    let installed = detail.installed.as_ref();
    let status = CertificateStatus {
        conditions: detail.conditions.iter().map(condition).collect(),
        not_before: installed.map(|c| c.not_before),
        not_after: installed.map(|c| c.not_after),
        renewal_time: detail.renews_at,
        serial_number: installed.map(|c| c.serial.clone()),
        last_failure_time: latest
            .filter(|r| r.status == RenewalStatus::Failed)
            .map(|r| r.finished_at.unwrap_or(r.started_at)),
        failed_issuance_attempts: detail.backoff.as_ref().map(|b| b.failures),
        next_attempt_at: detail.backoff.as_ref().map(|b| b.next_attempt_at),
        renewal_window: detail.renewal_window.map(|w| RenewalWindowStatus {
            start: w.start,
            end: w.end,
            explanation_url: w.explanation_url,
        }),
        last_renewal: latest.map(|r| LastRenewal {
            id: r.id,
            status: r.status,
            reason: r.trigger,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }),
        private_key: detail.key.clone(),
        next_private_key: detail.next_key.clone(),
    };
    Certificate {
        api_version: API_VERSION.to_owned(),
        kind: "Certificate".to_owned(),
        metadata: ObjectMeta {
            name: detail.summary.id,
            generation: detail.generation,
        },
        spec,
        status,
    }
}

fn condition(c: &Condition) -> CertificateCondition {
    CertificateCondition {
        type_: c.type_,
        status: c.status,
        reason: c.reason,
        message: c.message.clone(),
        last_transition_time: c.last_transition_time,
        observed_generation: c.observed_generation,
    }
}

#[cfg(test)]
mod tests {
    use rota_api::status::{
        BackoffState, ConditionStatus, ConditionType, Reason, RenewalRecord, RenewalStatus,
    };
    use rota_api::wire::{CertSummary, InstalledCert};
    use rota_api::{DomainName, RenewalWindow};
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const NOW: time::OffsetDateTime = datetime!(2025-03-01 12:00:00 UTC);

    fn web() -> CertId {
        CertId::new("web").expect("valid id")
    }

    /// A cert installed a month ago whose forced renewal just failed and is backing off.
    fn failing_detail() -> CertDetail {
        let renewal = |id, status, started_at| RenewalRecord {
            id,
            cert_id: web(),
            trigger: Reason::Forced,
            status,
            error: None,
            started_at,
            finished_at: Some(started_at + Duration::seconds(4)),
            dry_run: false,
        };
        CertDetail {
            summary: CertSummary {
                id: web(),
                description: None,
                domains: vec![DomainName::new("example.com").expect("valid name")],
                ca_backend: "acme".into(),
                dcv_backend: Some("webroot".into()),
                install_backend: "filesystem".into(),
                not_after: Some(NOW + Duration::days(60)),
                ready: ConditionStatus::True,
                ready_reason: Reason::UpToDate,
                issuing: false,
                last_renewal_status: Some(RenewalStatus::Failed),
            },
            key_path: "/keys/web.key".into(),
            key: None,
            next_key: None,
            generation: 7,
            conditions: vec![Condition {
                type_: ConditionType::Failing,
                status: ConditionStatus::True,
                reason: Reason::RenewalFailed,
                message: "the CA refused the order".into(),
                last_transition_time: NOW - Duration::minutes(5),
                observed_generation: 7,
            }],
            installed: Some(InstalledCert {
                serial: "0a1b".into(),
                issuer: "CN=Test CA".into(),
                not_before: NOW - Duration::days(30),
                not_after: NOW + Duration::days(60),
                sans: vec!["example.com".into()],
                key_matches: true,
                key_type: "ECDSA P-256".into(),
                sha256_fingerprint: "AB:CD".into(),
            }),
            backoff: Some(BackoffState {
                failures: 2,
                next_attempt_at: NOW + Duration::minutes(20),
                generation: 7,
            }),
            renewal_window: Some(RenewalWindow {
                start: NOW + Duration::days(29),
                end: NOW + Duration::days(31),
                explanation_url: None,
                next_check_at: NOW + Duration::hours(6),
            }),
            renews_at: Some(NOW + Duration::days(30)),
            renewals: vec![
                renewal(12, RenewalStatus::Failed, NOW - Duration::minutes(5)),
                renewal(9, RenewalStatus::Succeeded, NOW - Duration::days(30)),
            ],
            alerts: Vec::new(),
        }
    }

    #[test]
    fn the_status_names_what_describe_computed_in_cert_managers_words() {
        let spec = serde_json::json!({ "id": "web", "domains": ["example.com"] });
        let written = serde_json::from_value(spec.clone()).expect("a YAML value");
        let object = serde_json::to_value(certificate(failing_detail(), written)).expect("JSON");
        assert_eq!(object["apiVersion"], "rota.dev/v1");
        assert_eq!(object["kind"], "Certificate");
        assert_eq!(
            object["metadata"],
            serde_json::json!({ "name": "web", "generation": 7 })
        );
        assert_eq!(object["spec"], spec);
        assert_eq!(
            object["status"],
            serde_json::json!({
                "conditions": [{
                    "type": "Failing",
                    "status": "True",
                    "reason": "RenewalFailed",
                    "message": "the CA refused the order",
                    "lastTransitionTime": "2025-03-01T11:55:00Z",
                    "observedGeneration": 7,
                }],
                "notBefore": "2025-01-30T12:00:00Z",
                "notAfter": "2025-04-30T12:00:00Z",
                "renewalTime": "2025-03-31T12:00:00Z",
                "serialNumber": "0a1b",
                "lastFailureTime": "2025-03-01T11:55:04Z",
                "failedIssuanceAttempts": 2,
                "nextAttemptAt": "2025-03-01T12:20:00Z",
                "renewalWindow": { "start": "2025-03-30T12:00:00Z", "end": "2025-04-01T12:00:00Z" },
                "lastRenewal": {
                    "id": 12,
                    "status": "failed",
                    "reason": "Forced",
                    "startedAt": "2025-03-01T11:55:00Z",
                    "finishedAt": "2025-03-01T11:55:04Z",
                },
            })
        );
    }

    #[test]
    fn a_success_after_the_failure_clears_the_failure_fields() {
        let mut detail = failing_detail();
        detail.backoff = None;
        detail.renewals[0].status = RenewalStatus::Succeeded;
        let status = certificate(detail, serde_yaml::Value::Null).status;
        assert_eq!(status.last_failure_time, None);
        assert_eq!(status.failed_issuance_attempts, None);
        assert_eq!(status.next_attempt_at, None);
        assert_eq!(
            status.last_renewal.map(|r| r.status),
            Some(RenewalStatus::Succeeded)
        );
    }
}
