//! rotad's life: load and validate the config, open the audit store, start the reconciler
//! and the config watcher, serve the API on TCP and on the UNIX socket, and on SIGTERM or
//! SIGINT let in-flight renewals finish (or leave them journalled) before exiting.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use rota_api::config::{AuditConfig, load_file};
use rota_providers::Providers;
use rota_reconciler::{Reconciler, StartError, SystemClock, watch_config};
use rota_store::{AuditStore, SqliteStore};

use crate::api::routes;
use crate::guard::{protocol_header, tcp_guard};
use crate::listener::ApiListener;
use crate::socket::{bind_socket, remove_socket, socket_gid};
use crate::state::AppState;

/// How long in-flight renewals get to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How rotad was started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The config file (also where `rota apply` writes).
    pub config_path: PathBuf,
}

/// Runs rotad until SIGTERM or SIGINT.
pub async fn run(options: DaemonOptions) -> anyhow::Result<()> {
    let path = options.config_path;
    let load_path = path.clone();
    let loaded = tokio::task::spawn_blocking(move || load_file(&load_path))
        .await?
        .map_err(anyhow::Error::new)?;
    let daemon = loaded.config.daemon.clone();
    let gid = socket_gid(&loaded)?;
    // Bound before the reconciler starts, from the config as loaded: the listener's guard
    // settings are fixed here for the life of the process.
    let (tcp, security) = ApiListener::bind(&loaded.config).await?;
    let socket = bind_socket(&daemon.socket_path, gid).await?;
    let store: Arc<dyn AuditStore> = match &loaded.config.audit {
        AuditConfig::Sqlite(_) => {
            Arc::new(SqliteStore::open(&daemon.database_path).with_context(|| {
                format!(
                    "opening the audit database {}",
                    daemon.database_path.display()
                )
            })?)
        }
        AuditConfig::Surrealdb(_) => {
            bail!("audit kind `surrealdb` is not available in this build yet")
        }
    };
    let shutdown = CancellationToken::new();
    let reconciler = Reconciler::start(
        loaded,
        Arc::clone(&store),
        Arc::new(Providers::new()),
        Arc::new(SystemClock),
        shutdown.clone(),
    )
    .await
    .map_err(|e| match e {
        StartError::Config(errors) => anyhow::Error::new(errors),
        other => anyhow::Error::new(other),
    })?;
    watch_config(&reconciler, &path)?;

    let state = AppState {
        reconciler: reconciler.clone(),
        store,
        apply_lock: Arc::default(),
    };
    let listen_addr = security.addr;
    let tcp_app = routes(state.clone())
        .merge(crate::dashboard::routes(
            state.clone(),
            Arc::clone(&security),
        ))
        .layer(axum::middleware::from_fn_with_state(security, tcp_guard))
        .layer(axum::middleware::from_fn(protocol_header));
    let socket_app = routes(state).layer(axum::middleware::from_fn(protocol_header));

    tracing::info!(
        config = %path.display(),
        %listen_addr,
        scheme = tcp.scheme(),
        socket = %daemon.socket_path.display(),
        certs = reconciler.desired().certs.len(),
        "rotad started"
    );

    let servers = tokio::spawn(serve(tcp, tcp_app, socket, socket_app, shutdown.clone()));
    wait_for_signal().await?;
    tracing::info!("stopping: letting in-flight renewals and alert deliveries finish");
    if !reconciler.shutdown(SHUTDOWN_GRACE).await {
        tracing::warn!(
            "renewals or alert deliveries still running after the grace period; a renewal is \
             closed as interrupted at the next start, an alert in flight may be lost"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), servers).await;
    remove_socket(&daemon.socket_path);
    tracing::info!("rotad stopped");
    Ok(())
}

async fn serve(
    tcp: ApiListener,
    tcp_app: Router,
    socket: UnixListener,
    socket_app: Router,
    stop: CancellationToken,
) {
    let tcp_server = tcp.serve(tcp_app, stop.clone());
    let socket_server = axum::serve(socket, socket_app)
        .with_graceful_shutdown(async move { stop.cancelled().await });
    let (a, b) = tokio::join!(tcp_server, socket_server.into_future());
    for result in [a, b] {
        if let Err(e) = result {
            tracing::error!(error = %e, "API server failed");
        }
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
