//! The ACME CA backend against the real peer: rota's `Providers` builds `AcmeCa` from a
//! config, and pebble (with pebble-challtestsrv as its DNS) issues. Each test publishes the
//! DNS-01 TXT records itself through challtestsrv, as a DCV backend would, and checks what
//! pebble did: chains with the real `openssl verify`, keys, accounts in pebble's log.

use std::collections::BTreeSet;
use std::fs;
use std::sync::Arc;

use rota_api::config::Config;
use rota_api::{
    BackendError, BackendFactory, CaBackend, ChallengeKind, DcvChallenge, DomainName, IssuedCert,
    RevocationReason,
};
use rota_e2e::pebble::{ChallTestSrv, Pebble, PebbleOptions};
use rota_e2e::{assert_chain_verifies, cert_pubkey, key_pubkey, mode_of, openssl, serial_hex};
use rota_providers::Providers;
use rota_providers::keys::{self, CertKey};

/// pebble with its DNS, and a directory for the config, keys and account file.
struct Acme {
    dns: ChallTestSrv,
    pebble: Pebble,
    dir: tempfile::TempDir,
}

impl Acme {
    fn start(options: &PebbleOptions) -> Self {
        let dns = ChallTestSrv::start();
        let pebble = Pebble::start(&options.clone().dns(&dns));
        let dir = tempfile::tempdir().expect("temp dir");
        Self { dns, pebble, dir }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    /// A config whose `acme:` block points at pebble, plus `acme_extra` lines, with one
    /// cert `web` whose `ca:` block is `ca`.
    fn config(&self, acme_extra: &str, ca: &str) -> Config {
        let text = format!(
            "acme:\n  directory_url: {url}\n  contact_email: ops@rota.test\n  \
             account_credentials_file: {d}/secrets/acme-account.json\n  \
             ca_bundle_file: {bundle}\n{acme_extra}\
             certs:\n  - id: web\n    domains: [a.test]\n    key_path: {d}/web.key\n    \
             ca: {ca}\n    dcv: {{ kind: webroot, directory: {d}/www }}\n    \
             install: {{ kind: filesystem, directory: {d}/out }}\n",
            url = self.pebble.directory_url(),
            d = self.dir.path().display(),
            bundle = self.pebble.ca_bundle_path().display(),
        );
        rota_api::config::load_str(&self.path("rota.yaml"), text)
            .unwrap_or_else(|e| panic!("config: {e:?}"))
            .config
    }

    fn key(&self, name: &str) -> CertKey {
        keys::load_or_generate(
            &self.path(&format!("{name}.key")),
            rota_api::config::KeyType::default(),
        )
        .expect("cert key")
        .key
    }

    /// Submits, publishes every DNS-01 response, awaits issuance, takes the records down.
    async fn issue(
        &self,
        ca: &dyn CaBackend,
        key: &CertKey,
        domains: &[DomainName],
        replacing: Option<&str>,
    ) -> Result<IssuedCert, BackendError> {
        let csr = key.csr_pem(domains).expect("csr");
        let order = ca
            .submit(domains, &csr, &[ChallengeKind::Dns01], replacing)
            .await?;
        let published = self.publish(&order.challenges, None);
        let issued = ca.await_issuance(&order.handle).await;
        for name in published {
            self.dns.clear_txt(&name);
        }
        issued
    }

    /// Publishes each DNS-01 response (or `forced_value` instead); the record names.
    fn publish(&self, challenges: &[DcvChallenge], forced_value: Option<&str>) -> Vec<String> {
        challenges
            .iter()
            .map(|challenge| match challenge {
                DcvChallenge::Dns01 {
                    record_name,
                    record_value,
                    ..
                } => {
                    self.dns
                        .set_txt(record_name, forced_value.unwrap_or(record_value));
                    record_name.clone()
                }
                other @ (DcvChallenge::Http01 { .. } | DcvChallenge::DnsCname { .. }) => {
                    panic!("asked for DNS-01 only, got {other:?}")
                }
            })
            .collect()
    }

    /// Writes `issued` to `issued/cert.pem` and `issued/chain.pem` and checks with `openssl
    /// verify` that it chains to pebble's issuing root.
    fn verify(&self, issued: &IssuedCert) {
        let dir = self.path("issued");
        fs::create_dir_all(&dir).expect("issued dir");
        fs::write(dir.join("cert.pem"), &issued.cert_pem).expect("write leaf");
        fs::write(dir.join("chain.pem"), &issued.chain_pem).expect("write chain");
        assert_chain_verifies(&self.pebble.issuer_roots_path(), &dir);
    }
}

/// The ACME backend `providers` builds for the config's cert.
fn backend(providers: &Providers, config: &Config) -> Arc<dyn CaBackend> {
    providers
        .ca(config, &config.certs[0])
        .expect("acme backend")
}

fn domains(names: &[&str]) -> Vec<DomainName> {
    names
        .iter()
        .map(|n| DomainName::new(n).expect("domain"))
        .collect()
}

#[tokio::test]
async fn issues_over_dns01_keeping_the_key_across_three_orders() {
    let acme = Acme::start(&PebbleOptions::default());
    let config = acme.config("", "{ kind: acme }");
    let ca = backend(&Providers::new(), &config);
    let key = acme.key("web");
    let names = domains(&["a.test", "www.a.test"]);
    let mut previous: Option<IssuedCert> = None;
    let mut serials = BTreeSet::new();
    for _ in 0..3 {
        let replacing = previous.as_ref().map(|p| p.cert_pem.as_str());
        let issued = acme
            .issue(&*ca, &key, &names, replacing)
            .await
            .expect("issued");
        acme.verify(&issued);
        // Finalized with rota's CSR: the leaf certifies the key on disk.
        assert_eq!(
            cert_pubkey(&acme.path("issued/cert.pem")),
            key_pubkey(&acme.path("web.key"))
        );
        let text = openssl(&[
            "x509",
            "-noout",
            "-text",
            "-in",
            &acme.path("issued/cert.pem").display().to_string(),
        ]);
        assert!(
            text.contains("DNS:a.test") && text.contains("DNS:www.a.test"),
            "{text}"
        );
        serials.insert(serial_hex(&acme.path("issued/cert.pem")));
        previous = Some(issued);
    }
    assert_eq!(serials.len(), 3, "three distinct certs: {serials:?}");

    // pebble 2.4's directory has no renewalInfo: no window, no error.
    let leaf = previous.expect("issued").cert_pem;
    assert_eq!(ca.renewal_window(&leaf).await.expect("ari"), None);
    ca.revoke(&leaf, RevocationReason::Superseded)
        .await
        .expect("revoked");
    let status = acme
        .pebble
        .cert_status(&serial_hex(&acme.path("issued/cert.pem")));
    assert_eq!(
        (&status["Status"], &status["Reason"]),
        (&serde_json::json!("Revoked"), &serde_json::json!(4)),
        "pebble holds it revoked as superseded: {status}"
    );
    let again = ca
        .revoke(&leaf, RevocationReason::Superseded)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("alreadyRevoked"), "{again}");
}

