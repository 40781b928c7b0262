//! The Kubernetes client every kube backend (the `k8s_secret` installer, the `Lease`
//! coordinator) connects with: from a kubeconfig file when one is configured, else from the
//! Pod's ServiceAccount, with every API call bounded by [`REQUEST_TIMEOUT`].

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rota_api::BackendError;

/// How long one API call may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for `backend` from `kubeconfig_path`, or from the Pod's ServiceAccount without
/// one; `config_key` is where the operator sets the path (`install.kubeconfig_path`), for
/// the hint when rotad runs outside a Pod.
pub(crate) async fn connect(
    backend: &'static str,
    kubeconfig_path: Option<&Path>,
    config_key: &str,
) -> Result<Client, BackendError> {
    let mut config = match kubeconfig_path {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| {
                BackendError::invalid(
                    backend,
                    format!("cannot load kubeconfig {}: {e}", path.display()),
                )
            })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| {
                    BackendError::invalid(backend, format!("kubeconfig {}: {e}", path.display()))
                })?
        }
        None => Config::incluster().map_err(|e| {
            BackendError::invalid(
                backend,
                format!("no `kubeconfig_path` and not inside a Pod ({e}): set `{config_key}` when rotad runs outside the cluster"),
            )
        })?,
    };
    // kube builds its rustls config from the process-wide provider. With SurrealDB's client in
    // the same binary, rustls has both ring and aws-lc-rs compiled in and cannot pick one by
    // itself, so name ring, as every other TLS client of rota uses. Installing it a second
    // time fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    config.connect_timeout = Some(REQUEST_TIMEOUT);
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    Client::try_from(config).map_err(|e| {
        BackendError::invalid(backend, format!("cannot build the Kubernetes client: {e}"))
    })
}

/// Bounds `call` by [`REQUEST_TIMEOUT`] (kube's own timeouts cover each read, not a whole
/// call); `what` names what was awaited, for the timeout error.
pub(crate) async fn bounded<T>(
    backend: &'static str,
    what: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, BackendError> {
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .map_err(|_| BackendError::Timeout {
            backend,
            what: what.to_owned(),
            after: REQUEST_TIMEOUT,
        })
}

/// What the API's refusals of `action` on `target` (in `namespace`) mean to an operator:
/// `rbac` says which rule the ServiceAccount's Role lacks on a 401/403, a 404 asks about the
/// namespace, a 5xx is the server being unreachable; `on_conflict` words a 409, when the
/// caller expects one.
pub(crate) fn api_error(
    backend: &'static str,
    namespace: &str,
    target: &str,
    action: &str,
    err: &kube::Error,
    rbac: &str,
    on_conflict: Option<&dyn Fn(&kube::core::Status) -> String>,
) -> BackendError {
    let kube::Error::Api(status) = err else {
        return BackendError::Unreachable {
            backend,
            detail: format!("{action} {target}: {err}"),
        };
    };
    let detail = match (status.code, on_conflict) {
        (409, Some(conflict)) => format!("{action} {target}: {}", conflict(status)),
        (401 | 403, _) => format!(
            "{action} {target}: {} ({}); {rbac} in namespace `{namespace}`",
            status.message, status.reason
        ),
        (404, _) => format!(
            "{action} {target}: {} (does namespace `{namespace}` exist?)",
            status.message
        ),
        (code, _) if code >= 500 => {
            return BackendError::Unreachable {
                backend,
                detail: format!("{action} {target}: HTTP {code}: {}", status.message),
            };
        }
        (code, _) => format!(
            "{action} {target}: HTTP {code} {}: {}",
            status.reason, status.message
        ),
    };
    BackendError::Refused { backend, detail }
}
