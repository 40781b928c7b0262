//! The per-cert options end to end against the real rotad and rota: the deploy hook, per-cert
//! thresholds and validity, key types, output formats and IP address certs. Outcomes are
//! checked on disk, with openssl, and through the real peers (HAProxy, a TLS client).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rota_e2e::acme_peers::AcmePeers;
use rota_e2e::haproxy::Haproxy;
use rota_e2e::pebble::PebbleOptions;
use rota_e2e::{
    Rotad, assert_chain_verifies, cert_pubkey, condition, key_pubkey, serial_hex, wait_for,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);

/// A local-CA config with `certs` (YAML list items) appended; `{dir}` is the state directory.
fn local_config(certs: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n\nlocal_ca:\n  directory: {{dir}}/ca\n  validity_days: 90\n\ncerts:\n{certs}"
    )
}

/// Writes an executable script into the state directory (the hook must not need a shell).
fn script(rotad_dir: &std::path::Path, name: &str, body: &str) {
    let path = rotad_dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_deploy_hook_gets_the_cert_facts_and_its_failure_is_audited() {
    let certs = "  - id: web
    domains: [web.home.arpa, www.web.home.arpa]
    key_path: '{dir}/keys/web.key'
    ca: { kind: local }
    install:
      kind: filesystem
      directory: '{dir}/installed/web'
      post_command: ['{dir}/record.sh', 'first arg $HOME']
  - id: broken
    domains: [broken.home.arpa]
    key_path: '{dir}/keys/broken.key'
    ca: { kind: local }
    install:
      kind: filesystem
      directory: '{dir}/installed/broken'
      post_command: ['{dir}/fail.sh']
      post_command_timeout_seconds: 5
";
    // The scripts must exist before rotad issues at start: write the config only once they do.
    let rotad = Rotad::start(&local_config(""));
    script(
        rotad.dir.path(),
        "record.sh",
        "env | grep '^ROTA_' | sort > \"$(dirname \"$0\")/hook.env.tmp\"\necho \"argv=$1\" >> \"$(dirname \"$0\")/hook.env.tmp\"\nmv \"$(dirname \"$0\")/hook.env.tmp\" \"$(dirname \"$0\")/hook.env\"\necho 'reloaded my service' >&2",
    );
    script(
        rotad.dir.path(),
        "fail.sh",
        "echo 'service refused the cert' >&2\nexit 3",
    );
    let config = local_config(certs).replace("{dir}", &rotad.dir.path().display().to_string());
    let file = rotad.path("options.yaml");
    fs::write(&file, config).unwrap();
    let applied = rotad.rota_ok(&["apply", "-f", &file.display().to_string()]);
    assert!(
        applied.contains("web"),
        "apply names the new certs: {applied}"
    );

    let recorded = rotad.path("hook.env");
    let env = wait_for("the hook to run", ISSUE_TIMEOUT, || {
        fs::read_to_string(&recorded).ok()
    });
    let installed = rotad.path("installed/web");
    let serial = serial_hex(&installed.join("cert.pem"));
    for line in [
        "ROTA_CERT_ID=web".to_owned(),
        "ROTA_DOMAINS=web.home.arpa www.web.home.arpa".to_owned(),
        format!("ROTA_CERT_PATH={}", installed.join("cert.pem").display()),
        format!(
            "ROTA_FULLCHAIN_PATH={}",
            installed.join("fullchain.pem").display()
        ),
        format!("ROTA_KEY_PATH={}", installed.join("privkey.pem").display()),
        format!("ROTA_SERIAL={serial}"),
        "argv=first arg $HOME".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "`{line}` in:\n{env}");
    }
    let not_after = env
        .lines()
        .find_map(|l| l.strip_prefix("ROTA_NOT_AFTER="))
        .expect("ROTA_NOT_AFTER");
    assert!(
        not_after.len() == 20 && not_after.ends_with('Z'),
        "RFC 3339: {not_after}"
    );
    let log = rotad.rota_ok(&["log", "web"]);
    assert!(
        log.contains("reloaded my service") && log.contains("exit status: 0"),
        "the hook's status and stderr are audited:\n{log}"
    );

    let failing = wait_for("the failing hook to be recorded", ISSUE_TIMEOUT, || {
        let broken = rotad.cert_json("broken");
        (condition(&broken, "Failing")["status"] == "True").then_some(broken)
    });
    assert_eq!(
        condition(&failing, "Failing")["reason"],
        "InstallFailed",
        "{failing}"
    );
    let log = rotad.rota_ok(&["log", "broken"]);
    assert!(
        log.contains("service refused the cert") && log.contains("exit status: 3"),
        "the hook's failure is audited:\n{log}"
    );
}

