//! Webhook alerts against a local receiver: the envelope exactly as the configuration
//! reference gives it, the bearer token, the timeout, retries of 5xx only; then the real rotad
//! announcing a failed install and its recovery, and `rota alert test`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_api::config::{AlertSpec, Config, WebhookAlert};
use rota_api::{
    AlertBackend, AlertDetails, AlertEvent, AlertKind, BackendError, BackendFactory, CertId,
    SecretSource,
};
use rota_e2e::webhook::WebhookReceiver;
use rota_e2e::{Rotad, wait_for};
use rota_providers::Providers;
use time::macros::datetime;

fn sink(spec: WebhookAlert) -> Arc<dyn AlertBackend> {
    let config: Config = serde_yaml::from_str("certs: []").expect("an empty config");
    Providers::new()
        .alert(&config, &AlertSpec::Webhook(spec))
        .expect("a webhook sink")
}

fn spec(receiver: &WebhookReceiver) -> WebhookAlert {
    WebhookAlert {
        url: receiver.url(),
        bearer_token_file: None,
        timeout_seconds: 10,
    }
}

fn event() -> AlertEvent {
    AlertEvent {
        cert_id: CertId::new("web").unwrap(),
        kind: AlertKind::ExpiryWarning,
        message: "web expires 2026-12-09T00:00:00Z (7 days left) and renewing it keeps failing"
            .into(),
        timestamp: datetime!(2026-12-01 12:00:00.25 UTC),
        details: AlertDetails::default(),
    }
}

