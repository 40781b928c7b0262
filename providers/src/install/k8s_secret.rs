//! `install: { kind: k8s_secret, namespace, secret_name, kubeconfig_path }`: server-side
//! applies a `kubernetes.io/tls` Secret, the shape every Ingress and Gateway controller reads
//! (<https://kubernetes.io/docs/concepts/configuration/secret/#tls-secrets>): `tls.crt` is the
//! full chain, `tls.key` the key, and `ca.crt` the root when the chain ends in a self-signed
//! (private) root, as cert-manager writes it.
//!
//! Server-side apply (<https://kubernetes.io/docs/reference/using-api/server-side-apply/>):
//! `PATCH` with `application/apply-patch+yaml` and field manager `rota` creates the Secret or
//! updates the fields rota owns, and drops the ones rota set before and no longer sends (a
//! `ca.crt` after a move to a public CA). When another manager (cert-manager, Helm, a
//! `kubectl apply`) owns a field with another value, the API server answers 409 Conflict;
//! rota never sets `force`, and reports which manager holds which field.
//!
//! Annotations record what is installed, after cert-manager's `cert-manager.io/*` ones
//! (<https://cert-manager.io/docs/reference/annotations/>): `rota.dev/cert-id`,
//! `rota.dev/serial-number`, `rota.dev/not-after`, `rota.dev/alt-names`.
//!
//! `current_cert_pem` reads the Secret back and returns the leaf of its `tls.crt`; a Secret
//! that is missing, or has no `tls.crt`, means nothing is installed. Without
//! `kubeconfig_path` rotad uses its Pod's ServiceAccount. The client is built on first use;
//! every call is bounded by `kube_client::REQUEST_TIMEOUT`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rota_api::config::K8sSecretInstall as Spec;
use rota_api::{BackendError, CertId, DomainName, InstallBackend, IssuedCert, SecretString};
use tokio::sync::OnceCell;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::kube_client::{self, bounded};

/// The config `kind` of this installer.
const KIND: &str = "k8s_secret";

/// The field manager rota applies as.
const FIELD_MANAGER: &str = "rota";

/// Server-side applies one TLS Secret.
pub(crate) struct K8sSecretInstall {
    cert_id: CertId,
    namespace: String,
    secret_name: String,
    kubeconfig_path: Option<PathBuf>,
    client: OnceCell<Client>,
}

impl K8sSecretInstall {
    /// An installer for cert `cert_id` into the Secret `spec` names.
    pub(crate) fn new(cert_id: &CertId, spec: &Spec) -> Self {
        Self {
            cert_id: cert_id.clone(),
            namespace: spec.namespace.clone(),
            secret_name: spec.secret_name.clone(),
            kubeconfig_path: spec.kubeconfig_path.clone(),
            client: OnceCell::new(),
        }
    }

    /// `namespace/name`, for messages.
    fn target(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.secret_name)
    }

    async fn api(&self) -> Result<Api<Secret>, BackendError> {
        let client = self.client.get_or_try_init(|| self.connect()).await?;
        Ok(Api::namespaced(client.clone(), &self.namespace))
    }

    /// A client from the kubeconfig file, or from the Pod's ServiceAccount.
    async fn connect(&self) -> Result<Client, BackendError> {
        kube_client::connect(
            KIND,
            self.kubeconfig_path.as_deref(),
            "install.kubeconfig_path",
        )
        .await
    }

    /// The Secret rota applies for `cert`.
    fn desired(&self, cert: &IssuedCert, key: &SecretString) -> Result<Secret, BackendError> {
        let leaf = leaf_facts(&cert.cert_pem)?;
        let mut data = BTreeMap::from([
            (
                "tls.crt".to_owned(),
                ByteString(cert.fullchain_pem().into_bytes()),
            ),
            (
                "tls.key".to_owned(),
                ByteString(key.expose().as_bytes().to_vec()),
            ),
        ]);
        if let Some(root) = private_root(&cert.chain_pem) {
            data.insert("ca.crt".to_owned(), ByteString(root.into_bytes()));
        }
        let annotations = BTreeMap::from([
            ("rota.dev/cert-id".to_owned(), self.cert_id.to_string()),
            ("rota.dev/serial-number".to_owned(), leaf.serial),
            ("rota.dev/not-after".to_owned(), leaf.not_after),
            ("rota.dev/alt-names".to_owned(), leaf.alt_names),
        ]);
        Ok(Secret {
            metadata: ObjectMeta {
                name: Some(self.secret_name.clone()),
                namespace: Some(self.namespace.clone()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Secret::default()
        })
    }

    /// Maps a kube error for `action` on the Secret to what an operator can act on.
    fn error(&self, action: &str, err: &kube::Error) -> BackendError {
        let conflict = |status: &kube::core::Status| {
            format!(
                "{}; rota never forces a field another manager owns: stop that manager writing this Secret and remove its fields (or the Secret), or give rota a Secret of its own (`install.secret_name`)",
                conflict_summary(status)
            )
        };
        kube_client::api_error(
            KIND,
            &self.namespace,
            &self.target(),
            action,
            err,
            "rota needs get, create and patch on secrets",
            Some(&conflict),
        )
    }
}

/// "conflict with "cert-manager" on .data.tls.crt, …" from a 409's causes, else its message.
fn conflict_summary(status: &kube::core::Status) -> String {
    let causes: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .filter(|c| c.reason == "FieldManagerConflict")
        .map(|c| format!("{} on {}", c.message, c.field))
        .collect();
    if causes.is_empty() {
        status.message.clone()
    } else {
        format!("field conflict: {}", causes.join(", "))
    }
}

#[async_trait]
impl InstallBackend for K8sSecretInstall {
    fn kind(&self) -> &'static str {
        KIND
    }

    async fn install(
        &self,
        cert: &IssuedCert,
        private_key_pem: &SecretString,
        _domains: &[DomainName],
    ) -> Result<(), BackendError> {
        let secret = self.desired(cert, private_key_pem)?;
        let api = self.api().await?;
        let params = PatchParams::apply(FIELD_MANAGER);
        let what = format!("the API server to apply {}", self.target());
        bounded(
            KIND,
            &what,
            api.patch(&self.secret_name, &params, &Patch::Apply(&secret)),
        )
        .await?
        .map_err(|e| self.error("applying", &e))?;
        tracing::info!(secret = %self.target(), "TLS Secret applied");
        Ok(())
    }

    async fn current_cert_pem(&self, _cert_id: &CertId) -> Result<Option<String>, BackendError> {
        let api = self.api().await?;
        let what = format!("the API server to return {}", self.target());
        let secret = bounded(KIND, &what, api.get_opt(&self.secret_name))
            .await?
            .map_err(|e| self.error("reading", &e))?;
        let chain = secret
            .and_then(|s| s.data)
            .and_then(|mut data| data.remove("tls.crt"));
        Ok(chain.and_then(|ByteString(bytes)| first_certificate(&String::from_utf8_lossy(&bytes))))
    }
}

