//! A Cloudflare API v4 double: the DNS calls rota makes, in the shapes Cloudflare documents
//! (<https://developers.cloudflare.com/api/>), under `/client/v4` as on the real host.
//!
//! - `GET /zones?name=&page=&per_page=` ("List Zones", 20 a page by default),
//!   `GET /zones/{id}/dns_records?type=&name=&page=&per_page=` ("List DNS Records", 100 a page
//!   by default), `POST /zones/{id}/dns_records` ("Create DNS Record"),
//!   `DELETE /zones/{id}/dns_records/{record_id}` ("Delete DNS Record").
//! - Every answer is `{success, errors: [{code, message}], messages, result, result_info}`.
//! - Authentication is `Authorization: Bearer <token>`; a wrong token is HTTP 403 with code
//!   10000 "Authentication error" (Cloudflare's API troubleshooting page). A token sees only
//!   the zones it is scoped to: the others are absent from listings and 403 on access.
//! - Creating a record identical to one that exists is HTTP 400 with code 81058 "An identical
//!   record already exists."; deleting a missing one is HTTP 404 with code 81044 "Record does
//!   not exist." (as Cloudflare answers them, per the lego and cert-manager clients).
//! - Test knobs: [`CloudflareDouble::cap_page_size`] serves fewer items per page than asked,
//!   so a short listing spans several pages; [`CloudflareDouble::fail_next`] answers the next
//!   calls with a 429 (code 971, `Retry-After`) or a 5xx; [`CloudflareDouble::mirror_to`]
//!   copies every TXT record change into pebble-challtestsrv so pebble can validate.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::serve::Served;

/// A DNS record in the double's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// Cloudflare's id.
    pub id: String,
    /// The zone's id.
    pub zone_id: String,
    /// `TXT`, `A`, …
    pub kind: String,
    /// Fully qualified name.
    pub name: String,
    /// Content as stored.
    pub content: String,
    /// TTL.
    pub ttl: u64,
}

/// Called with a record name and the TXT values left at it after each change.
pub type Mirror = Arc<dyn Fn(&str, &[String]) + Send + Sync>;

struct Inner {
    token: String,
    zones: Vec<(String, String)>,
    /// Zone ids the token may see; `None` for every zone.
    scope: Option<Vec<String>>,
    records: Vec<DnsRecord>,
    next_id: u64,
    page_cap: Option<usize>,
    failures: Vec<(StatusCode, Option<u64>)>,
    calls: Vec<String>,
    mirror: Option<Mirror>,
}

/// A running Cloudflare double.
pub struct CloudflareDouble {
    inner: Arc<Mutex<Inner>>,
    served: Served,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(inner: &Shared) -> MutexGuard<'_, Inner> {
    inner.lock().unwrap_or_else(PoisonError::into_inner)
}

