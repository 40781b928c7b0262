//! One renewal as a tracked task: it waits for a slot of its CA, runs the pipeline under a
//! deadline in a task of its own (so a panic fails this renewal only, and a stuck one is cut
//! off), removes whatever a cut-off pipeline left published, closes its audit row whatever
//! happened, and records the outcome: conditions, backoff, alerts (when and what to send is
//! `alerts`' business). Clients only follow it.

use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step, StepStatus};
use rota_api::wire::RenewProgress;
use rota_store::IssuedCertRow;

use crate::alerts::FailedAttempt;
use crate::backoff;
use crate::clock::rfc3339;
use crate::cluster::{Fence, store_error};
use crate::conditions::Update;
use crate::desired::CertRuntime;
use crate::events::CertEvent;
use crate::plan::{Observation, names_match};
use crate::progress::{Following, ProgressLog};
use crate::queue::{BusyMark, Occupied};
use crate::reconciler::Reconciler;
use crate::renew::{Audit, Mode, RenewError, run_pipeline};

impl Reconciler {
    /// Queues a renewal of `cert` unless it is busy already; the returned follower sees it
    /// from its first event. Every live renewal starts here, so this is where a cluster
    /// follower is kept from renewing.
    pub(crate) fn enqueue(
        &self,
        cert: &Arc<CertRuntime>,
        trigger: Reason,
    ) -> Result<Following, Occupied> {
        if !self.is_leader() {
            return Err(Occupied::Following);
        }
        let (mark, progress) = self.shared.queue.mark_renewal(&cert.spec.id)?;
        let following = progress.follow();
        self.shared.schedule.clear(&cert.spec.id);
        self.shared.events.send(CertEvent::Changed {
            cert: cert.spec.id.clone(),
        });
        let (this, watched) = (self.clone(), progress.follow());
        let id = cert.spec.id.clone();
        self.shared
            .tasks
            .spawn(async move { this.shared.events.forward(id, watched).await });
        let (this, id, ca) = (self.clone(), cert.spec.id.clone(), cert.ca.kind());
        self.shared.tasks.spawn(async move {
            let renewed = this.run_queued(&id, ca, trigger, &progress, mark).await;
            // Look again now that it is over: the next renewal time, the end of a backoff,
            // or a spec change that arrived meanwhile and was skipped while the cert was busy.
            if let (Some(_), Some(current)) = (renewed, this.desired().cert(&id).cloned()) {
                this.reconcile(&current).await;
            }
        });
        Ok(following)
    }

