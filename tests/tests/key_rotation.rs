//! Key rollover (`key.rotation`) end to end against the real rotad, rota and the local CA:
//! the pin `rota describe` and `rota get certs -o json` announce as the next key is the public
//! key of the cert a later renewal installs, computed independently by openssl from the
//! installed `cert.pem`; old keys stay on disk, 0600.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use rota_e2e::{Rotad, condition, mode_of, wait_for};

const ISSUE_TIMEOUT: Duration = Duration::from_secs(30);

/// A local-CA config with one cert `web` whose `key:` block is `key`.
fn config(key: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n  check_interval_seconds: 3600\n\nlocal_ca:\n  directory: {{dir}}/ca\n  validity_days: 90\n\ncerts:\n  - id: web\n    domains: [web.home.arpa]\n    key_path: '{{dir}}/keys/web.key'\n    key: {key}\n    ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: '{{dir}}/installed/web' }}\n"
    )
}

/// The base64 SHA-256 of the DER public key the shell pipeline `to_der` prints for the file
/// `$1`, by openssl alone.
fn openssl_pin(to_der: &str, file: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{to_der} | openssl dgst -sha256 -binary | openssl base64 -A"
        ))
        .arg("sh")
        .arg(file)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("base64")
        .trim()
        .to_owned()
}

/// The pin of the `SubjectPublicKeyInfo` of the cert at `cert`.
fn cert_pin(cert: &Path) -> String {
    openssl_pin(
        "openssl x509 -in \"$1\" -noout -pubkey | openssl pkey -pubin -outform DER",
        cert,
    )
}

/// The same pin of the private key file at `key`.
fn key_pin(key: &Path) -> String {
    openssl_pin("openssl pkey -in \"$1\" -pubout -outform DER", key)
}

/// What rota shows of the current and the next key: (`describe` pin, `-o json` pin) each.
struct Shown {
    current: String,
    next: Option<String>,
}

fn shown(rotad: &Rotad) -> Shown {
    let pin = |v: &serde_json::Value| v["pinSha256"].as_str().map(str::to_owned);
    // The three views are read one after the other, and the next key is prepared in the
    // background after a renewal: wait until all of them show the same keys.
    wait_for(
        "describe, its text and -o json to agree",
        Duration::from_secs(10),
        || {
            let detail: serde_json::Value =
                serde_json::from_str(&rotad.rota_ok(&["describe", "cert", "web", "-o", "json"]))
                    .expect("json");
            let object = &rotad.certs_json()["items"][0]["status"];
            let text = rotad.rota_ok(&["describe", "cert", "web"]);
            let current = pin(&detail["key"]).expect("describe shows the key");
            let next = pin(&detail["next_key"]);
            let text_next = text
                .lines()
                .find(|l| l.starts_with("Next key:"))
                .map(str::to_owned);
            let text_agrees = text.contains(&current)
                && match (&next, &text_next) {
                    (Some(next), Some(line)) => line.contains(next.as_str()),
                    (None, None) => true,
                    _ => false,
                };
            (pin(&object["privateKey"]).as_ref() == Some(&current)
                && pin(&object["nextPrivateKey"]) == next
                && text_agrees)
                .then_some(Shown { current, next })
        },
    )
}

/// The archived keys next to `key_path`, oldest first.
fn archives(key_path: &Path) -> Vec<PathBuf> {
    let dir = key_path.parent().expect("a directory");
    let prefix = format!("{}.", key_path.file_name().unwrap().to_string_lossy());
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&prefix) && p.extension().is_none_or(|e| e != "next")
        })
        .collect();
    found.sort();
    found
}

fn start(key: &str) -> (Rotad, PathBuf, PathBuf) {
    let rotad = Rotad::start(&config(key));
    let cert = rotad.wait_installed("web");
    let key_path = rotad.path("keys/web.key");
    (rotad, cert, key_path)
}

fn renew(rotad: &Rotad) {
    let said = rotad.rota_ok(&["renew", "web"]);
    assert!(said.contains("installed serial"), "{said}");
}

#[test]
fn every_renewal_installs_the_key_announced_the_renewal_before() {
    let (rotad, cert, key_path) = start("{ rotation: every_renewal }");
    let next_path = rotad.path("keys/web.key.next");
    // The first issue had no announced key: it used key_path, and announced the next one.
    let mut before = wait_for("the next key to be announced", ISSUE_TIMEOUT, || {
        let s = shown(&rotad);
        s.next.is_some().then_some(s)
    });
    assert_eq!(cert_pin(&cert), before.current);
    assert_eq!(mode_of(&next_path), 0o600);
    let mut retired = vec![before.current.clone()];
    for round in 1..=3 {
        let announced = before.next.clone().expect("a next key");
        assert_ne!(announced, before.current);
        renew(&rotad);
        assert_eq!(
            cert_pin(&cert),
            announced,
            "renewal {round} installs the cert of the key announced before it"
        );
        assert_eq!(key_pin(&rotad.path("installed/web/privkey.pem")), announced);
        assert_eq!(key_pin(&key_path), announced, "key_path is the live key");
        let after = shown(&rotad);
        assert_eq!(after.current, announced);
        let next = after.next.clone().expect("a new next key is announced");
        assert!(!retired.contains(&next) && next != announced, "a fresh key");
        assert_eq!(key_pin(&next_path), next);
        let kept = archives(&key_path);
        assert_eq!(kept.len(), round, "{kept:?}");
        let pins: Vec<String> = kept.iter().map(|p| key_pin(p)).collect();
        assert_eq!(pins, retired, "every replaced key is kept, in order");
        for path in &kept {
            assert_eq!(mode_of(path), 0o600, "{}", path.display());
        }
        // rotad sees the installed cert match key_path: no renewal for a key mismatch follows.
        wait_for("web to be Ready and up to date", ISSUE_TIMEOUT, || {
            let object = rotad.certs_json()["items"][0].clone();
            let ready = condition(&object, "Ready");
            (ready["status"] == "True" && ready["reason"] == "UpToDate").then_some(())
        });
        retired.push(announced);
        before = after;
    }
    let log = rotad.rota_ok(&["log", "web"]);
    assert!(log.contains("prepared next key"), "{log}");
}

