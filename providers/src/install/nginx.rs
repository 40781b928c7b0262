//! `install: { kind: nginx, directory, test_command, reload_command, verify_address }`: the
//! files of `filesystem`, then `nginx -t` and `nginx -s reload` (or the configured argv), then,
//! if asked, a handshake showing nginx serves the new cert.
//!
//! nginx reads its certs only when it (re)loads its config, and `nginx -t` can only test the
//! config against the files where the config names them. So the new files are written in
//! place, tested, and reloaded; if the test, the reload or the check fails, the previous files
//! are put back, so nginx, which still runs the previous config, goes on serving the old cert
//! and rota reads that old cert back (the reconciler then retries installing the new one).
//! When the check failed after a reload, nginx is reloaded once more onto the restored files.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use rota_api::config::{FileOutputs, NginxInstall as NginxSpec};
use rota_api::{
    BackendError, CertId, DomainName, HostPort, InstallBackend, IssuedCert, SecretString,
};

use super::pem_files::{self, Replaced};
use super::{command, verify};

/// The config `kind` of this installer.
const KIND: &str = "nginx";
/// Bound on each command: a reload that hangs (a stuck systemd job) must not hold the renewal.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes the PEM files, tests and reloads nginx, and checks what it serves.
pub(crate) struct NginxInstall {
    directory: PathBuf,
    test_command: Vec<String>,
    reload_command: Vec<String>,
    verify_address: Option<HostPort>,
    command_timeout: Duration,
    verify_within: Duration,
    outputs: pem_files::Outputs,
}

impl NginxInstall {
    /// An installer for `spec`, with the default commands where it names none.
    pub(crate) fn new(spec: &NginxSpec) -> Self {
        let words = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect();
        Self {
            directory: spec.directory.clone(),
            test_command: spec
                .test_command
                .clone()
                .unwrap_or_else(|| words(&["nginx", "-t"])),
            reload_command: spec
                .reload_command
                .clone()
                .unwrap_or_else(|| words(&["nginx", "-s", "reload"])),
            verify_address: spec.verify_address.clone(),
            command_timeout: COMMAND_TIMEOUT,
            verify_within: verify::VERIFY_WITHIN,
            outputs: pem_files::Outputs::new(&FileOutputs {
                directory: &spec.directory,
                formats: &spec.formats,
                pkcs12_password_file: spec.pkcs12_password_file.as_ref(),
            }),
        }
    }

    /// Tests the config on disk, reloads nginx onto it, and checks the served cert.
    async fn switch(
        &self,
        cert: &IssuedCert,
        domains: &[DomainName],
    ) -> Result<(), (BackendError, Reloaded)> {
        command::run(KIND, &self.test_command, self.command_timeout)
            .await
            .map_err(|e| (e, Reloaded::No))?;
        command::run(KIND, &self.reload_command, self.command_timeout)
            .await
            .map_err(|e| (e, Reloaded::No))?;
        if let Some(address) = &self.verify_address {
            verify::served_cert_matches(KIND, address, domains, &cert.cert_pem, self.verify_within)
                .await
                .map_err(|e| (e, Reloaded::Yes))?;
        }
        Ok(())
    }

    /// Puts the previous files back and, if nginx was reloaded onto the new ones, reloads it
    /// onto the old ones; anything that goes wrong is added to `error`, which stays the cause.
    async fn roll_back(
        &self,
        replaced: Replaced,
        error: BackendError,
        reloaded: Reloaded,
    ) -> BackendError {
        let mut undo = replaced.restore().await;
        if undo.is_ok() && reloaded == Reloaded::Yes {
            undo = match command::run(KIND, &self.test_command, self.command_timeout).await {
                Ok(()) => command::run(KIND, &self.reload_command, self.command_timeout).await,
                Err(e) => Err(e),
            };
        }
        match undo {
            Ok(()) => error,
            Err(undo) => BackendError::Refused {
                backend: KIND,
                detail: format!("{error}; then putting the previous cert back failed too: {undo}"),
            },
        }
    }
}

/// Whether nginx had already been reloaded onto the new files when the install failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reloaded {
    Yes,
    No,
}

#[async_trait]
impl InstallBackend for NginxInstall {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        domains: &[DomainName],
    ) -> Result<(), BackendError> {
        let files = self
            .outputs
            .files(KIND, &self.directory, cert, private_key_pem)?;
        let replaced = pem_files::replace(KIND, files).await?;
        match self.switch(cert, domains).await {
            Ok(()) => Ok(()),
            Err((error, reloaded)) => Err(self.roll_back(replaced, error, reloaded).await),
        }
    }

    fn current_cert_path(&self, _cert_id: &CertId) -> Option<PathBuf> {
        Some(pem_files::cert_path(&self.directory))
    }

    async fn current_cert_pem(&self, _cert_id: &CertId) -> Result<Option<String>, BackendError> {
        pem_files::read_cert(KIND, &self.directory).await
    }
}

