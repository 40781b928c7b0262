//! Webhook alerts against a local receiver: the envelope exactly as the configuration
//! reference gives it, the bearer token, the timeout, retries of 5xx only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rota_api::config::{AlertSpec, Config, WebhookAlert};
use rota_api::{
    AlertBackend, AlertDetails, AlertEvent, AlertKind, BackendError, BackendFactory, CertId,
    SecretSource,
};
use rota_e2e::webhook::WebhookReceiver;
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
