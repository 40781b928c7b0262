//! Dry runs beside live renewals: never joined to one another, both at the CA at once, and a
//! dry run leaves the cert's installed cert and state as they were.

use rota_api::status::RenewalStatus;
use rota_api::wire::RenewProgress;
use rota_reconciler::{Following, Reconciler};

use crate::support::{World, eventually, id};

const WEB: &[(&str, &[&str])] = &[("web", &["web.test"])];

/// Reads `following` to its end and returns its outcome.
async fn outcome(mut following: Following) -> RenewalStatus {
    let mut finished = None;
    while let Some(event) = following.next().await {
        if let RenewProgress::Finished { status, .. } = event {
            finished = Some(status);
        }
    }
    finished.expect("a finished event")
}

async fn dry_runs(world: &World, reconciler: &Reconciler, n: usize) -> usize {
    let rows = world.renewals_done(reconciler, "web", n).await;
    rows.iter().filter(|r| r.dry_run).count()
}

#[tokio::test]
async fn a_dry_run_and_a_live_renewal_are_never_joined() {
    let world = World::new(&[]);
    let reconciler = world.start(world.config(2, WEB)).await;
    world.renewals_done(&reconciler, "web", 1).await;
    let installed = world.installed_without_backoff(&reconciler, "web").await;

    // A dry run while a live renewal waits at the CA runs beside it.
    let gate = world.fakes.ca.hold_issuance();
    let live = reconciler.renew(&id("web")).expect("a forced renewal");
    eventually("the live renewal at the CA", async || {
        (gate.waiting() == 1).then_some(())
    })
    .await;
    let dry = reconciler.dry_run(&id("web")).expect("a dry run");
    eventually("both at the CA", async || {
        (gate.waiting() == 2).then_some(())
    })
    .await;
    // And a live renewal asked for now joins the live one, not the dry run.
    assert!(reconciler.renew(&id("web")).expect("joined").attached);
    gate.open(2);
    assert_eq!(outcome(dry).await, RenewalStatus::Succeeded);
    assert_eq!(outcome(live.following).await, RenewalStatus::Succeeded);
    assert_eq!(dry_runs(&world, &reconciler, 3).await, 1);
    let renewed = world.installed_without_backoff(&reconciler, "web").await;
    assert_ne!(
        renewed.serial, installed.serial,
        "the live renewal installed"
    );

    // A live renewal asked for while only a dry run runs starts on its own.
    let gate = world.fakes.ca.hold_issuance();
    let dry = reconciler.dry_run(&id("web")).expect("a dry run");
    eventually("the dry run at the CA", async || {
        (gate.waiting() == 1).then_some(())
    })
    .await;
    assert!(
        !reconciler.is_busy(&id("web")),
        "a dry run takes no busy mark"
    );
    let live = reconciler.renew(&id("web")).expect("a forced renewal");
    assert!(!live.attached, "not joined to the dry run");
    gate.open(2);
    assert_eq!(outcome(dry).await, RenewalStatus::Succeeded);
    assert_eq!(outcome(live.following).await, RenewalStatus::Succeeded);
    assert_eq!(dry_runs(&world, &reconciler, 5).await, 2);

    // A dry run alone orders, and installs nothing.
    world.fakes.ca.sign();
    let cert = std::fs::read(world.file("web/cert.pem")).expect("installed cert");
    let submits = world.fakes.ca.submits();
    let dry = reconciler.dry_run(&id("web")).expect("a dry run");
    assert_eq!(outcome(dry).await, RenewalStatus::Succeeded);
    assert_eq!(world.fakes.ca.submits(), submits + 1, "it ordered");
    assert_eq!(
        std::fs::read(world.file("web/cert.pem")).expect("installed cert"),
        cert,
        "and installed nothing"
    );
}
