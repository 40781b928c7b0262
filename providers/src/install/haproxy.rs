//! `install: { kind: haproxy, directory, socket_path, cert_storage_name, verify_address }`:
//! certbot's files in `directory`, the combined PEM HAProxy loads (leaf, chain, then key) at
//! `cert_storage_name`, then a hot swap through the runtime API: `set ssl cert` stages the new
//! PEM and `commit ssl cert` serves it from the next handshake. No reload, no restart:
//! connections already open keep their session. The file at `cert_storage_name` is what a
//! later restart of HAProxy loads, so it is written before the swap.
//!
//! Like `nginx`, the install is all or nothing: when HAProxy refuses the new PEM (the staged
//! transaction is then aborted) or, after a swap, does not serve it at `verify_address`, the
//! previous files are put back, and after a swap the previous PEM is swapped back in too.

mod runtime_api;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use rota_api::config::{FileOutputs, HaproxyInstall as HaproxySpec};
use rota_api::{
    BackendError, CertId, DomainName, HostPort, InstallBackend, IssuedCert, SecretString,
};

use super::pem_files::{self, PemFile, Replaced};
use super::verify;
use runtime_api::{AdminSocket, Verb};

/// The config `kind` of this installer.
const KIND: &str = "haproxy";
/// Bound on each exchange over the admin socket; HAProxy answers in milliseconds.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes the PEM files and hot-swaps the cert in a running HAProxy.
pub(crate) struct HaproxyInstall {
    directory: PathBuf,
    storage_name: String,
    socket: AdminSocket,
    verify_address: Option<HostPort>,
    verify_within: Duration,
    outputs: pem_files::Outputs,
}

impl HaproxyInstall {
    /// An installer for `spec`.
    pub(crate) fn new(spec: &HaproxySpec) -> Self {
        Self {
            directory: spec.directory.clone(),
            storage_name: spec.cert_storage_name.clone(),
            socket: AdminSocket::new(&spec.socket_path, EXCHANGE_TIMEOUT),
            verify_address: spec.verify_address.clone(),
            verify_within: verify::VERIFY_WITHIN,
            outputs: pem_files::Outputs::new(&FileOutputs {
                directory: &spec.directory,
                formats: &spec.formats,
                pkcs12_password_file: spec.pkcs12_password_file.as_ref(),
            }),
        }
    }

    /// Stages and commits `bundle`; on any refusal aborts the transaction, so HAProxy is left
    /// serving what it served and holds nothing staged.
    async fn hot_swap(&self, bundle: &str) -> Result<(), BackendError> {
        let name = &self.storage_name;
        let swapped = match self.socket.send(Verb::Set, name, bundle).await {
            Ok(()) => self.socket.send(Verb::Commit, name, "").await,
            Err(e) => Err(e),
        };
        let Err(error) = swapped else {
            return Ok(());
        };
        // The refusal is what the operator must act on; a failed abort only leaves a staged
        // PEM that the next `set` for this cert replaces.
        if let Err(abort) = self.socket.send(Verb::Abort, name, "").await {
            tracing::warn!(storage_name = %name, error = %abort, "cannot abort HAProxy's certificate transaction");
        }
        Err(error)
    }

    /// Puts the previous files back, and the previous PEM into HAProxy if the new one was
    /// swapped in; anything that goes wrong is added to `error`, which stays the cause.
    async fn roll_back(
        &self,
        replaced: Replaced,
        error: BackendError,
        swapped: bool,
    ) -> BackendError {
        let storage = PathBuf::from(&self.storage_name);
        let previous_bundle = replaced
            .previous_contents(&storage)
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let mut undo = replaced.restore().await;
        if let (Ok(()), true, Some(bundle)) = (&undo, swapped, previous_bundle) {
            undo = self.hot_swap(&bundle).await;
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

#[async_trait]
impl InstallBackend for HaproxyInstall {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        domains: &[DomainName],
    ) -> Result<(), BackendError> {
        let bundle = pem_files::combined_pem(cert, private_key_pem);
        let mut files = vec![PemFile::secret(PathBuf::from(&self.storage_name), &bundle)];
        // certbot's files last, so `cert.pem`, which is read back, is the very last.
        files.extend(
            self.outputs
                .files(KIND, &self.directory, cert, private_key_pem)?,
        );
        let replaced = pem_files::replace(KIND, files).await?;
        if let Err(error) = self.hot_swap(&bundle).await {
            return Err(self.roll_back(replaced, error, false).await);
        }
        if let Some(address) = &self.verify_address {
            let served = verify::served_cert_matches(
                KIND,
                address,
                domains,
                &cert.cert_pem,
                self.verify_within,
            )
            .await;
            if let Err(error) = served {
                return Err(self.roll_back(replaced, error, true).await);
            }
        }
        Ok(())
    }

    fn current_cert_path(&self, _cert_id: &CertId) -> Option<PathBuf> {
        Some(pem_files::cert_path(&self.directory))
    }

    async fn current_cert_pem(&self, _cert_id: &CertId) -> Result<Option<String>, BackendError> {
        pem_files::read_cert(KIND, &self.directory).await
    }
}

#[cfg(test)]
mod tests;
