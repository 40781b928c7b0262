//! rota's backends: one module per config `kind` (`ca/local.rs`, `install/filesystem.rs`, …)
//! and [`Providers`], the one factory that turns a config variant into a running backend. The
//! reconciler only sees the `rota-api` traits; this crate is where vendors live. Also home of
//! the two pieces of file handling every backend shares: [`atomic_write`] and the per-cert
//! private [`keys`].

pub mod atomic_write;
mod error_chain;
mod http_retry;
pub mod key_rotation;
pub mod keys;
#[cfg(feature = "k8s")]
mod kube_client;
mod namecheap;
pub mod san;
mod tls_client;

mod alert;

mod ca {
    //! Certificate authorities, one module per `ca: { kind }`.
    pub(crate) mod acme;
    pub(crate) mod local;
    pub(crate) mod namecheap;
}

#[cfg(feature = "k8s")]
pub mod cluster {
    //! Leader-election coordinators (`cluster.coordinator`) that live outside the audit store.
    pub mod k8s_lease;
}

mod dcv {
    //! Domain-control solvers, one module per `dcv: { kind }`.
    pub(crate) mod cloudflare;
    pub(crate) mod namecheap;
    mod record;
    pub(crate) mod rfc2136;
    pub(crate) mod webroot;
}

mod install {
    //! Installers, one module per `install: { kind }`, and what they share: the PEM files,
    //! running an operator's command, and checking what a server serves.
    mod certbot_lineage;
    mod command;
    pub(crate) mod dsm;
    pub(crate) mod filesystem;
    pub(crate) mod haproxy;
    #[cfg(feature = "k8s")]
    pub(crate) mod k8s_secret;
    pub(crate) mod nginx;
    mod pem_files;
    mod pkcs12;
    pub mod post_command;
    mod verify;
}

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rota_api::config::{AcmeAccount, AlertSpec, CaSpec, CertSpec, Config, DcvSpec, InstallSpec};
use rota_api::{AlertBackend, BackendError, BackendFactory, CaBackend, DcvBackend, InstallBackend};

use alert::email::EmailSink;
use alert::webhook::WebhookSink;
use ca::acme::{AcmeCa, SharedAccount};
use ca::local::LocalCa;
pub use ca::local::root_cert_path;
use dcv::cloudflare::CloudflareDcv;
use dcv::namecheap::{DomainLocks, NamecheapDcv};
use dcv::webroot::WebrootDcv;
use install::dsm::DsmInstall;
use install::filesystem::FilesystemInstall;
use install::haproxy::HaproxyInstall;
use install::nginx::NginxInstall;
pub use install::post_command;

/// Builds backends from config variants; keep one for the daemon's lifetime so certs share
/// what must be shared (one local CA per directory).
#[derive(Default)]
pub struct Providers {
    /// The local CAs built so far, by directory.
    local_cas: Mutex<HashMap<PathBuf, Arc<LocalCa>>>,
    /// The ACME accounts built so far, by directory URL and credentials file.
    acme_accounts: Mutex<HashMap<(String, PathBuf), Arc<SharedAccount>>>,
    /// Namecheap's `setHosts` rewrites a whole domain: every solver takes turns on these.
    namecheap_domains: Arc<DomainLocks>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cas = self
            .local_cas
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let accounts = self
            .acme_accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Providers")
            .field("local_ca_directories", &cas.keys().collect::<Vec<_>>())
            .field("acme_accounts", &accounts.keys().collect::<Vec<_>>())
            .field("namecheap_domains", &self.namecheap_domains)
            .finish()
    }
}

impl Providers {
    /// A factory with nothing built yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The one [`LocalCa`] for `config`'s local CA directory.
    fn local_ca(&self, config: &Config) -> Arc<LocalCa> {
        let directory = config.local_ca_directory();
        let mut cas = self
            .local_cas
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ca = cas
            .entry(directory)
            .or_insert_with_key(|dir| Arc::new(LocalCa::new(dir)));
        Arc::clone(ca)
    }

