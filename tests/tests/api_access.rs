//! Who may do what, end to end: the real rotad on the local CA, called over TCP and over the
//! UNIX socket with curl (as an operator, or an attacker, would) and with the real `rota` CLI.
//! Every refusal is checked for its status and code, and for having changed nothing.

use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rota_e2e::{Rotad, mode_of, rotad_refuses, serial_hex, served_serial};

const TOKEN: &str = "s3cret-test-token";

/// The routes that only read, as curl paths.
const READS: &[&str] = &[
    "/healthz",
    "/api/status",
    "/api/certs",
    "/api/certs/web",
    "/api/certs/web/log",
];

/// Every mutation: method, path and JSON body.
const MUTATIONS: &[(&str, &str, &str)] = &[
    ("POST", "/api/certs/web/renew", ""),
    (
        "POST",
        "/api/certs/web/revoke",
        r#"{"reason":"superseded"}"#,
    ),
    (
        "POST",
        "/api/config",
        r#"{"yaml":"certs: []\n","dry_run":false}"#,
    ),
];

/// A config with cert `web` on the local CA; `daemon_extra` is indented under `daemon:`.
fn config(daemon_extra: &str) -> String {
    format!(
        "daemon:\n  database_path: {{dir}}/rota.db\n  listen_addr: 127.0.0.1:0\n  socket_path: {{dir}}/rota.sock\n{daemon_extra}\nlocal_ca:\n  directory: {{dir}}/ca\n\ncerts:\n{}",
        cert_block("web")
    )
}

fn cert_block(id: &str) -> String {
    format!(
        "  - id: {id}\n    domains: [{id}.home.arpa]\n    key_path: {{dir}}/keys/{id}.key\n    ca: {{ kind: local }}\n    install:\n      kind: filesystem\n      directory: {{dir}}/installed/{id}\n"
    )
}

/// What an HTTP call answered: status (0 when no HTTP answer came) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
}

