//! The kubectl-shaped CLI against the real rotad on the local CA: `rota get certs -o json|yaml`
//! and `rota get cert ID -o json|yaml` print objects that satisfy the checked-in
//! `schemas/certificate.schema.json`, name what is installed on disk, and echo neither an
//! expanded `${VAR}` nor a secret; `rota get certs -w` prints a new row when a renewal changes
//! the cert.

use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rota_e2e::{Rotad, condition, openssl, serial_hex, wait_for};
use serde_json::Value;

const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);

/// The API token rotad reads from a file; it must never appear in any output.
const TOKEN: &str = "kubectl-output-token-5c0ffee";

/// A config with certs `web` and `api`, and `extra` cert blocks after them; `web`'s
/// description names `${PATH}`, which rotad expands and must not echo. `token_file` holds
/// [`TOKEN`].
fn config(token_file: &str, extra: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n  api_token_file: {token_file}\n\nlocal_ca:\n  directory: {{dir}}/ca\n\ncerts:\n{}{}{extra}",
        cert_block(
            "web",
            "    description: served from ${PATH}\n",
            "{dir}/installed/web"
        ),
        // Rotating keys: its object also carries the next key's pin.
        cert_block(
            "api",
            "    key: { rotation: every_renewal }\n",
            "{dir}/installed/api"
        ),
    )
}

fn cert_block(id: &str, extra: &str, install_dir: &str) -> String {
    format!(
        "  - id: {id}\n{extra}    domains: [{id}.home.arpa]\n    key_path: {{dir}}/keys/{id}.key\n    ca: {{ kind: local }}\n    install:\n      kind: filesystem\n      directory: {install_dir}\n"
    )
}

/// rotad on [`config`] with `extra` certs, its token file in a directory of its own.
fn start(extra: &str) -> (Rotad, tempfile::TempDir) {
    let secrets = tempfile::tempdir().expect("temp dir");
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write the token");
    let rotad = Rotad::start(&config(&token_file.display().to_string(), extra));
    (rotad, secrets)
}

/// `rota get cert <id> -o json`, once its Ready condition is True for the current generation.
fn ready_object(rotad: &Rotad, id: &str) -> Value {
    wait_for(&format!("{id} to be Ready"), SETTLE_TIMEOUT, || {
        let object: Value =
            serde_json::from_str(&rotad.rota_ok(&["get", "cert", id, "-o", "json"])).ok()?;
        let ready = condition(&object, "Ready");
        let current = ready["observedGeneration"] == object["metadata"]["generation"];
        (ready["status"] == "True" && current).then_some(object)
    })
}

fn schema() -> jsonschema::Validator {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../schemas/certificate.schema.json"
    );
    let text = std::fs::read_to_string(path).expect("read the schema");
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the schema is a valid draft 2020-12 schema")
}

fn assert_valid(schema: &jsonschema::Validator, document: &Value, what: &str) {
    let errors: Vec<String> = schema
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} breaks the schema:\n{errors:#?}\n{document:#}"
    );
}

/// The installed cert's notAfter as the objects write it.
fn openssl_not_after(rotad: &Rotad, id: &str) -> String {
    let cert = rotad.path(&format!("installed/{id}/cert.pem"));
    let out = openssl(&[
        "x509",
        "-in",
        &cert.display().to_string(),
        "-noout",
        "-enddate",
        "-dateopt",
        "iso_8601",
    ]);
    out.trim().trim_start_matches("notAfter=").replace(' ', "T")
}

