//! The Cloudflare DNS-01 solver against the Cloudflare double (the API's documented shapes),
//! and end to end: the real rotad issuing from pebble with `dcv: cloudflare`, the double
//! copying each TXT record into pebble-challtestsrv so pebble can validate it. Assertions are
//! on the double's zone: what is there after publish and after removal, and which calls it saw.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rota_api::config::{CloudflareDcv, Config, DcvSpec};
use rota_api::{BackendFactory, DcvBackend, DcvChallenge};
use rota_e2e::cloudflare_double::{CloudflareDouble, DnsRecord};
use rota_e2e::pebble::{ChallTestSrv, Pebble, PebbleOptions};
use rota_e2e::{Rotad, assert_chain_verifies, wait_for};
use rota_providers::Providers;

const TOKEN: &str = "cf-token-5ecret";

/// A config whose `cloudflare:` block points at `double`, the token in `dir/cf.token`.
fn config(dir: &Path, double: &CloudflareDouble, token: &str) -> Config {
    std::fs::write(dir.join("cf.token"), format!("{token}\n")).unwrap();
    let text = format!(
        "cloudflare:\n  api_token_file: cf.token\n  api_url: {url}\n\
         acme: {{ directory_url: 'https://ca.test/dir', account_credentials_file: acct.json }}\n\
         certs:\n  - id: web\n    domains: [a.example.com]\n    key_path: web.key\n    \
         ca: {{ kind: acme }}\n    dcv: {{ kind: cloudflare }}\n    \
         install: {{ kind: filesystem, directory: out }}\n",
        url = double.api_url()
    );
    rota_api::config::load_str(&dir.join("rota.yaml"), text)
        .unwrap()
        .config
}

fn solver(dir: &Path, double: &CloudflareDouble, token: &str) -> Arc<dyn DcvBackend> {
    let config = config(dir, double, token);
    Providers::new()
        .dcv(&config, &DcvSpec::Cloudflare(CloudflareDcv {}))
        .unwrap()
}

fn challenge(name: &str, value: &str) -> DcvChallenge {
    DcvChallenge::Dns01 {
        record_name: name.into(),
        record_value: value.into(),
        ttl: 30,
    }
}

fn txt_at<'a>(records: &'a [DnsRecord], name: &str) -> Vec<&'a str> {
    records
        .iter()
        .filter(|r| r.kind == "TXT" && r.name == name)
        .map(|r| r.content.as_str())
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn publishes_in_the_delegated_subzone_over_paged_listings_and_removes_only_its_own_record() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com", "sub.example.com"]);
    let name = "_acme-challenge.a.sub.example.com";
    for i in 0..6 {
        double.add_record("sub.example.com", "TXT", name, &format!("other-client-{i}"));
    }
    double.add_record("sub.example.com", "A", "a.sub.example.com", "192.0.2.7");
    double.add_record("example.com", "MX", "example.com", "mx.example.com");
    // Three pages of TXT records at the name: rota must look past the first to find its own.
    double.cap_page_size(3);
    let dcv = solver(dir.path(), &double, TOKEN);
    let ours = challenge(&format!("{name}."), "rota-value");

    runtime().block_on(async {
        dcv.publish(&ours).await.unwrap();
        dcv.publish(&ours).await.unwrap();
    });
    let records = double.records();
    let created: Vec<&DnsRecord> = records
        .iter()
        .filter(|r| r.content == "rota-value")
        .collect();
    assert_eq!(
        created.len(),
        1,
        "published once, reused the second time: {records:?}"
    );
    assert_eq!(
        created[0].zone_id, "zone01",
        "in the subzone, not its parent"
    );
    assert_eq!(created[0].ttl, 60, "Cloudflare's lowest TTL");
    assert!(
        double
            .calls()
            .iter()
            .any(|c| c.contains("dns_records?") && c.contains("page=3")),
        "the listing was followed to its last page: {:?}",
        double.calls()
    );

    runtime().block_on(async {
        dcv.remove(&ours).await.unwrap();
        dcv.remove(&ours).await.unwrap();
    });
    let after = double.records();
    assert_eq!(
        after.len(),
        8,
        "every other record is still there: {after:?}"
    );
    assert_eq!(txt_at(&after, name).len(), 6);
    assert!(after.iter().all(|r| r.content != "rota-value"));
}

#[test]
fn a_quoted_record_with_the_same_value_counts_as_published() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com"]);
    let name = "_acme-challenge.example.com";
    double.add_record("example.com", "TXT", name, "\"rota-value\"");
    let dcv = solver(dir.path(), &double, TOKEN);
    runtime()
        .block_on(dcv.publish(&challenge(name, "rota-value")))
        .unwrap();
    assert_eq!(txt_at(&double.records(), name), ["\"rota-value\""]);
    runtime()
        .block_on(dcv.remove(&challenge(name, "rota-value")))
        .unwrap();
    assert!(txt_at(&double.records(), name).is_empty());
}