#[tokio::test]
async fn an_order_whose_authorizations_are_reused_needs_no_challenge() {
    let acme = Acme::start(&PebbleOptions::default().authz_reuse_percent(100));
    let config = acme.config("", "{ kind: acme }");
    let ca = backend(&Providers::new(), &config);
    let key = acme.key("web");
    let names = domains(&["a.test"]);
    acme.issue(&*ca, &key, &names, None).await.expect("first");
    let csr = key.csr_pem(&names).expect("csr");
    let order = ca
        .submit(&names, &csr, &[ChallengeKind::Dns01], None)
        .await
        .expect("submitted");
    assert_eq!(
        order.challenges,
        [],
        "pebble reused the valid authorization"
    );
    let issued = ca.await_issuance(&order.handle).await.expect("issued");
    acme.verify(&issued);
}

#[tokio::test]
async fn a_wildcard_and_its_base_name_share_one_txt_record_name() {
    let acme = Acme::start(&PebbleOptions::default());
    let config = acme.config("", "{ kind: acme }");
    let ca = backend(&Providers::new(), &config);
    let key = acme.key("wild");
    let names = domains(&["*.w.test", "w.test"]);
    let csr = key.csr_pem(&names).expect("csr");
    let first = ca
        .submit(
            &names,
            &csr,
            &[ChallengeKind::Http01, ChallengeKind::Dns01],
            None,
        )
        .await
        .expect("submitted");
    // HTTP-01 cannot prove a wildcard, so the walk falls through to DNS-01 for it; the base
    // name gets the solver's first choice.
    let mut kinds: Vec<_> = first.challenges.iter().map(DcvChallenge::kind).collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        kinds,
        [ChallengeKind::Dns01, ChallengeKind::Http01],
        "{first:?}"
    );

    // A second order for the same names, collected by its own handle; the first is left.
    let order = ca
        .submit(&names, &csr, &[ChallengeKind::Dns01], None)
        .await
        .expect("submitted");
    assert_ne!(order.handle.locator, first.handle.locator, "two orders");
    let names_published = acme.publish(&order.challenges, None);
    assert_eq!(names_published, ["_acme-challenge.w.test"; 2]);
    let issued = ca.await_issuance(&order.handle).await.expect("issued");
    acme.verify(&issued);
    let text = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        &acme.path("issued/cert.pem").display().to_string(),
    ]);
    assert!(
        text.contains("DNS:*.w.test") && text.contains("DNS:w.test"),
        "{text}"
    );
}