    /// The one [`SharedAccount`] for this `acme:` block's directory and credentials file, so
    /// every cert orders with the same account. A changed block (contact, EAB, CA bundle)
    /// gets a fresh client; the credentials file keeps it the same account.
    fn acme_account(&self, config: &AcmeAccount) -> Arc<SharedAccount> {
        let key = (
            config.directory_url.clone(),
            config.account_credentials_file.clone(),
        );
        let mut accounts = self
            .acme_accounts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match accounts.get(&key) {
            Some(account) if account.config() == config => Arc::clone(account),
            _ => {
                let account = Arc::new(SharedAccount::new(config.clone()));
                accounts.insert(key, Arc::clone(&account));
                account
            }
        }
    }
}

/// A `kind` the config reference knows but this build cannot run. The validator refuses it
/// first; this keeps a config that slipped past it from doing anything.
#[cfg(not(feature = "k8s"))]
fn not_available<T: ?Sized>(spec: &impl rota_api::config::Tagged) -> Result<Arc<T>, BackendError> {
    Err(BackendError::NotAvailable {
        backend: spec.kind(),
    })
}

/// The client for the `namecheap:` block, which both Namecheap backends need.
fn namecheap_client(config: &Config) -> Result<namecheap::NamecheapClient, BackendError> {
    let account = config.namecheap.as_ref().ok_or(BackendError::invalid(
        "namecheap",
        "`kind: namecheap` needs the top-level `namecheap:` block",
    ))?;
    namecheap::NamecheapClient::new(account)
}

impl BackendFactory for Providers {
    fn ca(&self, config: &Config, cert: &CertSpec) -> Result<Arc<dyn CaBackend>, BackendError> {
        match &cert.ca {
            CaSpec::Local(local) => Ok(Arc::new(
                self.local_ca(config)
                    .backend(local.validity_days.unwrap_or(config.local_ca.validity_days)),
            )),
            CaSpec::Acme(acme) => {
                let account = config.acme.as_ref().ok_or(BackendError::invalid(
                    "acme",
                    "`ca: { kind: acme }` needs the top-level `acme:` block",
                ))?;
                let profile = acme.profile.clone().or_else(|| account.profile.clone());
                Ok(Arc::new(AcmeCa::new(self.acme_account(account), profile)))
            }
            CaSpec::Namecheap(namecheap) => Ok(Arc::new(ca::namecheap::NamecheapCa::new(
                Arc::new(namecheap_client(config)?),
                namecheap.ssl_id,
            ))),
        }
    }

    fn dcv(&self, config: &Config, spec: &DcvSpec) -> Result<Arc<dyn DcvBackend>, BackendError> {
        match spec {
            DcvSpec::Webroot(webroot) => Ok(Arc::new(WebrootDcv::new(&webroot.directory))),
            DcvSpec::Rfc2136(rfc2136) => Ok(Arc::new(dcv::rfc2136::Rfc2136Dcv::new(rfc2136)?)),
            DcvSpec::Cloudflare(_) => {
                let account = config.cloudflare.as_ref().ok_or(BackendError::invalid(
                    "cloudflare",
                    "`dcv: { kind: cloudflare }` needs the top-level `cloudflare:` block",
                ))?;
                Ok(Arc::new(CloudflareDcv::new(account)?))
            }
            DcvSpec::Namecheap(_) => {
                let client = Arc::new(namecheap_client(config)?);
                Ok(Arc::new(NamecheapDcv::new(
                    client,
                    Arc::clone(&self.namecheap_domains),
                )))
            }
        }
    }

    fn install(
        &self,
        config: &Config,
        cert: &CertSpec,
    ) -> Result<Arc<dyn InstallBackend>, BackendError> {
        match &cert.install {
            InstallSpec::Filesystem(fs) => Ok(Arc::new(FilesystemInstall::from_spec(fs))),
            InstallSpec::Nginx(nginx) => Ok(Arc::new(NginxInstall::new(nginx))),
            InstallSpec::Haproxy(haproxy) => Ok(Arc::new(HaproxyInstall::new(haproxy))),
            InstallSpec::Dsm(dsm) => {
                let connection = config.dsm.as_ref().ok_or(BackendError::invalid(
                    "dsm",
                    "`install: { kind: dsm }` needs the top-level `dsm:` block",
                ))?;
                Ok(Arc::new(DsmInstall::new(connection, &dsm.description)?))
            }
            #[cfg(feature = "k8s")]
            InstallSpec::K8sSecret(spec) => Ok(Arc::new(
                install::k8s_secret::K8sSecretInstall::new(&cert.id, spec),
            )),
            #[cfg(not(feature = "k8s"))]
            InstallSpec::K8sSecret(_) => not_available(&cert.install),
        }
    }

