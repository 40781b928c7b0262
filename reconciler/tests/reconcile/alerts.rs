//! Alerts over time: a failing cert is announced once, warned about once as its end nears,
//! and announced again when it recovers — however many sweeps and retries happen between —
//! and neither a restart nor a broken sink changes that or holds a renewal up.

use std::time::Duration;

use rota_api::config::LoadedConfig;
use rota_api::status::RenewalStatus;
use rota_api::{AlertKind, ChallengeKind};
use rota_reconciler::{Clock, Reconciler};
use rota_store::AuditStore;

use crate::support::fakes::refused;
use crate::support::{World, eventually, id};

/// A cert whose local CA signs for 20 days and which is renewed 5 days before its end, so
/// that a failing renewal leaves it inside the 14-day expiry warning window.
fn short_lived(world: &World) -> LoadedConfig {
    let mut loaded = world.config_with("  renew_threshold_days: 5\n", &[("web", &["a.test"])]);
    loaded.config.local_ca.validity_days = 20;
    loaded
}

/// How many alerts of each kind the sink was handed, in a fixed order of kinds.
fn counts(world: &World) -> [(AlertKind, usize); 4] {
    let events = world.fakes.alerts.events();
    [
        AlertKind::RenewalFailed,
        AlertKind::ExpiryWarning,
        AlertKind::RenewalRecovered,
        AlertKind::InstallFailed,
    ]
    .map(|kind| (kind, events.iter().filter(|e| e.kind == kind).count()))
}

