//! Live events for watchers (the dashboard's WebSocket): every renewal's progress and every
//! change of what a cert shows. A broadcast channel with a bounded backlog: sending never
//! waits, and a watcher that falls behind loses the oldest events (it is told so and can
//! re-read the state), so no watcher can hold up a renewal.

use rota_api::CertId;
use rota_api::wire::RenewProgress;
use tokio::sync::broadcast;

use crate::progress::Following;

/// How many events a slow watcher may fall behind before it loses the oldest.
const BACKLOG: usize = 1024;

/// Something a watcher of the certs may want to show.
#[derive(Debug, Clone)]
pub enum CertEvent {
    /// A renewal of `cert` reported progress.
    Progress {
        /// The cert renewed.
        cert: CertId,
        /// What it reported.
        event: RenewProgress,
    },
    /// What `cert` shows changed: a condition, or a renewal was queued.
    Changed {
        /// The cert.
        cert: CertId,
    },
}

/// The sending side, shared by the reconciler's parts.
#[derive(Debug)]
pub(crate) struct EventBus(broadcast::Sender<CertEvent>);

impl Default for EventBus {
    fn default() -> Self {
        Self(broadcast::Sender::new(BACKLOG))
    }
}

impl EventBus {
    /// Sends `event` to every watcher there is now; never waits.
    pub(crate) fn send(&self, event: CertEvent) {
        // No watcher is not an error: the events are only for those who look.
        let _ = self.0.send(event);
    }

    /// A new watcher, seeing events sent from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<CertEvent> {
        self.0.subscribe()
    }

    /// Forwards every event of a renewal of `cert` until it finishes.
    pub(crate) async fn forward(&self, cert: CertId, mut following: Following) {
        while let Some(event) = following.next().await {
            self.send(CertEvent::Progress {
                cert: cert.clone(),
                event,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::RecvError;

    #[tokio::test]
    async fn a_stalled_watcher_blocks_nobody_and_learns_it_fell_behind() {
        let bus = EventBus::default();
        let mut stalled = bus.subscribe();
        let cert = CertId::new("web").unwrap();
        // Sending far past the backlog returns at once with a watcher that never reads.
        for _ in 0..BACKLOG * 3 {
            bus.send(CertEvent::Changed { cert: cert.clone() });
        }
        assert!(matches!(stalled.recv().await, Err(RecvError::Lagged(_))));
        assert!(matches!(
            stalled.recv().await,
            Ok(CertEvent::Changed { cert: c }) if c == cert
        ));
    }
}
