//! `alerts: [{ kind: email }]`: one plain-text mail per alert through lettre's SMTP client.
//! `tls: starttls` requires the STARTTLS upgrade (never falls back to plain text),
//! `implicit` speaks TLS from the first byte (SMTPS, port 465), `none` is for a local relay.
//! The server's certificate is checked against the system's roots through the platform
//! verifier, plus the roots in `ca_file` for a private relay. The password is read from
//! `password_file` at every send, so a rotated file takes effect at once, and it is never
//! kept, logged or put in an error. One connection per alert: alerts are rare, and a pooled
//! connection would only go stale between them.

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use rota_api::config::{EmailAlert, SmtpTls};
use rota_api::{AlertBackend, AlertEvent, AlertKind, BackendError};

use super::mail_text::alert_body;
use super::rfc3339;

const BACKEND: &str = "email";
/// How long the server may take to answer any one SMTP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// Sends alerts as mail.
pub(crate) struct EmailSink {
    spec: EmailAlert,
    from: Mailbox,
    to: Vec<Mailbox>,
    /// The TLS settings, `None` for `tls: none`.
    tls: Option<TlsParameters>,
}

impl EmailSink {
    /// Checks the addresses and reads `ca_file` now, so a mistake is a config error rather
    /// than a failed alert on the day it matters.
    pub(crate) fn new(spec: &EmailAlert) -> Result<Self, BackendError> {
        let mailbox = |field: &str, text: &str| {
            text.parse::<Mailbox>().map_err(|e| {
                BackendError::invalid(
                    BACKEND,
                    format!("`{field}: {text}` is not a mail address: {e}"),
                )
            })
        };
        let from = mailbox("from", &spec.from)?;
        let to = spec
            .to
            .iter()
            .map(|to| mailbox("to", to))
            .collect::<Result<Vec<_>, _>>()?;
        if spec.username.is_some() != spec.password_file.is_some() {
            return Err(BackendError::invalid(
                BACKEND,
                "`username` and `password_file` go together: set both to log in, or neither",
            ));
        }
        let tls = match spec.tls {
            SmtpTls::None => None,
            SmtpTls::Starttls | SmtpTls::Implicit => Some(tls_parameters(spec)?),
        };
        Ok(Self {
            spec: spec.clone(),
            from,
            to,
            tls,
        })
    }

    /// A transport for one send, with the password as the file holds it now.
    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, BackendError> {
        let tls = match (&self.spec.tls, &self.tls) {
            (SmtpTls::Starttls, Some(params)) => Tls::Required(params.clone()),
            (SmtpTls::Implicit, Some(params)) => Tls::Wrapper(params.clone()),
            _ => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.spec.smtp_host)
                .port(self.spec.smtp_port)
                .tls(tls)
                .timeout(Some(COMMAND_TIMEOUT));
        if let (Some(user), Some(source)) = (&self.spec.username, &self.spec.password_file) {
            let password = source.resolve().map_err(|e| {
                BackendError::invalid(BACKEND, format!("cannot read the SMTP password: {e}"))
            })?;
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(builder.build())
    }

    fn message(&self, event: &AlertEvent) -> Result<Message, BackendError> {
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(subject(event))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        message
            .body(alert_body(event))
            .map_err(|e| BackendError::invalid(BACKEND, format!("cannot build the message: {e}")))
    }

    /// The operator's view of a failed send: what the server said, and what to check.
    fn send_error(&self, e: &lettre::transport::smtp::Error) -> BackendError {
        let server = format!("{}:{}", self.spec.smtp_host, self.spec.smtp_port);
        let code = e.status().map(|c| c.to_string());
        if e.is_timeout() {
            return BackendError::Timeout {
                backend: BACKEND,
                what: format!("the SMTP server {server}"),
                after: COMMAND_TIMEOUT,
            };
        }
        let hint = match code.as_deref() {
            // RFC 4954 §6: 535 bad credentials, 534/538 a mechanism or TLS the server insists on.
            Some("535") => "; check `username` and the password in `password_file`",
            Some("530" | "534" | "538") => {
                "; the server wants a login (set `username` and `password_file`) or TLS"
            }
            _ if is_tls_failure(e) => {
                "; check `tls:` (starttls for 587, implicit for 465) and `ca_file`"
            }
            _ => "",
        };
        let detail = format!("the SMTP server {server} did not take the alert: {e}{hint}");
        if e.is_permanent() || e.is_transient() {
            BackendError::Refused {
                backend: BACKEND,
                detail,
            }
        } else {
            BackendError::Unreachable {
                backend: BACKEND,
                detail,
            }
        }
    }
}

#[async_trait]
impl AlertBackend for EmailSink {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn dispatch(&self, event: &AlertEvent) -> Result<(), BackendError> {
        let message = self.message(event)?;
        let transport = self.transport()?;
        transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| self.send_error(&e))
    }
}

