//! The work queue: at most one renewal per cert at a time, at most
//! `daemon.max_concurrent_renewals` at once (a fair semaphore, so first queued runs first),
//! and what happens after each renewal: conditions, backoff, alerts, a fresh observation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};
use rota_api::wire::RenewProgress;
use rota_api::{AlertEvent, AlertKind};

use crate::backoff;
use crate::clock::rfc3339;
use crate::conditions::Update;
use crate::desired::CertRuntime;
use crate::reconciler::{Reconciler, lock};
use crate::renew::{RenewContext, RenewError, renew};

/// Tells a client following a forced renewal that its cert left the config before it ran.
async fn cert_gone(progress: Option<mpsc::Sender<RenewProgress>>) {
    if let Some(tx) = progress {
        let error = "the cert was removed from the config before its renewal started".to_owned();
        let finished = RenewProgress::Finished {
            status: RenewalStatus::Failed,
            error: Some(error),
        };
        let _ = tx.send(finished).await;
    }
}

/// How long one alert sink may take before it is given up on.
const ALERT_TIMEOUT: Duration = Duration::from_secs(30);

impl Reconciler {
    /// Queues a renewal unless one of this cert is already running or queued; returns
    /// whether it was queued.
    pub(crate) fn enqueue(
        &self,
        cert: &Arc<CertRuntime>,
        trigger: Reason,
        progress: Option<mpsc::Sender<RenewProgress>>,
    ) -> bool {
        if self.shared.shutdown.is_cancelled()
            || !lock(&self.shared.busy).insert(cert.spec.id.clone())
        {
            return false;
        }
        let this = self.clone();
        let id = cert.spec.id.clone();
        self.shared.tasks.spawn(async move {
            let permits = Arc::clone(&this.shared.permits);
            let mut renewed = None;
            tokio::select! {
                () = this.shared.shutdown.cancelled() => {}
                permit = permits.acquire_owned() => {
                    let Ok(permit) = permit else { return };
                    // The cert may have changed or gone while it waited: renew what is configured now.
                    match this.desired().cert(&id).cloned() {
                        Some(cert) => {
                            this.run_renewal(&cert, trigger, progress).await;
                            renewed = Some(cert.generation);
                        }
                        None => cert_gone(progress).await,
                    }
                    this.release(permit);
                }
            }
            lock(&this.shared.busy).remove(&id);
            // A spec change that arrived during the renewal was skipped while the cert was
            // busy; reconcile it now rather than at the next sweep.
            let current = this.desired().cert(&id).cloned();
            if let (Some(generation), Some(current)) = (renewed, current)
                && current.generation != generation
            {
                this.reconcile(&current).await;
            }
        });
        true
    }

    /// Returns a renewal's slot, or retires it while a lowered limit is still being paid off.
    fn release(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        let mut capacity = lock(&self.shared.capacity);
        if capacity.debt > 0 {
            capacity.debt -= 1;
            permit.forget();
        }
    }

    /// Applies a new `max_concurrent_renewals`. Slots held by running renewals cannot be taken
    /// back at once, so a shrink that finds them busy is owed and retired as they are released.
    pub(crate) fn resize_permits(&self, wanted: usize) {
        let mut capacity = lock(&self.shared.capacity);
        if wanted >= capacity.size {
            let grow = wanted - capacity.size;
            let repaid = grow.min(capacity.debt);
            capacity.debt -= repaid;
            self.shared.permits.add_permits(grow - repaid);
        } else {
            let shrink = capacity.size - wanted;
            let retired = self.shared.permits.forget_permits(shrink);
            capacity.debt += shrink - retired;
        }
        capacity.size = wanted;
    }

