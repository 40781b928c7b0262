//! The reconciler: holds the desired state, observes what is installed, plans, and acts on the
//! plan — a renewal now, or a look again at the time the plan names (the end of a backoff, the
//! renewal time, the next renewal-window check). One wake loop sleeps until the earliest such
//! time; the periodic sweep is only a safety net for changes made outside rota.

use std::sync::{Arc, OnceLock};

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use rota_api::config::{ConfigErrors, ConfigIssue, LoadedConfig};
use rota_api::status::{ConditionStatus, ConditionType, Reason};
use rota_api::{BackendFactory, CertId};
use rota_store::{AuditStore, SpecGeneration, StoreError};

use crate::ari::AriFetches;
use crate::clock::{Clock, rfc3339};
use crate::cluster::{Cluster, Membership};
use crate::conditions::{self, Update};
use crate::desired::{CertRuntime, ConfigDiff, Desired, DesiredSet};
use crate::events::{CertEvent, EventBus};
use crate::observe::Observer;
use crate::plan::{Observation, Plan, PlanInput, lacks_valid_cert, plan, renewal_time};
use crate::progress::Following;
use crate::queue::{Occupied, WorkQueue};
use crate::schedule::Schedule;
use crate::state::{CertState, StateTable};

/// Why a forced renewal could not be queued or followed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewRequestError {
    /// No cert has that id.
    #[error("no cert `{0}` in the running config")]
    NotFound(CertId),
    /// A revocation of it is running.
    #[error("`{0}` is being revoked; its replacement is queued once the revocation is done")]
    Revoking(CertId),
    /// The daemon is stopping.
    #[error("rotad is shutting down")]
    ShuttingDown,
    /// The CA a dry run orders from cannot be built.
    #[error("cannot dry-run `{id}`: {reason}")]
    DryRunUnavailable {
        /// The cert.
        id: CertId,
        /// Why its dry-run CA cannot be built.
        reason: String,
    },
}

/// A forced renewal being followed.
#[derive(Debug)]
pub struct RenewTicket {
    /// Its progress, from its first event.
    pub following: Following,
    /// Whether it was already queued or running when asked for (the request joined it).
    pub attached: bool,
}

/// Why the reconciler could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The config's backends cannot be built.
    #[error("{0}")]
    Config(ConfigErrors),
    /// The audit store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A validated config with its backends built, ready to be committed.
pub struct Prepared {
    pub(crate) desired: Desired,
    /// What committing it changes.
    pub diff: ConfigDiff,
    /// Restart-only settings the file changes but that stay as they are until a restart.
    pub(crate) restart_required: Vec<&'static str>,
}

impl Prepared {
    /// The config text, exactly as submitted.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.desired.loaded.text
    }
}

/// The services every part of the reconciler reaches through traits.
pub(crate) struct Services {
    pub store: Arc<dyn AuditStore>,
    pub factory: Arc<dyn BackendFactory>,
    pub clock: Arc<dyn Clock>,
}

/// The reconciler's parts, each with its own narrow interface.
pub(crate) struct Shared {
    pub services: Services,
    pub desired: DesiredSet,
    pub states: StateTable,
    pub schedule: Schedule,
    pub queue: WorkQueue,
    pub observer: Arc<Observer>,
    pub ari: AriFetches,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    /// When the reconciler started.
    pub started_at: OffsetDateTime,
    /// When its first observation of every cert was done.
    pub observed_at: OnceLock<OffsetDateTime>,
    /// When the last periodic sweep finished.
    pub last_sweep: std::sync::Mutex<Option<OffsetDateTime>>,
    /// Live events for watchers.
    pub events: EventBus,
    /// The cluster this node belongs to, if any (then only its leader renews).
    pub cluster: Option<Membership>,
}

/// The running reconciler; cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    pub(crate) shared: Arc<Shared>,
}

impl std::ops::Deref for Shared {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}

impl Reconciler {
    /// Builds the desired state, restores stored state, recovers from an interrupted run,
    /// observes every installed cert and acts on what it finds (see `startup`), then starts
    /// the wake loop and the periodic sweep. Returns once every cert has been observed, so
    /// what the API shows is right from its first answer.
    pub async fn start(
        loaded: LoadedConfig,
        store: Arc<dyn AuditStore>,
        factory: Arc<dyn BackendFactory>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        Self::start_with(loaded, store, factory, clock, shutdown, None).await
    }

