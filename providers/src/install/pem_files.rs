//! The files every disk-based installer writes: certbot's four names in one directory
//! (`filesystem`, `nginx`, `haproxy`), plus any file of the installer's own (HAProxy's
//! combined PEM). Each file is replaced atomically and `cert.pem` goes last, because it is what
//! the reconciler reads back: a crash half-way is observed as the old cert and the install is
//! retried. Installers that switch a peer after writing keep what they replaced, and put it
//! back when the peer refuses the new files, so disk and peer agree on the old cert.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rota_api::config::{FileOutputs, OutputFormat};
use rota_api::names::SecretSource;
use rota_api::{BackendError, IssuedCert, SecretString};

use crate::atomic_write::{create_dir_all_with_mode, write_atomic};

/// The leaf, written last: what `current_cert_pem` reads back.
const CERT_FILE: &str = "cert.pem";
/// Leaf and chain, what most servers are pointed at.
const FULLCHAIN_FILE: &str = "fullchain.pem";
/// The private key.
const PRIVKEY_FILE: &str = "privkey.pem";
/// `formats: [combined]`.
const COMBINED_FILE: &str = "combined.pem";
/// `formats: [pkcs12]`.
const PKCS12_FILE: &str = "cert.p12";

/// Mode of directories an install creates: servers running as another user must enter them.
const DIRECTORY_MODE: u32 = 0o755;

/// One file an install writes. No `Debug`: the contents may be a private key.
pub(crate) struct PemFile {
    path: PathBuf,
    contents: Vec<u8>,
    mode: u32,
}

impl PemFile {
    /// A file holding the private key, readable by its owner only.
    pub(crate) fn secret(path: PathBuf, contents: &str) -> Self {
        Self {
            path,
            contents: contents.as_bytes().to_vec(),
            mode: 0o600,
        }
    }

    fn secret_bytes(path: PathBuf, contents: Vec<u8>) -> Self {
        Self {
            path,
            contents,
            mode: 0o600,
        }
    }

    fn public(path: PathBuf, contents: &str) -> Self {
        Self {
            path,
            contents: contents.as_bytes().to_vec(),
            mode: 0o644,
        }
    }
}

/// The shapes an install writes the cert in, besides certbot's four files.
pub(crate) struct Outputs {
    combined: bool,
    pkcs12_password: Option<SecretSource>,
}

impl Outputs {
    /// The shapes `outputs` asks for.
    pub(crate) fn new(outputs: &FileOutputs<'_>) -> Self {
        Self {
            combined: outputs.formats.contains(&OutputFormat::Combined),
            pkcs12_password: outputs
                .formats
                .contains(&OutputFormat::Pkcs12)
                .then(|| outputs.pkcs12_password_file.cloned())
                .flatten(),
        }
    }

    /// certbot's four files only.
    #[cfg(test)]
    pub(crate) fn pem_only() -> Self {
        Self {
            combined: false,
            pkcs12_password: None,
        }
    }

    /// Every file for `cert` in `directory`, in the order they are written: certbot's files
    /// with `cert.pem` last, the extra shapes before it.
    pub(crate) fn files(
        &self,
        backend: &'static str,
        directory: &Path,
        cert: &IssuedCert,
        key: &SecretString,
    ) -> Result<Vec<PemFile>, BackendError> {
        let mut files = vec![
            PemFile::secret(directory.join(PRIVKEY_FILE), key.expose()),
            PemFile::public(directory.join("chain.pem"), &cert.chain_pem),
            PemFile::public(directory.join(FULLCHAIN_FILE), &cert.fullchain_pem()),
        ];
        files.extend(self.extra_files(backend, directory, cert, key)?);
        // Last: see the module docs.
        files.push(PemFile::public(directory.join(CERT_FILE), &cert.cert_pem));
        Ok(files)
    }

    /// The extra shapes alone (`combined.pem`, `cert.p12`), for an install that writes
    /// certbot's four files its own way (a certbot lineage's archive).
    pub(crate) fn extra_files(
        &self,
        backend: &'static str,
        directory: &Path,
        cert: &IssuedCert,
        key: &SecretString,
    ) -> Result<Vec<PemFile>, BackendError> {
        let mut files = Vec::new();
        if self.combined {
            files.push(PemFile::secret(
                directory.join(COMBINED_FILE),
                &combined_pem(cert, key),
            ));
        }
        if let Some(source) = &self.pkcs12_password {
            let password = source.resolve().map_err(|e| BackendError::Refused {
                backend,
                detail: format!("cannot read `pkcs12_password_file`: {e}"),
            })?;
            let p12 = super::pkcs12::archive(cert, key, &password)
                .map_err(|detail| BackendError::invalid(backend, detail))?;
            files.push(PemFile::secret_bytes(directory.join(PKCS12_FILE), p12));
        }
        Ok(files)
    }
}

/// Leaf, chain, then the private key in one PEM: what HAProxy's `crt` and lighttpd's
/// `ssl.pemfile` load.
pub(crate) fn combined_pem(cert: &IssuedCert, key: &SecretString) -> String {
    let mut bundle = cert.fullchain_pem();
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(key.expose());
    bundle
}

/// What a file held before an install replaced it: its bytes and mode, or nothing.
struct Previous {
    path: PathBuf,
    content: Option<(Vec<u8>, u32)>,
}

/// The files an install replaced, as they were; [`Replaced::restore`] puts them back.
pub(crate) struct Replaced {
    backend: &'static str,
    previous: Vec<Previous>,
}

/// Writes `files` in order, creating missing directories 0755.
pub(crate) async fn write(backend: &'static str, files: Vec<PemFile>) -> Result<(), BackendError> {
    blocking(backend, "writing", move || write_all(backend, &files)).await
}