/// The PEM certificate blocks of `pem`, in order, each with its trailing newline.
fn certificate_blocks(pem: &str) -> Vec<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        blocks.push(format!("{}\n", &rest[start..end]));
        rest = &rest[end..];
    }
    blocks
}

/// The first PEM certificate block of `pem`.
fn first_certificate(pem: &str) -> Option<String> {
    certificate_blocks(pem).into_iter().next()
}

/// What the annotations record about the leaf.
struct LeafFacts {
    serial: String,
    not_after: String,
    alt_names: String,
}

fn leaf_facts(cert_pem: &str) -> Result<LeafFacts, BackendError> {
    let invalid = |e: String| BackendError::invalid(KIND, format!("the issued leaf: {e}"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| invalid(format!("not PEM: {e}")))?;
    let (_, cert) =
        X509Certificate::from_der(&pem.contents).map_err(|e| invalid(format!("not X.509: {e}")))?;
    let not_after = rota_api::wire::rfc3339(
        time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| invalid(e.to_string()))?,
    );
    let alt_names = match cert.subject_alternative_name() {
        Ok(Some(ext)) => ext
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some(*name),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    Ok(LeafFacts {
        serial: cert.raw_serial_as_string().replace(':', ""),
        not_after,
        alt_names,
    })
}

/// The last certificate of `chain_pem` when it is a self-signed root: a private CA, whose
/// root clients must be given (public roots are in every trust store and never sent).
fn private_root(chain_pem: &str) -> Option<String> {
    let last = certificate_blocks(chain_pem).pop()?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(last.as_bytes()).ok()?;
    let (_, cert) = X509Certificate::from_der(&pem.contents).ok()?;
    let self_signed = cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok();
    self_signed.then_some(last)
}

#[cfg(test)]
mod tests {
    use kube::core::Status;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

    use super::*;

    /// A CA's certificate PEM and its issuer, signed by `parent` (self-signed without one).
    fn ca(parent: Option<&Issuer<'static, KeyPair>>) -> (String, Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = match parent {
            Some(parent) => params.clone().signed_by(&key, parent),
            None => params.clone().self_signed(&key),
        };
        (cert.unwrap().pem(), Issuer::new(params, key))
    }

    #[test]
    fn ca_crt_is_the_chains_last_cert_only_when_it_is_a_self_signed_root() {
        let (root_pem, root) = ca(None);
        let (intermediate_pem, _) = ca(Some(&root));
        // Private CA: the local CA serves its root as the chain.
        assert_eq!(private_root(&root_pem), Some(root_pem.clone()));
        assert_eq!(
            private_root(&format!("{intermediate_pem}{root_pem}")),
            Some(root_pem.clone())
        );
        // Public CA: intermediates only, the root is in every trust store.
        assert_eq!(private_root(&intermediate_pem), None);
        assert_eq!(private_root(""), None);
    }

    #[test]
    fn the_leaf_is_the_first_block_of_tls_crt() {
        let (first, root) = ca(None);
        let (second, _) = ca(Some(&root));
        let chain = format!("junk before\n{first}\n{second}");
        assert_eq!(first_certificate(&chain), Some(first.clone()));
        assert_eq!(certificate_blocks(&chain), [first, second]);
        assert_eq!(first_certificate("-----BEGIN CERTIFICATE-----\ncut"), None);
    }

    /// A 409 as the API server sends it (a `Status` with `FieldManagerConflict` causes).
    #[test]
    fn a_conflict_names_each_manager_and_field() {
        let status: Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409,
            "reason": "Conflict", "message": "Apply failed with 2 conflicts",
            "details": {"causes": [
                {"reason": "FieldManagerConflict", "message": "conflict with \"helm\"", "field": ".data.tls.crt"},
                {"reason": "FieldManagerConflict", "message": "conflict with \"kubectl\"", "field": ".type"},
            ]},
        }))
        .unwrap();
        assert_eq!(
            conflict_summary(&status),
            "field conflict: conflict with \"helm\" on .data.tls.crt, conflict with \"kubectl\" on .type"
        );
        let bare = Status {
            message: "Apply failed with 1 conflict: conflict with \"helm\": .data.tls.key".into(),
            details: None,
            ..status
        };
        assert_eq!(conflict_summary(&bare), bare.message);
    }
}
