//! `install: { kind: filesystem, directory }`: PEM files under certbot's names, so any service
//! reading certs from disk (and any reload script written for certbot) works unchanged. The
//! files are written as [`pem_files`] describes; nothing else happens. With `certbot_archive`,
//! `directory` is a certbot lineage's `live/NAME` and [`certbot_lineage`] keeps it one.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use rota_api::config::{FileOutputs, FilesystemInstall as FilesystemSpec};
use rota_api::{BackendError, CertId, DomainName, InstallBackend, IssuedCert, SecretString};

use super::certbot_lineage;
use super::pem_files::{self, Outputs};

/// The config `kind` of this installer.
const KIND: &str = "filesystem";

/// Writes `privkey.pem`, `chain.pem`, `fullchain.pem` and `cert.pem` into one directory.
pub(crate) struct FilesystemInstall {
    directory: PathBuf,
    outputs: Outputs,
    certbot_archive: Option<PathBuf>,
}

impl FilesystemInstall {
    /// An installer for `spec`.
    pub(crate) fn from_spec(spec: &FilesystemSpec) -> Self {
        let outputs = Outputs::new(&FileOutputs {
            directory: &spec.directory,
            formats: &spec.formats,
            pkcs12_password_file: spec.pkcs12_password_file.as_ref(),
        });
        Self::new(&spec.directory, outputs, spec.certbot_archive.as_deref())
    }

    /// An installer writing `outputs` into `directory` (created 0755 when missing), as the
    /// live directory of a certbot lineage whose archive is `certbot_archive` when one is given.
    pub(crate) fn new(directory: &Path, outputs: Outputs, certbot_archive: Option<&Path>) -> Self {
        Self {
            directory: directory.to_owned(),
            outputs,
            certbot_archive: certbot_archive.map(Path::to_owned),
        }
    }
}

#[async_trait]
impl InstallBackend for FilesystemInstall {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        _domains: &[DomainName],
    ) -> Result<(), BackendError> {
        if let Some(archive) = &self.certbot_archive {
            certbot_lineage::install(KIND, &self.directory, archive, cert, private_key_pem).await?;
            let extras = self
                .outputs
                .extra_files(KIND, &self.directory, cert, private_key_pem)?;
            return pem_files::write(KIND, extras).await;
        }
        let files = self
            .outputs
            .files(KIND, &self.directory, cert, private_key_pem)?;
        pem_files::write(KIND, files).await
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn issued(serial: &str) -> IssuedCert {
        IssuedCert {
            cert_pem: format!(
                "-----BEGIN CERTIFICATE-----\nleaf {serial}\n-----END CERTIFICATE-----\n"
            ),
            chain_pem: "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n".into(),
        }
    }

    fn id() -> CertId {
        CertId::new("web").unwrap()
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn lands_four_files_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("certs/web");
        let installer = FilesystemInstall::new(&target, Outputs::pem_only(), None);
        assert_eq!(installer.current_cert_pem(&id()).await.unwrap(), None);
        let key =
            SecretString::new("-----BEGIN PRIVATE KEY-----\nk\n-----END PRIVATE KEY-----\n".into());
        let cert = issued("1");
        installer.install(&cert, &key, &[]).await.unwrap();

        assert_eq!(mode_of(&target), 0o755);
        let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
        assert_eq!(read("privkey.pem"), key.expose());
        assert_eq!(read("cert.pem"), cert.cert_pem);
        assert_eq!(read("chain.pem"), cert.chain_pem);
        assert_eq!(
            read("fullchain.pem"),
            format!("{}{}", cert.cert_pem, cert.chain_pem)
        );
        assert_eq!(mode_of(&target.join("privkey.pem")), 0o600);
        for name in ["cert.pem", "chain.pem", "fullchain.pem"] {
            assert_eq!(mode_of(&target.join(name)), 0o644, "{name}");
        }
        assert_eq!(
            installer.current_cert_pem(&id()).await.unwrap(),
            Some(cert.cert_pem)
        );
    }

    #[tokio::test]
    async fn symlinks_planted_in_the_install_directory_are_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let (target, outside) = (dir.path().join("certs"), dir.path().join("outside"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The directory's owner links each file rota writes to a file of root's.
        for name in ["privkey.pem", "chain.pem", "fullchain.pem", "cert.pem"] {
            std::fs::write(outside.join(name), b"root's file").unwrap();
            std::fs::set_permissions(outside.join(name), PermissionsExt::from_mode(0o644)).unwrap();
            std::os::unix::fs::symlink(outside.join(name), target.join(name)).unwrap();
        }
        let key = SecretString::new("private key\n".into());
        FilesystemInstall::new(&target, Outputs::pem_only(), None)
            .install(&issued("1"), &key, &[])
            .await
            .unwrap();
        for name in ["privkey.pem", "chain.pem", "fullchain.pem", "cert.pem"] {
            let planted = outside.join(name);
            assert_eq!(
                std::fs::read(&planted).unwrap(),
                b"root's file",
                "{name}: not written through"
            );
            assert_eq!(mode_of(&planted), 0o644, "{name}: not chmodded");
            let link = std::fs::symlink_metadata(target.join(name)).unwrap();
            assert!(
                link.is_file(),
                "{name}: the link was replaced by rota's file"
            );
        }
        assert_eq!(mode_of(&target.join("privkey.pem")), 0o600);
    }

    #[tokio::test]
    async fn reinstall_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let installer = FilesystemInstall::new(dir.path(), Outputs::pem_only(), None);
        let key = SecretString::new("key\n".into());
        installer.install(&issued("1"), &key, &[]).await.unwrap();
        installer.install(&issued("2"), &key, &[]).await.unwrap();
        let current = installer.current_cert_pem(&id()).await.unwrap().unwrap();
        assert!(current.contains("leaf 2"), "{current}");
        let full = std::fs::read_to_string(dir.path().join("fullchain.pem")).unwrap();
        assert!(
            full.contains("leaf 2") && !full.contains("leaf 1"),
            "{full}"
        );
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        );
    }

    #[tokio::test]
    async fn an_unwritable_target_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let installer = FilesystemInstall::new(&blocker.join("web"), Outputs::pem_only(), None);
        let err = installer
            .install(&issued("1"), &SecretString::new("k".into()), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BackendError::Io {
                    action: "creating",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }
}
