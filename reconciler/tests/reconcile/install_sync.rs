//! Install sync on a cluster node: a cert "the leader" recorded in the shared store (here the
//! follower's own store, which in a cluster is the shared SurrealDB) is installed here on news
//! of it, or by the poll when the news channel is down; an identical or older one is left
//! alone; a local key that differs from the cert's is a `KeyMismatch` failure with one alert,
//! cleared once the key is fixed.

use std::sync::Arc;
use std::time::Duration;

use rcgen::PublicKeyData as _;
use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus, Step, StepStatus};
use rota_api::{AlertKind, ChallengeKind};
use rota_reconciler::{Clock, Reconciler};
use rota_store::{AuditStore, IssuedCertRow};

use crate::support::cluster_store::FakeClusterStore;
use crate::support::{World, condition, eventually, id};

/// The follower's poll: longer than any test runs unless the test moves the clock.
const POLL: Duration = Duration::from_secs(60);

/// A follower: its cert issued and installed once by itself (as it was before joining), then
/// install sync running and subscribed.
struct Follower {
    world: World,
    reconciler: Reconciler,
    cluster: Arc<FakeClusterStore>,
}

impl Follower {
    async fn start() -> Self {
        let world = World::new(&[ChallengeKind::Http01]);
        let reconciler = world
            .start(world.config(4, &[("web", &["web.test"])]))
            .await;
        world.renewals_done(&reconciler, "web", 1).await;
        let cluster = Arc::new(FakeClusterStore::new("node-b"));
        reconciler.spawn_install_sync(Arc::clone(&cluster) as _, POLL);
        eventually("install sync to subscribe", async || {
            (cluster.subscriptions() == 1).then_some(())
        })
        .await;
        Self {
            world,
            reconciler,
            cluster,
        }
    }

    fn installed_cert(&self) -> String {
        std::fs::read_to_string(self.world.file("web").join("cert.pem")).expect("cert.pem")
    }

    fn key_pem(&self) -> String {
        std::fs::read_to_string(self.world.file("web.key")).expect("the key")
    }

    /// What the leader writes to the shared store when it renews `web`: a renewal row and
    /// the cert it issued for `key_pem`, valid for `days` — signed by a CA of its own, so its
    /// serial and dates are the test's to choose.
    async fn leader_issues(&self, key_pem: &str, days: i64) -> IssuedCertRow {
        let store = &self.world.store;
        let now = self.world.clock.now();
        let renewal = store
            .open_renewal(&id("web"), Reason::RenewalDue, now)
            .await
            .expect("the leader's renewal row");
        let (cert_pem, chain_pem) = sign(key_pem, now, days);
        let facts = rota_reconciler::inspect_pem(&cert_pem).expect("a readable cert");
        let row = IssuedCertRow {
            cert_id: id("web"),
            renewal_id: renewal.id,
            cert_pem,
            chain_pem,
            serial: facts.serial,
            not_after: facts.not_after,
            issued_at: now,
        };
        store.record_issued_cert(&row).await.expect("recorded");
        store
            .close_renewal(renewal.id, RenewalStatus::Succeeded, None, now)
            .await
            .expect("closed");
        row
    }

    fn install_failed_alerts(&self) -> usize {
        let events = self.world.fakes.alerts.events();
        events
            .iter()
            .filter(|e| e.kind == AlertKind::InstallFailed)
            .count()
    }
}

/// A leaf for `web.test` on `key_pem`'s public key, from now-1h to now+`days`, and its CA.
fn sign(key_pem: &str, now: time::OffsetDateTime, days: i64) -> (String, String) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).expect("the CA cert");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let mut leaf = rcgen::CertificateParams::new(vec!["web.test".to_owned()]).expect("params");
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + time::Duration::days(days);
    // Left alone, rcgen derives the serial from the public key: every cert would share it.
    leaf.serial_number = Some(rcgen::SerialNumber::from(rand::random::<u64>() >> 1));
    let subject = rcgen::KeyPair::from_pem(key_pem).expect("the key");
    let cert = leaf.signed_by(&subject, &issuer).expect("signed");
    (cert.pem(), ca_cert.pem())
}

