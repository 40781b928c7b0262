//! Renewals that fail: whatever was published is removed, the failure is recorded, alerted
//! and backed off, and the sweep respects the backoff until the clock passes it.

use std::time::Duration;

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step, StepStatus};
use rota_api::{AlertKind, BackendError, ChallengeKind};
use rota_reconciler::Clock;
use rota_store::AuditStore;

use crate::support::fakes::{http01, refused};
use crate::support::{World, condition, eventually, id};

/// The `(step, status)` pairs of a renewal, in order.
async fn steps_of(world: &World, renewal_id: i64) -> Vec<(Step, StepStatus)> {
    let steps = world.store.steps(renewal_id).await.unwrap();
    steps.into_iter().map(|s| (s.step, s.status)).collect()
}

#[tokio::test]
async fn a_failed_issuance_removes_its_challenges_backs_off_and_alerts() {
    let world = World::new(&[ChallengeKind::Http01]);
    let challenges = vec![http01("a.test"), http01("www.a.test")];
    world.fakes.ca.ask_for(challenges.clone());
    world
        .fakes
        .ca
        .on_issue(|_, _| Box::pin(async { Err(refused("CAA forbids issuance")) }));
    let failed_at = world.clock.now();
    let reconciler = world
        .start(world.config(4, &[("web", &["a.test", "www.a.test"])]))
        .await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;

    assert_eq!(world.fakes.dcv.published(), challenges);
    assert_eq!(
        world.fakes.dcv.removed(),
        challenges,
        "removal does not depend on the outcome"
    );
    assert!(world.store.pending_dcv().await.unwrap().is_empty());
    assert_eq!(
        (rows[0].status, rows[0].trigger),
        (RenewalStatus::Failed, Reason::NotInstalled)
    );
    let error = rows[0].error.as_deref().unwrap_or_default();
    assert!(
        error.starts_with("await_issuance failed") && error.contains("CAA forbids issuance"),
        "{error}"
    );
    let failing = condition(&reconciler, "web", ConditionType::Failing);
    assert_eq!(
        (failing.status, failing.reason),
        (ConditionStatus::True, Reason::Refused),
        "the CA said no: {}",
        failing.message
    );

    let backoff = world.store.backoffs().await.unwrap().remove(&id("web"));
    let backoff = backoff.expect("the backoff is stored");
    assert_eq!(
        Some(&backoff),
        reconciler.state(&id("web")).backoff.as_ref()
    );
    assert_eq!(backoff.failures, 1);
    let delay = backoff.next_attempt_at - failed_at;
    assert!(
        (time::Duration::minutes(8)..=time::Duration::minutes(12)).contains(&delay),
        "10 min ± 20 %, got {delay}"
    );

    // Alerts go out in their own task, after the renewal row is closed.
    let alerts = eventually("the failure alert", async || {
        let events = world.fakes.alerts.events();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(
        (alerts[0].kind, &alerts[0].cert_id),
        (AlertKind::RenewalFailed, &id("web"))
    );
    assert!(alerts[0].message.contains("CAA forbids issuance"));

    world.sweep_skips(&reconciler, "web").await;
    world.clock.advance(delay - time::Duration::seconds(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(world.fakes.ca.submits(), 1, "not before the backoff ends");
    // The sweep runs hourly; the retry must not wait for it.
    world.clock.advance(time::Duration::seconds(2));
    let rows = world.renewals_done(&reconciler, "web", 2).await;
    assert_eq!(
        world.fakes.ca.submits(),
        2,
        "the end of the backoff queues it, without a sweep"
    );
    assert_eq!(rows[0].status, RenewalStatus::Failed);
    let again = reconciler.state(&id("web")).backoff.unwrap();
    assert_eq!(again.failures, 2);
    assert!(again.next_attempt_at - world.clock.now() >= time::Duration::minutes(16));
}

#[tokio::test]
async fn a_rate_limit_backs_off_at_least_as_long_as_retry_after() {
    let world = World::new(&[ChallengeKind::Http01]);
    world.fakes.ca.on_submit(|| {
        Err(BackendError::RateLimited {
            backend: "fake-ca",
            retry_after: Some(Duration::from_secs(3 * 3600)),
            detail: "too many new orders recently".to_owned(),
        })
    });
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;

    assert!(
        rows[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("rate limited")
    );
    let backoff = reconciler.state(&id("web")).backoff.unwrap();
    assert!(backoff.next_attempt_at - world.clock.now() >= time::Duration::hours(3));
    world.clock.advance(time::Duration::hours(2));
    world.sweep_skips(&reconciler, "web").await;
    let rows = world.store.renewals(&id("web"), 10).await.unwrap();
    assert_eq!(
        (rows.len(), world.fakes.ca.submits()),
        (1, 1),
        "one order, one audited attempt: no retry before Retry-After"
    );
}

#[tokio::test]
async fn a_challenge_the_solver_cannot_answer_fails_before_anything_is_published() {
    let world = World::new(&[ChallengeKind::Dns01]);
    world.fakes.ca.ask_for(vec![http01("a.test")]);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;

    assert_eq!(rows[0].status, RenewalStatus::Failed);
    let error = rows[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with("check_challenges failed"), "{error}");
    let steps = steps_of(&world, rows[0].id).await;
    assert_eq!(
        steps.last(),
        Some(&(Step::CheckChallenges, StepStatus::Failed))
    );
    assert!(world.fakes.dcv.published().is_empty());
    assert!(world.fakes.dcv.removed().is_empty());
    assert!(world.store.pending_dcv().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_publish_removes_every_journalled_record_and_never_asks_to_sign() {
    let world = World::new(&[ChallengeKind::Http01]);
    let challenges = vec![http01("a.test"), http01("www.a.test")];
    world.fakes.ca.ask_for(challenges.clone());
    world.fakes.dcv.refuse_to_publish(challenges[1].clone());
    let reconciler = world
        .start(world.config(4, &[("web", &["a.test", "www.a.test"])]))
        .await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;

    let error = rows[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with("publish_dcv failed"), "{error}");
    assert_eq!(world.fakes.dcv.published(), challenges[..1]);
    assert_eq!(
        world.fakes.dcv.removed(),
        challenges,
        "the refused record was journalled too, and removing it is harmless"
    );
    assert!(world.store.pending_dcv().await.unwrap().is_empty());
    let steps = steps_of(&world, rows[0].id).await;
    assert!(
        !steps.iter().any(|(step, _)| *step == Step::AwaitIssuance),
        "{steps:?}"
    );
}
