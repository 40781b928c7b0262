use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use super::*;
use crate::keys::{CertKey, load_or_generate};
use rota_api::config::KeyType;

const OPENSSL: &str = "/usr/bin/openssl";

fn domains(names: &[&str]) -> Vec<DomainName> {
    names.iter().map(|n| DomainName::new(n).unwrap()).collect()
}

fn key(dir: &Path, name: &str) -> CertKey {
    load_or_generate(&dir.join(format!("{name}.key")), KeyType::default())
        .unwrap()
        .key
}

fn backend(dir: &Path, validity_days: u32) -> LocalCaBackend {
    Arc::new(LocalCa::new(dir)).backend(validity_days)
}

async fn issue(ca: &LocalCaBackend, key: &CertKey, names: &[DomainName]) -> IssuedCert {
    let csr = key.csr_pem(names).unwrap();
    let order = ca
        .submit(names, &csr, &[ChallengeKind::Dns01], None)
        .await
        .unwrap();
    assert!(order.challenges.is_empty(), "the local CA asks for no DCV");
    ca.await_issuance(&order.handle).await.unwrap()
}

/// What `openssl verify` says about `leaf_pem` against the CA file, stdout and stderr.
fn openssl_verify(ca_file: &Path, leaf_pem: &str) -> String {
    let scratch = tempfile::tempdir().unwrap();
    let leaf = scratch.path().join("cert.pem");
    std::fs::write(&leaf, leaf_pem).unwrap();
    let out = Command::new(OPENSSL)
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(ca_file)
        .arg(&leaf)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn der_of(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn unix(t: x509_parser::time::ASN1Time) -> i64 {
    t.timestamp()
}

#[tokio::test]
async fn issues_a_leaf_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("state/local-ca");
    let ca = backend(&ca_dir, 30);
    let key = key(dir.path(), "web");
    let names = domains(&["a.test", "*.b.test"]);
    let issued = issue(&ca, &key, &names).await;

    let root_pem = std::fs::read_to_string(root_cert_path(&ca_dir)).unwrap();
    assert_eq!(issued.chain_pem, root_pem);
    let verdict = openssl_verify(&root_cert_path(&ca_dir), &issued.cert_pem);
    assert!(verdict.trim_end().ends_with(": OK"), "{verdict}");

    let leaf_der = der_of(&issued.cert_pem);
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let sans: Vec<String> = match leaf.subject_alternative_name().unwrap() {
        Some(ext) => ext
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => (*dns).to_owned(),
                other => panic!("unexpected SAN {other}"),
            })
            .collect(),
        None => Vec::new(),
    };
    assert_eq!(sans, ["a.test", "*.b.test"]);
    assert_eq!(leaf.subject().to_string(), "CN=a.test");
    assert_eq!(leaf.public_key().raw, key.public_key_der().as_slice());

    let now = OffsetDateTime::now_utc().unix_timestamp();
    let validity = leaf.validity();
    assert!((unix(validity.not_after) - (now + 30 * 86_400)).abs() < 120);
    assert!((unix(validity.not_before) - (now - 300)).abs() < 120);

    let serial = leaf.raw_serial();
    assert!(serial.len() <= 16 && serial.len() >= 8, "{serial:02x?}");
    assert!(serial[0] < 0x80, "positive serial");
}

#[tokio::test]
async fn leaf_and_root_carry_the_expected_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = backend(dir.path(), 90);
    let issued = issue(&ca, &key(dir.path(), "k"), &domains(&["nas.lan"])).await;
    let (leaf_der, root_der) = (der_of(&issued.cert_pem), der_of(&issued.chain_pem));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();

    assert!(!leaf.is_ca());
    let usage = leaf.key_usage().unwrap().unwrap().value;
    assert!(usage.digital_signature() && !usage.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);

    let constraints = root.basic_constraints().unwrap().unwrap().value;
    assert!(constraints.ca);
    assert_eq!(constraints.path_len_constraint, Some(0));
    let usage = root.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());
    assert!(root.subject().to_string().starts_with("CN=rota local CA"));
    assert!(root.subject().to_string().contains("O=rota"));
    let root_years =
        (unix(root.validity().not_after) - unix(root.validity().not_before)) / 86_400 / 365;
    assert_eq!(root_years, 10);

    let ski = root
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        });
    assert!(ski.is_some());
    assert_eq!(aki, ski, "the leaf's AKI names the root's SKI");
    assert_eq!(leaf.issuer(), root.subject());
}

