//! Revocation on request: the CA is asked, the audit trail says so, and the revoked cert is
//! replaced even when the first replacement fails and rotad restarts before the backoff ends.

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};
use rota_api::{ChallengeKind, RevocationReason};
use rota_reconciler::Clock;

use crate::support::fakes::refused;
use crate::support::{World, condition, id};

#[tokio::test]
async fn a_revoked_cert_is_replaced_after_a_failed_replacement_and_a_restart() {
    let world = World::new(&[ChallengeKind::Http01]);
    let config = world.config(4, &[("web", &["a.test"])]);
    let first = world.start(config.clone()).await;
    world.renewals_done(&first, "web", 1).await;
    let revoked = world.installed_without_backoff(&first, "web").await;

    world
        .fakes
        .ca
        .on_issue(|_, _| Box::pin(async { Err(refused("the CA is down for maintenance")) }));
    let response = first
        .revoke(&id("web"), RevocationReason::Superseded)
        .await
        .expect("revoked");
    assert_eq!(response.serial, revoked.serial);
    assert!(response.replacement_queued);
    let rows = world.renewals_done(&first, "web", 3).await;
    assert_eq!(
        [rows[0].trigger, rows[1].trigger],
        [Reason::Revoked, Reason::Revoked],
        "the revocation and its replacement are audited: {rows:?}"
    );
    assert_eq!(
        [rows[0].status, rows[1].status],
        [RenewalStatus::Failed, RenewalStatus::Succeeded]
    );
    let revocations = world.fakes.ca.revoked();
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].1, RevocationReason::Superseded);
    let backoff = first
        .state(&id("web"))
        .backoff
        .expect("the failure backs off");
    first.shutdown(std::time::Duration::from_secs(5)).await;

    let restarted = world.restart(&[ChallengeKind::Http01]);
    let second = restarted.start(config).await;
    restarted.sweep_skips(&second, "web").await;
    let ready = condition(&second, "web", ConditionType::Ready);
    assert_eq!(
        (ready.status, ready.reason),
        (ConditionStatus::False, Reason::Revoked),
        "after a restart the revoked cert still wants replacing: {}",
        ready.message
    );
    assert!(
        ready.message.contains("next attempt at"),
        "{}",
        ready.message
    );

    restarted
        .clock
        .advance(backoff.next_attempt_at - restarted.clock.now() + time::Duration::seconds(1));
    second.sweep().await;
    let rows = restarted.renewals_done(&second, "web", 4).await;
    assert_eq!(
        (rows[0].trigger, rows[0].status),
        (Reason::Revoked, RenewalStatus::Succeeded)
    );
    let replacement = restarted.installed_without_backoff(&second, "web").await;
    assert_ne!(replacement.serial, revoked.serial);
    // The replacement is not replaced.
    restarted.sweep_skips(&second, "web").await;
}
