//! No secret is ever echoed. Known, distinctive values go in through every way the config
//! takes one (`${VAR}`, `env:VAR`, a `*_file`) and for every secret field this build
//! accepts; then rotad renews (through the ACME double, with external account binding),
//! fails (a malformed EAB key), and is sent invalid configs (apply, dry-run, check) that
//! quote the fields holding them. Every CLI output, every API response, every dashboard page
//! (logged out and in, and the login's own answers), every `/ws` message sent while the
//! renewal ran, `/metrics`, rotad's log at debug level and the audit database's bytes are
//! searched for each value: none may appear. A
//! decoy value in a field that is shown on purpose proves the search sees what it searches.
//! The `dcv: rfc2136` cert's TSIG secret is read at every load and check; the double offers
//! HTTP-01 only, so that cert's renewals stop before an update is signed (rfc2136_bind.rs
//! checks the errors of signed updates for the secret).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rota_e2e::acme_double::{AcmeDouble, DoubleOptions, Endpoint};
use rota_e2e::dashboard::{LiveWatch, http, login};
use rota_e2e::{Rotad, wait_for};
use serde_json::Value;

/// `daemon.api_token_file: env:…`.
const API_TOKEN: &str = "tok-3f9a1c7e-never-echo";
/// `namecheap.api_key_file: env:…`.
const NAMECHEAP_KEY: &str = "nck-0ddba11-never-echo";
/// `cloudflare.api_token_file: <file>`.
const CLOUDFLARE_TOKEN: &str = "cft-51c0ffee-never-echo";
/// `acme.external_account_binding.kid: ${…}`.
const EAB_KID: &str = "kid-7d2e9b41-never-echo";
/// `acme.external_account_binding.hmac_key_file: <file>`: base64url of a readable phrase, so
/// a leak of the decoded bytes is found too.
const EAB_HMAC_PHRASE: &str = "hmac-5ea1ed-never-echo";
/// The same key with a stray `~`, which makes account creation fail.
const BAD_HMAC_KEY: &str = "aG1hYy01ZWExZWQt~bmV2ZXItZWNobw";
/// `certs[1].dcv.tsig_secret_file: <file>` (`dcv: rfc2136`): base64 of a readable phrase, so
/// a leak of the decoded key is found too.
const TSIG_PHRASE: &str = "tsig-5ec4e7-never-echo";
/// Written where rota shows it on purpose (a cert's description).
const DECOY: &str = "decoy-2b7c-shown-on-purpose";

const WAIT: Duration = Duration::from_secs(20);

fn hmac_key() -> String {
    URL_SAFE_NO_PAD.encode(EAB_HMAC_PHRASE)
}

fn tsig_secret() -> String {
    base64::engine::general_purpose::STANDARD.encode(TSIG_PHRASE)
}

/// Every secret value, and the pieces of the encoded key a partial leak would show.
fn secret_values() -> Vec<String> {
    let key = hmac_key();
    let tsig = tsig_secret();
    vec![
        TSIG_PHRASE.to_owned(),
        tsig[..12].to_owned(),
        tsig[tsig.len() - 12..].to_owned(),
        API_TOKEN.to_owned(),
        NAMECHEAP_KEY.to_owned(),
        CLOUDFLARE_TOKEN.to_owned(),
        EAB_KID.to_owned(),
        EAB_HMAC_PHRASE.to_owned(),
        key[..12].to_owned(),
        key[key.len() - 12..].to_owned(),
        BAD_HMAC_KEY[..12].to_owned(),
        BAD_HMAC_KEY[BAD_HMAC_KEY.len() - 12..].to_owned(),
    ]
}

fn env() -> [(&'static str, &'static str); 3] {
    [
        ("ROTA_E2E_API_TOKEN", API_TOKEN),
        ("ROTA_E2E_NAMECHEAP_KEY", NAMECHEAP_KEY),
        ("ROTA_E2E_EAB_KID", EAB_KID),
    ]
}

/// The config with every secret field set, the secret files in `secrets`; `{dir}` is
/// rotad's state directory. `daemon_extra` goes into the `daemon:` block.
fn config(double: &AcmeDouble, secrets: &Path, daemon_extra: &str, domain: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n  \
         api_token_file: env:ROTA_E2E_API_TOKEN\n{daemon_extra}\
         namecheap:\n  api_key_file: env:ROTA_E2E_NAMECHEAP_KEY\n  username: ops\n  client_ip: 192.0.2.1\n\
         cloudflare:\n  api_token_file: {secrets}/cloudflare.token\n\
         acme:\n  directory_url: {url}\n  account_credentials_file: {{dir}}/acme/account.json\n  \
         ca_bundle_file: {bundle}\n  external_account_binding:\n    kid: ${{ROTA_E2E_EAB_KID}}\n    \
         hmac_key_file: {secrets}/eab.key\n\
         certs:\n  - id: web\n    description: {DECOY}\n    domains: [{domain}]\n    \
         key_path: {{dir}}/keys/web.key\n    ca: {{ kind: acme }}\n    \
         dcv: {{ kind: webroot, directory: {{dir}}/webroot }}\n    \
         install: {{ kind: filesystem, directory: {{dir}}/installed/web }}\n  \
         - id: dns\n    domains: [dns.rota.test]\n    key_path: {{dir}}/keys/dns.key\n    \
         ca: {{ kind: acme }}\n    dcv: {{ kind: rfc2136, server: '127.0.0.1:9', zone: rota.test, \
         tsig_key_name: rota-update, tsig_algorithm: hmac-sha256, \
         tsig_secret_file: {secrets}/tsig.key }}\n    \
         install: {{ kind: filesystem, directory: {{dir}}/installed/dns }}\n",
        url = double.directory_url(),
        bundle = double.ca_bundle_path().display(),
        secrets = secrets.display(),
    )
}

