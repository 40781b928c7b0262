//! The HTTP client every ACME request goes through. instant-acme's own client trusts either
//! the platform's roots or one custom root, never both, and has no timeouts; this one trusts
//! the system roots plus the operator's `ca_bundle_file`, bounds every request (connect, TLS,
//! response and body) with [`REQUEST_TIMEOUT`] and every body with [`MAX_RESPONSE_BYTES`]
//! (instant-acme reads a body to its end, however long), and notes each response's status and
//! `Retry-After` in a task-local slot: instant-acme drops the headers of error responses and
//! keeps an order's `Retry-After` private, and rota needs both to back off as the CA asks.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::RETRY_AFTER;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, Error, HttpClient};
use rustls_pki_types::CertificateDer;

use crate::tls_client::client_config;

/// The longest one request may take, from connecting to the last byte of the body.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest response body read from a CA. The biggest ACME answers are a cert chain and
/// an order for 100 names, a few KiB each; a body past this is a broken or hostile server,
/// and reading on would only fill memory.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// What rota needs to know about the most recent response of the current ACME operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResponseMeta {
    /// Its HTTP status.
    pub status: Option<StatusCode>,
    /// How long the CA asked to wait (`Retry-After`), from when it answered.
    pub retry_after: Option<Duration>,
}

tokio::task_local! {
    /// Set by [`observed`] around one ACME operation; requests record into it.
    static LAST_RESPONSE: Cell<ResponseMeta>;
}

/// Runs `operation` with a fresh [`ResponseMeta`] slot that [`last_response`] reads.
pub(crate) async fn observed<F: Future>(operation: F) -> F::Output {
    LAST_RESPONSE
        .scope(Cell::new(ResponseMeta::default()), operation)
        .await
}

/// The status and `Retry-After` of the latest response inside [`observed`] (default outside).
pub(crate) fn last_response() -> ResponseMeta {
    LAST_RESPONSE.try_with(Cell::get).unwrap_or_default()
}

/// A request that got no complete answer in time; mapped to `BackendError::Timeout`.
#[derive(Debug, thiserror::Error)]
#[error("no answer from {url} within {}s", after.as_secs())]
pub(crate) struct RequestTimedOut {
    /// What was asked.
    pub url: String,
    /// How long rota waited.
    pub after: Duration,
}

/// A response body over [`MAX_RESPONSE_BYTES`]; reading stopped there.
#[derive(Debug, thiserror::Error)]
#[error(
    "the answer from {url} is larger than {} KiB, more than any ACME response: rota stopped reading it",
    MAX_RESPONSE_BYTES / 1024
)]
pub(crate) struct ResponseTooLarge {
    /// What was asked.
    pub url: String,
}

/// The ACME HTTP client: cheap to clone, every clone shares one connection pool.
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    inner: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
}

impl AcmeHttp {
    /// A client trusting the system roots and `extra_roots` (the operator's CA bundle).
    pub(crate) fn new(extra_roots: Vec<CertificateDer<'static>>) -> Result<Self, rustls::Error> {
        let tls = client_config(extra_roots)?;
        let mut tcp = HttpConnector::new();
        // The HTTPS layer above checks the scheme; this one only connects.
        tcp.enforce_http(false);
        // Every ACME POST is a small header write then a small body write; with Nagle on the
        // second waits for the peer's delayed ACK, 40 ms per request on Linux.
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(REQUEST_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            // RFC 8555 §6.1: ACME is spoken over HTTPS only.
            .https_only()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        Ok(Self {
            inner: Client::builder(TokioExecutor::new()).build(https),
        })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let url = req.uri().to_string();
        let method = req.method().clone();
        let sent = self.inner.request(req);
        Box::pin(async move {
            // A failure below must not be read as the previous response's 503.
            let _ = LAST_RESPONSE.try_with(|slot| slot.set(ResponseMeta::default()));
            // The body is read here, inside the timeout and the size cap, rather than later
            // by instant-acme.
            let exchange = async {
                let (parts, body) = sent
                    .await
                    .map_err(|e| Error::Other(Box::new(e)))?
                    .into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await
                    .map_err(|e| {
                        if e.is::<LengthLimitError>() {
                            Error::Other(Box::new(ResponseTooLarge { url: url.clone() }))
                        } else {
                            Error::Other(e)
                        }
                    })?
                    .to_bytes();
                Ok::<_, Error>((parts, body))
            };
            let (parts, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
                .await
                .map_err(|_| {
                    Error::Other(Box::new(RequestTimedOut {
                        url: url.clone(),
                        after: REQUEST_TIMEOUT,
                    }))
                })??;
            let meta = ResponseMeta {
                status: Some(parts.status),
                retry_after: retry_after(&parts.headers, SystemTime::now()),
            };
            tracing::debug!(%method, %url, status = parts.status.as_u16(), "ACME request");
            // Outside `observed` there is no slot, and nobody to read it.
            let _ = LAST_RESPONSE.try_with(|slot| slot.set(meta));
            Ok(BytesResponse {
                parts,
                body: Box::new(body),
            })
        })
    }
}

/// The longest `Retry-After` honoured: Let's Encrypt's longest rate-limit window. A CA that
/// asks for more (`Retry-After: 999999999999`, 31,000 years) is waited on this long, not
/// added to a clock past the year 9999.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The `Retry-After` delay in `headers`, as seconds or an HTTP date (RFC 9110 §10.2.3), at
/// most [`MAX_RETRY_AFTER`].
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        // A date already past means "now".
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for (value, expected, why) in [
            (Some("120"), Some(120), "delay in seconds"),
            (Some(" 7 "), Some(7), "whitespace around it"),
            (
                Some("Sun, 06 Nov 1994 08:50:37 GMT"),
                Some(60),
                "HTTP date a minute ahead",
            ),
            (
                Some("Sun, 06 Nov 1994 08:00:00 GMT"),
                Some(0),
                "HTTP date in the past",
            ),
            (
                Some("999999999999"),
                Some(7 * 86_400),
                "31,000 years is clamped to a week",
            ),
            (
                Some("18446744073709551615"),
                Some(7 * 86_400),
                "u64::MAX seconds too",
            ),
            (
                Some("Fri, 31 Dec 9999 23:59:59 GMT"),
                Some(7 * 86_400),
                "the last HTTP date there is",
            ),
            (
                Some("99999999999999999999"),
                None,
                "past u64 is not a number of seconds",
            ),
            (Some("soon"), None, "neither form"),
            (Some("-5"), None, "negative"),
            (None, None, "absent"),
        ] {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(RETRY_AFTER, HeaderValue::from_static(value));
            }
            assert_eq!(
                retry_after(&headers, now),
                expected.map(Duration::from_secs),
                "{why}"
            );
        }
    }

    #[tokio::test]
    async fn the_slot_lives_for_one_operation() {
        assert_eq!(last_response(), ResponseMeta::default());
        let seen = observed(async {
            let meta = ResponseMeta {
                status: Some(StatusCode::SERVICE_UNAVAILABLE),
                retry_after: Some(Duration::from_secs(3)),
            };
            LAST_RESPONSE.with(|slot| slot.set(meta));
            last_response()
        })
        .await;
        assert_eq!(seen.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(last_response(), ResponseMeta::default());
    }
}
