//! The HTTP/1.1 client `rota` talks to rotad with, over rotad's UNIX socket: one connection
//! per command, [`PROTOCOL_HEADER`] sent on every request and checked on every response before
//! anything else is read, and rotad's error bodies turned into [`CliError`]s.

use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rota_api::wire::{ErrorBody, PROTOCOL_HEADER, PROTOCOL_VERSION};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use crate::exit::CliError;

/// How long rotad may take to answer a request (for a renewal: to start streaming).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// rotad, as reached through its socket.
pub(crate) struct Daemon {
    socket: PathBuf,
}

impl Daemon {
    /// rotad listening on `socket`.
    pub(crate) fn new(socket: PathBuf) -> Self {
        Self { socket }
    }

    /// `GET path`, answered with JSON.
    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        self.exchange(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, answered with JSON.
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let json = serde_json::to_vec(body)
            .map_err(|e| CliError::failed(format!("cannot encode the request: {e}")))?;
        self.exchange(Method::POST, path, Some(json)).await
    }

    /// `POST path` without a body; the caller reads the streamed answer as it arrives.
    pub(crate) async fn post_streaming(&self, path: &str) -> Result<Incoming, CliError> {
        let response = tokio::time::timeout(ANSWER_TIMEOUT, self.send(Method::POST, path, None))
            .await
            .map_err(|_| self.timed_out())??;
        Ok(response.into_body())
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, CliError> {
        let answer = async {
            let response = self.send(method, path, body).await?;
            self.read_body(response.into_body()).await
        };
        let bytes = tokio::time::timeout(ANSWER_TIMEOUT, answer)
            .await
            .map_err(|_| self.timed_out())??;
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::failed(format!(
                "rotad's answer to {path} is not what this rota expects: {e}"
            ))
        })
    }

    /// Sends one request on a fresh connection; `Ok` only for a 2xx answer in our protocol.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, CliError> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| CliError::connect_failed(&self.socket, &e))?;
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.broken(&e))?;
        // Drives the connection until the response body has been read; its errors surface
        // through `send_request` and the body.
        tokio::spawn(connection);
        let response = sender
            .send_request(build_request(method, path, body)?)
            .await
            .map_err(|e| self.broken(&e))?;
        check_protocol(response.headers())?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let bytes = self.read_body(response.into_body()).await?;
        Err(error_from_body(status, &bytes))
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, CliError> {
        body.collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .map_err(|e| self.broken(&e))
    }

    fn broken(&self, err: &hyper::Error) -> CliError {
        CliError::no_answer(&self.socket, format!("the connection broke: {err}"))
    }

    fn timed_out(&self) -> CliError {
        CliError::no_answer(
            &self.socket,
            format!("no answer within {}s", ANSWER_TIMEOUT.as_secs()),
        )
    }
}

fn build_request(
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Request<Full<Bytes>>, CliError> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "rotad")
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string());
    if body.is_some() {
        request = request.header(CONTENT_TYPE, "application/json");
    }
    request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| CliError::failed(format!("cannot build the request for {path}: {e}")))
}

/// Accepts a response only if it carries our [`PROTOCOL_VERSION`] in [`PROTOCOL_HEADER`].
pub(crate) fn check_protocol(headers: &HeaderMap) -> Result<(), CliError> {
    let theirs = headers
        .get(PROTOCOL_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    match &theirs {
        Some(v) if v.parse::<u32>() == Ok(PROTOCOL_VERSION) => Ok(()),
        _ => Err(CliError::ProtocolMismatch { theirs }),
    }
}

/// Turns a non-2xx answer into the failure it stands for, by its [`ErrorBody`] code.
pub(crate) fn error_from_body(status: StatusCode, body: &[u8]) -> CliError {
    let Ok(error) = serde_json::from_slice::<ErrorBody>(body) else {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(200).collect();
        return CliError::failed(format!("rotad answered {status}: {text}"));
    };
    match error.code.as_str() {
        "not_found" => CliError::NotFound(error.message),
        "invalid_config" => CliError::InvalidConfig {
            summary: error.message,
            issues: error.config_errors,
        },
        _ => CliError::failed(error.message),
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(version: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(v) = version {
            headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(v));
        }
        headers
    }

    #[test]
    fn protocol_header_must_name_our_version() {
        let rows = [
            (Some("2"), None, "our version"),
            (Some(" 2 "), None, "surrounding blanks are not a version"),
            (Some("1"), Some(Some("1")), "an older rotad"),
            (Some("3"), Some(Some("3")), "a newer rotad"),
            (Some("two"), Some(Some("two")), "garbage"),
            (None, Some(None), "not rotad at all"),
        ];
        for (sent, refused, why) in rows {
            match (check_protocol(&headers(sent)), refused) {
                (Ok(()), None) => {}
                (Err(CliError::ProtocolMismatch { theirs }), Some(expected)) => {
                    assert_eq!(theirs.as_deref(), expected, "{why}");
                }
                (other, _) => panic!("{why}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn error_bodies_map_to_failures() {
        let body = |code: &str| {
            format!(r#"{{"code":"{code}","message":"m","config_errors":[]}}"#).into_bytes()
        };
        let rows = [
            (StatusCode::NOT_FOUND, body("not_found"), 4, "unknown cert"),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                body("invalid_config"),
                3,
                "refused config",
            ),
            (
                StatusCode::CONFLICT,
                body("conflict"),
                1,
                "renewal already running",
            ),
            (
                StatusCode::BAD_REQUEST,
                body("bad_request"),
                1,
                "bad request",
            ),
            (
                StatusCode::BAD_GATEWAY,
                b"<html>oops</html>".to_vec(),
                1,
                "not JSON",
            ),
        ];
        for (status, body, code, why) in rows {
            assert_eq!(error_from_body(status, &body).exit_code(), code, "{why}");
        }
    }

    #[test]
    fn requests_carry_the_protocol_header() {
        let request = build_request(Method::GET, "/api/status", None).expect("valid request");
        assert_eq!(request.headers()[PROTOCOL_HEADER], "2");
    }
}
