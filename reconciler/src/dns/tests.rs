//! [`DnsChecker`] against real DNS servers: `pebble-challtestsrv` for configured nameservers
//! and CNAMEs, and in-process fakes ([`fake::FakeDns`]) for the authoritative walk, which
//! needs SOA and NS records challtestsrv does not serve.

mod fake;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::*;
use fake::{FakeDns, a, ns, soa, txt};
use rota_e2e::pebble::ChallTestSrv;

const CHALLENGE: &str = "_acme-challenge.a.test";

/// A checker asking `nameservers`, with sub-second timings so the tests stay fast.
fn checker(nameservers: &[SocketAddr], timeout: Duration) -> DnsChecker {
    let mut checker = DnsChecker::new(&DnsPropagation {
        nameservers: nameservers.iter().map(ToString::to_string).collect(),
        timeout_seconds: 1,
        interval_seconds: 1,
    });
    checker.timeout = timeout;
    checker.interval = Duration::from_millis(100);
    checker.query_timeout = Duration::from_millis(500);
    checker
}

#[test]
fn settings_come_from_dns_propagation() {
    let checker = DnsChecker::new(&DnsPropagation::default());
    assert_eq!(checker.timeout, Duration::from_secs(300));
    assert_eq!(checker.interval, Duration::from_secs(5));
    assert!(checker.configured.is_empty());
    assert_eq!(checker.authoritative_port, 53);
}