    /// Starts a dry run of `cert` (whose CA is the dry-run one) once its CA has a free slot.
    /// It takes no busy mark: live renewals neither wait for it nor attach to it, and it
    /// never touches the cert's state, conditions, backoff or alerts.
    pub(crate) fn enqueue_dry_run(&self, cert: Arc<CertRuntime>) -> Following {
        let progress = ProgressLog::new();
        let following = progress.follow();
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            let slot = tokio::select! {
                () = this.shared.shutdown.cancelled() => None,
                slot = this.shared.queue.slot(cert.ca.kind()) => slot,
            };
            let result = match slot {
                Some(slot) => {
                    let result = this
                        .guarded_renewal(&cert, Reason::Forced, &progress, Mode::DryRun)
                        .await;
                    drop(slot);
                    result.map_err(|e| e.to_string())
                }
                None => Err("rotad is stopping; the dry run did not start".to_owned()),
            };
            let (status, error) = match result {
                Ok(()) => (RenewalStatus::Succeeded, None),
                Err(e) => (RenewalStatus::Failed, Some(e)),
            };
            progress.push(RenewProgress::Finished { status, error });
        });
        following
    }

    /// Waits for a slot, then renews what is configured for `id` now; returns the generation
    /// renewed, or `None` if nothing ran. The busy mark is released before returning.
    async fn run_queued(
        &self,
        id: &rota_api::CertId,
        ca: &'static str,
        trigger: Reason,
        progress: &Arc<ProgressLog>,
        mark: BusyMark,
    ) -> Option<u64> {
        let slot = tokio::select! {
            () = self.shared.shutdown.cancelled() => None,
            slot = self.shared.queue.slot(ca) => slot,
        }?;
        // The cert may have changed or gone while it waited: renew what is configured now.
        let Some(cert) = self.desired().cert(id).cloned() else {
            progress.push(RenewProgress::Finished {
                status: RenewalStatus::Failed,
                error: Some(
                    "the cert was removed from the config before its renewal started".to_owned(),
                ),
            });
            return None;
        };
        let finished = self.run_renewal(&cert, trigger, progress).await;
        drop((slot, mark));
        progress.push(finished);
        Some(cert.generation)
    }

    /// Runs one renewal and records its outcome; returns the `Finished` event for followers,
    /// sent once `Ready` reflects the outcome.
    async fn run_renewal(
        &self,
        cert: &Arc<CertRuntime>,
        trigger: Reason,
        progress: &Arc<ProgressLog>,
    ) -> RenewProgress {
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
        let outcome = self
            .guarded_renewal(cert, trigger, progress, Mode::Live)
            .await;
        let (status, error) = match &outcome {
            Ok(()) => {
                self.renewal_succeeded(cert).await;
                (RenewalStatus::Succeeded, None)
            }
            // Another node leads now and renews in its turn: no backoff, no alert.
            Err(e) if e.reason == Reason::LostLeadership => {
                tracing::warn!(cert_id = %cert.spec.id, error = %e, "renewal stopped: this node lost the leader lease");
                self.fenced_out();
                (RenewalStatus::Failed, Some(e.to_string()))
            }
            Err(e) => {
                self.renewal_failed(cert, e).await;
                (RenewalStatus::Failed, Some(e.to_string()))
            }
        };
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
        // `Ready` reflects the outcome before followers hear of it; a spec that changed
        // meanwhile is reconciled after the cert is free, and records its own `Ready` then.
        let current = self.desired().cert(&cert.spec.id).map(|c| c.generation);
        if current == Some(cert.generation) {
            let observed = self.shared.observer.observe(cert).await;
            let decision = self.plan_for(cert, &observed, self.shared.clock.now());
            self.record_plan(cert, observed, &decision).await;
        }
        RenewProgress::Finished { status, error }
    }

    /// Opens the audit row (a dry run's marked so), runs the pipeline in its own task under
    /// the renewal deadline, cleans up after a pipeline that did not finish, and closes the
    /// row.
    async fn guarded_renewal(
        &self,
        cert: &Arc<CertRuntime>,
        trigger: Reason,
        progress: &Arc<ProgressLog>,
        mode: Mode,
    ) -> Result<(), RenewError> {
        let store = Arc::clone(&self.shared.store);
        let (id, now) = (&cert.spec.id, self.shared.clock.now());
        let record = match mode {
            Mode::Live => store.open_renewal(id, trigger, now).await,
            Mode::DryRun => store.open_dry_run(id, trigger, now).await,
        };
        let record =
            record.map_err(|e| store_error(Step::LoadKey, &e, "cannot open the audit row"))?;
        progress.push(RenewProgress::Started {
            renewal_id: record.id,
        });
        let audit = Audit {
            store,
            clock: Arc::clone(&self.shared.clock),
            renewal_id: record.id,
            progress: Some(Arc::clone(progress)),
        };
        let dry_run = mode == Mode::DryRun;
        let span = tracing::info_span!("renewal", cert_id = %cert.spec.id, renewal_id = record.id, dry_run);
        tracing::info!(parent: &span, trigger = trigger.as_str(), "renewal started");
        let daemon = &self.desired().loaded.config.daemon;
        let deadline = Duration::from_secs(daemon.renewal_timeout_seconds);
        let (issued, fence) = match mode {
            Mode::Live => (self.issued_awaiting_install(cert).await, self.fence()),
            Mode::DryRun => (None, Fence::Open),
        };
        let mut pipeline = tokio::spawn(
            run_pipeline(
                audit.clone(),
                daemon.dns_propagation.clone(),
                Arc::clone(cert),
                issued,
                mode,
                fence,
            )
            .instrument(span.clone()),
        );
        // `Err` with the error of a pipeline that was cut off, rather than one that returned.
        let finished = match tokio::time::timeout(deadline, &mut pipeline).await {
            Ok(Ok(returned)) => Ok(returned.map(|_| ())),
            Ok(Err(joined)) => Err(cut_off(&joined, progress.running_step())),
            Err(_) => {
                pipeline.abort();
                Err(RenewError::new(
                    progress.running_step().unwrap_or(Step::LoadKey),
                    Reason::Timeout,
                    format!(
                        "the renewal did not finish within daemon.renewal_timeout_seconds \
                         ({}s) and was stopped",
                        deadline.as_secs()
                    ),
                ))
            }
        };
        let result = match finished {
            Ok(returned) => returned,
            Err(e) => {
                // The pipeline never got to end its step or take its DCV answers down.
                if progress.running_step() == Some(e.step) {
                    audit.record(e.step, StepStatus::Failed, &e.message).await;
                }
                self.remove_left_by(record.id).await;
                Err(e)
            }
        };
        let (status, _) = audit.close(&result).await;
        tracing::info!(parent: &span, status = status.as_str(), "renewal finished");
        result
    }

    /// The cert an earlier attempt of this spec issued but could not install, when it is
    /// still worth installing: not installed, not revoked, for the spec's names, not expired.
    /// (Whether it belongs to the key is checked once the key is loaded.)
    async fn issued_awaiting_install(&self, cert: &CertRuntime) -> Option<IssuedCertRow> {
        let id = &cert.spec.id;
        let state = self.state(id);
        if !state.install_failed(cert.generation) {
            return None;
        }
        let row = match self.shared.store.latest_issued_cert(id).await {
            Ok(row) => row?,
            Err(e) => {
                tracing::warn!(cert_id = %id, error = %e, "cannot read the issued cert back; ordering a new one");
                return None;
            }
        };
        let installed = match &state.observed {
            Some(Observation::Installed(c)) => Some(c.serial.as_str()),
            _ => None,
        };
        installable(cert, &state, installed, &row, self.shared.clock.now()).then_some(row)
    }

    async fn renewal_succeeded(&self, cert: &CertRuntime) {
        self.shared
            .states
            .update(&cert.spec.id, |s| s.backoff = None);
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
        self.alert_after_renewal(cert, None).await;
    }

    async fn renewal_failed(&self, cert: &CertRuntime, error: &RenewError) {
        let now = self.shared.clock.now();
        let next = self.shared.states.update(&cert.spec.id, |state| {
            let next = backoff::after_failure(
                state.backoff.as_ref(),
                cert.generation,
                error.retry_after,
                now,
                rand::random::<f64>(),
            );
            state.backoff = Some(next.clone());
            next
        });
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
                error.reason,
                message.clone(),
            ),
        )
        .await;
        let failed = FailedAttempt {
            reason: error.reason,
            error: error.to_string(),
            message,
            next_attempt_at: next.next_attempt_at,
        };
        self.alert_after_renewal(cert, Some(&failed)).await;
    }
}