#[tokio::test]
async fn a_cert_the_leader_issued_is_installed_on_news_without_a_poll() {
    let node = Follower::start().await;
    let key = node.key_pem();
    for days in [200, 300] {
        let row = node.leader_issues(&key, days).await;
        node.cluster.announce(&id("web")).await;
        eventually("the leader's cert on disk", async || {
            (node.installed_cert() == row.cert_pem).then_some(())
        })
        .await;
        // The leader's row was opened first: the newest row is the sync's.
        let sync = eventually("the sync's audit row", async || {
            let rows = node
                .world
                .store
                .renewals(&id("web"), 1)
                .await
                .expect("rows");
            rows.into_iter()
                .next()
                .filter(|r| r.trigger == Reason::ClusterSync && r.status != RenewalStatus::Running)
        })
        .await;
        assert_eq!(sync.status, RenewalStatus::Succeeded, "{:?}", sync.error);
        let steps = node.world.store.steps(sync.id).await.expect("steps");
        let install: Vec<_> = steps.iter().filter(|s| s.step == Step::Install).collect();
        assert_eq!(install.len(), 2, "started and succeeded: {steps:?}");
        assert_eq!(install[1].status, StepStatus::Succeeded);
        assert!(
            install[1].message.contains(&row.serial),
            "{}",
            install[1].message
        );
        let ready = eventually("Ready to show the new cert", async || {
            let ready = condition(&node.reconciler, "web", ConditionType::Ready);
            ready.message.contains(&row.serial).then_some(ready)
        })
        .await;
        assert_eq!(ready.status, ConditionStatus::True, "{}", ready.message);
    }
    assert_eq!(
        node.world.fakes.ca.submits(),
        1,
        "the follower ordered nothing"
    );
    let failing = condition(&node.reconciler, "web", ConditionType::Failing);
    assert_eq!(failing.status, ConditionStatus::False);
    assert_eq!(failing.reason, Reason::ClusterSync);
}

#[tokio::test]
async fn with_the_news_channel_closed_the_poll_still_installs() {
    let node = Follower::start().await;
    node.cluster.go_down();
    // Short steps (well under the poll) until it has seen the channel close and failed to
    // subscribe again: from then on only the poll can bring the cert.
    eventually("a failed resubscription", async || {
        node.world.clock.advance(time::Duration::seconds(2));
        (node.cluster.refused() >= 1).then_some(())
    })
    .await;
    let row = node.leader_issues(&node.key_pem(), 200).await;
    eventually("the poll to install the leader's cert", async || {
        node.world.clock.advance(time::Duration::seconds(61));
        (node.installed_cert() == row.cert_pem).then_some(())
    })
    .await;
    assert_eq!(node.cluster.subscriptions(), 1, "the store stayed down");
}

#[tokio::test]
async fn an_identical_or_older_cert_installs_nothing() {
    let node = Follower::start().await;
    let before = node.installed_cert();
    // The newest row is the cert this node installed itself: the leader's no-op.
    node.cluster.announce_handled(&id("web")).await;
    node.leader_issues(&node.key_pem(), 10).await;
    node.cluster.announce_handled(&id("web")).await;
    assert_eq!(
        node.installed_cert(),
        before,
        "nothing replaced the newer cert"
    );
    let rows = node
        .world
        .store
        .renewals(&id("web"), 10)
        .await
        .expect("rows");
    assert!(
        rows.iter().all(|r| r.trigger != Reason::ClusterSync),
        "no sync was audited: {rows:?}"
    );
}

#[tokio::test]
async fn a_different_local_key_is_a_key_mismatch_alerted_once_and_cleared_once_fixed() {
    let node = Follower::start().await;
    let cluster_key = node.key_pem();
    let key_path = node.world.file("web.key");
    let other = rcgen::KeyPair::generate().expect("another key");
    std::fs::write(&key_path, other.serialize_pem()).expect("the wrong key in place");
    let before = node.installed_cert();
    let row = node.leader_issues(&cluster_key, 200).await;
    for _ in 0..3 {
        node.cluster.announce_handled(&id("web")).await;
    }
    let failing = condition(&node.reconciler, "web", ConditionType::Failing);
    assert_eq!(failing.status, ConditionStatus::True);
    assert_eq!(failing.reason, Reason::KeyMismatch);
    let cluster_pin = rota_providers::keys::spki_pin(
        &rcgen::KeyPair::from_pem(&cluster_key)
            .unwrap()
            .subject_public_key_info(),
    );
    let local_pin = rota_providers::keys::spki_pin(&other.subject_public_key_info());
    for part in [
        &key_path.display().to_string(),
        &cluster_pin,
        &local_pin,
        &row.serial,
    ] {
        assert!(
            failing.message.contains(part.as_str()),
            "{part} in {}",
            failing.message
        );
    }
    assert_eq!(node.installed_cert(), before, "nothing installed");
    eventually("the alert", async || {
        (node.install_failed_alerts() > 0).then_some(())
    })
    .await;
    for _ in 0..3 {
        node.world.clock.advance(time::Duration::seconds(61));
        node.cluster.announce_handled(&id("web")).await;
    }
    assert_eq!(node.install_failed_alerts(), 1, "one alert per episode");

    std::fs::write(&key_path, &cluster_key).expect("the key fixed");
    node.cluster.announce_handled(&id("web")).await;
    assert_eq!(node.installed_cert(), row.cert_pem);
    let failing = condition(&node.reconciler, "web", ConditionType::Failing);
    assert_eq!(
        failing.status,
        ConditionStatus::False,
        "{}",
        failing.message
    );
    eventually("the recovery alert", async || {
        let events = node.world.fakes.alerts.events();
        events
            .iter()
            .any(|e| e.kind == AlertKind::RenewalRecovered)
            .then_some(())
    })
    .await;
    assert_eq!(node.install_failed_alerts(), 1);
}
