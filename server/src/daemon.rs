//! rotad's life: load and validate the config, open the audit store, start the reconciler
//! and the config watcher, serve the API on TCP and on the UNIX socket, and on SIGTERM or
//! SIGINT let in-flight renewals finish (or leave them journalled) before exiting.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use rota_api::cluster::ClusterCoordinator;
use rota_api::config::{AuditConfig, ClusterConfig, Config, Coordinator, SurrealAudit, load_file};
use rota_providers::Providers;
use rota_providers::cluster::k8s_lease::K8sLeaseCoordinator;
use rota_reconciler::{Cluster, Reconciler, StartError, SystemClock, watch_config};
use rota_store::{
    AuditStore, ClusterStore, SqliteStore, SurrealLockCoordinator, SurrealOptions, SurrealStore,
};

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
    // rustls is built with both ring and aws-lc-rs here (SurrealDB's WebSocket client brings
    // the latter), so it cannot choose for the clients that ask for the process default
    // (`wss://` to SurrealDB, kube): choose ring, as rota's own clients do.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    let (store, surreal) = open_store(&loaded.config).await?;
    let shutdown = CancellationToken::new();
    let (factory, clock) = (Arc::new(Providers::new()), Arc::new(SystemClock));
    let cluster = match &loaded.config.cluster {
        Some(cluster) if cluster.enabled => Some(join_cluster(cluster, surreal.as_ref()).await?),
        _ => None,
    };
    let started = match cluster {
        Some(cluster) => {
            Reconciler::start_in_cluster(
                loaded,
                Arc::clone(&store),
                factory,
                clock,
                shutdown.clone(),
                cluster,
            )
            .await
        }
        None => {
            Reconciler::start(loaded, Arc::clone(&store), factory, clock, shutdown.clone()).await
        }
    };
    let reconciler = started.map_err(|e| match e {
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

/// Opens the audit store the config names; a SurrealDB one is also returned as itself, for
/// the cluster that shares it.
async fn open_store(
    config: &Config,
) -> anyhow::Result<(Arc<dyn AuditStore>, Option<SurrealStore>)> {
    let daemon = &config.daemon;
    match &config.audit {
        AuditConfig::Sqlite(_) => {
            let store = SqliteStore::open(&daemon.database_path).with_context(|| {
                format!(
                    "opening the audit database {}",
                    daemon.database_path.display()
                )
            })?;
            Ok((Arc::new(store), None))
        }
        AuditConfig::Surrealdb(audit) => {
            let options = surreal_options(audit, config.cluster.as_ref())?;
            let store = SurrealStore::connect(&options).await.with_context(|| {
                format!(
                    "opening the SurrealDB audit store at {} ({}/{})",
                    audit.endpoint, audit.namespace, audit.database
                )
            })?;
            Ok((Arc::new(store.clone()), Some(store)))
        }
    }
}

/// The connection settings of `audit: { kind: surrealdb }`, the password read from its file;
/// this node's rows carry `cluster.node_id`, else the host's name.
fn surreal_options(
    audit: &SurrealAudit,
    cluster: Option<&ClusterConfig>,
) -> anyhow::Result<SurrealOptions> {
    let password = match &audit.password_file {
        Some(source) => source
            .resolve()
            .context("reading `audit.password_file`")?
            .expose()
            .to_owned(),
        None => String::new(),
    };
    let node = match cluster {
        Some(cluster) => cluster.node_id.clone(),
        None => nix::unistd::gethostname()
            .context("reading the host name (rows name the node that wrote them)")?
            .to_string_lossy()
            .into_owned(),
    };
    Ok(SurrealOptions {
        endpoint: audit.endpoint.clone(),
        namespace: audit.namespace.clone(),
        database: audit.database.clone(),
        credentials: audit.username.clone().map(|user| (user, password)),
        node,
    })
}

/// The coordinator `cluster.coordinator` names, and the shared store's cluster side.
async fn join_cluster(
    cluster: &ClusterConfig,
    surreal: Option<&SurrealStore>,
) -> anyhow::Result<Cluster> {
    let lease = Duration::from_secs(cluster.lease_seconds);
    let store = surreal.map(|s| Arc::new(s.clone()) as Arc<dyn ClusterStore>);
    let (coordinator, coordinator_kind): (Arc<dyn ClusterCoordinator>, _) =
        match cluster.coordinator {
            Coordinator::SurrealLock => {
                // Validation refuses `surreal_lock` without a SurrealDB audit store.
                let surreal = surreal.context(
                    "`cluster.coordinator: surreal_lock` needs `audit: { kind: surrealdb }`",
                )?;
                (
                    Arc::new(SurrealLockCoordinator::new(surreal, lease)),
                    "surreal_lock",
                )
            }
            Coordinator::KubernetesLease => {
                let coordinator = K8sLeaseCoordinator::from_config(cluster)
                    .await
                    .context("setting up the Kubernetes Lease coordinator")?;
                (Arc::new(coordinator), "kubernetes_lease")
            }
        };
    tracing::info!(
        node_id = %cluster.node_id,
        coordinator = coordinator_kind,
        lease_seconds = cluster.lease_seconds,
        "joining the cluster"
    );
    Ok(Cluster {
        coordinator,
        store,
        coordinator_kind,
        lease,
    })
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
