//! The reconciler: holds the desired state, observes what is installed, plans, and hands
//! renewals to the work queue. Sweeps start one full interval after boot; certs the daemon
//! has not reconciled in their current form (new, or changed by `apply`/a hot reload) are
//! reconciled at once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use rota_api::config::{ConfigErrors, ConfigIssue, LoadedConfig};
use rota_api::status::{BackoffState, Condition, ConditionStatus, ConditionType, Reason};
use rota_api::wire::RenewProgress;
use rota_api::{BackendFactory, CertId};
use rota_store::{AuditStore, StoreError};

use crate::ari::AriStatus;
use crate::clock::{Clock, rfc3339};
use crate::conditions::{self, Update};
use crate::desired::{CertRuntime, ConfigDiff, Desired};
use crate::observe::Observer;
use crate::plan::{Observation, Plan, PlanInput, plan};

/// What rotad knows about one cert beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct CertState {
    /// Its conditions.
    pub conditions: Vec<Condition>,
    /// Its failure backoff.
    pub backoff: Option<BackoffState>,
    /// What the last observation found.
    pub observed: Option<Observation>,
    /// The spec generation last reconciled.
    pub reconciled_generation: Option<u64>,
    /// The CA's renewal window for the installed cert, when the CA publishes one.
    pub ari: Option<AriStatus>,
    /// Serials of this cert revoked through rota: one of them installed means "replace it".
    pub revoked: BTreeSet<String>,
}

/// Why a forced renewal could not be queued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenewRequestError {
    /// No cert has that id.
    #[error("no cert `{0}` in the running config")]
    NotFound(CertId),
    /// It is already renewing or queued.
    #[error("a renewal of `{0}` is already running or queued")]
    Busy(CertId),
    /// The daemon is stopping.
    #[error("rotad is shutting down")]
    ShuttingDown,
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

/// The renewal concurrency limit and how many slots a lowered limit still has to retire.
pub(crate) struct Capacity {
    pub size: usize,
    pub debt: usize,
}

pub(crate) struct Shared {
    pub store: Arc<dyn AuditStore>,
    pub factory: Arc<dyn BackendFactory>,
    pub clock: Arc<dyn Clock>,
    pub desired: RwLock<Arc<Desired>>,
    pub observer: Arc<Observer>,
    pub states: Mutex<HashMap<CertId, CertState>>,
    pub busy: Mutex<std::collections::HashSet<CertId>>,
    pub permits: Arc<Semaphore>,
    pub capacity: Mutex<Capacity>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    pub config_errors: Mutex<Vec<ConfigIssue>>,
    pub restart_required: Mutex<Vec<&'static str>>,
}

/// The running reconciler; cheap to clone.
#[derive(Clone)]
pub struct Reconciler {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Reconciler {
    /// Builds the desired state, restores stored state, recovers from an interrupted run,
    /// reconciles certs that are new or changed, and starts the periodic sweep.
    pub async fn start(
        loaded: LoadedConfig,
        store: Arc<dyn AuditStore>,
        factory: Arc<dyn BackendFactory>,
        clock: Arc<dyn Clock>,
        shutdown: CancellationToken,
    ) -> Result<Self, StartError> {
        let desired = Desired::build(loaded, factory.as_ref()).map_err(StartError::Config)?;
        let permits = desired.loaded.config.daemon.max_concurrent_renewals;
        let reconciler = Self {
            shared: Arc::new(Shared {
                store,
                factory,
                clock,
                desired: RwLock::new(Arc::new(desired)),
                observer: Arc::new(Observer::default()),
                states: Mutex::new(HashMap::new()),
                busy: Mutex::new(std::collections::HashSet::new()),
                permits: Arc::new(Semaphore::new(permits)),
                capacity: Mutex::new(Capacity {
                    size: permits,
                    debt: 0,
                }),
                tasks: TaskTracker::new(),
                shutdown,
                config_errors: Mutex::new(Vec::new()),
                restart_required: Mutex::new(Vec::new()),
            }),
        };
        reconciler.restore_state().await?;
        reconciler.recover().await?;
        let pending: Vec<_> = {
            let states = lock(&reconciler.shared.states);
            reconciler
                .desired()
                .certs
                .iter()
                .filter(|c| {
                    states.get(&c.spec.id).and_then(|s| s.reconciled_generation)
                        != Some(c.generation)
                })
                .cloned()
                .collect()
        };
        reconciler.reconcile_soon(pending);
        reconciler.spawn_sweeps();
        Ok(reconciler)
    }

