//! ACME end to end with real peers: the real rotad and rota CLI, pebble as the CA,
//! pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1) and a real nginx serving
//! the webroot on the port pebble validates HTTP-01 against. Assertions are on what the peers
//! saw: nginx's access log, chains that `openssl verify` accepts under the root pebble's
//! management interface hands out, and the files left in the webroot.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::time::Duration;

use rota_e2e::acme_peers::AcmePeers as Peers;
use rota_e2e::pebble::PebbleOptions;
use rota_e2e::{Rotad, cert_pubkey, key_pubkey, sans_of, serial_hex, serial_of, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// pebble's example EAB key pair (Debian's `pebble-config-external-account-bindings.json`).
const EAB_KID: &str = "kid-1";
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
const OTHER_KEY: &str = "b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH";

fn wait_installed(rotad: &Rotad) -> String {
    serial_of(&rotad.wait_installed("web"))
}

/// What is left under `.well-known/acme-challenge/` in `webroot`.
fn challenge_files(webroot: &Path) -> Vec<String> {
    let dir = webroot.join(".well-known/acme-challenge");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

fn describe(rotad: &Rotad) -> Value {
    serde_json::from_str(&rotad.rota_ok(&["describe", "cert", "web", "-o", "json"]))
        .expect("describe json")
}

fn failing_condition(detail: &Value) -> Value {
    let conditions = detail["conditions"].as_array().expect("conditions");
    let failing = conditions.iter().find(|c| c["type"] == "Failing");
    failing.cloned().expect("a Failing condition")
}

/// The newest renewal once it has finished.
fn finished_renewal(rotad: &Rotad) -> Value {
    wait_for("a finished renewal", WAIT, || {
        let renewals = describe(rotad)["renewals"].as_array()?.clone();
        let newest = renewals.first()?;
        newest["finished_at"].is_string().then(|| newest.clone())
    })
}

#[test]
fn http01_is_validated_through_nginx_and_the_chain_verifies_under_pebbles_root() {
    let peers = Peers::start(PebbleOptions::default());
    let rotad = peers.rotad();
    wait_installed(&rotad);
    peers.verify_chain(&rotad);

    let cert = rotad.path("installed/web/cert.pem");
    assert_eq!(cert_pubkey(&cert), key_pubkey(&rotad.path("keys/web.key")));
    let sans = sans_of(&cert);
    assert!(sans.contains("DNS:web.rota.test"), "{sans}");

    let access = peers.nginx.access_log();
    let fetched: Vec<&str> = access
        .lines()
        .filter(|l| l.starts_with("GET /.well-known/acme-challenge/"))
        .collect();
    assert!(
        !fetched.is_empty() && fetched.iter().all(|l| l.ends_with(" 200")),
        "pebble fetched the token from nginx and got it:\n{access}"
    );
    assert_eq!(
        challenge_files(peers.served.path()),
        Vec::<String>::new(),
        "the token is removed"
    );
    let log = rotad.rota_ok(&["log", "web"]);
    for step in ["publish_dcv", "await_issuance", "remove_dcv", "install"] {
        assert!(log.contains(step), "`rota log` lists {step}:\n{log}");
    }
}

#[test]
fn three_renewals_keep_the_key_and_change_the_serial() {
    let peers = Peers::start(PebbleOptions::default());
    let rotad = peers.rotad();
    let mut serials = HashSet::from([wait_installed(&rotad)]);
    let (cert, key) = (
        rotad.path("installed/web/cert.pem"),
        rotad.path("keys/web.key"),
    );
    let first_key = key_pubkey(&key);
    for round in 1..=3 {
        let renewed = rotad.rota_ok(&["renew", "web"]);
        assert!(renewed.contains("installed serial"), "{renewed}");
        assert!(
            serials.insert(serial_of(&cert)),
            "renewal {round} installed a new serial"
        );
        assert_eq!(
            cert_pubkey(&cert),
            first_key,
            "renewal {round} kept the key"
        );
    }
    assert_eq!(
        key_pubkey(&key),
        first_key,
        "the key file was never replaced"
    );
    peers.verify_chain(&rotad);
}

#[test]
fn eab_with_the_right_key_issues_and_a_wrong_key_fails_with_a_clear_error() {
    let peers = Peers::start(PebbleOptions::default().eab_key(EAB_KID, EAB_KEY));
    let keys = tempfile::tempdir().expect("key dir");
    let eab = |key: &str| {
        let path = keys.path().join(format!("{}.hmac", &key[..8]));
        fs::write(&path, key).expect("write the HMAC key");
        format!(
            "  external_account_binding:\n    kid: {EAB_KID}\n    hmac_key_file: {}\n",
            path.display()
        )
    };
    let right = Rotad::start(&peers.config(peers.served.path(), &eab(EAB_KEY)));
    wait_installed(&right);
    peers.verify_chain(&right);

    let wrong = Rotad::start(&peers.config(peers.served.path(), &eab(OTHER_KEY)));
    let failed = finished_renewal(&wrong);
    assert_eq!(failed["status"], "failed", "{failed}");
    let failing = failing_condition(&describe(&wrong));
    assert_eq!(failing["status"], "True", "{failing}");
    let message = failing["message"].as_str().expect("message");
    // pebble: `urn:ietf:params:acme:error:unauthorized: external account binding JWS
    // verification error`, behind rota's "creating the ACME account".
    for expected in [
        "creating the ACME account",
        "unauthorized",
        "external account binding",
    ] {
        assert!(
            message.contains(expected),
            "the condition says {expected}: {message}"
        );
    }
    let log = wrong.rota_ok(&["log", "web"]);
    assert!(
        log.contains("✗ submit_order") && log.contains("external account binding"),
        "`rota log` shows the refused binding:\n{log}"
    );
    assert!(!wrong.path("installed/web/cert.pem").exists());
    assert!(
        !wrong.path("acme/account.json").exists(),
        "no account was saved"
    );
}

#[test]
fn fifty_renewals_in_a_row_succeed_while_pebble_rejects_30_percent_of_nonces() {
    let peers = Peers::start(PebbleOptions::default().nonce_reject_percent(30));
    let rotad = peers.rotad();
    let cert = rotad.path("installed/web/cert.pem");
    let mut serials = HashSet::from([wait_installed(&rotad)]);
    for round in 1..=50 {
        let renewed = rotad.rota_ok(&["renew", "web"]);
        assert!(renewed.contains("installed serial"), "{renewed}");
        assert!(
            serials.insert(serial_of(&cert)),
            "renewal {round} installed a new serial"
        );
    }
    // pebble logs every request, not its rejections: a rejected finalize is sent again.
    let log = peers.pebble.log();
    let issued = log.matches("Issued certificate serial").count();
    let finalizes = log.matches("POST /finalize-order/").count();
    assert_eq!(issued, 51, "pebble issued every cert once");
    assert!(
        finalizes > issued,
        "pebble rejected some finalize requests' nonces ({finalizes} sent for {issued} certs)"
    );
    peers.verify_chain(&rotad);
}

#[test]
fn a_challenge_that_cannot_validate_fails_cleanly_with_pebbles_problem_and_a_backoff() {
    let peers = Peers::start(PebbleOptions::default());
    // rota writes its tokens where nginx does not look: pebble gets a 404.
    let unserved = tempfile::tempdir().expect("webroot");
    let rotad = Rotad::start(&peers.config(unserved.path(), ""));
    assert_eq!(finished_renewal(&rotad)["status"], "failed");

    let renew = rotad.rota(&["renew", "web"]);
    assert_eq!(renew.status.code(), Some(1), "{renew:?}");
    let log = rotad.rota_ok(&["log", "web"]);
    assert!(
        log.contains("urn:ietf:params:acme:error:unauthorized") && log.contains("404"),
        "`rota log` carries pebble's problem:\n{log}"
    );
    assert!(log.contains("web.rota.test"), "and the identifier:\n{log}");
    assert!(
        log.contains("✓ publish_dcv") && log.contains("✓ remove_dcv"),
        "the token was published, then taken down:\n{log}"
    );
    assert_eq!(
        challenge_files(unserved.path()),
        Vec::<String>::new(),
        "no token is left"
    );
    let misses = peers.nginx.access_log();
    assert!(
        misses
            .lines()
            .any(|l| l.starts_with("GET /.well-known/acme-challenge/") && l.ends_with(" 404")),
        "pebble asked nginx and got a 404:\n{misses}"
    );

    let detail = describe(&rotad);
    let failing = failing_condition(&detail);
    assert_eq!(failing["status"], "True", "{failing}");
    assert!(
        failing["message"]
            .as_str()
            .is_some_and(|m| m.contains("next automatic attempt")),
        "{failing}"
    );
    assert!(
        failing["message"]
            .as_str()
            .is_some_and(|m| m.contains("urn:ietf:params:acme:error:unauthorized")),
        "the condition carries pebble's problem: {failing}"
    );
    assert!(
        detail["backoff"]["failures"].as_u64() >= Some(1),
        "{detail}"
    );
    let text = rotad.rota_ok(&["describe", "cert", "web"]);
    assert!(
        text.contains("Failing") && text.contains("in a row; next automatic attempt"),
        "`rota describe` shows the failure and the backoff:\n{text}"
    );
    assert!(!rotad.path("installed/web/cert.pem").exists());
}

#[test]
fn revoke_superseded_is_audited_and_a_replacement_is_installed() {
    let peers = Peers::start(PebbleOptions::default());
    let rotad = peers.rotad();
    let revoked = wait_installed(&rotad);
    let serial = serial_hex(&rotad.path("installed/web/cert.pem"));

    let out = rotad.rota_ok(&["revoke", "web", "--reason", "superseded"]);
    assert!(
        out.to_lowercase().contains(&serial),
        "revoke names the serial: {out}"
    );
    let cert = rotad.path("installed/web/cert.pem");
    wait_for("the replacement", WAIT, || {
        (serial_of(&cert) != revoked).then_some(())
    });
    peers.verify_chain(&rotad);

    // `revoked web serial … (audit N); a replacement is being issued …`
    let audit = out
        .split_once("(audit ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or_else(
            || panic!("revoke names its audit row: {out}"),
            |(id, _)| id.to_owned(),
        );
    let log = rotad.rota_ok(&["log", "web", "--renewal", &audit]);
    assert!(log.contains("Trigger:  Revoked"), "{log}");
    assert!(
        log.contains("✓ revoke") && log.contains("superseded"),
        "{log}"
    );
    let triggers: Vec<Value> = describe(&rotad)["renewals"]
        .as_array()
        .expect("renewals")
        .iter()
        .map(|r| r["trigger"].clone())
        .collect();
    assert_eq!(
        triggers,
        ["Revoked", "Revoked", "NotInstalled"],
        "issued, revoked, replaced"
    );
    let status = peers.pebble.cert_status(&serial);
    assert_eq!(
        (&status["Status"], &status["Reason"]),
        (&json!("Revoked"), &json!(4)),
        "pebble holds the cert revoked as superseded (RFC 5280 code 4): {status}"
    );
    assert_eq!(
        peers.pebble.cert_status(&serial_hex(&cert))["Status"],
        "Valid"
    );
}
