//! `manifests/` parses into the Kubernetes API's own types (k8s-openapi), the Deployment is
//! locked down as the README promises, the ConfigMap's rota.yaml is a config rotad accepts
//! (with every `env:` it reads provided by the Pod), and the Role grants exactly what the
//! k8s_secret installer and the Kubernetes Lease coordinator are seen to use against the API
//! server double.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use rota_api::cluster::ClusterCoordinator;
use rota_api::config::{ClusterConfig, Coordinator, DEFAULT_LEASE_NAME, InstallSpec};
use rota_api::{BackendFactory, CertId, IssuedCert, SecretString};
use rota_e2e::kube_double::KubeDouble;
use rota_e2e::test_chain::TestChain;
use rota_providers::cluster::k8s_lease::K8sLeaseCoordinator;
use serde::de::DeserializeOwned;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

/// Every document of every manifest file, as `(file, document)`.
fn documents() -> Vec<(String, serde_yaml::Value)> {
    let mut docs = Vec::new();
    for name in kustomization_resources() {
        let text = std::fs::read_to_string(manifests_dir().join(&name)).expect("read manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            docs.push((
                name.clone(),
                serde::Deserialize::deserialize(doc).expect("yaml"),
            ));
        }
    }
    docs
}

fn kustomization_resources() -> Vec<String> {
    let text = std::fs::read_to_string(manifests_dir().join("kustomization.yaml"))
        .expect("kustomization.yaml");
    let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("kustomization yaml");
    value["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("file name").to_owned())
        .collect()
}

/// The one object of kind `T` (by its `kind:`), parsed into `T`.
fn all_of<T: DeserializeOwned>(kind: &str) -> Vec<T> {
    documents()
        .into_iter()
        .filter(|(_, d)| d["kind"].as_str() == Some(kind))
        .map(|(file, d)| {
            serde_yaml::from_value(d).unwrap_or_else(|e| panic!("{file}: not a valid {kind}: {e}"))
        })
        .collect()
}

fn one<T: DeserializeOwned>(kind: &str) -> T {
    let mut found = all_of::<T>(kind);
    assert_eq!(found.len(), 1, "exactly one {kind}");
    found.remove(0)
}

#[test]
fn kustomization_lists_every_manifest_and_each_parses_as_its_kind() {
    let mut on_disk: Vec<String> = std::fs::read_dir(manifests_dir())
        .expect("manifests/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| {
            Path::new(n).extension().is_some_and(|x| x == "yaml") && n != "kustomization.yaml"
        })
        .collect();
    on_disk.sort();
    let mut listed = kustomization_resources();
    listed.sort();
    assert_eq!(listed, on_disk, "kustomization.yaml lists every manifest");

    let kinds: BTreeSet<String> = documents()
        .iter()
        .map(|(_, d)| d["kind"].as_str().expect("kind").to_owned())
        .collect();
    let expected: BTreeSet<String> = [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PersistentVolumeClaim",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    .map(String::from)
    .into();
    assert_eq!(kinds, expected);
    assert_eq!(all_of::<Namespace>("Namespace").len(), 2);
    let _: ServiceAccount = one("ServiceAccount");
    let _: PersistentVolumeClaim = one("PersistentVolumeClaim");
    let service: Service = one("Service");
    let port = &service.spec.expect("spec").ports.expect("ports")[0];
    assert_eq!(port.port, 7878);
}

#[test]
fn the_pod_runs_locked_down_with_probes_and_limits() {
    let deployment: Deployment = one("Deployment");
    let pod = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("rota"));
    let pod_security = pod.security_context.expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_ne!(pod_security.run_as_user, Some(0));
    assert_eq!(
        pod_security.seccomp_profile.expect("seccomp").type_,
        "RuntimeDefault"
    );
    let container = &pod.containers[0];
    let security = container
        .security_context
        .clone()
        .expect("container securityContext");
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let drop = security
        .capabilities
        .expect("capabilities")
        .drop
        .expect("drop");
    assert_eq!(drop, ["ALL"]);
    let resources = container.resources.clone().expect("resources");
    for (what, set) in [
        ("requests", resources.requests),
        ("limits", resources.limits),
    ] {
        let set = set.unwrap_or_else(|| panic!("{what}"));
        assert!(
            set.contains_key("cpu") && set.contains_key("memory"),
            "{what}: {set:?}"
        );
    }
    let path_of = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
        probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(
        path_of(&container.liveness_probe).as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        path_of(&container.readiness_probe).as_deref(),
        Some("/readyz")
    );

    // Everything rotad writes is a volume, since the root filesystem is read-only.
    let config = configmap_config();
    let mounts: Vec<String> = container
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.read_only != Some(true))
        .map(|m| m.mount_path)
        .collect();
    for written in [&config.daemon.database_path, &config.daemon.socket_path] {
        assert!(
            mounts.iter().any(|m| written.starts_with(m)),
            "{} is on no writable volume ({mounts:?})",
            written.display()
        );
    }
}

