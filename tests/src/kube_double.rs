//! A Kubernetes API server double for Secrets: `GET` and server-side apply `PATCH` of
//! `/api/v1/namespaces/{ns}/secrets/{name}`, as the Kubernetes docs define them:
//!
//! - Server-side apply (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>):
//!   `Content-Type: application/apply-patch+yaml` (anything else: 415), `fieldManager`
//!   required (400 without it); the object is created if missing; each field remembers its
//!   managers (`metadata.managedFields`, operation `Apply`); a field another manager owns with
//!   another value is a conflict — 409 with a `Status` whose `details.causes` are
//!   `FieldManagerConflict` entries naming that manager and field — unless `force=true`; a
//!   field the applier owned and no longer sends is removed.
//! - Errors are `Status` objects (<https://kubernetes.io/docs/reference/using-api/api-concepts/#response-status-kind>);
//!   a missing Secret is 404 `NotFound`, a request without the bearer token 401.
//!
//! Only the leaf fields a TLS Secret uses are tracked: `type`, `data.*`,
//! `metadata.annotations.*`, `metadata.labels.*`. A test reads what was applied with
//! [`KubeDouble::secret`] and seeds a Secret another manager owns with [`KubeDouble::seed`].
//! It speaks HTTPS with a root of its own, so rota's kube client runs its real TLS path.
//!
//! It also serves `coordination.k8s.io/v1` Leases with their resource-version semantics
//! ([`leases`]), for the Kubernetes leader-election coordinator.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::serve::Served;

pub mod leases;

/// The bearer token the double's kubeconfig carries.
const TOKEN: &str = "rota-test-token";

/// Where a tracked field lives: its parent map (`data`, `metadata.annotations`; empty for the
/// top level) and its key, which may itself hold dots (`tls.crt`, `rota.dev/cert-id`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath {
    /// The parent map, dotted.
    pub parent: &'static str,
    /// The key in it.
    pub key: String,
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.parent.is_empty() {
            write!(f, ".{}", self.key)
        } else {
            write!(f, ".{}.{}", self.parent, self.key)
        }
    }
}

/// Each tracked field → its value.
type Fields = BTreeMap<FieldPath, Value>;

/// The parent maps whose entries are tracked one by one.
const MAPS: [&str; 3] = ["data", "metadata.annotations", "metadata.labels"];

#[derive(Default, Clone)]
struct StoredSecret {
    fields: Fields,
    /// Field → the managers that own it.
    owners: BTreeMap<FieldPath, BTreeSet<String>>,
}

#[derive(Default)]
struct Inner {
    secrets: BTreeMap<(String, String), StoredSecret>,
    /// `(method, content type, query)` of every request.
    requests: Vec<(String, String, String)>,
    /// What the API server's authorizer would check for every request.
    authorizations: Vec<Authorization>,
    leases: leases::LeaseStore,
}

/// The RBAC attributes the API server authorizes a request by
/// (<https://kubernetes.io/docs/reference/access-authn-authz/authorization/#determine-the-request-verb>):
/// `GET` of a named object is `get`, `PATCH` is `patch`, and a server-side apply `PATCH` that
/// creates the object is authorized as `create` as well
/// (<https://kubernetes.io/docs/reference/using-api/server-side-apply/#using-server-side-apply-in-a-controller>).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Authorization {
    /// The RBAC verb.
    pub verb: &'static str,
    /// The API group (empty for the core group).
    pub group: &'static str,
    /// The resource (plural, lower case).
    pub resource: &'static str,
    /// The namespace of the object.
    pub namespace: String,
}

type Shared = Arc<Mutex<Inner>>;

/// An API server double on a free loopback port, over TLS with a root of its own (which its
/// kubeconfig carries as `certificate-authority-data`, as a cluster's does).
pub struct KubeDouble {
    shared: Shared,
    served: Served,
    root_pem: String,
    dir: tempfile::TempDir,
}

/// A Secret as the double holds it, data decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretView {
    /// `type`.
    pub type_: Option<String>,
    /// `data`, base64-decoded.
    pub data: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// Field → managers.
    pub owners: BTreeMap<FieldPath, BTreeSet<String>>,
}

