//! A reconciler in a cluster: only the leader renews; a new leader sweeps at once; losing
//! the lease, or any coordinator error, stops new renewals at once; a renewal fenced out
//! mid-way cleans up without backoff or alert; a follower's forced renewal is forwarded,
//! run once by the leader and followed through the shared store; a clean stop releases the
//! lease. (The exact log lines are asserted in the e2e tests: this crate has no tracing
//! subscriber to capture them.)

use std::sync::Arc;
use std::time::Duration;

use rota_api::ChallengeKind;
use rota_api::status::{ConditionStatus, ConditionType, Reason, RenewalStatus};
use rota_api::wire::RenewProgress;
use rota_api::wire::cluster::ClusterRole;
use rota_reconciler::{Following, Reconciler};
use rota_store::AuditStore;

use crate::support::fakes::{FakeClusterStore, FakeCoordinator, http01};
use crate::support::{World, condition, eventually, id};

/// One election period of [`World::start_in_cluster`]'s 60 s lease.
const TICK: time::Duration = time::Duration::seconds(20);

/// Every progress item of one renewal, until the stream closes.
async fn collect(mut progress: Following) -> Vec<RenewProgress> {
    let mut items = Vec::new();
    let all = async {
        while let Some(item) = progress.next().await {
            items.push(item);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), all)
        .await
        .expect("the renewal finishes");
    items
}

/// A node `node-a` whose coordinator answers that `holder` leads under `term`.
fn node_a(holder: &str, term: u64) -> (Arc<FakeCoordinator>, Arc<FakeClusterStore>) {
    (
        Arc::new(FakeCoordinator::new("node-a", holder, term)),
        Arc::new(FakeClusterStore::new("node-a")),
    )
}

/// A reconciler (at most 4 renewals at once, `certs` on the fake CA) in the cluster
/// `coordinator` and `cluster` describe.
async fn start(
    world: &World,
    coordinator: &Arc<FakeCoordinator>,
    cluster: &Arc<FakeClusterStore>,
    certs: &[(&str, &[&str])],
) -> Reconciler {
    world
        .start_in_cluster(world.config(4, certs), coordinator, cluster)
        .await
}

async fn wait_role(reconciler: &Reconciler, leading: bool) {
    eventually("the role to change", async || {
        (reconciler.is_leader() == leading).then_some(())
    })
    .await;
}

async fn renewal_count(world: &World, cert: &str) -> usize {
    world.store.renewals(&id(cert), 100).await.unwrap().len()
}

#[tokio::test]
async fn a_follower_renews_nothing_not_even_a_first_issuance_or_a_forced_renewal() {
    let world = World::new(&[]);
    let (coordinator, cluster) = node_a("node-b", 4);
    let reconciler = start(&world, &coordinator, &cluster, &[("web", &["a.test"])]).await;
    eventually("the first lease result", async || {
        (cluster.fences() == [None]).then_some(())
    })
    .await;
    reconciler.sweep().await;
    assert!(!reconciler.is_leader());
    assert!(
        !reconciler.is_busy(&id("web")),
        "a follower queued a renewal"
    );

    let ticket = reconciler
        .renew(&id("web"))
        .expect("forwarded, not refused");
    let mut following = ticket.following;
    assert!(
        matches!(following.next().await, Some(RenewProgress::Forwarded { leader: Some(ref l) }) if l == "node-b"),
        "the reply says it was forwarded to the leader"
    );
    eventually("the request to reach the store", async || {
        (cluster.waiting() == 1).then_some(())
    })
    .await;
    assert_eq!(world.fakes.ca.submits(), 0, "a follower asked the CA");
    assert_eq!(
        renewal_count(&world, "web").await,
        0,
        "a follower opened a renewal"
    );
    let view = reconciler.cluster().expect("in a cluster");
    assert_eq!(
        (view.role, view.lease.map(|l| (l.holder, l.term))),
        (ClusterRole::Follower, Some(("node-b".to_owned(), 4)))
    );
    assert_eq!((view.node_id.as_str(), view.lease_seconds), ("node-a", 60));
    assert!(cluster.heartbeats() >= 1, "the node reports to the store");
}

