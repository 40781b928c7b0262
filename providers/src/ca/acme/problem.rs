//! From what instant-acme and the CA said to a [`BackendError`] an operator can act on: RFC 8555
//! problem documents (with every subproblem and its identifier) become `Refused`,
//! `rateLimited` and HTTP 503/429 become `RateLimited` with the CA's `Retry-After`, transport
//! failures `Unreachable`. Also the bounded retry that keeps `badNonce` from failing an order.

use std::fmt::Write as _;

use http::StatusCode;
use instant_acme::{Error, Problem};
use rota_api::BackendError;

use crate::error_chain::error_chain;

use super::KIND;
use super::transport::{RequestTimedOut, ResponseMeta, last_response};

/// How many times one ACME call is made while the CA rejects its nonce. instant-acme already
/// tries each request 3 times; with pebble rejecting 30 % of nonces 3 tries fail for about
/// one request in 37, so an order of ~10 requests would often fail. 10 × 3 tries make that
/// 0.3^30: never, and still a bounded number of round trips.
const NONCE_ATTEMPTS: u32 = 10;

const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const ACCOUNT_DOES_NOT_EXIST: &str = "urn:ietf:params:acme:error:accountDoesNotExist";

/// Awaits the ACME call `$call` (an expression evaluated afresh per attempt) again while it
/// fails with `badNonce`, at most [`NONCE_ATTEMPTS`] times. Safe for every call: a request
/// whose nonce was rejected was not processed. A macro, not a function taking an async
/// closure, because rustc cannot yet prove such closures' futures `Send` for `async_trait`.
macro_rules! retry_bad_nonce {
    ($call:expr) => {{
        let mut attempt = 1;
        loop {
            match $call.await {
                Err(e) if $crate::ca::acme::problem::retry_nonce(&e, attempt) => attempt += 1,
                other => break other,
            }
        }
    }};
}
pub(crate) use retry_bad_nonce;

/// Whether attempt number `attempt`, failed with `err`, is to be made again.
pub(crate) fn retry_nonce(err: &Error, attempt: u32) -> bool {
    let again = matches!(err, Error::Api(p) if p.r#type.as_deref() == Some(BAD_NONCE))
        && attempt < NONCE_ATTEMPTS;
    if again {
        tracing::debug!(
            attempt,
            "the CA rejected a nonce; retrying with a fresh one"
        );
    }
    again
}

/// Maps an instant-acme error from `action` (e.g. "creating the order") to a [`BackendError`],
/// using the status and `Retry-After` of the response that caused it.
pub(crate) fn backend_error(action: &str, err: Error) -> BackendError {
    classify(action, err, last_response())
}

fn classify(action: &str, err: Error, response: ResponseMeta) -> BackendError {
    // 503 and 429 mean "later"; so does any server error that says when.
    let server_error = response.status.is_some_and(|s| s.is_server_error());
    let busy = matches!(
        response.status,
        Some(StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS)
    ) || (server_error && response.retry_after.is_some());
    match err {
        Error::Api(problem) if problem.r#type.as_deref() == Some(RATE_LIMITED) || busy => {
            BackendError::RateLimited {
                backend: KIND,
                retry_after: response.retry_after,
                detail: format!("{action}: {}", describe(&problem)),
            }
        }
        Error::Api(problem) if problem.r#type.as_deref() == Some(BAD_NONCE) => unreachable(
            action,
            &format!(
                "the CA rejected {NONCE_ATTEMPTS} fresh nonces in a row ({})",
                describe(&problem)
            ),
        ),
        // A CA failing internally has not refused anything: try again later.
        Error::Api(problem) if server_error => unreachable(
            action,
            &format!(
                "the CA failed (HTTP {}): {}",
                status_text(response),
                describe(&problem)
            ),
        ),
        Error::Api(problem) => refused(action, &problem),
        // Neither a problem document nor a success: HTML from a proxy, an empty 503, ….
        _ if busy => BackendError::RateLimited {
            backend: KIND,
            retry_after: response.retry_after,
            detail: format!("{action}: the CA is busy (HTTP {})", status_text(response)),
        },
        other => without_problem(action, other, response),
    }
}