impl KubeDouble {
    /// Starts the double.
    #[must_use]
    pub fn start() -> Self {
        let shared: Shared = Arc::default();
        let app = Router::new()
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                get(get_secret).patch(apply_secret),
            )
            .merge(leases::routes())
            .with_state(Arc::clone(&shared));
        let mut root = rcgen::CertificateParams::default();
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.distinguished_name
            .push(rcgen::DnType::CommonName, "rota kube double CA");
        let root_key = rcgen::KeyPair::generate().expect("root key");
        let root_pem = root.clone().self_signed(&root_key).expect("root").pem();
        let root = rcgen::Issuer::new(root, root_key);
        Self {
            shared,
            served: Served::https(app, &root),
            root_pem,
            dir: tempfile::tempdir().expect("kubeconfig dir"),
        }
    }

    /// A kubeconfig pointing at the double (written on first call).
    #[must_use]
    pub fn kubeconfig_path(&self) -> PathBuf {
        let path = self.dir.path().join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: double\n\
             clusters:\n- name: double\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             users:\n- name: rota\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: double\n  context:\n    cluster: double\n    user: rota\n",
            self.served.base_url(),
            STANDARD.encode(&self.root_pem),
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    /// The Secret `ns/name`, if it exists.
    #[must_use]
    pub fn secret(&self, ns: &str, name: &str) -> Option<SecretView> {
        let inner = self.lock();
        let stored = inner.secrets.get(&(ns.to_owned(), name.to_owned()))?;
        let mut view = SecretView {
            type_: stored
                .fields
                .get(&FieldPath {
                    parent: "",
                    key: "type".to_owned(),
                })
                .and_then(Value::as_str)
                .map(str::to_owned),
            data: BTreeMap::new(),
            annotations: BTreeMap::new(),
            owners: stored.owners.clone(),
        };
        for (path, value) in &stored.fields {
            let text = value.as_str().unwrap_or_default();
            match path.parent {
                "data" => {
                    let bytes = STANDARD.decode(text).expect("data is base64");
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    view.data.insert(path.key.clone(), text);
                }
                "metadata.annotations" => {
                    view.annotations.insert(path.key.clone(), text.to_owned());
                }
                _ => {}
            }
        }
        Some(view)
    }

    /// Creates `ns/name` with `data` (plain text, encoded here) owned by `manager`, as an
    /// `Update` by another tool would leave it.
    pub fn seed(&self, ns: &str, name: &str, manager: &str, data: &[(&str, &str)]) {
        let mut stored = StoredSecret::default();
        for (key, value) in data {
            let path = FieldPath {
                parent: "data",
                key: (*key).to_owned(),
            };
            stored
                .fields
                .insert(path.clone(), Value::from(STANDARD.encode(value)));
            stored
                .owners
                .entry(path)
                .or_default()
                .insert(manager.to_owned());
        }
        self.lock()
            .secrets
            .insert((ns.to_owned(), name.to_owned()), stored);
    }

    /// `(method, content type, query)` of every request so far.
    #[must_use]
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.lock().requests.clone()
    }

    /// The RBAC checks every request so far needed.
    #[must_use]
    pub fn authorizations(&self) -> Vec<Authorization> {
        self.lock().authorizations.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `Status` error object.
fn status(code: StatusCode, reason: &str, message: &str, details: Option<Value>) -> Response {
    let mut body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    (code, Json(body)).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

fn record(shared: &Shared, method: &str, headers: &HeaderMap, query: &HashMap<String, String>) {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    query.sort();
    let mut inner = shared.lock().unwrap_or_else(PoisonError::into_inner);
    inner
        .requests
        .push((method.to_owned(), content_type, query.join("&")));
}

fn authorize(
    shared: &Shared,
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    namespace: &str,
) {
    let mut inner = shared.lock().unwrap_or_else(PoisonError::into_inner);
    inner.authorizations.push(Authorization {
        verb,
        group,
        resource,
        namespace: namespace.to_owned(),
    });
}

async fn get_secret(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    record(&shared, "GET", &headers, &query);
    authorize(&shared, "get", "", "secrets", &ns);
    if !authorized(&headers) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let inner = shared.lock().unwrap_or_else(PoisonError::into_inner);
    match inner.secrets.get(&(ns.clone(), name.clone())) {
        Some(stored) => Json(object(&ns, &name, stored)).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("secrets \"{name}\" not found"),
            Some(json!({"name": name, "kind": "secrets"})),
        ),
    }
}

async fn apply_secret(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(&shared, "PATCH", &headers, &query);
    authorize(&shared, "patch", "", "secrets", &ns);
    let exists = shared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .secrets
        .contains_key(&(ns.clone(), name.clone()));
    if !exists {
        authorize(&shared, "create", "", "secrets", &ns);
    }
    if !authorized(&headers) {
        return status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        );
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    if content_type != Some("application/apply-patch+yaml") {
        return status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            &format!(
                "the body of the request was in an unknown format - accepted media types include: application/apply-patch+yaml (got {content_type:?})"
            ),
            None,
        );
    }
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            None,
        );
    };
    let force = query.get("force").map(String::as_str) == Some("true");
    let applied: Value = match serde_yaml::from_str(&body) {
        Ok(value) => value,
        Err(e) => {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("error decoding YAML: {e}"),
                None,
            );
        }
    };
    if applied["apiVersion"] != "v1"
        || applied["kind"] != "Secret"
        || applied["metadata"]["name"] != name.as_str()
    {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the applied object must be a v1 Secret with the name in the URL",
            None,
        );
    }
    let fields = leaf_fields(&applied);
    let mut inner = shared.lock().unwrap_or_else(PoisonError::into_inner);
    let key = (ns.clone(), name.clone());
    let created = !inner.secrets.contains_key(&key);
    let stored = inner.secrets.entry(key).or_default();
    let conflicts = conflicts(stored, &fields, manager);
    if !conflicts.is_empty() && !force {
        return conflict_status(&conflicts);
    }
    apply(stored, manager, fields, force);
    let object = object(&ns, &name, stored);
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (code, Json(object)).into_response()
}

