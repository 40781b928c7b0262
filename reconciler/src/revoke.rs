//! Revocation on an operator's request: the installed cert is revoked at its CA as an audited
//! operation, a key reported compromised is moved aside so the replacement gets a fresh one,
//! and a replacement is queued at once (a revoked cert is useless to the service using it).
//! It runs as a tracked task: a client that goes away does not stop it half-way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rota_api::status::{Reason, Step};
use rota_api::wire::RevokeResponse;
use rota_api::{CertId, RevocationReason};

use crate::desired::CertRuntime;
use crate::observe::inspect_pem;
use crate::queue::Occupied;
use crate::reconciler::Reconciler;
use crate::renew::{Audit, RenewError};

/// Why a revocation could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevokeError {
    /// No cert has that id.
    #[error("no cert `{0}` in the running config")]
    NotFound(CertId),
    /// A renewal or another revocation of it is running.
    #[error("a renewal or revocation of `{0}` is running; revoke once it is done")]
    Busy(CertId),
    /// Nothing is installed to revoke.
    #[error("`{0}` has no installed certificate to revoke")]
    NothingInstalled(CertId),
    /// The CA (or the audit store) refused or failed.
    #[error("{0}")]
    Failed(String),
}

impl Reconciler {
    /// Revokes the installed cert of `id` for `reason`, then queues its replacement.
    pub async fn revoke(
        &self,
        id: &CertId,
        reason: RevocationReason,
    ) -> Result<RevokeResponse, RevokeError> {
        let cert = self
            .desired()
            .cert(id)
            .cloned()
            .ok_or_else(|| RevokeError::NotFound(id.clone()))?;
        let mark = match self.shared.queue.mark_revocation(id) {
            Ok(mark) => mark,
            Err(Occupied::Renewal(_) | Occupied::Revocation | Occupied::Following) => {
                return Err(RevokeError::Busy(id.clone()));
            }
        };
        let (done, outcome) = tokio::sync::oneshot::channel();
        let this = self.clone();
        self.shared.tasks.spawn(async move {
            let revoked = this.revoke_installed(&cert, reason).await;
            drop(mark);
            let revoked = revoked.map(|mut response| {
                response.replacement_queued = this.enqueue(&cert, Reason::Revoked).is_ok();
                response
            });
            // The client may be gone; the revocation is done and recorded either way.
            let _ = done.send(revoked);
        });
        outcome
            .await
            .map_err(|_| RevokeError::Failed("the revocation task ended early".to_owned()))?
    }

    async fn revoke_installed(
        &self,
        cert: &Arc<CertRuntime>,
        reason: RevocationReason,
    ) -> Result<RevokeResponse, RevokeError> {
        let id = &cert.spec.id;
        let pem = cert
            .install
            .current_cert_pem(id)
            .await
            .map_err(|e| RevokeError::Failed(e.to_string()))?
            .ok_or_else(|| RevokeError::NothingInstalled(id.clone()))?;
        let serial = inspect_pem(&pem).map_err(RevokeError::Failed)?.serial;
        let record = self
            .shared
            .store
            .open_renewal(id, Reason::Revoked, self.shared.clock.now())
            .await
            .map_err(|e| RevokeError::Failed(e.to_string()))?;
        let audit = Audit {
            store: Arc::clone(&self.shared.store),
            clock: Arc::clone(&self.shared.clock),
            renewal_id: record.id,
            progress: None,
        };
        let what = format!(
            "revoking serial {serial} at the {} CA ({})",
            cert.ca.kind(),
            reason.as_str()
        );
        let result = audit
            .step(Step::Revoke, &what, async {
                cert.ca
                    .revoke(&pem, reason)
                    .await
                    .map_err(|e| RenewError::backend(Step::Revoke, &e))?;
                let unrecorded = self.remember_revoked(id, &serial, reason).await;
                let retired = if reason == RevocationReason::KeyCompromise {
                    let now = self.shared.clock.now().unix_timestamp();
                    Some(retire_key(&cert.spec.key_path, now).await?)
                } else {
                    None
                };
                let note = retired.as_ref().map_or_else(String::new, |p| {
                    format!(
                        "; the key was moved to {} and the replacement gets a new one",
                        p.display()
                    )
                });
                let unrecorded = unrecorded.unwrap_or_default();
                Ok((
                    retired,
                    format!("revoked serial {serial}{note}{unrecorded}"),
                ))
            })
            .await;
        audit.close(&result).await;
        let retired = result.map_err(|e| RevokeError::Failed(e.to_string()))?;
        tracing::warn!(cert_id = %id, %serial, reason = reason.as_str(), "certificate revoked");
        Ok(RevokeResponse {
            audit_id: record.id,
            serial,
            retired_key: retired.map(|p| p.display().to_string()),
            replacement_queued: false,
        })
    }
}

impl Reconciler {
    /// Marks `serial` revoked, in memory for the planner and in the store for after a
    /// restart, so the cert is replaced until a new one is installed. The CA has revoked it
    /// already, so a store failure does not fail the revocation: it is returned as a warning.
    async fn remember_revoked(
        &self,
        id: &CertId,
        serial: &str,
        reason: RevocationReason,
    ) -> Option<String> {
        self.shared.states.update(id, |state| {
            state.revoked.insert(serial.to_owned());
        });
        let now = self.shared.clock.now();
        let recorded = self
            .shared
            .store
            .record_revocation(id, serial, reason, now)
            .await;
        recorded.err().map(|e| {
            tracing::error!(cert_id = %id, %serial, error = %e, "cannot record a revocation");
            format!(
                "; recording the revocation failed ({e}), so a restart before the \
                 replacement is installed would forget it"
            )
        })
    }
}

/// Moves a compromised key aside (never deletes it: the operator may need it for forensics).
async fn retire_key(key_path: &Path, now: i64) -> Result<PathBuf, RenewError> {
    let mut retired = key_path.as_os_str().to_owned();
    retired.push(format!(".compromised-{now}"));
    let retired = PathBuf::from(retired);
    let (from, to) = (key_path.to_owned(), retired.clone());
    tokio::task::spawn_blocking(move || std::fs::rename(from, to))
        .await
        .map_err(|e| {
            RenewError::new(
                Step::Revoke,
                Reason::Panicked,
                format!("moving the key panicked: {e}"),
            )
        })?
        .map_err(|e| {
            RenewError::new(
                Step::Revoke,
                Reason::KeyUnreadable,
                format!("the cert is revoked, but moving the compromised key {} aside failed: {e}; move it yourself before the next renewal", key_path.display()),
            )
        })?;
    Ok(retired)
}
