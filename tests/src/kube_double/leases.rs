//! The double's `coordination.k8s.io/v1` Leases
//! (<https://kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/>): `GET`
//! and `PUT` of `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}`, `POST` to the
//! collection, with the optimistic concurrency the API concepts page defines
//! (<https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions>):
//!
//! - every write stores a new `metadata.resourceVersion`, from one counter for the whole
//!   double (etcd's revision plays that part in a cluster);
//! - a `PUT` whose `metadata.resourceVersion` is not the stored one is 409 `Conflict` ("the
//!   object has been modified"); a `PUT` without one is 422 `Invalid`, as the Lease registry
//!   refuses unconditional updates; a `PUT` of a missing Lease is 404 `NotFound`;
//! - a `POST` of a name that exists is 409 `AlreadyExists`;
//! - errors are `Status` objects
//!   (<https://kubernetes.io/docs/reference/using-api/api-concepts/#response-status-kind>).
//!
//! Two hooks for tests: [`KubeDouble::interleave_lease_write`] lands another client's write
//! just before the next write rota sends (between its `GET` and its `PUT`), and
//! [`KubeDouble::forbid_leases`] makes RBAC deny every Lease request (403 `Forbidden`).

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{KubeDouble, Shared, authorized, record, status};

/// The API group Leases are served in.
pub const GROUP: &str = "coordination.k8s.io";

/// The Leases the double holds and its test hooks.
#[derive(Default)]
pub(super) struct LeaseStore {
    objects: BTreeMap<(String, String), Value>,
    /// The last `resourceVersion` handed out.
    revision: u64,
    /// Another client's spec to store just before the next write to that Lease.
    interleaved: BTreeMap<(String, String), Value>,
    forbidden: bool,
}

impl LeaseStore {
    /// Stores `object` (its `spec` and `metadata.labels`/`annotations`) under a new version.
    fn write(&mut self, ns: &str, name: &str, body: &Value) -> Value {
        self.revision += 1;
        let key = (ns.to_owned(), name.to_owned());
        let (uid, created) = match self.objects.get(&key) {
            Some(old) => (
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
            ),
            None => (
                Value::from(format!("lease-uid-{}", self.revision)),
                Value::from(
                    time::OffsetDateTime::now_utc()
                        .replace_nanosecond(0)
                        .expect("whole second")
                        .format(&time::format_description::well_known::Rfc3339)
                        .expect("RFC 3339"),
                ),
            ),
        };
        let mut metadata = json!({
            "name": name, "namespace": ns, "uid": uid,
            "resourceVersion": self.revision.to_string(), "creationTimestamp": created,
        });
        for key in ["labels", "annotations"] {
            if let Some(map) = body["metadata"].get(key) {
                metadata[key] = map.clone();
            }
        }
        let object = json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "Lease",
            "metadata": metadata, "spec": body.get("spec").cloned().unwrap_or(json!({})),
        });
        self.objects.insert(key, object.clone());
        object
    }

    /// Lands the write a test queued with [`KubeDouble::interleave_lease_write`], if any.
    fn interleave(&mut self, ns: &str, name: &str) {
        if let Some(spec) = self.interleaved.remove(&(ns.to_owned(), name.to_owned())) {
            let stored = self.objects.get(&(ns.to_owned(), name.to_owned()));
            let metadata = stored.map_or(json!({}), |o| o["metadata"].clone());
            self.write(ns, name, &json!({"metadata": metadata, "spec": spec}));
        }
    }
}

/// The Lease routes, for the double's router.
pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases",
            post(create_lease),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{name}",
            get(get_lease).put(replace_lease),
        )
}

