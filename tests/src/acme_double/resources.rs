//! The double's resources, in RFC 8555's request and response shapes (section numbers in each
//! doc), plus RFC 9773's renewal information and draft-ietf-acme-profiles' `invalidProfile`.

use std::sync::{Arc, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rcgen::{CertificateSigningRequestParams, IsCa, SerialNumber};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Endpoint, Inner, NewOrderAnswer, Order, ROOT_KEY_ID, Received, Shared};

/// Every resource the directory names, on one router.
pub(super) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/dir", get(directory))
        .route(
            "/nonce",
            get(async |s: State<Shared>| new_nonce(&s, StatusCode::NO_CONTENT))
                .head(async |s: State<Shared>| new_nonce(&s, StatusCode::OK)),
        )
        .route("/account", post(new_account))
        .route("/order", post(new_order))
        .route("/order/{n}", post(fetch_order))
        .route("/order/{n}/finalize", post(finalize))
        .route("/authz/{n}/{i}", post(fetch_authz))
        .route("/cert/{n}", post(fetch_cert))
        .route("/renewal-info/{id}", get(renewal_info))
        // RFC 8555 §6.5: every response carries a fresh nonce. Nonces are never checked, so
        // a constant one does.
        .layer(axum::middleware::map_response(
            async |mut response: Response| {
                let nonce = HeaderValue::from_static("double-nonce");
                response.headers_mut().insert("replay-nonce", nonce);
                response
            },
        ))
        .with_state(shared)
}

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An RFC 7807 problem document with an ACME error type (RFC 8555 §6.7).
struct Problem {
    status: StatusCode,
    kind: &'static str,
    detail: String,
    retry_after_secs: Option<u64>,
}

impl Problem {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            status,
            kind,
            detail,
            retry_after_secs: None,
        }
    }

    fn missing(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "malformed",
            format!("no such {what}"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = json!({ "type": format!("urn:ietf:params:acme:error:{}", self.kind), "detail": self.detail });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        let problem_json = HeaderValue::from_static("application/problem+json");
        headers.insert(header::CONTENT_TYPE, problem_json);
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, secs.into());
        }
        response
    }
}

type Answer = Result<Response, Problem>;

fn json_answer(status: StatusCode, location: Option<String>, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(url) = location {
        headers.insert(header::LOCATION, url.parse().expect("location"));
    }
    response
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("RFC 3339 time")
}

impl Inner {
    /// Records the request and returns its JWS payload (RFC 8555 §6.2: flattened JSON
    /// serialization; an empty payload is POST-as-GET).
    fn record(&mut self, endpoint: Endpoint, body: &[u8]) -> Value {
        let payload = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|jws| jws["payload"].as_str().map(str::to_owned))
            .and_then(|p| B64.decode(p).ok())
            .and_then(|p| serde_json::from_slice(&p).ok())
            .unwrap_or(Value::Null);
        let received = Received {
            endpoint,
            payload: payload.clone(),
        };
        self.received.push(received);
        payload
    }

    /// The order object of RFC 8555 §7.1.3, echoing `replaces` (RFC 9773 §5) and `profile`.
    fn order_json(&self, n: usize) -> Result<Value, Problem> {
        let (base, order) = (
            &self.base,
            self.orders.get(n).ok_or(Problem::missing("order"))?,
        );
        let count = order.identifiers.as_array().map_or(0, Vec::len);
        let authorizations: Vec<_> = (0..count)
            .map(|i| format!("{base}/authz/{n}/{i}"))
            .collect();
        let mut body = json!({
            "status": if order.cert_pem.is_some() { "valid" } else { "ready" },
            "expires": rfc3339(OffsetDateTime::now_utc() + time::Duration::days(7)),
            "identifiers": order.identifiers,
            "authorizations": authorizations,
            "finalize": format!("{base}/order/{n}/finalize"),
        });
        if order.cert_pem.is_some() {
            body["certificate"] = json!(format!("{base}/cert/{n}"));
        }
        if let Some(replaces) = &order.replaces {
            body["replaces"] = json!(replaces);
        }
        if let Some(profile) = &order.profile {
            body["profile"] = json!(profile);
        }
        Ok(body)
    }

    /// Signs the CSR of order `n` (`payload.csr`, base64url DER, RFC 8555 §7.4) with the root.
    fn issue(&mut self, n: usize, payload: &Value) -> Result<(), Problem> {
        let bad_csr = |detail: String| Problem::new(StatusCode::BAD_REQUEST, "badCSR", detail);
        let der = payload["csr"].as_str().and_then(|csr| B64.decode(csr).ok());
        let der = der.ok_or_else(|| bad_csr("finalize without a base64url `csr`".into()))?;
        let mut csr = CertificateSigningRequestParams::from_der(&der.into())
            .map_err(|e| bad_csr(format!("unusable CSR: {e}")))?;
        let seq = self.issued.len() + 1;
        // High bit clear, so the DER INTEGER is these bytes as they are (RFC 9773 §4.1).
        let serial = [0x01, 0x7E, 0x57, (seq >> 8) as u8, seq as u8];
        let now = OffsetDateTime::now_utc();
        csr.params.serial_number = Some(SerialNumber::from_slice(&serial));
        csr.params.not_before = now - time::Duration::minutes(1);
        csr.params.not_after = now + self.validity;
        csr.params.use_authority_key_identifier_extension = true;
        csr.params.is_ca = IsCa::ExplicitNoCa;
        let leaf = csr
            .signed_by(&self.root)
            .map_err(|e| bad_csr(e.to_string()))?;
        let order = self.orders.get_mut(n).ok_or(Problem::missing("order"))?;
        order.cert_pem = Some(format!("{}{}", leaf.pem(), self.root_pem));
        let names = order.identifiers.as_array().map_or_else(Vec::new, |ids| {
            ids.iter()
                .filter_map(|id| id["value"].as_str().map(str::to_owned))
                .collect()
        });
        let cert_id = format!("{}.{}", B64.encode(ROOT_KEY_ID), B64.encode(serial));
        self.issued.push(cert_id);
        self.issuances.push(super::Issuance { names, at: now });
        Ok(())
    }
}