#[cfg(test)]
mod tests {
    use crate::install::pem_files::issued;
    use std::path::Path;

    use super::*;

    fn id() -> CertId {
        CertId::new("web").unwrap()
    }

    /// An installer whose commands are shell scripts appending to `log` (the installer itself
    /// runs them without a shell: `sh` is the program).
    fn installer(dir: &Path, test: &str, reload: &str) -> NginxInstall {
        let sh = |script: &str| vec!["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        NginxInstall::new(&NginxSpec {
            directory: dir.join("certs"),
            test_command: Some(sh(test)),
            reload_command: Some(sh(reload)),
            verify_address: None,
            formats: vec![rota_api::config::OutputFormat::Pem],
            pkcs12_password_file: None,
            post_command: None,
            post_command_timeout_seconds: 60,
        })
    }

    fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    #[test]
    fn defaults_are_nginx_t_and_nginx_s_reload() {
        let nginx = NginxInstall::new(&NginxSpec {
            directory: "/etc/nginx/certs".into(),
            test_command: None,
            reload_command: None,
            verify_address: None,
            formats: vec![rota_api::config::OutputFormat::Pem],
            pkcs12_password_file: None,
            post_command: None,
            post_command_timeout_seconds: 60,
        });
        assert_eq!(nginx.test_command, ["nginx", "-t"]);
        assert_eq!(nginx.reload_command, ["nginx", "-s", "reload"]);
        assert_eq!(nginx.directory, Path::new("/etc/nginx/certs"));
    }

    #[tokio::test]
    async fn tests_then_reloads_with_the_new_files_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Each command records which cert it saw on disk.
        let nginx = installer(
            dir.path(),
            &format!("echo test $(cat {d}/certs/cert.pem) >> {d}/log"),
            &format!("echo reload $(cat {d}/certs/cert.pem) >> {d}/log"),
        );
        let key = SecretString::new("key\n".into());
        nginx.install(&issued("1"), &key, &[]).await.unwrap();
        assert_eq!(log(dir.path()), "test leaf 1\nreload leaf 1\n");
        assert_eq!(
            nginx.current_cert_pem(&id()).await.unwrap().as_deref(),
            Some("leaf 1\n")
        );
    }

    #[tokio::test]
    async fn a_failed_test_keeps_the_old_files_and_never_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let key = SecretString::new("key\n".into());
        let good = installer(dir.path(), "true", "true");
        good.install(&issued("1"), &key, &[]).await.unwrap();

        let broken = installer(
            dir.path(),
            "echo 'nginx: [emerg] unknown directive \"bogus\"' >&2; exit 1",
            &format!("echo reload >> {d}/log"),
        );
        let err = broken.install(&issued("2"), &key, &[]).await.unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("nginx: `sh -c"), "{text}");
        assert!(text.ends_with("unknown directive \"bogus\""), "{text}");
        assert_eq!(log(dir.path()), "", "no reload after a failed test");
        let read =
            |name: &str| std::fs::read_to_string(dir.path().join("certs").join(name)).unwrap();
        assert_eq!(read("cert.pem"), "leaf 1\n");
        assert_eq!(read("fullchain.pem"), "leaf 1\nroot\n");
    }

    #[tokio::test]
    async fn a_failed_first_install_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let nginx = installer(dir.path(), "true", "echo 'nginx: no pid' >&2; exit 1");
        let key = SecretString::new("key\n".into());
        let err = nginx.install(&issued("1"), &key, &[]).await.unwrap_err();
        assert!(err.to_string().ends_with("nginx: no pid"), "{err}");
        assert_eq!(nginx.current_cert_pem(&id()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_failed_check_reloads_onto_the_restored_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let key = SecretString::new("key\n".into());
        installer(dir.path(), "true", "true")
            .install(&issued("1"), &key, &[])
            .await
            .unwrap();
        let mut nginx = installer(
            dir.path(),
            "true",
            &format!("echo reload $(head -n 1 {d}/certs/cert.pem) >> {d}/log"),
        );
        // Nothing listens there, so the served cert can never be the new one.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        nginx.verify_address =
            Some(HostPort::new(&listener.local_addr().unwrap().to_string()).unwrap());
        drop(listener);
        nginx.verify_within = Duration::from_millis(300);
        let domains = [DomainName::new("a.test").unwrap()];
        let params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        let new = IssuedCert {
            cert_pem: params
                .self_signed(&rcgen::KeyPair::generate().unwrap())
                .unwrap()
                .pem(),
            chain_pem: String::new(),
        };
        let err = nginx.install(&new, &key, &domains).await.unwrap_err();
        assert!(err.to_string().contains("not the new cert"), "{err}");
        assert_eq!(
            log(dir.path()),
            "reload -----BEGIN CERTIFICATE-----\nreload leaf 1\n",
            "reloaded onto the new cert, then back onto the old one"
        );
        assert_eq!(
            nginx.current_cert_pem(&id()).await.unwrap().as_deref(),
            Some("leaf 1\n")
        );
    }
}