/// The ConfigMap's rota.yaml, loaded by rotad's own loader with the Pod's environment.
fn configmap_config() -> rota_api::config::Config {
    let map: ConfigMap = one("ConfigMap");
    let text = map.data.expect("data")["rota.yaml"].clone();
    let deployment: Deployment = one("Deployment");
    let pod = deployment
        .spec
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    let env: Vec<String> = pod.containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.name)
        .collect();
    // The Pod provides these variables; their values come from a Secret made at install time.
    let lookup = |name: &str| {
        env.iter()
            .any(|e| e == name)
            .then(|| "from-the-secret".to_owned())
    };
    rota_api::config::load_str_with_env(Path::new("/etc/rota/rota.yaml"), text, &lookup)
        .unwrap_or_else(|e| panic!("the ConfigMap's rota.yaml is refused:\n{e}"))
        .config
}

#[test]
fn the_role_covers_the_namespaces_the_config_installs_into() {
    let config = configmap_config();
    let role: Role = one("Role");
    let binding: RoleBinding = one("RoleBinding");
    let role_ns = role.metadata.namespace.clone().expect("role namespace");
    assert_eq!(
        binding.metadata.namespace.as_deref(),
        Some(role_ns.as_str())
    );
    assert_eq!(
        binding.role_ref.name,
        role.metadata.name.clone().expect("name")
    );
    let subject = &binding.subjects.expect("subjects")[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("rota", Some("rota"))
    );
    for cert in &config.certs {
        if let InstallSpec::K8sSecret(target) = &cert.install {
            assert_eq!(
                target.namespace, role_ns,
                "cert {} installs outside the Role",
                cert.id
            );
            assert!(
                target.kubeconfig_path.is_none(),
                "in-cluster: the ServiceAccount"
            );
        }
    }
}

/// The `(group, verb, resource)` triples the Role grants.
fn granted(role: &Role) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in role.rules.clone().unwrap_or_default() {
        for group in rule.api_groups.clone().unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    out.insert((group.clone(), verb.clone(), resource.clone()));
                }
            }
        }
    }
    out
}

/// Everything the Lease coordinator does in a federated rotad's life against `kube`: take
/// the Lease (creating it), refresh it, release it, and another node taking it over.
async fn elect_leaders(kube: &KubeDouble) {
    let node = |id: &str| ClusterConfig {
        enabled: true,
        node_id: id.to_owned(),
        lease_seconds: 60,
        coordinator: Coordinator::KubernetesLease,
        namespace: Some("apps".to_owned()),
        lease_name: DEFAULT_LEASE_NAME.to_owned(),
        kubeconfig_path: Some(kube.kubeconfig_path()),
    };
    let a = K8sLeaseCoordinator::from_config(&node("a"))
        .await
        .expect("a");
    let b = K8sLeaseCoordinator::from_config(&node("b"))
        .await
        .expect("b");
    a.acquire_or_refresh().await.expect("take");
    let lease = a.acquire_or_refresh().await.expect("refresh");
    a.release(lease.term).await.expect("release");
    assert_eq!(b.acquire_or_refresh().await.expect("take over").holder, "b");
}

#[tokio::test]
async fn the_role_grants_exactly_what_the_installer_and_the_lease_coordinator_use() {
    let kube = KubeDouble::start();
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "certs:\n  - id: web\n    domains: [web.home.arpa]\n    key_path: {}/web.key\n    ca: {{ kind: local }}\n    install: {{ kind: k8s_secret, namespace: apps, secret_name: web-tls, kubeconfig_path: {} }}\n",
        dir.path().display(),
        kube.kubeconfig_path().display()
    );
    let config = rota_api::config::load_str(&dir.path().join("rota.yaml"), text)
        .expect("config")
        .config;
    let installer = rota_providers::Providers::new()
        .install(&config, &config.certs[0])
        .expect("installer");
    // Everything the installer does in rotad's life: read back (nothing yet), first install
    // (creates), read back, renew (updates).
    let id = CertId::new("web").expect("id");
    assert!(
        installer
            .current_cert_pem(&id)
            .await
            .expect("read")
            .is_none()
    );
    for chain in [
        TestChain::private(&["web.home.arpa"]),
        TestChain::public(&["web.home.arpa"]),
    ] {
        let issued = IssuedCert {
            cert_pem: chain.leaf_pem.clone(),
            chain_pem: chain.chain_pem.clone(),
        };
        installer
            .install(&issued, &SecretString::new(chain.key_pem.clone()), &[])
            .await
            .expect("install");
        assert!(
            installer
                .current_cert_pem(&id)
                .await
                .expect("read")
                .is_some()
        );
    }

    elect_leaders(&kube).await;

    let used: BTreeSet<(String, String, String)> = kube
        .authorizations()
        .into_iter()
        .map(|a| {
            assert_eq!(a.namespace, "apps");
            (a.group.to_owned(), a.verb.to_owned(), a.resource.to_owned())
        })
        .collect();
    let role: Role = one("Role");
    let granted = granted(&role);
    let missing: Vec<_> = used.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&used).collect();
    assert!(
        missing.is_empty(),
        "the installer or the Lease coordinator needs {missing:?}, which the Role lacks"
    );
    assert!(
        unused.is_empty(),
        "the Role grants {unused:?}, which nothing uses"
    );
}