/// A time `rota get certs -o json` printed.
fn json_time(value: &serde_json::Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a time"), &Rfc3339).expect("RFC 3339")
}

#[test]
fn a_cert_s_own_threshold_and_local_validity_beat_the_daemon_wide_ones() {
    let certs = "  - id: short
    domains: [short.home.arpa]
    key_path: '{dir}/keys/short.key'
    ca: { kind: local, validity_days: 10 }
    renew_before_days: 3
    install: { kind: filesystem, directory: '{dir}/installed/short' }
  - id: plain
    domains: [plain.home.arpa]
    key_path: '{dir}/keys/plain.key'
    ca: { kind: local }
    install: { kind: filesystem, directory: '{dir}/installed/plain' }
";
    let rotad = Rotad::start(&local_config(certs));
    for (id, validity, threshold) in [("short", 10, 3), ("plain", 90, 30)] {
        rotad.wait_installed(id);
        let cert = rotad.path(&format!("installed/{id}/cert.pem"));
        let dates = rota_e2e::openssl(&[
            "x509",
            "-in",
            &cert.display().to_string(),
            "-noout",
            "-startdate",
            "-enddate",
        ]);
        let status = wait_for("the renewal time to be known", ISSUE_TIMEOUT, || {
            let status = rotad.cert_json(id)["status"].clone();
            status.get("renewalTime").is_some().then_some(status)
        });
        let (not_before, not_after) = (
            json_time(&status["notBefore"]),
            json_time(&status["notAfter"]),
        );
        assert_eq!(
            (not_after - not_before).whole_days(),
            validity,
            "{id}: openssl says {dates}"
        );
        assert_eq!(
            not_after - json_time(&status["renewalTime"]),
            time::Duration::days(threshold),
            "{id}: {status}"
        );
    }
}

/// Every key type, by its config name and what `openssl pkey -text` prints for it.
const KEY_TYPES: [(&str, &str); 5] = [
    ("ecdsa-p256", "NIST CURVE: P-256"),
    ("ecdsa-p384", "NIST CURVE: P-384"),
    ("rsa-2048", "(2048 bit"),
    ("rsa-3072", "(3072 bit"),
    ("rsa-4096", "(4096 bit"),
];

/// The cert id used for a key type: `ecdsa-p256` → `<prefix>-ecdsa-p256`.
fn id_for(prefix: &str, key_type: &str) -> String {
    format!("{prefix}-{key_type}")
}

/// The HPKP pin (base64 SHA-256 of the SPKI) of the key at `path`, computed by openssl.
fn openssl_pin(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl pkey -in \"$1\" -pubout -outform DER | openssl dgst -sha256 -binary | openssl base64 -A")
        .arg("sh")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn describe(rotad: &Rotad, id: &str) -> serde_json::Value {
    serde_json::from_str(&rotad.rota_ok(&["describe", "cert", id, "-o", "json"])).unwrap()
}

