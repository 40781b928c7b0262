//! `dcv: { kind: rfc2136 }` against a real BIND 9: what rota publishes and removes is what
//! `dig` then reads from the server; a wrong key is refused with the server's own TSIG error.

use std::path::Path;
use std::sync::Arc;

use rota_api::config::{Config, load_str};
use rota_api::{BackendError, BackendFactory, DcvBackend, DcvChallenge};
use rota_e2e::bind::{Bind, KEY_NAME};
use rota_providers::Providers;

const ZONE: &str = "example.test";
const NAME: &str = "_acme-challenge.example.test";
/// The values of the wildcard's and the apex's challenges, which share one name.
const WILDCARD_VALUE: &str = "LPsIwTo7o8BoG0-vjCyGQGBWSVIPxI-i_X336eUOQZo";
const APEX_VALUE: &str = "Kf3nd6x8Y5W2cQbR0tZpXh9uVaJmEwLyGs1oDi4N7Ck";

/// The solver for `dcv: rfc2136` at `server`, built from a config the way rotad builds it.
fn solver(dir: &Path, server: &str, key_name: &str, secret_file: &Path) -> Arc<dyn DcvBackend> {
    let text = format!(
        "certs:\n  - id: web\n    domains: ['*.{ZONE}', {ZONE}]\n    key_path: {d}/web.key\n    \
         ca: {{ kind: local }}\n    dcv:\n      kind: rfc2136\n      server: {server}\n      \
         zone: {ZONE}\n      tsig_key_name: {key_name}\n      tsig_algorithm: hmac-sha256\n      \
         tsig_secret_file: {secret}\n    install: {{ kind: filesystem, directory: {d}/out }}\n",
        d = dir.display(),
        secret = secret_file.display(),
    );
    let config: Config = load_str(&dir.join("rota.yaml"), text)
        .unwrap_or_else(|e| panic!("{e}"))
        .config;
    let spec = config.certs[0].dcv.clone().expect("a dcv block");
    Providers::new()
        .dcv(&config, &spec)
        .expect("the solver builds")
}

fn challenge(value: &str) -> DcvChallenge {
    DcvChallenge::Dns01 {
        record_name: NAME.to_owned(),
        record_value: value.to_owned(),
        ttl: 60,
    }
}

#[tokio::test]
async fn publish_and_remove_change_only_rotas_own_values() {
    let bind = Bind::start(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tsig.key");
    bind.write_secret_file(&secret);
    let dcv = solver(dir.path(), &bind.addr().to_string(), KEY_NAME, &secret);
    assert_eq!(
        dcv.readiness_server().map(ToString::to_string),
        Some(bind.addr().to_string()),
        "the readiness check asks the server rota updates"
    );
    bind.add_foreign_txt(NAME, "someone-elses-record");

    dcv.publish(&challenge(WILDCARD_VALUE)).await.unwrap();
    assert_eq!(bind.txt(NAME), [WILDCARD_VALUE, "someone-elses-record"]);
    dcv.publish(&challenge(APEX_VALUE)).await.unwrap();
    dcv.publish(&challenge(APEX_VALUE))
        .await
        .expect("publishing again is a no-op");
    assert_eq!(
        bind.txt(NAME),
        [APEX_VALUE, WILDCARD_VALUE, "someone-elses-record"],
        "both values answer, once each, beside the foreign one"
    );

    dcv.remove(&challenge(WILDCARD_VALUE)).await.unwrap();
    assert_eq!(bind.txt(NAME), [APEX_VALUE, "someone-elses-record"]);
    dcv.remove(&challenge(WILDCARD_VALUE))
        .await
        .expect("removing what is gone succeeds");
    dcv.remove(&challenge(APEX_VALUE)).await.unwrap();
    assert_eq!(
        bind.txt(NAME),
        ["someone-elses-record"],
        "only rota's values are gone"
    );
}

#[tokio::test]
async fn a_wrong_key_is_refused_with_the_servers_tsig_error() {
    let bind = Bind::start(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let server = bind.addr().to_string();

    // The right name with another secret: the server cannot verify the MAC.
    let wrong_secret = dir.path().join("wrong.key");
    std::fs::write(
        &wrong_secret,
        "c29tZSBvdGhlciBzZWNyZXQgb2YgMzIgYnl0ZXMhIQ==\n",
    )
    .unwrap();
    let err = solver(dir.path(), &server, KEY_NAME, &wrong_secret)
        .publish(&challenge(WILDCARD_VALUE))
        .await
        .expect_err("a wrong secret is refused");
    let text = err.to_string();
    assert!(matches!(err, BackendError::Refused { .. }), "{err:?}");
    for part in [
        "rfc2136",
        server.as_str(),
        "adding TXT _acme-challenge.example.test",
        "NOTAUTH",
        "TSIG error BADSIG",
        "tsig_secret_file",
    ] {
        assert!(text.contains(part), "`{part}` missing from: {text}");
    }

    // A name the server has no key for.
    let secret = dir.path().join("tsig.key");
    bind.write_secret_file(&secret);
    let err = solver(dir.path(), &server, "no-such-key", &secret)
        .publish(&challenge(WILDCARD_VALUE))
        .await
        .expect_err("an unknown key is refused");
    let text = err.to_string();
    assert!(
        text.contains("NOTAUTH with TSIG error BADKEY") && text.contains("tsig_key_name"),
        "{text}"
    );
    assert!(
        bind.txt(NAME).is_empty(),
        "nothing was published: {:?}",
        bind.txt(NAME)
    );
    assert!(
        !text.contains(bind.secret()),
        "the secret is never in an error"
    );
}

#[tokio::test]
async fn names_outside_the_zone_a_missing_key_and_a_silent_server_fail_clearly() {
    let bind = Bind::start(ZONE);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("tsig.key");
    bind.write_secret_file(&secret);

    let dcv = solver(dir.path(), &bind.addr().to_string(), KEY_NAME, &secret);
    let outside = DcvChallenge::Dns01 {
        record_name: "_acme-challenge.other.test".to_owned(),
        record_value: APEX_VALUE.to_owned(),
        ttl: 60,
    };
    let err = dcv.publish(&outside).await.expect_err("outside the zone");
    assert!(
        err.to_string().contains("is outside zone example.test"),
        "{err}"
    );

    // A key file gone since the config was loaded: nothing is sent, and the error says why.
    let moved = dir.path().join("tsig.key.moved");
    std::fs::rename(&secret, &moved).unwrap();
    let err = dcv
        .publish(&challenge(APEX_VALUE))
        .await
        .expect_err("no key");
    assert!(matches!(err, BackendError::Invalid { .. }), "{err:?}");
    assert!(
        err.to_string().contains("cannot read tsig_secret_file"),
        "{err}"
    );
    assert!(bind.txt(NAME).is_empty(), "nothing was published");
    std::fs::rename(&moved, &secret).unwrap();

    // Nothing listens on this port: every attempt fails, and the error says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let err = solver(dir.path(), &closed, KEY_NAME, &secret)
        .publish(&challenge(APEX_VALUE))
        .await
        .expect_err("no server");
    let text = err.to_string();
    assert!(matches!(err, BackendError::Unreachable { .. }), "{err:?}");
    assert!(
        text.contains(&closed) && text.contains("(3 attempts)"),
        "{text}"
    );
}
