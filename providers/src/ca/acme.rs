//! `ca: { kind: acme }`: any RFC 8555 directory (Let's Encrypt, ZeroSSL with EAB, BuyPass,
//! step-ca, pebble) through instant-acme. `submit` places the order and returns the
//! challenges the DCV solver can answer; `await_issuance` has them validated and finalizes
//! with rota's own CSR, so the per-cert key never changes; renewal windows come from ARI
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

use super::pending::PendingOrders;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rota_api::{
    BackendError, CaBackend, ChallengeKind, DcvChallenge, DomainName, IssuedCert, RenewalWindow,
    RevocationReason,
};
use time::OffsetDateTime;

pub(crate) use account::SharedAccount;
use order::PendingOrder;
use problem::{backend_error, retry_bad_nonce};
use transport::observed;

/// The config `kind` of this CA.
const KIND: &str = "acme";

/// An order placed but never collected (its renewal failed before issuance) is dropped
/// after this long; the CA expires it on its side.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// One cert's view of an ACME CA: the shared account, the profile to order, and the orders
/// in flight between `submit` and `await_issuance`.
pub(crate) struct AcmeCa {
    account: Arc<SharedAccount>,
    profile: Option<String>,
    pending: PendingOrders<PendingOrder>,
}

impl AcmeCa {
    /// Orders through `account`, asking for `profile` (the cert's, else the account's).
    pub(crate) fn new(account: Arc<SharedAccount>, profile: Option<String>) -> Self {
        Self {
            account,
            profile,
            pending: PendingOrders::new(ABANDONED_AFTER),
        }
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
    ) -> Result<Vec<DcvChallenge>, BackendError> {
        let csr_der = pem::csr_der(csr_pem)?;
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
            self.pending.insert(
                domains,
                PendingOrder {
                    order: placed,
                    chosen,
                    csr_der,
                },
            );
            Ok(challenges)
        })
        .await
    }

    async fn await_issuance(&self, domains: &[DomainName]) -> Result<IssuedCert, BackendError> {
        let pending = self.pending.take(domains).ok_or_else(|| {
            BackendError::invalid(
                KIND,
                "no order was submitted for these domains (submit comes before issuance)",
            )
        })?;
        observed(issue::issue(pending)).await
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