/// RFC 8555 §7.1.1 directory, plus `renewalInfo` (RFC 9773 §3) and `meta.profiles`.
async fn directory(State(shared): State<Shared>) -> Answer {
    let mut inner = lock(&shared);
    inner.record(Endpoint::Directory, b"");
    let base = &inner.base;
    let mut dir = json!({
        "newNonce": format!("{base}/nonce"),
        "newAccount": format!("{base}/account"),
        "newOrder": format!("{base}/order"),
        "revokeCert": format!("{base}/revoke"),
        "keyChange": format!("{base}/key-change"),
        "meta": { "termsOfService": format!("{base}/terms") },
    });
    if inner.options.renewal_info {
        dir["renewalInfo"] = json!(format!("{base}/renewal-info"));
    }
    if !inner.options.profiles.is_empty() {
        dir["meta"]["profiles"] = json!(inner.options.profiles);
    }
    Ok(json_answer(StatusCode::OK, None, &dir))
}

/// RFC 8555 §7.2: 200 for HEAD, 204 for GET, never cached; the nonce is added to every
/// response by the router.
fn new_nonce(State(shared): &State<Shared>, status: StatusCode) -> Response {
    lock(shared).record(Endpoint::NewNonce, b"");
    (status, [(header::CACHE_CONTROL, "no-store")]).into_response()
}

/// RFC 8555 §7.3: 201 Created with the account URL in `Location`.
async fn new_account(State(shared): State<Shared>, body: Bytes) -> Answer {
    let mut inner = lock(&shared);
    let payload = inner.record(Endpoint::NewAccount, &body);
    let url = format!("{}/account/1", inner.base);
    let account = json!({ "status": "valid", "contact": payload["contact"], "orders": format!("{url}/orders") });
    Ok(json_answer(StatusCode::CREATED, Some(url), &account))
}

