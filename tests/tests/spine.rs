//! The spine end to end: the real rotad on the local CA with filesystem installs, driven by
//! the real rota CLI; outcomes are checked on disk with openssl and in the audit database.

use std::fs;
use std::time::Duration;

use rota_e2e::{
    Rotad, assert_chain_verifies, cert_pubkey, condition, key_pubkey, mode_of, sans_of, serial_of,
    wait_for,
};

const ISSUE_TIMEOUT: Duration = Duration::from_secs(20);

/// A config with one cert per id in `ids`; `{dir}` is the daemon's state directory.
fn config(ids: &[&str]) -> String {
    let mut yaml = String::from(
        "daemon:\n  database_path: {dir}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {dir}/rota.sock\n  check_interval_seconds: 3600\n\nlocal_ca:\n  directory: {dir}/ca\n  validity_days: 90\n\ncerts:\n",
    );
    for id in ids {
        yaml.push_str(&cert_block(id, &format!("{{dir}}/keys/{id}.key")));
    }
    yaml
}

fn cert_block(id: &str, key_path: &str) -> String {
    format!(
        "  - id: {id}\n    domains: [{id}.home.arpa, www.{id}.home.arpa]\n    key_path: {key_path}\n    ca: {{ kind: local }}\n    install:\n      kind: filesystem\n      directory: {{dir}}/installed/{id}\n"
    )
}

fn verify_chain(rotad: &Rotad, id: &str) {
    assert_chain_verifies(
        &rotad.path("ca/ca.pem"),
        &rotad.path(&format!("installed/{id}")),
    );
}

#[test]
fn quickstart_issues_installs_and_renews_with_the_same_key() {
    let rotad = Rotad::start(&config(&["web"]));
    rotad.wait_installed("web");
    verify_chain(&rotad, "web");

    let dir = rotad.path("installed/web");
    assert_eq!(mode_of(&dir.join("privkey.pem")), 0o600);
    for public in ["cert.pem", "chain.pem", "fullchain.pem"] {
        assert_eq!(mode_of(&dir.join(public)), 0o644, "{public}");
    }
    assert_eq!(mode_of(&rotad.path("keys/web.key")), 0o600);
    assert_eq!(mode_of(&rotad.path("rota.db")), 0o600);
    let sans = sans_of(&dir.join("cert.pem"));
    assert!(
        sans.contains("DNS:web.home.arpa") && sans.contains("DNS:www.web.home.arpa"),
        "{sans}"
    );
    assert_eq!(
        cert_pubkey(&dir.join("cert.pem")),
        key_pubkey(&rotad.path("keys/web.key"))
    );

    let first_serial = serial_of(&dir.join("cert.pem"));
    let renew = rotad.rota_ok(&["renew", "web"]);
    assert!(
        renew.contains("install"),
        "renew streams its steps: {renew}"
    );
    let second_serial = serial_of(&dir.join("cert.pem"));
    assert_ne!(first_serial, second_serial, "a renewal issues a new cert");
    assert_eq!(
        cert_pubkey(&dir.join("cert.pem")),
        key_pubkey(&rotad.path("keys/web.key")),
        "the renewed cert carries the same key"
    );
    verify_chain(&rotad, "web");

    let log = rotad.rota_ok(&["log", "web"]);
    for step in [
        "load_key",
        "generate_csr",
        "submit_order",
        "check_challenges",
        "await_issuance",
        "persist_cert",
        "install",
    ] {
        assert!(log.contains(step), "`rota log` lists {step}:\n{log}");
    }
    assert!(
        log.contains("Forced") || log.contains("forced"),
        "the trigger is shown:\n{log}"
    );

    let certs = rotad.certs_json();
    let web = &certs["items"][0];
    assert_eq!(web["metadata"]["name"], "web");
    assert_eq!(condition(web, "Ready")["status"], "True", "{certs}");
    assert_eq!(web["status"]["lastRenewal"]["status"], "succeeded");
}

