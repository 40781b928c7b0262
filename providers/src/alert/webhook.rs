//! `alerts: [{ kind: webhook }]`: POSTs the configuration reference's envelope, exactly
//! `{"cert_id", "kind", "message", "timestamp"}` with an RFC 3339 timestamp, and nothing
//! vendor-specific (a relay translates for Slack and the like). The bearer token is read from
//! its file at every send. Each request has `timeout_seconds`; a 5xx answer or a transport
//! error (the receiver restarting) is retried a few times with a doubling pause, a 4xx is the
//! receiver saying no and is not. URLs never appear in errors or logs: a webhook URL is often
//! a credential in itself.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::{StatusCode, Url};

use crate::error_chain::error_chain;
use serde::Serialize;

use rota_api::config::WebhookAlert;
use rota_api::{AlertBackend, AlertEvent, BackendError, SecretSource};

use super::rfc3339;

const BACKEND: &str = "webhook";
/// Tries per alert, the first included.
const ATTEMPTS: u32 = 3;
/// The pause before the first retry; it doubles for each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(500);
/// How much of a refusal's body an error quotes.
const BODY_EXCERPT: usize = 300;

/// The JSON body every webhook receives.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    cert_id: &'a str,
    kind: &'static str,
    message: &'a str,
    timestamp: String,
}

/// Sends alerts as JSON POSTs.
pub(crate) struct WebhookSink {
    url: Url,
    bearer_token_file: Option<SecretSource>,
    timeout: Duration,
    client: reqwest::Client,
}

/// How one attempt ended.
enum Attempt {
    /// The receiver took it (2xx).
    Delivered,
    /// Worth another try: a 5xx or a transport error.
    Retry(BackendError),
    /// Final: a 4xx, or an answer that no retry changes.
    Fail(BackendError),
}

impl WebhookSink {
    /// Parses the URL (the config validator has checked it) and sets up the HTTPS client.
    pub(crate) fn new(spec: &WebhookAlert) -> Result<Self, BackendError> {
        let url = Url::parse(&spec.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                BackendError::invalid(BACKEND, "`url` is not an http:// or https:// URL")
            })?;
        // A redirect is reported rather than followed: the operator should fix the URL, and a
        // POST (with its token) should not wander to wherever a 3xx points.
        let tls = crate::tls_client::client_config(Vec::new())
            .map_err(|e| BackendError::invalid(BACKEND, format!("cannot set up HTTPS: {e}")))?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                BackendError::invalid(BACKEND, format!("cannot set up HTTPS: {}", e.without_url()))
            })?;
        Ok(Self {
            url,
            bearer_token_file: spec.bearer_token_file.clone(),
            timeout: Duration::from_secs(spec.timeout_seconds),
            client,
        })
    }

    async fn attempt(&self, envelope: &Envelope<'_>) -> Result<Attempt, BackendError> {
        let mut request = self
            .client
            .post(self.url.clone())
            .timeout(self.timeout)
            .json(envelope);
        if let Some(source) = &self.bearer_token_file {
            let token = source.resolve().map_err(|e| {
                BackendError::invalid(BACKEND, format!("cannot read the bearer token: {e}"))
            })?;
            request = request.bearer_auth(token.expose());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Ok(Attempt::Retry(BackendError::Timeout {
                    backend: BACKEND,
                    what: "the webhook receiver to answer".to_owned(),
                    after: self.timeout,
                }));
            }
            Err(e) => {
                return Ok(Attempt::Retry(BackendError::Unreachable {
                    backend: BACKEND,
                    detail: error_chain(&e.without_url()),
                }));
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Attempt::Delivered);
        }
        let body = response.text().await.unwrap_or_default();
        Ok(judge(status, &body))
    }
}

/// What a non-2xx answer means: a 5xx may pass, anything else will not.
fn judge(status: StatusCode, body: &str) -> Attempt {
    let excerpt: String = body.trim().chars().take(BODY_EXCERPT).collect();
    let said = if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    };
    if status.is_server_error() {
        Attempt::Retry(BackendError::Unreachable {
            backend: BACKEND,
            detail: format!("the receiver answered {status}{said}"),
        })
    } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        Attempt::Fail(BackendError::Refused {
            backend: BACKEND,
            detail: format!("the receiver answered {status}{said}; check `bearer_token_file`"),
        })
    } else {
        Attempt::Fail(BackendError::Refused {
            backend: BACKEND,
            detail: format!("the receiver answered {status}{said}"),
        })
    }
}

#[async_trait]
impl AlertBackend for WebhookSink {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    async fn dispatch(&self, event: &AlertEvent) -> Result<(), BackendError> {
        let envelope = Envelope {
            cert_id: event.cert_id.as_str(),
            kind: event.kind.as_str(),
            message: &event.message,
            timestamp: rfc3339(event.timestamp),
        };
        let mut pause = FIRST_PAUSE;
        let mut attempt = 1;
        loop {
            match self.attempt(&envelope).await? {
                Attempt::Delivered => return Ok(()),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e) if attempt >= ATTEMPTS => return Err(e),
                Attempt::Retry(e) => {
                    tracing::warn!(error = %e, attempt, "webhook not delivered; retrying");
                }
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_server_errors_are_worth_a_retry() {
        for (status, retry, why) in [
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                true,
                "a bug or restart at the receiver",
            ),
            (
                StatusCode::BAD_GATEWAY,
                true,
                "a proxy without its upstream",
            ),
            (StatusCode::SERVICE_UNAVAILABLE, true, "overloaded"),
            (
                StatusCode::BAD_REQUEST,
                false,
                "the receiver rejects the envelope",
            ),
            (StatusCode::UNAUTHORIZED, false, "a wrong token stays wrong"),
            (StatusCode::NOT_FOUND, false, "a wrong URL stays wrong"),
            (StatusCode::TOO_MANY_REQUESTS, false, "4xx: not retried"),
            (
                StatusCode::MOVED_PERMANENTLY,
                false,
                "redirects are not followed for a POST",
            ),
        ] {
            assert_eq!(
                matches!(judge(status, ""), Attempt::Retry(_)),
                retry,
                "{status}: {why}"
            );
        }
    }

    #[test]
    fn a_refusal_quotes_the_receiver_and_names_the_token_when_it_is_the_cause() {
        let Attempt::Fail(e) = judge(StatusCode::UNAUTHORIZED, " bad token \n") else {
            panic!("401 is final");
        };
        assert_eq!(
            e.to_string(),
            "webhook: the receiver answered 401 Unauthorized: bad token; check `bearer_token_file`"
        );
    }

    #[test]
    fn urls_that_are_not_http_are_refused_when_built() {
        for url in ["ftp://hooks.test/x", "hooks.test/x", ""] {
            let spec = WebhookAlert {
                url: url.to_owned(),
                bearer_token_file: None,
                timeout_seconds: 10,
            };
            assert!(WebhookSink::new(&spec).is_err(), "{url}");
        }
    }
}