    /// As [`Reconciler::start`], as a member of `cluster`: nothing is renewed until the
    /// first lease result says this node leads, and only while it leads.
    pub async fn start_in_cluster(
        loaded: LoadedConfig,
        store: Arc<dyn AuditStore>,
        factory: Arc<dyn BackendFactory>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        cluster: Cluster,
    ) -> Result<Self, StartError> {
        Self::start_with(loaded, store, factory, clock, shutdown, Some(cluster)).await
    }

    async fn start_with(
        loaded: LoadedConfig,
        store: Arc<dyn AuditStore>,
        factory: Arc<dyn BackendFactory>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
        cluster: Option<Cluster>,
    ) -> Result<Self, StartError> {
        let known = store.spec_generations().await?;
        let desired =
            Desired::build(loaded, factory.as_ref(), &known).map_err(StartError::Config)?;
        let slots = desired.loaded.config.daemon.max_concurrent_renewals;
        let (desired, new_generations) = DesiredSet::new(desired, known);
        let started_at = clock.now();
        let reconciler = Self {
            shared: Arc::new(Shared {
                services: Services {
                    store,
                    factory,
                    clock,
                },
                desired,
                states: StateTable::default(),
                schedule: Schedule::default(),
                queue: WorkQueue::new(slots),
                observer: Arc::new(Observer::default()),
                ari: AriFetches::default(),
                tasks: TaskTracker::new(),
                shutdown,
                started_at,
                observed_at: OnceLock::new(),
                last_sweep: std::sync::Mutex::default(),
                events: EventBus::default(),
                cluster: cluster.map(Membership::new),
            }),
        };
        reconciler.store_generations(new_generations).await;
        reconciler.restore_state().await?;
        let interrupted = reconciler.recover().await?;
        reconciler.observe_at_start(&interrupted).await;
        reconciler.spawn_wake_loop();
        reconciler.spawn_sweeps();
        reconciler.spawn_cluster_tasks();
        Ok(reconciler)
    }

    /// The running desired state.
    #[must_use]
    pub fn desired(&self) -> Arc<Desired> {
        self.shared.desired.current()
    }

    /// A snapshot of one cert's state.
    #[must_use]
    pub fn state(&self, id: &CertId) -> CertState {
        self.shared.states.snapshot(id)
    }

    /// Whether a renewal or revocation of `id` is running or queued.
    #[must_use]
    pub fn is_busy(&self, id: &CertId) -> bool {
        self.shared.queue.is_busy(id)
    }

    /// When rotad will renew `cert`'s installed cert if nothing else happens first: the time
    /// picked inside the CA's renewal window, else the cert's `renew_before_days` (or the
    /// daemon's `renew_threshold_days`) before notAfter.
    #[must_use]
    pub fn renews_at(&self, cert: &CertRuntime) -> Option<OffsetDateTime> {
        let threshold = self.renew_threshold(cert);
        self.shared.states.read(&cert.spec.id, |state| {
            let state = state?;
            let Some(Observation::Installed(installed)) = &state.observed else {
                return None;
            };
            Some(renewal_time(
                installed,
                current_ari_time(state, installed.serial.as_str()),
                threshold,
            ))
        })
    }

    /// When the reconciler will next look at `id` on its own (renewal time, end of backoff,
    /// renewal-window check), if it is scheduled.
    #[must_use]
    pub fn next_look(&self, id: &CertId) -> Option<OffsetDateTime> {
        self.shared.schedule.next_for(id)
    }

    /// When the reconciler started, and when its first observation of every cert finished.
    #[must_use]
    pub fn started(&self) -> (OffsetDateTime, Option<OffsetDateTime>) {
        (
            self.shared.started_at,
            self.shared.observed_at.get().copied(),
        )
    }

    /// When the last periodic sweep finished, if one has.
    #[must_use]
    pub fn last_sweep(&self) -> Option<OffsetDateTime> {
        *crate::locks::lock(&self.shared.last_sweep)
    }

    /// Watches every renewal's progress and every change of what a cert shows, from now on.
    #[must_use]
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<CertEvent> {
        self.shared.events.subscribe()
    }

    /// The errors of the last refused config change (empty once a change is applied).
    #[must_use]
    pub fn config_errors(&self) -> Vec<ConfigIssue> {
        self.shared.desired.refused()
    }