/// An error that came with no problem document: garbage, a timeout, the transport.
fn without_problem(action: &str, err: Error, response: ResponseMeta) -> BackendError {
    match err {
        Error::Json(e) => unreachable(
            action,
            &format!(
                "the CA answered HTTP {} with something that is not ACME JSON: {e}",
                status_text(response)
            ),
        ),
        Error::Other(e) if e.is::<RequestTimedOut>() => match e.downcast::<RequestTimedOut>() {
            Ok(timed_out) => BackendError::Timeout {
                backend: KIND,
                what: format!("{action} ({})", timed_out.url),
                after: timed_out.after,
            },
            Err(e) => unreachable(action, &e.to_string()),
        },
        Error::Crypto | Error::KeyRejected | Error::Unsupported(_) => {
            BackendError::invalid(KIND, format!("{action}: {err}"))
        }
        // Transport errors carry their cause in the source chain, not in Display.
        other => {
            let mut detail = error_chain(&other);
            if untrusted_tls(&other) {
                detail.push_str(
                    " (the directory's TLS certificate is not trusted: for a private ACME \
                     server, set acme.ca_bundle_file to the root that signed it)",
                );
            }
            unreachable(action, &detail)
        }
    }
}

/// A `Refused` quoting the CA's problem document.
fn refused(action: &str, problem: &Problem) -> BackendError {
    let mut detail = format!("{action}: {}", describe(problem));
    if problem.r#type.as_deref() == Some(ACCOUNT_DOES_NOT_EXIST) {
        detail.push_str(
            " (the CA does not know the account in account_credentials_file: move that file \
             away and rota creates a new account)",
        );
    }
    BackendError::Refused {
        backend: KIND,
        detail,
    }
}

fn unreachable(action: &str, detail: &str) -> BackendError {
    BackendError::Unreachable {
        backend: KIND,
        detail: format!("{action}: {detail}"),
    }
}

fn status_text(response: ResponseMeta) -> String {
    response
        .status
        .map_or_else(|| "?".to_owned(), |s| s.as_u16().to_string())
}

/// Whether a rustls certificate verification failure is among the causes of `err`.
fn untrusted_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(current) = cause {
        if let Some(rustls::Error::InvalidCertificate(_)) = current.downcast_ref() {
            return true;
        }
        // An io::Error's `source` skips the error it wraps, and tokio-rustls wraps the TLS
        // error in two of them.
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    false
}

/// Appends `hint` to what an operator reads in `err`.
pub(crate) fn with_hint(err: BackendError, hint: &str) -> BackendError {
    match err {
        BackendError::Refused { backend, detail } => BackendError::Refused {
            backend,
            detail: format!("{detail} ({hint})"),
        },
        other => other,
    }
}