impl CloudflareDouble {
    /// Serves the zones `zones` (names) to the bearer token `token`.
    #[must_use]
    pub fn start(token: &str, zones: &[&str]) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_owned(),
            zones: zones
                .iter()
                .enumerate()
                .map(|(i, z)| (format!("zone{i:02}"), (*z).to_owned()))
                .collect(),
            scope: None,
            records: Vec::new(),
            next_id: 1,
            page_cap: None,
            failures: Vec::new(),
            calls: Vec::new(),
            mirror: None,
        }));
        let app = Router::new()
            .route("/client/v4/zones", get(list_zones))
            .route(
                "/client/v4/zones/{zone}/dns_records",
                get(list_records).post(create_record),
            )
            .route(
                "/client/v4/zones/{zone}/dns_records/{id}",
                delete(delete_record),
            )
            .with_state(Arc::clone(&inner));
        Self {
            inner,
            served: Served::http(app),
        }
    }

    /// The `cloudflare.api_url` that reaches this double.
    #[must_use]
    pub fn api_url(&self) -> String {
        format!("{}/client/v4", self.served.base_url())
    }

    /// Limits the token to the zones named.
    pub fn scope_token_to(&self, zones: &[&str]) {
        let mut inner = lock(&self.inner);
        let ids = inner
            .zones
            .iter()
            .filter(|(_, name)| zones.contains(&name.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        inner.scope = Some(ids);
    }

    /// Serves at most `cap` items per page whatever `per_page` asks.
    pub fn cap_page_size(&self, cap: usize) {
        lock(&self.inner).page_cap = Some(cap);
    }

    /// Answers the next call with `status` (and `Retry-After: retry_after` seconds if given).
    pub fn fail_next(&self, status: u16, retry_after: Option<u64>) {
        let status = StatusCode::from_u16(status).expect("status");
        lock(&self.inner).failures.push((status, retry_after));
    }

    /// Copies every TXT change to `mirror`.
    pub fn mirror_to(&self, mirror: Mirror) {
        lock(&self.inner).mirror = Some(mirror);
    }

    /// Adds a record as if made outside rota.
    pub fn add_record(&self, zone: &str, kind: &str, name: &str, content: &str) {
        let mut inner = lock(&self.inner);
        let zone_id = inner
            .zones
            .iter()
            .find(|(_, z)| z == zone)
            .map(|(id, _)| id.clone())
            .expect("a zone of the double");
        insert(&mut inner, &zone_id, kind, name, content, 300);
    }

    /// Every record, in creation order.
    #[must_use]
    pub fn records(&self) -> Vec<DnsRecord> {
        lock(&self.inner).records.clone()
    }

    /// Every call received, as `METHOD /path?query`.
    #[must_use]
    pub fn calls(&self) -> Vec<String> {
        lock(&self.inner).calls.clone()
    }
}

fn insert(
    inner: &mut Inner,
    zone_id: &str,
    kind: &str,
    name: &str,
    content: &str,
    ttl: u64,
) -> String {
    let id = format!("rec{:04}", inner.next_id);
    inner.next_id += 1;
    inner.records.push(DnsRecord {
        id: id.clone(),
        zone_id: zone_id.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
        content: content.to_owned(),
        ttl,
    });
    id
}

fn envelope(status: StatusCode, result: &Value, info: Option<Value>) -> Response {
    let mut body = json!({ "success": true, "errors": [], "messages": [], "result": result });
    if let Some(info) = info {
        body["result_info"] = info;
    }
    (status, Json(body)).into_response()
}

fn refusal(status: StatusCode, code: u64, message: &str) -> Response {
    let body = json!({
        "success": false,
        "errors": [{ "code": code, "message": message }],
        "messages": [],
        "result": null,
    });
    (status, Json(body)).into_response()
}

/// Logs the call, plays an injected failure, checks the token: `Some` is the answer to give.
fn admit(inner: &mut Inner, headers: &HeaderMap, call: String) -> Option<Response> {
    inner.calls.push(call);
    if !inner.failures.is_empty() {
        let (status, retry_after) = inner.failures.remove(0);
        let mut response = if status == StatusCode::TOO_MANY_REQUESTS {
            refusal(
                status,
                971,
                "Please wait and consider throttling your request speed",
            )
        } else {
            (status, "upstream connect error").into_response()
        };
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                seconds.to_string().parse().expect("header"),
            );
        }
        return Some(response);
    }
    let sent = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if sent != Some(inner.token.as_str()) {
        return Some(refusal(
            StatusCode::FORBIDDEN,
            10000,
            "Authentication error",
        ));
    }
    None
}

fn visible(inner: &Inner, zone_id: &str) -> bool {
    inner.zones.iter().any(|(id, _)| id == zone_id)
        && inner
            .scope
            .as_ref()
            .is_none_or(|s| s.iter().any(|id| id == zone_id))
}