/// RFC 8555 §7.4 newOrder, or the scripted `rateLimited` (§6.6) or oversized answer, or `invalidProfile` for a
/// profile the directory does not advertise (draft-ietf-acme-profiles).
async fn new_order(State(shared): State<Shared>, body: Bytes) -> Answer {
    let mut inner = lock(&shared);
    let payload = inner.record(Endpoint::NewOrder, &body);
    if let NewOrderAnswer::Oversized { bytes } = inner.new_order {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed",
            "x".repeat(bytes),
        ));
    }
    if let NewOrderAnswer::RateLimited { retry_after_secs } = inner.new_order {
        let detail = "too many new orders recently: see https://acme.example.com/docs/rate-limits";
        let limited = Problem::new(StatusCode::TOO_MANY_REQUESTS, "rateLimited", detail);
        let retry_after_secs = Some(retry_after_secs);
        return Err(Problem {
            retry_after_secs,
            ..limited
        });
    }
    let profile = payload["profile"].as_str().map(str::to_owned);
    if let Some(p) = profile
        .as_deref()
        .filter(|p| !inner.options.profiles.contains_key(*p))
    {
        let detail = format!("profile `{p}` is not offered");
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "invalidProfile",
            detail,
        ));
    }
    inner.orders.push(Order {
        identifiers: payload["identifiers"].clone(),
        replaces: payload["replaces"].as_str().map(str::to_owned),
        profile,
        cert_pem: None,
    });
    let n = inner.orders.len() - 1;
    let location = format!("{}/order/{n}", inner.base);
    Ok(json_answer(
        StatusCode::CREATED,
        Some(location),
        &inner.order_json(n)?,
    ))
}

/// POST-as-GET of an order (RFC 8555 §7.1.3).
async fn fetch_order(State(shared): State<Shared>, Path(n): Path<usize>, body: Bytes) -> Answer {
    let mut inner = lock(&shared);
    inner.record(Endpoint::Fetch, &body);
    Ok(json_answer(StatusCode::OK, None, &inner.order_json(n)?))
}

/// RFC 8555 §7.4: finalize answers with the updated order; here it is signed at once.
async fn finalize(State(shared): State<Shared>, Path(n): Path<usize>, body: Bytes) -> Answer {
    let mut inner = lock(&shared);
    let payload = inner.record(Endpoint::Finalize, &body);
    inner.issue(n, &payload)?;
    Ok(json_answer(StatusCode::OK, None, &inner.order_json(n)?))
}

/// RFC 8555 §7.1.4 authorization, already `valid` (as after an earlier validation, §7.1.6).
async fn fetch_authz(
    State(shared): State<Shared>,
    Path((n, i)): Path<(usize, usize)>,
    body: Bytes,
) -> Answer {
    let mut inner = lock(&shared);
    inner.record(Endpoint::Fetch, &body);
    let order = inner
        .orders
        .get(n)
        .ok_or(Problem::missing("authorization"))?;
    let (identifier, now) = (order.identifiers[i].clone(), OffsetDateTime::now_utc());
    let authz = json!({
        "status": "valid",
        "expires": rfc3339(now + time::Duration::days(30)),
        "identifier": identifier,
        "challenges": [{
            "type": "http-01",
            "url": format!("{}/chall/{n}/{i}", inner.base),
            "token": format!("DGyRejmCefe7v4NfDGDKfA{n}x{i}"),
            "status": "valid",
            "validated": rfc3339(now),
        }],
    });
    Ok(json_answer(StatusCode::OK, None, &authz))
}

/// RFC 8555 §7.4.2: the chain as `application/pem-certificate-chain`.
async fn fetch_cert(State(shared): State<Shared>, Path(n): Path<usize>, body: Bytes) -> Answer {
    let mut inner = lock(&shared);
    inner.record(Endpoint::Fetch, &body);
    let pem = inner.orders.get(n).and_then(|o| o.cert_pem.clone());
    let pem = pem.ok_or(Problem::missing("certificate"))?;
    let chain = HeaderValue::from_static("application/pem-certificate-chain");
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, chain)], pem).into_response())
}

/// RFC 9773 §4.2: the window of a cert this double issued, with any `Retry-After` (§4.3).
async fn renewal_info(State(shared): State<Shared>, Path(cert_id): Path<String>) -> Answer {
    let (windows, issued_as) = {
        let mut inner = lock(&shared);
        inner.record(Endpoint::RenewalInfo, b"");
        let n = inner.issued.iter().position(|id| *id == cert_id);
        (Arc::clone(&inner.windows), n.map(|i| i + 1))
    };
    let window = issued_as.and_then(|n| windows(n));
    let window =
        window.ok_or_else(|| Problem::missing(&format!("renewal information for {cert_id}")))?;
    let mut body = json!({
        "suggestedWindow": { "start": rfc3339(window.start), "end": rfc3339(window.end) },
    });
    if let Some(url) = window.explanation_url {
        body["explanationURL"] = json!(url);
    }
    let mut response = json_answer(StatusCode::OK, None, &body);
    if let Some(secs) = window.retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, secs.into());
    }
    Ok(response)
}
