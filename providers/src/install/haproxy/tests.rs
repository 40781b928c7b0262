//! The installer against a scripted admin socket that answers as HAProxy 2.6 does (the
//! replies of `src/ssl_ckch.c`, quoted in `runtime_api.rs`) and records what it was sent.

use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use super::*;

/// HAProxy's answer to one command.
type Answer = fn(&str) -> String;

/// A fake admin socket; `commands` is every command it received, in order.
struct FakeHaproxy {
    commands: Arc<Mutex<Vec<String>>>,
}

impl FakeHaproxy {
    fn start(path: &Path, answer: Answer) -> Self {
        let listener = UnixListener::bind(path).unwrap();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&commands);
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut received = Vec::new();
                let mut chunk = [0; 4096];
                // One command per connection: a line, or for `set` a payload up to an empty line.
                loop {
                    let n = conn.read(&mut chunk).await.unwrap();
                    received.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&received);
                    let end = if text.starts_with("set ") {
                        "\n\n"
                    } else {
                        "\n"
                    };
                    if n == 0 || text.ends_with(end) {
                        break;
                    }
                }
                let command = String::from_utf8_lossy(&received).into_owned();
                let reply = answer(&command);
                seen.lock().unwrap().push(command);
                conn.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        Self { commands }
    }

    /// The first line of each command received.
    fn verbs(&self) -> Vec<String> {
        let commands = self.commands.lock().unwrap();
        commands
            .iter()
            .map(|c| c.lines().next().unwrap_or_default().to_owned())
            .collect()
    }
}

/// HAProxy 2.6's answers when everything works.
fn accepts(command: &str) -> String {
    let name = command.split_whitespace().nth(3).unwrap_or_default();
    match command.split_whitespace().next() {
        Some("set") => format!("Transaction created for certificate {name}!\n\n"),
        Some("commit") => format!("Committing {name}.\nSuccess!\n\n"),
        Some("abort") => format!("Transaction aborted for certificate '{name}'!\n\n"),
        _ => "Unknown command.\n\n".into(),
    }
}

/// HAProxy 2.6's answers when the staged key does not match the cert.
fn refuses_commit(command: &str) -> String {
    let name = command.split_whitespace().nth(3).unwrap_or_default();
    if command.starts_with("commit") {
        format!(
            "inconsistencies between private key and certificate loaded '{name}'.\nCan't commit {name}!\n\n"
        )
    } else {
        accepts(command)
    }
}

struct Setup {
    dir: tempfile::TempDir,
    installer: HaproxyInstall,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = HaproxySpec {
            directory: dir.path().join("certs"),
            socket_path: dir.path().join("admin.sock"),
            cert_storage_name: dir.path().join("haproxy/web.pem").display().to_string(),
            verify_address: None,
            formats: vec![rota_api::config::OutputFormat::Pem],
            pkcs12_password_file: None,
            post_command: None,
            post_command_timeout_seconds: 60,
        };
        let installer = HaproxyInstall::new(&spec);
        Self { dir, installer }
    }

    fn haproxy(&self, answer: Answer) -> FakeHaproxy {
        FakeHaproxy::start(&self.dir.path().join("admin.sock"), answer)
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap()
    }

    fn name(&self) -> String {
        self.installer.storage_name.clone()
    }
}

fn issued(serial: &str) -> IssuedCert {
    IssuedCert {
        cert_pem: format!("-----BEGIN CERTIFICATE-----\nleaf{serial}\n-----END CERTIFICATE-----\n"),
        chain_pem: "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n".into(),
    }
}

fn key() -> SecretString {
    SecretString::new("-----BEGIN PRIVATE KEY-----\nkey\n-----END PRIVATE KEY-----\n".into())
}

fn id() -> CertId {
    CertId::new("web").unwrap()
}

#[tokio::test]
async fn writes_the_combined_pem_then_sets_and_commits_it() {
    let setup = Setup::new();
    let haproxy = setup.haproxy(accepts);
    setup
        .installer
        .install(&issued("1"), &key(), &[])
        .await
        .unwrap();

    let name = setup.name();
    assert_eq!(
        haproxy.verbs(),
        [
            format!("set ssl cert {name} <<"),
            format!("commit ssl cert {name}")
        ]
    );
    let bundle = format!(
        "{}{}{}",
        issued("1").cert_pem,
        issued("1").chain_pem,
        key().expose()
    );
    assert_eq!(setup.read("haproxy/web.pem"), bundle, "leaf, chain, key");
    let sent = haproxy.commands.lock().unwrap()[0].clone();
    assert_eq!(
        sent,
        format!("set ssl cert {name} <<\n{bundle}\n"),
        "the same PEM, then an empty line"
    );
    assert_eq!(
        setup.read("certs/fullchain.pem"),
        issued("1").fullchain_pem()
    );
    assert_eq!(
        setup.installer.current_cert_pem(&id()).await.unwrap(),
        Some(issued("1").cert_pem)
    );
}

#[tokio::test]
async fn a_refused_commit_is_aborted_and_the_old_files_stay() {
    let setup = Setup::new();
    {
        let _haproxy = setup.haproxy(accepts);
        setup
            .installer
            .install(&issued("1"), &key(), &[])
            .await
            .unwrap();
    }
    std::fs::remove_file(setup.dir.path().join("admin.sock")).unwrap();
    let haproxy = setup.haproxy(refuses_commit);
    let err = setup
        .installer
        .install(&issued("2"), &key(), &[])
        .await
        .unwrap_err();

    let name = setup.name();
    assert_eq!(
        haproxy.verbs(),
        [
            format!("set ssl cert {name} <<"),
            format!("commit ssl cert {name}"),
            format!("abort ssl cert {name}"),
        ]
    );
    let text = err.to_string();
    assert!(
        text.contains("inconsistencies between private key and certificate"),
        "{text}"
    );
    assert!(
        text.contains("the key does not match the cert"),
        "a hint: {text}"
    );
    assert!(setup.read("haproxy/web.pem").contains("leaf1"));
    assert!(setup.read("certs/cert.pem").contains("leaf1"));
    assert!(setup.read("certs/fullchain.pem").contains("leaf1"));
}

#[tokio::test]
async fn no_socket_is_unreachable_and_leaves_no_files() {
    let setup = Setup::new();
    let err = setup
        .installer
        .install(&issued("1"), &key(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("admin.sock"), "{err}");
    assert_eq!(setup.installer.current_cert_pem(&id()).await.unwrap(), None);
    assert!(!setup.dir.path().join("haproxy/web.pem").exists());
}

#[tokio::test]
async fn a_silent_socket_times_out() {
    let setup = Setup::new();
    // Accepts connections but never answers.
    let listener = UnixListener::bind(setup.dir.path().join("admin.sock")).unwrap();
    let mut installer = setup.installer;
    installer.socket = AdminSocket::new(
        &setup.dir.path().join("admin.sock"),
        Duration::from_millis(200),
    );
    let started = std::time::Instant::now();
    let err = installer
        .install(&issued("1"), &key(), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("answer to `set ssl cert"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}