#[tokio::test]
async fn the_envelope_is_exactly_the_reference_and_the_token_is_read_at_each_send() {
    let receiver = WebhookReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("webhook.token");
    std::fs::write(&token, "first-token\n").unwrap();
    let sink = sink(WebhookAlert {
        bearer_token_file: Some(SecretSource::File(token.clone())),
        ..spec(&receiver)
    });
    sink.dispatch(&event()).await.expect("delivered");
    std::fs::write(&token, "rotated-token\n").unwrap();
    sink.dispatch(&event()).await.expect("delivered again");

    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 2);
    assert_eq!(hooks[0].path, "/incoming/s3cr3t-path");
    assert_eq!(hooks[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(
        hooks[0].body,
        serde_json::json!({
            "cert_id": "web",
            "kind": "expiry_warning",
            "message": "web expires 2026-12-09T00:00:00Z (7 days left) and renewing it keeps failing",
            "timestamp": "2026-12-01T12:00:00Z",
        }),
        "the four fields of the reference, nothing more"
    );
    assert_eq!(
        hooks[0].authorization.as_deref(),
        Some("Bearer first-token")
    );
    assert_eq!(
        hooks[1].authorization.as_deref(),
        Some("Bearer rotated-token"),
        "a rotated token file takes effect at the next send"
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_refusals_are_not() {
    let receiver = WebhookReceiver::start();
    let sink = sink(spec(&receiver));

    receiver.answer(&[500, 503]);
    sink.dispatch(&event()).await.expect("the third try lands");
    assert_eq!(receiver.hooks().len(), 3);

    receiver.answer(&[502, 502, 502]);
    let err = sink
        .dispatch(&event())
        .await
        .expect_err("three tries, all 502");
    assert!(matches!(err, BackendError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("502"), "{err}");
    assert_eq!(receiver.hooks().len(), 6);

    receiver.answer(&[404]);
    let err = sink.dispatch(&event()).await.expect_err("404 is final");
    assert!(matches!(err, BackendError::Refused { .. }), "{err:?}");
    assert_eq!(receiver.hooks().len(), 7, "a 4xx is not retried");
    assert!(
        !err.to_string().contains("s3cr3t-path"),
        "the URL is a credential and stays out of errors: {err}"
    );
}

#[tokio::test]
async fn a_receiver_that_does_not_answer_in_time_is_a_timeout() {
    let receiver = WebhookReceiver::start();
    receiver.delay(Duration::from_secs(3));
    let sink = sink(WebhookAlert {
        timeout_seconds: 1,
        ..spec(&receiver)
    });
    let started = Instant::now();
    let err = sink
        .dispatch(&event())
        .await
        .expect_err("no answer in time");
    let took = started.elapsed();
    assert!(matches!(err, BackendError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("timed out after 1s"), "{err}");
    assert_eq!(
        receiver.hooks().len(),
        3,
        "a timeout is retried like a transport error"
    );
    assert!(
        took < Duration::from_secs(8),
        "three 1 s tries and two pauses: {took:?}"
    );
}

#[tokio::test]
async fn nobody_listening_is_unreachable() {
    let receiver = WebhookReceiver::start();
    let url = receiver.url();
    drop(receiver);
    let err = sink(WebhookAlert {
        url,
        bearer_token_file: None,
        timeout_seconds: 2,
    })
    .dispatch(&event())
    .await
    .expect_err("connection refused");
    assert!(matches!(err, BackendError::Unreachable { .. }), "{err:?}");
}

/// rotad with the cert `web` on the local CA, installed under `install`, and two webhook
/// sinks: `good` (with the bearer token in `token`) and `bad`.
fn config(install: &str, token: &Path, good: &WebhookReceiver, bad: &WebhookReceiver) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n\
         local_ca:\n  directory: {{dir}}/ca\n\
         alerts:\n  - kind: webhook\n    url: {}\n    bearer_token_file: {}\n  \
         - kind: webhook\n    url: {}\n    timeout_seconds: 2\n\
         certs:\n  - id: web\n    domains: [web.home.arpa]\n    key_path: {{dir}}/web.key\n    \
         ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {install} }}\n",
        good.url(),
        token.display(),
        bad.url()
    )
}

/// The hooks of `kind` `receiver` got so far.
fn hooks_of(receiver: &WebhookReceiver, kind: &str) -> Vec<serde_json::Value> {
    let hooks = receiver.hooks().into_iter();
    hooks
        .filter(|h| h.body["kind"] == kind)
        .map(|h| h.body)
        .collect()
}

/// Waits until `receiver` has a hook of `kind` and returns its body.
fn hook_of(receiver: &WebhookReceiver, kind: &str) -> serde_json::Value {
    wait_for(
        &format!("a `{kind}` webhook"),
        Duration::from_secs(20),
        || hooks_of(receiver, kind).into_iter().next(),
    )
}

#[test]
fn rotad_announces_a_failed_install_once_then_its_recovery_and_tests_every_sink() {
    let (good, bad) = (WebhookReceiver::start(), WebhookReceiver::start());
    bad.answer(&[500; 60]);
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("hook.token");
    std::fs::write(&token, "t0ken-value\n").unwrap();
    let rotad = Rotad::start(&config("{dir}/installed/web", &token, &good, &bad));
    wait_for("web to be installed", Duration::from_secs(20), || {
        rotad.path("installed/web/cert.pem").exists().then_some(())
    });

    // Pointed at a place it cannot write (a file where a directory should be): the CA issues,
    // the install fails, and the operator hears of it once.
    std::fs::write(rotad.path("blocked"), "not a directory").unwrap();
    let moved = config("{dir}/blocked/web", &token, &good, &bad)
        .replace("{dir}", &rotad.dir.path().display().to_string());
    std::fs::write(rotad.path("next.yaml"), moved).unwrap();
    let _ = rotad.rota_ok(&[
        "apply",
        "-f",
        &rotad.path("next.yaml").display().to_string(),
    ]);
    let failed = hook_of(&good, "install_failed");
    assert_eq!(failed["cert_id"], "web");
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("next automatic attempt"),
        "{failed}"
    );
    let hook = good
        .hooks()
        .into_iter()
        .find(|h| h.body["kind"] == "install_failed")
        .unwrap();
    assert_eq!(hook.authorization.as_deref(), Some("Bearer t0ken-value"));
    let describe = wait_for(
        "describe to show both sinks",
        Duration::from_secs(20),
        || {
            let text = rotad.rota_ok(&["describe", "cert", "web"]);
            (text.contains("1 webhook to http://127.0.0.1")).then_some(text)
        },
    );
    let alerts = describe.split("Alerts:").nth(1).unwrap_or_default();
    assert!(alerts.contains("install_failed"), "{describe}");
    assert!(alerts.contains("delivered"), "{describe}");
    assert!(alerts.contains("500 Internal Server Error"), "{describe}");
    assert!(
        !describe.contains("s3cr3t-path"),
        "no webhook path in describe: {describe}"
    );

    // A forced retry that fails again within the day is no news.
    let out = rotad.rota(&["renew", "web"]);
    assert!(!out.status.success(), "the install still fails");

    std::fs::remove_file(rotad.path("blocked")).unwrap();
    let _ = rotad.rota_ok(&["renew", "web"]);
    let recovered = hook_of(&good, "renewal_recovered");
    assert_eq!(recovered["cert_id"], "web");
    // Counted once the recovery arrived: whatever the failed retry would have sent went
    // out before the next renewal could even start.
    assert_eq!(
        hooks_of(&good, "install_failed").len(),
        1,
        "{:?}",
        good.hooks()
    );

    // `rota alert test`: one line per sink, exit 1 because the second one fails.
    let out = rotad.rota(&["alert", "test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("sink 0 (webhook to http://127.0.0.1"),
        "{stdout}"
    );
    assert!(stdout.contains("): delivered"), "{stdout}");
    assert!(
        stdout.contains("sink 1 (webhook to http://127.0.0.1"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED: webhook: "), "{stdout}");
    assert_eq!(hook_of(&good, "test")["cert_id"], "rota-alert-test");
    assert!(
        rotad
            .rota_ok(&["alert", "test", "--sink", "0"])
            .contains("delivered")
    );
    assert_eq!(
        rotad.rota(&["alert", "test", "--sink", "7"]).status.code(),
        Some(4)
    );

    // The token went to the receiver, and nowhere else.
    assert!(
        !rotad.log().contains("t0ken-value"),
        "the token is never logged"
    );
    let db = std::fs::read(rotad.path("rota.db")).unwrap_or_default();
    let wal = std::fs::read(rotad.path("rota.db-wal")).unwrap_or_default();
    let needle = b"t0ken-value";
    for file in [db, wal] {
        assert!(
            !file.windows(needle.len()).any(|w| w == needle),
            "the token is never stored"
        );
    }
}
