//! `packaging/systemd/rotad.service`: the hardening and reload directives the operator's
//! manual promises are in the unit (checked by parsing it, always), and `systemd-analyze
//! verify` accepts it (`scripts/test` installs systemd-analyze; without it the test fails).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd/rotad.service")
}

/// `section.Key` → every value it is given, in order.
fn parse_unit(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            name.clone_into(&mut section);
            continue;
        }
        let (key, value) = line.split_once('=').expect("Key=value line");
        out.entry(format!("{section}.{}", key.trim()))
            .or_default()
            .push(value.trim().to_owned());
    }
    out
}

#[test]
fn the_unit_carries_the_hardening_and_reload_directives() {
    let text = std::fs::read_to_string(unit_path()).expect("read the unit");
    let unit = parse_unit(&text);
    let value = |key: &str| {
        unit.get(&format!("Service.{key}"))
            .and_then(|v| v.last())
            .map(String::as_str)
    };
    let exec_start = value("ExecStart").expect("ExecStart");
    assert!(
        exec_start.contains("rotad") && exec_start.contains("--config"),
        "{exec_start}"
    );
    assert_eq!(value("ExecReload"), Some("/bin/kill -HUP $MAINPID"));
    assert!(
        value("User").is_some_and(|u| u != "root") || value("DynamicUser") == Some("yes"),
        "runs as its own user"
    );
    for (key, expected) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("StateDirectory", "rota"),
        ("RuntimeDirectory", "rota"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
    ] {
        assert_eq!(value(key), Some(expected), "{key}");
    }
    // `rota apply` writes the config; ProtectSystem=strict would forbid it otherwise.
    assert!(value("ReadWritePaths").is_some_and(|p| p.split(' ').any(|p| p == "/etc/rota")));
    assert!(
        text.contains("ReadWritePaths=/etc/nginx/certs"),
        "the unit explains how to grant install targets"
    );
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let version = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze is not installed: run the tests through scripts/test, which installs it");
    assert!(version.status.success());
    // verify checks that ExecStart's binary exists: point it at the rotad just built.
    let rotad = rota_e2e::bin_dir().join("rotad");
    assert!(
        rotad.exists(),
        "build the binaries first: cargo build --bins"
    );
    let text = std::fs::read_to_string(unit_path()).expect("read the unit");
    let text = text.replace("/usr/local/bin/rotad", &rotad.display().to_string());
    let dir = tempfile::tempdir().expect("dir");
    let unit = dir.path().join("rotad.service");
    std::fs::write(&unit, text).expect("write unit");
    // man:rotad(8) is only there once the pages are installed (`rota man`).
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warned:\n{stderr}"
    );
}
