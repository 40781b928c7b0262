//! The work queue: never more renewals at once than `max_concurrent_renewals`, and never two
//! of the same cert.

use std::time::Duration;

use rota_api::status::RenewalStatus;
use rota_reconciler::Reconciler;

use crate::support::fakes::IssuanceGate;
use crate::support::{World, eventually, id};

const CERTS: &[(&str, &[&str])] = &[
    ("c1", &["c1.test"]),
    ("c2", &["c2.test"]),
    ("c3", &["c3.test"]),
    ("c4", &["c4.test"]),
    ("c5", &["c5.test"]),
    ("c6", &["c6.test"]),
];

/// How many certs have a renewal running or queued.
fn busy(reconciler: &Reconciler) -> usize {
    CERTS
        .iter()
        .filter(|(cert, _)| reconciler.is_busy(&id(cert)))
        .count()
}

/// Waits until `n` renewals wait at the CA, then gives any renewal that slipped past the
/// limit the time to reach the CA too.
async fn settle_at(gate: &IssuanceGate, n: usize) {
    eventually(&format!("{n} renewal(s) at the CA"), async || {
        (gate.waiting() >= n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(gate.waiting(), n, "renewals at the CA at once");
}

async fn all_succeed(world: &World, reconciler: &Reconciler) {
    for (cert, _) in CERTS {
        let rows = world.renewals_done(reconciler, cert, 1).await;
        assert_eq!(rows.len(), 1, "`{cert}` renewed once");
        assert_eq!(rows[0].status, RenewalStatus::Succeeded, "{cert}");
    }
    assert_eq!(world.fakes.ca.submits(), CERTS.len());
}

#[tokio::test]
async fn at_most_max_concurrent_renewals_wait_on_the_ca_at_once() {
    let world = World::new(&[]);
    let gate = world.fakes.ca.hold_issuance();
    let reconciler = world.start(world.config(2, CERTS)).await;

    eventually("every cert queued", async || {
        (busy(&reconciler) == CERTS.len()).then_some(())
    })
    .await;
    settle_at(&gate, 2).await;
    let ticket = reconciler
        .renew(&id("c6"))
        .expect("a forced renewal of a queued cert");
    assert!(
        ticket.attached,
        "it joins the queued renewal instead of a second one"
    );

    gate.open(CERTS.len());
    all_succeed(&world, &reconciler).await;
    assert_eq!(gate.peak(), 2);
}

#[tokio::test]
async fn lowering_the_limit_while_renewals_run_applies_once_they_finish() {
    let world = World::new(&[]);
    let gate = world.fakes.ca.hold_issuance();
    let reconciler = world.start(world.config(2, CERTS)).await;
    settle_at(&gate, 2).await;

    let lowered = reconciler.prepare(world.config(1, CERTS)).unwrap();
    assert!(lowered.diff.changed.is_empty(), "only the limit changes");
    reconciler.commit(lowered);
    // Let the two running renewals finish; the four queued ones must now go one at a time.
    gate.open(2);
    eventually("the two running renewals to finish", async || {
        (busy(&reconciler) == CERTS.len() - 2).then_some(())
    })
    .await;
    settle_at(&gate, 1).await;

    gate.open(CERTS.len());
    all_succeed(&world, &reconciler).await;
}
