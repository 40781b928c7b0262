//! After a restart: every installed cert is observed before `start` returns (so the API is
//! right from its first answer), certs without a valid cert are renewed at once, certs merely
//! due are spread over the next minutes, and the rest wait for their time.

use rota_api::config::LoadedConfig;
use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};
use rota_reconciler::{Clock, Observation};

use crate::support::{World, condition, eventually, id};

const CERTS: &[(&str, &[&str])] = &[("one", &["one.test"]), ("two", &["two.test"])];

/// Issues every cert of [`CERTS`] in `world`, stops that reconciler, and returns the config.
async fn issue_then_stop(world: &World) -> LoadedConfig {
    let config = world.config(4, CERTS);
    let first = world.start(config.clone()).await;
    for (cert, _) in CERTS {
        world.renewals_done(&first, cert, 1).await;
    }
    first.shutdown(std::time::Duration::from_secs(5)).await;
    config
}

#[tokio::test]
async fn installed_certs_are_known_from_the_first_moment_and_left_alone() {
    let world = World::new(&[]);
    let config = issue_then_stop(&world).await;

    let restarted = world.restart(&[]);
    let second = restarted.start(config).await;
    for (cert, _) in CERTS {
        let state = second.state(&id(cert));
        assert!(
            matches!(state.observed, Some(Observation::Installed(_))),
            "`{cert}` observed before start returned: {:?}",
            state.observed
        );
        let runtime = second.desired().cert(&id(cert)).cloned().unwrap();
        assert_eq!(runtime.generation, 1, "the same spec keeps its generation");
        let renews_at = second.renews_at(&runtime).expect("a renewal time");
        assert_eq!(
            second.next_look(&id(cert)),
            Some(renews_at),
            "`{cert}` waits for its time"
        );
        let ready = condition(&second, cert, ConditionType::Ready);
        assert_eq!(
            (ready.status, ready.reason),
            (ConditionStatus::True, Reason::UpToDate)
        );
    }
    assert!(
        second.started().1.is_some(),
        "the first observation is done"
    );
    assert_eq!(
        restarted.fakes.ca.submits(),
        0,
        "nothing is renewed that does not need it"
    );
}

#[tokio::test]
async fn queued_first_issuances_lost_with_the_process_run_at_once() {
    let world = World::new(&[]);
    let gate = world.fakes.ca.hold_issuance();
    let config = world.config(1, CERTS);
    let first = world.start(config.clone()).await;
    eventually("one issuance waiting, one queued", async || {
        (gate.waiting() == 1).then_some(())
    })
    .await;
    first.shutdown(std::time::Duration::ZERO).await;

    let restarted = world.restart(&[]);
    let second = restarted.start(config).await;
    for (cert, _) in CERTS {
        let rows = restarted.renewals_done(&second, cert, 1).await;
        let newest = &rows[0];
        assert_eq!(
            (newest.trigger, newest.status),
            (Reason::NotInstalled, RenewalStatus::Succeeded),
            "`{cert}` issued right after the restart, not at the next sweep"
        );
    }
    gate.open(1);
}

#[tokio::test]
async fn certs_merely_due_at_a_restart_are_spread_over_the_next_minutes() {
    let world = World::new(&[]);
    let config = issue_then_stop(&world).await;
    // The local CA signs for 90 days: 61 days on, both are inside the 30-day threshold.
    world.clock.advance(time::Duration::days(61));

    let restarted = world.restart(&[]);
    let second = restarted.start(config).await;
    let now = restarted.clock.now();
    for (cert, _) in CERTS {
        let ready = condition(&second, cert, ConditionType::Ready);
        assert_eq!(
            (ready.status, ready.reason),
            (ConditionStatus::False, Reason::RenewalDue)
        );
        let next = second.next_look(&id(cert)).expect("scheduled");
        assert!(
            now <= next && next <= now + time::Duration::minutes(10),
            "`{cert}` at {next}, within ten minutes of {now}"
        );
    }
    assert_eq!(
        restarted.fakes.ca.submits(),
        0,
        "no renewal at the moment of the restart"
    );
}
