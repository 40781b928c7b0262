//! The Kubernetes Secret installer against the API server double (`rota_e2e::kube_double`,
//! which follows the server-side apply documentation): built from a config through the
//! providers' factory, as rotad builds it, and checked by what the double holds and received.
//! The last test drives the real rotad end to end.

use std::sync::Arc;
use std::time::Duration;

use rota_api::{BackendError, BackendFactory, CertId, InstallBackend, IssuedCert, SecretString};
use rota_e2e::kube_double::KubeDouble;
use rota_e2e::test_chain::TestChain;
use rota_e2e::{Rotad, condition, wait_for};

const NS: &str = "ingress";
const NAME: &str = "nas-tls";

fn cert_block(kube: &KubeDouble) -> String {
    format!(
        "certs:\n  - id: web\n    domains: [web.home.arpa]\n    key_path: {{dir}}/keys/web.key\n    \
         ca: {{ kind: local }}\n    install:\n      kind: k8s_secret\n      namespace: {NS}\n      \
         secret_name: {NAME}\n      kubeconfig_path: {}\n",
        kube.kubeconfig_path().display()
    )
}

fn installer(kube: &KubeDouble) -> Arc<dyn InstallBackend> {
    let dir = tempfile::tempdir().expect("config dir");
    let text = cert_block(kube).replace("{dir}", &dir.path().display().to_string());
    let config = rota_api::config::load_str(&dir.path().join("rota.yaml"), text)
        .expect("config loads")
        .config;
    rota_providers::Providers::new()
        .install(&config, &config.certs[0])
        .expect("the k8s_secret installer builds")
}

async fn install(
    installer: &Arc<dyn InstallBackend>,
    chain: &TestChain,
) -> Result<(), BackendError> {
    let issued = IssuedCert {
        cert_pem: chain.leaf_pem.clone(),
        chain_pem: chain.chain_pem.clone(),
    };
    installer
        .install(&issued, &SecretString::new(chain.key_pem.clone()), &[])
        .await
}

fn id() -> CertId {
    CertId::new("web").expect("cert id")
}

/// The serial of `pem` as openssl prints it, in lower-case hex without leading zeros.
fn serial(pem: &str) -> String {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), pem).expect("write pem");
    rota_e2e::serial_hex(file.path())
        .trim_start_matches('0')
        .to_owned()
}

/// An annotated serial, compared the same way (rota writes the DER bytes, sign byte included).
fn annotated_serial(annotations: &std::collections::BTreeMap<String, String>) -> String {
    annotations["rota.dev/serial-number"]
        .trim_start_matches('0')
        .to_owned()
}

#[tokio::test]
async fn applies_a_tls_secret_then_updates_it_in_place() {
    let kube = KubeDouble::start();
    let installer = installer(&kube);
    assert_eq!(installer.current_cert_pem(&id()).await.expect("read"), None);

    let first = TestChain::private(&["web.home.arpa"]);
    install(&installer, &first).await.expect("first apply");
    let secret = kube.secret(NS, NAME).expect("created");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        secret.data["tls.crt"],
        format!("{}{}", first.leaf_pem, first.chain_pem)
    );
    assert_eq!(secret.data["tls.key"], first.key_pem);
    assert_eq!(
        secret.data["ca.crt"], first.root_pem,
        "a private root goes to ca.crt"
    );
    assert_eq!(secret.annotations["rota.dev/cert-id"], "web");
    assert_eq!(
        annotated_serial(&secret.annotations),
        serial(&first.leaf_pem)
    );
    assert_eq!(secret.annotations["rota.dev/alt-names"], "web.home.arpa");
    assert!(secret.annotations["rota.dev/not-after"].ends_with('Z'));
    assert!(
        secret
            .owners
            .values()
            .all(|o| o.len() == 1 && o.contains("rota")),
        "every field is rota's: {:?}",
        secret.owners
    );

    // A public chain: updated in place, and the ca.crt rota no longer sends is gone.
    let second = TestChain::public(&["web.home.arpa"]);
    install(&installer, &second).await.expect("second apply");
    let secret = kube.secret(NS, NAME).expect("still there");
    assert_eq!(
        secret.data["tls.crt"],
        format!("{}{}", second.leaf_pem, second.chain_pem)
    );
    assert!(
        !secret.data.contains_key("ca.crt"),
        "{:?}",
        secret.data.keys()
    );
    assert_eq!(
        annotated_serial(&secret.annotations),
        serial(&second.leaf_pem)
    );
    let read = installer.current_cert_pem(&id()).await.expect("read back");
    assert_eq!(
        read.as_deref(),
        Some(second.leaf_pem.as_str()),
        "the leaf of tls.crt"
    );

    let patches: Vec<_> = kube
        .requests()
        .into_iter()
        .filter(|r| r.0 == "PATCH")
        .collect();
    assert_eq!(patches.len(), 2);
    for (_, content_type, query) in patches {
        assert_eq!(content_type, "application/apply-patch+yaml");
        assert!(query.contains("fieldManager=rota"), "{query}");
        assert!(!query.contains("force"), "never forced: {query}");
    }
}

#[tokio::test]
async fn a_field_another_manager_owns_is_a_conflict_never_forced() {
    let kube = KubeDouble::start();
    kube.seed(
        NS,
        NAME,
        "cert-manager",
        &[("tls.crt", "theirs"), ("tls.key", "their key")],
    );
    let installer = installer(&kube);
    let err = install(&installer, &TestChain::public(&["web.home.arpa"]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Refused { .. }), "{err:?}");
    assert!(
        text.contains("\"cert-manager\""),
        "names the other manager: {text}"
    );
    assert!(text.contains(".data.tls.crt"), "names the field: {text}");
    assert!(text.contains("never forces"), "{text}");
    let secret = kube.secret(NS, NAME).expect("still there");
    assert_eq!(
        secret.data["tls.crt"], "theirs",
        "left as the other manager wrote it"
    );
    assert!(!kube.requests().iter().any(|r| r.2.contains("force")));
}

#[tokio::test]
async fn a_missing_kubeconfig_is_a_clear_error() {
    let kube = KubeDouble::start();
    let installer = installer(&kube);
    std::fs::remove_file(kube.kubeconfig_path()).expect("remove kubeconfig");
    let err = install(&installer, &TestChain::public(&["web.home.arpa"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("kubeconfig"), "{err}");
}

#[test]
fn rotad_issues_from_the_local_ca_into_a_secret_and_reports_ready() {
    let kube = KubeDouble::start();
    let config = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n\
         local_ca:\n  directory: {{dir}}/ca\n{}",
        cert_block(&kube)
    );
    let rotad = Rotad::start(&config);
    let secret = wait_for("the Secret to be applied", Duration::from_secs(20), || {
        kube.secret(NS, NAME)
    });
    let root = std::fs::read_to_string(rotad.path("ca/ca.pem")).expect("local CA root");
    assert_eq!(
        secret.data["ca.crt"].trim(),
        root.trim(),
        "the local root is ca.crt"
    );
    wait_for("web to be Ready", Duration::from_secs(20), || {
        let out = rotad.rota_ok(&["get", "cert", "web", "-o", "json"]);
        let cert = serde_json::from_str::<serde_json::Value>(&out).ok()?;
        (condition(&cert, "Ready")["status"] == "True").then_some(())
    });
    let key = std::fs::read_to_string(rotad.path("keys/web.key")).expect("key");
    assert!(
        !rotad.log().contains(key.trim()),
        "the key never reaches the log"
    );
}
