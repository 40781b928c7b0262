//! How the API refuses: every error is an [`ErrorBody`] with an HTTP status, including the
//! refusals of request extraction (a bad cert id, a body too large or malformed).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use rota_api::CertId;
use rota_api::wire::ErrorBody;
use rota_store::StoreError;

/// The largest request body rotad reads: a config file of thousands of certs fits with room.
pub(crate) const MAX_BODY_BYTES: usize = 1024 * 1024;

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
