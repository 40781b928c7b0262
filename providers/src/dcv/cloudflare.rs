//! `dcv: { kind: cloudflare }` with the top-level `cloudflare:` block: answers DNS-01 (and
//! a CA's DCV CNAME) by adding rota's record through Cloudflare's API v4 and deleting exactly
//! that record afterwards. Everything else in the zone is left alone: Cloudflare edits one record at a
//! time, so nothing is read back and rewritten.
//!
//! Calls, as Cloudflare documents them (<https://developers.cloudflare.com/api/>):
//! - `GET /zones?name=<name>` ("List Zones"): the zone is found by walking the record name's
//!   labels from the longest candidate down, so a subzone delegated as a zone of its own wins
//!   over its parent. A token scoped to other zones simply does not see this one.
//! - `GET /zones/{zone_id}/dns_records?type=<TXT|CNAME>&name=<fqdn>` ("List DNS Records"),
//!   `POST /zones/{zone_id}/dns_records` ("Create DNS Record"),
//!   `DELETE /zones/{zone_id}/dns_records/{id}` ("Delete DNS Record").
//! - Authentication is `Authorization: Bearer <token>` (API tokens; the legacy Global API
//!   Key is not supported). The token is read from its `*_file` at every call and never
//!   logged or quoted.
//! - Every answer is the envelope `{success, errors: [{code, message}], messages, result,
//!   result_info: {page, per_page, total_pages, …}}`; lists are followed page by page to
//!   `total_pages`, and a refusal quotes `errors[]` verbatim as `[code] message`.
//! - Code 81058 ("An identical record already exists") on create means the record is already
//!   there; 81044 (record not found) on delete means it is already gone. TXT contents are
//!   compared with surrounding quotes removed, since Cloudflare stores what the client sent
//!   and clients differ in quoting (lego#2521).
//!
//! Retries, timeouts and 429 `Retry-After` are [`crate::http_retry`]'s.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use rota_api::config::CloudflareAccount;
use rota_api::{BackendError, ChallengeKind, DcvBackend, DcvChallenge, SecretSource, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::record::ChallengeRecord;
use crate::http_retry::{self, CallName, RetryPolicy};

/// The config `kind` of this solver.
const KIND: &str = "cloudflare";
/// Record-list page size: the most Cloudflare serves per page.
const RECORDS_PER_PAGE: u32 = 100;
/// Cloudflare's "An identical record already exists."
const IDENTICAL_RECORD: i64 = 81058;
/// Cloudflare's "Record does not exist."
const RECORD_NOT_FOUND: i64 = 81044;
/// The lowest TTL Cloudflare accepts besides `1` (automatic).
const MIN_TTL: u32 = 60;

/// Publishes DCV records (ACME TXT, CA CNAME) through Cloudflare's API v4.
pub(crate) struct CloudflareDcv {
    /// `api_url` without a trailing `/`.
    base: String,
    token: SecretSource,
    http: reqwest::Client,
    policy: RetryPolicy,
}

/// The envelope every Cloudflare answer comes in.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
    result_info: Option<ResultInfo>,
}

/// One entry of `errors[]`.
#[derive(Deserialize)]
struct ApiMessage {
    code: i64,
    message: String,
}

#[derive(Deserialize)]
struct ResultInfo {
    #[serde(default)]
    total_pages: Option<u32>,
}

#[derive(Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct Record {
    id: String,
    content: String,
}

/// A refusal: the HTTP status and Cloudflare's `errors[]`.
struct Refusal {
    status: StatusCode,
    errors: Vec<ApiMessage>,
    body: String,
}

impl Refusal {
    fn has_code(&self, code: i64) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    fn into_error(self, call: &str) -> BackendError {
        let said = if self.errors.is_empty() {
            http_retry::excerpt(&self.body).to_owned()
        } else {
            self.errors
                .iter()
                .map(|e| format!("[{}] {}", e.code, e.message))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let hint = match self.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                " (check `cloudflare.api_token_file`: an API token with Zone.DNS:Edit on this zone)"
            }
            _ => "",
        };
        BackendError::Refused {
            backend: KIND,
            detail: format!("{call}: HTTP {}: {said}{hint}", self.status.as_u16()),
        }
    }
}

impl CloudflareDcv {
    /// A solver for the account `account` describes.
    pub(crate) fn new(account: &CloudflareAccount) -> Result<Self, BackendError> {
        let http = http_retry::client(
            KIND,
            "cloudflare.ca_bundle_file",
            account.ca_bundle_file.as_deref(),
        )?;
        Ok(Self {
            base: account.api_url().trim_end_matches('/').to_owned(),
            token: account.api_token_file.clone(),
            http,
            policy: RetryPolicy::VENDOR,
        })
    }

    fn token(&self) -> Result<SecretString, BackendError> {
        self.token.resolve().map_err(|e| {
            BackendError::invalid(
                KIND,
                format!("cannot read `cloudflare.api_token_file`: {e}"),
            )
        })
    }

