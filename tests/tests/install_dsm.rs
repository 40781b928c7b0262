//! The DSM installer against the DSM double (`rota_e2e::dsm_double`, which follows Synology's
//! Login Web API Guide and the certificate calls DSM's Control Panel makes): built from a
//! config through the providers' factory, as rotad builds it, and checked by what the double
//! holds and received. The last test drives the real rotad end to end.

use std::sync::Arc;
use std::time::Duration;

use rota_api::{BackendError, BackendFactory, CertId, InstallBackend, IssuedCert, SecretString};
use rota_e2e::dsm_double::{DsmDouble, StoredCert};
use rota_e2e::test_chain::TestChain;
use rota_e2e::{Rotad, condition, wait_for};

const PASSWORD: &str = "correct horse battery staple";
const DESCRIPTION: &str = "My Public Site";

/// A temporary directory holding the password (and device token) files.
struct Secrets(tempfile::TempDir);

impl Secrets {
    fn new(password: &str) -> Self {
        let dir = tempfile::tempdir().expect("secrets dir");
        std::fs::write(dir.path().join("dsm.password"), format!("{password}\n")).expect("write");
        Self(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.path().join(name).display().to_string()
    }
}

/// The `dsm:` block and one cert installing under `description`.
fn config_text(dsm: &DsmDouble, secrets: &Secrets, extra: &str, description: &str) -> String {
    format!(
        "dsm:\n  url: {url}\n  username: rota\n  password_file: {password}\n{extra}\
         certs:\n  - id: nas\n    domains: [nas.home.arpa]\n    key_path: {{dir}}/keys/nas.key\n    \
         ca: {{ kind: local }}\n    install: {{ kind: dsm, description: {description} }}\n",
        url = dsm.url(),
        password = secrets.path("dsm.password"),
    )
}

fn installer(dsm: &DsmDouble, secrets: &Secrets, extra: &str) -> Arc<dyn InstallBackend> {
    let dir = tempfile::tempdir().expect("config dir");
    let text = config_text(dsm, secrets, extra, DESCRIPTION)
        .replace("{dir}", &dir.path().display().to_string());
    let config = rota_api::config::load_str(&dir.path().join("rota.yaml"), text)
        .expect("config loads")
        .config;
    rota_providers::Providers::new()
        .install(&config, &config.certs[0])
        .expect("the dsm installer builds")
}

fn issued(chain: &TestChain) -> IssuedCert {
    IssuedCert {
        cert_pem: chain.leaf_pem.clone(),
        chain_pem: chain.chain_pem.clone(),
    }
}

async fn install(
    installer: &Arc<dyn InstallBackend>,
    chain: &TestChain,
) -> Result<(), BackendError> {
    let key = SecretString::new(chain.key_pem.clone());
    installer.install(&issued(chain), &key, &[]).await
}

fn id() -> CertId {
    CertId::new("nas").expect("cert id")
}

/// DSM's factory default, bound to DSM's own web service.
fn synology_default() -> StoredCert {
    StoredCert {
        id: "Xa1bC2".into(),
        desc: DESCRIPTION.into(),
        is_default: true,
        services: vec![
            "DSM Desktop Service".into(),
            "Reverse Proxy - photos".into(),
        ],
        cert_pem: "old".into(),
        chain_pem: String::new(),
        key_pem: "old key".into(),
    }
}

fn other_cert() -> StoredCert {
    StoredCert {
        id: "Other9".into(),
        desc: "VPN".into(),
        is_default: false,
        services: vec!["VPN Server".into()],
        cert_pem: "vpn".into(),
        chain_pem: String::new(),
        key_pem: "vpn key".into(),
    }
}

#[tokio::test]
async fn replaces_the_described_cert_in_place_keeping_id_default_and_services() {
    let dsm = DsmDouble::start("rota", PASSWORD, vec![synology_default(), other_cert()]);
    let secrets = Secrets::new(PASSWORD);
    let installer = installer(&dsm, &secrets, "");
    let first = TestChain::private(&["nas.home.arpa"]);
    let second = TestChain::private(&["nas.home.arpa"]);
    install(&installer, &first).await.expect("first install");
    install(&installer, &second).await.expect("second install");

    let certs = dsm.certs();
    let described: Vec<&StoredCert> = certs.iter().filter(|c| c.desc == DESCRIPTION).collect();
    assert_eq!(described.len(), 1, "never a duplicate: {certs:?}");
    let replaced = described[0];
    assert_eq!(replaced.id, "Xa1bC2", "replaced in place, same id");
    assert!(replaced.is_default, "still the default certificate");
    assert_eq!(
        replaced.services,
        synology_default().services,
        "bindings kept"
    );
    assert_eq!(replaced.cert_pem, second.leaf_pem);
    assert_eq!(replaced.chain_pem, second.chain_pem);
    assert_eq!(replaced.key_pem, second.key_pem);
    assert_eq!(certs.iter().find(|c| c.id == "Other9"), Some(&other_cert()));

    // Read back through export: the leaf DSM holds.
    let read = installer.current_cert_pem(&id()).await.expect("read back");
    assert_eq!(read.as_deref(), Some(second.leaf_pem.as_str()));

    // Every session was logged out; the password never rode in a URL.
    assert_eq!(dsm.count("SYNO.API.Auth", "login"), 3);
    assert_eq!(dsm.count("SYNO.API.Auth", "logout"), 3);
    assert_eq!(dsm.open_sessions(), 0);
    for call in dsm.calls() {
        assert!(!call.query.contains("passwd"), "{call:?}");
        assert!(!call.query.contains("horse"), "{call:?}");
    }
}

#[tokio::test]
async fn a_first_install_adds_one_cert_that_later_installs_replace() {
    let dsm = DsmDouble::start("rota", PASSWORD, vec![other_cert()]);
    let secrets = Secrets::new(PASSWORD);
    let installer = installer(&dsm, &secrets, "");
    assert_eq!(installer.current_cert_pem(&id()).await.expect("read"), None);
    install(&installer, &TestChain::public(&["nas.home.arpa"]))
        .await
        .expect("install");
    let added: Vec<StoredCert> = dsm
        .certs()
        .into_iter()
        .filter(|c| c.desc == DESCRIPTION)
        .collect();
    assert_eq!(added.len(), 1);
    assert!(!added[0].is_default, "a new cert does not take the default");
    install(&installer, &TestChain::public(&["nas.home.arpa"]))
        .await
        .expect("again");
    let again: Vec<StoredCert> = dsm
        .certs()
        .into_iter()
        .filter(|c| c.desc == DESCRIPTION)
        .collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, added[0].id);
    assert_eq!(dsm.open_sessions(), 0);
}

