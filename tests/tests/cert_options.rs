//! The per-cert options end to end against the real rotad and rota: the deploy hook, per-cert
//! thresholds and validity, key types, output formats and IP address certs. Outcomes are
//! checked on disk, with openssl, and through the real peers (HAProxy, a TLS client).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use rota_e2e::{Rotad, condition, serial_hex, wait_for};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);

/// A local-CA config with `certs` (YAML list items) appended; `{dir}` is the state directory.
fn local_config(certs: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n\nlocal_ca:\n  directory: {{dir}}/ca\n  validity_days: 90\n\ncerts:\n{certs}"
    )
}

fn wait_installed(rotad: &Rotad, id: &str) {
    let cert = rotad.path(&format!("installed/{id}/cert.pem"));
    wait_for(&format!("{id} to be installed"), ISSUE_TIMEOUT, || {
        cert.exists().then_some(())
    });
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
        let certs = rotad.certs_json();
        let broken = certs["items"]
            .as_array()?
            .iter()
            .find(|c| c["metadata"]["name"] == "broken")?
            .clone();
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

fn cert_json(rotad: &Rotad, id: &str) -> serde_json::Value {
    let certs = rotad.certs_json();
    certs["items"]
        .as_array()
        .and_then(|items| items.iter().find(|c| c["metadata"]["name"] == id))
        .cloned()
        .unwrap_or_else(|| panic!("{id} in {certs}"))
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
        wait_installed(&rotad, id);
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
            let status = cert_json(&rotad, id)["status"].clone();
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
