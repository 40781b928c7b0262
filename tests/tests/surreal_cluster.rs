//! The cluster's side of the SurrealDB store against a real SurrealDB server, with each node
//! its own connection: one lease holder at a time, terms that rise only on a change of
//! holder, a fence that stops a deposed leader, and live news of issued certs and requests.

use std::time::Duration;

use rota_api::CertId;
use rota_api::cluster::ClusterCoordinator;
use rota_api::status::Reason;
use rota_e2e::surreal::SurrealServer;
use rota_store::{
    AuditStore, ClusterStore, IssuedCertRow, StoreError, SurrealLockCoordinator, SurrealStore,
};
use time::OffsetDateTime;

/// The database the nodes share.
const DATABASE: &str = "cluster";

/// The store of `server`'s database, written as `node`.
async fn node(server: &SurrealServer, node: &str) -> SurrealStore {
    server.store(DATABASE, node).await.expect("connect")
}

fn cert(id: &str) -> CertId {
    CertId::new(id).expect("valid cert id")
}

/// A time `secs` seconds and `nanos` nanoseconds after 2025-01-01T00:00:00Z.
fn at(secs: i64, nanos: i64) -> OffsetDateTime {
    time::macros::datetime!(2025-01-01 00:00 UTC)
        + time::Duration::seconds(secs)
        + time::Duration::nanoseconds(nanos)
}

/// A coordinator with a one-second lease for `store`'s node.
fn coordinator(store: &SurrealStore) -> SurrealLockCoordinator {
    SurrealLockCoordinator::new(store, Duration::from_secs(1))
}