#[test]
fn apply_issues_a_new_cert_at_once_and_a_bad_apply_changes_nothing() {
    let rotad = Rotad::start(&config(&["one"]));
    rotad.wait_installed("one");

    let next = rotad.path("next.yaml");
    let text = config(&["one", "two"]).replace("{dir}", &rotad.dir.path().display().to_string())
        + "# a comment that must survive\n";
    fs::write(&next, &text).unwrap();
    let dry = rotad.rota_ok(&["apply", "-f", &next.display().to_string(), "--dry-run"]);
    assert!(
        dry.contains("+  - id: two"),
        "dry run shows the diff: {dry}"
    );
    assert!(
        !rotad.path("installed/two").exists(),
        "a dry run issues nothing"
    );
    assert_ne!(
        fs::read_to_string(rotad.config_path()).unwrap(),
        text,
        "a dry run writes nothing"
    );

    let applied = rotad.rota_ok(&["apply", "-f", &next.display().to_string()]);
    assert!(
        applied.contains("two"),
        "apply names the added cert: {applied}"
    );
    assert_eq!(
        fs::read_to_string(rotad.config_path()).unwrap(),
        text,
        "written exactly as submitted"
    );
    rotad.wait_installed("two");
    verify_chain(&rotad, "two");

    let before = fs::read(rotad.config_path()).unwrap();
    let bad = rotad.path("bad.yaml");
    fs::write(&bad, text.replace("id: two", "id: one")).unwrap();
    let out = rotad.rota(&["apply", "-f", &bad.display().to_string()]);
    assert_eq!(out.status.code(), Some(3), "invalid config exit code");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let duplicate_line = fs::read_to_string(&bad)
        .unwrap()
        .lines()
        .position(|l| l.contains("id: one"))
        .map(|i| i + 1);
    let second = fs::read_to_string(&bad)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("id: one"))
        .nth(1)
        .map(|(i, _)| i + 1);
    assert!(duplicate_line < second, "the bad file has the id twice");
    let located = format!(":{}:9: certs[1].id", second.unwrap());
    assert!(
        stderr.contains(&located),
        "error located at {located}: {stderr}"
    );
    assert_eq!(
        fs::read(rotad.config_path()).unwrap(),
        before,
        "a bad apply changes nothing on disk"
    );

    let check = std::process::Command::new(rota_e2e::bin_dir().join("rota"))
        .args(["check", "-f", &bad.display().to_string()])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&check.stderr)
            .lines()
            .find(|l| l.contains("certs[1].id")),
        stderr.lines().find(|l| l.contains("certs[1].id")),
        "`rota check` reports the same error as rotad"
    );
}

