//! A renewal that succeeds: progress streamed step by step, backoff cleared, `Ready` again.

use rota_api::ChallengeKind;
use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step, StepStatus};
use rota_api::wire::RenewProgress;

use rota_reconciler::Following;

use crate::support::fakes::{http01, refused};
use crate::support::{World, condition, id};

/// Every progress item of one renewal, until the stream closes.
async fn collect(mut progress: Following) -> Vec<RenewProgress> {
    let mut items = Vec::new();
    let all = async {
        while let Some(item) = progress.next().await {
            items.push(item);
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), all)
        .await
        .expect("the renewal finishes");
    items
}

#[tokio::test]
async fn a_forced_renewal_streams_every_step_and_clears_the_backoff() {
    let world = World::new(&[ChallengeKind::Http01]);
    world.fakes.ca.ask_for(vec![http01("a.test")]);
    world
        .fakes
        .ca
        .on_issue(|_, _| Box::pin(async { Err(refused("the CA is in maintenance")) }));
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;
    let error = rows[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with("await_issuance failed"), "{error}");
    assert!(reconciler.state(&id("web")).backoff.is_some());

    world.fakes.ca.sign();
    let ticket = reconciler.renew(&id("web")).unwrap();
    assert!(!ticket.attached, "nothing was running");
    let items = collect(ticket.following).await;

    let Some(RenewProgress::Started { renewal_id }) = items.first() else {
        panic!("starts with Started: {items:?}");
    };
    let Some(RenewProgress::Finished { status, error }) = items.last() else {
        panic!("ends with Finished: {items:?}");
    };
    assert_eq!(
        (*status, error.as_deref()),
        (RenewalStatus::Succeeded, None)
    );
    let events: Vec<_> = items[1..items.len() - 1]
        .iter()
        .map(|item| match item {
            RenewProgress::Step(event) => event,
            other => panic!("only steps between Started and Finished: {other:?}"),
        })
        .collect();
    assert!(events.iter().all(|e| e.renewal_id == *renewal_id));
    let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u32).collect::<Vec<_>>());
    let pipeline: Vec<(Step, StepStatus)> = events.iter().map(|e| (e.step, e.status)).collect();
    let expected: Vec<(Step, StepStatus)> = [
        Step::LoadKey,
        Step::GenerateCsr,
        Step::SubmitOrder,
        Step::CheckChallenges,
        Step::PublishDcv,
        Step::AwaitIssuance,
        Step::RemoveDcv,
        Step::PersistCert,
        Step::Install,
    ]
    .into_iter()
    .flat_map(|step| [(step, StepStatus::Started), (step, StepStatus::Succeeded)])
    .collect();
    assert_eq!(pipeline, expected);

    let rows = world.renewals_done(&reconciler, "web", 2).await;
    assert_eq!(
        (rows[0].id, rows[0].trigger, rows[0].status),
        (*renewal_id, Reason::Forced, RenewalStatus::Succeeded)
    );
    let installed = world.installed_without_backoff(&reconciler, "web").await;
    assert_eq!(installed.sans, ["a.test"]);
    assert!(installed.key_matches);
    for (type_, status, reason) in [
        (
            ConditionType::Ready,
            ConditionStatus::True,
            Reason::UpToDate,
        ),
        (
            ConditionType::Failing,
            ConditionStatus::False,
            Reason::RenewalSucceeded,
        ),
        (ConditionType::Issuing, ConditionStatus::False, Reason::Idle),
    ] {
        let c = condition(&reconciler, "web", type_);
        assert_eq!((c.status, c.reason), (status, reason), "{type_:?}");
    }
}
