//! `/ws`: live updates. The socket subscribes to the reconciler's events (every renewal's
//! progress, whoever started it, and every change of what a cert shows) and answers each with
//! the re-rendered fragments the open page shows — the cert's row and the summary bar on the
//! overview, the live part of a cert's page — as `{"fragments":[{"id":..,"html":..}]}`. A
//! page swaps each element of that id. The reconciler never waits for a socket: events are
//! broadcast with a bounded backlog, and a socket that falls behind is told to reload.

use std::time::Duration;

use askama::Template;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use rota_api::CertId;
use rota_reconciler::CertEvent;

use super::Dashboard;
use super::actions::check_origin;
use super::view::{Counts, RowFragment, SummaryFragment, Viewer};

/// A client that does not take a message within this time is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Which page is watching.
#[derive(Deserialize)]
pub(crate) struct Watch {
    /// A cert's page; the overview when absent.
    cert: Option<String>,
}

/// One message to the page.
#[derive(Serialize, Default)]
struct Update {
    fragments: Vec<Fragment>,
    /// The page should re-read itself (the socket fell behind).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    resync: bool,
}

#[derive(Serialize)]
struct Fragment {
    id: String,
    html: String,
}

pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(dash): State<Dashboard>,
    Query(watch): Query<Watch>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = check_origin(&headers) {
        return refused.into_response();
    }
    let cert = match watch.cert.as_deref().map(CertId::new) {
        Some(Err(_)) => return (axum::http::StatusCode::NOT_FOUND, "no such cert").into_response(),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let viewer = dash.viewer(&headers);
    ws.on_upgrade(move |socket| follow(socket, dash, cert, viewer))
}

async fn follow(mut socket: WebSocket, dash: Dashboard, cert: Option<CertId>, viewer: Viewer) {
    // Subscribed before the first render, so nothing happens unseen in between.
    let mut events = dash.app.reconciler.events();
    if let Some(id) = &cert {
        let first = detail_update(&dash, id, &viewer).await;
        if !send(&mut socket, &first).await {
            return;
        }
    }
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let update = match event {
            Ok(CertEvent::Progress { cert: id, .. } | CertEvent::Changed { cert: id }) => {
                match &cert {
                    Some(watched) if *watched == id => detail_update(&dash, &id, &viewer).await,
                    Some(_) => continue,
                    None => overview_update(&dash, &id, &viewer).await,
                }
            }
            Err(RecvError::Lagged(_)) => Update {
                resync: true,
                ..Update::default()
            },
            Err(RecvError::Closed) => return,
        };
        if !send(&mut socket, &update).await {
            return;
        }
    }
}

async fn send(socket: &mut WebSocket, update: &Update) -> bool {
    let Ok(text) = serde_json::to_string(update) else {
        return false;
    };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

async fn overview_update(dash: &Dashboard, id: &CertId, viewer: &Viewer) -> Update {
    let mut fragments = Vec::new();
    if let Some(row) = dash.row(id).await
        && let Ok(html) = (RowFragment { row: &row, viewer }).render()
    {
        fragments.push(Fragment {
            id: format!("row-{id}"),
            html,
        });
    }
    if let Ok(snapshot) = dash.compute_snapshot(dash.cache.unshared()).await
        && let Ok(html) = (SummaryFragment {
            counts: Counts::of(&snapshot.rows),
        })
        .render()
    {
        fragments.push(Fragment {
            id: "summary".to_owned(),
            html,
        });
    }
    Update {
        fragments,
        resync: false,
    }
}

async fn detail_update(dash: &Dashboard, id: &CertId, viewer: &Viewer) -> Update {
    let fragments = match dash.detail_live(id, viewer.clone()).await {
        Ok(Some(live)) => live
            .render()
            .ok()
            .map(|html| Fragment {
                id: "live".to_owned(),
                html,
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    Update {
        fragments,
        resync: false,
    }
}
