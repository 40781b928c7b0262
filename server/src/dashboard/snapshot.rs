//! The overview's data — every cert's row and the timeline — computed once and shared by the
//! requests that follow, until the next event (a renewal step, a condition change) or until
//! a second has passed (days left move with the clock, and a sweep may see a cert replaced by
//! hand without any condition changing). An event that arrives while a snapshot is being
//! computed keeps that snapshot from being shared, so no page shows what an event replaced.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::timeline::Timeline;
use super::view::{ClusterPanel, Row};

/// How long a snapshot is shared at most.
const FRESH_FOR: Duration = Duration::from_secs(1);

/// What the overview shows of every cert.
pub(crate) struct Snapshot {
    /// Every cert's row, in config order.
    pub rows: Vec<Row>,
    /// The expiry timeline.
    pub timeline: Timeline,
    /// The cluster panel, when federation is on.
    pub cluster: Option<ClusterPanel>,
    /// The overview as rendered for a visitor without a session, with no filter or sort
    /// asked: the same bytes for every such request, rendered at the first.
    pub anonymous_page: std::sync::OnceLock<axum::body::Bytes>,
}

/// The shared snapshot, if fresh, and a count of the events seen.
#[derive(Default)]
pub(crate) struct SnapshotCache {
    slot: Mutex<Slot>,
    /// Held by the one request computing a snapshot; the others wait for its result rather
    /// than all computing the same one at once.
    pub computing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Slot {
    events: u64,
    kept: Option<(Instant, Arc<Snapshot>)>,
}

impl SnapshotCache {
    /// The shared snapshot if it is fresh; else a ticket to compute one with.
    pub(crate) fn get(&self) -> Result<Arc<Snapshot>, u64> {
        let slot = self.lock();
        match &slot.kept {
            Some((at, snapshot)) if at.elapsed() < FRESH_FOR => Ok(Arc::clone(snapshot)),
            _ => Err(slot.events),
        }
    }

    /// Shares `snapshot`, computed with `ticket`, unless an event came since.
    pub(crate) fn keep(&self, ticket: u64, snapshot: Arc<Snapshot>) {
        let mut slot = self.lock();
        if slot.events == ticket {
            slot.kept = Some((Instant::now(), snapshot));
        }
    }

    /// A ticket for a computation that must not be shared (`keep` will refuse it).
    pub(crate) fn unshared(&self) -> u64 {
        self.lock().events.wrapping_sub(1)
    }

    /// Something changed: the next request computes afresh.
    pub(crate) fn invalidate(&self) {
        let mut slot = self.lock();
        slot.events += 1;
        slot.kept = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            rows: Vec::new(),
            timeline: Timeline::default(),
            cluster: None,
            anonymous_page: std::sync::OnceLock::new(),
        })
    }

    #[test]
    fn an_event_during_a_computation_keeps_its_result_from_being_shared() {
        let cache = SnapshotCache::default();
        let ticket = cache.get().err().expect("nothing kept yet");
        cache.invalidate();
        cache.keep(ticket, empty());
        let ticket = cache.get().err().expect("the stale result was dropped");
        cache.keep(ticket, empty());
        assert!(cache.get().is_ok(), "a result no event overtook is shared");
        cache.invalidate();
        assert!(cache.get().is_err());
    }
}