/// One page of `items` as Cloudflare pages them, with its `result_info`.
fn page(
    inner: &Inner,
    items: &[Value],
    query: &Query<Vec<(String, String)>>,
    default: usize,
) -> Response {
    let param = |k: &str| {
        query
            .0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let asked: usize = param("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let per_page = inner.page_cap.map_or(asked, |cap| asked.min(cap)).max(1);
    let number: usize = param("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total_pages = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .iter()
        .skip((number - 1) * per_page)
        .take(per_page)
        .cloned()
        .collect();
    let info = json!({
        "page": number, "per_page": per_page, "count": slice.len(),
        "total_count": items.len(), "total_pages": total_pages,
    });
    envelope(StatusCode::OK, &Value::Array(slice), Some(info))
}

fn query_text(query: &Query<Vec<(String, String)>>) -> String {
    query
        .0
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

async fn list_zones(
    State(inner): State<Shared>,
    headers: HeaderMap,
    query: Query<Vec<(String, String)>>,
) -> Response {
    let mut inner = lock(&inner);
    if let Some(r) = admit(
        &mut inner,
        &headers,
        format!("GET /zones?{}", query_text(&query)),
    ) {
        return r;
    }
    let name = query
        .0
        .iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.clone());
    let zones: Vec<Value> = inner
        .zones
        .iter()
        .filter(|(id, z)| visible(&inner, id) && name.as_ref().is_none_or(|n| n == z))
        .map(|(id, z)| json!({ "id": id, "name": z, "status": "active" }))
        .collect();
    page(&inner, &zones, &query, 20)
}

async fn list_records(
    State(inner): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    query: Query<Vec<(String, String)>>,
) -> Response {
    let mut inner = lock(&inner);
    let call = format!("GET /zones/{zone}/dns_records?{}", query_text(&query));
    if let Some(r) = admit(&mut inner, &headers, call) {
        return r;
    }
    if !visible(&inner, &zone) {
        return refusal(StatusCode::FORBIDDEN, 10000, "Authentication error");
    }
    let param = |k: &str| {
        query
            .0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let (kind, name) = (param("type"), param("name"));
    let records: Vec<Value> = inner
        .records
        .iter()
        .filter(|r| r.zone_id == zone)
        .filter(|r| kind.as_ref().is_none_or(|k| *k == r.kind))
        .filter(|r| name.as_ref().is_none_or(|n| *n == r.name))
        .map(record_json)
        .collect();
    page(&inner, &records, &query, 100)
}

fn record_json(r: &DnsRecord) -> Value {
    json!({ "id": r.id, "zone_id": r.zone_id, "type": r.kind, "name": r.name, "content": r.content, "ttl": r.ttl })
}

async fn create_record(
    State(inner): State<Shared>,
    Path(zone): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mirror;
    let (response, name) = {
        let mut inner = lock(&inner);
        if let Some(r) = admit(
            &mut inner,
            &headers,
            format!("POST /zones/{zone}/dns_records"),
        ) {
            return r;
        }
        if !visible(&inner, &zone) {
            return refusal(StatusCode::FORBIDDEN, 10000, "Authentication error");
        }
        let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
        let (kind, name, content) = (text("type"), text("name"), text("content"));
        let ttl = body["ttl"].as_u64().unwrap_or(1);
        if !(ttl == 1 || (60..=86400).contains(&ttl)) {
            return refusal(
                StatusCode::BAD_REQUEST,
                9021,
                "Invalid TTL. Must be between 60 and 86400 seconds, or 1 for Automatic.",
            );
        }
        let identical = inner
            .records
            .iter()
            .any(|r| r.zone_id == zone && r.kind == kind && r.name == name && r.content == content);
        if identical {
            return refusal(
                StatusCode::BAD_REQUEST,
                81058,
                "An identical record already exists.",
            );
        }
        let id = insert(&mut inner, &zone, &kind, &name, &content, ttl);
        let created = inner
            .records
            .iter()
            .find(|r| r.id == id)
            .map(record_json)
            .expect("created");
        mirror = inner.mirror.clone();
        (envelope(StatusCode::OK, &created, None), name)
    };
    mirror_txt(&inner, mirror, &name).await;
    response
}

async fn delete_record(
    State(inner): State<Shared>,
    Path((zone, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mirror;
    let name = {
        let mut inner = lock(&inner);
        if let Some(r) = admit(
            &mut inner,
            &headers,
            format!("DELETE /zones/{zone}/dns_records/{id}"),
        ) {
            return r;
        }
        if !visible(&inner, &zone) {
            return refusal(StatusCode::FORBIDDEN, 10000, "Authentication error");
        }
        let Some(at) = inner
            .records
            .iter()
            .position(|r| r.id == id && r.zone_id == zone)
        else {
            return refusal(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
        };
        mirror = inner.mirror.clone();
        inner.records.remove(at).name
    };
    mirror_txt(&inner, mirror, &name).await;
    envelope(StatusCode::OK, &json!({ "id": id }), None)
}

/// Hands the TXT values now at `name` to the mirror, off the runtime (it may block).
async fn mirror_txt(inner: &Shared, mirror: Option<Mirror>, name: &str) {
    let Some(mirror) = mirror else { return };
    let values: Vec<String> = lock(inner)
        .records
        .iter()
        .filter(|r| r.kind == "TXT" && r.name == name)
        .map(|r| r.content.trim_matches('"').to_owned())
        .collect();
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || mirror(&name, &values))
        .await
        .expect("mirror");
}