#[test]
fn a_ca_dcv_cname_is_published_as_a_cname_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com"]);
    let dcv = solver(dir.path(), &double, TOKEN);
    let cname = DcvChallenge::DnsCname {
        record_name: "_0a1b.example.com".into(),
        target: "11aa.22bb.sectigo.com".into(),
        ttl: 300,
    };
    runtime().block_on(dcv.publish(&cname)).unwrap();
    let records = double.records();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(
        (
            record.kind.as_str(),
            record.name.as_str(),
            record.content.as_str()
        ),
        ("CNAME", "_0a1b.example.com", "11aa.22bb.sectigo.com")
    );
    runtime().block_on(dcv.remove(&cname)).unwrap();
    assert!(double.records().is_empty());
}

#[test]
fn a_bad_token_is_refused_in_cloudflare_words_without_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com"]);
    let dcv = solver(dir.path(), &double, "wrong-token-value");
    let err = runtime()
        .block_on(dcv.publish(&challenge("_acme-challenge.example.com", "v")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cloudflare: GET /zones: HTTP 403: [10000] Authentication error"),
        "{err}"
    );
    assert!(err.contains("api_token_file"), "{err}");
    assert!(!err.contains("wrong-token-value"), "{err}");
    assert!(double.records().is_empty());
}

#[test]
fn a_zone_outside_the_token_scope_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com", "example.net"]);
    double.scope_token_to(&["example.net"]);
    let dcv = solver(dir.path(), &double, TOKEN);
    let err = runtime()
        .block_on(dcv.publish(&challenge("_acme-challenge.www.example.com", "v")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no Cloudflare zone holds _acme-challenge.www.example.com"),
        "{err}"
    );
    assert!(err.contains("www.example.com, example.com"), "{err}");
}

#[test]
fn rate_limits_and_server_errors_are_retried_until_success() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com"]);
    double.fail_next(429, Some(1));
    double.fail_next(502, None);
    let dcv = solver(dir.path(), &double, TOKEN);
    runtime()
        .block_on(dcv.publish(&challenge("_acme-challenge.example.com", "v")))
        .unwrap();
    assert_eq!(
        txt_at(&double.records(), "_acme-challenge.example.com"),
        ["v"]
    );
    let zone_lookups = double
        .calls()
        .iter()
        .filter(|c| c.starts_with("GET /zones?"))
        .count();
    assert!(
        zone_lookups >= 4,
        "two refused tries, then the walk: {:?}",
        double.calls()
    );
}

#[test]
fn a_long_retry_after_is_handed_back_not_slept_through() {
    let dir = tempfile::tempdir().unwrap();
    let double = CloudflareDouble::start(TOKEN, &["example.com"]);
    double.fail_next(429, Some(3600));
    let dcv = solver(dir.path(), &double, TOKEN);
    let err = runtime()
        .block_on(dcv.publish(&challenge("_acme-challenge.example.com", "v")))
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert!(
        err.to_string()
            .contains("Please wait and consider throttling"),
        "{err}"
    );
}

/// rotad issues a wildcard cert from pebble with `dcv: cloudflare`: both names' TXT records go
/// to one record name, the double mirrors them into challtestsrv (pebble's DNS), pebble
/// validates, and afterwards the zone holds only what it held before.
#[test]
fn rotad_issues_a_wildcard_from_pebble_through_cloudflare() {
    let dns = Arc::new(ChallTestSrv::start());
    let pebble = Pebble::start(&PebbleOptions::default().dns(&dns));
    let double = CloudflareDouble::start(TOKEN, &["rota.test"]);
    double.add_record("rota.test", "MX", "rota.test", "mx.rota.test");
    let mirror_dns = Arc::clone(&dns);
    double.mirror_to(Arc::new(move |name: &str, values: &[String]| {
        mirror_dns.clear_txt(name);
        for value in values {
            mirror_dns.set_txt(name, value);
        }
    }));
    let config = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n  dns_propagation:\n    \
         nameservers: [\"{ns}\"]\n    timeout_seconds: 20\n    interval_seconds: 1\n\
         cloudflare:\n  api_token_file: env:CF_TOKEN\n  api_url: {api}\n\
         acme:\n  directory_url: {url}\n  account_credentials_file: {{dir}}/acme.json\n  \
         ca_bundle_file: {bundle}\n\
         certs:\n  - id: web\n    domains: [cf.rota.test, '*.cf.rota.test']\n    \
         key_path: {{dir}}/web.key\n    ca: {{ kind: acme }}\n    dcv: {{ kind: cloudflare }}\n    \
         install: {{ kind: filesystem, directory: {{dir}}/installed/web }}\n",
        ns = dns.dns_addr(),
        api = double.api_url(),
        url = pebble.directory_url(),
        bundle = pebble.ca_bundle_path().display(),
    );
    let rotad = Rotad::start_with_env(&config, &[("CF_TOKEN", TOKEN)]);
    let fullchain = rotad.path("installed/web/fullchain.pem");
    wait_for("the cert to be installed", Duration::from_secs(60), || {
        fullchain.exists().then_some(())
    });
    assert_chain_verifies(&pebble.issuer_roots_path(), &rotad.path("installed/web"));
    let posts = double
        .calls()
        .iter()
        .filter(|c| c.starts_with("POST "))
        .count();
    assert_eq!(posts, 2, "one TXT per name: {:?}", double.calls());
    let left = double.records();
    assert_eq!(left.len(), 1, "only the operator's MX is left: {left:?}");
    assert_eq!(left[0].kind, "MX");
    assert!(
        !rotad.log().contains(TOKEN),
        "the token never reaches the log"
    );
}