#[test]
fn hand_edits_are_picked_up_and_invalid_ones_are_refused() {
    let rotad = Rotad::start(&config(&["alpha"]));
    rotad.wait_installed("alpha");

    // Editors save by writing a new file and renaming it over the old one.
    let tmp = rotad.path("rota.yaml.swp");
    fs::write(
        &tmp,
        config(&["alpha", "beta"]).replace("{dir}", &rotad.dir.path().display().to_string()),
    )
    .unwrap();
    fs::rename(&tmp, rotad.config_path()).unwrap();
    rotad.wait_installed("beta");

    fs::write(rotad.config_path(), "certs: [\n").unwrap();
    let (stdout, stderr) = wait_for("the refused edit to show in status", ISSUE_TIMEOUT, || {
        let out = rotad.rota(&["status"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        stderr
            .contains("rota.yaml:")
            .then(|| (String::from_utf8_lossy(&out.stdout).into_owned(), stderr))
    });
    assert!(
        stderr.contains("refused"),
        "status says the edit was refused: {stderr}"
    );
    assert!(
        stdout.contains("alpha") && stdout.contains("beta"),
        "the running config is kept: {stdout}"
    );
}

#[test]
fn kill_during_a_renewal_leaves_an_interrupted_row_and_no_open_one() {
    let template = config(&["steady"]);
    let mut rotad = Rotad::start(&template);
    rotad.wait_installed("steady");

    // A FIFO as key_path blocks the renewal inside its first step, so it can be killed there.
    let fifo = rotad.path("keys/stuck.key");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let with_stuck = template.clone() + &cert_block("stuck", &fifo.display().to_string());
    fs::write(
        rotad.config_path(),
        with_stuck.replace("{dir}", &rotad.dir.path().display().to_string()),
    )
    .unwrap();
    let first = wait_for("the stuck renewal to start", ISSUE_TIMEOUT, || {
        let db = rusqlite::Connection::open(rotad.path("rota.db")).ok()?;
        db.query_row(
            "SELECT id FROM renewals WHERE cert_id = 'stuck' AND status = 'running'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .ok()
    });
    rotad.kill9();
    rotad.restart();

    let log = rotad.rota_ok(&["log", "stuck", "--renewal", &first.to_string()]);
    assert!(
        log.contains("interrupted"),
        "the renewal row is closed as interrupted:\n{log}"
    );
    // The cert never got one, so its issuance is resumed at once (and blocks on the FIFO
    // again): one open row, the new one, and none left over from before the kill.
    let running = wait_for("the issuance to resume", ISSUE_TIMEOUT, || {
        let db = rusqlite::Connection::open(rotad.path("rota.db")).ok()?;
        let ids: Vec<i64> = db
            .prepare("SELECT id FROM renewals WHERE status = 'running'")
            .ok()?
            .query_map([], |r| r.get(0))
            .ok()?
            .collect::<Result<_, _>>()
            .ok()?;
        (!ids.is_empty()).then_some(ids)
    });
    // The local CA asks for no DCV, so the journal replay after a kill is asserted where a
    // solver publishes: reconciler/tests/reconcile/crash_recovery.rs.
    assert_eq!(
        running.len(),
        1,
        "only the resumed renewal is open: {running:?}"
    );
    assert!(running[0] > first, "{running:?} vs {first}");
    assert_eq!(
        rotad.certs_json()["items"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn after_a_restart_the_first_answer_already_shows_every_installed_cert() {
    let ids: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut rotad = Rotad::start(&config(&ids));
    for id in &ids {
        rotad.wait_installed(id);
    }
    assert!(rotad.stop().success());
    rotad.restart();

    // `restart` returns as soon as the socket answers: these are the first answers.
    let table = rotad.rota_ok(&["get", "certs"]);
    for id in &ids {
        let row = table
            .lines()
            .find(|line| line.split_whitespace().next() == Some(*id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{table}"));
        let columns: Vec<&str> = row.split_whitespace().collect();
        assert!(
            columns[4].ends_with('d') && columns[3] == "UpToDate",
            "{id} shows its expiry and is Ready: {row}"
        );
    }
    let describe = rotad.rota_ok(&["describe", "cert", "c7"]);
    let serial = rota_e2e::serial_hex(&rotad.path("installed/c7/cert.pem"));
    assert!(
        !describe.contains("Installed certificate:  <none>") && describe.contains(&serial),
        "describe shows the installed cert (serial {serial}):\n{describe}"
    );
    let status = rotad.rota_ok(&["status"]);
    assert!(status.contains("all observed in"), "{status}");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut rotad = Rotad::start(&config(&["calm"]));
    rotad.wait_installed("calm");
    let status = rotad.stop();
    assert!(
        status.success(),
        "rotad exits 0 on SIGTERM: {status}\n{}",
        rotad.log()
    );
    assert!(!rotad.socket().exists(), "the socket is removed");
    let out = rotad.rota(&["status"]);
    assert_eq!(out.status.code(), Some(69), "unreachable daemon exit code");
}

#[test]
fn revoking_on_a_ca_without_revocation_is_refused_and_audited() {
    let rotad = Rotad::start(&config(&["lan"]));
    rotad.wait_installed("lan");
    let serial = serial_of(&rotad.path("installed/lan/cert.pem"));
    let out = rotad.rota(&["revoke", "lan", "--reason", "keyCompromise"]);
    assert_eq!(out.status.code(), Some(1), "a failed revocation exits 1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("does not support revocation"), "{stderr}");
    let log = rotad.rota_ok(&["log", "lan"]);
    assert!(
        log.contains("Revoked") && log.contains("revoke") && log.contains("failed"),
        "the attempt is audited:\n{log}"
    );
    assert!(
        rotad.path("keys/lan.key").exists(),
        "a refused revocation leaves the key in place"
    );
    assert_eq!(
        serial_of(&rotad.path("installed/lan/cert.pem")),
        serial,
        "and the cert"
    );
}