    async fn restore_state(&self) -> Result<(), StoreError> {
        let store = &self.shared.store;
        let (conditions, backoffs, generations, revoked) = (
            store.all_conditions().await?,
            store.backoffs().await?,
            store.reconciled_generations().await?,
            store.revoked_serials().await?,
        );
        let mut states = lock(&self.shared.states);
        for (id, c) in conditions {
            states.entry(id).or_default().conditions = c;
        }
        for (id, b) in backoffs {
            states.entry(id).or_default().backoff = Some(b);
        }
        for (id, g) in generations {
            states.entry(id).or_default().reconciled_generation = Some(g);
        }
        for (id, serials) in revoked {
            states.entry(id).or_default().revoked = serials;
        }
        Ok(())
    }

    /// The running desired state.
    #[must_use]
    pub fn desired(&self) -> Arc<Desired> {
        Arc::clone(
            &self
                .shared
                .desired
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A snapshot of one cert's state.
    #[must_use]
    pub fn state(&self, id: &CertId) -> CertState {
        lock(&self.shared.states)
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// Whether a renewal of `id` is running or queued.
    #[must_use]
    pub fn is_busy(&self, id: &CertId) -> bool {
        lock(&self.shared.busy).contains(id)
    }

    /// The errors of the last refused config change (empty once a change is applied).
    #[must_use]
    pub fn config_errors(&self) -> Vec<ConfigIssue> {
        lock(&self.shared.config_errors).clone()
    }

    /// Restart-only settings that the config file changes but that rotad keeps at their
    /// running values until it restarts.
    #[must_use]
    pub fn restart_required(&self) -> Vec<&'static str> {
        lock(&self.shared.restart_required).clone()
    }

    /// Records that a config change was refused, so the API can show why.
    pub fn config_refused(&self, errors: &ConfigErrors) {
        for issue in &errors.0 {
            tracing::error!(%issue, "config change refused; keeping the running config");
        }
        lock(&self.shared.config_errors).clone_from(&errors.0);
    }

    /// Validates that `loaded`'s backends can be built and computes what it would change.
    pub fn prepare(&self, loaded: LoadedConfig) -> Result<Prepared, ConfigErrors> {
        let desired = Desired::build(loaded, self.shared.factory.as_ref())?;
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
        *lock(&self.shared.restart_required) = restart_required;
        self.resize_permits(desired.loaded.config.daemon.max_concurrent_renewals);
        let desired = Arc::new(desired);
        *self
            .shared
            .desired
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&desired);
        lock(&self.shared.config_errors).clear();
        self.shared.observer.retain(|id| desired.cert(id).is_some());
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
        self.reconcile_soon(touched);
        diff
    }

    /// Forces a renewal of `id`, streaming its progress to `progress`.
    pub fn renew(
        &self,
        id: &CertId,
        progress: mpsc::Sender<RenewProgress>,
    ) -> Result<(), RenewRequestError> {
        if self.shared.shutdown.is_cancelled() {
            return Err(RenewRequestError::ShuttingDown);
        }
        let cert = self
            .desired()
            .cert(id)
            .cloned()
            .ok_or_else(|| RenewRequestError::NotFound(id.clone()))?;
        if self.enqueue(&cert, Reason::Forced, Some(progress)) {
            Ok(())
        } else {
            Err(RenewRequestError::Busy(id.clone()))
        }
    }

    /// Observes and plans every cert, without acting: the sweep's read-only half.
    pub async fn observe_and_plan(&self) -> Vec<(Arc<CertRuntime>, Observation, Plan)> {
        let desired = self.desired();
        let certs: Vec<_> = {
            let busy = lock(&self.shared.busy);
            desired
                .certs
                .iter()
                .filter(|c| !busy.contains(&c.spec.id))
                .cloned()
                .collect()
        };
        let observations = self.shared.observer.observe_many(&certs).await;
        let observed: Vec<_> = certs.into_iter().zip(observations).collect();
        self.refresh_ari(&observed).await;
        let threshold = desired.loaded.config.daemon.renew_threshold_days;
        let now = self.shared.clock.now();
        let states = lock(&self.shared.states);
        observed
            .into_iter()
            .map(|(cert, observed)| {
                let decision =
                    plan_cert(&cert, &observed, states.get(&cert.spec.id), threshold, now);
                (cert, observed, decision)
            })
            .collect()
    }

    /// One sweep: observe, plan, record `Ready`, and queue what is due.
    pub async fn sweep(&self) {
        let planned = self.observe_and_plan().await;
        let mut queued = 0;
        for (cert, observed, decision) in planned {
            self.record_plan(&cert, observed, &decision).await;
            if let Plan::Renew(reason) = decision {
                queued += usize::from(self.enqueue(&cert, reason, None));
            }
        }
        tracing::info!(queued, "sweep done");
    }

    /// Reconciles one cert now (observe, plan, act).
    pub(crate) async fn reconcile(&self, cert: &Arc<CertRuntime>) {
        if self.is_busy(&cert.spec.id) {
            return;
        }
        let (observed, decision) = self.observe_and_plan_one(cert).await;
        self.record_plan(cert, observed, &decision).await;
        if let Plan::Renew(reason) = decision {
            self.enqueue(cert, reason, None);
        }
    }

    /// Observes one cert (and its renewal window, if due) and plans it.
    pub(crate) async fn observe_and_plan_one(
        &self,
        cert: &Arc<CertRuntime>,
    ) -> (Observation, Plan) {
        let observed = self.shared.observer.observe(cert).await;
        let mut pair = [(Arc::clone(cert), observed)];
        self.refresh_ari(&pair).await;
        let observed = std::mem::replace(&mut pair[0].1, Observation::NotInstalled);
        let threshold = self.desired().loaded.config.daemon.renew_threshold_days;
        let states = lock(&self.shared.states);
        let decision = plan_cert(
            cert,
            &observed,
            states.get(&cert.spec.id),
            threshold,
            self.shared.clock.now(),
        );
        (observed, decision)
    }

    fn reconcile_soon(&self, certs: Vec<Arc<CertRuntime>>) {
        if certs.is_empty() {
            return;
        }
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            for cert in certs {
                this.reconcile(&cert).await;
            }
        });
    }

