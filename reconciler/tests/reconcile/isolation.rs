//! One bad renewal hurts only itself: a CA that never answers fails its own renewals at their
//! deadline (answers taken down) without holding up another CA's certs; a panic fails one
//! renewal and the loop lives; a revocation whose client goes away completes; an install
//! that fails is retried without ordering the cert again.

use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step, StepStatus};
use rota_api::{ChallengeKind, RevocationReason};
use rota_reconciler::Clock;
use rota_store::AuditStore;

use crate::support::fakes::http01;
use crate::support::{World, condition, eventually, id};

#[tokio::test]
async fn a_ca_that_never_answers_delays_only_its_own_certs_and_fails_at_the_deadline() {
    let world = World::new(&[ChallengeKind::Http01]);
    world.fakes.acme.ask_for(vec![http01("stuck.test")]);
    world
        .fakes
        .acme
        .on_issue(|_, _| Box::pin(std::future::pending()));
    let config = world.config_with(
        "  max_concurrent_renewals: 1\n  renewal_timeout_seconds: 2\n",
        &[("acme-stuck", &["stuck.test"]), ("lan", &["lan.test"])],
    );
    let reconciler = world.start(config).await;

    let rows = world.renewals_done(&reconciler, "lan", 1).await;
    assert_eq!(rows[0].status, RenewalStatus::Succeeded);
    assert!(
        reconciler.is_busy(&id("acme-stuck")),
        "the local cert was issued while the ACME renewal hung in the only ACME slot"
    );

    let rows = world.renewals_done(&reconciler, "acme-stuck", 1).await;
    let error = rows[0].error.as_deref().unwrap_or_default();
    assert_eq!(rows[0].status, RenewalStatus::Failed);
    assert!(
        error.starts_with("await_issuance failed") && error.contains("renewal_timeout_seconds"),
        "{error}"
    );
    let failing = condition(&reconciler, "acme-stuck", ConditionType::Failing);
    assert_eq!(
        (failing.status, failing.reason),
        (ConditionStatus::True, Reason::Timeout)
    );
    assert_eq!(
        world.fakes.dcv.removed(),
        [http01("stuck.test")],
        "its answer is taken down"
    );
    assert!(world.store.pending_dcv().await.unwrap().is_empty());
    let steps = world.store.steps(rows[0].id).await.unwrap();
    let last = steps.last().map(|s| (s.step, s.status));
    assert_eq!(
        last,
        Some((Step::AwaitIssuance, StepStatus::Failed)),
        "{steps:?}"
    );
}

#[tokio::test]
async fn a_panicking_renewal_fails_alone_and_the_loop_lives() {
    let world = World::new(&[]);
    world
        .fakes
        .acme
        .on_issue(|_, _| Box::pin(async { panic!("a bug in a CA backend") }));
    let config = world.config(
        4,
        &[("acme-buggy", &["buggy.test"]), ("lan", &["lan.test"])],
    );
    let reconciler = world.start(config).await;

    let rows = world.renewals_done(&reconciler, "acme-buggy", 1).await;
    assert_eq!(
        rows[0].status,
        RenewalStatus::Failed,
        "the audit row is closed"
    );
    let failing = condition(&reconciler, "acme-buggy", ConditionType::Failing);
    assert_eq!(failing.reason, Reason::Panicked, "{}", failing.message);
    assert!(
        failing.message.contains("a bug in a CA backend"),
        "{}",
        failing.message
    );
    assert!(reconciler.state(&id("acme-buggy")).backoff.is_some());
    world.renewals_done(&reconciler, "lan", 1).await;

    world.fakes.acme.sign();
    let mut ticket = reconciler
        .renew(&id("acme-buggy"))
        .expect("the loop still takes work");
    while ticket.following.next().await.is_some() {}
    let rows = world.renewals_done(&reconciler, "acme-buggy", 2).await;
    assert_eq!(rows[0].status, RenewalStatus::Succeeded);
}

#[tokio::test]
async fn a_revocation_completes_when_its_client_goes_away() {
    let world = World::new(&[]);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    world.renewals_done(&reconciler, "web", 1).await;
    let installed = world.installed_without_backoff(&reconciler, "web").await;

    let client = tokio::spawn({
        let reconciler = reconciler.clone();
        async move {
            reconciler
                .revoke(&id("web"), RevocationReason::KeyCompromise)
                .await
        }
    });
    eventually("the revocation to start", async || {
        reconciler.is_busy(&id("web")).then_some(())
    })
    .await;
    client.abort();

    eventually("the CA to be asked", async || {
        (!world.fakes.ca.revoked().is_empty()).then_some(())
    })
    .await;
    let revoked = eventually("the serial to be recorded", async || {
        world.store.revoked_serials().await.ok()?.remove(&id("web"))
    })
    .await;
    assert!(revoked.contains(&installed.serial), "{revoked:?}");
    let retired = eventually("the compromised key to be moved aside", async || {
        std::fs::read_dir(world.file("")).ok()?.find_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.starts_with("web.key.compromised-").then_some(name)
        })
    })
    .await;
    assert!(!retired.is_empty());
    // The replacement is issued with a new key, and nothing is left busy.
    let replacement = eventually("the replacement", async || {
        let rows = world.store.renewals(&id("web"), 10).await.ok()?;
        let done = rows.len() == 3 && rows.iter().all(|r| r.status != RenewalStatus::Running);
        (done && !reconciler.is_busy(&id("web"))).then_some(rows)
    })
    .await;
    assert_eq!(replacement[0].status, RenewalStatus::Succeeded);
    let now = world.installed_without_backoff(&reconciler, "web").await;
    assert!(now.key_matches && now.serial != installed.serial);
}

#[tokio::test]
async fn an_install_that_fails_twice_then_works_orders_the_cert_once() {
    let world = World::new(&[]);
    world.fakes.fail_installs(true);
    let reconciler = world.start(world.config(4, &[("web", &["a.test"])])).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;
    assert_eq!(rows[0].status, RenewalStatus::Failed);
    let failing = condition(&reconciler, "web", ConditionType::Failing);
    assert_eq!(failing.reason, Reason::InstallFailed, "{}", failing.message);
    let issued = world.store.latest_issued_cert(&id("web")).await.unwrap();
    let issued = issued.expect("the cert was issued before the install failed");

    for attempt in 2..=3 {
        if attempt == 3 {
            world.fakes.fail_installs(false);
        }
        let backoff = reconciler.state(&id("web")).backoff.expect("backing off");
        world
            .clock
            .advance(backoff.next_attempt_at - world.clock.now() + time::Duration::seconds(1));
        world.renewals_done(&reconciler, "web", attempt).await;
    }

    assert_eq!(
        world.fakes.ca.submits(),
        1,
        "one order at the CA for three attempts"
    );
    let installed = world.installed_without_backoff(&reconciler, "web").await;
    assert_eq!(
        installed.serial, issued.serial,
        "the cert issued first is the one installed"
    );
    let rows = world.store.renewals(&id("web"), 10).await.unwrap();
    let steps = world.store.steps(rows[0].id).await.unwrap();
    let install = steps
        .iter()
        .find(|s| s.step == Step::Install && s.status == StepStatus::Started)
        .expect("an install step");
    assert!(
        install
            .message
            .contains(&format!("issued by renewal {}", rows[2].id)),
        "the audit says where the cert came from: {}",
        install.message
    );
    assert!(
        !steps.iter().any(|s| s.step == Step::SubmitOrder),
        "no order in the retry: {steps:?}"
    );
    let ready = condition(&reconciler, "web", ConditionType::Ready);
    assert_eq!(ready.status, ConditionStatus::True);
}
