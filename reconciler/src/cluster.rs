//! The reconciler in a cluster: one election loop decides whether this node leads, and only
//! the leader starts renewals (every start goes through `enqueue`, which asks
//! [`Reconciler::is_leader`]). Every third of the lease it takes or extends the lease, reports
//! to the shared store, sets the store's fence to the term it leads under, and picks up the
//! renewals followers forwarded. Becoming leader sweeps at once, so a failover does not wait
//! for the periodic sweep. A node without a cluster always leads.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::Receiver;
use tokio::sync::watch;

use rota_api::CertId;
use rota_api::cluster::{ClusterCoordinator, Lease};
use rota_api::status::{Reason, Step};
use rota_api::wire::cluster::{ClusterRole, ClusterView, LeaseView, NodeView};
use rota_store::{ClusterStore, NodeRecord, StoreError};

use crate::locks::lock;
use crate::reconciler::Reconciler;
use crate::renew::RenewError;

/// How long a clean shutdown waits for the coordinator to release the lease.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a node needs to run in a cluster: where the lease lives and what the nodes share.
pub struct Cluster {
    /// Holds the leader lease.
    pub coordinator: Arc<dyn ClusterCoordinator>,
    /// The shared store's cluster side (fence, heartbeats, forwarded renewals); `None` when
    /// the nodes share no store (a Kubernetes `Lease` with a store of each node's own): the
    /// lease itself is then the fence, and renewals cannot be forwarded.
    pub store: Option<Arc<dyn ClusterStore>>,
    /// `surreal_lock` or `kubernetes_lease`, as the cluster view names it.
    pub coordinator_kind: &'static str,
    /// The lease length; the election runs every third of it.
    pub lease: Duration,
}

/// What the election loop last saw, for the cluster view.
#[derive(Default)]
struct Seen {
    lease: Option<Lease>,
    nodes: Vec<NodeRecord>,
    last_error: Option<String>,
}

/// A cluster membership as the reconciler keeps it.
pub(crate) struct Membership {
    cluster: Cluster,
    /// `Some(term)` while this node leads; `None` before the first lease result and while
    /// it follows.
    leading: watch::Sender<Option<u64>>,
    /// Whether a lease result was seen yet (the first one is logged whatever it says).
    decided: std::sync::atomic::AtomicBool,
    seen: Mutex<Seen>,
}

impl Membership {
    pub(crate) fn new(cluster: Cluster) -> Self {
        Self {
            cluster,
            leading: watch::Sender::new(None),
            decided: std::sync::atomic::AtomicBool::new(false),
            seen: Mutex::default(),
        }
    }

    /// The term this node leads under, if it leads.
    pub(crate) fn term(&self) -> Option<u64> {
        *self.leading.borrow()
    }

    /// The shared store's cluster side, if the nodes share one.
    pub(crate) fn store(&self) -> Option<&Arc<dyn ClusterStore>> {
        self.cluster.store.as_ref()
    }

    /// The lease length.
    pub(crate) fn lease(&self) -> Duration {
        self.cluster.lease
    }

    /// The lease holder as last seen, if a node holds it.
    pub(crate) fn leader(&self) -> Option<String> {
        lock(&self.seen)
            .lease
            .as_ref()
            .map(|l| l.holder.clone())
            .filter(|holder| !holder.is_empty())
    }
}

/// The check made right before a CA is asked to issue: in a cluster, the shared store (or,
/// without one, the lease itself) must still name this node under the term it leads under.
#[derive(Clone, Default)]
pub(crate) enum Fence {
    /// A single node, or a dry run (which issues nothing live).
    #[default]
    Open,
    /// The shared store's fence.
    Store(Arc<dyn ClusterStore>),
    /// The lease, under the term this node led under when the renewal started (`None`: it
    /// no longer led).
    Lease(Arc<dyn ClusterCoordinator>, Option<u64>),
}

impl Fence {
    /// Fails the step with [`Reason::LostLeadership`] when another node took the lease.
    pub(crate) async fn check(&self, step: Step) -> Result<(), RenewError> {
        let lost = |detail: String| {
            RenewError::new(
                step,
                Reason::LostLeadership,
                format!("this node no longer leads the cluster, not asking the CA: {detail}"),
            )
        };
        match self {
            Self::Open => Ok(()),
            Self::Store(store) => store
                .check_fence()
                .await
                .map_err(|e| store_error(step, &e, "checking the leader fence")),
            Self::Lease(_, None) => {
                Err(lost("it was demoted before the renewal started".to_owned()))
            }
            Self::Lease(coordinator, Some(term)) => match coordinator.current().await {
                Ok(Some(lease)) if lease.holder == coordinator.node_id() && lease.term == *term => {
                    Ok(())
                }
                Ok(lease) => Err(lost(format!(
                    "the lease is now {}",
                    lease.map_or_else(
                        || "unheld".to_owned(),
                        |l| format!("held by `{}` under term {}", l.holder, l.term)
                    )
                ))),
                Err(e) => Err(lost(format!("the lease cannot be read: {e}"))),
            },
        }
    }
}