/// `(other manager, field)` for each applied field another manager owns with another value.
fn conflicts(stored: &StoredSecret, fields: &Fields, manager: &str) -> Vec<(String, FieldPath)> {
    fields
        .iter()
        .filter(|(path, value)| stored.fields.get(*path).is_some_and(|v| v != *value))
        .flat_map(|(path, _)| {
            stored
                .owners
                .get(path)
                .into_iter()
                .flatten()
                .filter(|owner| *owner != manager)
                .map(|owner| (owner.clone(), path.clone()))
        })
        .collect()
}

/// The 409 the API server answers a conflicting apply with: one `FieldManagerConflict` cause
/// per field, and a message listing them.
fn conflict_status(conflicts: &[(String, FieldPath)]) -> Response {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(owner, path)| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{owner}\""),
                "field": path.to_string(),
            })
        })
        .collect();
    let summary: Vec<String> = conflicts
        .iter()
        .map(|(o, p)| format!("conflict with \"{o}\": {p}"))
        .collect();
    let message = format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        summary.join(", ")
    );
    status(
        StatusCode::CONFLICT,
        "Conflict",
        &message,
        Some(json!({"causes": causes})),
    )
}

/// Applies `fields` for `manager`: sets them, takes ownership (sole with `force`, shared
/// when another manager holds the same value), drops fields it owned and no longer sends.
fn apply(stored: &mut StoredSecret, manager: &str, fields: Fields, force: bool) {
    let dropped: Vec<FieldPath> = stored
        .owners
        .iter()
        .filter(|(path, owners)| owners.contains(manager) && !fields.contains_key(*path))
        .map(|(path, _)| path.clone())
        .collect();
    for path in dropped {
        let owners = stored.owners.entry(path.clone()).or_default();
        owners.remove(manager);
        if owners.is_empty() {
            stored.owners.remove(&path);
            stored.fields.remove(&path);
        }
    }
    for (path, value) in fields {
        let owners = stored.owners.entry(path.clone()).or_default();
        if force || stored.fields.get(&path).is_some_and(|v| *v != value) {
            owners.clear();
        }
        owners.insert(manager.to_owned());
        stored.fields.insert(path, value);
    }
}

/// The tracked leaf fields of an applied object.
fn leaf_fields(object: &Value) -> Fields {
    let mut fields = Fields::new();
    if let Some(type_) = object.get("type") {
        fields.insert(
            FieldPath {
                parent: "",
                key: "type".to_owned(),
            },
            type_.clone(),
        );
    }
    for parent in MAPS {
        let map = parent.split('.').fold(object, |o, p| &o[p]);
        for (key, value) in map.as_object().into_iter().flatten() {
            fields.insert(
                FieldPath {
                    parent,
                    key: key.clone(),
                },
                value.clone(),
            );
        }
    }
    fields
}

/// The Secret as the API server returns it, with `managedFields` per manager.
fn object(ns: &str, name: &str, stored: &StoredSecret) -> Value {
    let mut object = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
    });
    let mut managers: BTreeMap<&str, Value> = BTreeMap::new();
    for (path, value) in &stored.fields {
        let parents = || path.parent.split('.').filter(|p| !p.is_empty());
        parents().fold(&mut object, |o, p| &mut o[p])[&path.key] = value.clone();
        for owner in stored.owners.get(path).into_iter().flatten() {
            let entry = managers.entry(owner).or_insert_with(|| json!({}));
            let node = parents().fold(entry, |o, p| &mut o[format!("f:{p}")]);
            node[format!("f:{}", path.key)] = json!({});
        }
    }
    object["metadata"]["managedFields"] = managers
        .into_iter()
        .map(|(manager, fields)| {
            json!({
                "manager": manager, "operation": "Apply", "apiVersion": "v1",
                "fieldsType": "FieldsV1", "fieldsV1": fields,
            })
        })
        .collect();
    object
}
