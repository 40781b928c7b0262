//! Desired state: the running config with a live backend for every cert, built in one go so
//! that a config whose backends cannot be constructed is refused as a whole, and the set that
//! holds the running one with its generation numbers and the last refused change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rota_api::config::CertSpec;
use rota_api::config::{ConfigErrors, ConfigIssue, LoadedConfig, spec_hash};
use rota_api::{
    AlertBackend, BackendError, BackendFactory, CaBackend, CertId, DcvBackend, InstallBackend,
};
use rota_store::SpecGeneration;

use crate::locks::lock;

/// One configured cert with its backends.
pub struct CertRuntime {
    /// The cert's spec.
    pub spec: CertSpec,
    /// Counts the cert's spec changes (1, 2, 3 …), as Kubernetes' `metadata.generation`.
    pub generation: u64,
    /// Hash of the spec; changes exactly when the spec does.
    pub spec_hash: u64,
    /// Its CA.
    pub ca: Arc<dyn CaBackend>,
    /// Its DCV solver, when it has one.
    pub dcv: Option<Arc<dyn DcvBackend>>,
    /// Its installer.
    pub install: Arc<dyn InstallBackend>,
}

/// The running config and everything built from it.
pub struct Desired {
    /// The config as loaded.
    pub loaded: LoadedConfig,
    /// Every cert, in config order.
    pub certs: Vec<Arc<CertRuntime>>,
    /// Every alert sink.
    pub alerts: Vec<Arc<dyn AlertBackend>>,
    index: HashMap<CertId, usize>,
}

/// Which certs a config change adds, changes or removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// New ids.
    pub added: Vec<CertId>,
    /// Ids whose spec changed.
    pub changed: Vec<CertId>,
    /// Ids no longer configured.
    pub removed: Vec<CertId>,
}

impl Desired {
    /// Builds every backend the config names; any failure refuses the whole config. A cert
    /// keeps its generation from `known` while its spec hash is the same, else gets the next.
    pub fn build(
        loaded: LoadedConfig,
        factory: &dyn BackendFactory,
        known: &HashMap<CertId, SpecGeneration>,
    ) -> Result<Self, ConfigErrors> {
        let config = &loaded.config;
        let mut issues = Vec::new();
        let mut certs = Vec::with_capacity(config.certs.len());
        for (i, spec) in config.certs.iter().enumerate() {
            let ca = factory.ca(config, spec);
            let dcv = spec
                .dcv
                .as_ref()
                .map(|d| factory.dcv(config, d))
                .transpose();
            let install = factory.install(config, spec);
            match (ca, dcv, install) {
                (Ok(ca), Ok(dcv), Ok(install)) => certs.push(Arc::new(CertRuntime {
                    generation: generation_of(known.get(&spec.id), spec_hash(spec)),
                    spec_hash: spec_hash(spec),
                    spec: spec.clone(),
                    ca,
                    dcv,
                    install,
                })),
                (ca, dcv, install) => {
                    for (field, err) in [
                        ("ca", ca.err()),
                        ("dcv", dcv.err()),
                        ("install", install.err()),
                    ] {
                        if let Some(err) = err {
                            issues.push(construction_issue(
                                &loaded,
                                &format!("certs[{i}].{field}"),
                                &err,
                            ));
                        }
                    }
                }
            }
        }
        let mut alerts = Vec::with_capacity(config.alerts.len());
        for (i, spec) in config.alerts.iter().enumerate() {
            match factory.alert(config, spec) {
                Ok(sink) => alerts.push(sink),
                Err(err) => issues.push(construction_issue(&loaded, &format!("alerts[{i}]"), &err)),
            }
        }
        if !issues.is_empty() {
            return Err(ConfigErrors(issues));
        }
        let index = certs
            .iter()
            .enumerate()
            .map(|(i, c)| (c.spec.id.clone(), i))
            .collect();
        Ok(Self {
            loaded,
            certs,
            alerts,
            index,
        })
    }

    /// The cert with this id.
    #[must_use]
    pub fn cert(&self, id: &CertId) -> Option<&Arc<CertRuntime>> {
        self.index.get(id).map(|&i| &self.certs[i])
    }

