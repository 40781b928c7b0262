//! The JSON API. Routes mirror the CLI: status, certs, one cert, its log, a forced renewal
//! streamed as NDJSON, config apply, and the certs as whole objects (`objects`).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use time::OffsetDateTime;

use rota_api::CertId;
use rota_api::wire::{
    CertDetail, CertSummary, ErrorBody, RenewProgress, RenewalLog, RevokeRequest, RevokeResponse,
    StatusResponse,
};
use rota_reconciler::{Reconciler, RenewRequestError, RevokeError};
use rota_store::{AuditStore, StoreError};

use crate::{apply, objects, views};

/// The largest request body rotad reads: a config file of thousands of certs fits with room.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

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
        .route("/api/certs/{id}/revoke", post(revoke))
        .route("/api/config", post(apply::apply))
        .route("/api/certificates", get(objects::list))
        .route("/api/certificates/{id}", get(objects::one))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// A JSON request body whose refusals (too large, malformed, wrong content type) are
/// [`ErrorBody`]s like every other API error.
pub(crate) struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body is larger than rotad accepts ({} KiB); nothing was changed",
                        MAX_BODY_BYTES / 1024
                    ),
                ))
            }
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                "bad_request",
                rejection.body_text(),
            )),
        }
    }
}

/// An API error: the HTTP status and the `ErrorBody` it carries.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(id: &CertId) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no cert `{id}` in the running config"),
        )
    }

    pub(crate) fn store(e: &StoreError) -> Self {
        tracing::error!(error = %e, "audit store failed while answering the API");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
            config_errors: Vec::new(),
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) fn parse_id(raw: &str) -> Result<CertId, ApiError> {
    CertId::new(raw).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e))
}

async fn status(State(state): State<AppState>) -> Result<Json<StatusResponse>, ApiError> {
    views::status(&state)
        .await
        .map(Json)
        .map_err(|e| ApiError::store(&e))
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

async fn renew(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let ticket = state.reconciler.renew(&id).map_err(|e| match e {
        RenewRequestError::NotFound(_) => ApiError::not_found(&id),
        RenewRequestError::Revoking(_) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        ),
    })?;
    // A client joining a renewal already queued or running is told so first.
    let attached = ticket.attached.then_some(RenewProgress::Attached);
    let followed = futures_util::stream::unfold(ticket.following, |mut following| async move {
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
