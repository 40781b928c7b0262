//! Email alerts against a real SMTP server (aiosmtpd): plain, STARTTLS and implicit TLS, with
//! and without a login; what arrives is checked header by header, and a refused login or an
//! untrusted server is an error that says what to fix; `rota alert test` through the real rotad.

use std::path::Path;

use rota_api::config::{AlertSpec, Config, EmailAlert, SmtpTls};
use rota_api::status::{Step, StepEvent, StepStatus};
use rota_api::{
    AlertBackend, AlertDetails, AlertEvent, AlertKind, BackendError, BackendFactory, CertId,
    DomainName, SecretSource,
};
use rota_e2e::smtp::{self, Smtp};
use rota_providers::Providers;
use time::macros::datetime;

/// An email sink for `server` as configured in `alerts:`.
fn sink(spec: EmailAlert) -> Result<std::sync::Arc<dyn AlertBackend>, BackendError> {
    let config: Config = serde_yaml::from_str("certs: []").expect("an empty config");
    Providers::new().alert(&config, &AlertSpec::Email(spec))
}

fn spec(server: &Smtp, tls: SmtpTls) -> EmailAlert {
    EmailAlert {
        smtp_host: "127.0.0.1".into(),
        smtp_port: server.port,
        tls,
        username: None,
        password_file: None,
        from: "rota <rota@example.test>".into(),
        to: vec!["oncall@example.test".into(), "boss@example.test".into()],
        // A server without TLS has no CA.
        ca_file: Some(server.ca_file()).filter(|ca| ca.exists()),
    }
}

fn with_login(spec: EmailAlert, dir: &Path, password: &str) -> EmailAlert {
    let file = dir.join("smtp.password");
    std::fs::write(&file, format!("{password}\n")).expect("write the password file");
    EmailAlert {
        username: Some("alerts".into()),
        password_file: Some(SecretSource::File(file)),
        ..spec
    }
}

/// A failed renewal of `web`, with everything an alert mail shows.
fn failure() -> AlertEvent {
    let at = datetime!(2026-12-01 12:00 UTC);
    AlertEvent {
        cert_id: CertId::new("web").unwrap(),
        kind: AlertKind::RenewalFailed,
        message: "await_issuance failed: the CA refused: CAA forbids issuance; failure 1 in a row"
            .into(),
        timestamp: at,
        details: AlertDetails {
            domains: vec![
                DomainName::new("a.test").unwrap(),
                DomainName::new("www.a.test").unwrap(),
            ],
            error: Some("await_issuance failed: the CA refused: CAA forbids issuance".into()),
            not_after: Some(datetime!(2026-12-09 00:00 UTC)),
            next_attempt_at: Some(datetime!(2026-12-01 12:10 UTC)),
            recent_steps: vec![StepEvent {
                renewal_id: 3,
                seq: 7,
                step: Step::AwaitIssuance,
                status: StepStatus::Failed,
                message: "CAA forbids issuance".into(),
                at,
            }],
        },
    }
}