/// Waits (bounded) until `node`'s coordinator is handed the lease.
async fn until_held_by(coordinator: &SurrealLockCoordinator) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lease = coordinator.acquire_or_refresh().await.unwrap();
        if lease.holder == coordinator.node_id() {
            return lease.term;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never got the lease"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn issued(serial: &str) -> IssuedCertRow {
    IssuedCertRow {
        cert_id: cert("web"),
        renewal_id: 1,
        cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_owned(),
        chain_pem: String::new(),
        serial: serial.to_owned(),
        not_after: at(90 * 86_400, 0),
        issued_at: at(0, 0),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_racing_for_the_lease_elect_exactly_one() {
    let server = SurrealServer::start();
    let stores = [
        node(&server, "node-a").await,
        node(&server, "node-b").await,
        node(&server, "node-c").await,
    ];
    let coordinators: Vec<_> = stores.iter().map(coordinator).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for c in coordinators.clone() {
        tasks.spawn(async move { (c.node_id().to_owned(), c.acquire_or_refresh().await) });
    }
    let mut holders = Vec::new();
    for (node, result) in tasks.join_all().await {
        let lease = result.unwrap();
        assert_eq!(lease.term, 1, "{node}: {lease:?}");
        holders.push((node, lease.holder));
    }
    let leader = coordinators[0].current().await.unwrap().unwrap().holder;
    let claiming: Vec<_> = holders
        .iter()
        .filter(|(node, holder)| node == holder)
        .collect();
    assert!(claiming.len() <= 1, "two nodes told they lead: {holders:?}");
    assert!(
        claiming.iter().all(|(node, _)| *node == leader),
        "{holders:?} vs {leader}"
    );

    // Refreshing keeps the term and moves the expiry on; the others still see the holder.
    let holder = coordinators.iter().find(|c| c.node_id() == leader).unwrap();
    let first = holder.current().await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refreshed = holder.acquire_or_refresh().await.unwrap();
    assert_eq!(
        (refreshed.holder.as_str(), refreshed.term),
        (leader.as_str(), 1)
    );
    assert!(refreshed.expires_at > first.expires_at);
    for other in coordinators.iter().filter(|c| c.node_id() != leader) {
        assert_eq!(other.acquire_or_refresh().await.unwrap(), refreshed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lapsed_or_released_lease_passes_on_with_the_next_term() {
    let server = SurrealServer::start();
    let (a, b) = (node(&server, "node-a").await, node(&server, "node-b").await);
    let (lock_a, lock_b) = (coordinator(&a), coordinator(&b));
    assert_eq!(until_held_by(&lock_a).await, 1);
    assert_eq!(lock_b.acquire_or_refresh().await.unwrap().holder, "node-a");

    // node-a stops refreshing: after the lease, node-b takes it under term 2.
    assert_eq!(until_held_by(&lock_b).await, 2);
    assert_eq!(
        lock_a.acquire_or_refresh().await.unwrap().holder,
        "node-b",
        "the old holder does not take it back while it is live"
    );

    // A release under a stale term does nothing; under the current one it frees the lease.
    lock_b.release(1).await.unwrap();
    assert_eq!(lock_a.acquire_or_refresh().await.unwrap().holder, "node-b");
    lock_b.release(2).await.unwrap();
    let taken = lock_a.acquire_or_refresh().await.unwrap();
    assert_eq!((taken.holder.as_str(), taken.term), ("node-a", 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deposed_leader_can_neither_open_renewals_nor_record_certs() {
    let server = SurrealServer::start();
    let (a, b) = (node(&server, "node-a").await, node(&server, "node-b").await);
    let (lock_a, lock_b) = (coordinator(&a), coordinator(&b));
    let term = until_held_by(&lock_a).await;
    a.set_fence(Some(term));
    b.set_fence(None);
    a.check_fence().await.unwrap();
    let renewal = a
        .open_renewal(&cert("web"), Reason::Forced, at(0, 0))
        .await
        .unwrap();
    a.record_issued_cert(&issued("01")).await.unwrap();
    let follower = b.open_renewal(&cert("web"), Reason::Forced, at(0, 0)).await;
    assert!(
        matches!(follower, Err(StoreError::Fenced { .. })),
        "{follower:?}"
    );
    b.open_dry_run(&cert("web"), Reason::Forced, at(0, 0))
        .await
        .expect("a dry run changes nothing live, so a follower may run one");

    // node-a pauses past its lease; node-b takes over. node-a still believes it leads.
    until_held_by(&lock_b).await;
    let check = a.check_fence().await;
    let Err(StoreError::Fenced {
        term: fenced,
        detail,
        ..
    }) = check
    else {
        panic!("{check:?}");
    };
    assert_eq!(fenced, term);
    assert!(detail.contains("node-b"), "{detail}");
    assert!(matches!(
        a.open_renewal(&cert("web"), Reason::Forced, at(1, 0)).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        a.record_issued_cert(&issued("02")).await,
        Err(StoreError::Fenced { .. })
    ));
    assert_eq!(
        b.latest_issued_cert(&cert("web"))
            .await
            .unwrap()
            .unwrap()
            .serial,
        "01",
        "the deposed leader's cert never reached the store"
    );
    // Closing its own audit row is not fenced: nothing is left running.
    a.close_renewal(
        renewal.id,
        rota_api::status::RenewalStatus::Interrupted,
        Some("lost the lease"),
        at(2, 0),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn issued_certs_and_forwarded_requests_are_announced_live() {
    let server = SurrealServer::start();
    let (leader, follower) = (node(&server, "node-a").await, node(&server, "node-b").await);
    let mut issued_news = follower.watch_issued().await.unwrap();
    let mut request_news = leader.watch_requests().await.unwrap();

    leader.record_issued_cert(&issued("0a")).await.unwrap();
    let news = tokio::time::timeout(Duration::from_secs(5), issued_news.recv())
        .await
        .expect("the follower hears of the cert within seconds");
    assert_eq!(news, Some(cert("web")));

    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let id = follower.request_renewal(&cert("web"), now).await.unwrap();
    let news = tokio::time::timeout(Duration::from_secs(5), request_news.recv()).await;
    assert_eq!(news.unwrap(), Some(cert("web")));
    let taken = leader.take_renewal_requests().await.unwrap();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert_eq!(
        (
            taken[0].id,
            &taken[0].cert_id,
            taken[0].requested_by.as_str()
        ),
        (id, &cert("web"), "node-b")
    );
    assert_eq!(taken[0].requested_at, now);
    assert!(
        leader.take_renewal_requests().await.unwrap().is_empty(),
        "run once"
    );

    leader.heartbeat(now, Some(1)).await.unwrap();
    follower.heartbeat(now, None).await.unwrap();
    let nodes = follower.nodes().await.unwrap();
    let seen: Vec<_> = nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.leader_term, n.last_seen))
        .collect();
    assert_eq!(seen, [("node-a", Some(1), now), ("node-b", None, now)]);
}
