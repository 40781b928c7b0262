//! The JSON API. Routes mirror the CLI: status, certs, one cert, its log, a forced renewal
//! streamed as NDJSON, and config apply.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use rota_api::CertId;
use rota_api::wire::{ErrorBody, RenewProgress, RenewalLog};
use rota_reconciler::{Reconciler, RenewRequestError};
use rota_store::AuditStore;

use crate::{apply, views};

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub reconciler: Reconciler,
    pub store: Arc<dyn AuditStore>,
    pub started_at: OffsetDateTime,
    /// Serializes config applies so two cannot interleave their write and commit.
    pub apply_lock: Arc<tokio::sync::Mutex<()>>,
}

/// The API routes, without transport-specific guards.
pub(crate) fn routes(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/status", get(status))
        .route("/api/certs", get(certs))
        .route("/api/certs/{id}", get(cert))
        .route("/api/certs/{id}/log", get(log))
        .route("/api/certs/{id}/renew", post(renew))
        .route("/api/config", post(apply::apply))
        .with_state(state)
}

/// An `ErrorBody` response.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
        config_errors: Vec::new(),
    };
    (status, Json(body)).into_response()
}

fn store_error(e: &impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "audit store failed while answering the API");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "store_error",
        &e.to_string(),
    )
}

fn parse_id(raw: &str) -> Result<CertId, Response> {
    CertId::new(raw).map_err(|e| error_response(StatusCode::BAD_REQUEST, "bad_request", &e))
}

fn not_found(id: &CertId) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("no cert `{id}` in the running config"),
    )
}

async fn status(State(state): State<AppState>) -> Response {
    match views::status(&state).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn certs(State(state): State<AppState>) -> Response {
    match views::summaries(&state).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn cert(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match views::detail(&state, &id).await {
        Ok(Some(d)) => Json(d).into_response(),
        Ok(None) => not_found(&id),
        Err(e) => store_error(&e),
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
) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let renewal = match q.renewal {
        Some(n) => state
            .store
            .renewal(n)
            .await
            .map(|r| r.filter(|r| r.cert_id == id)),
        None => state.store.renewals(&id, 1).await.map(|mut v| v.pop()),
    };
    let renewal = match renewal {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no renewal of `{id}` recorded"),
            );
        }
        Err(e) => return store_error(&e),
    };
    match state.store.steps(renewal.id).await {
        Ok(events) => Json(RenewalLog { renewal, events }).into_response(),
        Err(e) => store_error(&e),
    }
}

async fn renew(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let id = match parse_id(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let (tx, rx) = mpsc::channel::<RenewProgress>(64);
    match state.reconciler.renew(&id, tx) {
        Ok(()) => {}
        Err(RenewRequestError::NotFound(_)) => return not_found(&id),
        Err(e @ RenewRequestError::Busy(_)) => {
            return error_response(StatusCode::CONFLICT, "conflict", &e.to_string());
        }
        Err(e) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                &e.to_string(),
            );
        }
    }
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        let mut line = serde_json::to_string(&item).unwrap_or_default();
        line.push('\n');
        Some((Ok::<_, Infallible>(line), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}
