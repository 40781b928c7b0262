//! The work queue's bookkeeping: which certs are busy (a renewal queued or running, or a
//! revocation), and the renewal slots — `daemon.max_concurrent_renewals` per CA, fair (first
//! queued runs first), so a CA that hangs holds only its own certs back. Busy marks and slots
//! are guards: dropping them, also by a panic or a cancelled task, frees them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use rota_api::CertId;

use crate::locks::lock;
use crate::progress::{Following, ProgressLog};

/// What keeps a cert busy.
#[derive(Debug, Clone)]
enum Activity {
    /// A renewal, queued or running, and its progress for followers.
    Renewal(Arc<ProgressLog>),
    /// A revocation at the CA.
    Revocation,
}

/// Why a cert could not be marked busy.
#[derive(Debug)]
pub(crate) enum Occupied {
    /// A renewal is queued or running; here is a way to follow it.
    Renewal(Following),
    /// A revocation is running.
    Revocation,
    /// Nothing runs, but this node follows in a cluster: only the leader starts renewals.
    Following,
}

type BusyMap = Arc<Mutex<HashMap<CertId, Activity>>>;

/// Busy marks and per-CA renewal slots.
#[derive(Debug)]
pub(crate) struct WorkQueue {
    busy: BusyMap,
    pools: Mutex<Pools>,
}

#[derive(Debug)]
struct Pools {
    size: usize,
    by_ca: HashMap<&'static str, Pool>,
}

/// One CA's slots.
#[derive(Debug, Clone)]
struct Pool {
    permits: Arc<Semaphore>,
    capacity: Arc<Mutex<Capacity>>,
}

/// A pool's size and how many slots a lowered limit still has to retire.
#[derive(Debug)]
struct Capacity {
    size: usize,
    debt: usize,
}

impl Pool {
    fn new(size: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            capacity: Arc::new(Mutex::new(Capacity { size, debt: 0 })),
        }
    }

    /// Slots held by running renewals cannot be taken back at once, so a shrink that finds
    /// them busy is owed and retired as they are released.
    fn resize(&self, wanted: usize) {
        let mut capacity = lock(&self.capacity);
        if wanted >= capacity.size {
            let grow = wanted - capacity.size;
            let repaid = grow.min(capacity.debt);
            capacity.debt -= repaid;
            self.permits.add_permits(grow - repaid);
        } else {
            let shrink = capacity.size - wanted;
            let retired = self.permits.forget_permits(shrink);
            capacity.debt += shrink - retired;
        }
        capacity.size = wanted;
    }
}

/// A cert's busy mark; dropping it frees the cert.
#[derive(Debug)]
pub(crate) struct BusyMark {
    busy: BusyMap,
    id: CertId,
}

impl Drop for BusyMark {
    fn drop(&mut self) {
        lock(&self.busy).remove(&self.id);
    }
}

/// A renewal slot; dropping it returns it (or retires it while a lowered limit is paid off).
#[derive(Debug)]
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    capacity: Arc<Mutex<Capacity>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut capacity = lock(&self.capacity);
        if capacity.debt > 0 {
            capacity.debt -= 1;
            if let Some(permit) = self.permit.take() {
                permit.forget();
            }
        }
    }
}

impl WorkQueue {
    /// A queue with `slots_per_ca` renewal slots for each CA.
    pub(crate) fn new(slots_per_ca: usize) -> Self {
        Self {
            busy: Arc::default(),
            pools: Mutex::new(Pools {
                size: slots_per_ca,
                by_ca: HashMap::new(),
            }),
        }
    }

    /// Marks `id` busy with a renewal, whose progress goes to the log returned, or says what
    /// keeps it busy already.
    pub(crate) fn mark_renewal(
        &self,
        id: &CertId,
    ) -> Result<(BusyMark, Arc<ProgressLog>), Occupied> {
        let progress = ProgressLog::new();
        let mark = self.mark(id, Activity::Renewal(Arc::clone(&progress)))?;
        Ok((mark, progress))
    }

    /// Marks `id` busy with a revocation, or says what keeps it busy already.
    pub(crate) fn mark_revocation(&self, id: &CertId) -> Result<BusyMark, Occupied> {
        self.mark(id, Activity::Revocation)
    }

    fn mark(&self, id: &CertId, activity: Activity) -> Result<BusyMark, Occupied> {
        let mut busy = lock(&self.busy);
        if let Some(existing) = busy.get(id) {
            return Err(match existing {
                Activity::Renewal(log) => Occupied::Renewal(log.follow()),
                Activity::Revocation => Occupied::Revocation,
            });
        }
        busy.insert(id.clone(), activity);
        Ok(BusyMark {
            busy: Arc::clone(&self.busy),
            id: id.clone(),
        })
    }

    /// Whether `id` is busy.
    pub(crate) fn is_busy(&self, id: &CertId) -> bool {
        lock(&self.busy).contains_key(id)
    }

    /// Waits for a renewal slot of the CA `ca`.
    pub(crate) async fn slot(&self, ca: &'static str) -> Option<Slot> {
        let pool = {
            let mut pools = lock(&self.pools);
            let size = pools.size;
            pools
                .by_ca
                .entry(ca)
                .or_insert_with(|| Pool::new(size))
                .clone()
        };
        let permit = Arc::clone(&pool.permits).acquire_owned().await.ok()?;
        Some(Slot {
            permit: Some(permit),
            capacity: pool.capacity,
        })
    }

    /// Applies a new per-CA limit to every pool.
    pub(crate) fn resize(&self, slots_per_ca: usize) {
        let mut pools = lock(&self.pools);
        pools.size = slots_per_ca;
        for pool in pools.by_ca.values() {
            pool.resize(slots_per_ca);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CertId {
        CertId::new(s).unwrap()
    }

    #[test]
    fn a_mark_is_exclusive_until_dropped() {
        let queue = WorkQueue::new(1);
        let mark = queue.mark_renewal(&id("web")).unwrap();
        assert!(matches!(
            queue.mark_revocation(&id("web")),
            Err(Occupied::Renewal(_))
        ));
        drop(mark);
        let revoking = queue.mark_revocation(&id("web")).unwrap();
        assert!(matches!(
            queue.mark_renewal(&id("web")),
            Err(Occupied::Revocation)
        ));
        drop(revoking);
        assert!(!queue.is_busy(&id("web")));
    }

    #[tokio::test]
    async fn each_ca_has_its_own_slots_and_a_shrink_is_paid_off_on_release() {
        let queue = WorkQueue::new(2);
        let a1 = queue.slot("acme").await.unwrap();
        let _a2 = queue.slot("acme").await.unwrap();
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(20), queue.slot("acme"));
        assert!(waiting.await.is_err(), "a third acme renewal waits");
        assert!(
            queue.slot("local").await.is_some(),
            "another CA does not wait"
        );

        queue.resize(1);
        drop(a1);
        let still = tokio::time::timeout(std::time::Duration::from_millis(20), queue.slot("acme"));
        assert!(
            still.await.is_err(),
            "the released slot was retired, one is still held"
        );
    }
}
