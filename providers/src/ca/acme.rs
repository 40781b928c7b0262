//! `ca: { kind: acme }`: any RFC 8555 directory (Let's Encrypt, ZeroSSL with EAB, BuyPass,
//! step-ca, pebble) through instant-acme. `submit` places the order and returns the
//! challenges the DCV solver can answer, with a handle holding the order URL, the challenges
//! chosen and the CSR; `await_issuance` reopens the order from that handle (one POST-as-GET,
//! RFC 8555 §7.4), has the challenges validated and finalizes with rota's own CSR, so the
//! per-cert key never changes and no order lives only in this process's memory; renewal windows come from ARI
//! (RFC 9773) when the directory offers it. One [`AcmeCa`] serves one cert; the account it
//! orders with is a [`SharedAccount`] shared by every cert of the same `acme:` block.
//!
//! Robustness lives in the submodules: [`transport`] bounds every request and keeps the
//! CA's `Retry-After`, [`problem`] retries `badNonce` and maps errors, [`issue`] polls.

mod account;
mod ari;
mod issue;
mod order;
mod pem;
mod problem;
mod transport;

use std::sync::Arc;

use async_trait::async_trait;
use rota_api::{
    BackendError, CaBackend, ChallengeKind, DomainName, IssuedCert, OrderHandle, PlacedOrder,
    RenewalWindow, RevocationReason,
};
use time::OffsetDateTime;

pub(crate) use account::SharedAccount;
use order::{ChosenChallenge, PendingOrder};
use problem::{backend_error, retry_bad_nonce};
use transport::observed;

/// The config `kind` of this CA.
const KIND: &str = "acme";

/// One cert's view of an ACME CA: the shared account and the profile to order.
pub(crate) struct AcmeCa {
    account: Arc<SharedAccount>,
    profile: Option<String>,
}

impl AcmeCa {
    /// Orders through `account`, asking for `profile` (the cert's, else the account's).
    pub(crate) fn new(account: Arc<SharedAccount>, profile: Option<String>) -> Self {
        Self { account, profile }
    }
}

#[async_trait]
impl CaBackend for AcmeCa {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn submit(
        &self,
        domains: &[DomainName],
        csr_pem: &str,
        preferred_kinds: &[ChallengeKind],
        replacing: Option<&str>,
    ) -> Result<PlacedOrder, BackendError> {
        // Checked now, so a CSR the CA could never finalize fails the order, not the issuance.
        pem::csr_der(csr_pem)?;
        let account = self.account.get().await?;
        if let Some(profile) = &self.profile {
            let offered: Vec<&str> = account.profiles().map(|p| p.name).collect();
            order::check_profile(profile, &offered)?;
        }
        // A leaf rota cannot identify (no AKI, not PEM) is simply not announced as replaced.
        let replaces = replacing.and_then(|pem| pem::cert_identifier(pem).ok());
        observed(async {
            let mut placed =
                order::place(account, domains, self.profile.as_deref(), replaces).await?;
            let (challenges, chosen) = order::challenges(&mut placed, preferred_kinds).await?;
            tracing::debug!(
                order = placed.url(),
                challenges = challenges.len(),
                "ACME order placed"
            );
            let details = serde_json::to_value(&chosen)
                .map_err(|e| BackendError::invalid(KIND, format!("cannot keep the order: {e}")))?;
            Ok(PlacedOrder {
                challenges,
                handle: OrderHandle {
                    locator: Some(placed.url().to_owned()),
                    csr_pem: csr_pem.to_owned(),
                    details,
                },
            })
        })
        .await
    }

    async fn await_issuance(&self, handle: &OrderHandle) -> Result<IssuedCert, BackendError> {
        let url = handle.locator.clone().ok_or_else(|| {
            BackendError::invalid(
                KIND,
                "the order handle has no order URL (not an ACME order)",
            )
        })?;
        let chosen: Vec<ChosenChallenge> =
            serde_json::from_value(handle.details.clone()).map_err(|e| {
                BackendError::invalid(KIND, format!("the order handle's challenges: {e}"))
            })?;
        let csr_der = pem::csr_der(&handle.csr_pem)?;
        let account = self.account.get().await?;
        observed(async {
            let mut order = retry_bad_nonce!(account.order(url.clone()))
                .map_err(|e| backend_error("reopening the order", e))?;
            order::fetch_authorizations(&mut order).await?;
            issue::issue(PendingOrder {
                order,
                chosen,
                csr_der,
            })
            .await
        })
        .await
    }

    fn offers_renewal_info(&self) -> bool {
        // Whether the directory has `renewalInfo` is only known once it is fetched;
        // `renewal_window` answers `None` for a directory without it.
        true
    }

    async fn renewal_window(&self, cert_pem: &str) -> Result<Option<RenewalWindow>, BackendError> {
        let Ok(id) = pem::cert_identifier(cert_pem) else {
            tracing::debug!("the installed cert has no authority key identifier: no ARI for it");
            return Ok(None);
        };
        let loaded = self.account.loaded().await?;
        let Some(base) = &loaded.renewal_info else {
            return Ok(None);
        };
        let (info, retry_after) = observed(ari::fetch(&loaded.http, base, &id))
            .await
            .map_err(|e| backend_error("fetching the renewal window", e))?;
        ari::renewal_window(info, retry_after, OffsetDateTime::now_utc()).map(Some)
    }

    async fn revoke(&self, cert_pem: &str, reason: RevocationReason) -> Result<(), BackendError> {
        let certificate = pem::leaf_der(cert_pem)?;
        let account = self.account.get().await?;
        let request = instant_acme::RevocationRequest {
            certificate: &certificate,
            reason: Some(revocation_reason(reason)),
        };
        observed(async { retry_bad_nonce!(account.revoke(&request)) })
            .await
            .map_err(|e| backend_error("revoking the certificate", e))
    }
}

fn revocation_reason(reason: RevocationReason) -> instant_acme::RevocationReason {
    use instant_acme::RevocationReason as Acme;
    match reason {
        RevocationReason::Unspecified => Acme::Unspecified,
        RevocationReason::KeyCompromise => Acme::KeyCompromise,
        RevocationReason::AffiliationChanged => Acme::AffiliationChanged,
        RevocationReason::Superseded => Acme::Superseded,
        RevocationReason::CessationOfOperation => Acme::CessationOfOperation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_reasons_keep_their_rfc_5280_codes() {
        for (reason, code) in [
            (RevocationReason::Unspecified, 0),
            (RevocationReason::KeyCompromise, 1),
            (RevocationReason::AffiliationChanged, 3),
            (RevocationReason::Superseded, 4),
            (RevocationReason::CessationOfOperation, 5),
        ] {
            let json = serde_json::to_string(&revocation_reason(reason)).unwrap();
            assert_eq!(json, code.to_string(), "{}", reason.as_str());
        }
    }
}
