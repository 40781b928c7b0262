//! `rota import certbot` on lineages made by the real certbot (from PyPI, in a venv cached in
//! the target directory) against pebble: rota renews the imported lineage through the real
//! rotad with certbot's own key, keeps certbot's archive layout, and `certbot certificates`
//! still reads the lineage and shows the cert rota issued.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use rota_e2e::acme_peers::AcmePeers;
use rota_e2e::pebble::PebbleOptions;
use rota_e2e::{Rotad, bin_dir, cert_pubkey, key_pubkey, serial_hex, wait_for};

const NAME: &str = "web.rota.test";

/// The Python of a venv holding certbot from PyPI, next to the binaries, made once (built
/// under a temporary name and renamed into place, so a half-made venv is never used; certbot
/// is run through its entry point, `certbot.main:main`, because the rename breaks the shebangs
/// of the venv's scripts).
fn certbot_python() -> PathBuf {
    let venv = bin_dir().join("certbot-venv");
    let python = venv.join("bin/python3");
    if python.exists() {
        return python;
    }
    let building = bin_dir().join(format!("certbot-venv.{}", std::process::id()));
    let run = |program: &Path, args: &[&str]| {
        let out = Command::new(program).args(args).output().expect("run");
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(
        Path::new("python3"),
        &["-m", "venv", &building.display().to_string()],
    );
    run(
        &building.join("bin/pip"),
        &["install", "--quiet", "certbot>=2"],
    );
    if std::fs::rename(&building, &venv).is_err() {
        // Another run finished first; theirs is as good.
        let _ = std::fs::remove_dir_all(&building);
    }
    python
}

/// certbot with its three directories under `root` and pebble's TLS root trusted.
fn run_certbot(peers: &AcmePeers, root: &Path, args: &[&str]) -> Output {
    let dir = |name: &str| root.join(name).display().to_string();
    Command::new(certbot_python())
        .args([
            "-c",
            "import sys; from certbot.main import main; sys.exit(main(sys.argv[1:]))",
        ])
        .args(args)
        .args([
            "--config-dir",
            &dir("etc"),
            "--work-dir",
            &dir("work"),
            "--logs-dir",
            &dir("logs"),
        ])
        .env("REQUESTS_CA_BUNDLE", peers.pebble.ca_bundle_path())
        .output()
        .expect("run certbot")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_imported_certbot_lineage_is_renewed_with_its_key_and_certbot_still_reads_it() {
    // certbot retries a `badNonce` only once, so pebble's default of rejecting 5% of nonces
    // fails about one certbot run in thirty; rota's own nonce retries are tested elsewhere.
    let peers = AcmePeers::start(PebbleOptions::default().nonce_reject_percent(0));
    let root = tempfile::tempdir().expect("certbot dir");
    let webroot = peers.served.path().display().to_string();
    let server = peers.pebble.directory_url();
    ok(
        &run_certbot(
            &peers,
            root.path(),
            &[
                "certonly",
                "--non-interactive",
                "--agree-tos",
                "-m",
                "ops@rota.test",
                "--server",
                &server,
                "--webroot",
                "-w",
                &webroot,
                "-d",
                NAME,
                "-d",
                &format!("www.{NAME}"),
                "--key-type",
                "ecdsa",
            ],
        ),
        "certbot certonly",
    );
    let etc = root.path().join("etc");
    let live = etc.join("live").join(NAME);
    let archive = etc.join("archive").join(NAME);
    let first_serial = serial_hex(&live.join("cert.pem"));
    let certbot_key = key_pubkey(&archive.join("privkey1.pem"));

    let imported = Command::new(bin_dir().join("rota"))
        .args(["import", "certbot", "--dir", &etc.display().to_string()])
        .output()
        .expect("rota import");
    let block = ok(&imported, "rota import certbot");
    assert!(block.contains("set `acme.directory_url` to it"), "{block}");
    assert!(
        block.contains(&format!("domains: [{NAME}, www.{NAME}]")),
        "{block}"
    );
    let config = format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n\
         acme:\n  directory_url: {server}\n  account_credentials_file: {{dir}}/acme.json\n  ca_bundle_file: {}\n{block}",
        peers.pebble.ca_bundle_path().display()
    );
    let rotad = Rotad::start(&config);
    // What certbot issued is valid for the spec: rotad sees it Ready and leaves it alone.
    wait_for(
        "the imported cert to be Ready",
        Duration::from_secs(20),
        || {
            let certs = rotad.certs_json();
            let ready = rota_e2e::condition(&certs["items"][0], "Ready")["status"] == "True";
            ready.then_some(())
        },
    );
    assert_eq!(serial_hex(&live.join("cert.pem")), first_serial);

    let renewal = rotad.rota_ok(&["renew", NAME]);
    assert!(renewal.contains("install"), "{renewal}");
    let renewed_serial = serial_hex(&live.join("cert.pem"));
    assert_ne!(renewed_serial, first_serial, "rota issued a new cert");
    assert_eq!(
        cert_pubkey(&live.join("cert.pem")),
        certbot_key,
        "for certbot's key"
    );
    for kind in ["cert", "chain", "fullchain", "privkey"] {
        let link = live.join(format!("{kind}.pem"));
        assert_eq!(
            std::fs::read_link(&link).expect("still a symlink"),
            Path::new(&format!("../../archive/{NAME}/{kind}2.pem")),
            "{kind}"
        );
    }

    let listing = ok(
        &run_certbot(&peers, root.path(), &["certificates"]),
        "certbot certificates",
    );
    assert!(
        listing.contains(&format!("Certificate Name: {NAME}")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!(
            "Serial Number: {}",
            renewed_serial.trim_start_matches('0')
        )),
        "certbot reads the cert rota issued:\n{listing}"
    );
    assert!(!listing.to_lowercase().contains("invalid"), "{listing}");
}