/// One line for a problem document: `type: detail`, then each subproblem as
/// `identifier: type: detail`, so the audit trail says which name failed and why.
pub(crate) fn describe(problem: &Problem) -> String {
    let mut text = type_and_detail(problem.r#type.as_deref(), problem.detail.as_deref());
    for sub in &problem.subproblems {
        let who = sub.identifier.as_ref().map_or_else(
            || "(no identifier)".to_owned(),
            |id| id.authorized(false).to_string(),
        );
        let what = type_and_detail(sub.r#type.as_deref(), sub.detail.as_deref());
        let _ = write!(text, "; {who}: {what}");
    }
    text
}

fn type_and_detail(kind: Option<&str>, detail: Option<&str>) -> String {
    match (kind, detail) {
        (Some(kind), Some(detail)) => format!("{kind}: {detail}"),
        (Some(only), None) | (None, Some(only)) => only.to_owned(),
        (None, None) => "the CA gave no details".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn problem(json: &str) -> Problem {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn problem_documents_name_every_identifier() {
        // RFC 8555 §6.7.1's example.
        let p = problem(
            r#"{"type": "urn:ietf:params:acme:error:malformed",
                "detail": "Some of the identifiers requested were rejected",
                "subproblems": [
                  {"type": "urn:ietf:params:acme:error:malformed",
                   "detail": "Invalid underscore in DNS name \"_example.org\"",
                   "identifier": {"type": "dns", "value": "_example.org"}},
                  {"type": "urn:ietf:params:acme:error:rejectedIdentifier",
                   "detail": "This CA will not issue for \"example.net\"",
                   "identifier": {"type": "dns", "value": "example.net"}}]}"#,
        );
        assert_eq!(
            describe(&p),
            "urn:ietf:params:acme:error:malformed: Some of the identifiers requested were \
             rejected; _example.org: urn:ietf:params:acme:error:malformed: Invalid underscore \
             in DNS name \"_example.org\"; example.net: \
             urn:ietf:params:acme:error:rejectedIdentifier: This CA will not issue for \
             \"example.net\""
        );
        assert_eq!(describe(&problem("{}")), "the CA gave no details");
        assert_eq!(describe(&problem(r#"{"detail": "nope"}"#)), "nope");
    }

    #[test]
    fn errors_map_to_what_an_operator_can_do() {
        let meta = |status: StatusCode, retry_after: Option<u64>| ResponseMeta {
            status: Some(status),
            retry_after: retry_after.map(Duration::from_secs),
        };
        let ok = meta(StatusCode::BAD_REQUEST, None);
        let busy = meta(StatusCode::SERVICE_UNAVAILABLE, Some(30));
        let failing = meta(StatusCode::INTERNAL_SERVER_ERROR, None);
        let failing_until = meta(StatusCode::INTERNAL_SERVER_ERROR, Some(30));
        let api =
            |kind: &str| Error::Api(problem(&format!(r#"{{"type": "{kind}", "detail": "d"}}"#)));
        let internal = || api("urn:ietf:params:acme:error:serverInternal");
        let json = || Error::Json(serde_json::from_str::<u8>("<html>").unwrap_err());
        #[rustfmt::skip]
        let rows = [
            (api(RATE_LIMITED), ok, "RateLimited", None, "rateLimited problem"),
            (api(RATE_LIMITED), busy, "RateLimited", Some(30), "with Retry-After"),
            (internal(), busy, "RateLimited", Some(30), "503 problem"),
            (json(), busy, "RateLimited", Some(30), "503 without a problem body"),
            (internal(), failing_until, "RateLimited", Some(30), "500 saying when"),
            (internal(), failing, "Unreachable", None, "500: transient, not a refusal"),
            (json(), ok, "Unreachable", None, "garbage body"),
            (api(BAD_NONCE), ok, "Unreachable", None, "badNonce after every retry"),
            (api("urn:ietf:params:acme:error:unauthorized"), ok, "Refused", None, "refusal"),
            (Error::Unsupported("ARI"), ok, "InvalidInput", None, "unsupported feature"),
        ];
        for (err, response, reason, retry, why) in rows {
            let mapped = classify("doing it", err, response);
            assert_eq!(mapped.reason(), reason, "{why}: {mapped}");
            let expected = retry.map(Duration::from_secs);
            assert_eq!(mapped.retry_after(), expected, "{why}");
            assert!(mapped.to_string().contains("doing it"), "{why}: {mapped}");
        }
        let timed_out = Error::Other(Box::new(RequestTimedOut {
            url: "https://ca/dir".into(),
            after: Duration::from_secs(30),
        }));
        assert_eq!(classify("x", timed_out, ok).reason(), "Timeout");
    }

    #[test]
    fn an_unknown_account_says_what_to_do() {
        let err = refused(
            "creating the order",
            &problem(&format!(r#"{{"type": "{ACCOUNT_DOES_NOT_EXIST}"}}"#)),
        );
        assert!(err.to_string().contains("move that file away"), "{err}");
    }

    #[tokio::test]
    async fn bad_nonces_are_retried_a_bounded_number_of_times() {
        let bad_nonce = || Error::Api(problem(&format!(r#"{{"type": "{BAD_NONCE}"}}"#)));
        let mut calls = 0;
        let result: Result<(), Error> = retry_bad_nonce!(async {
            calls += 1;
            Err(bad_nonce())
        });
        assert!(result.is_err());
        assert_eq!(calls, NONCE_ATTEMPTS);

        let mut calls = 0;
        let result = retry_bad_nonce!(async {
            calls += 1;
            if calls < 3 {
                Err(bad_nonce())
            } else {
                Ok(calls)
            }
        });
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let _ = retry_bad_nonce!(async {
            calls += 1;
            Err::<(), _>(Error::Api(problem(r#"{"type": "urn:x:other"}"#)))
        });
        assert_eq!(calls, 1, "other problems are not retried");
    }
}