/// Waits until no renewal of `web` runs and the alerts sent and recorded have stayed the
/// same for a while: alert tasks run after the renewal that raised them has ended.
async fn settle(world: &World, reconciler: &Reconciler) {
    eventually("web to be idle", async || {
        (!reconciler.is_busy(&id("web"))).then_some(())
    })
    .await;
    let seen = async || {
        let recorded: u64 = world
            .store
            .alert_delivery_counts()
            .await
            .unwrap()
            .iter()
            .map(|c| c.count)
            .sum();
        (world.fakes.alerts.events().len(), recorded)
    };
    let mut last = seen().await;
    let mut quiet = 0;
    while quiet < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = seen().await;
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Waits until the sink was handed `n` alerts of `kind`, then checks no more follow.
async fn alerted(world: &World, reconciler: &Reconciler, kind: AlertKind, n: usize) {
    let of_kind = || counts(world).into_iter().find(|c| c.0 == kind).unwrap().1;
    eventually(&format!("{n} {kind:?} alerts"), async || {
        (of_kind() >= n).then_some(())
    })
    .await;
    settle(world, reconciler).await;
    assert_eq!(of_kind(), n, "{kind:?}: {:?}", world.fakes.alerts.events());
}

#[tokio::test]
async fn fifty_sweeps_of_a_failing_cert_alert_once_per_kind_then_once_on_recovery() {
    let world = World::new(&[ChallengeKind::Http01]);
    let reconciler = world.start(short_lived(&world)).await;
    world.renewals_done(&reconciler, "web", 1).await;
    assert_eq!(
        world.fakes.alerts.events(),
        [],
        "a first issuance is no news"
    );

    world.fakes.ca.on_submit(|| Err(refused("the CA is down")));
    // 16 days on, 4 are left: the renewal time has come and the wake loop renews, in vain.
    world.clock.advance(time::Duration::days(16));
    world.renewals_done(&reconciler, "web", 2).await;
    eventually("the first alerts", async || {
        (world.fakes.alerts.events().len() >= 2).then_some(())
    })
    .await;

    for _ in 0..50 {
        world.clock.advance(time::Duration::minutes(10));
        settle(&world, &reconciler).await;
        reconciler.sweep().await;
    }
    settle(&world, &reconciler).await;
    let failures = world.store.renewals(&id("web"), 100).await.unwrap().len() - 1;
    assert!(
        failures >= 5,
        "the backoff let several retries through: {failures}"
    );
    assert_eq!(
        counts(&world),
        [
            (AlertKind::RenewalFailed, 1),
            (AlertKind::ExpiryWarning, 1),
            (AlertKind::RenewalRecovered, 0),
            (AlertKind::InstallFailed, 0),
        ],
        "50 sweeps and {failures} failed attempts in 8 hours"
    );
    let warning = world
        .fakes
        .alerts
        .events()
        .into_iter()
        .find(|e| e.kind == AlertKind::ExpiryWarning)
        .unwrap();
    assert!(warning.message.contains("days left"), "{}", warning.message);
    assert!(warning.details.not_after.is_some());

    world.fakes.ca.on_submit(|| Ok(Vec::new()));
    let retry_at = reconciler
        .state(&id("web"))
        .backoff
        .unwrap()
        .next_attempt_at;
    world
        .clock
        .advance(retry_at - world.clock.now() + time::Duration::seconds(1));
    let rows = world.renewals_done(&reconciler, "web", failures + 2).await;
    assert_eq!(rows[0].status, RenewalStatus::Succeeded);
    eventually("the recovery alert", async || {
        (counts(&world)[2].1 == 1).then_some(())
    })
    .await;
    for _ in 0..5 {
        world.clock.advance(time::Duration::hours(6));
        reconciler.sweep().await;
    }
    settle(&world, &reconciler).await;
    assert_eq!(
        counts(&world),
        [
            (AlertKind::RenewalFailed, 1),
            (AlertKind::ExpiryWarning, 1),
            (AlertKind::RenewalRecovered, 1),
            (AlertKind::InstallFailed, 0),
        ]
    );
    assert!(
        world.store.alert_episodes().await.unwrap().is_empty(),
        "recovery closes every episode"
    );
    let last = world.store.last_alert_deliveries(&id("web")).await.unwrap();
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(
        (last[0].sink, last[0].kind, last[0].error.as_deref()),
        (0, AlertKind::RenewalRecovered, None)
    );
    assert_eq!(last[0].sink_label, "webhook to https://hooks.test");
}

#[tokio::test]
async fn an_install_failure_is_repeated_daily_and_a_restart_does_not_repeat_it() {
    let world = World::new(&[ChallengeKind::Http01]);
    world.fakes.fail_installs(true);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    world.renewals_done(&reconciler, "web", 1).await;
    alerted(&world, &reconciler, AlertKind::InstallFailed, 1).await;
    let first = world.fakes.alerts.events().remove(0);
    assert_eq!(first.details.domains[0].as_str(), "a.test");
    assert!(first.details.next_attempt_at.is_some());
    assert!(
        first
            .details
            .recent_steps
            .iter()
            .any(|s| s.step == rota_api::status::Step::Install),
        "the alert carries the audited steps: {:?}",
        first.details.recent_steps
    );
    reconciler.shutdown(Duration::from_secs(5)).await;

    let world = world.restart(&[ChallengeKind::Http01]);
    world.fakes.fail_installs(true);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    world.clock.advance(time::Duration::minutes(15));
    world.renewals_done(&reconciler, "web", 2).await;
    settle(&world, &reconciler).await;
    assert_eq!(
        world.fakes.alerts.events(),
        [],
        "the episode survived the restart: no second alert within a day"
    );

    world.clock.advance(time::Duration::hours(25));
    world.renewals_done(&reconciler, "web", 3).await;
    // A day later it is said again, once.
    alerted(&world, &reconciler, AlertKind::InstallFailed, 1).await;
}

#[tokio::test]
async fn a_broken_sink_neither_fails_nor_delays_a_renewal_and_its_error_is_kept() {
    let world = World::new(&[ChallengeKind::Http01]);
    world.fakes.ca.on_submit(|| Err(refused("the CA is down")));
    world.fakes.alerts.refuse(Some("the receiver answered 503"));
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    world.renewals_done(&reconciler, "web", 1).await;
    let last = eventually("the failed delivery to be recorded", async || {
        let last = world.store.last_alert_deliveries(&id("web")).await.unwrap();
        (!last.is_empty()).then_some(last)
    })
    .await;
    assert_eq!(last[0].kind, AlertKind::RenewalFailed);
    let error = last[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("the receiver answered 503"), "{error}");

    // A sink that never answers: the renewal still finishes at once, and succeeds.
    world.fakes.alerts.hang();
    world.fakes.ca.on_submit(|| Ok(Vec::new()));
    let started = std::time::Instant::now();
    let retry_at = reconciler
        .state(&id("web"))
        .backoff
        .unwrap()
        .next_attempt_at;
    world
        .clock
        .advance(retry_at - world.clock.now() + time::Duration::seconds(1));
    let rows = world.renewals_done(&reconciler, "web", 2).await;
    assert_eq!(rows[0].status, RenewalStatus::Succeeded);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    eventually("the recovery to reach the hanging sink", async || {
        (counts(&world)[2].1 == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cert_removed_from_the_config_leaves_no_alert_history() {
    let world = World::new(&[]);
    world.fakes.fail_installs(true);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    world.renewals_done(&reconciler, "web", 1).await;
    eventually("the install failure episode to be stored", async || {
        let stored = world.store.alert_episodes().await.ok()?;
        stored.get(&id("web")).filter(|e| !e.is_empty()).map(|_| ())
    })
    .await;

    let without = world.config(4, &[("other", &["b.test"])]);
    reconciler.commit(reconciler.prepare(without).unwrap());
    eventually("the episodes of `web` to be closed", async || {
        let stored = world.store.alert_episodes().await.ok()?;
        stored
            .get(&id("web"))
            .is_none_or(std::collections::HashMap::is_empty)
            .then_some(())
    })
    .await;
    assert!(reconciler.state(&id("web")).alert_episodes.is_empty());
}