    /// One call; `Ok(Err(refusal))` when Cloudflare answered but said no.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Result<Envelope<T>, Refusal>, BackendError> {
        let token = self.token()?;
        let url = format!("{}{path}", self.base);
        let call = format!("{method} {path}");
        let name = CallName {
            backend: KIND,
            call: &call,
        };
        let reply = http_retry::send(name, &self.policy, || {
            let request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose())
                .query(query);
            match body {
                Some(body) => request.json(body),
                None => request,
            }
        })
        .await?;
        let parsed: Option<Envelope<T>> = serde_json::from_str(&reply.body).ok();
        match parsed {
            Some(envelope) if reply.status.is_success() && envelope.success => Ok(Ok(envelope)),
            Some(envelope) => Ok(Err(Refusal {
                status: reply.status,
                errors: envelope.errors,
                body: reply.body,
            })),
            None if reply.status.is_success() => Err(BackendError::Unreachable {
                backend: KIND,
                detail: format!(
                    "{call}: the answer is not Cloudflare's JSON envelope: {}",
                    http_retry::excerpt(&reply.body)
                ),
            }),
            None => Ok(Err(Refusal {
                status: reply.status,
                errors: Vec::new(),
                body: reply.body,
            })),
        }
    }

    /// Every item of a listing, page after page.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, BackendError> {
        let mut items = Vec::new();
        let mut page = 1;
        loop {
            let mut paged = query.to_vec();
            paged.push(("page", page.to_string()));
            let envelope: Envelope<Vec<T>> = self
                .call(Method::GET, path, &paged, None)
                .await?
                .map_err(|r| r.into_error(&format!("GET {path}")))?;
            items.extend(envelope.result.unwrap_or_default());
            let total = envelope
                .result_info
                .and_then(|i| i.total_pages)
                .unwrap_or(1);
            if page >= total {
                return Ok(items);
            }
            page += 1;
        }
    }

    /// The zone holding `fqdn`: the longest of its suffixes that the token sees as a zone.
    async fn zone_for(&self, fqdn: &str) -> Result<Zone, BackendError> {
        let labels: Vec<&str> = fqdn.split('.').collect();
        let mut tried = Vec::new();
        for start in 0..labels.len().saturating_sub(1) {
            let candidate = labels[start..].join(".");
            let zones: Vec<Zone> = self.list("/zones", &[("name", candidate.clone())]).await?;
            if let Some(zone) = zones
                .into_iter()
                .find(|z| z.name.eq_ignore_ascii_case(&candidate))
            {
                return Ok(zone);
            }
            tried.push(candidate);
        }
        Err(BackendError::Refused {
            backend: KIND,
            detail: format!(
                "no Cloudflare zone holds {fqdn} for this token (looked for {}): add the zone to \
                 the account, or give the token Zone.DNS:Edit on it",
                tried.join(", ")
            ),
        })
    }

    /// The records in `zone` that are `record` (rota's, whoever else has records there).
    async fn matching_records(
        &self,
        zone: &Zone,
        record: &ChallengeRecord<'_>,
    ) -> Result<Vec<Record>, BackendError> {
        let path = format!("/zones/{}/dns_records", zone.id);
        let query = [
            ("type", record.kind.to_owned()),
            ("name", record.fqdn.clone()),
            ("per_page", RECORDS_PER_PAGE.to_string()),
        ];
        let records: Vec<Record> = self.list(&path, &query).await?;
        Ok(records
            .into_iter()
            .filter(|r| record.matches(&r.content))
            .collect())
    }
}

#[async_trait]
impl DcvBackend for CloudflareDcv {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn supported_kinds(&self) -> &[ChallengeKind] {
        &[ChallengeKind::Dns01]
    }

    async fn publish(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let record = ChallengeRecord::of(KIND, challenge)?;
        let fqdn = &record.fqdn;
        let zone = self.zone_for(fqdn).await?;
        if !self.matching_records(&zone, &record).await?.is_empty() {
            tracing::info!(zone = %zone.name, record = %fqdn, "the record is already published");
            return Ok(());
        }
        let path = format!("/zones/{}/dns_records", zone.id);
        let body = json!({
            "type": record.kind,
            "name": fqdn,
            "content": record.value,
            "ttl": record.ttl.max(MIN_TTL),
            "comment": "rota DNS-01 challenge; removed after validation",
        });
        match self
            .call::<serde_json::Value>(Method::POST, &path, &[], Some(&body))
            .await?
        {
            Ok(_) => {}
            Err(refusal) if refusal.has_code(IDENTICAL_RECORD) => {}
            Err(refusal) => return Err(refusal.into_error(&format!("POST {path}"))),
        }
        tracing::info!(zone = %zone.name, record = %fqdn, kind = record.kind, "record published");
        Ok(())
    }

    async fn remove(&self, challenge: &DcvChallenge) -> Result<(), BackendError> {
        let record = ChallengeRecord::of(KIND, challenge)?;
        let fqdn = &record.fqdn;
        let zone = self.zone_for(fqdn).await?;
        for found in self.matching_records(&zone, &record).await? {
            let path = format!("/zones/{}/dns_records/{}", zone.id, found.id);
            match self
                .call::<serde_json::Value>(Method::DELETE, &path, &[], None)
                .await?
            {
                Ok(_) => {}
                Err(refusal)
                    if refusal.has_code(RECORD_NOT_FOUND)
                        || refusal.status == StatusCode::NOT_FOUND => {}
                Err(refusal) => return Err(refusal.into_error(&format!("DELETE {path}"))),
            }
        }
        tracing::info!(zone = %zone.name, record = %fqdn, kind = record.kind, "record removed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_quote_cloudflare_verbatim() {
        let refusal = Refusal {
            status: StatusCode::FORBIDDEN,
            errors: vec![ApiMessage {
                code: 9109,
                message: "Invalid access token".into(),
            }],
            body: String::new(),
        };
        let text = refusal.into_error("GET /zones").to_string();
        assert!(
            text.contains("GET /zones: HTTP 403: [9109] Invalid access token"),
            "{text}"
        );
        assert!(text.contains("Zone.DNS:Edit"), "{text}");
    }
}