#[test]
fn every_key_type_is_generated_issued_by_pebble_and_the_local_ca_and_kept() {
    let peers = AcmePeers::start(PebbleOptions::default());
    let acme_ids: Vec<String> = KEY_TYPES.iter().map(|(t, _)| id_for("acme", t)).collect();
    let ids: Vec<&str> = acme_ids.iter().map(String::as_str).collect();
    let mut config = peers
        .config_for(&ids, peers.served.path(), "")
        .replace("certs:\n", "local_ca:\n  directory: '{dir}/ca'\ncerts:\n");
    for (key_type, _) in KEY_TYPES {
        let id = id_for("acme", key_type);
        config = config.replace(
            &format!("    key_path: {{dir}}/keys/{id}.key\n"),
            &format!("    key_path: {{dir}}/keys/{id}.key\n    key: {{ type: {key_type} }}\n"),
        );
        let id = id_for("local", key_type);
        let _ = write!(
            config,
            "  - id: {id}\n    domains: [{id}.home.arpa]\n    key_path: '{{dir}}/keys/{id}.key'\n    key: {{ type: {key_type} }}\n    ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: '{{dir}}/installed/{id}' }}\n"
        );
    }
    let rotad = Rotad::start(&config);
    for (key_type, printed) in KEY_TYPES {
        for (prefix, root) in [
            ("acme", peers.pebble.issuer_roots_path()),
            ("local", rotad.path("ca/ca.pem")),
        ] {
            let id = id_for(prefix, key_type);
            rotad.wait_installed(&id);
            let key = rotad.path(&format!("keys/{id}.key"));
            let text =
                rota_e2e::openssl(&["pkey", "-noout", "-text", "-in", &key.display().to_string()]);
            assert!(text.contains(printed), "{id}: {text}");
            assert_eq!(rota_e2e::mode_of(&key), 0o600, "{id}");
            let installed = rotad.path(&format!("installed/{id}"));
            assert_eq!(
                cert_pubkey(&installed.join("cert.pem")),
                key_pubkey(&key),
                "{id}: the cert is for the generated key"
            );
            assert_chain_verifies(&root, &installed);
            let shown = describe(&rotad, &id)["key"].clone();
            assert_eq!(shown["algorithm"], key_type, "{id}: {shown}");
            assert_eq!(shown["pinSha256"], openssl_pin(&key), "{id}: {shown}");
            assert!(shown.get("warning").is_none(), "{id}: {shown}");

            let before = (
                serial_hex(&installed.join("cert.pem")),
                fs::read(&key).unwrap(),
            );
            let renewed = rotad.rota_ok(&["renew", &id]);
            assert!(
                renewed.contains(&format!("loaded the existing {key_type} key")),
                "{renewed}"
            );
            assert_ne!(
                serial_hex(&installed.join("cert.pem")),
                before.0,
                "{id}: renewed"
            );
            assert_eq!(fs::read(&key).unwrap(), before.1, "{id}: the key is reused");
            assert_eq!(cert_pubkey(&installed.join("cert.pem")), key_pubkey(&key));
        }
    }
}

#[test]
fn an_existing_key_of_another_type_wins_and_describe_warns() {
    let rotad = Rotad::start(&local_config(""));
    let key = rotad.path("keys/legacy.key");
    fs::create_dir_all(key.parent().unwrap()).unwrap();
    let _ = rota_e2e::openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &key.display().to_string(),
    ]);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    let before = fs::read(&key).unwrap();
    let config = local_config(
        "  - id: legacy\n    domains: [legacy.home.arpa]\n    key_path: '{dir}/keys/legacy.key'\n    key: { type: ecdsa-p384 }\n    ca: { kind: local }\n    install: { kind: filesystem, directory: '{dir}/installed/legacy' }\n",
    )
    .replace("{dir}", &rotad.dir.path().display().to_string());
    let file = rotad.path("options.yaml");
    fs::write(&file, config).unwrap();
    let applied = rotad.rota_ok(&["apply", "-f", &file.display().to_string()]);
    assert!(applied.contains("legacy"), "{applied}");
    rotad.wait_installed("legacy");
    assert_eq!(
        fs::read(&key).unwrap(),
        before,
        "the existing key is never replaced"
    );
    assert_eq!(
        cert_pubkey(&rotad.path("installed/legacy/cert.pem")),
        key_pubkey(&key)
    );
    let shown = describe(&rotad, "legacy")["key"].clone();
    assert_eq!(shown["algorithm"], "rsa-2048", "{shown}");
    let warning = shown["warning"].as_str().expect("a warning");
    assert!(
        warning.contains("ecdsa-p384") && warning.contains("never replaces"),
        "{warning}"
    );
    let text = rotad.rota_ok(&["describe", "cert", "legacy"]);
    assert!(
        text.contains("WARNING") && text.contains("rsa-2048"),
        "{text}"
    );
    let object = rotad.cert_json("legacy");
    assert_eq!(
        object["status"]["privateKey"]["algorithm"], "rsa-2048",
        "{object}"
    );
    assert_eq!(
        object["status"]["privateKey"]["pinSha256"],
        openssl_pin(&key)
    );
}