#[tokio::test]
async fn bad_nameservers_and_names_are_reported() {
    let bad = DnsChecker::new(&DnsPropagation {
        nameservers: vec!["ns.example.com".into()],
        ..DnsPropagation::default()
    });
    let err = bad.wait_for_txt(CHALLENGE, "v").await.unwrap_err();
    assert!(matches!(err, DnsError::Setup { .. }), "{err}");
    assert!(err.to_string().contains("`ns.example.com`"), "{err}");
    assert!(bad.resolve_target(CHALLENGE).await.is_err());

    let srv = ChallTestSrv::start();
    let checker = checker(&[srv.dns_addr()], Duration::from_secs(1));
    for name in ["", ".", "a..test"] {
        let err = checker.wait_for_txt(name, "v").await.unwrap_err();
        assert!(
            matches!(err, DnsError::InvalidName { .. }),
            "{name:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_txt_already_there_is_confirmed_in_one_round() {
    let srv = ChallTestSrv::start();
    srv.set_txt("_acme-challenge.a.test.", "other");
    srv.set_txt("_acme-challenge.a.test.", "token-value");
    let report = checker(&[srv.dns_addr()], Duration::from_secs(5))
        .wait_for_txt(CHALLENGE, "token-value")
        .await
        .unwrap();
    assert_eq!(report.rounds, 1);
    assert_eq!(report.servers, [srv.dns_addr().to_string()]);
    assert!(report.elapsed < Duration::from_secs(1), "{report:?}");
}

#[tokio::test]
async fn a_txt_published_later_is_waited_for() {
    let srv = std::sync::Arc::new(ChallTestSrv::start());
    let management = std::sync::Arc::clone(&srv);
    let publish = tokio::task::spawn_blocking(move || {
        // Stands for a DNS provider's propagation delay.
        std::thread::sleep(Duration::from_millis(600));
        management.set_txt("_acme-challenge.a.test.", "late");
    });
    let report = checker(&[srv.dns_addr()], Duration::from_secs(10))
        .wait_for_txt("_acme-challenge.a.test.", "late")
        .await
        .unwrap();
    publish.await.unwrap();
    assert!(report.rounds > 1, "{report:?}");
    assert!(report.elapsed >= Duration::from_millis(600), "{report:?}");
}

#[tokio::test]
async fn a_txt_never_published_times_out_naming_the_server_and_its_answer() {
    let srv = ChallTestSrv::start();
    srv.set_txt("_acme-challenge.a.test.", "stale");
    let started = Instant::now();
    let err = checker(&[srv.dns_addr()], Duration::from_secs(1))
        .wait_for_txt(CHALLENGE, "fresh")
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "bounded: {waited:?}");
    assert!(matches!(err, DnsError::NotPropagated { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("{} answered TXT \"stale\"", srv.dns_addr())),
        "{message}"
    );
    assert!(message.contains("\"fresh\""), "{message}");

    // A name with no TXT at all says so.
    let err = checker(&[srv.dns_addr()], Duration::from_millis(300))
        .wait_for_txt("_acme-challenge.b.test", "fresh")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("answered no TXT record"), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_is_reported_with_the_others() {
    let srv = ChallTestSrv::start();
    srv.set_txt("_acme-challenge.a.test.", "v");
    // Nothing listens there once the socket is dropped.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap();
    let err = checker(&[srv.dns_addr(), silent], Duration::from_millis(500))
        .wait_for_txt(CHALLENGE, "v")
        .await
        .unwrap_err();
    let DnsError::NotPropagated { lagging, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(lagging.len(), 1, "only the silent server lags: {err}");
    assert_eq!(lagging[0].0, silent.to_string());
    assert!(lagging[0].1.starts_with("nothing (timed out"), "{err}");
}

#[tokio::test]
async fn a_cname_at_the_challenge_name_is_followed_into_the_delegated_zone() {
    let srv = ChallTestSrv::start();
    let checker = checker(&[srv.dns_addr()], Duration::from_secs(5));
    assert_eq!(checker.resolve_target(CHALLENGE).await.unwrap(), CHALLENGE);
    assert_eq!(
        checker
            .resolve_target("_acme-challenge.a.test.")
            .await
            .unwrap(),
        CHALLENGE,
        "a trailing dot changes nothing"
    );

    srv.set_cname("_acme-challenge.a.test.", "a-test.acme.delegated.test.");
    let target = checker.resolve_target(CHALLENGE).await.unwrap();
    assert_eq!(target, "a-test.acme.delegated.test");
    srv.set_txt("a-test.acme.delegated.test.", "v");
    let report = checker.wait_for_txt(&target, "v").await.unwrap();
    assert_eq!(report.rounds, 1);
}

#[tokio::test]
async fn cname_loops_and_overlong_chains_are_refused() {
    let srv = ChallTestSrv::start();
    let management = &srv;
    management.set_cname("_acme-challenge.a.test.", "x.test.");
    management.set_cname("x.test.", "y.test.");
    management.set_cname("y.test.", "_acme-challenge.a.test.");
    let checker = checker(&[srv.dns_addr()], Duration::from_secs(5));
    let err = checker.resolve_target(CHALLENGE).await.unwrap_err();
    let DnsError::CnameLoop { chain, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(chain, &[CHALLENGE, "x.test", "y.test", CHALLENGE]);
    assert!(err.to_string().contains("loops"), "{err}");

    for link in 0..MAX_CNAME_LINKS {
        management.set_cname(
            &format!("l{link}.long.test."),
            &format!("l{}.long.test.", link + 1),
        );
    }
    let err = checker.resolve_target("l0.long.test").await.unwrap_err();
    assert!(matches!(err, DnsError::CnameChainTooLong { .. }), "{err:?}");
}

/// A resolver stand-in knowing zone.test (SOA, three NS hosts, one of them lame), and the
/// two authoritative servers it names, on 127.0.0.2 and 127.0.0.3 at one shared port.
struct Zone {
    resolver: FakeDns,
    ns1: FakeDns,
    ns2: FakeDns,
}

impl Zone {
    async fn start() -> Self {
        let resolver = FakeDns::start(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
            .await
            .unwrap();
        resolver.add("zone.test.", soa("zone.test."));
        for host in ["ns1.zone.test.", "ns2.zone.test.", "lame.zone.test."] {
            resolver.add("zone.test.", ns(host));
        }
        resolver.add("ns1.zone.test.", a(Ipv4Addr::new(127, 0, 0, 2)));
        resolver.add("ns2.zone.test.", a(Ipv4Addr::new(127, 0, 0, 3)));
        // Authoritative servers share a port, as they share 53 in production.
        let (ns1, ns2) = loop {
            let ns1 = FakeDns::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), 0)
                .await
                .unwrap();
            let port = ns1.addr.port();
            if let Ok(ns2) = FakeDns::start(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)), port).await {
                break (ns1, ns2);
            }
        };
        Self { resolver, ns1, ns2 }
    }

    /// A checker that discovers servers through the fake resolver.
    fn checker(&self, timeout: Duration) -> DnsChecker {
        let mut checker = checker(&[], timeout);
        checker.resolver = lookup_resolver(&[self.resolver.addr]);
        checker.authoritative_port = self.ns1.addr.port();
        checker
    }
}

const IN_ZONE: &str = "_acme-challenge.www.zone.test";

#[tokio::test]
async fn every_authoritative_server_of_the_zone_must_answer() {
    let zone = Zone::start().await;
    zone.ns1.add("_acme-challenge.www.zone.test.", txt("v"));
    let add_to_ns2 = zone.ns2.adder();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        add_to_ns2("_acme-challenge.www.zone.test.", txt("v"));
    });
    let report = zone
        .checker(Duration::from_secs(10))
        .wait_for_txt(IN_ZONE, "v")
        .await
        .unwrap();
    late.await.unwrap();
    let port = zone.ns1.addr.port();
    assert_eq!(
        report.servers,
        [
            format!("ns1.zone.test (127.0.0.2:{port})"),
            format!("ns2.zone.test (127.0.0.3:{port})"),
        ],
        "the lame NS host is skipped"
    );
    assert!(report.rounds > 1, "{report:?}");

    // The walk asked for SOA from the record name up to the zone cut, then for the NS set.
    let walked: Vec<_> = zone
        .resolver
        .asked()
        .into_iter()
        .filter(|q| matches!(q.record_type, RecordType::SOA | RecordType::NS))
        .map(|q| (q.name, q.record_type))
        .collect();
    assert_eq!(
        walked,
        [
            (format!("{IN_ZONE}."), RecordType::SOA),
            ("www.zone.test.".to_owned(), RecordType::SOA),
            ("zone.test.".to_owned(), RecordType::SOA),
            ("zone.test.".to_owned(), RecordType::NS),
        ]
    );
    // Authoritative servers are asked without recursion, and only about the TXT.
    for server in [&zone.ns1, &zone.ns2] {
        let asked = server.asked();
        assert!(!asked.is_empty());
        assert!(
            asked
                .iter()
                .all(|q| !q.recursion_desired && q.record_type == RecordType::TXT)
        );
    }
    assert_eq!(
        zone.ns1.asked().len(),
        1,
        "a server that answered is not asked again"
    );
}

