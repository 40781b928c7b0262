//! A stop in the middle of a renewal: the DCV journal lets the next start remove what was
//! published, and the interrupted renewal is closed as such.

use std::time::Duration;

use rota_api::ChallengeKind;
use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step, StepStatus};
use rota_store::AuditStore;

use crate::support::fakes::http01;
use crate::support::{World, condition, eventually, id};

#[tokio::test]
async fn a_restart_removes_what_an_interrupted_renewal_published() {
    let world = World::new(&[ChallengeKind::Http01]);
    let challenges = vec![http01("a.test"), http01("www.a.test")];
    world.fakes.ca.ask_for(challenges.clone());
    world
        .fakes
        .ca
        .on_issue(|_, _| Box::pin(std::future::pending()));
    let config = world.config(4, &[("web", &["a.test", "www.a.test"])]);
    let first = world.start(config.clone()).await;

    let hung = eventually("the renewal to wait on the CA", async || {
        let row = world.store.renewals(&id("web"), 1).await.ok()?.pop()?;
        let steps = world.store.steps(row.id).await.ok()?;
        let waiting = steps
            .iter()
            .any(|s| (s.step, s.status) == (Step::AwaitIssuance, StepStatus::Started));
        waiting.then_some(row)
    })
    .await;
    assert_eq!(world.fakes.dcv.published(), challenges);
    assert_eq!(
        world.store.pending_dcv().await.unwrap().len(),
        2,
        "every publish is journalled"
    );
    first.shutdown(Duration::ZERO).await;
    let row = world.store.renewal(hung.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status, world.store.pending_dcv().await.unwrap().len()),
        (RenewalStatus::Running, 2),
        "stopped mid-renewal: the row is open and the records are still journalled"
    );

    let restarted = world.restart(&[ChallengeKind::Http01]);
    let second = restarted.start(config).await;

    assert_eq!(
        restarted.fakes.dcv.removed(),
        challenges,
        "both journalled records are removed at start"
    );
    assert!(
        world.fakes.dcv.removed().is_empty(),
        "the first run never got to remove them"
    );
    assert!(restarted.store.pending_dcv().await.unwrap().is_empty());
    let row = restarted.store.renewal(hung.id).await.unwrap().unwrap();
    assert_eq!(row.status, RenewalStatus::Interrupted);
    assert!(row.finished_at.is_some());

    // The interrupted first issuance is resumed at once, not at the next sweep an hour later.
    let rows = restarted.renewals_done(&second, "web", 2).await;
    assert_eq!(
        (rows[0].trigger, rows[0].status),
        (Reason::NotInstalled, RenewalStatus::Succeeded)
    );
    let ready = condition(&second, "web", ConditionType::Ready);
    assert_eq!(ready.status, ConditionStatus::True, "{}", ready.message);
}
