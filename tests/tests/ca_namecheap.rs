//! The Namecheap CA (reissue within an SSL subscription) against the Namecheap double: reissue,
//! the DCV CNAMEs Namecheap hands back published through the Namecheap DNS solver, getInfo
//! polled until the double issues, and the next renewal reissuing the certificate that
//! replaced the configured one. End to end, the real rotad does the same with
//! `ca: namecheap` + `dcv: namecheap`. Assertions are on the double (its certificates and
//! zone) and on the chain with `openssl verify`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rota_api::config::{CertSpec, Config};
use rota_api::{BackendFactory, ChallengeKind, DcvChallenge, DomainName};
use rota_e2e::namecheap_double::{Host, NamecheapDouble, Zone};
use rota_e2e::test_chain::CsrSigner;
use rota_e2e::{Rotad, assert_chain_verifies, wait_for};
use rota_providers::Providers;

const USER: &str = "ada";
const KEY: &str = "nc-key-5ecret";
const IP: &str = "192.0.2.10";
const DOMAINS: [&str; 2] = ["example.co.uk", "www.example.co.uk"];

fn zone() -> Zone {
    let mut mx = Host::new("@", "MX", "mx.example.net.");
    mx.mx_pref = "5".into();
    Zone {
        email_type: "MX".into(),
        using_our_dns: true,
        hosts: vec![
            Host::new("@", "A", "192.0.2.1"),
            mx,
            Host::new("@", "TXT", "v=spf1 a & mx -all"),
        ],
    }
}

/// The double with `example.co.uk` and a signer; returns the signer too.
fn double() -> (NamecheapDouble, Arc<CsrSigner>) {
    let double = NamecheapDouble::start(USER, KEY, IP);
    double.add_domain("example.co.uk", zone());
    let signer = Arc::new(CsrSigner::default());
    let signs = Arc::clone(&signer);
    double.sign_with(Arc::new(move |csr: &str| signs.sign(csr)));
    (double, signer)
}

fn config_text(api_url: &str, key_file: &str, ssl_id: u64, dir: &str) -> String {
    format!(
        "namecheap:\n  api_key_file: {key_file}\n  username: {USER}\n  client_ip: {IP}\n  \
         api_url: {api_url}\n\
         certs:\n  - id: web\n    domains: [{d0}, {d1}]\n    key_path: {dir}/web.key\n    \
         ca: {{ kind: namecheap, ssl_id: {ssl_id} }}\n    dcv: {{ kind: namecheap }}\n    \
         install: {{ kind: filesystem, directory: {dir}/installed/web }}\n",
        d0 = DOMAINS[0],
        d1 = DOMAINS[1],
    )
}

fn config(dir: &Path, double: &NamecheapDouble, ssl_id: u64) -> (Config, CertSpec) {
    std::fs::write(dir.join("nc.key"), format!("{KEY}\n")).unwrap();
    let text = config_text(
        &double.api_url(),
        "nc.key",
        ssl_id,
        &dir.display().to_string(),
    );
    let config = rota_api::config::load_str(&dir.join("rota.yaml"), text)
        .unwrap()
        .config;
    let cert = config.certs[0].clone();
    (config, cert)
}

fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = DOMAINS.iter().map(|d| (*d).to_owned()).collect();
    rcgen::CertificateParams::new(names)
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

fn domains() -> Vec<DomainName> {
    DOMAINS
        .iter()
        .map(|d| DomainName::new(d).unwrap())
        .collect()
}

/// One renewal by hand: submit, publish every challenge, await issuance, remove.
fn renew(
    providers: &Providers,
    config: &Config,
    cert: &CertSpec,
) -> (Vec<DcvChallenge>, rota_api::IssuedCert) {
    let ca = providers.ca(config, cert).unwrap();
    let dcv = providers.dcv(config, cert.dcv.as_ref().unwrap()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let order = ca
            .submit(&domains(), &csr(), &[ChallengeKind::Dns01], None)
            .await
            .unwrap();
        for challenge in &order.challenges {
            assert!(dcv.supports(challenge), "{challenge:?}");
            dcv.publish(challenge).await.unwrap();
        }
        let issued = ca.await_issuance(&order.handle).await.unwrap();
        for challenge in &order.challenges {
            dcv.remove(challenge).await.unwrap();
        }
        (order.challenges, issued)
    })
}

