//! A renewal time the CA's renewal window (ARI) picks is acted on at that time, not at the
//! next sweep: planning yields when to look again, and the reconciler wakes then.

use std::time::Duration;

use rota_api::RenewalWindow;
use rota_api::status::{Reason, RenewalStatus};
use rota_reconciler::Clock;

use crate::support::{World, eventually, id};

#[tokio::test]
async fn a_renewal_time_inside_the_window_is_acted_on_when_it_comes() {
    let world = World::new(&[]);
    let now = world.clock.now();
    // A window of one instant, two hours ahead: the picked time is its start.
    let renew_at = now + time::Duration::hours(2);
    world.fakes.acme.publish_window(Some(RenewalWindow {
        start: renew_at,
        end: renew_at,
        explanation_url: None,
        next_check_at: now + time::Duration::days(7),
    }));
    let reconciler = world
        .start(world.config(4, &[("acme-web", &["a.test"])]))
        .await;
    world.renewals_done(&reconciler, "acme-web", 1).await;
    eventually(
        "the window to be fetched and the cert scheduled",
        async || (reconciler.next_look(&id("acme-web")) == Some(renew_at)).then_some(()),
    )
    .await;

    // The replacement gets no window, so it is not due again at once.
    world.fakes.acme.publish_window(None);
    world
        .clock
        .advance(time::Duration::hours(2) - time::Duration::seconds(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(world.fakes.acme.submits(), 1, "not before its time");
    world.clock.advance(time::Duration::seconds(1));
    let rows = world.renewals_done(&reconciler, "acme-web", 2).await;
    assert_eq!(
        (rows[0].trigger, rows[0].status),
        (Reason::AriWindow, RenewalStatus::Succeeded),
        "renewed at the window's time with the sweep an hour away"
    );
}