/// Whether the issued cert `row` is worth installing for `cert` at `now`: it is not the one
/// installed (`installed` is that serial), not revoked, for the spec's names, and not expired.
pub(crate) fn installable(
    cert: &CertRuntime,
    state: &crate::state::CertState,
    installed: Option<&str>,
    row: &IssuedCertRow,
    now: time::OffsetDateTime,
) -> bool {
    crate::observe::inspect_pem(&row.cert_pem).is_ok_and(|facts| {
        installed != Some(row.serial.as_str())
            && !state.revoked.contains(&row.serial)
            && names_match(&cert.spec.domains, &facts.sans)
            && facts.not_after > now
    })
}

/// The failure of a pipeline task that did not return: a panic (a bug, contained to this
/// renewal) or a cancellation (the runtime shutting down).
fn cut_off(joined: &tokio::task::JoinError, running: Option<Step>) -> RenewError {
    let step = running.unwrap_or(Step::LoadKey);
    if joined.is_panic() {
        tracing::error!(error = %joined, "the renewal panicked; it is failed, the others go on");
        RenewError::new(
            step,
            Reason::Panicked,
            format!("the renewal panicked (a bug in rota, please report it): {joined}"),
        )
    } else {
        RenewError::new(
            step,
            Reason::Timeout,
            "the renewal was cancelled because rotad is stopping",
        )
    }
}
