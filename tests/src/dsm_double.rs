//! A Synology DSM Web API double: the calls rota makes, in the shapes DSM answers them.
//!
//! - `GET /webapi/query.cgi` `SYNO.API.Info` `query`, and `SYNO.API.Auth` `login`/`logout`
//!   on `entry.cgi`: Synology's "DSM Login Web API Guide"
//!   (<https://global.download.synology.com/download/Document/Software/DeveloperGuide/Os/DSM/All/enu/DSM_Login_Web_API_Guide_enu.pdf>),
//!   including its refusals: 400 (no such account or incorrect password), 403 (2-factor code
//!   required: an account with a trusted device and no `device_id` sent), 119 (invalid session).
//! - `SYNO.Core.Certificate.CRT` `list`, `SYNO.Core.Certificate` `import` (multipart, the
//!   `SynoToken` required) and `export` (a zip of `cert.pem`, `chain.pem`, `privkey.pem`): as
//!   DSM's Control Panel makes them, per acme.sh's `deploy/synology_dsm.sh` and
//!   N4S4/synology-api's `core_certificate.py`. Importing with the `id` of an existing
//!   certificate replaces it in place, keeping its services; `as_default=true` keeps (or
//!   makes) it the default, its absence drops the flag.
//! - Every answer is the envelope `{"success":true,"data":…}` or
//!   `{"success":false,"error":{"code":N}}` with HTTP 200, as DSM sends it.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde_json::{Value, json};

use crate::serve::Served;

/// One certificate in the double's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCert {
    /// DSM's id.
    pub id: String,
    /// The Control Panel label.
    pub desc: String,
    /// The default certificate flag.
    pub is_default: bool,
    /// The services bound to it (display names).
    pub services: Vec<String>,
    /// The leaf as imported.
    pub cert_pem: String,
    /// The chain as imported.
    pub chain_pem: String,
    /// The key as imported.
    pub key_pem: String,
}

/// One Web API call the double received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `api` parameter.
    pub api: String,
    /// `method` parameter.
    pub method: String,
    /// The URL's query string as sent.
    pub query: String,
}

struct Inner {
    username: String,
    password: String,
    /// The trusted device's token: when set, the account signs in with 2 factors.
    device_token: Option<String>,
    certs: Vec<StoredCert>,
    sessions: Vec<(String, String)>,
    next_id: usize,
    calls: Vec<Call>,
}

type Shared = Arc<Mutex<Inner>>;

/// A DSM on a free loopback port (plain HTTP, like DSM's port 5000).
pub struct DsmDouble {
    shared: Shared,
    served: Served,
}

impl DsmDouble {
    /// A DSM with one account and the certificates `certs`.
    #[must_use]
    pub fn start(username: &str, password: &str, certs: Vec<StoredCert>) -> Self {
        let shared = Arc::new(Mutex::new(Inner {
            username: username.to_owned(),
            password: password.to_owned(),
            device_token: None,
            certs,
            sessions: Vec::new(),
            next_id: 1,
            calls: Vec::new(),
        }));
        let app = Router::new()
            .route("/webapi/query.cgi", get(query_cgi))
            .route("/webapi/entry.cgi", get(entry_cgi).post(entry_cgi))
            .with_state(Arc::clone(&shared));
        Self {
            shared,
            served: Served::http(app),
        }
    }

    /// `dsm.url`.
    #[must_use]
    pub fn url(&self) -> String {
        self.served.base_url()
    }

    /// Makes the account a 2-factor one whose trusted device holds `token`.
    pub fn require_device_token(&self, token: &str) {
        self.lock().device_token = Some(token.to_owned());
    }

    /// The certificate store now.
    #[must_use]
    pub fn certs(&self) -> Vec<StoredCert> {
        self.lock().certs.clone()
    }

    /// Every call so far.
    #[must_use]
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// How many calls of `api` `method` were made.
    #[must_use]
    pub fn count(&self, api: &str, method: &str) -> usize {
        let calls = self.calls();
        calls
            .iter()
            .filter(|c| c.api == api && c.method == method)
            .count()
    }

