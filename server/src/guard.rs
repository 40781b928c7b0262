//! Request guards. Every response carries the wire protocol version. On TCP, where a browser
//! might be tricked into sending requests, mutations must carry the protocol header (a
//! custom header cannot be sent cross-origin without a CORS preflight, which rotad never
//! grants), and when `daemon.api_token_file` is set every API call needs its bearer token.
//! The UNIX socket is guarded by its file mode.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use rota_api::wire::{PROTOCOL_HEADER, PROTOCOL_VERSION};

use crate::api::{ApiError, AppState};

/// Adds the protocol header to every response.
pub(crate) async fn protocol_header(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL_VERSION));
    response
}

/// The TCP-only checks: bearer token and CSRF-proof mutations.
pub(crate) async fn tcp_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let token = state
        .reconciler
        .desired()
        .loaded
        .config
        .daemon
        .api_token_file
        .clone();
    if let Some(source) = token {
        let expected = match source.resolve() {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(error = %e, "cannot read daemon.api_token_file; refusing TCP API calls");
                return ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the API token cannot be read on the daemon side",
                )
                .into_response();
            }
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.expose().as_bytes()))
        {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token",
            )
            .into_response();
        }
    }
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let declared = request
        .headers()
        .get(PROTOCOL_HEADER)
        .is_some_and(|v| v.as_bytes() == PROTOCOL_VERSION.to_string().as_bytes());
    if !safe && !declared {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "protocol_header_required",
            format!("mutating requests must send `{PROTOCOL_HEADER}: {PROTOCOL_VERSION}`"),
        )
        .into_response();
    }
    next.run(request).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
