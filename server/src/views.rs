//! Builds the wire views from the reconciler's state and the audit store.

use std::collections::HashMap;

use rota_api::CertId;
use rota_api::config::Tagged;
use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};
use rota_api::wire::{CertDetail, CertSummary, StatusResponse};
use rota_reconciler::{CertRuntime, CertState, Observation};
use rota_store::StoreError;

use crate::state::AppState;

/// How many past renewals `describe` shows.
const DESCRIBE_RENEWALS: usize = 10;

pub(crate) async fn status(state: &AppState) -> Result<StatusResponse, StoreError> {
    let desired = state.reconciler.desired();
    let (started_at, observed_at) = state.reconciler.started();
    Ok(StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        config_path: desired.loaded.path.display().to_string(),
        started_at,
        observed_at,
        config_errors: state.reconciler.config_errors(),
        restart_required: state
            .reconciler
            .restart_required()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        certs: summaries(state).await?,
    })
}

pub(crate) async fn summaries(state: &AppState) -> Result<Vec<CertSummary>, StoreError> {
    let last = state.store.last_renewal_statuses().await?;
    let desired = state.reconciler.desired();
    Ok(desired
        .certs
        .iter()
        .map(|cert| summary(state, cert, &state.reconciler.state(&cert.spec.id), &last))
        .collect())
}

pub(crate) fn summary(
    state: &AppState,
    cert: &CertRuntime,
    cert_state: &CertState,
    last: &HashMap<CertId, RenewalStatus>,
) -> CertSummary {
    let spec = &cert.spec;
    let ready = cert_state
        .conditions
        .iter()
        .find(|c| c.type_ == ConditionType::Ready && c.observed_generation == cert.generation);
    let (ready, ready_reason) = ready
        .map_or((ConditionStatus::Unknown, Reason::SpecChanged), |c| {
            (c.status, c.reason)
        });
    let not_after = match &cert_state.observed {
        Some(Observation::Installed(c)) => Some(c.not_after),
        _ => None,
    };
    CertSummary {
        id: spec.id.clone(),
        description: spec.description.clone(),
        domains: spec.domains.clone(),
        ca_backend: spec.ca.kind().to_owned(),
        dcv_backend: spec.dcv.as_ref().map(|d| d.kind().to_owned()),
        install_backend: spec.install.kind().to_owned(),
        not_after,
        ready,
        ready_reason,
        issuing: state.reconciler.is_busy(&spec.id),
        last_renewal_status: last.get(&spec.id).copied(),
    }
}

pub(crate) async fn detail(
    state: &AppState,
    id: &CertId,
) -> Result<Option<CertDetail>, StoreError> {
    let desired = state.reconciler.desired();
    let Some(cert) = desired.cert(id) else {
        return Ok(None);
    };
    let cert_state = state.reconciler.state(id);
    let renewals = state.store.renewals(id, DESCRIBE_RENEWALS).await?;
    let alerts = state.store.last_alert_deliveries(id).await?;
    let last: HashMap<_, _> = renewals
        .first()
        .map(|r| (id.clone(), r.status))
        .into_iter()
        .collect();
    let installed = match &cert_state.observed {
        Some(Observation::Installed(c)) => Some(c.clone()),
        _ => None,
    };
    let current_ari = cert_state
        .ari
        .as_ref()
        .filter(|a| installed.as_ref().is_some_and(|c| c.serial == a.serial));
    let (key_path, wanted) = (cert.spec.key_path.clone(), cert.spec.key.key_type);
    let (key, next_key) = tokio::task::spawn_blocking(move || {
        let next = rota_providers::key_rotation::next_path(&key_path);
        (
            rota_providers::keys::describe(&key_path, wanted),
            rota_providers::keys::describe(&next, wanted),
        )
    })
    .await
    .unwrap_or_default();
    Ok(Some(CertDetail {
        summary: summary(state, cert, &cert_state, &last),
        key_path: cert.spec.key_path.display().to_string(),
        key,
        next_key,
        generation: cert.generation,
        conditions: cert_state.conditions.clone(),
        installed,
        backoff: cert_state
            .backoff
            .clone()
            .filter(|b| b.generation == cert.generation),
        renewal_window: current_ari.and_then(|a| a.window.clone()),
        renews_at: state.reconciler.renews_at(cert),
        renewals,
        alerts,
    }))
}
