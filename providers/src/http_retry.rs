//! One vendor API call with the manners every HTTP backend needs: a timeout on each attempt,
//! a bounded number of attempts, a pause that doubles after a transport error or a 5xx, and
//! a 429's `Retry-After` honoured (up to a cap; a longer wait is handed to the reconciler's
//! backoff as [`BackendError::RateLimited`] rather than slept through). Errors name the vendor
//! and the call, never the URL's query or a header, so no credential reaches a log.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use rota_api::BackendError;

use crate::error_chain::error_chain;

/// How hard one call tries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The pause before the first retry after a transport error or a 5xx; doubles each time.
    pub first_pause: Duration,
    /// The longest `Retry-After` slept through; a longer one ends the call.
    pub max_retry_after: Duration,
    /// How long one attempt may take, from connecting to the last byte.
    pub timeout: Duration,
}

impl RetryPolicy {
    /// What rota uses against vendor APIs.
    pub(crate) const VENDOR: Self = Self {
        attempts: 4,
        first_pause: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
    };
}

/// The answer of the last attempt: any status but a 429 or a 5xx that retries did not cure.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, as text.
    pub body: String,
}

/// Which vendor call this is, for errors: `("cloudflare", "GET /zones")`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallName<'a> {
    /// The backend kind.
    pub backend: &'static str,
    /// The call in the vendor's terms (method and path, or API command).
    pub call: &'a str,
}

/// Sends the request `build` makes, as many times as `policy` allows, until an answer that
/// is neither a 429 nor a 5xx arrives.
pub(crate) async fn send(
    name: CallName<'_>,
    policy: &RetryPolicy,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, BackendError> {
    let mut pause = policy.first_pause;
    let mut attempt = 1;
    loop {
        let last = attempt >= policy.attempts;
        let (error, wait) = match build().timeout(policy.timeout).send().await {
            Err(e) if e.is_timeout() => (
                BackendError::Timeout {
                    backend: name.backend,
                    what: format!("{} to answer", name.call),
                    after: policy.timeout,
                },
                pause,
            ),
            Err(e) => (
                BackendError::Unreachable {
                    backend: name.backend,
                    detail: format!("{}: {}", name.call, error_chain(&e.without_url())),
                },
                pause,
            ),
            Ok(response) => {
                let status = response.status();
                let retry_after = retry_after(response.headers());
                let body = response.text().await.unwrap_or_default();
                if status == StatusCode::TOO_MANY_REQUESTS {
                    let error = BackendError::RateLimited {
                        backend: name.backend,
                        retry_after,
                        detail: format!("{}: {}", name.call, excerpt(&body)),
                    };
                    match retry_after {
                        Some(wait) if wait > policy.max_retry_after => return Err(error),
                        Some(wait) => (error, wait),
                        None => (error, pause),
                    }
                } else if status.is_server_error() {
                    let error = BackendError::Unreachable {
                        backend: name.backend,
                        detail: format!("{}: HTTP {status}: {}", name.call, excerpt(&body)),
                    };
                    (error, pause)
                } else {
                    return Ok(Reply { status, body });
                }
            }
        };
        if last {
            return Err(error);
        }
        tracing::debug!(backend = name.backend, call = name.call, attempt, error = %error, wait_ms = wait.as_millis() as u64, "vendor call failed; trying again");
        tokio::time::sleep(wait).await;
        pause = pause.saturating_mul(2);
        attempt += 1;
    }
}

/// `Retry-After` in seconds (the form the vendors send); an HTTP date is treated as absent.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The start of a body, for an error that quotes what the peer said.
pub(crate) fn excerpt(body: &str) -> &str {
    const MAX: usize = 300;
    let body = body.trim();
    if body.len() <= MAX {
        return body;
    }
    let mut end = MAX;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

/// A reqwest client trusting the system roots plus the PEM bundle at `bundle` (named at
/// `field` in errors), for the vendor `backend`.
pub(crate) fn client(
    backend: &'static str,
    field: &str,
    bundle: Option<&std::path::Path>,
) -> Result<reqwest::Client, BackendError> {
    let tls = crate::tls_client::client_config_with_bundle(backend, field, bundle)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(RetryPolicy::VENDOR.timeout)
        // A vendor API that redirects is misconfigured (a wrong `api_url`); following it would
        // carry the credentials elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            BackendError::invalid(
                backend,
                format!("cannot build the HTTP client: {}", e.without_url()),
            )
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_peer_that_never_answers_times_out_after_the_bounded_attempts() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        let policy = RetryPolicy {
            attempts: 2,
            first_pause: Duration::from_millis(10),
            max_retry_after: Duration::from_secs(1),
            timeout: Duration::from_millis(300),
        };
        let http = client("vendor", "vendor.ca_bundle_file", None).unwrap();
        let name = CallName {
            backend: "vendor",
            call: "GET /slow",
        };
        let err = send(name, &policy, || http.get(format!("http://{addr}/slow")))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Timeout { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "vendor: timed out after 0s waiting for GET /slow to answer"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "two attempts, no more");
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn excerpt_cuts_on_a_char_boundary() {
        let long = "é".repeat(400);
        let cut = excerpt(&long);
        assert!(cut.len() <= 300 && cut.chars().all(|c| c == 'é'));
        assert_eq!(excerpt("  short \n"), "short");
    }
}
