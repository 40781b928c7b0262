//! The dashboard's actions: the login that exchanges the API token for a session, logout,
//! and "Renew now". Every form but the login must come with a live session and that
//! session's CSRF token, and none may come from a page of another origin.

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use rota_api::CertId;

use super::session::{COOKIE, LIFETIME, constant_time_eq};
use super::view::{LoginPage, Viewer};
use super::{Dashboard, render};

/// A dashboard form: its CSRF token.
#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// The form's CSRF token; empty for a body that is no form (refused like a missing token).
fn csrf_of(form: Result<Form<CsrfForm>, FormRejection>) -> String {
    form.map(|Form(f)| f.csrf).unwrap_or_default()
}

/// Refuses a dashboard POST that has no live session, whose CSRF token is not the
/// session's, or that a page of another origin sent.
fn check_form(dash: &Dashboard, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
    check_origin(headers)?;
    let Some(session) = dash.listener.sessions.lookup(headers) else {
        return Err(Refusal(
            StatusCode::UNAUTHORIZED,
            "log in first (at /login, with the API token)",
        ));
    };
    if !constant_time_eq(session.csrf.as_bytes(), csrf.as_bytes()) {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or stale: reload the page and try again",
        ));
    }
    Ok(())
}

/// Why a dashboard request was refused: a status and a plain-text reason.
#[derive(Debug)]
pub(crate) struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

/// A browser names the page's origin on every POST and WebSocket upgrade; one of another
/// host is refused (a cross-site form or socket).
pub(crate) fn check_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(Refusal(
            StatusCode::FORBIDDEN,
            "cross-origin request refused",
        ))
    }
}

/// The overview's one renew form: its token and the cert whose button was pressed.
#[derive(Deserialize)]
pub(super) struct RenewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    cert: String,
}

/// "Renew now" on an overview row: one form per page, the button names the cert (a form
/// per row would weigh a thousand CSRF tokens).
pub(super) async fn renew_from_overview(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    form: Result<Form<RenewForm>, FormRejection>,
) -> Response {
    let form = form.map_or_else(
        |_| RenewForm {
            csrf: String::new(),
            cert: String::new(),
        },
        |Form(f)| f,
    );
    if let Err(refused) = check_form(&dash, &headers, &form.csrf) {
        return refused.into_response();
    }
    renew(&dash, &form.cert)
}

pub(super) async fn renew_now(
    State(dash): State<Dashboard>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = check_form(&dash, &headers, &csrf_of(form)) {
        return refused.into_response();
    }
    renew(&dash, &id)
}

/// Starts (or joins) a renewal of `id` and sends the browser to its page, which follows it.
fn renew(dash: &Dashboard, id: &str) -> Response {
    let Ok(id) = CertId::new(id) else {
        return (StatusCode::NOT_FOUND, "no such cert").into_response();
    };
    // The renewal outlives this request; the page it redirects to follows it live.
    match dash.app.reconciler.renew(&id) {
        Ok(_ticket) => Redirect::to(&format!("/certs/{id}")).into_response(),
        Err(e @ rota_reconciler::RenewRequestError::NotFound(_)) => {
            (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => (StatusCode::CONFLICT, e.to_string()).into_response(),
    }
}

pub(super) async fn login_form(State(dash): State<Dashboard>, headers: HeaderMap) -> Response {
    render(&LoginPage {
        viewer: dash.viewer(&headers),
        error: String::new(),
        watch: String::new(),
    })
}

/// The login form.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

pub(super) async fn login(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refused) = check_origin(&headers) {
        return refused.into_response();
    }
    let refuse = |status: StatusCode, error: &str| {
        let page = LoginPage {
            viewer: Viewer {
                csrf: None,
                actions_possible: dash.listener.token.is_some(),
            },
            error: error.to_owned(),
            watch: String::new(),
        };
        let mut response = render(&page);
        *response.status_mut() = status;
        response
    };
    let Some(source) = &dash.listener.token else {
        return refuse(
            StatusCode::FORBIDDEN,
            "This rotad has no API token configured (daemon.api_token_file), so the dashboard is read-only.",
        );
    };
    let Ok(expected) = source.resolve() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "The API token cannot be read on the daemon side; see rotad's log.",
        );
    };
    if !constant_time_eq(form.token.trim().as_bytes(), expected.expose().as_bytes()) {
        return refuse(StatusCode::UNAUTHORIZED, "That is not the API token.");
    }
    let (id, _csrf) = dash.listener.sessions.open();
    let secure = if dash.listener.tls { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        LIFETIME.as_secs()
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub(super) async fn logout(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    if let Err(refused) = check_form(&dash, &headers, &csrf_of(form)) {
        return refused.into_response();
    }
    dash.listener.sessions.close(&headers);
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rota_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}