/// Everything rota said, collected for the search.
#[derive(Default)]
struct Transcript {
    said: Vec<(String, String)>,
}

impl Transcript {
    /// Runs `rota args` (success or not) and records its stdout and stderr.
    fn rota(&mut self, rotad: &Rotad, args: &[&str]) -> String {
        let out = rotad.rota(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        self.said
            .push((format!("rota {}", args.join(" ")), text.clone()));
        text
    }

    /// GETs an API route over the socket and records the raw response.
    fn get(&mut self, rotad: &Rotad, route: &str) {
        let out = Command::new("curl")
            .args(["-sS", "-i", "--unix-socket"])
            .arg(rotad.socket())
            .arg(format!("http://rotad{route}"))
            .output()
            .expect("run curl");
        assert!(out.status.success(), "curl {route}: {out:?}");
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        self.said.push((format!("GET {route}"), body));
    }

    /// GETs a dashboard path over TCP with `headers` and records the raw response.
    fn page(&mut self, rotad: &Rotad, path: &str, headers: &[String]) {
        let page = http(rotad.tcp_addr(), "GET", path, headers, None);
        assert_eq!(page.status, 200, "{path}: {page:?}");
        self.said.push((
            format!("GET {path} (TCP, {} headers)", headers.len()),
            format!("{}\n\n{}", page.headers, page.body),
        ));
    }

    /// Adds what else must be searched: a log, a database file.
    fn add(&mut self, what: &str, bytes: &[u8]) {
        self.said
            .push((what.to_owned(), String::from_utf8_lossy(bytes).into_owned()));
    }

    /// Where each of `values` appears.
    fn hits(&self, values: &[String]) -> Vec<String> {
        let mut hits = Vec::new();
        for (what, text) in &self.said {
            for value in values {
                if text.contains(value.as_str()) {
                    hits.push(format!("`{value}` in {what}"));
                }
            }
        }
        hits
    }
}

/// The `kid` of the EAB JWS the double received with the account, once there is one.
fn eab_kid_received(double: &AcmeDouble) -> Option<String> {
    let accounts = double.received(Endpoint::NewAccount);
    let protected = accounts.last()?["externalAccountBinding"]["protected"]
        .as_str()?
        .to_owned();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(protected).ok()?).ok()?;
    header["kid"].as_str().map(str::to_owned)
}

fn describe(rotad: &Rotad) -> Value {
    serde_json::from_str(&rotad.rota_ok(&["describe", "cert", "web", "-o", "json"])).expect("json")
}

/// Applies `yaml` (written beside the config) with `flags`, recording the CLI's answer.
fn apply(rotad: &Rotad, said: &mut Transcript, yaml: &str, flags: &[&str]) -> String {
    let file = rotad.path("submitted.yaml");
    let text = yaml.replace("{dir}", &rotad.dir.path().display().to_string());
    std::fs::write(&file, text).expect("write submitted config");
    let file = file.display().to_string();
    let mut args = vec!["apply", "-f", file.as_str()];
    args.extend_from_slice(flags);
    said.rota(rotad, &args)
}