#[tokio::test]
async fn a_txt_record_delegated_by_cname_is_followed_by_the_ca() {
    let acme = Acme::start(&PebbleOptions::default());
    let config = acme.config("", "{ kind: acme }");
    let ca = backend(&Providers::new(), &config);
    let names = domains(&["c.test"]);
    let csr = acme.key("web").csr_pem(&names).expect("csr");
    let order = ca
        .submit(&names, &csr, &[ChallengeKind::Dns01], None)
        .await
        .expect("submitted");
    let [
        DcvChallenge::Dns01 {
            record_name,
            record_value,
            ..
        },
    ] = &order.challenges[..]
    else {
        panic!("one DNS-01 challenge: {order:?}");
    };
    // The CA asks for the record at the domain; the zone delegates it elsewhere.
    assert_eq!(record_name, "_acme-challenge.c.test");
    acme.dns
        .set_cname(record_name, "_acme-challenge.delegated.test");
    acme.dns
        .set_txt("_acme-challenge.delegated.test", record_value);
    acme.verify(&ca.await_issuance(&order.handle).await.expect("issued"));
}

#[tokio::test]
async fn the_account_is_created_once_saved_0600_and_shared() {
    let acme = Acme::start(&PebbleOptions::default());
    let config = acme.config("", "{ kind: acme }");
    let providers = Providers::new();
    let file = acme.path("secrets/acme-account.json");

    // Two certs of one `acme:` block, ordered concurrently: one account.
    let (web, api) = (backend(&providers, &config), backend(&providers, &config));
    let (web_key, api_key) = (acme.key("web"), acme.key("api"));
    let (web_names, api_names) = (domains(&["web.test"]), domains(&["api.test"]));
    let (a, b) = tokio::join!(
        acme.issue(&*web, &web_key, &web_names, None),
        acme.issue(&*api, &api_key, &api_names, None),
    );
    a.expect("web issued");
    b.expect("api issued");
    assert_eq!(acme.pebble.accounts_created(), 1, "{}", acme.pebble.log());
    assert_eq!(mode_of(&file), 0o600);
    assert_eq!(mode_of(&acme.path("secrets")), 0o700);
    let saved = fs::read(&file).expect("account file");

    // A restarted rotad (a new factory) loads the account instead of creating one.
    let restarted = backend(&Providers::new(), &config);
    acme.issue(&*restarted, &web_key, &web_names, None)
        .await
        .expect("issued after restart");
    assert_eq!(acme.pebble.accounts_created(), 1, "{}", acme.pebble.log());
    assert_eq!(
        fs::read(&file).expect("account file"),
        saved,
        "the file is left as it was"
    );
}

/// pebble's example EAB key (docs/examples/pebble-config-external-account-bindings.json).
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

#[tokio::test]
async fn external_account_binding_works_with_the_right_key_only() {
    let acme = Acme::start(&PebbleOptions::default().eab_key("kid-1", EAB_KEY));
    let eab = |kid: &str, key: &str, file: &str| {
        fs::write(acme.path(file), format!("{key}\n")).expect("write hmac");
        format!(
            "  external_account_binding: {{ kid: {kid}, hmac_key_file: {} }}\n",
            acme.path(file).display()
        )
    };
    let names = domains(&["a.test"]);
    let key = acme.key("web");

    let without = acme.config("", "{ kind: acme }");
    let err = acme
        .issue(&*backend(&Providers::new(), &without), &key, &names, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("this CA requires acme.external_account_binding"),
        "{err}"
    );

    // A key that decodes but is not the CA's.
    let wrong = acme.config(
        &eab("kid-1", "c2VjcmV0LWJ1dC13cm9uZw", "wrong.hmac"),
        "{ kind: acme }",
    );
    let err = acme
        .issue(&*backend(&Providers::new(), &wrong), &key, &names, None)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("creating the ACME account"), "{message}");
    assert!(message.contains("urn:ietf:params:acme:error:"), "{message}");
    assert!(
        message.contains("check acme.external_account_binding"),
        "{message}"
    );
    assert!(
        !acme.path("secrets/acme-account.json").exists(),
        "no account was saved"
    );

    let unknown = acme.config(&eab("kid-9", EAB_KEY, "unknown.hmac"), "{ kind: acme }");
    let err = acme
        .issue(&*backend(&Providers::new(), &unknown), &key, &names, None)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("creating the ACME account"),
        "{err}"
    );

    let right = acme.config(&eab("kid-1", EAB_KEY, "right.hmac"), "{ kind: acme }");
    let issued = acme
        .issue(&*backend(&Providers::new(), &right), &key, &names, None)
        .await
        .expect("issued with EAB");
    acme.verify(&issued);
}