#[tokio::test]
async fn a_lagging_authoritative_server_is_named_on_timeout() {
    let zone = Zone::start().await;
    zone.ns1.add("_acme-challenge.www.zone.test.", txt("v"));
    zone.ns2.add("zone.test.", soa("zone.test."));
    let err = zone
        .checker(Duration::from_millis(500))
        .wait_for_txt(IN_ZONE, "v")
        .await
        .unwrap_err();
    let port = zone.ns1.addr.port();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "ns2.zone.test (127.0.0.3:{port}) answered NXDOMAIN"
        )),
        "{message}"
    );
    assert!(!message.contains("ns1.zone.test"), "{message}");
}

#[tokio::test]
async fn a_name_outside_every_zone_is_reported() {
    let zone = Zone::start().await;
    let err = zone
        .checker(Duration::from_secs(5))
        .wait_for_txt("_acme-challenge.elsewhere.example", "v")
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NoZone { .. }), "{err:?}");
}

#[tokio::test]
async fn a_truncated_answer_is_asked_again_over_tcp() {
    let zone = Zone::start().await;
    for server in [&zone.ns1, &zone.ns2] {
        server.add("_acme-challenge.www.zone.test.", txt("v"));
    }
    zone.ns2.truncate_udp();
    zone.checker(Duration::from_secs(5))
        .wait_for_txt(IN_ZONE, "v")
        .await
        .unwrap();
    let transports =
        |server: &FakeDns| -> Vec<bool> { server.asked().iter().map(|q| q.over_tcp).collect() };
    assert_eq!(transports(&zone.ns1), [false], "UDP sufficed");
    assert_eq!(
        transports(&zone.ns2),
        [false, true],
        "UDP, truncated, then TCP"
    );
}

#[tokio::test]
async fn a_solvers_own_server_is_the_only_one_asked() {
    let srv = ChallTestSrv::start();
    srv.set_txt("_acme-challenge.a.test.", "token-value");
    // The configured nameserver never answers: asking it would time out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let own = HostPort::new(&srv.dns_addr().to_string()).unwrap();
    let report = checker(&[silent.local_addr().unwrap()], Duration::from_secs(5))
        .asking_only(Some(&own))
        .wait_for_txt(CHALLENGE, "token-value")
        .await
        .unwrap();
    assert_eq!(report.servers, [srv.dns_addr().to_string()]);
    assert_eq!(report.rounds, 1, "{report:?}");

    let nowhere = HostPort::new("no-such-host.invalid:53").unwrap();
    let err = checker(&[], Duration::from_secs(5))
        .asking_only(Some(&nowhere))
        .wait_for_txt(CHALLENGE, "token-value")
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot find the address of DNS server no-such-host.invalid:53"),
        "{err}"
    );
}