#[tokio::test]
async fn creates_the_root_with_private_modes_and_reuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("local-ca");
    let key = key(dir.path(), "web");
    let names = domains(&["a.test"]);
    issue(&backend(&ca_dir, 30), &key, &names).await;
    assert_eq!(mode_of(&ca_dir), 0o700);
    assert_eq!(mode_of(&ca_dir.join("ca.key")), 0o600);
    assert_eq!(mode_of(&ca_dir.join("ca.pem")), 0o644);
    let root_before = std::fs::read(ca_dir.join("ca.pem")).unwrap();
    let key_before = std::fs::read(ca_dir.join("ca.key")).unwrap();

    // A fresh instance, as after a restart, reloads the same root.
    let issued = issue(&backend(&ca_dir, 30), &key, &names).await;
    assert_eq!(std::fs::read(ca_dir.join("ca.pem")).unwrap(), root_before);
    assert_eq!(std::fs::read(ca_dir.join("ca.key")).unwrap(), key_before);
    assert_eq!(issued.chain_pem.as_bytes(), root_before.as_slice());
    let verdict = openssl_verify(&root_cert_path(&ca_dir), &issued.cert_pem);
    assert!(verdict.trim_end().ends_with(": OK"), "{verdict}");
}

#[tokio::test]
async fn leaves_never_outlive_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let issued = issue(
        &backend(dir.path(), 100_000),
        &key(dir.path(), "k"),
        &domains(&["a.test"]),
    )
    .await;
    let (leaf_der, root_der) = (der_of(&issued.cert_pem), der_of(&issued.chain_pem));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).unwrap();
    let (_, root) = X509Certificate::from_der(&root_der).unwrap();
    assert_eq!(
        unix(leaf.validity().not_after),
        unix(root.validity().not_after)
    );
}

#[tokio::test]
async fn refuses_a_csr_whose_sans_differ_from_the_domains() {
    let dir = tempfile::tempdir().unwrap();
    let ca = backend(dir.path(), 30);
    let csr = key(dir.path(), "k")
        .csr_pem(&domains(&["a.test", "b.test"]))
        .unwrap();
    for asked in [
        domains(&["a.test"]),
        domains(&["a.test", "b.test", "c.test"]),
    ] {
        let err = ca.submit(&asked, &csr, &[], None).await.unwrap_err();
        assert!(matches!(err, BackendError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("not the cert's domains"), "{err}");
    }
    // Order does not matter.
    ca.submit(&domains(&["b.test", "a.test"]), &csr, &[], None)
        .await
        .unwrap();
}

#[tokio::test]
async fn refuses_garbage_and_a_broken_signature() {
    let dir = tempfile::tempdir().unwrap();
    let ca = backend(dir.path(), 30);
    let names = domains(&["a.test"]);
    let err = ca.submit(&names, "not a csr", &[], None).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid { .. }), "{err}");

    let csr = key(dir.path(), "k").csr_pem(&names).unwrap();
    let mut der = der_of(&csr);
    // The last octet is inside the signature: the request still parses but no longer verifies.
    *der.last_mut().unwrap() ^= 0x01;
    let der_file = dir.path().join("bad.der");
    std::fs::write(&der_file, &der).unwrap();
    let out = Command::new(OPENSSL)
        .args(["base64", "-in"])
        .arg(&der_file)
        .output()
        .unwrap();
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}-----END CERTIFICATE REQUEST-----\n",
        String::from_utf8(out.stdout).unwrap()
    );
    let err = ca.submit(&names, &tampered, &[], None).await.unwrap_err();
    assert!(err.to_string().contains("signature"), "{err}");
}