    fn alert(
        &self,
        _config: &Config,
        spec: &AlertSpec,
    ) -> Result<Arc<dyn AlertBackend>, BackendError> {
        match spec {
            AlertSpec::Email(email) => Ok(Arc::new(EmailSink::new(email)?)),
            AlertSpec::Webhook(hook) => Ok(Arc::new(WebhookSink::new(hook)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rota_api::config::{AcmeCa, NamecheapCa};

    use super::*;

    /// A config with one cert issued by the local CA and installed under `dir/out`.
    fn local_config(dir: &Path) -> Config {
        let text = format!(
            "local_ca: {{ directory: {d}/ca, validity_days: 90 }}\n\
             certs:\n  - id: web\n    domains: [a.test]\n    key_path: {d}/web.key\n    \
             ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {d}/out }}\n",
            d = dir.display()
        );
        rota_api::config::load_str(&dir.join("rota.yaml"), text)
            .unwrap()
            .config
    }

    #[test]
    fn available_kinds_build_and_the_rest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let providers = Providers::new();
        let config = local_config(dir.path());
        let cert = &config.certs[0];
        assert_eq!(providers.ca(&config, cert).unwrap().kind(), "local");
        assert_eq!(
            providers.install(&config, cert).unwrap().kind(),
            "filesystem"
        );

        // Built by hand: the config validator refuses these kinds before they get here.
        let mut other = cert.clone();
        other.ca = CaSpec::Namecheap(NamecheapCa { ssl_id: 1 });
        let err = providers.ca(&config, &other).map(drop).unwrap_err();
        assert!(err.to_string().contains("`namecheap:` block"), "{err}");
        let webroot = DcvSpec::Webroot(rota_api::config::WebrootDcv {
            directory: "/w".into(),
        });
        assert_eq!(providers.dcv(&config, &webroot).unwrap().kind(), "webroot");
        let cloudflare = DcvSpec::Cloudflare(rota_api::config::CloudflareDcv {});
        let err = providers.dcv(&config, &cloudflare).map(drop).unwrap_err();
        assert!(err.to_string().contains("`cloudflare:` block"), "{err}");
    }

    #[test]
    fn acme_certs_share_one_account_per_directory_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let providers = Providers::new();
        let mut config = local_config(dir.path());
        let mut cert = config.certs[0].clone();
        cert.ca = CaSpec::Acme(AcmeCa { profile: None });
        let err = providers.ca(&config, &cert).map(drop).unwrap_err();
        assert!(err.to_string().contains("`acme:` block"), "{err}");

        let account = AcmeAccount {
            directory_url: "https://ca.test/dir".into(),
            contact_email: None,
            account_credentials_file: dir.path().join("acme.json"),
            external_account_binding: None,
            profile: None,
            ca_bundle_file: None,
            staging_directory_url: None,
        };
        config.acme = Some(account.clone());
        assert_eq!(providers.ca(&config, &cert).unwrap().kind(), "acme");
        let first = providers.acme_account(&account);
        assert!(Arc::ptr_eq(&first, &providers.acme_account(&account)));
        let other_file = AcmeAccount {
            account_credentials_file: dir.path().join("other.json"),
            ..account.clone()
        };
        assert!(!Arc::ptr_eq(&first, &providers.acme_account(&other_file)));
        // A changed block gets a fresh client; the file keeps it the same account.
        let with_contact = AcmeAccount {
            contact_email: Some("ops@a.test".into()),
            ..account
        };
        assert!(!Arc::ptr_eq(&first, &providers.acme_account(&with_contact)));
    }

    #[test]
    fn one_local_ca_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let providers = Providers::new();
        let config = local_config(dir.path());
        assert!(Arc::ptr_eq(
            &providers.local_ca(&config),
            &providers.local_ca(&config)
        ));
        let mut elsewhere = config.clone();
        elsewhere.local_ca.directory = Some(dir.path().join("other-ca"));
        assert!(!Arc::ptr_eq(
            &providers.local_ca(&config),
            &providers.local_ca(&elsewhere)
        ));
    }
}
