//! Request guards. Every response carries the wire protocol version. The UNIX socket is the
//! admin channel, guarded by its file mode. On TCP, checked against the settings the listener
//! was bound with (never the reloaded config):
//! - the Host header must name this listener (DNS-rebinding defence), else 421;
//! - `/healthz` and `/readyz` are always served (a kubelet's probes carry no token, and the
//!   answers tell nothing but up/ready); other reads (GET, HEAD) are open unless the listener is
//!   reachable from other hosts with a token set, when they need the token too;
//! - every other method is a mutation: refused (403) when no token is configured, else it
//!   needs the bearer token (401) and the protocol header, which a browser cannot send
//!   cross-origin without a CORS preflight that rotad never grants (403);
//! - the dashboard's forms (login, logout, renew now) are the exception: they are checked by
//!   the dashboard itself (the token typed into the login form; a session cookie plus the
//!   session's CSRF token), and only when a token is configured. Where reads need the token,
//!   a session stands for it on the dashboard's pages, never on the JSON API.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use rota_api::SecretSource;
use rota_api::wire::{PROTOCOL_HEADER, PROTOCOL_VERSION};

use crate::dashboard::{self, session::constant_time_eq};
use crate::error::ApiError;
use crate::listener::ListenerSecurity;

/// Adds the protocol header to every response.
pub(crate) async fn protocol_header(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(PROTOCOL_HEADER, HeaderValue::from(PROTOCOL_VERSION));
    response
}

/// The TCP-only checks, in the order the module docs give.
pub(crate) async fn tcp_guard(
    State(listener): State<Arc<ListenerSecurity>>,
    request: Request,
    next: Next,
) -> Response {
    match refusal(
        &listener,
        request.method(),
        request.uri().path(),
        request.headers(),
    ) {
        Some(refused) => refused.into_response(),
        None => next.run(request).await,
    }
}

/// Why a TCP request is refused, or `None` when it may go through.
fn refusal(
    listener: &ListenerSecurity,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| listener.serves_host(h)) {
        return Some(misdirected(host, listener));
    }
    if matches!(path, "/healthz" | "/readyz") {
        return None;
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    if read && !listener.reads_need_token {
        return None;
    }
    if read && dashboard::is_page(path) {
        // A browser cannot send the bearer token: its session stands for it, on pages only.
        let session = listener.sessions.lookup(headers).is_some();
        if session || dashboard::is_public(path) {
            return None;
        }
    }
    if !read && listener.token.is_some() && dashboard::is_form(path) {
        // The login form carries the token, the others a session and its CSRF token: the
        // dashboard checks them (never accepted for the JSON API).
        return None;
    }
    let Some(token) = &listener.token else {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "read_only",
                "the TCP API is read-only because no token is configured: use the UNIX socket (the `rota` CLI), or set `daemon.api_token_file` and restart rotad to allow changes over TCP with that bearer token",
            )
            .into_response(),
        );
    };
    if let Some(refused) = check_bearer(token, headers) {
        return Some(refused);
    }
    let declared = headers
        .get(PROTOCOL_HEADER)
        .is_some_and(|v| v.as_bytes() == PROTOCOL_VERSION.to_string().as_bytes());
    if !read && !declared {
        return Some(
            ApiError::new(
                StatusCode::FORBIDDEN,
                "protocol_header_required",
                format!("mutating requests must send `{PROTOCOL_HEADER}: {PROTOCOL_VERSION}`"),
            )
            .into_response(),
        );
    }
    None
}

fn misdirected(host: Option<&str>, listener: &ListenerSecurity) -> Response {
    let shown = host.map_or_else(|| "no Host header".to_owned(), |h| format!("Host `{h}`"));
    ApiError::new(
        StatusCode::MISDIRECTED_REQUEST,
        "misdirected_request",
        format!(
            "{shown} does not name this rotad (listening on {}); use its address or `localhost`, or add the name to `daemon.allowed_hosts` and restart rotad",
            listener.addr
        ),
    )
    .into_response()
}