/// A store failure at `step` as a renewal error: a fenced write says this node lost the
/// lease (not a CA failure), anything else is a store failure.
pub(crate) fn store_error(step: Step, error: &StoreError, doing: &str) -> RenewError {
    let reason = if matches!(error, StoreError::Fenced { .. }) {
        Reason::LostLeadership
    } else {
        Reason::StoreFailed
    };
    RenewError::new(step, reason, format!("{doing}: {error}"))
}

impl Reconciler {
    /// Whether this node starts renewals: always without a cluster; in one, only while the
    /// last lease result named this node.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.shared
            .cluster
            .as_ref()
            .is_none_or(|m| m.term().is_some())
    }

    /// This node's place in the cluster, as last seen by the election loop; `None` without
    /// a cluster.
    #[must_use]
    pub fn cluster(&self) -> Option<ClusterView> {
        let membership = self.shared.cluster.as_ref()?;
        let seen = lock(&membership.seen);
        Some(ClusterView {
            node_id: membership.cluster.coordinator.node_id().to_owned(),
            coordinator: membership.cluster.coordinator_kind.to_owned(),
            role: if membership.term().is_some() {
                ClusterRole::Leader
            } else {
                ClusterRole::Follower
            },
            lease: seen.lease.as_ref().map(|l| LeaseView {
                holder: l.holder.clone(),
                term: l.term,
                expires_at: l.expires_at,
            }),
            lease_seconds: membership.cluster.lease.as_secs(),
            nodes: seen
                .nodes
                .iter()
                .map(|n| NodeView {
                    node_id: n.node_id.clone(),
                    last_seen: n.last_seen,
                    version: n.version.clone(),
                    leading: n.leader_term.is_some(),
                })
                .collect(),
            last_error: seen.last_error.clone(),
        })
    }

    /// The fence a live renewal checks before the CA issues.
    pub(crate) fn fence(&self) -> Fence {
        match self.shared.cluster.as_ref() {
            None => Fence::Open,
            Some(m) => match m.store() {
                Some(store) => Fence::Store(Arc::clone(store)),
                None => Fence::Lease(Arc::clone(&m.cluster.coordinator), m.term()),
            },
        }
    }

    /// Starts what a cluster member runs besides the reconciler's own loops: the election
    /// loop. (Install sync for followers is started here too, once it lands.)
    pub(crate) fn spawn_cluster_tasks(&self) {
        let Some(membership) = self.shared.cluster.as_ref() else {
            return;
        };
        self.spawn_election();
        // Every node installs what the leader issues; on the leader it finds nothing newer.
        if let Some(store) = membership.store() {
            self.spawn_install_sync(Arc::clone(store), membership.lease());
        }
    }

    /// Every third of the lease: take or extend it, report, pick up forwarded renewals;
    /// between ticks, forwarded renewals are picked up as the store announces them.
    fn spawn_election(&self) {
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            let Some(membership) = this.shared.cluster.as_ref() else {
                return;
            };
            let tick = time::Duration::try_from(membership.lease() / 3)
                .unwrap_or(time::Duration::SECOND)
                .max(time::Duration::SECOND);
            let mut requests: Option<Receiver<CertId>> = None;
            loop {
                this.election_tick(membership).await;
                if this.is_leader()
                    && let Some(store) = membership.store()
                {
                    if requests.is_none() {
                        let patience = membership.lease() / 3;
                        requests = tokio::time::timeout(patience, store.watch_requests())
                            .await
                            .ok()
                            .and_then(Result::ok);
                    }
                    this.run_forwarded().await;
                } else {
                    requests = None;
                }
                let at = this.shared.clock.now().saturating_add(tick);
                loop {
                    let announced = async {
                        match requests.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = this.shared.shutdown.cancelled() => return,
                        () = this.shared.clock.sleep_until(at) => break,
                        news = announced => match news {
                            Some(_) if this.is_leader() => this.run_forwarded().await,
                            Some(_) => {}
                            // The live query ended: poll, and subscribe again next tick.
                            None => requests = None,
                        },
                    }
                }
            }
        });
    }

    /// One round of the election: take or extend the lease, report to the store, and act on
    /// a change of role. Any error demotes at once.
    async fn election_tick(&self, membership: &Membership) {
        let node = membership.cluster.coordinator.node_id().to_owned();
        // A store that went away may leave a call hanging rather than failing; a leader must
        // stop leading well before its lease lapses, so a tick that takes longer than a third
        // of the lease counts as a failure.
        let patience = membership.lease() / 3;
        let attempt = async {
            match membership.cluster.coordinator.acquire_or_refresh().await {
                Ok(lease) => {
                    let term = (lease.holder == node).then_some(lease.term);
                    let at = self.shared.clock.now();
                    match membership.store() {
                        Some(store) => match store.heartbeat(at, term).await {
                            Ok(()) => Ok((lease, term)),
                            Err(e) => Err(format!("cannot report to the shared store: {e}")),
                        },
                        None => Ok((lease, term)),
                    }
                }
                Err(e) => Err(format!("cannot take or extend the leader lease: {e}")),
            }
        };
        let outcome = tokio::time::timeout(patience, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the lease could not be checked within {}s",
                    patience.as_secs_f64()
                ))
            });
        let term = match outcome {
            Ok((lease, term)) => {
                let mut seen = lock(&membership.seen);
                seen.lease = Some(lease);
                seen.last_error = None;
                term
            }
            Err(error) => {
                tracing::error!(%error, "cluster: following until the lease can be checked again");
                lock(&membership.seen).last_error = Some(error);
                None
            }
        };
        self.set_role(membership, term);
        if let Some(store) = membership.store() {
            match tokio::time::timeout(patience, store.nodes()).await {
                Ok(Ok(nodes)) => lock(&membership.seen).nodes = nodes,
                Ok(Err(e)) => tracing::warn!(error = %e, "cluster: cannot list the nodes"),
                Err(_) => tracing::warn!("cluster: listing the nodes timed out"),
            }
        }
    }

    /// Records the role the last lease result gives; on a change, fences the store and says
    /// so, and a new leader sweeps at once.
    fn set_role(&self, membership: &Membership, term: Option<u64>) {
        let first = !membership
            .decided
            .swap(true, std::sync::atomic::Ordering::SeqCst);
        if !first && membership.term() == term {
            return;
        }
        // The store is fenced before anything can start under the new role.
        if let Some(store) = membership.store() {
            store.set_fence(term);
        }
        membership.leading.send_replace(term);
        if let Some(term) = term {
            tracing::info!("cluster: acquired leader lock (term {term})");
            let this = self.clone();
            self.shared.tasks.spawn(async move { this.sweep().await });
        } else {
            tracing::info!("cluster: still follower");
        }
    }

    /// Follows at once after a renewal was fenced out (the store says another node leads),
    /// rather than starting renewals that would be fenced too; the next election round
    /// says whether this node leads again.
    pub(crate) fn fenced_out(&self) {
        if let Some(membership) = self.shared.cluster.as_ref() {
            self.set_role(membership, None);
        }
    }

    /// Runs every renewal followers forwarded, as forced renewals (one already queued or
    /// running is joined, not run twice).
    async fn run_forwarded(&self) {
        let Some(store) = self.shared.cluster.as_ref().and_then(Membership::store) else {
            return;
        };
        let patience = self
            .shared
            .cluster
            .as_ref()
            .map_or(Duration::from_secs(1), |m| m.lease() / 3);
        let requests = match tokio::time::timeout(patience, store.take_renewal_requests()).await {
            Ok(Ok(requests)) => requests,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: cannot read forwarded renewal requests");
                return;
            }
            Err(_) => {
                tracing::warn!("cluster: reading forwarded renewal requests timed out");
                return;
            }
        };
        for request in requests {
            match self.renew(&request.cert_id) {
                Ok(_) => tracing::info!(
                    cert_id = %request.cert_id,
                    requested_by = %request.requested_by,
                    "running a renewal forwarded by a follower"
                ),
                Err(e) => tracing::warn!(
                    cert_id = %request.cert_id,
                    requested_by = %request.requested_by,
                    error = %e,
                    "cannot run a renewal forwarded by a follower"
                ),
            }
        }
    }

    /// Gives the lease up if this node leads (a clean shutdown), so another node takes over
    /// without waiting for it to lapse.
    pub(crate) async fn release_lease(&self) {
        let Some(membership) = self.shared.cluster.as_ref() else {
            return;
        };
        let Some(term) = membership.leading.send_replace(None) else {
            return;
        };
        if let Some(store) = membership.store() {
            store.set_fence(None);
        }
        let released = tokio::time::timeout(
            RELEASE_TIMEOUT,
            membership.cluster.coordinator.release(term),
        )
        .await;
        match released {
            Ok(Ok(())) => tracing::info!("cluster: released leader lock (term {term})"),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: cannot release the leader lock; it lapses on its own");
            }
            Err(_) => {
                tracing::warn!(
                    "cluster: releasing the leader lock timed out; it lapses on its own"
                );
            }
        }
    }
}
