//! `rota renew ID --dry-run` end to end, with the real rotad and rota CLI: against the local
//! CA, and against pebble with a second pebble as the staging directory. Every test compares
//! what is live — the installed files' bytes, the key file, the cert's last live renewal, its
//! `Failing` condition and backoff — before and after the dry run, and reads the dry run's
//! own row back through `rota log`.

use std::fs;
use std::path::Path;
use std::time::Duration;

use rota_e2e::acme_peers::AcmePeers;
use rota_e2e::pebble::{Pebble, PebbleOptions};
use rota_e2e::{Rotad, condition, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Everything a dry run must leave exactly as it was.
#[derive(Debug, PartialEq)]
struct Live {
    installed: Vec<(String, Vec<u8>)>,
    key: Option<Vec<u8>>,
    last_renewal: Value,
    failing: Value,
    ready: Value,
    backoff: Value,
}

fn live(rotad: &Rotad) -> Live {
    let dir = rotad.path("installed/web");
    let mut installed: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .map(|e| {
                    let e = e.expect("dir entry");
                    let bytes = fs::read(e.path()).expect("read an installed file");
                    (e.file_name().to_string_lossy().into_owned(), bytes)
                })
                .collect()
        })
        .unwrap_or_default();
    installed.sort();
    let certs = rotad.certs_json();
    let web = &certs["items"][0];
    let detail: Value =
        serde_json::from_str(&rotad.rota_ok(&["describe", "cert", "web", "-o", "json"]))
            .expect("describe json");
    Live {
        installed,
        key: fs::read(rotad.path("keys/web.key")).ok(),
        last_renewal: web["status"]["lastRenewal"].clone(),
        failing: condition(web, "Failing").clone(),
        ready: condition(web, "Ready").clone(),
        backoff: detail["backoff"].clone(),
    }
}

/// `rota log web -o json` (the newest row, or renewal `n`).
fn log_json(rotad: &Rotad, renewal: Option<i64>) -> Value {
    let n = renewal.map(|n| n.to_string());
    let mut args = vec!["log", "web", "-o", "json"];
    if let Some(n) = &n {
        args.extend(["--renewal", n]);
    }
    serde_json::from_str(&rotad.rota_ok(&args)).expect("log json")
}

/// Checks the newest audit row is a finished dry run with `status`, and that the last live
/// renewal `before` is still what it was.
fn assert_dry_run_audited(rotad: &Rotad, status: &str, before: &Live) {
    let dry = log_json(rotad, None);
    assert_eq!(dry["renewal"]["dry_run"], true, "{dry}");
    assert_eq!(dry["renewal"]["status"], status, "{dry}");
    assert_ne!(dry["renewal"]["id"], before.last_renewal["id"]);
    let text = rotad.rota_ok(&["log", "web"]);
    assert!(
        text.contains("Dry run:  yes"),
        "`rota log` says so:\n{text}"
    );
    let id = before.last_renewal["id"].as_i64().expect("a live renewal");
    let live_row = log_json(rotad, Some(id));
    assert_eq!(live_row["renewal"]["dry_run"], false, "{live_row}");
    assert_eq!(live_row["renewal"]["status"], before.last_renewal["status"]);
    let described = rotad.rota_ok(&["describe", "cert", "web"]);
    assert!(
        described.contains("Forced (dry run)"),
        "`rota describe` marks it:\n{described}"
    );
}

fn local_config(install_dir: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  \
         socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n\
         local_ca:\n  directory: {{dir}}/ca\n  validity_days: 90\n\
         certs:\n  - id: web\n    domains: [web.home.arpa]\n    key_path: {{dir}}/keys/web.key\n    \
         ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {install_dir} }}\n"
    )
}

/// What is left under `.well-known/acme-challenge/` in `webroot`.
fn challenge_files(webroot: &Path) -> usize {
    fs::read_dir(webroot.join(".well-known/acme-challenge")).map_or(0, Iterator::count)
}

#[test]
fn a_local_ca_dry_run_signs_a_throwaway_cert_and_changes_nothing_live() {
    let rotad = Rotad::start(&local_config("{dir}/installed/web"));
    rotad.wait_installed("web");
    let before = live(&rotad);
    assert_eq!(before.last_renewal["status"], "succeeded", "{before:?}");

    let out = rotad.rota_ok(&["renew", "web", "--dry-run"]);
    for streamed in [
        "load_key",
        "loaded the existing",
        "submit_order",
        "await_issuance",
        "dry run: the CA signed serial",
        "nothing was installed",
    ] {
        assert!(
            out.contains(streamed),
            "the dry run streams {streamed}:\n{out}"
        );
    }
    assert!(!out.contains("✓ install"), "{out}");
    assert_eq!(live(&rotad), before, "nothing live changed");
    assert_dry_run_audited(&rotad, "succeeded", &before);

    // With no key yet, the dry run makes a throwaway one in memory and writes none.
    fs::remove_file(rotad.path("keys/web.key")).expect("move the key away");
    let out = rotad.rota_ok(&["renew", "web", "--dry-run"]);
    assert!(out.contains("throwaway"), "{out}");
    assert!(
        !rotad.path("keys/web.key").exists(),
        "a dry run never writes the key file"
    );
    assert_eq!(
        rotad
            .path("installed/web")
            .read_dir()
            .map(Iterator::count)
            .ok(),
        Some(before.installed.len())
    );
    for (name, bytes) in &before.installed {
        assert_eq!(
            &fs::read(rotad.path(&format!("installed/web/{name}"))).expect("installed"),
            bytes,
            "{name} untouched"
        );
    }
}