fn read_if_exists(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// Configs whose errors quote fields holding a `${VAR}` value, sent every way rota takes a
/// config.
fn send_refused_configs(rotad: &Rotad, double: &AcmeDouble, secrets: &Path, said: &mut Transcript) {
    for (why, bad) in [
        (
            "a number field given the ${VAR}",
            config(
                double,
                secrets,
                "  check_interval_seconds: \"${ROTA_E2E_EAB_KID}\"\n",
                "web.rota.test",
            )
            .replacen("  check_interval_seconds: 3600\n", "", 1),
        ),
        (
            "a domain built from the ${VAR}",
            config(double, secrets, "", "\"${ROTA_E2E_EAB_KID}_x.test\""),
        ),
        (
            "a URL that is only the ${VAR}",
            config(double, secrets, "", "web.rota.test")
                .replace(&double.directory_url(), "\"${ROTA_E2E_EAB_KID}\""),
        ),
    ] {
        for flags in [&["--dry-run"][..], &[]] {
            let answer = apply(rotad, said, &bad, flags);
            assert!(
                answer.contains("${ROTA_E2E_EAB_KID}"),
                "{why}: quoted as written: {answer}"
            );
        }
        let file = rotad.path("submitted.yaml").display().to_string();
        said.rota(rotad, &["check", "-f", &file]);
    }
    // An accepted dry run: the diff shows the text as submitted.
    let changed = config(double, secrets, "", "web.rota.test")
        .replace("kid: ${ROTA_E2E_EAB_KID}", "kid: \"${ROTA_E2E_EAB_KID}-2\"");
    let diff = apply(rotad, said, &changed, &["--dry-run"]);
    assert!(
        diff.contains("${ROTA_E2E_EAB_KID}-2"),
        "the diff is as written: {diff}"
    );
}

/// Everything rota shows, in every format, the raw API, the dashboard (as `cookie`'s session
/// and logged out), rotad's log and the database files.
fn record_every_view(rotad: &Rotad, said: &mut Transcript, cookie: &str) {
    for args in [
        &["status"][..],
        &["get", "certs"],
        &["get", "certs", "-o", "json"],
        &["get", "certs", "-o", "yaml"],
        &["describe", "cert", "web"],
        &["describe", "cert", "web", "-o", "json"],
        &["log", "web"],
        &["log", "web", "--renewal", "1"],
    ] {
        said.rota(rotad, args);
    }
    for route in [
        "/api/status",
        "/api/certs",
        "/api/certs/web",
        "/api/certs/web/log",
        "/healthz",
    ] {
        said.get(rotad, route);
    }
    for path in [
        "/",
        "/certs/web",
        "/login",
        "/metrics",
        "/readyz",
        "/healthz",
    ] {
        said.page(rotad, path, &[]);
        said.page(rotad, path, &[cookie.to_owned()]);
    }
    said.add("rotad's log", rotad.log().as_bytes());
    for db in ["rota.db", "rota.db-wal", "rota.db-journal"] {
        said.add(db, &read_if_exists(&rotad.path(db)));
    }
}

#[test]
fn no_secret_is_echoed_by_renewals_failures_or_refused_configs() {
    let double = AcmeDouble::start(DoubleOptions::default());
    let env = env();
    let mut with_debug_log = env.to_vec();
    with_debug_log.push(("RUST_LOG", "debug"));
    // Outside rotad's directory, which only exists once it starts and validates its config.
    let secrets = tempfile::tempdir().expect("temp dir");
    std::fs::write(secrets.path().join("cloudflare.token"), CLOUDFLARE_TOKEN).expect("write");
    std::fs::write(secrets.path().join("tsig.key"), tsig_secret()).expect("write");
    let eab_file = secrets.path().join("eab.key");
    std::fs::write(&eab_file, BAD_HMAC_KEY).expect("write");
    let good = config(&double, secrets.path(), "", "web.rota.test");
    let rotad = Rotad::start_with_env(&good, &with_debug_log);
    let mut said = Transcript::default();

    // A failure: the EAB key does not decode, so the account cannot be created.
    wait_for("the first renewal to fail", WAIT, || {
        let renewals = describe(&rotad)["renewals"].as_array()?.clone();
        (renewals.first()?["status"] == "failed").then_some(())
    });
    let failed = said.rota(&rotad, &["log", "web"]);
    assert!(
        failed.contains("base64url"),
        "the failure says why: {failed}"
    );

    // The dashboard: a refused and an accepted login, then pages watching live.
    let addr = rotad.tcp_addr();
    for token in ["not-the-token", API_TOKEN] {
        let answer = http(addr, "POST", "/login", &[], Some(&format!("token={token}")));
        said.add(
            "POST /login",
            format!("{}\n\n{}", answer.headers, answer.body).as_bytes(),
        );
    }
    let cookie = login(addr, API_TOKEN);
    let session = cookie.trim_start_matches("Cookie: ").to_owned();
    let overview = LiveWatch::start(addr, "/ws", &[]);
    let detail = LiveWatch::start(addr, "/ws?cert=web", &[("cookie", &session)]);

    // A renewal: the key fixed, the account is created with the EAB and the cert issued.
    std::fs::write(&eab_file, hmac_key()).expect("fix the key");
    said.rota(&rotad, &["renew", "web"]);
    wait_for("the renewal on the watching pages", WAIT, || {
        let done = |w: &LiveWatch| w.messages().iter().any(|m| m.contains("succeeded"));
        (done(&overview) && done(&detail)).then_some(())
    });
    for (what, watch) in [("/ws", &overview), ("/ws?cert=web", &detail)] {
        said.add(what, watch.messages().join("\n").as_bytes());
    }
    assert_eq!(
        eab_kid_received(&double).as_deref(),
        Some(EAB_KID),
        "the ${{VAR}} kid was resolved and sent to the CA: the values are in use"
    );
    assert!(
        rotad.path("installed/web/cert.pem").exists(),
        "and the cert is installed"
    );

    send_refused_configs(&rotad, &double, secrets.path(), &mut said);
    record_every_view(&rotad, &mut said, &cookie);

    assert!(
        !said.hits(&[DECOY.to_owned()]).is_empty(),
        "the search must find a value rota shows on purpose, or it proves nothing"
    );
    let leaks = said.hits(&secret_values());
    assert!(leaks.is_empty(), "secrets echoed:\n{}", leaks.join("\n"));
}
