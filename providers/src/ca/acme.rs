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
mod issue;
mod order;
mod pem;
mod problem;
mod transport;

use super::order_key;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use instant_acme::RenewalInfo;
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

/// RFC 9773 §4.3.2: treat a `Retry-After` under a minute as a minute, over a day as a day.
const ARI_RECHECK_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(86_400));

/// One cert's view of an ACME CA: the shared account, the profile to order, and the orders
/// in flight between `submit` and `await_issuance`.
pub(crate) struct AcmeCa {
    account: Arc<SharedAccount>,
    profile: Option<String>,
    /// By sorted domain set, as `await_issuance` names the order.
    pending: Mutex<HashMap<Vec<DomainName>, PendingOrder>>,
}

impl AcmeCa {
    /// Orders through `account`, asking for `profile` (the cert's, else the account's).
    pub(crate) fn new(account: Arc<SharedAccount>, profile: Option<String>) -> Self {
        Self {
            account,
            profile,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, domains: &[DomainName], order: PendingOrder) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|_, o| o.placed.elapsed() < ABANDONED_AFTER);
        pending.insert(order_key(domains), order);
    }

    fn take(&self, domains: &[DomainName]) -> Option<PendingOrder> {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.remove(&order_key(domains))
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
            self.remember(
                domains,
                PendingOrder {
                    order: placed,
                    chosen,
                    csr_der,
                    placed: Instant::now(),
                },
            );
            Ok(challenges)
        })
        .await
    }

    async fn await_issuance(&self, domains: &[DomainName]) -> Result<IssuedCert, BackendError> {
        let pending = self.take(domains).ok_or_else(|| BackendError::Invalid {
            backend: KIND,
            detail: "no order was submitted for these domains (submit comes before issuance)"
                .into(),
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
        let account = self.account.get().await?;
        let fetched = observed(account.renewal_info(&id)).await;
        match fetched {
            Ok((info, retry_after)) => {
                renewal_window(info, retry_after, OffsetDateTime::now_utc()).map(Some)
            }
            Err(instant_acme::Error::Unsupported(_)) => Ok(None),
            Err(e) => Err(backend_error("fetching the renewal window", e)),
        }
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

/// The CA's window, re-checked after its `Retry-After` within RFC 9773's sane bounds.
fn renewal_window(
    info: RenewalInfo,
    retry_after: Duration,
    now: OffsetDateTime,
) -> Result<RenewalWindow, BackendError> {
    let window = info.suggested_window;
    // RFC 9773 §4.2: a window that ends before it starts is invalid.
    if window.end <= window.start {
        return Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "the CA's renewal window ends ({}) before it starts ({})",
                window.end, window.start
            ),
        });
    }
    let (min, max) = ARI_RECHECK_BOUNDS;
    Ok(RenewalWindow {
        start: window.start,
        end: window.end,
        explanation_url: info.explanation_url,
        next_check_at: now + retry_after.clamp(min, max),
    })
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
    use time::macros::datetime;

    use super::*;

    fn info(json: &str) -> RenewalInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn renewal_windows_follow_rfc_9773() {
        let now = datetime!(2025-01-01 00:00 UTC);
        // RFC 9773 §4.2's example.
        let example = info(
            r#"{"suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z"},
                "explanationURL": "https://acme.example.com/docs/ari"}"#,
        );
        let window = renewal_window(example.clone(), Duration::from_secs(21_600), now).unwrap();
        assert_eq!(window.start, datetime!(2025-01-02 04:00 UTC));
        assert_eq!(window.end, datetime!(2025-01-03 04:00 UTC));
        assert_eq!(
            window.explanation_url.as_deref(),
            Some("https://acme.example.com/docs/ari")
        );
        assert_eq!(window.next_check_at, datetime!(2025-01-01 06:00 UTC));
        for (retry_after, next, why) in [
            (
                0,
                datetime!(2025-01-01 00:01 UTC),
                "under a minute counts as a minute",
            ),
            (
                7 * 86_400,
                datetime!(2025-01-02 00:00 UTC),
                "over a day counts as a day",
            ),
        ] {
            let window = renewal_window(example.clone(), Duration::from_secs(retry_after), now);
            assert_eq!(window.unwrap().next_check_at, next, "{why}");
        }
        let backwards = info(
            r#"{"suggestedWindow": {"start": "2025-01-03T04:00:00Z", "end": "2025-01-02T04:00:00Z"}}"#,
        );
        let err = renewal_window(backwards, Duration::from_secs(60), now).unwrap_err();
        assert_eq!(err.reason(), "Refused");
    }

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

    #[test]
    fn orders_are_found_by_their_set_of_domains() {
        let d = |s: &str| DomainName::new(s).unwrap();
        assert_eq!(
            order_key(&[d("b.test"), d("a.test"), d("b.test")]),
            order_key(&[d("a.test"), d("b.test")])
        );
    }
}