#[test]
fn combined_pem_is_served_by_haproxy_and_cert_p12_opens_with_its_password() {
    let certs = "  - id: web
    domains: [web.home.arpa]
    key_path: '{dir}/keys/web.key'
    key: { type: rsa-2048 }
    ca: { kind: local }
    install:
      kind: filesystem
      directory: '{dir}/installed/web'
      formats: [pem, combined, pkcs12]
      pkcs12_password_file: '{dir}/p12.password'
";
    let rotad = Rotad::start(&local_config(""));
    let password = rotad.path("p12.password");
    fs::write(&password, "correct horse\n").unwrap();
    let config = local_config(certs).replace("{dir}", &rotad.dir.path().display().to_string());
    let file = rotad.path("options.yaml");
    fs::write(&file, config).unwrap();
    let applied = rotad.rota_ok(&["apply", "-f", &file.display().to_string()]);
    assert!(applied.contains("web"), "{applied}");
    rotad.wait_installed("web");
    let dir = rotad.path("installed/web");
    let serial = serial_hex(&dir.join("cert.pem"));
    for (name, mode) in [
        ("combined.pem", 0o600),
        ("cert.p12", 0o600),
        ("privkey.pem", 0o600),
        ("fullchain.pem", 0o644),
    ] {
        assert_eq!(rota_e2e::mode_of(&dir.join(name)), mode, "{name}");
    }

    // HAProxy loads combined.pem as its `crt` and serves that very cert.
    let combined = dir.join("combined.pem");
    let checked = std::process::Command::new("/usr/sbin/haproxy")
        .arg("-c")
        .arg("-f")
        .arg(haproxy_check_config(&rotad, &combined))
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let haproxy = Haproxy::start(&combined);
    let served = rota_e2e::served_serial(
        std::net::SocketAddr::from(([127, 0, 0, 1], haproxy.port())),
        Some("web.home.arpa"),
        Some(&rotad.path("ca/ca.pem")),
    );
    assert_eq!(served, serial, "HAProxy serves combined.pem");

    // cert.p12 opens with the password (and not without it), holding key, leaf and root,
    // encrypted with PBES2/AES-256 and sealed with an HMAC-SHA-256.
    let p12 = dir.join("cert.p12").display().to_string();
    let pass = format!("file:{}", password.display());
    let info = std::process::Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-in", &p12, "-passin", &pass])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&info.stderr);
    assert!(info.status.success(), "{said}");
    assert!(said.contains("MAC: sha256"), "{said}");
    assert!(
        said.contains("PBES2") && said.contains("AES-256-CBC"),
        "{said}"
    );
    let out = rota_e2e::openssl(&[
        "pkcs12", "-in", &p12, "-passin", &pass, "-nodes", "-nokeys", "-clcerts",
    ]);
    let leaf = rotad.path("leaf-from-p12.pem");
    fs::write(&leaf, out).unwrap();
    assert_eq!(serial_hex(&leaf), serial, "the leaf in cert.p12");
    let keys = rota_e2e::openssl(&[
        "pkcs12", "-in", &p12, "-passin", &pass, "-nodes", "-nocerts",
    ]);
    let key = rotad.path("key-from-p12.pem");
    fs::write(&key, keys).unwrap();
    assert_eq!(key_pubkey(&key), key_pubkey(&rotad.path("keys/web.key")));
    let wrong = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            &p12,
            "-passin",
            "pass:wrong",
        ])
        .output()
        .unwrap();
    assert!(!wrong.status.success(), "a wrong password is refused");
}

