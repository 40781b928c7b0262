//! The Namecheap DNS solver against the Namecheap double (the XML API's documented shapes).
//! `setHosts` replaces a whole zone, so the assertions are on the double's zone: after a
//! publish and a removal it is exactly what it was, every record of every type intact; two
//! publishes at once both survive; a domain on other nameservers and a caller off the IP
//! whitelist are refused in words an operator can act on.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rota_api::config::{Config, DcvSpec, NamecheapDcv};
use rota_api::{BackendFactory, DcvBackend, DcvChallenge};
use rota_e2e::namecheap_double::{Host, NamecheapDouble, Zone};
use rota_providers::Providers;

const USER: &str = "ada";
const KEY: &str = "nc-key-5ecret";
const IP: &str = "192.0.2.10";

/// A config whose `namecheap:` block points at `double`, calling from `client_ip`.
fn config(dir: &Path, double: &NamecheapDouble, client_ip: &str) -> Config {
    std::fs::write(dir.join("nc.key"), format!("{KEY}\n")).unwrap();
    let text = format!(
        "namecheap:\n  api_key_file: nc.key\n  username: {USER}\n  client_ip: {client_ip}\n  \
         api_url: {url}\n\
         acme: {{ directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }}\n\
         certs:\n  - id: web\n    domains: [a.example.co.uk]\n    key_path: web.key\n    \
         ca: {{ kind: acme }}\n    dcv: {{ kind: namecheap }}\n    \
         install: {{ kind: filesystem, directory: out }}\n",
        url = double.api_url()
    );
    rota_api::config::load_str(&dir.join("rota.yaml"), text)
        .unwrap()
        .config
}

fn solver(providers: &Providers, config: &Config) -> Arc<dyn DcvBackend> {
    providers
        .dcv(config, &DcvSpec::Namecheap(NamecheapDcv {}))
        .unwrap()
}

fn txt(name: &str, value: &str) -> DcvChallenge {
    DcvChallenge::Dns01 {
        record_name: name.into(),
        record_value: value.into(),
        ttl: 60,
    }
}

/// 30 records of mixed types: A, AAAA, CNAME, MX (with preferences), URL and URL301
/// redirects, FRAME, CAA, and TXT values holding `&`, `<`, `"`, `'` and `>`.
fn busy_zone() -> Zone {
    let mut hosts = vec![
        Host::new("@", "A", "192.0.2.1"),
        Host::new("www", "CNAME", "example.co.uk."),
        Host::new("@", "AAAA", "2001:db8::1"),
        Host::new("go", "URL", "http://example.com/?a=1&b=<2>"),
        Host::new("old", "URL301", "https://example.com/new?x=\"y\""),
        Host::new("framed", "FRAME", "https://example.org/"),
        Host::new("@", "CAA", "0 issue \"sectigo.com\""),
        Host::new("@", "TXT", "v=spf1 include:_spf.example.com ~all"),
        Host::new("quote", "TXT", "say \"hi\" & <bye> 'now'"),
        Host::new("_acme-challenge.a", "TXT", "someone-elses-token"),
    ];
    for (i, pref) in [(1, "5"), (2, "10"), (3, "20")] {
        let mut mx = Host::new("@", "MX", &format!("mx{i}.example.net."));
        mx.mx_pref = pref.into();
        mx.ttl = "3600".into();
        hosts.push(mx);
    }
    for i in 0..17 {
        let mut host = Host::new(&format!("h{i}"), "A", &format!("198.51.100.{i}"));
        host.ttl = (60 + i * 100).to_string();
        hosts.push(host);
    }
    assert_eq!(hosts.len(), 30);
    Zone {
        email_type: "MX".into(),
        using_our_dns: true,
        hosts,
    }
}

fn double_with_domains() -> NamecheapDouble {
    let double = NamecheapDouble::start(USER, KEY, IP);
    double.add_domain("example.co.uk", busy_zone());
    // Enough other domains that the lookup spans several getList pages.
    for i in 0..25 {
        double.add_domain(
            &format!("other{i:02}.com"),
            Zone {
                email_type: "FWD".into(),
                using_our_dns: true,
                hosts: vec![Host::new("@", "A", "192.0.2.99")],
            },
        );
    }
    double.cap_page_size(10);
    double
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn publish_then_remove_leaves_the_zone_exactly_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let double = double_with_domains();
    let before = double.zone("example.co.uk");
    let config = config(dir.path(), &double, IP);
    let dcv = solver(&Providers::new(), &config);
    let ours = txt("_acme-challenge.a.example.co.uk.", "rota-token");

    runtime().block_on(dcv.publish(&ours)).unwrap();
    let published = double.zone("example.co.uk");
    assert_eq!(published.hosts.len(), 31, "{published:?}");
    assert_eq!(
        &published.hosts[..30],
        &before.hosts[..],
        "every record written back as read"
    );
    let added = &published.hosts[30];
    assert_eq!(
        (
            added.name.as_str(),
            added.kind.as_str(),
            added.address.as_str()
        ),
        ("_acme-challenge.a", "TXT", "rota-token")
    );
    assert_eq!(published.email_type, "MX");
    let lookups = double
        .calls()
        .iter()
        .filter(|c| *c == "namecheap.domains.getlist")
        .count();
    assert!(
        lookups >= 3,
        "the domain list was followed over its pages: {:?}",
        double.calls()
    );

    // Publishing again changes nothing; removing twice is fine.
    runtime().block_on(dcv.publish(&ours)).unwrap();
    assert_eq!(double.zone("example.co.uk").hosts.len(), 31);
    runtime().block_on(async {
        dcv.remove(&ours).await.unwrap();
        dcv.remove(&ours).await.unwrap();
    });
    assert_eq!(
        double.zone("example.co.uk"),
        before,
        "the zone is exactly what it was"
    );
    let sets = double
        .calls()
        .iter()
        .filter(|c| *c == "namecheap.domains.dns.sethosts")
        .count();
    assert_eq!(
        sets,
        2,
        "one write to publish, one to remove: {:?}",
        double.calls()
    );
}

