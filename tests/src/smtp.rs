//! A real SMTP server (`tests/peers/smtp.py`, on Debian's python3-aiosmtpd) as a fixture:
//! a free port, plain or with TLS (STARTTLS or implicit) from a test CA made here, optionally
//! insisting on a login; every message it accepts can be read back with its envelope.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::pebble::free_port;
use crate::test_chain::TestChain;
use crate::wait_for;

/// How the server secures its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text only.
    None,
    /// STARTTLS, required before anything else.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Implicit,
}

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients.
    pub rcpt_tos: Vec<String>,
    /// Whether the session was encrypted when the message came.
    pub tls: bool,
    /// The user who logged in, if anyone did.
    pub login: Option<String>,
    /// The message as received: headers, blank line, body.
    pub data: String,
}

impl Received {
    /// The value of header `name` (first occurrence), unfolded.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        unfolded.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    /// The body, after the blank line, decoded if it was sent quoted-printable (as a mail
    /// with lines over 78 characters is), with `\n` line ends.
    #[must_use]
    pub fn body(&self) -> String {
        let raw = self
            .data
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let quoted = self
            .header("Content-Transfer-Encoding")
            .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
        let text = if quoted {
            decode_quoted_printable(raw)
        } else {
            raw.to_owned()
        };
        text.replace("\r\n", "\n")
    }
}

/// RFC 2045 §6.7: `=` at a line end is a soft break, `=XY` the byte with hex value XY.
fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running SMTP server; killed on drop.
pub struct Smtp {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl Smtp {
    /// Starts a server with `tls`, requiring `auth` (user, password) when given.
    #[must_use]
    pub fn start(tls: SmtpTls, auth: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let maildir = dir.path().join("mail");
        fs::create_dir(&maildir).expect("the mail directory");
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/smtp.py");
        let mut command = Command::new(python());
        command
            .arg(script)
            .args(["--port", &port.to_string()])
            .arg("--maildir")
            .arg(&maildir);
        if tls != SmtpTls::None {
            let (cert, key) = write_server_cert(dir.path());
            command.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if tls == SmtpTls::Implicit {
            command.arg("--implicit");
        }
        if let Some((user, password)) = auth {
            command.args(["--auth", &format!("{user}:{password}")]);
        }
        let log = fs::File::create(dir.path().join("smtp.log")).expect("the log file");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3 runs tests/peers/smtp.py (apt-get install python3-aiosmtpd)");
        let mut smtp = Self { port, dir, child };
        let ready = smtp.dir.path().join("mail/ready");
        wait_for("the SMTP server to listen", Duration::from_secs(20), || {
            if let Ok(Some(status)) = smtp.child.try_wait() {
                panic!("the SMTP server exited with {status}: {}", smtp.log());
            }
            ready.exists().then_some(())
        });
        smtp
    }

    /// The PEM root its certificate chains to (for `ca_file`).
    #[must_use]
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Every message received so far, in arrival order.
    #[must_use]
    pub fn received(&self) -> Vec<Received> {
        let maildir = self.dir.path().join("mail");
        let mut numbered: Vec<(u64, PathBuf)> = fs::read_dir(&maildir)
            .expect("the mail directory")
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let n = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                Some((n, path))
            })
            .collect();
        numbered.sort();
        numbered
            .into_iter()
            .map(|(_, path)| {
                let text = fs::read_to_string(&path).expect("a received message");
                let json: serde_json::Value = serde_json::from_str(&text).expect("its JSON");
                Received {
                    mail_from: json["mail_from"].as_str().unwrap_or_default().to_owned(),
                    rcpt_tos: json["rcpt_tos"]
                        .as_array()
                        .map(|all| {
                            all.iter()
                                .filter_map(|r| r.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default(),
                    tls: json["tls"].as_bool().unwrap_or_default(),
                    login: json["login"].as_str().map(str::to_owned),
                    data: json["data"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// What the server logged.
    #[must_use]
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("smtp.log")).unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's own interpreter, which sees python3-aiosmtpd, when a `python3` earlier on the
/// PATH (pyenv, a virtualenv) would not.
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// A test CA (`ca.pem`) and a server cert for 127.0.0.1 signed by it; returns the cert and key
/// paths.
fn write_server_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let chain = TestChain::private(&["127.0.0.1"]);
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    fs::write(dir.join("ca.pem"), &chain.root_pem).expect("write ca.pem");
    fs::write(&cert_path, &chain.leaf_pem).expect("write server.pem");
    fs::write(&key_path, &chain.key_pem).expect("write server.key");
    (cert_path, key_path)
}
