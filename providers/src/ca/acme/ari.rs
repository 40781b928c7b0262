//! ACME Renewal Information (RFC 9773): the window in which the CA would like an installed
//! cert renewed. rota fetches it itself, with the account's HTTP client, rather than through
//! instant-acme: that one rejects an answer without `Retry-After`, which the RFC allows (the
//! client then picks its own re-check interval), and would lose the window with it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Method, Request};
use instant_acme::{BodyWrapper, CertificateIdentifier, Error, HttpClient, Problem, RenewalInfo};
use rota_api::{BackendError, RenewalWindow};
use time::OffsetDateTime;

use super::KIND;
use super::transport::{AcmeHttp, retry_after};

/// RFC 9773 §4.3.2: treat a `Retry-After` under a minute as a minute, over a day as a day.
const RECHECK_BOUNDS: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(86_400));

/// When the CA says nothing about when to ask again: every six hours, the interval the RFC's
/// own example and Let's Encrypt use.
const DEFAULT_RECHECK: Duration = Duration::from_secs(6 * 3600);

const USER_AGENT_VALUE: &str = concat!("rota/", env!("CARGO_PKG_VERSION"));

/// The directory's `renewalInfo` base URL (RFC 9773 §3), or `None` when the CA does not
/// offer ARI.
pub(crate) async fn base_url(
    http: &AcmeHttp,
    directory_url: &str,
) -> Result<Option<String>, Error> {
    let (_, body) = get(http, directory_url).await?;
    Ok(renewal_info_field(&serde_json::from_slice(&body)?))
}

fn renewal_info_field(directory: &serde_json::Value) -> Option<String> {
    let url = directory.get("renewalInfo")?.as_str()?;
    Some(url.to_owned())
}

/// The CA's answer for the cert `id` (§4.1: an unauthenticated GET of `<base>/<certID>`), and
/// how long it asked rota to wait before asking again, if it said.
pub(crate) async fn fetch(
    http: &AcmeHttp,
    base: &str,
    id: &CertificateIdentifier<'_>,
) -> Result<(RenewalInfo, Option<Duration>), Error> {
    let url = format!("{}/{id}", base.trim_end_matches('/'));
    let (wait, body) = get(http, &url).await?;
    Ok((serde_json::from_slice(&body)?, wait))
}

/// GETs `url`: its `Retry-After` and body on success, its problem document otherwise.
async fn get(http: &AcmeHttp, url: &str) -> Result<(Option<Duration>, Bytes), Error> {
    let request = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header(USER_AGENT, USER_AGENT_VALUE)
        .header(ACCEPT, "application/json")
        .body(BodyWrapper::default())?;
    let mut response = http.request(request).await?;
    let status = response.parts.status;
    let wait = retry_after(&response.parts.headers, SystemTime::now());
    let body = response.body.into_bytes().await.map_err(Error::Other)?;
    if status.is_success() {
        Ok((wait, body))
    } else {
        Err(serde_json::from_slice::<Problem>(&body)?.into())
    }
}

/// The CA's window, with the time to ask again: its `Retry-After` within the RFC's bounds,
/// else [`DEFAULT_RECHECK`].
pub(crate) fn renewal_window(
    info: RenewalInfo,
    retry_after: Option<Duration>,
    now: OffsetDateTime,
) -> Result<RenewalWindow, BackendError> {
    let window = info.suggested_window;
    // RFC 9773 §4.2: a window that ends before it starts is invalid.
    if window.end <= window.start {
        return Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "the CA's renewal window ends ({}) before it starts ({})",
                window.end, window.start
            ),
        });
    }
    let (min, max) = RECHECK_BOUNDS;
    Ok(RenewalWindow {
        start: window.start,
        end: window.end,
        explanation_url: info.explanation_url,
        next_check_at: now + retry_after.unwrap_or(DEFAULT_RECHECK).clamp(min, max),
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn info(json: &str) -> RenewalInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn renewal_windows_follow_rfc_9773() {
        let now = datetime!(2025-01-01 00:00 UTC);
        // RFC 9773 §4.2's example.
        let example = info(
            r#"{"suggestedWindow": {"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z"},
                "explanationURL": "https://acme.example.com/docs/ari"}"#,
        );
        let window = renewal_window(example.clone(), Some(Duration::from_secs(3600)), now).unwrap();
        assert_eq!(window.start, datetime!(2025-01-02 04:00 UTC));
        assert_eq!(window.end, datetime!(2025-01-03 04:00 UTC));
        assert_eq!(
            window.explanation_url.as_deref(),
            Some("https://acme.example.com/docs/ari")
        );
        assert_eq!(window.next_check_at, datetime!(2025-01-01 01:00 UTC));
        for (retry_after, next, why) in [
            (
                Some(0),
                datetime!(2025-01-01 00:01 UTC),
                "under a minute counts as a minute",
            ),
            (
                Some(7 * 86_400),
                datetime!(2025-01-02 00:00 UTC),
                "over a day counts as a day",
            ),
            (
                None,
                datetime!(2025-01-01 06:00 UTC),
                "no Retry-After: six hours",
            ),
        ] {
            let retry_after = retry_after.map(Duration::from_secs);
            let window = renewal_window(example.clone(), retry_after, now);
            assert_eq!(window.unwrap().next_check_at, next, "{why}");
        }
        let backwards = info(
            r#"{"suggestedWindow": {"start": "2025-01-03T04:00:00Z", "end": "2025-01-02T04:00:00Z"}}"#,
        );
        let err = renewal_window(backwards, None, now).unwrap_err();
        assert_eq!(err.reason(), "Refused");
    }

    #[test]
    fn the_directory_field_is_optional() {
        let field = |json: &str| renewal_info_field(&serde_json::from_str(json).unwrap());
        assert_eq!(
            field(r#"{"newNonce": "n", "renewalInfo": "https://ca/ari"}"#).as_deref(),
            Some("https://ca/ari")
        );
        assert_eq!(field(r#"{"newNonce": "n"}"#), None);
        assert_eq!(field(r#"{"renewalInfo": 7}"#), None, "not a URL");
    }
}