#[test]
fn two_publishes_for_sans_of_one_domain_both_survive() {
    let dir = tempfile::tempdir().unwrap();
    let double = double_with_domains();
    // Both reads would see the zone without the other's record if they were not serialized.
    double.host_latency(Duration::from_millis(300));
    let config = config(dir.path(), &double, IP);
    let providers = Providers::new();
    let (first, second) = (solver(&providers, &config), solver(&providers, &config));
    let a = txt("_acme-challenge.a.example.co.uk", "token-a");
    let b = txt("_acme-challenge.b.example.co.uk", "token-b");
    runtime().block_on(async {
        let (ra, rb) = tokio::join!(first.publish(&a), second.publish(&b));
        ra.unwrap();
        rb.unwrap();
    });
    let zone = double.zone("example.co.uk");
    for (name, value) in [
        ("_acme-challenge.a", "token-a"),
        ("_acme-challenge.b", "token-b"),
    ] {
        assert!(
            zone.hosts
                .iter()
                .any(|h| h.name == name && h.address == value),
            "{name} = {value} was lost: {zone:?}"
        );
    }
    runtime().block_on(async {
        let (ra, rb) = tokio::join!(first.remove(&a), second.remove(&b));
        ra.unwrap();
        rb.unwrap();
    });
    assert_eq!(double.zone("example.co.uk"), busy_zone());
}

#[test]
fn a_caller_off_the_whitelist_is_told_which_ip_to_whitelist() {
    let dir = tempfile::tempdir().unwrap();
    let double = double_with_domains();
    let config = config(dir.path(), &double, "203.0.113.77");
    let err = runtime()
        .block_on(
            solver(&Providers::new(), &config).publish(&txt("_acme-challenge.example.co.uk", "v")),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("error 1011150: Invalid request IP: 203.0.113.77"),
        "{err}"
    );
    assert!(err.contains("whitelist 203.0.113.77"), "{err}");
    assert!(!err.contains(KEY), "{err}");
    assert_eq!(double.zone("example.co.uk"), busy_zone());
}

#[test]
fn a_wrong_api_key_is_refused_with_advice_and_read_again_at_each_call() {
    let dir = tempfile::tempdir().unwrap();
    let double = double_with_domains();
    let config = config(dir.path(), &double, IP);
    let dcv = solver(&Providers::new(), &config);
    std::fs::write(dir.path().join("nc.key"), "not-the-key\n").unwrap();
    let ours = txt("_acme-challenge.example.co.uk", "v");
    let err = runtime()
        .block_on(dcv.publish(&ours))
        .unwrap_err()
        .to_string();
    assert!(err.contains("error 1011102: API Key is invalid"), "{err}");
    assert!(err.contains("check `namecheap.api_key_file`"), "{err}");
    assert!(!err.contains("not-the-key"), "{err}");
    // The rotated-back key is picked up without rebuilding the solver.
    std::fs::write(dir.path().join("nc.key"), format!("{KEY}\n")).unwrap();
    runtime().block_on(dcv.publish(&ours)).unwrap();
}

#[test]
fn a_domain_on_other_nameservers_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let double = double_with_domains();
    let mut elsewhere = busy_zone();
    elsewhere.using_our_dns = false;
    double.add_domain("elsewhere.com", elsewhere.clone());
    let config = config(dir.path(), &double, IP);
    let err = runtime()
        .block_on(
            solver(&Providers::new(), &config).publish(&txt("_acme-challenge.elsewhere.com", "v")),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("elsewhere.com does not use Namecheap's DNS (IsUsingOurDNS=false)"),
        "{err}"
    );
    assert_eq!(double.zone("elsewhere.com"), elsewhere);
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let double = double_with_domains();
    double.fail_next(503);
    double.fail_next(429);
    let config = config(dir.path(), &double, IP);
    runtime()
        .block_on(
            solver(&Providers::new(), &config).publish(&txt("_acme-challenge.example.co.uk", "v")),
        )
        .unwrap();
    let zone = double.zone("example.co.uk");
    assert!(
        zone.hosts
            .iter()
            .any(|h| h.name == "_acme-challenge" && h.address == "v"),
        "{zone:?}"
    );
}
