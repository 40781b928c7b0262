//! A forced renewal asked of a cluster follower: the request is left in the shared store for
//! the leader, and the leader's renewal is followed through the shared audit trail (its row
//! and step events appear there as the leader records them), so `rota renew` on any node
//! shows the renewal it asked for from start to end.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rota_api::CertId;
use rota_api::status::{RenewalRecord, RenewalStatus};
use rota_api::wire::RenewProgress;

use crate::desired::CertRuntime;
use crate::progress::ProgressLog;
use crate::reconciler::{Reconciler, RenewTicket};

/// How often the shared store is read while following the leader's renewal.
const POLL: Duration = Duration::from_millis(250);
/// How many recent renewals of the cert are compared to spot the leader's new one.
const RECENT: usize = 20;

impl Reconciler {
    /// Forwards a forced renewal of `cert` to the leader and follows it.
    pub(crate) fn forward(&self, cert: &Arc<CertRuntime>) -> RenewTicket {
        let progress = ProgressLog::new();
        let following = progress.follow();
        let leader = self
            .shared
            .cluster
            .as_ref()
            .and_then(crate::cluster::Membership::leader);
        progress.push(RenewProgress::Forwarded { leader });
        let (this, id) = (self.clone(), cert.spec.id.clone());
        self.shared.tasks.spawn(async move {
            let finished = tokio::select! {
                () = this.shared.shutdown.cancelled() => RenewProgress::Finished {
                    status: RenewalStatus::Failed,
                    error: Some(
                        "rotad is stopping; the forwarded renewal goes on on the leader (see `rota log`)"
                            .to_owned(),
                    ),
                },
                finished = this.follow_forwarded(&id, &progress) => finished,
            };
            progress.push(finished);
        });
        RenewTicket {
            following,
            attached: false,
        }
    }

    /// Leaves the request, waits for the leader's renewal row, relays its steps as they are
    /// recorded, and returns how it ended.
    async fn follow_forwarded(&self, id: &CertId, progress: &ProgressLog) -> RenewProgress {
        let failed = |error: String| RenewProgress::Finished {
            status: RenewalStatus::Failed,
            error: Some(error),
        };
        let Some(membership) = self.shared.cluster.as_ref() else {
            return failed("this node is in no cluster".to_owned());
        };
        let Some(store) = membership.store() else {
            return failed(format!(
                "this node follows and the nodes share no store to forward the renewal through: \
                 run `rota renew {id}` on the leader{}",
                membership
                    .leader()
                    .map_or_else(String::new, |node| format!(" (`{node}`)"))
            ));
        };
        let before = self.recent_renewals(id).await.unwrap_or_default();
        let now = self.shared.clock.now();
        if let Err(e) = store.request_renewal(id, now).await {
            return failed(format!("cannot forward the renewal to the leader: {e}"));
        }
        tracing::info!(cert_id = %id, "forwarded a forced renewal to the leader");
        // The leader joins a renewal already running instead of starting another.
        let running = before
            .iter()
            .find(|r| r.status == RenewalStatus::Running && !r.dry_run)
            .map(|r| r.id);
        let known: HashSet<i64> = before.iter().map(|r| r.id).collect();
        let wait = membership
            .lease()
            .saturating_mul(2)
            .max(Duration::from_secs(60));
        let deadline = tokio::time::Instant::now() + wait;
        let renewal_id = loop {
            let rows = self.recent_renewals(id).await.unwrap_or_default();
            let started = rows
                .iter()
                .rev()
                .find(|r| !known.contains(&r.id) && !r.dry_run)
                .map(|r| r.id);
            if let Some(found) = started {
                break found;
            }
            if let Some(running) = running {
                progress.push(RenewProgress::Attached);
                break running;
            }
            if tokio::time::Instant::now() >= deadline {
                return failed(format!(
                    "no leader started the renewal within {}s; the request stays queued and \
                     the leader runs it when it picks it up (see `rota log {id}`)",
                    wait.as_secs()
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        progress.push(RenewProgress::Started { renewal_id });
        self.relay_steps(renewal_id, progress).await
    }

    /// Relays the step events of `renewal_id` as the leader records them, until its row is
    /// closed.
    async fn relay_steps(&self, renewal_id: i64, progress: &ProgressLog) -> RenewProgress {
        let store = &self.shared.store;
        let mut relayed = 0;
        loop {
            // The row is read before the steps, so the steps of a closed row are complete.
            let record = store.renewal(renewal_id).await;
            if let Ok(steps) = store.steps(renewal_id).await {
                for step in steps.into_iter().skip(relayed) {
                    progress.push(RenewProgress::Step(step));
                    relayed += 1;
                }
            }
            match record {
                Ok(Some(r)) if r.status != RenewalStatus::Running => {
                    return RenewProgress::Finished {
                        status: r.status,
                        error: r.error,
                    };
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(renewal_id, error = %e, "cannot read the leader's renewal; retrying");
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn recent_renewals(
        &self,
        id: &CertId,
    ) -> Result<Vec<RenewalRecord>, rota_store::StoreError> {
        self.shared.store.renewals(id, RECENT).await
    }
}