#[tokio::test]
async fn becoming_leader_sweeps_at_once_and_renews_what_is_due() {
    let world = World::new(&[]);
    let (coordinator, cluster) = node_a("node-b", 1);
    let reconciler = start(&world, &coordinator, &cluster, &[("web", &["a.test"])]).await;
    eventually("the first lease result", async || {
        (cluster.fences() == [None]).then_some(())
    })
    .await;
    assert_eq!(world.fakes.ca.submits(), 0);

    coordinator.held_by("node-a", 2);
    world.clock.advance(TICK);
    wait_role(&reconciler, true).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;
    assert_eq!(
        (rows[0].trigger, rows[0].status),
        (Reason::NotInstalled, RenewalStatus::Succeeded)
    );
    assert_eq!(
        cluster.fences(),
        [None, Some(2)],
        "fenced under the new term"
    );
    assert_eq!(
        reconciler.cluster().map(|v| v.role),
        Some(ClusterRole::Leader)
    );
    assert!(
        world.file("web/fullchain.pem").exists(),
        "the leader installed the cert"
    );
}

#[tokio::test]
async fn losing_the_lease_or_a_coordinator_error_stops_new_renewals_at_once() {
    let world = World::new(&[]);
    let (coordinator, cluster) = node_a("node-a", 1);
    let reconciler = start(
        &world,
        &coordinator,
        &cluster,
        &[("web", &["a.test"]), ("api", &["b.test"])],
    )
    .await;
    world.renewals_done(&reconciler, "web", 1).await;
    world.renewals_done(&reconciler, "api", 1).await;
    let submits = world.fakes.ca.submits();

    coordinator.held_by("node-b", 2);
    world.clock.advance(TICK);
    wait_role(&reconciler, false).await;
    assert_eq!(cluster.fences(), [Some(1), None]);
    let ticket = reconciler.renew(&id("web")).unwrap();
    let mut following = ticket.following;
    assert!(matches!(
        following.next().await,
        Some(RenewProgress::Forwarded { .. })
    ));
    reconciler.sweep().await;
    assert_eq!(
        world.fakes.ca.submits(),
        submits,
        "a deposed leader asked the CA"
    );

    coordinator.held_by("node-a", 3);
    world.clock.advance(TICK);
    wait_role(&reconciler, true).await;
    coordinator.fail("connection refused");
    world.clock.advance(TICK);
    wait_role(&reconciler, false).await;
    let view = reconciler.cluster().unwrap();
    assert_eq!(view.role, ClusterRole::Follower);
    let error = view.last_error.unwrap_or_default();
    assert!(error.contains("connection refused"), "{error}");
    assert_eq!(cluster.fences(), [Some(1), None, Some(3), None]);
    assert!(reconciler.renew(&id("api")).is_ok());
    assert!(!reconciler.is_busy(&id("api")));
}

