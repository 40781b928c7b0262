//! `install: { kind: dsm, description }` with the top-level `dsm:` block: puts the cert into a
//! Synology NAS's certificate store through DSM's Web API ([`webapi`] says which calls and
//! where they are documented). Each install logs in, lists the certificates, and imports key,
//! leaf and chain over the one whose description matches, passing its `id` so DSM replaces
//! it in place: the services bound to it stay bound, and the default certificate stays the
//! default. With no match it adds one; with several it refuses rather than guess which one the
//! services use. The session is always logged out, failed install or not.
//!
//! Reading back: `current_cert_pem` exports the matching certificate (DSM's Control Panel
//! "Export certificate") and returns its `cert.pem`, so the reconciler checks expiry, names
//! and key against what DSM really holds. The export archive also carries the private key,
//! which rota discards unread; it travels the same authenticated channel the import used.
//! No certificate with the description means nothing is installed.
//!
//! The password (and a 2-factor account's device token) are read from their `*_file` at each
//! call, so rotating them needs no restart, and are never logged.

mod archive;
mod refusal;
mod webapi;

use async_trait::async_trait;
use rota_api::config::DsmConnection;
use rota_api::{BackendError, CertId, DomainName, InstallBackend, IssuedCert, SecretString};

use webapi::{Import, ListedCert, Login, REQUEST_TIMEOUT, Session};

/// The config `kind` of this installer.
const KIND: &str = "dsm";

/// The device name a 2-factor device token is presented with when `dsm.device_name` is unset.
const DEFAULT_DEVICE_NAME: &str = "rota";

/// Installs into the DSM certificate store, replacing the certificate with one description.
pub(crate) struct DsmInstall {
    connection: DsmConnection,
    /// `dsm.url` without a trailing `/`.
    base: String,
    description: String,
    http: reqwest::Client,
}

impl DsmInstall {
    /// An installer for the certificate labelled `description` on the NAS `connection` names.
    pub(crate) fn new(connection: &DsmConnection, description: &str) -> Result<Self, BackendError> {
        let tls = crate::tls_client::client_config_with_bundle(
            KIND,
            "dsm.ca_bundle_file",
            connection.ca_bundle_file.as_deref(),
        )?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| {
                BackendError::invalid(KIND, format!("cannot build the DSM client: {e}"))
            })?;
        Ok(Self {
            base: connection.url.trim_end_matches('/').to_owned(),
            connection: connection.clone(),
            description: description.to_owned(),
            http,
        })
    }

    /// Logs in with the secrets as they are now.
    async fn login(&self) -> Result<Session<'_>, BackendError> {
        let password = resolve(&self.connection.password_file, "dsm.password_file")?;
        let token = match &self.connection.device_token_file {
            Some(file) => Some(resolve(file, "dsm.device_token_file")?),
            None => None,
        };
        let device_name = self
            .connection
            .device_name
            .as_deref()
            .unwrap_or(DEFAULT_DEVICE_NAME);
        let login = Login {
            username: &self.connection.username,
            password: &password,
            device: token.as_ref().map(|t| (t, device_name)),
        };
        Session::login(&self.http, &self.base, &login).await
    }

    /// Ends `session` after its work, whatever the work's outcome: a failed logout only
    /// leaves a session for DSM to time out, so it is logged, not returned.
    async fn logout<T>(
        session: Session<'_>,
        outcome: Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        if let Err(e) = session.logout().await {
            tracing::warn!(error = %e, "DSM logout failed; the session ends when DSM times it out");
        }
        outcome
    }

    /// Lists, picks the certificate to replace and imports over it.
    async fn replace(
        &self,
        session: &Session<'_>,
        cert: &IssuedCert,
        key_pem: &SecretString,
    ) -> Result<(), BackendError> {
        let certs = session.list().await?;
        let replace = self.find(&certs)?;
        session
            .import(&Import {
                key_pem,
                cert_pem: &cert.cert_pem,
                chain_pem: &cert.chain_pem,
                replace,
                description: &self.description,
            })
            .await?;
        tracing::info!(
            description = %self.description,
            replaced = replace.map(|c| c.id.as_str()),
            "certificate imported into DSM"
        );
        Ok(())
    }

    /// The leaf of the certificate with this description, `None` when there is none.
    async fn read_back(&self, session: &Session<'_>) -> Result<Option<String>, BackendError> {
        let certs = session.list().await?;
        match self.find(&certs)? {
            Some(listed) => session.export_leaf(&listed.id).await.map(Some),
            None => Ok(None),
        }
    }

    /// The one certificate labelled with this install's description, if any.
    fn find<'c>(&self, certs: &'c [ListedCert]) -> Result<Option<&'c ListedCert>, BackendError> {
        let matching: Vec<&ListedCert> = certs
            .iter()
            .filter(|c| c.desc == self.description)
            .collect();
        match matching.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            several => Err(BackendError::Refused {
                backend: KIND,
                detail: format!(
                    "{} certificates in DSM are labelled `{}` (ids {}); rota replaces exactly one: \
                     delete the extra ones in Control Panel > Security > Certificate, or give this \
                     cert's `install.description` a label of its own",
                    several.len(),
                    self.description,
                    several
                        .iter()
                        .map(|c| c.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }
}

/// Reads a secret named at `field`; the error names the field and the source, never the value.
fn resolve(source: &rota_api::SecretSource, field: &str) -> Result<SecretString, BackendError> {
    source
        .resolve()
        .map_err(|e| BackendError::invalid(KIND, format!("cannot read `{field}`: {e}")))
}

#[async_trait]
impl InstallBackend for DsmInstall {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        _domains: &[DomainName],
    ) -> Result<(), BackendError> {
        let session = self.login().await?;
        let outcome = self.replace(&session, cert, private_key_pem).await;
        Self::logout(session, outcome).await
    }

    async fn current_cert_pem(&self, _cert_id: &CertId) -> Result<Option<String>, BackendError> {
        let session = self.login().await?;
        let outcome = self.read_back(&session).await;
        Self::logout(session, outcome).await
    }
}
