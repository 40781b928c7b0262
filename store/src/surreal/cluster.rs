//! The cluster's side of the SurrealDB store: the leader lease on `cluster_lock:singleton`
//! ([`SurrealLockCoordinator`]), the fence that keeps a deposed leader from opening renewals
//! or recording issued certs, node heartbeats, renewal requests forwarded from followers, and
//! live queries that announce issued certs and requests the moment they are written.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use surrealdb::Notification;
use surrealdb::types::SurrealValue;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::mpsc;

use rota_api::cluster::{ClusterCoordinator, Lease};
use rota_api::{BackendError, CertId};

use super::{CONFLICT_ATTEMPTS, SurrealStore, Vars, fail, time_field};
use crate::codec::{decode_cert_id, decode_int, decode_time};
use crate::{ClusterStore, NodeRecord, RenewalRequest, StoreError};

/// What the store lets this node write on behalf of the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Fence {
    /// No cluster: nothing is fenced.
    #[default]
    Off,
    /// Leading under this term: fenced writes check the lease still says so.
    Leading(u64),
    /// Following: fenced writes are refused.
    Following,
}

/// The shared, swappable fence of a store and its clones.
pub(super) type FenceCell = Arc<Mutex<Fence>>;

/// The marker a refused fence check throws, so it can be told from other failures.
const FENCED: &str = "rota-fenced";

/// Capacity of a watch channel; a burst beyond it is caught by the caller's poll.
const WATCH_CAPACITY: usize = 64;

impl SurrealStore {
    fn fence(&self) -> Fence {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The statement that makes a fenced write fail unless the lease still names this node
    /// under its term, to run first in the write's transaction; empty when nothing is fenced.
    pub(super) fn fence_guard(&self) -> String {
        match self.fence() {
            Fence::Off => String::new(),
            Fence::Leading(term) => format!(
                "LET $lock = (SELECT holder, term FROM ONLY cluster_lock:singleton); \
                 IF $lock = NONE OR $lock.holder != $node OR $lock.term != {term} {{ \
                   THROW '{FENCED}: the lease is held by ' + <string> ($lock.holder ?? 'nobody') \
                     + ' under term ' + <string> ($lock.term ?? 0); \
                 }};"
            ),
            Fence::Following => format!("THROW '{FENCED}: this node follows';"),
        }
    }

    /// Turns a refused fence check into [`StoreError::Fenced`]; other errors pass through.
    pub(super) fn fenced(&self, error: StoreError) -> StoreError {
        match error {
            StoreError::Surreal { context, detail } if detail.contains(FENCED) => {
                let term = match self.fence() {
                    Fence::Leading(term) => term,
                    Fence::Off | Fence::Following => 0,
                };
                let detail = detail
                    .split_once(&format!("{FENCED}: "))
                    .map_or(detail.as_str(), |(_, why)| why)
                    .to_owned();
                StoreError::Fenced {
                    action: context,
                    term,
                    detail,
                }
            }
            other => other,
        }
    }

    /// Subscribes to creations in `table` and forwards each row's cert id.
    async fn watch_creations(
        &self,
        context: &'static str,
        table: &str,
    ) -> Result<mpsc::Receiver<CertId>, StoreError> {
        let mut results = self
            .db
            .query(format!("LIVE SELECT cert_id FROM {table};"))
            .await
            .and_then(surrealdb::IndexedResults::check)
            .map_err(fail(context))?;
        let mut stream = results
            .stream::<Notification<CertIdRow>>(0)
            .map_err(fail(context))?;
        let (sender, receiver) = mpsc::channel(WATCH_CAPACITY);
        tokio::spawn(async move {
            while let Some(news) = stream.next().await {
                let Ok(news) = news else { break };
                let Ok(cert_id) = decode_cert_id(&news.data.cert_id) else {
                    continue;
                };
                // A full channel means the caller is behind; its poll catches up.
                if let Err(mpsc::error::TrySendError::Closed(_)) = sender.try_send(cert_id) {
                    break;
                }
            }
        });
        Ok(receiver)
    }
}

/// The cert id of a live-query notification.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct CertIdRow {
    cert_id: String,
}

/// A `cluster_node` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct NodeRow {
    node_id: String,
    last_seen: String,
    version: String,
    leader_term: Option<i64>,
}

