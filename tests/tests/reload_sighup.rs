//! SIGHUP makes the real rotad read its config again. The config here is a symlink to a file
//! in another directory, as a deployment tool might leave it: editing that file in place is
//! invisible to rotad's directory watch, so only the signal can bring the new cert in. (A
//! rotad without a SIGHUP handler dies of the signal, which fails the test too.)

use std::fmt::Write as _;
use std::fs;
use std::process::Command;
use std::time::Duration;

use rota_e2e::{Rotad, wait_for};

const TIMEOUT: Duration = Duration::from_secs(20);

fn config(ids: &[&str]) -> String {
    let mut yaml = String::from(
        "daemon:\n  database_path: {dir}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {dir}/rota.sock\n\nlocal_ca:\n  directory: {dir}/ca\n\ncerts:\n",
    );
    for id in ids {
        let _ = write!(
            yaml,
            "  - id: {id}\n    domains: [{id}.home.arpa]\n    key_path: {{dir}}/keys/{id}.key\n    ca: {{ kind: local }}\n    install: {{ kind: filesystem, directory: {{dir}}/installed/{id} }}\n"
        );
    }
    yaml
}

#[test]
fn sighup_reloads_a_config_the_watcher_cannot_see_change() {
    let rotad = Rotad::start(&config(&["web"]));
    let dir = rotad.dir.path().display().to_string();
    let installed = |id: &str| rotad.path(&format!("installed/{id}/cert.pem"));
    wait_for("web to be installed", TIMEOUT, || {
        installed("web").exists().then_some(())
    });

    // Swap the config for a symlink into another directory (same text, so the reload this
    // rename triggers changes nothing).
    let real_dir = rotad.path("elsewhere");
    fs::create_dir(&real_dir).expect("mkdir");
    let real = real_dir.join("rota.yaml");
    fs::copy(rotad.config_path(), &real).expect("copy config");
    let link = rotad.path("rota.yaml.link");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");
    fs::rename(&link, rotad.config_path()).expect("replace config by the symlink");

    fs::write(&real, config(&["web", "api"]).replace("{dir}", &dir)).expect("edit in place");
    let pid = rotad.pid().to_string();
    let sent = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("kill -HUP");
    assert!(sent.success());

    wait_for("api to be installed after SIGHUP", TIMEOUT, || {
        installed("api").exists().then_some(())
    });
    let log = rotad.log();
    assert!(log.contains("SIGHUP received"), "rotad's log:\n{log}");
    let status = rotad.rota_ok(&["get", "certs"]);
    assert!(status.contains("api"), "{status}");
}
