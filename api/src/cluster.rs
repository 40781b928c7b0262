//! Leader election for several rotad nodes: one node holds a lease and renews; the others
//! stand by and install what it issues. A lease carries a term that goes up each time the
//! lease changes hands, so work done under an old term can be told apart and refused.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::BackendError;

/// The leader lease as it stands: who holds it, under which term, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The holder's `cluster.node_id`.
    pub holder: String,
    /// Goes up by one each time the lease passes to a node (never on a refresh).
    pub term: u64,
    /// When the lease lapses unless its holder refreshes it.
    pub expires_at: OffsetDateTime,
}

/// Where the lease lives (a SurrealDB record, a Kubernetes `Lease`); the election loop that
/// refreshes it every third of its length is shared by every coordinator.
#[async_trait]
pub trait ClusterCoordinator: Send + Sync {
    /// This node's `cluster.node_id`.
    fn node_id(&self) -> &str;

    /// Takes the lease if it is free or lapsed, or extends it if this node holds it, in one
    /// conditional write; returns the lease as it stands afterwards, whoever holds it. Two
    /// nodes can never both be returned a lease naming themselves for overlapping times.
    async fn acquire_or_refresh(&self) -> Result<Lease, BackendError>;

    /// Gives the lease up if this node holds it under `term` (a clean shutdown), so another
    /// node can take it at once instead of waiting for it to lapse.
    async fn release(&self, term: u64) -> Result<(), BackendError>;

    /// The lease as it stands, if any node ever took it.
    async fn current(&self) -> Result<Option<Lease>, BackendError>;
}
