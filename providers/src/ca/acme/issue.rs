//! Completing an order (`await_issuance`): mark the chosen challenges ready, poll until the CA
//! has validated them, finalize with rota's CSR, poll until the cert is signed, download the
//! chain. Polls honour the CA's `Retry-After` and otherwise start short and grow, because
//! client-side waiting is where most of an ACME issuance's time goes; the whole is bounded
//! by [`ISSUANCE_TIMEOUT`]. A failed validation reports the CA's problem per identifier.

use std::time::Duration;

use instant_acme::{AuthorizationStatus, Order, OrderStatus};
use rota_api::{BackendError, IssuedCert};
use tokio::time::Instant;

use super::KIND;
use super::order::{ChosenChallenge, PendingOrder, acme_type};
use super::pem::split_chain;
use super::problem::{backend_error, describe, retry_bad_nonce};
use super::transport::last_response;

/// The longest `await_issuance` waits for the CA, validation and signing together.
pub(crate) const ISSUANCE_TIMEOUT: Duration = Duration::from_secs(300);
/// The first poll interval when the CA sends no `Retry-After`.
const FIRST_POLL: Duration = Duration::from_millis(250);
/// Polls slow down to this, to stay polite to a CA that takes its time.
const MAX_POLL: Duration = Duration::from_secs(5);
/// A `Retry-After: 0` is not an invitation to spin.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Validates, finalizes and downloads `pending`; the leaf and chain as the CA sent them.
pub(crate) async fn issue(pending: PendingOrder) -> Result<IssuedCert, BackendError> {
    let PendingOrder {
        mut order,
        chosen,
        csr_der,
        ..
    } = pending;
    let deadline = Instant::now() + ISSUANCE_TIMEOUT;
    mark_ready(&mut order, &chosen).await?;
    let validated = poll_until(
        &mut order,
        deadline,
        "the CA to validate the challenges",
        |s| !matches!(s, OrderStatus::Pending),
    )
    .await?;
    if validated == OrderStatus::Invalid {
        return Err(validation_failure(&mut order).await);
    }
    if validated == OrderStatus::Ready {
        retry_bad_nonce!(order.finalize_csr(&csr_der))
            .map_err(|e| backend_error("finalizing the order with rota's CSR", e))?;
    }
    let signed = poll_until(
        &mut order,
        deadline,
        "the CA to sign the certificate",
        |s| matches!(s, OrderStatus::Valid | OrderStatus::Invalid),
    )
    .await?;
    if signed == OrderStatus::Invalid {
        let why = order
            .state()
            .error
            .as_ref()
            .map_or_else(|| "the CA gave no reason".to_owned(), describe);
        return Err(BackendError::Refused {
            backend: KIND,
            detail: format!("the CA did not sign the certificate: {why}"),
        });
    }
    let chain = retry_bad_nonce!(order.certificate())
        .map_err(|e| backend_error("downloading the certificate", e))?
        .ok_or_else(|| BackendError::Refused {
            backend: KIND,
            detail: "the order is valid but the CA served no certificate".into(),
        })?;
    split_chain(&chain)
}

/// Tells the CA the responses to `chosen` are published.
async fn mark_ready(order: &mut Order, chosen: &[ChosenChallenge]) -> Result<(), BackendError> {
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz.map_err(|e| backend_error("fetching an authorization", e))?;
        let Some(choice) = chosen.iter().find(|c| c.authz_url == authz.url()) else {
            continue;
        };
        let identifier = &choice.identifier;
        let mut challenge =
            authz
                .challenge(acme_type(choice.kind))
                .ok_or_else(|| BackendError::Refused {
                    backend: KIND,
                    detail: format!("the CA withdrew the challenge for {identifier}"),
                })?;
        retry_bad_nonce!(challenge.set_ready())
            .map_err(|e| backend_error(&format!("asking the CA to validate {identifier}"), e))?;
    }
    Ok(())
}

/// Polls `order` until `done` accepts its status, waiting as the CA asks (`Retry-After`) or
/// 250 ms growing by half each time up to [`MAX_POLL`]; `Timeout` once `deadline` would pass.
async fn poll_until(
    order: &mut Order,
    deadline: Instant,
    awaited: &str,
    done: impl Fn(OrderStatus) -> bool,
) -> Result<OrderStatus, BackendError> {
    let mut interval = FIRST_POLL;
    let mut status = order.state().status;
    loop {
        if done(status) {
            return Ok(status);
        }
        let wait = last_response()
            .retry_after
            .map_or(interval, |asked| asked.max(MIN_POLL));
        if Instant::now()
            .checked_add(wait)
            .is_none_or(|then| then > deadline)
        {
            return Err(BackendError::Timeout {
                backend: KIND,
                what: format!(
                    "{awaited} (the order is still {}; the CA may be overloaded, rota tries \
                     again with backoff)",
                    format!("{status:?}").to_lowercase()
                ),
                after: ISSUANCE_TIMEOUT,
            });
        }
        tokio::time::sleep(wait).await;
        interval = interval.mul_f32(1.5).min(MAX_POLL);
        status = retry_bad_nonce!(async { order.refresh().await.map(|state| state.status) })
            .map_err(|e| backend_error("polling the order", e))?;
    }
}

/// Why the CA could not validate `order`: each failed authorization's problem document,
/// named by its identifier, or the order's own error when the CA gives no more.
async fn validation_failure(order: &mut Order) -> BackendError {
    let mut problems = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let Ok(mut authz) = authz else { continue };
        // The cached state predates validation; a failed refresh leaves the rest to report.
        if retry_bad_nonce!(async { authz.refresh().await.map(|_| ()) }).is_err() {
            continue;
        }
        let identifier = authz.identifier().to_string();
        let before = problems.len();
        for challenge in &authz.challenges {
            if let Some(error) = &challenge.error {
                problems.push(format!("{identifier}: {}", describe(error)));
            }
        }
        if problems.len() == before && authz.status == AuthorizationStatus::Invalid {
            problems.push(format!("{identifier}: invalid, the CA gave no reason"));
        }
    }
    if problems.is_empty() {
        problems.push(
            order
                .state()
                .error
                .as_ref()
                .map_or_else(|| "the CA gave no reason".to_owned(), describe),
        );
    }
    BackendError::Refused {
        backend: KIND,
        detail: format!(
            "the CA could not validate the order: {}",
            problems.join("; ")
        ),
    }
}
