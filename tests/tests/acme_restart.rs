//! Crashes and impatient operators against real peers (pebble, its DNS, nginx): rotad killed
//! with SIGKILL again and again while ACME renewals run comes back to every cert Ready with
//! nothing left behind, and `rota renew` during a first issuance follows that issuance
//! instead of refusing or ordering twice.

use std::collections::HashMap;
use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rota_e2e::acme_peers::AcmePeers;
use rota_e2e::pebble::PebbleOptions;
use rota_e2e::{Rotad, bin_dir, cert_pubkey, key_pubkey, wait_for};

const CERTS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];
/// How long after each restart rotad is killed again: fixed, so a failure replays the same way.
const KILL_AFTER_MS: [u64; 10] = [300, 1700, 900, 2200, 500, 1100, 200, 1900, 700, 1400];
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Rows of the audit database with this status.
fn renewals_with_status(rotad: &Rotad, status: &str) -> i64 {
    let db = rusqlite::Connection::open(rotad.path("rota.db")).expect("audit db");
    db.query_row(
        "SELECT count(*) FROM renewals WHERE status = ?1",
        [status],
        |r| r.get(0),
    )
    .expect("count")
}

/// Starts `rota renew ID` for every cert without waiting for them: they die with rotad.
fn force_renewals(rotad: &Rotad) {
    for id in CERTS {
        let _ = Command::new(bin_dir().join("rota"))
            .arg("--socket")
            .arg(rotad.socket())
            .args(["renew", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

/// The public key of every key file that exists by now.
fn record_keys(rotad: &Rotad, keys: &mut HashMap<&'static str, String>) {
    for id in CERTS {
        let path = rotad.path(&format!("keys/{id}.key"));
        if path.exists() {
            let key = key_pubkey(&path);
            let first = keys.entry(id).or_insert_with(|| key.clone());
            assert_eq!(*first, key, "the key of {id} changed");
        }
    }
}

#[test]
fn ten_sigkills_during_acme_renewals_end_with_every_cert_ready_and_nothing_left() {
    let peers = AcmePeers::start(PebbleOptions::default().validation_sleep(2));
    let config = peers.config_for(&CERTS, peers.served.path(), "");
    let mut rotad = Rotad::start(&config);
    let mut keys = HashMap::new();
    for (round, wait) in KILL_AFTER_MS.into_iter().enumerate() {
        if round > 0 {
            rotad.restart();
            force_renewals(&rotad);
        }
        std::thread::sleep(Duration::from_millis(wait));
        record_keys(&rotad, &mut keys);
        rotad.kill9();
    }

    // Ready, and every renewal the kills interrupted resumed and finished.
    let restarted = Instant::now();
    rotad.restart();
    wait_for(
        "every cert Ready and no renewal in flight",
        READY_WITHIN,
        || {
            let table = rotad.rota_ok(&["get", "certs"]);
            let ready = table.lines().filter(|l| l.contains("UpToDate")).count();
            let settled = ready == CERTS.len() && renewals_with_status(&rotad, "running") == 0;
            settled.then_some(())
        },
    );
    println!(
        "after 10 SIGKILLs, {} certs Ready with nothing in flight {:.1?} after the last restart",
        CERTS.len(),
        restarted.elapsed()
    );

    record_keys(&rotad, &mut keys);
    for id in CERTS {
        let dir = rotad.path(&format!("installed/{id}"));
        assert_eq!(
            cert_pubkey(&dir.join("cert.pem")),
            key_pubkey(&dir.join("privkey.pem")),
            "{id}: the installed cert and key belong together (no torn write)"
        );
        assert_eq!(
            key_pubkey(&dir.join("privkey.pem")),
            keys[id],
            "{id}: the installed key is the one rota generated first"
        );
    }
    let challenges = peers.served.path().join(".well-known/acme-challenge");
    let left: Vec<_> = fs::read_dir(&challenges)
        .map(|dir| dir.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "challenge answers left in the webroot: {left:?}"
    );
    assert!(
        renewals_with_status(&rotad, "interrupted") > 0,
        "the kills hit renewals in flight"
    );
}

#[test]
fn rota_renew_during_the_first_issuance_follows_it() {
    let peers = AcmePeers::start(PebbleOptions::default());
    // pebble's validation request waits on a stopped nginx, so the first issuance waits too.
    peers.nginx.freeze(true);
    let rotad = peers.rotad();
    wait_for("the first issuance to wait on the CA", READY_WITHIN, || {
        let log = rotad.rota_ok(&["log", "web"]);
        log.contains("await_issuance").then_some(())
    });

    let (mut follower, lines) = rotad.spawn_rota(&["renew", "web"]);
    let mut seen = Vec::new();
    // Released only once the follower says it joined, so it cannot start a renewal of its own.
    while !seen.iter().any(|l: &String| l.contains("following it")) {
        let line = lines
            .recv_timeout(READY_WITHIN)
            .unwrap_or_else(|e| panic!("rota renew said {seen:?}, then {e}"));
        seen.push(line);
    }
    peers.nginx.freeze(false);
    let status = follower.wait().expect("rota renew ends");
    seen.extend(lines.iter());
    let stdout = seen.join("\n");
    assert!(status.success(), "{status}\n{stdout}");
    assert!(
        stdout.contains("load_key"),
        "replayed from the first step: {stdout}"
    );
    assert_eq!(
        renewals_with_status(&rotad, "succeeded"),
        1,
        "one renewal, not a second order"
    );
    assert!(rotad.path("installed/web/cert.pem").exists());
}
