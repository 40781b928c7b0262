//! The dashboard: server-rendered pages on the TCP listener (overview with an expiry
//! timeline, one page per cert), a WebSocket that pushes re-rendered fragments as renewals
//! progress, and a login that exchanges the API token for a session whose forms carry a CSRF
//! token. Pages work without JavaScript; the script only applies live fragments. The cluster
//! panel will sit between the summary bar and the table once federation lands.

mod actions;
mod live;
pub(crate) mod session;
mod snapshot;
mod timeline;
mod view;

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use rota_api::CertId;
use rota_api::status::{RenewalRecord, RenewalStatus};

use crate::listener::ListenerSecurity;
use crate::state::AppState;
use crate::views;
use snapshot::{Snapshot, SnapshotCache};
use tokio::sync::broadcast::error::RecvError;
use view::{
    ClusterPanel, Counts, DetailLive, DetailPage, OverviewPage, OverviewQuery, Row, Viewer,
};

/// What the dashboard's handlers reach: the API's state and the listener's guard settings.
#[derive(Clone)]
pub(crate) struct Dashboard {
    pub app: AppState,
    pub listener: Arc<ListenerSecurity>,
    /// The overview's shared data.
    cache: Arc<SnapshotCache>,
}

/// The dashboard's routes, for the TCP listener only.
pub(crate) fn routes(app: AppState, listener: Arc<ListenerSecurity>) -> Router {
    let cache = invalidate_on_events(&app);
    Router::new()
        .route("/", get(overview))
        .route("/certs/{id}", get(detail))
        .route("/certs/{id}/renew", post(actions::renew_now))
        .route("/renew", post(actions::renew_from_overview))
        .route("/login", get(actions::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/ws", get(live::upgrade))
        .route("/assets/dash.css", get(css))
        .route("/assets/dash.js", get(js))
        .layer(axum::middleware::from_fn(page_headers))
        .with_state(Dashboard {
            app,
            listener,
            cache,
        })
}

/// Drops the overview's shared data at every event, for as long as the reconciler runs.
fn invalidate_on_events(app: &AppState) -> Arc<SnapshotCache> {
    let cache = Arc::new(SnapshotCache::default());
    let mut events = app.reconciler.events();
    let dropped = Arc::clone(&cache);
    tokio::spawn(async move {
        // Lagging behind means events were missed: dropping the snapshot is right either way.
        while let Ok(_) | Err(RecvError::Lagged(_)) = events.recv().await {
            dropped.invalidate();
        }
    });
    cache
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

    /// Every cert's row and the timeline: shared while fresh, else computed now.
    async fn snapshot(&self) -> Result<Arc<Snapshot>, Response> {
        if let Ok(shared) = self.cache.get() {
            return Ok(shared);
        }
        let _turn = self.cache.computing.lock().await;
        match self.cache.get() {
            Ok(shared) => Ok(shared),
            Err(ticket) => self.compute_snapshot(ticket).await,
        }
    }

    /// Computes every cert's row and the timeline, and shares them unless an event came
    /// since `ticket` was taken. A live update computes afresh this way: it may run before
    /// the event that woke it has dropped the shared snapshot.
    async fn compute_snapshot(&self, ticket: u64) -> Result<Arc<Snapshot>, Response> {
        let last = self
            .app
            .store
            .last_renewals()
            .await
            .map_err(|e| store_failed(&e))?;
        let statuses: HashMap<CertId, RenewalStatus> =
            last.iter().map(|(id, r)| (id.clone(), r.status)).collect();
        let desired = self.app.reconciler.desired();
        let now = time::OffsetDateTime::now_utc();
        let mut rows = Vec::with_capacity(desired.certs.len());
        let mut lanes = Vec::new();
        for cert in &desired.certs {
            let id = &cert.spec.id;
            let state = self.app.reconciler.state(id);
            let summary = views::summary(&self.app, cert, &state, &statuses);
            let renews_at = self.app.reconciler.renews_at(cert);
            if let Some(rota_reconciler::Observation::Installed(installed)) = &state.observed {
                lanes.push(timeline::Lane {
                    id: id.to_string(),
                    not_after: installed.not_after,
                    renews_at,
                });
            }
            rows.push(Row::new(
                &summary,
                &state.conditions,
                renews_at,
                last.get(id),
                now,
            ));
        }
        let snapshot = Arc::new(Snapshot {
            rows,
            timeline: timeline::draw(&lanes, now),
            cluster: self
                .app
                .reconciler
                .cluster()
                .map(|view| ClusterPanel::new(&view, now)),
            anonymous_page: std::sync::OnceLock::new(),
        });
        self.cache.keep(ticket, Arc::clone(&snapshot));
        Ok(snapshot)
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
    let snapshot = match dash.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(refused) => return refused,
    };
    let viewer = dash.viewer(&headers);
    let plain =
        viewer.csrf.is_none() && query.q.is_none() && query.show.is_none() && query.sort.is_none();
    if plain && let Some(page) = snapshot.anonymous_page.get() {
        return Html(page.clone()).into_response();
    }
    let mut rows = filter(&snapshot.rows, &query);
    sort(&mut rows, query.sort.as_deref());
    let page = OverviewPage {
        viewer,
        counts: Counts::of(&snapshot.rows),
        shown_of: snapshot.rows.len(),
        rows,
        query,
        timeline: &snapshot.timeline,
        cluster: snapshot.cluster.as_ref(),
        watch: "/ws".to_owned(),
    };
    if !plain {
        return render(&page);
    }
    match page.render() {
        Ok(html) => {
            let html = snapshot
                .anonymous_page
                .get_or_init(|| axum::body::Bytes::from(html));
            Html(html.clone()).into_response()
        }
        Err(_) => render(&page),
    }
}

fn filter<'a>(rows: &'a [Row], query: &OverviewQuery) -> Vec<&'a Row> {
    let needle = query.q.as_deref().unwrap_or("").trim().to_ascii_lowercase();
    rows.iter()
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

fn sort(rows: &mut [&Row], key: Option<&str>) {
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
