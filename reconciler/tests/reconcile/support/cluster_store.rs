//! A [`ClusterStore`] held in memory, standing in for the SurrealDB one: its issued-cert news
//! is a channel the test feeds by hand (what SurrealDB's live query would send when a node
//! records an issued cert), and it can be taken down, closing the channel and refusing new
//! subscriptions, as a dropped connection does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use rota_api::CertId;
use rota_store::{ClusterStore, NodeRecord, RenewalRequest, StoreError};

/// How many news items a subscriber may leave unread.
const NEWS_CAPACITY: usize = 16;

/// The in-memory cluster store; `node` is this node's id.
pub struct FakeClusterStore {
    node: String,
    fence: Mutex<Option<u64>>,
    nodes: Mutex<Vec<NodeRecord>>,
    requests: Mutex<Vec<RenewalRequest>>,
    issued: Mutex<Option<mpsc::Sender<CertId>>>,
    requested: Mutex<Option<mpsc::Sender<CertId>>>,
    down: AtomicBool,
    subscriptions: AtomicUsize,
    refused: AtomicUsize,
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeClusterStore {
    /// A store that is up, for the node `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            fence: Mutex::new(None),
            nodes: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
            issued: Mutex::new(None),
            requested: Mutex::new(None),
            down: AtomicBool::new(false),
            subscriptions: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        }
    }

    /// How many issued-cert subscriptions were handed out.
    pub fn subscriptions(&self) -> usize {
        self.subscriptions.load(Ordering::SeqCst)
    }

    /// How many subscriptions were refused while down.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Announces that a cert of `cert_id` was issued, as the live query would.
    pub async fn announce(&self, cert_id: &CertId) {
        let sender = guard(&self.issued).clone().expect("a subscriber");
        sender
            .send(cert_id.clone())
            .await
            .expect("the subscriber listens");
    }

    /// Announces `cert_id` and returns once the subscriber has finished handling it: the news
    /// is sent twice and the second taken (a subscriber handles news one at a time).
    pub async fn announce_handled(&self, cert_id: &CertId) {
        self.announce(cert_id).await;
        self.announce(cert_id).await;
        let sender = guard(&self.issued).clone().expect("a subscriber");
        super::eventually("the news to be taken", async || {
            (sender.capacity() == sender.max_capacity()).then_some(())
        })
        .await;
    }

    /// Drops the connection: the news channel closes and new subscriptions fail.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
        guard(&self.issued).take();
        guard(&self.requested).take();
    }

    fn subscribe(
        &self,
        slot: &Mutex<Option<mpsc::Sender<CertId>>>,
    ) -> Result<mpsc::Receiver<CertId>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Surreal {
                context: "live query on issued certs",
                detail: "connection to the cluster store lost".to_owned(),
            });
        }
        let (tx, rx) = mpsc::channel(NEWS_CAPACITY);
        *guard(slot) = Some(tx);
        self.subscriptions.fetch_add(1, Ordering::SeqCst);
        Ok(rx)
    }
}

#[async_trait]
impl ClusterStore for FakeClusterStore {
    fn set_fence(&self, term: Option<u64>) {
        *guard(&self.fence) = term;
    }

    async fn check_fence(&self) -> Result<(), StoreError> {
        // In memory the lease cannot move: a node that was given a term keeps it.
        match *guard(&self.fence) {
            Some(_) => Ok(()),
            None => Err(StoreError::Fenced {
                action: "issuing",
                term: 0,
                detail: format!("{} follows", self.node),
            }),
        }
    }

    async fn heartbeat(
        &self,
        at: OffsetDateTime,
        leader_term: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut nodes = guard(&self.nodes);
        nodes.retain(|n| n.node_id != self.node);
        nodes.push(NodeRecord {
            node_id: self.node.clone(),
            last_seen: at,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            leader_term,
        });
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(guard(&self.nodes).clone())
    }

    async fn request_renewal(
        &self,
        cert_id: &CertId,
        at: OffsetDateTime,
    ) -> Result<i64, StoreError> {
        let id = {
            let mut requests = guard(&self.requests);
            let id = i64::try_from(requests.len()).unwrap_or(i64::MAX) + 1;
            requests.push(RenewalRequest {
                id,
                cert_id: cert_id.clone(),
                requested_by: self.node.clone(),
                requested_at: at,
            });
            id
        };
        let sender = guard(&self.requested).clone();
        if let Some(sender) = sender {
            let _ = sender.send(cert_id.clone()).await;
        }
        Ok(id)
    }

    async fn take_renewal_requests(&self) -> Result<Vec<RenewalRequest>, StoreError> {
        Ok(std::mem::take(&mut *guard(&self.requests)))
    }

    async fn watch_issued(&self) -> Result<mpsc::Receiver<CertId>, StoreError> {
        self.subscribe(&self.issued)
    }

    async fn watch_requests(&self) -> Result<mpsc::Receiver<CertId>, StoreError> {
        self.subscribe(&self.requested)
    }
}