    /// Sessions logged in and not logged out.
    #[must_use]
    pub fn open_sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A refusal envelope with `code`.
fn refused(code: u32) -> Response {
    Json(json!({"success": false, "error": {"code": code}})).into_response()
}

fn ok(data: &Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

async fn query_cgi(Query(params): Query<HashMap<String, String>>) -> Response {
    if params.get("api").map(String::as_str) != Some("SYNO.API.Info") {
        return refused(102);
    }
    ok(&json!({"SYNO.API.Auth": {"maxVersion": 7, "minVersion": 1, "path": "entry.cgi"}}))
}

/// `entry.cgi`: parameters from the query string and the form or multipart body.
async fn entry_cgi(State(shared): State<Shared>, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let mut params: HashMap<String, String> =
        Query::<HashMap<String, String>>::try_from_uri(request.uri())
            .map(|q| q.0)
            .unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if content_type.starts_with("multipart/form-data") {
        let Ok(mut multipart) = Multipart::from_request(request, &()).await else {
            return refused(101);
        };
        while let Ok(Some(field)) = multipart.next_field().await {
            let name = field.name().unwrap_or_default().to_owned();
            let text = field.text().await.unwrap_or_default();
            params.insert(name, text);
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let Ok(Form(form)) = Form::<HashMap<String, String>>::from_request(request, &()).await
        else {
            return refused(101);
        };
        params.extend(form);
    }
    let api = params.get("api").cloned().unwrap_or_default();
    let method = params.get("method").cloned().unwrap_or_default();
    let mut inner = shared.lock().unwrap_or_else(PoisonError::into_inner);
    inner.calls.push(Call {
        api: api.clone(),
        method: method.clone(),
        query,
    });
    match (api.as_str(), method.as_str()) {
        ("SYNO.API.Auth", "login") => login(&mut inner, &params),
        ("SYNO.API.Auth", "logout") => {
            let sid = params.get("_sid").cloned().unwrap_or_default();
            inner.sessions.retain(|(s, _)| *s != sid);
            Json(json!({"success": true})).into_response()
        }
        (api, method) => {
            let Some(token) = session_token(&inner, &params) else {
                return refused(119);
            };
            match (api, method) {
                ("SYNO.Core.Certificate.CRT", "list") => list(&inner),
                ("SYNO.Core.Certificate", "import") => {
                    // DSM wants the SynoToken on state-changing calls (query or header).
                    let header = headers.get("x-syno-token").and_then(|v| v.to_str().ok());
                    if params.get("SynoToken") != Some(&token) || header != Some(token.as_str()) {
                        return refused(119);
                    }
                    import(&mut inner, &params)
                }
                ("SYNO.Core.Certificate", "export") => export(&inner, &params),
                _ => refused(103),
            }
        }
    }
}

/// The SynoToken of the session `_sid` names, if it is logged in.
fn session_token(inner: &Inner, params: &HashMap<String, String>) -> Option<String> {
    let sid = params.get("_sid")?;
    inner
        .sessions
        .iter()
        .find(|(s, _)| s == sid)
        .map(|(_, t)| t.clone())
}

fn login(inner: &mut Inner, params: &HashMap<String, String>) -> Response {
    let account = params.get("account");
    let password = params.get("passwd");
    if account != Some(&inner.username) || password != Some(&inner.password) {
        return refused(400);
    }
    if let Some(token) = &inner.device_token
        && params.get("device_id") != Some(token)
    {
        return refused(403);
    }
    let n = inner.sessions.len() + inner.calls.len();
    let sid = format!("sid-{n}");
    let token = format!("synotoken-{n}");
    inner.sessions.push((sid.clone(), token.clone()));
    ok(&json!({"did": "", "is_portal_port": false, "sid": sid, "synotoken": token}))
}

fn list(inner: &Inner) -> Response {
    let certificates: Vec<Value> = inner
        .certs
        .iter()
        .map(|c| {
            let services: Vec<Value> = c
                .services
                .iter()
                .map(|s| json!({"display_name": s, "service": s, "subscriber": "system"}))
                .collect();
            json!({
                "desc": c.desc, "id": c.id, "is_default": c.is_default,
                "is_broken": false, "renewable": false, "user_deletable": true,
                "services": services,
            })
        })
        .collect();
    ok(&json!({"certificates": certificates}))
}

fn import(inner: &mut Inner, params: &HashMap<String, String>) -> Response {
    let (Some(key), Some(cert)) = (params.get("key"), params.get("cert")) else {
        return refused(114);
    };
    let id = params.get("id").cloned().unwrap_or_default();
    let as_default = params.get("as_default").map(String::as_str) == Some("true");
    let id = if id.is_empty() {
        let id = format!("cert{}", inner.next_id);
        inner.next_id += 1;
        inner.certs.push(StoredCert {
            id: id.clone(),
            desc: String::new(),
            is_default: false,
            services: Vec::new(),
            cert_pem: String::new(),
            chain_pem: String::new(),
            key_pem: String::new(),
        });
        id
    } else {
        id
    };
    if as_default {
        for other in &mut inner.certs {
            other.is_default = false;
        }
    }
    let Some(stored) = inner.certs.iter_mut().find(|c| c.id == id) else {
        return refused(100);
    };
    stored.cert_pem.clone_from(cert);
    stored.key_pem.clone_from(key);
    stored.chain_pem = params.get("inter_cert").cloned().unwrap_or_default();
    stored.desc = params.get("desc").cloned().unwrap_or_default();
    stored.is_default = as_default;
    ok(&json!({"id": id, "restart_httpd": true}))
}

/// The Control Panel's "Export certificate": a zip of the certificate's PEM files.
fn export(inner: &Inner, params: &HashMap<String, String>) -> Response {
    let id = params.get("id").cloned().unwrap_or_default();
    let Some(cert) = inner.certs.iter().find(|c| c.id == id) else {
        return refused(100);
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, pem) in [
        ("cert.pem", &cert.cert_pem),
        ("chain.pem", &cert.chain_pem),
        ("privkey.pem", &cert.key_pem),
    ] {
        zip.start_file(name, options).expect("zip member");
        zip.write_all(pem.as_bytes()).expect("zip write");
    }
    let archive = zip.finish().expect("zip finish").into_inner();
    (
        [(axum::http::header::CONTENT_TYPE, "application/zip")],
        archive,
    )
        .into_response()
}