/// A minimal haproxy.cfg that loads `crt`, for `haproxy -c` (which parses and loads the
/// certs but binds nothing, so the port is only read).
fn haproxy_check_config(rotad: &Rotad, crt: &std::path::Path) -> std::path::PathBuf {
    let cfg = rotad.path("haproxy-check.cfg");
    fs::write(
        &cfg,
        format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\nfrontend tls\n  bind 127.0.0.1:{} ssl crt {}\n",
            8443,
            crt.display()
        ),
    )
    .unwrap();
    cfg
}

/// Connects to `addr` by IP with `openssl s_client`, verifying the served chain under `root`
/// and that the cert names the address (`-verify_ip`); returns the served leaf's serial.
fn verified_by_ip(addr: std::net::SocketAddr, root: &std::path::Path) -> String {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-verify_return_error",
        ])
        .args(["-verify_ip", &addr.ip().to_string(), "-CAfile"])
        .arg(root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && text.contains("Verify return code: 0 (ok)"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = text.find("-----BEGIN CERTIFICATE-----").expect("a cert");
    let end = text
        .find("-----END CERTIFICATE-----")
        .expect("a whole cert");
    let leaf = tempfile::NamedTempFile::new().unwrap();
    fs::write(
        leaf.path(),
        &text[start..end + "-----END CERTIFICATE-----".len()],
    )
    .unwrap();
    serial_hex(leaf.path())
}

#[test]
fn an_ip_address_cert_from_pebble_over_http01_and_from_the_local_ca_verifies_by_ip() {
    let peers = AcmePeers::start(PebbleOptions::default());
    let mut config = peers
        .config_for(&["ip"], peers.served.path(), "")
        .replace("domains: [ip.rota.test]", "domains: ['127.0.0.1']")
        .replace(
            "install: { kind: filesystem, directory: {dir}/installed/ip }",
            "install: { kind: filesystem, directory: '{dir}/installed/ip', formats: [pem, combined] }",
        )
        .replace("certs:\n", "local_ca:\n  directory: '{dir}/ca'\ncerts:\n");
    config.push_str("  - id: lan-ip\n    domains: ['127.0.0.1', '::1', lan.home.arpa]\n    key_path: '{dir}/keys/lan-ip.key'\n    ca: { kind: local }\n    install: { kind: filesystem, directory: '{dir}/installed/lan-ip', formats: [pem, combined] }\n");
    let rotad = Rotad::start(&config);
    for (id, root, sans) in [
        (
            "ip",
            peers.pebble.issuer_roots_path(),
            "IP Address:127.0.0.1",
        ),
        (
            "lan-ip",
            rotad.path("ca/ca.pem"),
            "IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:lan.home.arpa",
        ),
    ] {
        rotad.wait_installed(id);
        let dir = rotad.path(&format!("installed/{id}"));
        let printed = rota_e2e::sans_of(&dir.join("cert.pem"));
        assert!(printed.contains(sans), "{id}: {printed}");
        let haproxy = Haproxy::start(&dir.join("combined.pem"));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], haproxy.port()));
        assert_eq!(
            verified_by_ip(addr, &root),
            serial_hex(&dir.join("cert.pem")),
            "{id}"
        );
        let ready = condition(&rotad.cert_json(id), "Ready").clone();
        assert_eq!(
            ready["status"], "True",
            "{id}: the installed IP SANs match the spec: {ready}"
        );
    }
    // pebble fetched the HTTP-01 answer for the address from the webroot nginx serves.
    let access = peers.nginx.access_log();
    assert!(
        access
            .lines()
            .any(|l| l.starts_with("GET /.well-known/acme-challenge/") && l.ends_with(" 200")),
        "{access}"
    );
}
