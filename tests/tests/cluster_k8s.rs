//! The Kubernetes `Lease` coordinator against the API server double
//! (`rota_e2e::kube_double`, whose Leases follow the resource-version rules of the API
//! concepts page): several nodes, built from a `cluster:` block as rotad would build them,
//! compete for one Lease. Each scenario is checked by what the double stores (holder,
//! `leaseTransitions`, `resourceVersion`), not only by what the coordinators return.

use std::time::{Duration, Instant};

use rota_api::cluster::{ClusterCoordinator, Lease};
use rota_api::config::{ClusterConfig, Coordinator};
use rota_e2e::kube_double::KubeDouble;
use rota_providers::cluster::k8s_lease::K8sLeaseCoordinator;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const NS: &str = "apps";
const NAME: &str = "rota-leader";

/// A node competing for the double's Lease with a lease of `lease_seconds`.
async fn node(kube: &KubeDouble, id: &str, lease_seconds: u64) -> K8sLeaseCoordinator {
    let cluster = ClusterConfig {
        enabled: true,
        node_id: id.to_owned(),
        lease_seconds,
        coordinator: Coordinator::KubernetesLease,
        namespace: Some(NS.to_owned()),
        lease_name: NAME.to_owned(),
        kubeconfig_path: Some(kube.kubeconfig_path()),
    };
    K8sLeaseCoordinator::from_config(&cluster)
        .await
        .expect("the coordinator builds")
}