    /// What changes between `self` (running) and `next`.
    #[must_use]
    pub fn diff(&self, next: &Desired) -> ConfigDiff {
        let mut diff = ConfigDiff::default();
        for cert in &next.certs {
            match self.cert(&cert.spec.id) {
                None => diff.added.push(cert.spec.id.clone()),
                Some(old) if old.generation != cert.generation => {
                    diff.changed.push(cert.spec.id.clone());
                }
                Some(_) => {}
            }
        }
        for cert in &self.certs {
            if next.cert(&cert.spec.id).is_none() {
                diff.removed.push(cert.spec.id.clone());
            }
        }
        diff
    }
}

/// The generation of a spec hashing to `hash`, given what the cert had before.
fn generation_of(known: Option<&SpecGeneration>, hash: u64) -> u64 {
    match known {
        Some(k) if k.spec_hash == hash => k.generation,
        Some(k) => k.generation.saturating_add(1),
        None => 1,
    }
}

/// The running [`Desired`], the generation each cert's spec was given, and the errors of the
/// last refused change.
pub(crate) struct DesiredSet {
    running: RwLock<Arc<Desired>>,
    generations: Mutex<HashMap<CertId, SpecGeneration>>,
    refused: Mutex<Vec<ConfigIssue>>,
    restart_required: Mutex<Vec<&'static str>>,
}

impl DesiredSet {
    /// Holds `desired`, whose generations were built from `known`; also returns the
    /// generations that are new, to be stored.
    pub(crate) fn new(
        desired: Desired,
        known: HashMap<CertId, SpecGeneration>,
    ) -> (Self, Vec<(CertId, SpecGeneration)>) {
        let mut generations = known;
        let changed = adopt_generations(&mut generations, &desired);
        let set = Self {
            running: RwLock::new(Arc::new(desired)),
            generations: Mutex::new(generations),
            refused: Mutex::default(),
            restart_required: Mutex::default(),
        };
        (set, changed)
    }

    /// The running desired state.
    pub(crate) fn current(&self) -> Arc<Desired> {
        Arc::clone(&self.running.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Builds `loaded` against the generations known so far.
    pub(crate) fn build(
        &self,
        loaded: LoadedConfig,
        factory: &dyn BackendFactory,
    ) -> Result<Desired, ConfigErrors> {
        Desired::build(loaded, factory, &lock(&self.generations))
    }

    /// Makes `desired` the running state, noting the restart-only settings its file changed
    /// but that keep their running values; returns the generations that are new, to be stored.
    pub(crate) fn replace(
        &self,
        desired: Desired,
        restart_required: Vec<&'static str>,
    ) -> Vec<(CertId, SpecGeneration)> {
        let changed = adopt_generations(&mut lock(&self.generations), &desired);
        *self.running.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(desired);
        lock(&self.refused).clear();
        *lock(&self.restart_required) = restart_required;
        changed
    }

    /// The restart-only settings the running file changed since rotad started.
    pub(crate) fn restart_required(&self) -> Vec<&'static str> {
        lock(&self.restart_required).clone()
    }

    /// The errors of the last refused change (empty once a change is applied).
    pub(crate) fn refused(&self) -> Vec<ConfigIssue> {
        lock(&self.refused).clone()
    }

    /// Records the errors of a refused change.
    pub(crate) fn refuse(&self, errors: &ConfigErrors) {
        lock(&self.refused).clone_from(&errors.0);
    }
}

/// Records the generation of every cert of `desired`; returns those that changed.
fn adopt_generations(
    generations: &mut HashMap<CertId, SpecGeneration>,
    desired: &Desired,
) -> Vec<(CertId, SpecGeneration)> {
    let mut changed = Vec::new();
    for cert in &desired.certs {
        let now = SpecGeneration {
            spec_hash: cert.spec_hash,
            generation: cert.generation,
        };
        if generations.insert(cert.spec.id.clone(), now) != Some(now) {
            changed.push((cert.spec.id.clone(), now));
        }
    }
    changed
}

fn construction_issue(loaded: &LoadedConfig, path: &str, err: &BackendError) -> ConfigIssue {
    loaded.issue_at(path, format!("cannot set up this backend: {err}"), None)
}