#[test]
fn objects_match_the_schema_and_what_is_installed_and_echo_no_secret() {
    // A directory below a file cannot be created, whoever runs the test: every install fails.
    let (rotad, _secrets) = start(&cert_block("broken", "", "{dir}/rota.yaml/broken"));
    let web = ready_object(&rotad, "web");
    ready_object(&rotad, "api");
    let broken = wait_for("broken to fail", SETTLE_TIMEOUT, || {
        let text = rotad.rota_ok(&["get", "cert", "broken", "-o", "json"]);
        let object: Value = serde_json::from_str(&text).ok()?;
        (condition(&object, "Failing")["status"] == "True").then_some(object)
    });
    let schema = schema();

    let list = rotad.certs_json();
    assert_valid(&schema, &list, "rota get certs -o json");
    assert_valid(&schema, &web, "rota get cert web -o json");
    assert_eq!(list["kind"], "CertificateList");
    let names: Vec<Option<&str>> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [Some("web"), Some("api"), Some("broken")],
        "config order"
    );
    assert_eq!(list["items"][0], web, "the list holds the same object");
    assert!(
        list["items"][1]["status"]["nextPrivateKey"]["pinSha256"].is_string(),
        "the schema was checked against a next key too: {list:#}"
    );

    assert_eq!(web["apiVersion"], "rota.dev/v1");
    assert_eq!(web["kind"], "Certificate");
    let status = &web["status"];
    assert_eq!(
        status["serialNumber"].as_str(),
        Some(serial_hex(&rotad.path("installed/web/cert.pem")).as_str())
    );
    assert_eq!(
        status["notAfter"].as_str(),
        Some(openssl_not_after(&rotad, "web").as_str())
    );
    let renewal_time = status["renewalTime"].as_str().expect("renewalTime");
    assert!(
        Some(renewal_time) < status["notAfter"].as_str(),
        "renews before it expires: {status:#}"
    );
    assert_eq!(status["lastRenewal"]["status"], "succeeded");
    assert_eq!(status["lastRenewal"]["reason"], "NotInstalled");
    assert!(status.get("lastFailureTime").is_none(), "{status:#}");

    let failing = &broken["status"];
    assert_eq!(failing["failedIssuanceAttempts"], 1, "{failing:#}");
    let (failed_at, next_attempt) = (
        failing["lastFailureTime"]
            .as_str()
            .expect("lastFailureTime"),
        failing["nextAttemptAt"].as_str().expect("nextAttemptAt"),
    );
    assert!(
        next_attempt > failed_at,
        "backs off after the failure: {failing:#}"
    );
    assert_eq!(failing["lastRenewal"]["status"], "failed");
    assert!(failing.get("notAfter").is_none(), "nothing is installed");

    let spec = &web["spec"];
    assert_eq!(spec["description"], "served from ${PATH}", "as written");
    assert_eq!(spec["install"]["kind"], "filesystem");
    let path = std::env::var("PATH").expect("PATH is set");
    let text = rotad.rota_ok(&["get", "certs", "-o", "json"]);
    assert!(
        !text.contains(&path),
        "an expanded ${{PATH}} leaked:\n{text}"
    );
    assert!(!text.contains(TOKEN), "the API token leaked:\n{text}");

    let mut broken = web.clone();
    broken["status"]["conditions"][0]["lastTransitionTime"] = "yesterday".into();
    assert!(
        !schema.is_valid(&broken),
        "the schema must refuse a condition without an RFC 3339 time"
    );
}

#[test]
fn yaml_output_is_the_json_output_and_one_cert_is_one_row() {
    let (rotad, _secrets) = start("");
    ready_object(&rotad, "web");
    for args in [
        ["get", "certs"].as_slice(),
        ["get", "cert", "web"].as_slice(),
    ] {
        let output = |format: &str| rotad.rota_ok(&[args, &["-o", format][..]].concat());
        let json: Value = serde_json::from_str(&output("json")).expect("JSON");
        let yaml: Value = serde_yaml::from_str(&output("yaml")).expect("YAML");
        assert_eq!(yaml, json, "rota {args:?}");
    }
    let table = rotad.rota_ok(&["get", "cert", "web"]);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows.len() == 2 && rows[0].starts_with("ID ") && rows[1].starts_with("web "),
        "one cert's table is its header and its row:\n{table}"
    );
    let missing = rotad.rota(&["get", "cert", "nope", "-o", "json"]);
    assert_eq!(
        missing.status.code(),
        Some(4),
        "an unknown cert is not found"
    );
}

/// `rota get certs -w -o wide` against `rotad`, its stdout lines on a channel.
fn watch(rotad: &Rotad) -> (Child, mpsc::Receiver<String>) {
    rotad.spawn_rota(&["get", "certs", "-w", "-o", "wide"])
}

/// The NOT AFTER cell, the last column of `-o wide`.
fn not_after_cell(row: &str) -> &str {
    row.split_whitespace().last().unwrap_or_default()
}

#[test]
fn watch_prints_a_row_when_a_renewal_replaces_the_cert() {
    let (rotad, _secrets) = start("");
    ready_object(&rotad, "web");
    ready_object(&rotad, "api");
    let issued = Instant::now();
    let (mut watcher, lines) = watch(&rotad);
    let next = || {
        lines
            .recv_timeout(SETTLE_TIMEOUT)
            .expect("a line from the watcher")
    };
    assert!(next().starts_with("ID "), "the table's header comes first");
    let first: Vec<String> = vec![next(), next()];
    let web_row = first
        .iter()
        .find(|row| row.starts_with("web "))
        .expect("a row for web");
    let before = not_after_cell(web_row).to_owned();
    assert!(before.ends_with('Z'), "{web_row}");

    // notAfter is stamped to the second: renewing within the issuing second would replace the
    // cert without changing the row, and there would be nothing to watch.
    wait_for(
        "the clock to pass the issuing second",
        SETTLE_TIMEOUT,
        || (issued.elapsed() > Duration::from_millis(1100)).then_some(()),
    );
    let renewed = rotad.rota_ok(&["renew", "web"]);
    assert!(renewed.contains("renewed web"), "{renewed}");
    let after = openssl_not_after(&rotad, "web");
    assert_ne!(after, before, "the renewal replaced the cert");
    let changed = wait_for("a row with the new notAfter", SETTLE_TIMEOUT, || {
        let row = lines.recv_timeout(Duration::from_millis(100)).ok()?;
        assert!(
            row.starts_with("web "),
            "only the renewed cert changed: {row}"
        );
        (not_after_cell(&row) == after).then_some(row)
    });
    assert!(
        changed.contains("True") && changed.contains("succeeded"),
        "{changed}"
    );
    assert!(
        watcher.try_wait().expect("watcher status").is_none(),
        "the watch goes on until it is interrupted"
    );
    watcher.kill().expect("stop the watcher");
    watcher.wait().expect("reap the watcher");
}