#[tokio::test]
async fn a_wrong_txt_value_is_refused_with_pebbles_problem_and_the_name() {
    let acme = Acme::start(&PebbleOptions::default());
    let config = acme.config("", "{ kind: acme }");
    let ca = backend(&Providers::new(), &config);
    let names = domains(&["a.test"]);
    let csr = acme.key("web").csr_pem(&names).expect("csr");
    let order = ca
        .submit(&names, &csr, &[ChallengeKind::Dns01], None)
        .await
        .expect("submitted");
    acme.publish(&order.challenges, Some("not-the-key-authorization"));
    let err = ca.await_issuance(&order.handle).await.unwrap_err();
    assert_eq!(err.reason(), "Refused", "{err}");
    let message = err.to_string();
    assert!(
        message.contains("urn:ietf:params:acme:error:unauthorized"),
        "{message}"
    );
    assert!(message.contains("a.test"), "{message}");
}

#[tokio::test]
async fn twenty_orders_in_a_row_survive_30_percent_bad_nonces() {
    let acme = Acme::start(&PebbleOptions::default().nonce_reject_percent(30));
    let config = acme.config("", "{ kind: acme }");
    let ca = backend(&Providers::new(), &config);
    let key = acme.key("web");
    let names = domains(&["a.test"]);
    let mut previous: Option<String> = None;
    for round in 1..=20 {
        let issued = acme
            .issue(&*ca, &key, &names, previous.as_deref())
            .await
            .unwrap_or_else(|e| panic!("order {round}: {e}"));
        previous = Some(issued.cert_pem);
    }
    assert_eq!(acme.pebble.accounts_created(), 1);
    // pebble logs every request, not its rejections: a rejected one is sent again. 20 orders
    // need 40 newOrder + finalize requests; with none rejected (0.7^40) this would fail.
    let log = acme.pebble.log();
    let issued = log.matches("Issued certificate serial").count();
    let sent =
        log.matches("POST /order-plz").count() + log.matches("POST /finalize-order/").count();
    assert_eq!(issued, 20, "pebble issued every cert once");
    assert!(
        sent > 40,
        "pebble rejected some nonces: {sent} newOrder + finalize requests for 20 orders"
    );
}

#[tokio::test]
async fn profiles_and_challenge_kinds_are_checked_before_anything_is_published() {
    let acme = Acme::start(&PebbleOptions::default());
    let names = domains(&["a.test"]);
    let csr = acme.key("web").csr_pem(&names).expect("csr");

    for (acme_extra, ca) in [
        ("  profile: shortlived\n", "{ kind: acme }"),
        ("", "{ kind: acme, profile: shortlived }"),
    ] {
        let config = acme.config(acme_extra, ca);
        let backend = backend(&Providers::new(), &config);
        let err = backend
            .submit(&names, &csr, &[ChallengeKind::Dns01], None)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidInput", "{err}");
        assert!(err.to_string().contains("`shortlived`"), "{err}");
        // pebble 2.4 advertises no profiles.
        assert!(err.to_string().contains("advertises no profiles"), "{err}");
    }

    let config = acme.config("", "{ kind: acme }");
    let backend = backend(&Providers::new(), &config);
    let err = backend.submit(&names, &csr, &[], None).await.unwrap_err();
    assert_eq!(err.reason(), "InvalidInput", "{err}");
    assert!(
        err.to_string().contains("dns-01"),
        "names what the CA offers: {err}"
    );
    assert!(err.to_string().contains("no DCV solver"), "{err}");
}

#[tokio::test]
async fn a_ca_bundle_that_does_not_sign_the_directory_is_a_tls_error() {
    let acme = Acme::start(&PebbleOptions::default());
    // The root pebble issues under, not the one its TLS certificate chains to.
    let other_root = acme.pebble.issuer_roots_path();
    let mut config = acme.config("", "{ kind: acme }");
    if let Some(account) = &mut config.acme {
        account.ca_bundle_file = Some(other_root);
    }
    let ca = backend(&Providers::new(), &config);
    let names = domains(&["a.test"]);
    let err = acme
        .issue(&*ca, &acme.key("web"), &names, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Unreachable", "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(err.to_string().contains("acme.ca_bundle_file"), "{err}");
}