/// What the double stores: `(holder, leaseTransitions, resourceVersion)`.
fn stored(kube: &KubeDouble) -> (String, i64, String) {
    let lease = kube.lease(NS, NAME).expect("the Lease exists");
    (
        lease["spec"]["holderIdentity"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        lease["spec"]["leaseTransitions"]
            .as_i64()
            .expect("leaseTransitions"),
        lease["metadata"]["resourceVersion"]
            .as_str()
            .expect("resourceVersion")
            .to_owned(),
    )
}

/// A spec as another client would write it: held by `holder`, renewed `age` ago.
fn spec_held_by(holder: &str, age: Duration, seconds: i32, transitions: i32) -> Value {
    let renewed = (OffsetDateTime::now_utc() - age)
        .format(&Rfc3339)
        .expect("RFC 3339");
    json!({
        "holderIdentity": holder, "leaseDurationSeconds": seconds,
        "acquireTime": renewed, "renewTime": renewed, "leaseTransitions": transitions,
    })
}

/// How many requests of `method` the double received.
fn count(kube: &KubeDouble, method: &str) -> usize {
    kube.requests()
        .iter()
        .filter(|(m, _, _)| m == method)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn exactly_one_of_three_nodes_holds_the_lease_and_refreshes_keep_its_term() {
    let kube = KubeDouble::start();
    let nodes = [
        node(&kube, "a", 30).await,
        node(&kube, "b", 30).await,
        node(&kube, "c", 30).await,
    ];
    assert_eq!(nodes[0].current().await.expect("read"), None);

    let (a, b, c) = tokio::join!(
        nodes[0].acquire_or_refresh(),
        nodes[1].acquire_or_refresh(),
        nodes[2].acquire_or_refresh(),
    );
    let seen: Vec<Lease> = [a, b, c].into_iter().map(|r| r.expect("acquire")).collect();
    let holders: Vec<&str> = nodes
        .iter()
        .zip(&seen)
        .filter(|(n, l)| l.holder == n.node_id())
        .map(|(n, _)| n.node_id())
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "exactly one node is told it holds the lease: {seen:?}"
    );
    let winner = holders[0];
    assert!(
        seen.iter().all(|l| l.holder == winner && l.term == 1),
        "{seen:?}"
    );
    let (holder, transitions, created) = stored(&kube);
    assert_eq!((holder.as_str(), transitions), (winner, 1));
    // However the three interleave, only the first write creates the Lease; a later `POST`
    // meets AlreadyExists (`a_create_racing_another_create_reports_the_winner` forces that race).
    assert!((1..=3).contains(&count(&kube, "POST")));
    assert_eq!(
        count(&kube, "PUT"),
        0,
        "the losers left the live lease alone"
    );

    let leader = nodes
        .iter()
        .find(|n| n.node_id() == winner)
        .expect("leader");
    let first = seen[0].expires_at;
    let mut version = created.parse::<u64>().expect("numeric resourceVersion");
    for _ in 0..2 {
        let refreshed = leader.acquire_or_refresh().await.expect("refresh");
        assert_eq!((refreshed.holder.as_str(), refreshed.term), (winner, 1));
        assert!(refreshed.expires_at >= first);
        let (holder, transitions, now) = stored(&kube);
        assert_eq!(
            (holder.as_str(), transitions),
            (winner, 1),
            "a refresh keeps the term"
        );
        let now = now.parse::<u64>().expect("numeric resourceVersion");
        assert!(now > version, "each refresh is a write");
        version = now;
    }
    for other in nodes.iter().filter(|n| n.node_id() != winner) {
        let seen = other.acquire_or_refresh().await.expect("standby");
        assert_eq!((seen.holder.as_str(), seen.term), (winner, 1));
    }
    assert_eq!(stored(&kube).2, version.to_string(), "standbys never write");
}

#[tokio::test]
async fn a_holder_that_stops_refreshing_loses_the_lease_after_its_length() {
    let kube = KubeDouble::start();
    let a = node(&kube, "a", 2).await;
    let b = node(&kube, "b", 2).await;
    let held = a.acquire_or_refresh().await.expect("a takes it");
    assert_eq!((held.holder.as_str(), held.term), ("a", 1));
    let early = b.acquire_or_refresh().await.expect("b stands by");
    assert_eq!(early, held, "b leaves a's live lease alone");

    // `a` stops refreshing; `b` tries as the election loop would, until the lease lapses.
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        let seen = b.acquire_or_refresh().await.expect("b tries");
        if seen.holder == "b" {
            break seen;
        }
        assert_eq!(seen, held, "a's lease stands until it lapses");
        assert!(Instant::now() < deadline, "b never took the lapsed lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        OffsetDateTime::now_utc() >= held.expires_at,
        "b took the lease only after a's lapsed"
    );
    assert_eq!(taken.term, 2, "the lease passed to another node");
    assert_eq!(stored(&kube).0, "b");
    assert_eq!(stored(&kube).1, 2);

    let late = a.acquire_or_refresh().await.expect("a comes back");
    assert_eq!(
        (late.holder.as_str(), late.term),
        ("b", 2),
        "a does not take it back"
    );
}

#[tokio::test]
async fn a_released_lease_is_taken_at_once_with_the_next_term() {
    let kube = KubeDouble::start();
    let a = node(&kube, "a", 30).await;
    let b = node(&kube, "b", 30).await;
    let held = a.acquire_or_refresh().await.expect("a takes it");
    assert_eq!(b.acquire_or_refresh().await.expect("b waits").holder, "a");

    a.release(held.term).await.expect("release");
    let (holder, transitions, released) = stored(&kube);
    assert_eq!(
        (holder.as_str(), transitions),
        ("", 1),
        "released: holder cleared, term kept"
    );
    assert_eq!(a.current().await.expect("read").expect("lease").holder, "");

    let taken = b.acquire_or_refresh().await.expect("b takes it");
    assert_eq!((taken.holder.as_str(), taken.term), ("b", 2));
    let (holder, transitions, version) = stored(&kube);
    assert_eq!((holder.as_str(), transitions), ("b", 2));
    assert_ne!(version, released);

    // Neither a stale term nor a node that does not hold it can release b's lease.
    a.release(held.term).await.expect("a no longer holds it");
    b.release(held.term)
        .await
        .expect("b holds it under another term");
    assert_eq!(stored(&kube), ("b".to_owned(), 2, version));
}

#[tokio::test]
async fn a_write_landing_between_read_and_update_wins_and_is_reported() {
    let kube = KubeDouble::start();
    // A lease long lapsed, so `b` reads it as free and sends a PUT...
    kube.seed_lease(
        NS,
        NAME,
        spec_held_by("old", Duration::from_secs(3600), 15, 4),
    );
    // ...but `c` takes it between b's GET and b's PUT.
    kube.interleave_lease_write(NS, NAME, spec_held_by("c", Duration::ZERO, 15, 5));
    let b = node(&kube, "b", 15).await;
    let seen = b.acquire_or_refresh().await.expect("b competes");
    assert_eq!(
        (seen.holder.as_str(), seen.term),
        ("c", 5),
        "b reports c's lease"
    );
    assert_eq!(
        count(&kube, "PUT"),
        1,
        "b's one conditional write was refused"
    );
    let (holder, transitions, version) = stored(&kube);
    assert_eq!(
        (holder.as_str(), transitions),
        ("c", 5),
        "b did not claim it"
    );
    assert_eq!(version, "2", "nothing was written after c's write");
}

#[tokio::test]
async fn a_create_racing_another_create_reports_the_winner() {
    let kube = KubeDouble::start();
    kube.interleave_lease_write(NS, NAME, spec_held_by("c", Duration::ZERO, 15, 1));
    let b = node(&kube, "b", 15).await;
    let seen = b.acquire_or_refresh().await.expect("b competes");
    assert_eq!((seen.holder.as_str(), seen.term), ("c", 1));
    assert_eq!(stored(&kube), ("c".to_owned(), 1, "1".to_owned()));
}

#[tokio::test]
async fn another_nodes_live_lease_is_left_untouched() {
    let kube = KubeDouble::start();
    kube.seed_lease(NS, NAME, spec_held_by("other", Duration::ZERO, 3600, 7));
    let before = kube.lease(NS, NAME).expect("seeded");
    let a = node(&kube, "a", 15).await;
    let seen = a.acquire_or_refresh().await.expect("a stands by");
    assert_eq!((seen.holder.as_str(), seen.term), ("other", 7));
    a.release(7).await.expect("nothing to release");
    assert_eq!(
        kube.lease(NS, NAME),
        Some(before),
        "object and resourceVersion unchanged"
    );
    assert_eq!(count(&kube, "PUT") + count(&kube, "POST"), 0);
}

#[tokio::test]
async fn a_forbidden_lease_names_the_rbac_rule_to_add() {
    let kube = KubeDouble::start();
    kube.forbid_leases();
    let a = node(&kube, "a", 15).await;
    let err = a.acquire_or_refresh().await.expect_err("RBAC denies it");
    let text = err.to_string();
    for part in [
        "Lease apps/rota-leader",
        "forbidden",
        "`get`, `create` and `update` on `leases` in API group `coordination.k8s.io` in namespace `apps`",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(kube.lease(NS, NAME).is_none());
}
