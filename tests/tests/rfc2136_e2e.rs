//! A wildcard cert proved with `dcv: { kind: rfc2136 }`, end to end with real peers: the real
//! rotad updates a real BIND 9 over TSIG, pebble validates DNS-01 by asking that BIND
//! (`-dnsserver`), and the readiness check asks BIND too: `daemon.dns_propagation` names a
//! pebble-challtestsrv that never holds the records, so a check that asked it would time out.
//! Observed: the installed cert's SANs, BIND's update log, and `dig` finding nothing left.

use std::time::Duration;

use rota_e2e::bind::{Bind, KEY_NAME};
use rota_e2e::pebble::{ChallTestSrv, Pebble, PebbleOptions};
use rota_e2e::{Rotad, assert_chain_verifies, sans_of, wait_for};

const ZONE: &str = "example.test";
const CHALLENGE_NAME: &str = "_acme-challenge.example.test";
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn a_wildcard_cert_is_issued_through_bind_and_its_records_are_removed() {
    let bind = Bind::start(ZONE);
    let decoy_dns = ChallTestSrv::start();
    let pebble = Pebble::start(&PebbleOptions::default().dns_server(bind.addr()));
    let secrets = tempfile::tempdir().expect("temp dir");
    let secret = secrets.path().join("tsig.key");
    bind.write_secret_file(&secret);
    let config = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  \
         dns_propagation: {{ nameservers: ['{decoy}'], timeout_seconds: 30, interval_seconds: 1 }}\n\
         acme:\n  directory_url: {url}\n  account_credentials_file: {{dir}}/acme/account.json\n  \
         ca_bundle_file: {bundle}\n\
         certs:\n  - id: web\n    domains: ['*.{ZONE}', {ZONE}]\n    key_path: {{dir}}/keys/web.key\n    \
         ca: {{ kind: acme }}\n    dcv:\n      kind: rfc2136\n      server: {server}\n      \
         zone: {ZONE}\n      tsig_key_name: {KEY_NAME}\n      tsig_algorithm: hmac-sha256\n      \
         tsig_secret_file: {secret}\n    \
         install: {{ kind: filesystem, directory: {{dir}}/installed/web }}\n",
        decoy = decoy_dns.dns_addr(),
        url = pebble.directory_url(),
        bundle = pebble.ca_bundle_path().display(),
        server = bind.addr(),
        secret = secret.display(),
    );
    let rotad = Rotad::start(&config);
    let cert = rotad.path("installed/web/cert.pem");
    wait_for("the wildcard cert to be installed", WAIT, || {
        cert.exists().then_some(())
    });

    let sans = sans_of(&cert);
    assert!(
        sans.contains("DNS:*.example.test") && sans.contains("DNS:example.test"),
        "{sans}"
    );
    let root = secrets.path().join("pebble-roots.pem");
    std::fs::write(&root, pebble.issuer_roots_pem()).expect("write pebble's roots");
    assert_chain_verifies(&root, &rotad.path("installed/web"));

    let log = bind.log();
    let adds = log
        .matches(&format!("adding an RR at '{CHALLENGE_NAME}' TXT"))
        .count();
    let deletes = log
        .matches(&format!("deleting an RR at {CHALLENGE_NAME} TXT"))
        .count();
    assert_eq!(
        (adds, deletes),
        (2, 2),
        "two values were added and deleted:\n{log}"
    );
    assert!(
        bind.txt(CHALLENGE_NAME).is_empty(),
        "no TXT record is left: {:?}",
        bind.txt(CHALLENGE_NAME)
    );
    let audit = rotad.rota_ok(&["log", "web"]);
    assert!(
        audit.contains(&format!("answered by {}", bind.addr())),
        "the readiness check asked BIND:\n{audit}"
    );
}
