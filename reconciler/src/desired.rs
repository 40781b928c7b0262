//! Desired state: the running config with a live backend for every cert, built in one go so
//! that a config whose backends cannot be constructed is refused as a whole.

use std::collections::HashMap;
use std::sync::Arc;

use rota_api::config::CertSpec;
use rota_api::config::{ConfigErrors, ConfigIssue, LoadedConfig, cert_generation};
use rota_api::{
    AlertBackend, BackendError, BackendFactory, CaBackend, CertId, DcvBackend, InstallBackend,
};

/// One configured cert with its backends.
pub struct CertRuntime {
    /// The cert's spec.
    pub spec: CertSpec,
    /// Hash of the spec; changes exactly when the spec does.
    pub generation: u64,
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
    /// Builds every backend the config names; any failure refuses the whole config.
    pub fn build(loaded: LoadedConfig, factory: &dyn BackendFactory) -> Result<Self, ConfigErrors> {
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
                    generation: cert_generation(spec),
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

fn construction_issue(loaded: &LoadedConfig, path: &str, err: &BackendError) -> ConfigIssue {
    loaded.issue_at(path, format!("cannot set up this backend: {err}"), None)
}