#[test]
fn never_keeps_one_key_through_twenty_renewals() {
    let (rotad, cert, key_path) = start("{ rotation: never }");
    let first = shown(&rotad);
    assert_eq!(cert_pin(&cert), first.current);
    let serial = fs::read(&cert).unwrap();
    for _ in 0..20 {
        renew(&rotad);
        assert_eq!(cert_pin(&cert), first.current);
    }
    assert_ne!(
        fs::read(&cert).unwrap(),
        serial,
        "renewals installed new certs"
    );
    assert_eq!(key_pin(&key_path), first.current);
    assert!(shown(&rotad).next.is_none());
    let names: Vec<String> = fs::read_dir(rotad.path("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["web.key"], "no next key, no archive");
}

#[test]
fn after_days_switches_only_once_the_key_is_old_enough() {
    let (rotad, cert, key_path) = start("{ rotation: { after_days: 30 } }");
    let first = wait_for("the next key to be announced", ISSUE_TIMEOUT, || {
        let s = shown(&rotad);
        s.next.is_some().then_some(s)
    });
    let announced = first.next.clone().unwrap();
    renew(&rotad);
    assert_eq!(cert_pin(&cert), first.current, "a fresh key is kept");
    assert_eq!(shown(&rotad).next.as_ref(), Some(&announced));
    assert!(archives(&key_path).is_empty());
    // The key went live 31 days ago, as its file's modification time records.
    let month_ago = SystemTime::now() - Duration::from_secs(31 * 24 * 60 * 60);
    fs::File::options()
        .write(true)
        .open(&key_path)
        .unwrap()
        .set_modified(month_ago)
        .unwrap();
    renew(&rotad);
    assert_eq!(cert_pin(&cert), announced, "the old key is rotated out");
    let after = shown(&rotad);
    assert_eq!(after.current, announced);
    assert!(after.next.is_some_and(|n| n != announced));
    let kept = archives(&key_path);
    assert_eq!(kept.len(), 1);
    assert_eq!(key_pin(&kept[0]), first.current);
    // The switch stamped the new key as live now: the next renewal keeps it.
    renew(&rotad);
    assert_eq!(cert_pin(&cert), announced);
    assert_eq!(archives(&key_path).len(), 1);
}

#[test]
fn a_switch_cut_off_after_the_install_is_finished_by_the_next_renewal() {
    let (rotad, cert, key_path) = start("{ rotation: every_renewal }");
    let first = wait_for("the next key to be announced", ISSUE_TIMEOUT, || {
        let s = shown(&rotad);
        s.next.is_some().then_some(s)
    });
    renew(&rotad);
    let live = first.next.unwrap();
    assert_eq!(cert_pin(&cert), live);
    // Put the disk back as a crash between the install and the switch leaves it: the cert of
    // the next key installed, the old key still at key_path, no fresh next key yet.
    let next_path = rotad.path("keys/web.key.next");
    fs::remove_file(&next_path).unwrap();
    fs::rename(&key_path, &next_path).unwrap();
    fs::copy(&archives(&key_path)[0], &key_path).unwrap();
    assert_eq!(key_pin(&key_path), first.current);
    renew(&rotad);
    // The installed cert told which key was live: that one is key_path now, and this renewal
    // (which had no announced key to move to) kept it.
    assert_eq!(key_pin(&key_path), live);
    assert_eq!(cert_pin(&cert), live);
    let after = shown(&rotad);
    assert_eq!(after.current, live);
    assert!(after.next.is_some_and(|n| n != live && n != first.current));
    let log = rotad.rota_ok(&["log", "web"]);
    assert!(log.contains("is now the key"), "{log}");
}

#[test]
fn a_dry_run_signs_with_the_key_due_next_but_switches_nothing() {
    let (rotad, cert, key_path) = start("{ rotation: every_renewal }");
    let next_path = rotad.path("keys/web.key.next");
    let before = wait_for("the next key to be announced", ISSUE_TIMEOUT, || {
        let s = shown(&rotad);
        s.next.is_some().then_some(s)
    });
    let files = |p: &Path| fs::read(p).unwrap();
    let (cert_bytes, key_bytes, next_bytes) = (files(&cert), files(&key_path), files(&next_path));

    let said = rotad.rota_ok(&["renew", "web", "--dry-run"]);
    assert!(said.contains("prepared next key"), "{said}");

    assert_eq!(files(&cert), cert_bytes, "nothing installed");
    assert_eq!(files(&key_path), key_bytes, "key_path untouched");
    assert_eq!(
        files(&next_path),
        next_bytes,
        "the next key stays the next key"
    );
    assert!(archives(&key_path).is_empty(), "no key archived");
    let after = shown(&rotad);
    assert_eq!((after.current, after.next), (before.current, before.next));
}