impl KubeDouble {
    /// The Lease `ns/name` as the API server would return it, if it exists.
    #[must_use]
    pub fn lease(&self, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .leases
            .objects
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Creates or overwrites `ns/name` with `spec`, as another client's write would.
    pub fn seed_lease(&self, ns: &str, name: &str, spec: Value) {
        let mut body = json!({});
        body["spec"] = spec;
        self.lock().leases.write(ns, name, &body);
    }

    /// Stores `spec` for `ns/name` as another client's write just before the next `POST` or
    /// `PUT` of that Lease is handled: that request then races a write it did not see.
    pub fn interleave_lease_write(&self, ns: &str, name: &str, spec: Value) {
        self.lock()
            .leases
            .interleaved
            .insert((ns.to_owned(), name.to_owned()), spec);
    }

    /// From now on RBAC denies every Lease request, as without a Role granting `leases`.
    pub fn forbid_leases(&self) {
        self.lock().leases.forbidden = true;
    }
}

/// Records the request and its RBAC check; the refusal to send when it is not allowed.
fn admit(
    shared: &Shared,
    method: &str,
    verb: &'static str,
    (ns, name): (&str, Option<&str>),
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Option<Response> {
    record(shared, method, headers, query);
    super::authorize(shared, verb, GROUP, "leases", ns);
    if !authorized(headers) {
        return Some(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ));
    }
    let forbidden = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .leases
        .forbidden;
    forbidden.then(|| {
        let object = name.map_or(String::new(), |n| format!(" \"{n}\""));
        status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "leases.{GROUP}{object} is forbidden: User \"system:serviceaccount:rota:rota\" cannot {verb} resource \"leases\" in API group \"{GROUP}\" in the namespace \"{ns}\""
            ),
            Some(json!({"name": name.unwrap_or_default(), "group": GROUP, "kind": "leases"})),
        )
    })
}

fn details(name: &str) -> Value {
    json!({"name": name, "group": GROUP, "kind": "leases"})
}

fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("leases.{GROUP} \"{name}\" not found"),
        Some(details(name)),
    )
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message, None)
}

/// The body as a Lease for namespace `ns`, or why the API server answers 400.
fn parse(body: &str, ns: &str) -> Result<Value, String> {
    let object: Value =
        serde_json::from_str(body).map_err(|e| format!("error decoding JSON: {e}"))?;
    if object["apiVersion"] != format!("{GROUP}/v1") || object["kind"] != "Lease" {
        return Err(format!(
            "the object must be a {GROUP}/v1 Lease, got {} {}",
            object["apiVersion"], object["kind"]
        ));
    }
    if object["metadata"].get("namespace").is_some_and(|n| n != ns) {
        return Err(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_owned(),
        );
    }
    Ok(object)
}

async fn get_lease(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = admit(&shared, "GET", "get", (&ns, Some(&name)), &headers, &query) {
        return refused;
    }
    let inner = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match inner.leases.objects.get(&(ns, name.clone())) {
        Some(object) => Json(object.clone()).into_response(),
        None => not_found(&name),
    }
}

async fn create_lease(
    State(shared): State<Shared>,
    Path(ns): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refused) = admit(&shared, "POST", "create", (&ns, None), &headers, &query) {
        return refused;
    }
    let object = match parse(&body, &ns) {
        Ok(object) => object,
        Err(why) => return bad_request(&why),
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "Lease.{GROUP} \"\" is invalid: metadata.name: Required value: name or generateName is required"
            ),
            None,
        );
    };
    let mut inner = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    inner.leases.interleave(&ns, &name);
    if inner
        .leases
        .objects
        .contains_key(&(ns.clone(), name.clone()))
    {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("leases.{GROUP} \"{name}\" already exists"),
            Some(details(&name)),
        );
    }
    let created = inner.leases.write(&ns, &name, &object);
    (StatusCode::CREATED, Json(created)).into_response()
}

async fn replace_lease(
    State(shared): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if let Some(refused) = admit(
        &shared,
        "PUT",
        "update",
        (&ns, Some(&name)),
        &headers,
        &query,
    ) {
        return refused;
    }
    let object = match parse(&body, &ns) {
        Ok(object) => object,
        Err(why) => return bad_request(&why),
    };
    if object["metadata"]["name"] != name.as_str() {
        return bad_request(&format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            object["metadata"]["name"]
        ));
    }
    let mut inner = shared
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    inner.leases.interleave(&ns, &name);
    let Some(stored) = inner.leases.objects.get(&(ns.clone(), name.clone())) else {
        return not_found(&name);
    };
    let Some(sent) = object["metadata"]["resourceVersion"].as_str() else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            &format!(
                "Lease.{GROUP} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"
            ),
            Some(details(&name)),
        );
    };
    if stored["metadata"]["resourceVersion"] != sent {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on leases.{GROUP} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(details(&name)),
        );
    }
    Json(inner.leases.write(&ns, &name, &object)).into_response()
}
