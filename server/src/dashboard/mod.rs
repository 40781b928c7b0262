//! The dashboard: server-rendered pages on the TCP listener (overview with an expiry
//! timeline, one page per cert), a WebSocket that pushes re-rendered fragments as renewals
//! progress, and a login that exchanges the API token for a session whose forms carry a CSRF
//! token. Pages work without JavaScript; the script only applies live fragments. The cluster
//! panel will sit between the summary bar and the table once federation lands.

mod live;
pub(crate) mod session;
mod timeline;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use rota_api::CertId;
use rota_api::status::RenewalRecord;

use crate::listener::ListenerSecurity;
use crate::state::AppState;
use crate::views;
use session::{COOKIE, LIFETIME, constant_time_eq};
use view::{Counts, DetailLive, DetailPage, LoginPage, OverviewPage, OverviewQuery, Row, Viewer};

/// What the dashboard's handlers reach: the API's state and the listener's guard settings.
#[derive(Clone)]
pub(crate) struct Dashboard {
    pub app: AppState,
    pub listener: Arc<ListenerSecurity>,
}

/// The dashboard's routes, for the TCP listener only.
pub(crate) fn routes(app: AppState, listener: Arc<ListenerSecurity>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/certs/{id}", get(detail))
        .route("/certs/{id}/renew", post(renew_now))
        .route("/renew", post(renew_from_overview))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/ws", get(live::upgrade))
        .route("/assets/dash.css", get(css))
        .route("/assets/dash.js", get(js))
        .layer(axum::middleware::from_fn(page_headers))
        .with_state(Dashboard { app, listener })
}

/// Whether `path` is a dashboard form the guard leaves to the dashboard's own check (the
/// token in the login form; a session and its CSRF token for the others).
pub(crate) fn is_form(path: &str) -> bool {
    path == "/login"
        || path == "/logout"
        || path == "/renew"
        || path
            .strip_prefix("/certs/")
            .is_some_and(|rest| rest.ends_with("/renew"))
}

/// Whether `path` is a dashboard page (served to a session when reads need a credential).
pub(crate) fn is_page(path: &str) -> bool {
    !path.starts_with("/api/") && !matches!(path, "/metrics" | "/readyz" | "/healthz")
}

/// Whether `path` can be read by anyone who may log in: the login form and its assets.
pub(crate) fn is_public(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/")
}

/// Security headers on every dashboard response: scripts and styles from rotad only, no
/// framing, no referrer leaking paths elsewhere.
async fn page_headers(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

impl Dashboard {
    /// Who is asking: their CSRF token when logged in.
    fn viewer(&self, headers: &HeaderMap) -> Viewer {
        Viewer {
            csrf: self.listener.sessions.lookup(headers).map(|s| s.csrf),
            actions_possible: self.listener.token.is_some(),
        }
    }

    /// Every cert's row, in config order.
    async fn rows(&self) -> Result<Vec<Row>, Response> {
        let summaries = views::summaries(&self.app)
            .await
            .map_err(|e| store_failed(&e))?;
        let last = self
            .app
            .store
            .last_renewals()
            .await
            .map_err(|e| store_failed(&e))?;
        let desired = self.app.reconciler.desired();
        let now = time::OffsetDateTime::now_utc();
        Ok(summaries
            .iter()
            .map(|s| {
                let state = self.app.reconciler.state(&s.id);
                let renews_at = desired
                    .cert(&s.id)
                    .and_then(|c| self.app.reconciler.renews_at(c));
                Row::new(s, &state.conditions, renews_at, last.get(&s.id), now)
            })
            .collect())
    }

    /// One cert's row, for a live update.
    async fn row(&self, id: &CertId) -> Option<Row> {
        let desired = self.app.reconciler.desired();
        let cert = desired.cert(id)?;
        let last: Option<RenewalRecord> = self.app.store.renewals(id, 1).await.ok()?.pop();
        let mut statuses = HashMap::new();
        if let Some(r) = &last {
            statuses.insert(id.clone(), r.status);
        }
        let state = self.app.reconciler.state(id);
        let summary = views::summary(&self.app, cert, &state, &statuses);
        Some(Row::new(
            &summary,
            &state.conditions,
            self.app.reconciler.renews_at(cert),
            last.as_ref(),
            time::OffsetDateTime::now_utc(),
        ))
    }

    /// The live part of a cert's page.
    async fn detail_live(
        &self,
        id: &CertId,
        viewer: Viewer,
    ) -> Result<Option<DetailLive>, Response> {
        let Some(detail) = views::detail(&self.app, id)
            .await
            .map_err(|e| store_failed(&e))?
        else {
            return Ok(None);
        };
        let mut steps = Vec::with_capacity(detail.renewals.len());
        for r in &detail.renewals {
            steps.push(
                self.app
                    .store
                    .steps(r.id)
                    .await
                    .map_err(|e| store_failed(&e))?,
            );
        }
        Ok(Some(DetailLive::new(
            &detail,
            &steps,
            viewer,
            time::OffsetDateTime::now_utc(),
        )))
    }
}

fn store_failed(e: &rota_store::StoreError) -> Response {
    tracing::error!(error = %e, "audit store failed while rendering the dashboard");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "the audit store cannot be read; see rotad's log",
    )
        .into_response()
}

fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a dashboard page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render this page").into_response()
        }
    }
}

async fn overview(
    State(dash): State<Dashboard>,
    Query(query): Query<OverviewQuery>,
    headers: HeaderMap,
) -> Response {
    let rows = match dash.rows().await {
        Ok(rows) => rows,
        Err(refused) => return refused,
    };
    let counts = Counts::of(&rows);
    let desired = dash.app.reconciler.desired();
    let now = time::OffsetDateTime::now_utc();
    let lanes: Vec<timeline::Lane> = desired
        .certs
        .iter()
        .filter_map(|c| {
            let state = dash.app.reconciler.state(&c.spec.id);
            let Some(rota_reconciler::Observation::Installed(installed)) = state.observed else {
                return None;
            };
            Some(timeline::Lane {
                id: c.spec.id.to_string(),
                not_after: installed.not_after,
                renews_at: dash.app.reconciler.renews_at(c),
            })
        })
        .collect();
    let total = rows.len();
    let mut rows = filter(rows, &query);
    sort(&mut rows, query.sort.as_deref());
    render(&OverviewPage {
        viewer: dash.viewer(&headers),
        counts,
        shown_of: total,
        rows,
        query,
        timeline: timeline::draw(&lanes, now),
        watch: "/ws".to_owned(),
    })
}

fn filter(rows: Vec<Row>, query: &OverviewQuery) -> Vec<Row> {
    let needle = query.q.as_deref().unwrap_or("").trim().to_ascii_lowercase();
    rows.into_iter()
        .filter(|r| {
            needle.is_empty()
                || r.id.to_ascii_lowercase().contains(&needle)
                || r.domains.contains(&needle)
        })
        .filter(|r| match query.show.as_deref() {
            Some("ready") => r.ready,
            Some("issuing") => r.issuing,
            Some("failing") => r.failing,
            Some("not-ready") => !r.ready,
            _ => true,
        })
        .collect()
}

fn sort(rows: &mut [Row], key: Option<&str>) {
    match key {
        Some("id") => rows.sort_by(|a, b| a.id.cmp(&b.id)),
        Some("status") => rows.sort_by_key(|r| (r.ready, !r.failing, r.id.clone())),
        // Most urgent first: nothing installed, then fewest days left.
        _ => rows.sort_by_key(|r| (r.days.is_some(), r.days, r.id.clone())),
    }
}

async fn detail(
    State(dash): State<Dashboard>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = CertId::new(&id) else {
        return (StatusCode::NOT_FOUND, "no such cert").into_response();
    };
    let viewer = dash.viewer(&headers);
    let live = match dash.detail_live(&id, viewer.clone()).await {
        Ok(Some(live)) => live,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!("no cert `{id}` in the running config"),
            )
                .into_response();
        }
        Err(refused) => return refused,
    };
    let desired = dash.app.reconciler.desired();
    let row = desired.certs.iter().position(|c| c.spec.id == id);
    let spec = row
        .and_then(|row| desired.loaded.certs_as_written().ok()?.into_iter().nth(row))
        .and_then(|v| serde_yaml::to_string(&v).ok())
        .unwrap_or_default();
    let description = desired
        .cert(&id)
        .and_then(|c| c.spec.description.clone())
        .unwrap_or_default();
    render(&DetailPage {
        viewer,
        watch: format!("/ws?cert={id}"),
        id: id.to_string(),
        description,
        spec,
        live,
    })
}

/// A dashboard form: its CSRF token.
#[derive(Deserialize)]
struct CsrfForm {
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
struct RenewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    cert: String,
}

/// "Renew now" on an overview row: one form per page, the button names the cert (a form
/// per row would weigh a thousand CSRF tokens).
async fn renew_from_overview(
    State(dash): State<Dashboard>,
    headers: HeaderMap,
    form: Result<Form<RenewForm>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or(RenewForm {
        csrf: String::new(),
        cert: String::new(),
    });
    if let Err(refused) = check_form(&dash, &headers, &form.csrf) {
        return refused.into_response();
    }
    renew(&dash, &form.cert)
}

async fn renew_now(
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

async fn login_form(State(dash): State<Dashboard>, headers: HeaderMap) -> Response {
    render(&LoginPage {
        viewer: dash.viewer(&headers),
        error: String::new(),
        watch: String::new(),
    })
}

/// The login form.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
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

async fn logout(
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

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/dash.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/dash.js"),
    )
}