/// `None` when the request carries the token read from `token` now (so a rotated file is
/// picked up); fails closed when the token cannot be read.
fn check_bearer(token: &SecretSource, headers: &HeaderMap) -> Option<Response> {
    let expected = match token.resolve() {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(error = %e, "cannot read daemon.api_token_file; refusing TCP API calls that need it");
            return Some(
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the API token cannot be read on the daemon side",
                )
                .into_response(),
            );
        }
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), expected.expose().as_bytes())) {
        return None;
    }
    let mut refused = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong bearer token: send `Authorization: Bearer <the token in daemon.api_token_file>`",
    )
    .into_response();
    refused
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_api::config::DaemonConfig;

    /// A listener bound to `addr` whose token is in a file holding `TOKEN`.
    fn listener(addr: &str, dir: &std::path::Path) -> ListenerSecurity {
        let file = dir.join("token");
        std::fs::write(&file, TOKEN).unwrap();
        let daemon = DaemonConfig {
            api_token_file: Some(SecretSource::File(file)),
            allowed_hosts: vec!["rota.example.com".to_owned()],
            ..DaemonConfig::default()
        };
        ListenerSecurity::capture(&daemon, addr.parse().unwrap())
    }

    const TOKEN: &str = "guard-unit-token";

    fn headers(host: &str, cookie: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(c) = cookie {
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("rota_session={c}")).unwrap(),
            );
        }
        h
    }

    fn status(l: &ListenerSecurity, method: &Method, path: &str, h: &HeaderMap) -> u16 {
        refusal(l, method, path, h).map_or(200, |r| r.status().as_u16())
    }

    #[test]
    fn a_session_opens_dashboard_pages_never_the_json_api() {
        let dir = tempfile::tempdir().unwrap();
        // Reachable from other hosts: reads need a credential.
        let wide = listener("0.0.0.0:7878", dir.path());
        let (session, _csrf) = wide.sessions.open();
        let host = "rota.example.com";
        let anonymous = headers(host, None);
        let logged_in = headers(host, Some(&session));
        let forged = headers(host, Some("0123"));
        for (method, path, h, expected, why) in [
            (
                Method::GET,
                "/",
                &anonymous,
                401,
                "a page needs a credential here",
            ),
            (Method::GET, "/", &logged_in, 200, "a session opens pages"),
            (Method::GET, "/", &forged, 401, "an unknown session is none"),
            (Method::GET, "/ws", &logged_in, 200, "and the live socket"),
            (
                Method::GET,
                "/login",
                &anonymous,
                200,
                "the login form is public",
            ),
            (
                Method::GET,
                "/assets/dash.css",
                &anonymous,
                200,
                "and its assets",
            ),
            (
                Method::GET,
                "/api/certs",
                &logged_in,
                401,
                "the JSON API wants the bearer",
            ),
            (
                Method::GET,
                "/metrics",
                &logged_in,
                401,
                "so do the metrics",
            ),
            (
                Method::POST,
                "/api/certs/web/renew",
                &logged_in,
                401,
                "and every API mutation",
            ),
            (
                Method::POST,
                "/certs/web/renew",
                &anonymous,
                200,
                "forms are checked by the dashboard",
            ),
            (
                Method::POST,
                "/login",
                &anonymous,
                200,
                "the login form carries the token",
            ),
            (
                Method::GET,
                "/healthz",
                &anonymous,
                200,
                "health is always served",
            ),
            (
                Method::GET,
                "/readyz",
                &anonymous,
                200,
                "readiness is always served, for probes without the token",
            ),
        ] {
            assert_eq!(
                status(&wide, &method, path, h),
                expected,
                "{method} {path}: {why}"
            );
        }
        let elsewhere = headers("evil.example", Some(&session));
        assert_eq!(status(&wide, &Method::POST, "/login", &elsewhere), 421);
    }

    #[test]
    fn without_a_token_dashboard_forms_are_refused_by_the_guard() {
        let daemon = DaemonConfig::default();
        let l = ListenerSecurity::capture(&daemon, "127.0.0.1:7878".parse().unwrap());
        let h = headers("localhost:7878", None);
        assert_eq!(status(&l, &Method::GET, "/", &h), 200);
        for path in ["/login", "/logout", "/renew", "/certs/web/renew"] {
            assert_eq!(status(&l, &Method::POST, path, &h), 403, "{path}");
        }
    }
}