/// Whether `e` is a failed TLS handshake. lettre reports a certificate the verifier refused
/// as a connection error, with rustls' error inside an `io::Error` in its source chain.
fn is_tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let wrapped = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        let is_rustls = <dyn std::error::Error + Send + Sync>::is::<rustls::Error>;
        if err.is::<rustls::Error>() || wrapped.is_some_and(is_rustls) {
            return true;
        }
        source = err.source();
    }
    e.is_tls()
}

/// TLS for the server's host name, trusting the system's roots and `ca_file`'s.
fn tls_parameters(spec: &EmailAlert) -> Result<TlsParameters, BackendError> {
    let mut builder = TlsParameters::builder(spec.smtp_host.clone());
    if let Some(path) = &spec.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| BackendError::io(BACKEND, "reading ca_file", path, e))?;
        // Parsed here because lettre takes a file without any certificate as an empty set of
        // roots, which would make the file's mistake show only at the first alert.
        let roots = crate::tls_client::parse_ca_bundle(BACKEND, "ca_file", path, &pem)?;
        for root in roots {
            let root = Certificate::from_der(root.to_vec()).map_err(|e| {
                BackendError::invalid(
                    BACKEND,
                    format!(
                        "ca_file {} holds a certificate rustls refuses: {e}",
                        path.display()
                    ),
                )
            })?;
            builder = builder.add_root_certificate(root);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| BackendError::invalid(BACKEND, format!("cannot set up TLS: {e}")))
}

/// `[rota] web: renewal failed`: which cert and what happened, readable in a list of mail.
fn subject(event: &AlertEvent) -> String {
    let what = match event.kind {
        AlertKind::RenewalFailed => "renewal failed",
        AlertKind::InstallFailed => "install failed",
        AlertKind::ExpiryWarning => match event.details.not_after {
            Some(end) => return format!("[rota] {}: expires {}", event.cert_id, rfc3339(end)),
            None => "expires soon",
        },
        AlertKind::RenewalRecovered => "renewal recovered",
        AlertKind::Test => "test alert",
    };
    format!("[rota] {}: {what}", event.cert_id)
}

#[cfg(test)]
mod tests {
    use rota_api::AlertDetails;
    use time::macros::datetime;

    use super::*;

    fn spec() -> EmailAlert {
        EmailAlert {
            smtp_host: "smtp.test".into(),
            smtp_port: 587,
            tls: SmtpTls::Starttls,
            username: None,
            password_file: None,
            from: "rota@a.test".into(),
            to: vec!["ops@a.test".into()],
            ca_file: None,
        }
    }

    #[test]
    fn addresses_and_login_are_checked_when_built() {
        let bad_from = EmailAlert {
            from: "not an address".into(),
            ..spec()
        };
        let half_login = EmailAlert {
            username: Some("u".into()),
            ..spec()
        };
        for (spec, want) in [
            (bad_from, "`from: not an address` is not a mail address"),
            (half_login, "go together"),
        ] {
            let err = EmailSink::new(&spec)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(want), "{err}");
        }
        assert!(EmailSink::new(&spec()).is_ok());
    }

    #[test]
    fn a_ca_file_that_is_missing_or_not_pem_is_a_config_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        for (path, want) in [
            (dir.path().join("missing.pem"), "reading ca_file"),
            (garbage, "holds no certificate"),
        ] {
            let spec = EmailAlert {
                ca_file: Some(path.clone()),
                ..spec()
            };
            let err = EmailSink::new(&spec)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.contains(want) && err.contains(&path.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn the_subject_names_the_cert_and_what_happened() {
        let event = |kind, not_after| AlertEvent {
            cert_id: rota_api::CertId::new("web").unwrap(),
            kind,
            message: String::new(),
            timestamp: datetime!(2026-12-01 12:00 UTC),
            details: AlertDetails {
                not_after,
                ..AlertDetails::default()
            },
        };
        for (kind, not_after, want) in [
            (AlertKind::RenewalFailed, None, "[rota] web: renewal failed"),
            (AlertKind::InstallFailed, None, "[rota] web: install failed"),
            (
                AlertKind::ExpiryWarning,
                Some(datetime!(2026-12-10 00:00 UTC)),
                "[rota] web: expires 2026-12-10T00:00:00Z",
            ),
            (
                AlertKind::RenewalRecovered,
                None,
                "[rota] web: renewal recovered",
            ),
            (AlertKind::Test, None, "[rota] web: test alert"),
        ] {
            assert_eq!(subject(&event(kind, not_after)), want);
        }
    }
}