    /// Restart-only settings that the config file changes but that rotad keeps at their
    /// running values until it restarts.
    #[must_use]
    pub fn restart_required(&self) -> Vec<&'static str> {
        self.shared.desired.restart_required()
    }

    /// Records that a config change was refused, so the API can show why.
    pub fn config_refused(&self, errors: &ConfigErrors) {
        for issue in &errors.0 {
            tracing::error!(%issue, "config change refused; keeping the running config");
        }
        self.shared.desired.refuse(errors);
    }

    /// Validates that `loaded`'s backends can be built and computes what it would change.
    pub fn prepare(&self, loaded: LoadedConfig) -> Result<Prepared, ConfigErrors> {
        let desired = self
            .shared
            .desired
            .build(loaded, self.shared.factory.as_ref())?;
        let diff = self.desired().diff(&desired);
        Ok(Prepared {
            desired,
            diff,
            restart_required: Vec::new(),
        })
    }

    /// Makes a prepared config the running one and reconciles what it adds or changes at once.
    pub fn commit(&self, prepared: Prepared) -> ConfigDiff {
        let Prepared {
            desired,
            diff,
            restart_required,
        } = prepared;
        for field in &restart_required {
            tracing::warn!(
                field,
                "this setting changed in the file but takes effect only when rotad restarts"
            );
        }
        self.shared
            .queue
            .resize(desired.loaded.config.daemon.max_concurrent_renewals);
        let new_generations = self.shared.desired.replace(desired, restart_required);
        let desired = self.desired();
        self.shared.observer.retain(|id| desired.cert(id).is_some());
        for id in &diff.removed {
            self.shared.schedule.clear(id);
        }
        let touched: Vec<_> = diff
            .added
            .iter()
            .chain(&diff.changed)
            .filter_map(|id| desired.cert(id).cloned())
            .collect();
        tracing::info!(
            added = diff.added.len(),
            changed = diff.changed.len(),
            removed = diff.removed.len(),
            "config applied"
        );
        let (this, removed) = (self.clone(), diff.removed.clone());
        self.shared.tasks.spawn(async move {
            this.store_generations(new_generations).await;
            for id in &removed {
                this.forget_alerts(id).await;
            }
            for cert in touched {
                this.reconcile(&cert).await;
            }
        });
        diff
    }

    /// Forces a renewal of `id`, or joins the one already queued or running; either way the
    /// ticket follows it from its first event. The renewal does not depend on the follower.
    /// On a cluster follower the request is forwarded to the leader, and the ticket follows
    /// the leader's renewal through the shared store.
    pub fn renew(&self, id: &CertId) -> Result<RenewTicket, RenewRequestError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(RenewRequestError::ShuttingDown);
        }
        let cert = self
            .desired()
            .cert(id)
            .cloned()
            .ok_or_else(|| RenewRequestError::NotFound(id.clone()))?;
        match self.enqueue(&cert, Reason::Forced) {
            Ok(following) => Ok(RenewTicket {
                following,
                attached: false,
            }),
            Err(Occupied::Renewal(following)) => Ok(RenewTicket {
                following,
                attached: true,
            }),
            Err(Occupied::Revocation) => Err(RenewRequestError::Revoking(id.clone())),
            Err(Occupied::Following) => Ok(self.forward(&cert)),
        }
    }

    /// Starts a dry run of `id`: the whole pipeline against its CA's dry-run directory (the
    /// local CA itself), nothing installed or written live; the follower sees it from its
    /// first event. It is never joined to a live renewal, nor a live one to it.
    pub fn dry_run(&self, id: &CertId) -> Result<Following, RenewRequestError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(RenewRequestError::ShuttingDown);
        }
        let desired = self.desired();
        let cert = desired
            .cert(id)
            .ok_or_else(|| RenewRequestError::NotFound(id.clone()))?;
        let config = desired.loaded.config.for_dry_run();
        let ca = self.shared.factory.ca(&config, &cert.spec).map_err(|e| {
            RenewRequestError::DryRunUnavailable {
                id: id.clone(),
                reason: e.to_string(),
            }
        })?;
        let dry = Arc::new(CertRuntime {
            spec: cert.spec.clone(),
            generation: cert.generation,
            spec_hash: cert.spec_hash,
            ca,
            dcv: cert.dcv.clone(),
            install: Arc::clone(&cert.install),
        });
        Ok(self.enqueue_dry_run(dry))
    }

    /// Observes and plans every cert, without acting: the sweep's read-only half.
    pub async fn observe_and_plan(&self) -> Vec<(Arc<CertRuntime>, Observation, Plan)> {
        let certs = self.idle_certs();
        let observations = self.shared.observer.observe_many(&certs).await;
        let now = self.shared.clock.now();
        certs
            .into_iter()
            .zip(observations)
            .map(|(cert, observed)| {
                let decision = self.plan_for(&cert, &observed, now);
                (cert, observed, decision)
            })
            .collect()
    }

    /// One sweep: observe and plan every cert not busy, record `Ready`, and act on each plan.
    /// Renewal windows that are due are fetched in the background and never waited for.
    pub async fn sweep(&self) {
        let certs = self.idle_certs();
        let observations = self.shared.observer.observe_many(&certs).await;
        let now = self.shared.clock.now();
        let mut queued = 0;
        for (cert, observed) in certs.iter().zip(observations) {
            let fetching = self.refresh_ari(cert, &observed);
            let decision = self.plan_for(cert, &observed, now);
            self.record_plan(cert, observed, &decision).await;
            queued += usize::from(self.act(cert, &decision, fetching));
        }
        *crate::locks::lock(&self.shared.last_sweep) = Some(self.shared.clock.now());
        tracing::info!(queued, "sweep done");
    }

    fn idle_certs(&self) -> Vec<Arc<CertRuntime>> {
        self.desired()
            .certs
            .iter()
            .filter(|c| !self.is_busy(&c.spec.id))
            .cloned()
            .collect()
    }

    /// Reconciles one cert now: observe, plan, record, act.
    pub(crate) async fn reconcile(&self, cert: &Arc<CertRuntime>) {
        if self.is_busy(&cert.spec.id) {
            return;
        }
        let observed = self.shared.observer.observe(cert).await;
        let fetching = self.refresh_ari(cert, &observed);
        let decision = self.plan_for(cert, &observed, self.shared.clock.now());
        self.record_plan(cert, observed, &decision).await;
        self.act(cert, &decision, fetching);
    }

    /// Acts on a plan: renew now, or look again when the plan says; returns whether a renewal
    /// was queued. A cert merely due by the threshold while its renewal window is being
    /// fetched waits for the fetch, which reconciles it again; one merely due whose renewal a
    /// restart spread out waits for its turn.
    pub(crate) fn act(&self, cert: &Arc<CertRuntime>, decision: &Plan, ari_fetching: bool) -> bool {
        let id = &cert.spec.id;
        let now = self.shared.clock.now();
        let deferred = self
            .shared
            .schedule
            .deferred_until(id)
            .is_some_and(|until| until > now);
        match decision {
            Plan::Renew(Reason::RenewalDue) if ari_fetching => false,
            Plan::Renew(reason) if deferred && !lacks_valid_cert(*reason) => false,
            Plan::Renew(reason) => self.enqueue(cert, *reason).is_ok(),
            Plan::BackingOff { until, .. } => {
                self.shared.schedule.set(id, *until);
                false
            }
            Plan::UpToDate { renew_at } => {
                let ari_check = self.shared.states.read(id, |s| {
                    s.and_then(|s| s.ari.as_ref()).map(|a| a.next_check_at)
                });
                let at = ari_check.map_or(*renew_at, |check| check.min(*renew_at));
                self.shared.schedule.set(id, at);
                false
            }
        }
    }

    /// Plans `cert` with what is known about it at `now`.
    pub(crate) fn plan_for(
        &self,
        cert: &CertRuntime,
        observed: &Observation,
        now: OffsetDateTime,
    ) -> Plan {
        let threshold = self.renew_threshold(cert);
        self.shared.states.read(&cert.spec.id, |state| {
            let installed = match observed {
                Observation::Installed(c) => Some(c),
                _ => None,
            };
            let ari_renew_at = state
                .zip(installed)
                .and_then(|(s, c)| current_ari_time(s, &c.serial));
            let revoked = state
                .zip(installed)
                .is_some_and(|(s, c)| s.revoked.contains(&c.serial));
            let input = PlanInput {
                domains: &cert.spec.domains,
                renew_threshold: threshold,
                generation: cert.generation,
                observed,
                backoff: state.and_then(|s| s.backoff.as_ref()),
                ari_renew_at,
                revoked,
            };
            plan(&input, now)
        })
    }

    /// How long before notAfter `cert` is due when its CA publishes no renewal window.
    fn renew_threshold(&self, cert: &CertRuntime) -> time::Duration {
        let days = cert
            .spec
            .renew_before_days(&self.desired().loaded.config.daemon);
        time::Duration::days(i64::from(days))
    }

    /// Records the `Ready` condition a plan implies and what was observed, and warns when
    /// that makes the cert's expiry news.
    pub(crate) async fn record_plan(
        &self,
        cert: &CertRuntime,
        observed: Observation,
        decision: &Plan,
    ) {
        let update = ready_condition(&observed, decision);
        let now = self.shared.clock.now();
        let changed = self.shared.states.update(&cert.spec.id, |state| {
            state.observed = Some(observed);
            conditions::apply(&mut state.conditions, update, cert.generation, now)
                .then(|| state.conditions.clone())
        });
        if let Some(conds) = changed {
            self.store_conditions(&cert.spec.id, &conds).await;
            self.shared.events.send(CertEvent::Changed {
                cert: cert.spec.id.clone(),
            });
        }
        self.alert_on_plan(cert, decision).await;
    }

    /// Updates one condition in memory and in the store.
    pub(crate) async fn set_condition(&self, cert: &CertRuntime, update: Update) {
        let now = self.shared.clock.now();
        let changed = self.shared.states.update(&cert.spec.id, |state| {
            conditions::apply(&mut state.conditions, update, cert.generation, now)
                .then(|| state.conditions.clone())
        });
        if let Some(conds) = changed {
            self.store_conditions(&cert.spec.id, &conds).await;
            self.shared.events.send(CertEvent::Changed {
                cert: cert.spec.id.clone(),
            });
        }
    }

    async fn store_conditions(&self, id: &CertId, conditions: &[rota_api::status::Condition]) {
        if let Err(e) = self.shared.store.put_conditions(id, conditions).await {
            tracing::error!(cert_id = %id, error = %e, "cannot store conditions");
        }
    }

    async fn store_generations(&self, generations: Vec<(CertId, SpecGeneration)>) {
        for (id, generation) in generations {
            if let Err(e) = self.shared.store.put_spec_generation(&id, generation).await {
                tracing::error!(cert_id = %id, error = %e, "cannot store the spec generation");
            }
        }
    }

    /// Sleeps until the earliest scheduled look, then reconciles every cert that is due.
    fn spawn_wake_loop(&self) {
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            let shared = &this.shared;
            loop {
                let earliest = shared.schedule.earliest();
                let wake = async {
                    match earliest {
                        Some(at) => shared.clock.sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = shared.shutdown.cancelled() => break,
                    () = shared.schedule.changed() => continue,
                    () = wake => {}
                }
                let desired = this.desired();
                for id in shared.schedule.take_due(shared.clock.now()) {
                    if let Some(cert) = desired.cert(&id) {
                        this.reconcile(cert).await;
                    }
                }
            }
        });
    }

    /// The safety net: a full sweep every `check_interval_seconds`, for changes made outside
    /// rota (a cert file replaced by hand, a key moved).
    fn spawn_sweeps(&self) {
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            loop {
                let interval = this.desired().loaded.config.daemon.check_interval_seconds;
                let interval = time::Duration::seconds(i64::try_from(interval).unwrap_or(i64::MAX));
                let at = this.shared.clock.now().saturating_add(interval);
                tokio::select! {
                    () = this.shared.shutdown.cancelled() => break,
                    () = this.shared.clock.sleep_until(at) => this.sweep().await,
                }
            }
        });
    }

    /// Stops sweeping and queuing, and waits up to `grace` for running renewals (and alert
    /// deliveries) to finish. Renewals still running after that stay journalled and are
    /// closed as interrupted at the next start.
    /// In a cluster, the lease is released once they are done (or the grace is over).
    pub async fn shutdown(&self, grace: std::time::Duration) -> bool {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        let finished = tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_ok();
        self.release_lease().await;
        finished
    }
}