#[tokio::test]
async fn starttls_with_a_login_delivers_the_alert_with_its_headers_and_body() {
    let server = Smtp::start(smtp::SmtpTls::Starttls, Some(("alerts", "hunter2")));
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(with_login(
        spec(&server, SmtpTls::Starttls),
        dir.path(),
        "hunter2",
    ))
    .unwrap();
    sink.dispatch(&failure()).await.expect("delivered");

    let mail = server.received();
    assert_eq!(mail.len(), 1, "{}", server.log());
    let mail = &mail[0];
    assert!(
        mail.tls,
        "the message went over the STARTTLS-upgraded session"
    );
    assert_eq!(mail.login.as_deref(), Some("alerts"));
    assert_eq!(mail.mail_from, "rota@example.test");
    assert_eq!(mail.rcpt_tos, ["oncall@example.test", "boss@example.test"]);
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("[rota] web: renewal failed")
    );
    assert_eq!(
        mail.header("From").as_deref(),
        Some("rota <rota@example.test>")
    );
    assert_eq!(
        mail.header("To").as_deref(),
        Some("oncall@example.test, boss@example.test")
    );
    assert!(
        mail.header("Content-Type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        mail.header("Content-Type")
    );
    let body = mail.body();
    for line in [
        "await_issuance failed: the CA refused: CAA forbids issuance; failure 1 in a row",
        "Domains:      a.test, www.a.test",
        "Error:        await_issuance failed: the CA refused: CAA forbids issuance",
        "Expires:      2026-12-09T00:00:00Z",
        "Next attempt: 2026-12-01T12:10:00Z",
        "  2026-12-01T12:00:00Z  await_issuance     failed    CAA forbids issuance",
    ] {
        assert!(body.contains(line), "{line:?} in\n{body}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_what_to_check_and_never_the_password() {
    let server = Smtp::start(smtp::SmtpTls::Starttls, Some(("alerts", "hunter2")));
    let dir = tempfile::tempdir().unwrap();
    let sink = sink(with_login(
        spec(&server, SmtpTls::Starttls),
        dir.path(),
        "wrong-pw",
    ))
    .unwrap();
    let err = sink.dispatch(&failure()).await.expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, BackendError::Refused { .. }), "{err:?}");
    assert!(text.contains("535"), "{text}");
    assert!(text.contains("password_file"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", server.port)),
        "{text}"
    );
    assert!(!text.contains("wrong-pw"), "{text}");
    assert!(server.received().is_empty());
}

#[tokio::test]
async fn a_server_whose_cert_is_not_trusted_is_refused_and_ca_file_is_named() {
    let server = Smtp::start(smtp::SmtpTls::Starttls, None);
    let untrusted = EmailAlert {
        ca_file: None,
        ..spec(&server, SmtpTls::Starttls)
    };
    let err = sink(untrusted)
        .unwrap()
        .dispatch(&failure())
        .await
        .expect_err("untrusted");
    assert!(err.to_string().contains("ca_file"), "{err}");
    assert!(
        server.received().is_empty(),
        "nothing went out in the clear"
    );
}

#[tokio::test]
async fn implicit_tls_and_a_plain_local_relay_deliver_too() {
    let smtps = Smtp::start(smtp::SmtpTls::Implicit, None);
    sink(spec(&smtps, SmtpTls::Implicit))
        .unwrap()
        .dispatch(&failure())
        .await
        .expect("delivered over SMTPS");
    assert!(smtps.received()[0].tls);

    let relay = Smtp::start(smtp::SmtpTls::None, None);
    sink(spec(&relay, SmtpTls::None))
        .unwrap()
        .dispatch(&failure())
        .await
        .expect("delivered in the clear");
    let mail = relay.received();
    assert!(!mail[0].tls);
    assert_eq!(
        mail[0].header("Subject").as_deref(),
        Some("[rota] web: renewal failed")
    );
}

#[tokio::test]
async fn starttls_is_required_never_skipped() {
    let relay = Smtp::start(smtp::SmtpTls::None, None);
    let err = sink(spec(&relay, SmtpTls::Starttls))
        .unwrap()
        .dispatch(&failure())
        .await
        .expect_err("a server without STARTTLS gets nothing");
    assert!(err.to_string().contains("STARTTLS"), "{err}");
    assert!(relay.received().is_empty(), "{err}");
}

#[test]
fn rota_alert_test_mails_through_the_real_rotad_and_reports_a_refused_login() {
    let server = Smtp::start(smtp::SmtpTls::Starttls, Some(("alerts", "hunter2")));
    let secrets = tempfile::tempdir().unwrap();
    let password = secrets.path().join("smtp.password");
    let config = |sinks: &str| {
        format!(
            "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
             socket_path: {{dir}}/rota.sock\n\
             local_ca:\n  directory: {{dir}}/ca\n\
             alerts:\n{sinks}\
             certs:\n  - id: web\n    domains: [web.home.arpa]\n    key_path: {{dir}}/web.key\n    \
             ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {{dir}}/out }}\n"
        )
    };
    let sink = format!(
        "  - kind: email\n    smtp_host: 127.0.0.1\n    smtp_port: {}\n    tls: starttls\n    \
         username: alerts\n    password_file: {}\n    from: rota@example.test\n    \
         to: [oncall@example.test]\n    ca_file: {}\n",
        server.port,
        password.display(),
        server.ca_file().display()
    );
    std::fs::write(&password, "hunter2\n").unwrap();
    let rotad = rota_e2e::Rotad::start(&config(&sink));

    let out = rotad.rota_ok(&["alert", "test"]);
    assert!(
        out.contains("sink 0 (email to oncall@example.test): delivered"),
        "{out}"
    );
    let mail = server.received();
    assert_eq!(mail.len(), 1, "{}", server.log());
    assert_eq!(
        mail[0].header("Subject").as_deref(),
        Some("[rota] rota-alert-test: test alert")
    );

    // The password file is read at each send: a wrong one now is a refused login, reported.
    std::fs::write(&password, "not-the-password\n").unwrap();
    let out = rotad.rota(&["alert", "test"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: email: "), "{stdout}");
    assert!(
        stdout.contains("535") && stdout.contains("password_file"),
        "{stdout}"
    );
    assert!(!stdout.contains("not-the-password") && !rotad.log().contains("not-the-password"));
    assert!(
        !rotad.log().contains("hunter2"),
        "the password is never logged"
    );
}