    async fn run_renewal(
        &self,
        cert: &Arc<CertRuntime>,
        trigger: Reason,
        progress: Option<mpsc::Sender<RenewProgress>>,
    ) {
        self.set_condition(
            cert,
            Update::new(
                ConditionType::Issuing,
                ConditionStatus::True,
                Reason::Renewing,
                format!("renewal started ({trigger})"),
            ),
        )
        .await;
        let ctx = RenewContext {
            store: Arc::clone(&self.shared.store),
            dns_propagation: self.desired().loaded.config.daemon.dns_propagation.clone(),
            clock: Arc::clone(&self.shared.clock),
            progress,
        };
        let outcome = renew(&ctx, cert, trigger).await;
        match &outcome {
            Ok(_) => self.renewal_succeeded(cert).await,
            Err(e) => self.renewal_failed(cert, e).await,
        }
        self.set_condition(
            cert,
            Update::new(
                ConditionType::Issuing,
                ConditionStatus::False,
                Reason::Idle,
                "no renewal running",
            ),
        )
        .await;
        // Read back what is installed now, so `Ready` reflects the outcome; a spec that changed
        // meanwhile is reconciled by the caller instead.
        if self
            .desired()
            .cert(&cert.spec.id)
            .is_some_and(|c| c.generation == cert.generation)
        {
            let (observed, decision) = self.observe_and_plan_one(cert).await;
            self.record_plan(cert, observed, &decision).await;
        }
    }

    async fn renewal_succeeded(&self, cert: &CertRuntime) {
        lock(&self.shared.states)
            .entry(cert.spec.id.clone())
            .or_default()
            .backoff = None;
        if let Err(e) = self.shared.store.put_backoff(&cert.spec.id, None).await {
            tracing::error!(cert_id = %cert.spec.id, error = %e, "cannot clear the backoff");
        }
        self.set_condition(
            cert,
            Update::new(
                ConditionType::Failing,
                ConditionStatus::False,
                Reason::RenewalSucceeded,
                "the last renewal succeeded",
            ),
        )
        .await;
    }

    async fn renewal_failed(&self, cert: &CertRuntime, error: &RenewError) {
        let now = self.shared.clock.now();
        let next = {
            let mut states = lock(&self.shared.states);
            let state = states.entry(cert.spec.id.clone()).or_default();
            let next = backoff::after_failure(
                state.backoff.as_ref(),
                cert.generation,
                error.retry_after,
                now,
                rand::random::<f64>(),
            );
            state.backoff = Some(next.clone());
            next
        };
        if let Err(e) = self
            .shared
            .store
            .put_backoff(&cert.spec.id, Some(&next))
            .await
        {
            tracing::error!(cert_id = %cert.spec.id, error = %e, "cannot store the backoff");
        }
        let message = format!(
            "{error}; failure {} in a row, next automatic attempt at {}",
            next.failures,
            rfc3339(next.next_attempt_at)
        );
        self.set_condition(
            cert,
            Update::new(
                ConditionType::Failing,
                ConditionStatus::True,
                Reason::RenewalFailed,
                message.clone(),
            ),
        )
        .await;
        let event = AlertEvent {
            cert_id: cert.spec.id.clone(),
            kind: AlertKind::RenewalFailed,
            message,
            timestamp: now,
        };
        self.dispatch_alert(&event).await;
    }

    /// Sends `event` to every alert sink at once; a sink's failure is logged, never fatal.
    async fn dispatch_alert(&self, event: &AlertEvent) {
        let sinks = self.desired().alerts.clone();
        let mut sends = tokio::task::JoinSet::new();
        for sink in sinks {
            let event = event.clone();
            sends.spawn(async move {
                let kind = sink.kind();
                match tokio::time::timeout(ALERT_TIMEOUT, sink.dispatch(&event)).await {
                    Ok(Ok(())) => tracing::info!(sink = kind, "alert sent"),
                    Ok(Err(e)) => tracing::error!(sink = kind, error = %e, "alert not delivered"),
                    Err(_) => tracing::error!(sink = kind, "alert timed out"),
                }
            });
        }
        while sends.join_next().await.is_some() {}
    }
}