#[tokio::test]
async fn a_handle_is_checked_again_before_signing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = backend(dir.path(), 30);
    let names = domains(&["a.test"]);
    let csr = key(dir.path(), "k").csr_pem(&names).unwrap();
    let order = ca.submit(&names, &csr, &[], None).await.unwrap();
    let forged = OrderHandle {
        csr_pem: "not a csr".to_owned(),
        ..order.handle.clone()
    };
    let err = ca.await_issuance(&forged).await.unwrap_err();
    assert!(matches!(err, BackendError::Invalid { .. }), "{err}");
    // The handle is all the CA needs: two keys for the same names never get mixed up.
    let other = key(dir.path(), "other");
    let second = ca
        .submit(&names, &other.csr_pem(&names).unwrap(), &[], None)
        .await
        .unwrap();
    let first = key(dir.path(), "k");
    for (handle, owner) in [(&second.handle, &other), (&order.handle, &first)] {
        let issued = ca.await_issuance(handle).await.unwrap();
        let der = der_of(&issued.cert_pem);
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(leaf.public_key().raw, owner.public_key_der().as_slice());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_renewals_share_one_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let shared = Arc::new(LocalCa::new(&ca_dir));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let ca = shared.backend(30);
        let key = key(dir.path(), &format!("cert{i}"));
        let names = domains(&[&format!("host{i}.test")]);
        tasks.push(tokio::spawn(async move {
            let issued = issue(&ca, &key, &names).await;
            (issued, key.public_key_der())
        }));
    }
    let ca_file = root_cert_path(&ca_dir);
    for task in tasks {
        let (issued, public_key) = task.await.unwrap();
        let verdict = openssl_verify(&ca_file, &issued.cert_pem);
        assert!(verdict.trim_end().ends_with(": OK"), "{verdict}");
        let der = der_of(&issued.cert_pem);
        let (_, leaf) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(
            leaf.public_key().raw,
            public_key.as_slice(),
            "each cert got its own key"
        );
    }
    let names: Vec<_> = std::fs::read_dir(&ca_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "only ca.key and ca.pem: {names:?}");
}

#[tokio::test]
async fn a_damaged_root_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let names = domains(&["a.test"]);
    let csr = key(dir.path(), "k").csr_pem(&names).unwrap();

    let corrupt = dir.path().join("corrupt");
    std::fs::create_dir(&corrupt).unwrap();
    std::fs::write(corrupt.join("ca.key"), "garbage").unwrap();
    let err = backend(&corrupt, 30)
        .submit(&names, &csr, &[], None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("ca.key") && message.contains("never replaces"),
        "{message}"
    );
    assert_eq!(std::fs::read(corrupt.join("ca.key")).unwrap(), b"garbage");
    assert!(!corrupt.join("ca.pem").exists());

    let keyless = dir.path().join("keyless");
    std::fs::create_dir(&keyless).unwrap();
    std::fs::write(keyless.join("ca.pem"), "a root").unwrap();
    let err = backend(&keyless, 30)
        .submit(&names, &csr, &[], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing while"), "{err}");
    assert!(!keyless.join("ca.key").exists());

    // A root whose key was swapped for another one is refused too.
    let swapped = dir.path().join("swapped");
    issue(&backend(&swapped, 30), &key(dir.path(), "k"), &names).await;
    std::fs::copy(dir.path().join("k.key"), swapped.join("ca.key")).unwrap();
    let err = backend(&swapped, 30)
        .submit(&names, &csr, &[], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not the one of ca.key"), "{err}");
}

#[tokio::test]
async fn a_zero_validity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = backend(dir.path(), 0);
    let names = domains(&["a.test"]);
    let csr = key(dir.path(), "k").csr_pem(&names).unwrap();
    let order = ca.submit(&names, &csr, &[], None).await.unwrap();
    let err = ca.await_issuance(&order.handle).await.unwrap_err();
    assert!(err.to_string().contains("validity_days"), "{err}");
}
