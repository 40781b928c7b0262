//! The work queue: at most one renewal per cert at a time, at most
//! `daemon.max_concurrent_renewals` at once (a fair semaphore, so first queued runs first),
//! and what happens after each renewal: conditions, backoff, alerts, a fresh observation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use rota_api::status::{ConditionStatus, ConditionType, Reason};
use rota_api::wire::RenewProgress;
use rota_api::{AlertEvent, AlertKind};

use crate::backoff;
use crate::clock::rfc3339;
use crate::conditions::Update;
use crate::desired::CertRuntime;
use crate::reconciler::{Reconciler, lock};
use crate::renew::{RenewContext, RenewError, renew};

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
            tokio::select! {
                () = this.shared.shutdown.cancelled() => {}
                permit = permits.acquire_owned() => {
                    // The cert may have changed or gone while it waited: renew what is configured now.
                    let current = this.desired().cert(&id).cloned();
                    if let (Ok(_permit), Some(cert)) = (permit, current) {
                        this.run_renewal(&cert, trigger, progress).await;
                    }
                }
            }
            lock(&this.shared.busy).remove(&id);
        });
        true
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
        // Read back what is installed now, so `Ready` reflects the outcome.
        let (observed, decision) = self.observe_and_plan_one(cert).await;
        self.record_plan(cert, observed, &decision).await;
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
