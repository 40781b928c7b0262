//! `apply` and hot reloads: a changed spec is reconciled at once, and the backoff earned by
//! the previous spec does not hold the new one back.

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};

use crate::support::fakes::refused;
use crate::support::{World, condition, eventually, id};

#[tokio::test]
async fn a_changed_domain_list_renews_at_once_despite_the_old_backoff() {
    let world = World::new(&[]);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;
    assert_eq!(rows[0].status, RenewalStatus::Succeeded);

    world
        .fakes
        .ca
        .on_issue(|_, _| Box::pin(async { Err(refused("the CA is in maintenance")) }));
    reconciler.renew(&id("web")).unwrap();
    let rows = world.renewals_done(&reconciler, "web", 2).await;
    assert_eq!(rows[0].status, RenewalStatus::Failed);
    let old = reconciler.state(&id("web")).backoff.unwrap();
    world.sweep_skips(&reconciler, "web").await;

    world.fakes.ca.sign();
    let next = world.config(4, &[("web", &["a.test", "www.a.test"])]);
    let prepared = reconciler.prepare(next).unwrap();
    assert_eq!(prepared.diff.changed, [id("web")]);
    reconciler.commit(prepared);
    let rows = world.renewals_done(&reconciler, "web", 3).await;

    assert_eq!(
        (rows[0].trigger, rows[0].status),
        (Reason::DomainsChanged, RenewalStatus::Succeeded)
    );
    assert_eq!(world.fakes.ca.submits(), 3);
    let installed = world.installed_without_backoff(&reconciler, "web").await;
    assert_eq!(installed.sans, ["a.test", "www.a.test"]);
    let generation = reconciler.desired().cert(&id("web")).unwrap().generation;
    assert_eq!(
        (old.generation, generation),
        (1, 2),
        "generation counts spec changes"
    );
    let ready = condition(&reconciler, "web", ConditionType::Ready);
    assert_eq!(
        (ready.status, ready.reason, ready.observed_generation),
        (ConditionStatus::True, Reason::UpToDate, generation)
    );
}

#[tokio::test]
async fn a_spec_changed_during_its_renewal_is_reconciled_when_that_renewal_ends() {
    let world = World::new(&[]);
    let gate = world.fakes.ca.hold_issuance();
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    eventually("the first renewal to wait on the CA", async || {
        (gate.waiting() == 1).then_some(())
    })
    .await;

    let next = world.config(4, &[("web", &["a.test", "www.a.test"])]);
    reconciler.commit(reconciler.prepare(next).unwrap());
    gate.open(2);
    let rows = world.renewals_done(&reconciler, "web", 1).await;
    let ready = condition(&reconciler, "web", ConditionType::Ready);
    let generation = reconciler.desired().cert(&id("web")).unwrap().generation;
    assert!(
        rows.len() > 1 || ready.status != ConditionStatus::True,
        "the installed cert lacks www.a.test, yet Ready is {:?} for generation {} (spec is at {generation}) and no renewal follows",
        ready.status,
        ready.observed_generation,
    );
    let rows = world.renewals_done(&reconciler, "web", 2).await;
    assert_eq!(
        (rows[0].trigger, rows[0].status),
        (Reason::DomainsChanged, RenewalStatus::Succeeded)
    );
}