impl Reply {
    fn code(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

/// Runs curl with `args` and the status written after the body.
fn curl(args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Reply {
        status: status.trim().parse().unwrap_or(0),
        body: body.to_owned(),
    }
}

/// One request to rotad's TCP listener at `addr`, with extra curl arguments.
fn tcp(addr: SocketAddr, method: &str, path: &str, extra: &[&str]) -> Reply {
    let url = format!("http://{addr}{path}");
    let mut args = vec!["-X", method];
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// A mutation over TCP as a client that knows the protocol would send it.
fn mutate(
    addr: SocketAddr,
    (method, path, body): (&str, &str, &str),
    bearer: Option<&str>,
) -> Reply {
    let auth = bearer.map(|t| format!("Authorization: Bearer {t}"));
    let mut extra = vec![
        "-H",
        "x-rota-protocol: 2",
        "-H",
        "content-type: application/json",
        "--data-binary",
        body,
    ];
    if let Some(auth) = &auth {
        extra.extend(["-H", auth.as_str()]);
    }
    tcp(addr, method, path, &extra)
}

fn installed_serial(rotad: &Rotad) -> String {
    serial_hex(&rotad.path("installed/web/cert.pem"))
}

/// Writes the token file in its own directory (it must exist before rotad loads the config).
fn token_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api.token");
    fs::write(&path, format!("{TOKEN}\n")).expect("write token");
    let shown = path.display().to_string();
    (dir, shown)
}

#[test]
fn without_a_token_tcp_serves_every_read_and_refuses_every_mutation() {
    let rotad = Rotad::start(&config(""));
    rotad.wait_installed("web");
    let addr = rotad.tcp_addr();
    let before = installed_serial(&rotad);
    let config_before = fs::read_to_string(rotad.config_path()).unwrap();

    for path in READS {
        let reply = tcp(addr, "GET", path, &[]);
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
    }
    for mutation in MUTATIONS {
        let reply = mutate(addr, *mutation, None);
        assert_eq!(reply.status, 403, "{mutation:?}: {reply:?}");
        assert_eq!(reply.code(), "read_only", "{reply:?}");
        assert!(
            reply.body.contains("daemon.api_token_file") && reply.body.contains("socket"),
            "the refusal says how to enable changes: {reply:?}"
        );
        // A bearer cannot help when rotad has no token to compare it with.
        let reply = mutate(addr, *mutation, Some(TOKEN));
        assert_eq!(reply.status, 403, "{mutation:?} with a bearer: {reply:?}");
    }
    assert_eq!(
        installed_serial(&rotad),
        before,
        "nothing was renewed or revoked"
    );
    assert_eq!(
        fs::read_to_string(rotad.config_path()).unwrap(),
        config_before,
        "nothing was applied"
    );
    // The socket, the admin channel, still renews.
    let _ = rotad.rota_ok(&["renew", "web"]);
    assert_ne!(installed_serial(&rotad), before);
}

#[test]
fn a_host_header_that_does_not_name_rotad_is_misdirected() {
    let rotad = Rotad::start(&config("  allowed_hosts: [rota.example.test]\n"));
    let addr = rotad.tcp_addr();
    let port = addr.port();
    for (host, status) in [
        (format!("evil.example:{port}"), 421),
        (format!("localhost:{}", port.wrapping_add(1)), 421),
        (format!("localhost:{port}"), 200),
        (format!("{addr}"), 200),
        ("rota.example.test".to_owned(), 200),
    ] {
        let header = format!("Host: {host}");
        let reply = tcp(addr, "GET", "/api/status", &["-H", &header]);
        assert_eq!(reply.status, status, "{host}: {reply:?}");
        if status == 421 {
            assert_eq!(reply.code(), "misdirected_request", "{reply:?}");
            assert!(reply.body.contains("daemon.allowed_hosts"), "{reply:?}");
        }
    }
}

#[test]
fn with_a_token_mutations_need_the_right_bearer() {
    let (_token_dir, token_path) = token_file();
    let rotad = Rotad::start(&config(&format!("  api_token_file: {token_path}\n")));
    rotad.wait_installed("web");
    let addr = rotad.tcp_addr();
    let renew = MUTATIONS[0];
    let before = installed_serial(&rotad);

    for bearer in [None, Some("wrong-token"), Some("s3cret-test-toke")] {
        let reply = mutate(addr, renew, bearer);
        assert_eq!(reply.status, 401, "{bearer:?}: {reply:?}");
        assert_eq!(reply.code(), "unauthorized");
    }
    let no_header = tcp(
        addr,
        "POST",
        renew.1,
        &["-H", &format!("Authorization: Bearer {TOKEN}")],
    );
    assert_eq!(no_header.status, 403, "{no_header:?}");
    assert_eq!(no_header.code(), "protocol_header_required");
    assert_eq!(installed_serial(&rotad), before, "no refused call renewed");

    let reply = mutate(addr, renew, Some(TOKEN));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(reply.body.contains("finished"), "{reply:?}");
    assert_ne!(installed_serial(&rotad), before, "the right bearer renews");
    // On loopback reads stay open (decision 2).
    assert_eq!(tcp(addr, "GET", "/api/certs", &[]).status, 200);

    // The token is read at every request: a rotated file takes effect at once, and an
    // unreadable one fails closed.
    fs::write(&token_path, "rotated-token\n").unwrap();
    assert_eq!(
        mutate(addr, renew, Some(TOKEN)).status,
        401,
        "the old token is gone"
    );
    assert_eq!(mutate(addr, renew, Some("rotated-token")).status, 200);
    fs::remove_file(&token_path).unwrap();
    let reply = mutate(addr, renew, Some("rotated-token"));
    assert_eq!(reply.status, 503, "{reply:?}");
}

#[test]
fn on_a_listener_other_hosts_can_reach_reads_need_the_token_too() {
    let (_token_dir, token_path) = token_file();
    let rotad = Rotad::start(
        &config(&format!("  api_token_file: {token_path}\n")).replace("127.0.0.1:0", "0.0.0.0:0"),
    );
    // Only ever called through loopback; the wildcard bind is what makes the rule apply.
    let port = rotad.tcp_addr().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bearer = format!("Authorization: Bearer {TOKEN}");
    for path in READS {
        let open = *path == "/healthz";
        let anonymous = tcp(addr, "GET", path, &[]);
        assert_eq!(
            anonymous.status,
            if open { 200 } else { 401 },
            "{path}: {anonymous:?}"
        );
        let with_token = tcp(addr, "GET", path, &["-H", &bearer]);
        assert_eq!(with_token.status, 200, "{path}: {with_token:?}");
    }
}

#[test]
fn a_hot_reload_never_weakens_the_bound_listener() {
    let (_token_dir, token_path) = token_file();
    let rotad = Rotad::start(&config(&format!("  api_token_file: {token_path}\n")));
    rotad.wait_installed("web");
    let addr = rotad.tcp_addr();
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();

    // The edit drops the token, moves the listener and adds a cert.
    let edited =
        config("").replace("127.0.0.1:0", &format!("127.0.0.1:{free_port}")) + &cert_block("two");
    fs::write(
        rotad.config_path(),
        edited.replace("{dir}", &rotad.dir.path().display().to_string()),
    )
    .unwrap();
    rotad.wait_installed("two");
    let status: serde_json::Value =
        serde_json::from_str(&rotad.rota_ok(&["status", "-o", "json"])).unwrap();
    assert_eq!(
        status["restart_required"],
        serde_json::json!(["daemon.listen_addr", "daemon.api_token_file"]),
        "{status}"
    );
    let text = rotad.rota_ok(&["status"]);
    assert!(
        text.contains("restart required: daemon.listen_addr, daemon.api_token_file"),
        "{text}"
    );

    let reply = mutate(addr, MUTATIONS[0], None);
    assert_eq!(
        reply.status, 401,
        "the bound listener still wants the token: {reply:?}"
    );
    assert_eq!(mutate(addr, MUTATIONS[0], Some(TOKEN)).status, 200);
    let moved = format!("127.0.0.1:{free_port}").parse().unwrap();
    assert_eq!(
        tcp(moved, "GET", "/healthz", &[]).status,
        0,
        "nothing listens on the new address before a restart"
    );
}

#[test]
fn apply_cannot_move_the_database_or_the_socket() {
    let rotad = Rotad::start(&config(""));
    rotad.wait_installed("web");
    let before = fs::read_to_string(rotad.config_path()).unwrap();
    let next = rotad.path("next.yaml");
    let dir = rotad.dir.path().display().to_string();
    let moved = before
        .replace(&format!("{dir}/rota.db"), &format!("{dir}/elsewhere.db"))
        .replace(&format!("{dir}/rota.sock"), &format!("{dir}/other.sock"))
        + &cert_block("two").replace("{dir}", &dir);
    fs::write(&next, &moved).unwrap();

    let out = rotad.rota(&["apply", "-f", &next.display().to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "refused as an invalid config: {stderr}"
    );
    for field in ["daemon.database_path", "daemon.socket_path"] {
        assert!(stderr.contains(field), "names {field}: {stderr}");
    }
    assert!(
        stderr.contains("next.yaml:2:"),
        "located in the file: {stderr}"
    );
    assert_eq!(fs::read_to_string(rotad.config_path()).unwrap(), before);
    assert!(!rotad.path("elsewhere.db").exists());
    assert!(
        !rotad.path("installed/two").exists(),
        "nothing of it was applied"
    );
    assert_eq!(
        rotad.certs_json()["items"].as_array().map(Vec::len),
        Some(1)
    );
}

#[test]
fn a_body_over_one_mebibyte_is_refused_with_413() {
    let rotad = Rotad::start(&config(""));
    let before = fs::read_to_string(rotad.config_path()).unwrap();
    let body = rotad.path("big.json");
    let padding = format!("# {}\n", "x".repeat(1024 * 1024));
    let request = serde_json::json!({ "yaml": before.clone() + &padding, "dry_run": false });
    fs::write(&body, request.to_string()).unwrap();
    let socket = rotad.socket().display().to_string();
    let data = format!("@{}", body.display());
    let reply = curl(&[
        "--unix-socket",
        &socket,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "--data-binary",
        &data,
        "http://localhost/api/config",
    ]);
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.code(), "body_too_large", "{reply:?}");
    assert_eq!(fs::read_to_string(rotad.config_path()).unwrap(), before);
}

#[test]
fn the_socket_is_0660_with_the_configured_group_and_a_non_socket_is_never_removed() {
    // `daemon` is in Debian's base-passwd, so it exists wherever these tests run.
    let gid: u32 = String::from_utf8_lossy(
        &Command::new("getent")
            .args(["group", "daemon"])
            .output()
            .expect("getent")
            .stdout,
    )
    .split(':')
    .nth(2)
    .and_then(|g| g.trim().parse().ok())
    .expect("the daemon group exists");
    assert_ne!(
        gid, 0,
        "a group other than rotad's own, so the chown is visible"
    );
    let rotad = Rotad::start(&config("  socket_group: daemon\n"));
    let meta = fs::symlink_metadata(rotad.socket()).unwrap();
    assert_eq!(meta.gid(), gid);
    assert_eq!(mode_of(&rotad.socket()), 0o660);

    let keep = |dir: &Path| {
        fs::write(dir.join("rota.sock"), "keep me").unwrap();
        fs::set_permissions(dir.join("rota.sock"), fs::Permissions::from_mode(0o600)).unwrap();
    };
    let (dir, stderr) = rotad_refuses(&config(""), keep);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(
        fs::read_to_string(dir.path().join("rota.sock")).unwrap(),
        "keep me"
    );
    assert_eq!(
        mode_of(&dir.path().join("rota.sock")),
        0o600,
        "never chmod-ed"
    );

    let link = |dir: &Path| {
        fs::write(dir.join("target"), "keep me").unwrap();
        fs::set_permissions(dir.join("target"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(dir.join("target"), dir.join("rota.sock")).unwrap();
    };
    let (dir, stderr) = rotad_refuses(&config(""), link);
    assert!(stderr.contains("symbolic link"), "{stderr}");
    assert!(
        fs::symlink_metadata(dir.path().join("rota.sock"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        mode_of(&dir.path().join("target")),
        0o600,
        "the link's target is untouched"
    );

    let (_dir, stderr) = rotad_refuses(&config("  socket_group: no-such-group-here\n"), |_| {});
    assert!(
        stderr.contains("daemon.socket_group") && stderr.contains("no group"),
        "{stderr}"
    );
}

#[test]
fn tls_serves_the_managed_cert_and_follows_its_renewal() {
    let rotad = Rotad::start(&config(
        "  tls: { cert_id: web }\n  allowed_hosts: [web.home.arpa]\n",
    ));
    rotad.wait_installed("web");
    let addr = rotad.tcp_addr();
    let ca = rotad.path("ca/ca.pem").display().to_string();
    let served = || served_serial(addr, None, Some(Path::new(&ca)));
    assert_eq!(served(), installed_serial(&rotad));

    let resolve = format!("web.home.arpa:{}:127.0.0.1", addr.port());
    let url = format!("https://web.home.arpa:{}/api/status", addr.port());
    let reply = curl(&["--cacert", &ca, "--resolve", &resolve, &url]);
    assert_eq!(
        reply.status, 200,
        "the API over TLS, verified against the local CA: {reply:?}"
    );
    assert_eq!(
        tcp(addr, "GET", "/healthz", &[]).status,
        0,
        "no plain HTTP on a TLS listener"
    );

    let before = installed_serial(&rotad);
    let _ = rotad.rota_ok(&["renew", "web"]);
    let after = installed_serial(&rotad);
    assert_ne!(before, after);
    assert_eq!(
        served(),
        after,
        "the renewed cert is served without a restart"
    );
}