#[test]
fn reissue_answers_the_cname_dcv_polls_and_follows_the_new_certificate_id() {
    let dir = tempfile::tempdir().unwrap();
    let (double, signer) = double();
    let first = double.add_cert("active");
    let (config, cert) = config(dir.path(), &double, first);
    let providers = Providers::new();

    let (challenges, issued) = renew(&providers, &config, &cert);
    assert_eq!(
        challenges.len(),
        2,
        "one CNAME per name, as Namecheap answers: {challenges:?}"
    );
    assert!(
        challenges
            .iter()
            .all(|c| matches!(c, DcvChallenge::DnsCname { .. })),
        "{challenges:?}"
    );
    let second = *double.cert_ids().last().unwrap();
    assert_ne!(second, first, "the reissue made a new certificate ID");
    assert_eq!(double.cert(first).status, "replaced");
    assert_eq!(double.cert(first).replaced_by, second);
    let active = double.cert(second);
    assert_eq!(active.status, "active");
    let (leaf, chain) = active.issued.clone().unwrap();
    assert_eq!(
        issued.cert_pem.trim(),
        leaf.trim(),
        "rota returns what Namecheap issued"
    );
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("cert.pem"), &issued.cert_pem).unwrap();
    std::fs::write(out.join("chain.pem"), &issued.chain_pem).unwrap();
    std::fs::write(dir.path().join("root.pem"), &signer.root_pem).unwrap();
    assert_eq!(issued.chain_pem.trim(), chain.trim());
    assert_chain_verifies(&dir.path().join("root.pem"), &out);
    assert_eq!(
        double.zone("example.co.uk"),
        zone(),
        "the DCV CNAMEs are gone, the rest intact"
    );

    // The next renewal, configured with the first ID still, reissues the live one.
    renew(&providers, &config, &cert);
    let third = *double.cert_ids().last().unwrap();
    assert_eq!(double.cert(third).reissues, Some(second));
    assert_eq!(double.cert(second).replaced_by, third);
    assert_eq!(double.zone("example.co.uk"), zone());
}

#[test]
fn a_subscription_never_activated_is_refused_with_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let (double, _) = double();
    let id = double.add_cert("newpurchase");
    let (config, cert) = config(dir.path(), &double, id);
    let ca = Providers::new().ca(&config, &cert).unwrap();
    let err = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ca.submit(&domains(), &csr(), &[ChallengeKind::Dns01], None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("certificate {id} has not been activated yet")),
        "{err}"
    );
    assert!(
        err.contains("activate it once in Namecheap's dashboard"),
        "{err}"
    );
    assert!(
        !double.calls().iter().any(|c| c == "namecheap.ssl.reissue"),
        "{:?}",
        double.calls()
    );
}

#[test]
fn rotad_renews_through_namecheap_reissue() {
    let (double, signer) = double();
    let first = double.add_cert("active");
    let text = config_text(&double.api_url(), "env:NC_KEY", first, "{dir}");
    let config = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n{text}"
    );
    let rotad = Rotad::start_with_env(&config, &[("NC_KEY", KEY)]);
    let installed = rotad.path("installed/web");
    wait_for("the cert to be installed", Duration::from_secs(60), || {
        installed.join("fullchain.pem").exists().then_some(())
    });
    let root = rotad.path("root.pem");
    std::fs::write(&root, &signer.root_pem).unwrap();
    assert_chain_verifies(&root, &installed);
    assert_eq!(double.cert(first).status, "replaced");
    assert_eq!(
        double.zone("example.co.uk"),
        zone(),
        "the zone is what it was"
    );
    assert!(
        !rotad.log().contains(KEY),
        "the API key never reaches the log"
    );
}