#[tokio::test]
async fn a_wrong_password_is_refused_with_dsms_code_and_never_echoed() {
    let dsm = DsmDouble::start("rota", PASSWORD, vec![]);
    let secrets = Secrets::new("hunter2-wrong");
    let installer = installer(&dsm, &secrets, "");
    let err = install(&installer, &TestChain::public(&["nas.home.arpa"]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BackendError::Refused { .. }), "{err:?}");
    assert!(
        text.contains("400") && text.contains("no such account or incorrect password"),
        "{text}"
    );
    assert!(
        text.contains("dsm.password_file"),
        "says what to fix: {text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(dsm.count("SYNO.Core.Certificate", "import"), 0);
}

#[tokio::test]
async fn a_two_factor_account_signs_in_with_its_device_token() {
    let dsm = DsmDouble::start("rota", PASSWORD, vec![synology_default()]);
    dsm.require_device_token("trusted-device-7");
    let secrets = Secrets::new(PASSWORD);
    let without = installer(&dsm, &secrets, "");
    let err = install(&without, &TestChain::public(&["nas.home.arpa"]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("403") && text.contains("dsm.device_token_file"),
        "{text}"
    );

    std::fs::write(secrets.0.path().join("dsm.device"), "trusted-device-7\n").expect("write");
    let extra = format!("  device_token_file: {}\n", secrets.path("dsm.device"));
    let with = installer(&dsm, &secrets, &extra);
    install(&with, &TestChain::public(&["nas.home.arpa"]))
        .await
        .expect("signed in");
    assert_eq!(dsm.open_sessions(), 0);
}

#[tokio::test]
async fn two_certs_with_the_description_are_refused_not_guessed() {
    let mut twin = other_cert();
    twin.desc = DESCRIPTION.into();
    let dsm = DsmDouble::start("rota", PASSWORD, vec![synology_default(), twin]);
    let secrets = Secrets::new(PASSWORD);
    let installer = installer(&dsm, &secrets, "");
    let err = install(&installer, &TestChain::public(&["nas.home.arpa"]))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Xa1bC2") && text.contains("Other9"), "{text}");
    assert_eq!(dsm.count("SYNO.Core.Certificate", "import"), 0);
    assert_eq!(dsm.open_sessions(), 0, "logged out after the refusal too");
}

#[tokio::test]
async fn a_dsm_that_does_not_answer_is_unreachable() {
    let dsm = DsmDouble::start("rota", PASSWORD, vec![]);
    let secrets = Secrets::new(PASSWORD);
    let installer = installer(&dsm, &secrets, "");
    drop(dsm);
    let err = install(&installer, &TestChain::public(&["nas.home.arpa"]))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("dsm.url"), "{err}");
}

#[test]
fn rotad_issues_from_the_local_ca_into_dsm_and_reports_ready() {
    let dsm = DsmDouble::start("rota", PASSWORD, vec![synology_default()]);
    let secrets = Secrets::new(PASSWORD);
    let config = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n\
         local_ca:\n  directory: {{dir}}/ca\n{}",
        config_text(&dsm, &secrets, "", DESCRIPTION)
    );
    let rotad = Rotad::start(&config);
    let installed = wait_for("the cert to land in DSM", Duration::from_secs(20), || {
        dsm.certs()
            .into_iter()
            .find(|c| c.desc == DESCRIPTION && c.cert_pem.contains("BEGIN CERTIFICATE"))
    });
    assert_eq!(installed.id, "Xa1bC2");
    assert!(installed.is_default);
    let ca_root = std::fs::read_to_string(rotad.path("ca/ca.pem")).expect("local CA root");
    assert!(
        installed.chain_pem.contains(ca_root.trim()),
        "the chain ends in the local root"
    );
    wait_for("nas to be Ready", Duration::from_secs(20), || {
        let cert = serde_json::from_str::<serde_json::Value>(
            &rotad.rota_ok(&["get", "cert", "nas", "-o", "json"]),
        )
        .ok()?;
        (condition(&cert, "Ready")["status"] == "True").then_some(())
    });
    assert_eq!(
        dsm.count("SYNO.Core.Certificate", "import"),
        1,
        "installed once, then observed"
    );
    assert!(
        dsm.count("SYNO.Core.Certificate", "export") >= 1,
        "observed by reading back"
    );
    wait_for(
        "every session to be logged out",
        Duration::from_secs(5),
        || (dsm.open_sessions() == 0).then_some(()),
    );
    assert!(
        !rotad.log().contains(PASSWORD),
        "the password never reaches the log"
    );
}