    /// Records the `Ready` condition a plan implies and that this generation was reconciled.
    pub(crate) async fn record_plan(
        &self,
        cert: &CertRuntime,
        observed: Observation,
        decision: &Plan,
    ) {
        let update = ready_condition(&observed, decision);
        let id = &cert.spec.id;
        let (changed, first_time) = {
            let mut states = lock(&self.shared.states);
            let state = states.entry(id.clone()).or_default();
            state.observed = Some(observed);
            let first_time = state.reconciled_generation != Some(cert.generation);
            state.reconciled_generation = Some(cert.generation);
            let changed = conditions::apply(
                &mut state.conditions,
                update,
                cert.generation,
                self.shared.clock.now(),
            );
            (changed.then(|| state.conditions.clone()), first_time)
        };
        if let Some(conds) = changed
            && let Err(e) = self.shared.store.put_conditions(id, &conds).await
        {
            tracing::error!(cert_id = %id, error = %e, "cannot store conditions");
        }
        if first_time
            && let Err(e) = self
                .shared
                .store
                .put_reconciled_generation(id, cert.generation)
                .await
        {
            tracing::error!(cert_id = %id, error = %e, "cannot store the reconciled generation");
        }
    }

    /// Updates one condition in memory and in the store.
    pub(crate) async fn set_condition(&self, cert: &CertRuntime, update: Update) {
        let conds = {
            let mut states = lock(&self.shared.states);
            let state = states.entry(cert.spec.id.clone()).or_default();
            conditions::apply(
                &mut state.conditions,
                update,
                cert.generation,
                self.shared.clock.now(),
            )
            .then(|| state.conditions.clone())
        };
        if let Some(conds) = conds
            && let Err(e) = self
                .shared
                .store
                .put_conditions(&cert.spec.id, &conds)
                .await
        {
            tracing::error!(cert_id = %cert.spec.id, error = %e, "cannot store conditions");
        }
    }

    fn spawn_sweeps(&self) {
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            loop {
                let interval = this.desired().loaded.config.daemon.check_interval_seconds;
                tokio::select! {
                    () = this.shared.shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(interval)) => this.sweep().await,
                }
            }
        });
    }

    /// Stops sweeping and queuing, and waits up to `grace` for running renewals to finish.
    /// Renewals still running after that stay journalled and are closed as interrupted at
    /// the next start.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.shutdown.cancel();
        self.shared.tasks.close();
        tokio::time::timeout(grace, self.shared.tasks.wait())
            .await
            .is_ok()
    }
}

fn plan_cert(
    cert: &CertRuntime,
    observed: &Observation,
    state: Option<&CertState>,
    renew_threshold_days: u32,
    now: time::OffsetDateTime,
) -> Plan {
    let ari_renew_at = match (observed, state.and_then(|s| s.ari.as_ref())) {
        (Observation::Installed(c), Some(ari)) if ari.serial == c.serial => ari.renew_at,
        _ => None,
    };
    let revoked = match (observed, state) {
        (Observation::Installed(c), Some(state)) => state.revoked.contains(&c.serial),
        _ => false,
    };
    let input = PlanInput {
        domains: &cert.spec.domains,
        renew_threshold: time::Duration::days(i64::from(renew_threshold_days)),
        generation: cert.generation,
        observed,
        backoff: state.and_then(|s| s.backoff.as_ref()),
        ari_renew_at,
        revoked,
    };
    plan(&input, now)
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
