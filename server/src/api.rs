//! The JSON API. Routes mirror the CLI: status, certs, one cert, its log, a forced renewal
//! streamed as NDJSON, config apply, a test alert, and the certs as whole objects (`objects`).

use std::convert::Infallible;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;

use rota_api::wire::cluster::ClusterView;
use rota_api::wire::{
    AlertTestRequest, AlertTestResponse, CertDetail, CertSummary, RenewProgress, RenewalLog,
    RevokeRequest, RevokeResponse, StatusResponse,
};
use rota_reconciler::{AlertTestError, RenewRequestError, RevokeError};

use crate::error::{ApiError, JsonBody, MAX_BODY_BYTES, parse_id};
use crate::state::AppState;
use crate::{apply, metrics, objects, views};

/// The API routes, without transport-specific guards.
pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(metrics::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/status", get(status))
        .route("/api/cluster", get(cluster))
        .route("/api/certs", get(certs))
        .route("/api/certs/{id}", get(cert))
        .route("/api/certs/{id}/log", get(log))
        .route("/api/certs/{id}/renew", post(renew))
        .route("/api/certs/{id}/revoke", post(revoke))
        .route("/api/config", post(apply::apply))
        .route("/api/alerts/test", post(test_alerts))
        .route("/api/certificates", get(objects::list))
        .route("/api/certificates/{id}", get(objects::one))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn status(State(state): State<AppState>) -> Result<Json<StatusResponse>, ApiError> {
    views::status(&state)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(&e))
}

/// This node's view of the federation; `null` when it runs alone.
async fn cluster(State(state): State<AppState>) -> Json<Option<ClusterView>> {
    Json(state.reconciler.cluster())
}

async fn certs(State(state): State<AppState>) -> Result<Json<Vec<CertSummary>>, ApiError> {
    views::summaries(&state)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(&e))
}

async fn cert(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CertDetail>, ApiError> {
    let id = parse_id(&id)?;
    match views::detail(&state, &id).await {
        Ok(Some(d)) => Ok(Json(d)),
        Ok(None) => Err(ApiError::not_found(&id)),
        Err(e) => Err(ApiError::store(&e)),
    }
}

#[derive(Deserialize)]
struct LogQuery {
    renewal: Option<i64>,
}

async fn log(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Json<RenewalLog>, ApiError> {
    let id = parse_id(&id)?;
    let renewal = match q.renewal {
        Some(n) => state
            .store
            .renewal(n)
            .await
            .map(|r| r.filter(|r| r.cert_id == id)),
        None => state.store.renewals(&id, 1).await.map(|mut v| v.pop()),
    };
    let renewal = renewal.map_err(|e| ApiError::store(&e))?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no renewal of `{id}` recorded"),
        )
    })?;
    let events = state
        .store
        .steps(renewal.id)
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok(Json(RenewalLog { renewal, events }))
}

#[derive(Deserialize)]
struct RenewQuery {
    /// `?dry_run=true`: the whole pipeline, nothing installed or changed live.
    #[serde(default)]
    dry_run: bool,
}

async fn renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RenewQuery>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let refused = |e: RenewRequestError| match e {
        RenewRequestError::NotFound(_) => ApiError::not_found(&id),
        RenewRequestError::Revoking(_) | RenewRequestError::DryRunUnavailable { .. } => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    };
    let (following, attached) = if q.dry_run {
        (state.reconciler.dry_run(&id).map_err(refused)?, false)
    } else {
        let ticket = state.reconciler.renew(&id).map_err(refused)?;
        (ticket.following, ticket.attached)
    };
    // A client joining a renewal already queued or running is told so first.
    let attached = attached.then_some(RenewProgress::Attached);
    let followed = futures_util::stream::unfold(following, |mut following| async move {
        let item = following.next().await?;
        Some((item, following))
    });
    let lines = futures_util::stream::iter(attached)
        .chain(followed)
        .map(|item| {
            let mut line = serde_json::to_string(&item).unwrap_or_default();
            line.push('\n');
            Ok::<_, Infallible>(line)
        });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(request): JsonBody<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let id = parse_id(&id)?;
    state
        .reconciler
        .revoke(&id, request.reason)
        .await
        .map(Json)
        .map_err(|e| match e {
            RevokeError::NotFound(_) => ApiError::not_found(&id),
            RevokeError::Busy(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            RevokeError::NothingInstalled(_) => {
                ApiError::new(StatusCode::CONFLICT, "nothing_installed", e.to_string())
            }
            _ => ApiError::new(StatusCode::BAD_GATEWAY, "revoke_failed", e.to_string()),
        })
}

/// Sends a test alert to every sink (or one) and answers with each result; a sink that
/// failed is a result, not an error of the request.
async fn test_alerts(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<AlertTestRequest>,
) -> Result<Json<AlertTestResponse>, ApiError> {
    match state.reconciler.test_alerts(request.sink).await {
        Ok(results) => Ok(Json(AlertTestResponse { results })),
        Err(e @ AlertTestError::NoSuchSink { .. }) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_alert_sinks",
            e.to_string(),
        )),
    }
}
