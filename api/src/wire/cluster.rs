//! `GET /api/cluster`: this node's place in a federation, as `rota cluster`, the dashboard's
//! cluster panel and the `rota_leader` metric show it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Whether this node renews (leader) or stands by and installs what the leader issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterRole {
    /// Holds the lease: sweeps, renews, records issued certs.
    Leader,
    /// Stands by; installs issued certs and forwards `rota renew` to the leader.
    Follower,
}

/// The leader lease as this node last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    /// The holder's node id (empty when the lease was released and nobody took it yet).
    pub holder: String,
    /// The term it holds it under.
    pub term: u64,
    /// When it lapses unless refreshed.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A node as it last reported itself in the shared store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    /// Its `cluster.node_id`.
    pub node_id: String,
    /// When it last reported.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
    /// The rota version it runs.
    pub version: String,
    /// Whether it believed it led when it reported.
    pub leading: bool,
}

/// `GET /api/cluster` when `cluster.enabled` is true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// This node's id.
    pub node_id: String,
    /// `surreal_lock` or `kubernetes_lease`.
    pub coordinator: String,
    /// This node's role now.
    pub role: ClusterRole,
    /// The lease as last read (none before the first read, or if no node ever took it).
    pub lease: Option<LeaseView>,
    /// The lease length, in seconds.
    pub lease_seconds: u64,
    /// Every node that reported to the shared store (empty with the Kubernetes coordinator
    /// on a store of its own).
    pub nodes: Vec<NodeView>,
    /// Why the last lease attempt failed, while it keeps failing (the node then follows).
    pub last_error: Option<String>,
}
