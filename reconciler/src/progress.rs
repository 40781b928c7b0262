//! The progress of one renewal, kept for everyone who follows it: the client that asked for
//! it, a second `rota renew` that attached later, or none at all. Events are appended to a log
//! that followers read at their own pace, so a slow or vanished reader never holds up the
//! renewal, and a late one still sees every step from the start.

use std::sync::Arc;

use tokio::sync::watch;

use rota_api::status::{Step, StepStatus};
use rota_api::wire::RenewProgress;

/// Every event one renewal has reported so far.
#[derive(Debug)]
pub(crate) struct ProgressLog(watch::Sender<Vec<RenewProgress>>);

impl ProgressLog {
    /// An empty log.
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self(watch::Sender::new(Vec::new())))
    }

    /// Appends `event`; never waits for a reader.
    pub(crate) fn push(&self, event: RenewProgress) {
        self.0.send_modify(|log| log.push(event));
    }

    /// The step last started and not yet ended, if one is running.
    pub(crate) fn running_step(&self) -> Option<Step> {
        let log = self.0.borrow();
        match log.iter().rev().find_map(|e| match e {
            RenewProgress::Step(step) => Some(step),
            _ => None,
        }) {
            Some(event) if event.status == StepStatus::Started => Some(event.step),
            _ => None,
        }
    }

    /// A follower that starts at the first event.
    pub(crate) fn follow(&self) -> Following {
        Following {
            log: self.0.subscribe(),
            seen: 0,
        }
    }
}

/// A client following a renewal: every event from the first, then each new one as it happens,
/// until [`RenewProgress::Finished`]. Dropping it does not affect the renewal.
#[derive(Debug)]
pub struct Following {
    log: watch::Receiver<Vec<RenewProgress>>,
    seen: usize,
}

impl Following {
    /// The next event, or `None` once the renewal has finished and every event was read.
    pub async fn next(&mut self) -> Option<RenewProgress> {
        loop {
            if let Some(event) = self.unread() {
                return Some(event);
            }
            if self.log.changed().await.is_err() {
                // The renewal is over: hand out what was appended before it ended.
                return self.unread();
            }
        }
    }

    fn unread(&mut self) -> Option<RenewProgress> {
        let log = self.log.borrow_and_update();
        let event = log.get(self.seen).cloned()?;
        self.seen += 1;
        Some(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rota_api::status::RenewalStatus;

    fn started(renewal_id: i64) -> RenewProgress {
        RenewProgress::Started { renewal_id }
    }

    #[tokio::test]
    async fn a_late_follower_sees_every_event_and_a_stalled_one_blocks_nobody() {
        let log = ProgressLog::new();
        let mut early = log.follow();
        let _stalled = log.follow();
        for id in 0..1_000 {
            log.push(started(id));
        }
        let mut late = log.follow();
        log.push(RenewProgress::Finished {
            status: RenewalStatus::Succeeded,
            error: None,
        });
        drop(log);
        for follower in [&mut early, &mut late] {
            let mut count = 0;
            while let Some(event) = follower.next().await {
                if let RenewProgress::Started { renewal_id } = event {
                    assert_eq!(renewal_id, count, "in order, none skipped");
                }
                count += 1;
            }
            assert_eq!(count, 1_001);
        }
    }
}