#[tokio::test]
async fn a_fenced_renewal_cleans_up_without_backoff_or_alert() {
    let world = World::new(&[ChallengeKind::Http01]);
    world.fakes.ca.ask_for(vec![http01("a.test")]);
    let (coordinator, cluster) = node_a("node-a", 1);
    // The order is submitted; the leader is deposed before the CA is asked to sign.
    cluster.fence_after(1);
    let reconciler = start(&world, &coordinator, &cluster, &[("web", &["a.test"])]).await;
    let rows = world.renewals_done(&reconciler, "web", 1).await;

    assert_eq!(
        rows[0].status,
        RenewalStatus::Failed,
        "the audit row is closed"
    );
    assert!(!reconciler.is_leader(), "a fenced node follows at once");
    assert_eq!(cluster.fences(), [Some(1), None]);
    let error = rows[0].error.as_deref().unwrap_or_default();
    assert!(error.starts_with("await_issuance failed"), "{error}");
    assert!(error.contains("no longer leads under term 1"), "{error}");
    assert_eq!(world.fakes.dcv.published(), [http01("a.test")]);
    assert_eq!(
        world.fakes.dcv.removed(),
        [http01("a.test")],
        "the DCV record is removed"
    );
    assert!(world.store.pending_dcv().await.unwrap().is_empty());
    assert_eq!(reconciler.state(&id("web")).backoff, None, "no backoff");
    assert!(world.store.backoffs().await.unwrap().is_empty());
    assert!(world.fakes.alerts.events().is_empty(), "no alert");
    let issuing = condition(&reconciler, "web", ConditionType::Issuing);
    assert_eq!(issuing.status, ConditionStatus::False);
    assert!(
        reconciler
            .state(&id("web"))
            .conditions
            .iter()
            .all(|c| c.type_ != ConditionType::Failing || c.status != ConditionStatus::True),
        "not failing like a CA failure"
    );
}

#[tokio::test]
async fn a_forwarded_renewal_runs_once_on_the_leader_and_is_followed_through_the_store() {
    let world = World::new(&[]);
    let (coordinator, cluster) = node_a("node-a", 1);
    let leader = start(&world, &coordinator, &cluster, &[("web", &["a.test"])]).await;
    world.renewals_done(&leader, "web", 1).await;

    let follower_coordinator = Arc::new(FakeCoordinator::new("node-b", "node-a", 1));
    let follower_cluster = Arc::new(cluster.peer("node-b"));
    let follower = start(
        &world,
        &follower_coordinator,
        &follower_cluster,
        &[("web", &["a.test"])],
    )
    .await;
    eventually("the follower's first lease result", async || {
        (follower_cluster.fences() == [None]).then_some(())
    })
    .await;
    let submits = world.fakes.ca.submits();

    let ticket = follower.renew(&id("web")).unwrap();
    let items = collect(ticket.following).await;
    assert!(
        matches!(items.first(), Some(RenewProgress::Forwarded { leader: Some(l) }) if l == "node-a"),
        "{items:?}"
    );
    let Some(RenewProgress::Started { renewal_id }) = items.get(1) else {
        panic!("the leader's renewal is followed: {items:?}");
    };
    assert!(
        items
            .iter()
            .any(|i| matches!(i, RenewProgress::Step(s) if s.renewal_id == *renewal_id)),
        "its steps are relayed: {items:?}"
    );
    assert!(
        matches!(
            items.last(),
            Some(RenewProgress::Finished {
                status: RenewalStatus::Succeeded,
                ..
            })
        ),
        "{items:?}"
    );
    let row = world.store.renewal(*renewal_id).await.unwrap().unwrap();
    assert_eq!(row.trigger, Reason::Forced);

    // Another election round polls the store again: the request is gone, nothing reruns.
    world.clock.advance(TICK);
    eventually("another heartbeat of the leader", async || {
        (cluster.heartbeats() >= 2).then_some(())
    })
    .await;
    world.renewals_done(&leader, "web", 2).await;
    assert_eq!(cluster.taken(), 1, "taken once");
    assert_eq!(cluster.waiting(), 0);
    assert_eq!(world.fakes.ca.submits(), submits + 1, "run exactly once");
    assert_eq!(renewal_count(&world, "web").await, 2);
}

#[tokio::test]
async fn a_clean_stop_releases_the_lease() {
    let world = World::new(&[]);
    let (coordinator, cluster) = node_a("node-a", 7);
    let reconciler = start(&world, &coordinator, &cluster, &[("web", &["a.test"])]).await;
    world.renewals_done(&reconciler, "web", 1).await;
    assert!(reconciler.shutdown(Duration::from_secs(10)).await);
    assert_eq!(coordinator.released(), [7]);
    assert!(!reconciler.is_leader());
    assert_eq!(
        cluster.fences().last(),
        Some(&None),
        "fenced off on the way out"
    );
}