/// The time picked inside the CA's window for the installed cert `serial`, if any.
fn current_ari_time(state: &CertState, serial: &str) -> Option<OffsetDateTime> {
    state
        .ari
        .as_ref()
        .filter(|a| a.serial == serial)
        .and_then(|a| a.renew_at)
}

fn ready_condition(observed: &Observation, decision: &Plan) -> Update {
    let ready = |status, reason, message: String| {
        Update::new(ConditionType::Ready, status, reason, message)
    };
    let installed = match observed {
        Observation::Installed(c) => format!(
            "installed cert (serial {}) expires {}",
            c.serial,
            rfc3339(c.not_after)
        ),
        Observation::NotInstalled => "no cert is installed".to_owned(),
        Observation::Unreadable(e) => format!("the installed cert cannot be read: {e}"),
    };
    match decision {
        Plan::UpToDate { renew_at } => ready(
            ConditionStatus::True,
            Reason::UpToDate,
            format!("{installed}; renewal window opens {}", rfc3339(*renew_at)),
        ),
        Plan::Renew(reason) => ready(ConditionStatus::False, *reason, installed),
        Plan::BackingOff { reason, until } => ready(
            ConditionStatus::False,
            *reason,
            format!(
                "{installed}; last attempt failed, next attempt at {}",
                rfc3339(*until)
            ),
        ),
    }
}