#[test]
fn a_dry_run_of_a_cert_in_backoff_leaves_its_backoff_and_failing_condition() {
    // The install target sits under a regular file: every live install fails.
    let blocker = tempfile::NamedTempFile::new().expect("blocker file");
    let install_dir = blocker.path().join("out").display().to_string();
    let rotad = Rotad::start(&local_config(&install_dir));
    wait_for("web to be failing with a backoff", WAIT, || {
        let now = live(&rotad);
        (now.failing["status"] == "True" && now.backoff.is_object()).then_some(())
    });
    let before = live(&rotad);
    assert_eq!(before.failing["reason"], "InstallFailed", "{before:?}");

    // The dry run installs nothing, so it succeeds: a live success would clear the backoff.
    let out = rotad.rota_ok(&["renew", "web", "--dry-run"]);
    assert!(out.contains("dry run of web succeeded"), "{out}");
    assert_eq!(
        live(&rotad),
        before,
        "backoff, next attempt and Failing kept"
    );
    assert_dry_run_audited(&rotad, "succeeded", &before);
}

#[test]
fn a_pebble_dry_run_orders_from_the_staging_directory_with_an_account_of_its_own() {
    let peers = AcmePeers::start(PebbleOptions::default());
    // The "staging" CA: a second pebble that validates nothing, trusted beside the first.
    let staging = Pebble::start(&PebbleOptions::default().always_valid());
    let roots = tempfile::tempdir().expect("bundle dir");
    let bundle = roots.path().join("bundle.pem");
    let mut both = fs::read(peers.pebble.ca_bundle_path()).expect("pebble's TLS root");
    both.extend(fs::read(staging.ca_bundle_path()).expect("staging's TLS root"));
    fs::write(&bundle, both).expect("write the bundle");
    let config = peers
        .config(
            peers.served.path(),
            &format!("  staging_directory_url: {}\n", staging.directory_url()),
        )
        .replace(
            &peers.pebble.ca_bundle_path().display().to_string(),
            &bundle.display().to_string(),
        );
    let rotad = Rotad::start(&config);
    rotad.wait_installed("web");
    let before = live(&rotad);
    let live_accounts = peers.pebble.accounts_created();

    let out = rotad.rota_ok(&["renew", "web", "--dry-run"]);
    for streamed in [
        "publish_dcv",
        "await_issuance",
        "remove_dcv",
        "dry run: the CA signed serial",
    ] {
        assert!(
            out.contains(streamed),
            "the dry run streams {streamed}:\n{out}"
        );
    }
    assert_eq!(
        live(&rotad),
        before,
        "cert.pem, the key and the last renewal kept"
    );
    assert_dry_run_audited(&rotad, "succeeded", &before);
    assert_eq!(challenge_files(peers.served.path()), 0, "no token left");
    assert_eq!(staging.accounts_created(), 1, "staging got its own account");
    assert_eq!(
        peers.pebble.accounts_created(),
        live_accounts,
        "the live CA saw no new account"
    );
    assert!(
        rotad.path("acme/account.json.staging").exists(),
        "the staging account is kept beside the live one"
    );
}

#[test]
fn a_failing_dry_run_sets_no_failing_condition_and_no_backoff() {
    let peers = AcmePeers::start(PebbleOptions::default());
    // Nothing listens on port 1: the staging directory is unreachable.
    let config = peers.config(
        peers.served.path(),
        "  staging_directory_url: https://127.0.0.1:1/dir\n",
    );
    let rotad = Rotad::start(&config);
    rotad.wait_installed("web");
    let before = live(&rotad);
    assert_eq!(before.failing["status"], "False", "{before:?}");

    let out = rotad.rota(&["renew", "web", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dry run") && stderr.contains("failed"),
        "{stderr}"
    );
    assert_eq!(
        live(&rotad),
        before,
        "no Failing, no backoff, same last renewal"
    );
    assert_dry_run_audited(&rotad, "failed", &before);
}