/// A `renewal_request` row as stored.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct RequestRow {
    num: i64,
    cert_id: String,
    requested_by: String,
    requested_at: String,
}

/// `cluster_lock:singleton` as read back, the expiry as RFC 3339 text.
#[derive(SurrealValue)]
#[surreal(crate = "surrealdb::types")]
struct LockRow {
    holder: String,
    term: i64,
    expires_at: String,
}

impl LockRow {
    fn decode(self) -> Result<Lease, StoreError> {
        Ok(Lease {
            holder: self.holder,
            term: decode_int(self.term, "cluster_lock.term")?,
            expires_at: OffsetDateTime::parse(&self.expires_at, &Rfc3339).map_err(|e| {
                StoreError::Corrupt {
                    what: "cluster_lock.expires_at",
                    detail: format!("`{}`: {e}", self.expires_at),
                }
            })?,
        })
    }
}

#[async_trait]
impl ClusterStore for SurrealStore {
    fn set_fence(&self, term: Option<u64>) {
        *self.fence.lock().unwrap_or_else(PoisonError::into_inner) =
            term.map_or(Fence::Following, Fence::Leading);
    }

    async fn check_fence(&self) -> Result<(), StoreError> {
        let guard = self.fence_guard();
        if guard.is_empty() {
            return Ok(());
        }
        self.exec("checking the leader lease", &guard, Vars::new())
            .await
            .map_err(|e| self.fenced(e))
    }

