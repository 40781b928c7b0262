//! The commands that need no rotad, run as the real `rota` binary: shell completions that the
//! shells accept, man pages that groff renders, `rota version`, `rota config schema|keys`,
//! and `NO_COLOR` honoured on a terminal.

use std::path::Path;
use std::process::{Command, Output};

fn rota(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rota"))
        .args(args)
        .output()
        .expect("run rota")
}

fn rota_ok(args: &[&str]) -> String {
    let out = rota(args);
    assert!(
        out.status.success(),
        "rota {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Fails the test when `program` is missing: `scripts/test` installs every checker these
/// tests run, so a missing one is a broken setup, never a reason to pass.
fn require(program: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: run the tests through scripts/test, which installs it"
    );
}

#[test]
fn completions_name_the_subcommands_and_parse_in_their_shell() {
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let script = rota_ok(&["completions", shell]);
        // fish writes long options without their dashes (`-l output`).
        for word in ["renew", "describe", "completions", "output", "socket"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        require(checker);
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("rota.completion");
        std::fs::write(&file, &script).expect("write");
        let check = Command::new(checker)
            .arg("-n")
            .arg(&file)
            .output()
            .expect(checker);
        assert!(
            check.status.success(),
            "{checker} -n refuses the script: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    let out = rota(&["completions", "powershell"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_are_written_for_every_command_and_render() {
    let dir = tempfile::tempdir().expect("dir");
    let pages = dir.path().join("man");
    let said = rota_ok(&["man", "--dir", &pages.display().to_string()]);
    assert!(said.contains("pages"), "{said}");
    for page in [
        "rota.1",
        "rota-get-certs.1",
        "rota-renew.1",
        "rota-completions.1",
        "rotad.8",
    ] {
        let text =
            std::fs::read_to_string(pages.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page} is a man page"
        );
    }
    let rotad = std::fs::read_to_string(pages.join("rotad.8")).expect("rotad.8");
    assert!(rotad.contains("SIGHUP"), "rotad(8) says how to reload");
    require("groff");
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww"])
        .arg(pages.join("rota-get-certs.1"))
        .output()
        .expect("groff");
    let text = without_overstrike(&String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success() && text.contains("--output"), "{text}");
    assert!(
        out.stderr.is_empty(),
        "groff warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// grotty's bold and underline (`X\bX`) reduced to the plain text.
fn without_overstrike(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn version_shows_the_protocol_and_the_features() {
    let text = rota_ok(&["version"]);
    let protocol = rota_api::wire::PROTOCOL_VERSION;
    assert!(
        text.starts_with(&format!("rota {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains(&format!("protocol version: {protocol}\n")),
        "{text}"
    );
    assert!(text.contains("features: +k8s"), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&rota_ok(&["version", "-o", "json"])).expect("json");
    assert_eq!(json["protocol_version"], protocol);
    let install = json["available_kinds"]
        .as_array()
        .expect("kinds")
        .iter()
        .find(|s| s["surface"] == "install")
        .expect("install kinds");
    assert!(
        install["kinds"]
            .as_array()
            .expect("list")
            .iter()
            .any(|k| k == "k8s_secret")
    );
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&rota_ok(&["version", "-o", "yaml"])).expect("yaml");
    assert_eq!(yaml["protocol_version"].as_u64(), Some(u64::from(protocol)));
}

#[test]
fn config_schema_and_keys_come_from_the_types() {
    let schema: serde_json::Value =
        serde_json::from_str(&rota_ok(&["config", "schema"])).expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["required"], serde_json::json!(["certs"]));
    let keys = rota_ok(&["config", "keys"]);
    assert!(keys.starts_with("KEY"), "{keys}");
    assert!(keys.contains("acme.external_account_binding.kid"), "{keys}");
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&rota_ok(&["config", "keys", "-o", "json"])).expect("json");
    assert_eq!(rows.len(), rota_api::config::key_paths().len());
}

/// `rota --help` on a pseudo-terminal (util-linux `script`), with the given environment.
fn help_on_a_terminal(no_color: Option<&str>) -> String {
    let bin = env!("CARGO_BIN_EXE_rota");
    let mut command = Command::new("script");
    command.args(["-qec", &format!("{bin} --help"), "/dev/null"]);
    command.env_remove("NO_COLOR");
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    require("script");
    let coloured = help_on_a_terminal(None);
    assert!(
        coloured.contains('\u{1b}'),
        "help is coloured on a terminal: {coloured:?}"
    );
    let plain = help_on_a_terminal(Some("1"));
    assert!(plain.contains("Usage"), "{plain}");
    assert!(
        !plain.contains('\u{1b}'),
        "NO_COLOR=1 still coloured: {plain:?}"
    );
    // NO_COLOR set but empty means nothing, per no-color.org.
    assert!(help_on_a_terminal(Some("")).contains('\u{1b}'));
}

/// rotad's log while it starts on an empty config, on a pseudo-terminal, stopped by SIGINT
/// after a few seconds (`timeout`), with `NO_COLOR` as given.
fn rotad_log_on_a_terminal(no_color: Option<&str>) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("rota.yaml");
    let state = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "daemon:\n  database_path: {state}/rota.db\n  socket_path: {state}/rota.sock\n  listen_addr: 127.0.0.1:0\ncerts: []\n"
        ),
    )
    .expect("config");
    let rotad = Path::new(env!("CARGO_BIN_EXE_rota")).with_file_name("rotad");
    let mut command = Command::new("script");
    command.args([
        "-qec",
        &format!(
            "timeout -s INT 5 {} --config {}",
            rotad.display(),
            config.display()
        ),
        "/dev/null",
    ]);
    command.env_remove("NO_COLOR").env("RUST_LOG", "info");
    if let Some(value) = no_color {
        command.env("NO_COLOR", value);
    }
    let out = command.output().expect("script");
    let log = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(log.contains("rotad started"), "{log}");
    log
}

#[test]
fn no_color_turns_colour_off_in_rotads_log() {
    require("script");
    require("timeout");
    assert!(
        rotad_log_on_a_terminal(None).contains('\u{1b}'),
        "coloured on a terminal"
    );
    let plain = rotad_log_on_a_terminal(Some("1"));
    assert!(
        !plain.contains('\u{1b}'),
        "NO_COLOR=1 still coloured: {plain:?}"
    );
}

#[test]
fn import_certbot_reports_what_it_cannot_read_and_fails() {
    let missing = rota(&["import", "certbot", "--dir", "/nonexistent/letsencrypt"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("/nonexistent/letsencrypt/renewal"),
        "{stderr}"
    );
    assert!(stderr.contains("--dir"), "says what to check: {stderr}");

    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("renewal")).expect("mkdir");
    std::fs::write(
        dir.path().join("renewal/broken.conf"),
        "archive_dir = /x\n[renewalparams]\nauthenticator = webroot\n",
    )
    .expect("conf");
    let out = rota(&[
        "import",
        "certbot",
        "--dir",
        &dir.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a lineage was left out");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("certs: []"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.conf has no `cert`"),
        "names the file and the missing key: {stderr}"
    );
}