/// Like [`write`], but first reads what each file holds now (an unreadable one stops the
/// install before anything is written), so a refused install can be undone.
pub(crate) async fn replace(
    backend: &'static str,
    files: Vec<PemFile>,
) -> Result<Replaced, BackendError> {
    blocking(backend, "writing", move || {
        let previous = files
            .iter()
            .map(|file| read_previous(backend, &file.path))
            .collect::<Result<Vec<_>, _>>()?;
        write_all(backend, &files)?;
        Ok(Replaced { backend, previous })
    })
    .await
}

impl Replaced {
    /// The bytes `path` held before the install, if it is one of the replaced files and existed.
    pub(crate) fn previous_contents(&self, path: &Path) -> Option<&[u8]> {
        self.previous
            .iter()
            .find(|p| p.path == path)
            .and_then(|p| p.content.as_ref())
            .map(|(bytes, _)| bytes.as_slice())
    }

    /// Puts every file back as it was (removing those that did not exist), `cert.pem` first so
    /// that a crash half-way is read back as the new cert only if all of it is still there.
    pub(crate) async fn restore(self) -> Result<(), BackendError> {
        let backend = self.backend;
        blocking(backend, "restoring", move || {
            for previous in self.previous.iter().rev() {
                let path = &previous.path;
                let restored = match &previous.content {
                    Some((bytes, mode)) => write_atomic(path, bytes, *mode),
                    None => match std::fs::remove_file(path) {
                        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                        other => other,
                    },
                };
                restored.map_err(|e| BackendError::io(backend, "restoring", path, e))?;
            }
            Ok(())
        })
        .await
    }
}

/// The installed leaf in `directory`, or `None` before the first install.
pub(crate) async fn read_cert(
    backend: &'static str,
    directory: &Path,
) -> Result<Option<String>, BackendError> {
    let path = cert_path(directory);
    blocking(backend, "reading", move || {
        match std::fs::read_to_string(&path) {
            Ok(pem) => Ok(Some(pem)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(BackendError::io(backend, "reading", path, source)),
        }
    })
    .await
}

/// The file [`read_cert`] reads.
pub(crate) fn cert_path(directory: &Path) -> PathBuf {
    directory.join(CERT_FILE)
}

/// Where `fullchain.pem` lands in `directory`.
pub(crate) fn fullchain_path(directory: &Path) -> PathBuf {
    directory.join(FULLCHAIN_FILE)
}

/// Where `privkey.pem` lands in `directory`.
pub(crate) fn privkey_path(directory: &Path) -> PathBuf {
    directory.join(PRIVKEY_FILE)
}

fn write_all(backend: &'static str, files: &[PemFile]) -> Result<(), BackendError> {
    for file in files {
        if let Some(parent) = file.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir_all_with_mode(parent, DIRECTORY_MODE)
                .map_err(|e| BackendError::io(backend, "creating", parent, e))?;
        }
        write_atomic(&file.path, &file.contents, file.mode)
            .map_err(|e| BackendError::io(backend, "writing", &file.path, e))?;
    }
    Ok(())
}

fn read_previous(backend: &'static str, path: &Path) -> Result<Previous, BackendError> {
    let content = match std::fs::read(path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| BackendError::io(backend, "reading", path, e))?
                .permissions()
                .mode()
                & 0o7777;
            Some((bytes, mode))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(BackendError::io(backend, "reading", path, e)),
    };
    Ok(Previous {
        path: path.to_owned(),
        content,
    })
}

/// Runs file work off the runtime; a panic in it is reported as an I/O failure of `action`.
pub(crate) async fn blocking<T: Send + 'static>(
    backend: &'static str,
    action: &'static str,
    work: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        BackendError::io(
            backend,
            action,
            PathBuf::new(),
            io::Error::other(format!("the file task failed: {e}")),
        )
    })?
}

/// A stand-in issued cert whose files read `leaf SERIAL` and `root`, for installers' tests.
#[cfg(test)]
pub(crate) fn issued(serial: &str) -> IssuedCert {
    IssuedCert {
        cert_pem: format!("leaf {serial}\n"),
        chain_pem: "root\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn restore_puts_back_what_was_there_with_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretString::new("key\n".into());
        write(
            "test",
            Outputs::pem_only()
                .files("test", dir.path(), &issued("1"), &key)
                .unwrap(),
        )
        .await
        .unwrap();
        let chain = dir.path().join("chain.pem");
        std::fs::set_permissions(&chain, std::fs::Permissions::from_mode(0o640)).unwrap();

        let replaced = replace(
            "test",
            Outputs::pem_only()
                .files("test", dir.path(), &issued("2"), &key)
                .unwrap(),
        )
        .await
        .unwrap();
        let current = read_cert("test", dir.path()).await.unwrap().unwrap();
        assert_eq!(current, "leaf 2\n");
        assert_eq!(
            replaced.previous_contents(&cert_path(dir.path())),
            Some("leaf 1\n".as_bytes())
        );
        replaced.restore().await.unwrap();

        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("cert.pem"), "leaf 1\n");
        assert_eq!(read("fullchain.pem"), "leaf 1\nroot\n");
        let mode = std::fs::metadata(&chain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "the mode it had, not the one rota writes");
        assert_eq!(
            names(dir.path()),
            ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        );
    }

    #[tokio::test]
    async fn restoring_a_first_install_removes_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("web");
        let key = SecretString::new("key\n".into());
        let replaced = replace(
            "test",
            Outputs::pem_only()
                .files("test", &target, &issued("1"), &key)
                .unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(names(&target).len(), 4);
        replaced.restore().await.unwrap();
        assert_eq!(names(&target), Vec::<String>::new());
        assert_eq!(read_cert("test", &target).await.unwrap(), None);
    }
}