    async fn heartbeat(
        &self,
        at: OffsetDateTime,
        leader_term: Option<u64>,
    ) -> Result<(), StoreError> {
        let term = leader_term.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let vars = Vars::new()
            .with("at", time_field(at)?)
            .with("version", env!("CARGO_PKG_VERSION"))
            .with("term", term);
        self.exec(
            "recording a heartbeat",
            "UPSERT type::record('cluster_node', $node) CONTENT { \
               node_id: $node, last_seen: $at, version: $version, leader_term: $term \
             };",
            vars,
        )
        .await
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let rows: Vec<NodeRow> = self
            .last(
                "listing cluster nodes",
                "SELECT node_id, last_seen, version, leader_term FROM cluster_node \
                 ORDER BY node_id;",
                Vars::new(),
            )
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(NodeRecord {
                    node_id: row.node_id,
                    last_seen: decode_time(&row.last_seen, "cluster_node.last_seen")?,
                    version: row.version,
                    leader_term: row
                        .leader_term
                        .map(|t| decode_int(t, "cluster_node.leader_term"))
                        .transpose()?,
                })
            })
            .collect()
    }

    async fn request_renewal(
        &self,
        cert_id: &CertId,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let vars = Vars::new()
            .with("cert", cert_id.as_str())
            .with("at", time_field(at)?);
        let num: Option<i64> = self
            .last(
                "forwarding a renewal request",
                "LET $num = sequence::nextval('request_num'); \
                 CREATE type::record('renewal_request', $num) CONTENT { \
                   num: $num, cert_id: $cert, requested_by: $node, requested_at: $at \
                 }; \
                 RETURN $num;",
                vars,
            )
            .await?;
        num.ok_or_else(|| StoreError::Corrupt {
            what: "renewal_request",
            detail: "CREATE returned nothing".to_owned(),
        })
    }

    async fn take_renewal_requests(&self) -> Result<Vec<RenewalRequest>, StoreError> {
        let rows: Vec<RequestRow> = self
            .last(
                "taking renewal requests",
                "DELETE renewal_request RETURN BEFORE;",
                Vars::new(),
            )
            .await?;
        let mut requests = rows
            .into_iter()
            .map(|row| {
                Ok(RenewalRequest {
                    id: row.num,
                    cert_id: decode_cert_id(&row.cert_id)?,
                    requested_by: row.requested_by,
                    requested_at: decode_time(&row.requested_at, "renewal_request.requested_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        requests.sort_by_key(|r| r.id);
        Ok(requests)
    }

    async fn watch_issued(&self) -> Result<mpsc::Receiver<CertId>, StoreError> {
        self.watch_creations("watching issued certs", "issued_cert")
            .await
    }

    async fn watch_requests(&self) -> Result<mpsc::Receiver<CertId>, StoreError> {
        self.watch_creations("watching renewal requests", "renewal_request")
            .await
    }
}

/// The leader lease on the record `cluster_lock:singleton`, timed by the database's clock so
/// that the nodes' own clocks need not agree.
#[derive(Debug, Clone)]
pub struct SurrealLockCoordinator {
    store: SurrealStore,
    lease: Duration,
}

impl SurrealLockCoordinator {
    /// A coordinator for the node `store` writes as, holding leases of `lease`.
    #[must_use]
    pub fn new(store: &SurrealStore, lease: Duration) -> Self {
        Self {
            store: store.clone(),
            lease,
        }
    }

    /// One try at taking or extending the lease, as one transaction: it reads the lock,
    /// writes it only if it is free, lapsed or ours, and reads it back. A term goes up only
    /// when the holder changes.
    async fn try_acquire(&self) -> Result<Lease, StoreError> {
        let secs = i64::try_from(self.lease.as_secs()).unwrap_or(i64::MAX);
        let row: Option<LockRow> = self
            .store
            .last(
                "taking the leader lease",
                "BEGIN TRANSACTION; \
                 LET $now = time::now(); \
                 LET $lock = (SELECT holder, term, expires_at, acquired_at \
                   FROM ONLY cluster_lock:singleton); \
                 LET $ours = $lock != NONE AND $lock.holder = $node; \
                 LET $free = $lock = NONE OR $lock.holder = '' OR $lock.expires_at <= $now; \
                 IF $ours OR $free { \
                   UPSERT cluster_lock:singleton CONTENT { \
                     holder: $node, \
                     term: IF $ours { $lock.term } ELSE { ($lock.term ?? 0) + 1 }, \
                     expires_at: $now + duration::from_secs($secs), \
                     acquired_at: IF $ours { $lock.acquired_at } ELSE { $now } \
                   }; \
                 }; \
                 LET $after = (SELECT holder, term, <string> expires_at AS expires_at \
                   FROM ONLY cluster_lock:singleton); \
                 COMMIT TRANSACTION; \
                 RETURN $after;",
                Vars::new().with("secs", secs),
            )
            .await?;
        row.ok_or_else(|| StoreError::Corrupt {
            what: "cluster_lock",
            detail: "the lock reads back empty after it was written".to_owned(),
        })?
        .decode()
    }
}

/// A [`StoreError`] as a coordinator failure.
fn unreachable_store(error: &StoreError) -> BackendError {
    BackendError::Unreachable {
        backend: "surreal_lock",
        detail: error.to_string(),
    }
}

#[async_trait]
impl ClusterCoordinator for SurrealLockCoordinator {
    fn node_id(&self) -> &str {
        self.store.node()
    }

    async fn acquire_or_refresh(&self) -> Result<Lease, BackendError> {
        let mut attempt = 1;
        loop {
            match self.try_acquire().await {
                Ok(lease) => return Ok(lease),
                // Another node wrote the lock in the same instant: whatever it wrote stands,
                // and the next try reads it.
                Err(StoreError::Conflict { .. }) if attempt < CONFLICT_ATTEMPTS => attempt += 1,
                Err(e) => return Err(unreachable_store(&e)),
            }
        }
    }

    async fn release(&self, term: u64) -> Result<(), BackendError> {
        let term = i64::try_from(term).unwrap_or(i64::MAX);
        self.store
            .exec(
                "releasing the leader lease",
                "UPDATE cluster_lock:singleton SET holder = '', expires_at = time::now() \
                 WHERE holder = $node AND term = $term;",
                Vars::new().with("term", term),
            )
            .await
            .map_err(|e| unreachable_store(&e))
    }

    async fn current(&self) -> Result<Option<Lease>, BackendError> {
        let row: Option<LockRow> = self
            .store
            .last(
                "reading the leader lease",
                "SELECT holder, term, <string> expires_at AS expires_at \
                 FROM ONLY cluster_lock:singleton;",
                Vars::new(),
            )
            .await
            .map_err(|e| unreachable_store(&e))?;
        row.map(LockRow::decode)
            .transpose()
            .map_err(|e| unreachable_store(&e))
    }
}
