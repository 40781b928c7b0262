//! HAProxy's runtime API over its admin socket (management guide, "Unix Socket commands":
//! `set ssl cert`, `commit ssl cert`, `abort ssl cert`), in non-interactive mode: one command
//! per connection, HAProxy answers and closes. The answers are free text; the strings matched
//! here are the ones HAProxy 2.1 to 3.x prints (`src/ssl_ckch.c`), e.g.
//!
//! ```text
//! set ssl cert /etc/haproxy/certs/a.pem <<        -> Transaction created for certificate /etc/haproxy/certs/a.pem!
//! commit ssl cert /etc/haproxy/certs/a.pem        -> Committing /etc/haproxy/certs/a.pem.
//!                                                    Success!
//! abort ssl cert /etc/haproxy/certs/a.pem         -> Transaction aborted for certificate '/etc/haproxy/certs/a.pem'!
//! ```
//!
//! The replies in the tests below are the ones Debian's HAProxy 2.6.12 gave to these commands.
//! Anything else is a refusal and is reported with HAProxy's own words. HAProxy keeps one
//! certificate transaction at a time, shared by every connection, so the transaction started by
//! `set` is still there for the `commit` on the next connection.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rota_api::BackendError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The config `kind` errors are reported under.
const KIND: &str = "haproxy";
/// More than any answer to these commands; a peer sending more is cut off.
const MAX_REPLY: u64 = 64 * 1024;

/// The three certificate transaction commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// `set ssl cert <name> <<`: stage a new PEM.
    Set,
    /// `commit ssl cert <name>`: serve the staged PEM.
    Commit,
    /// `abort ssl cert <name>`: drop the staged PEM.
    Abort,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Self::Set => "set",
            Self::Commit => "commit",
            Self::Abort => "abort",
        }
    }
}

/// HAProxy's admin socket.
pub(crate) struct AdminSocket {
    path: PathBuf,
    timeout: Duration,
}

impl AdminSocket {
    /// The socket at `path`; each exchange (connect, send, answer) must end within `timeout`.
    pub(crate) fn new(path: &Path, timeout: Duration) -> Self {
        Self {
            path: path.to_owned(),
            timeout,
        }
    }

    /// Sends `verb` for the cert `name` (with `pem` as the payload of `set`) and checks the answer.
    pub(crate) async fn send(&self, verb: Verb, name: &str, pem: &str) -> Result<(), BackendError> {
        let command = match verb {
            Verb::Set => set_command(name, pem),
            Verb::Commit | Verb::Abort => format!("{} ssl cert {name}\n", verb.word()),
        };
        let reply = self.exchange(&command).await.map_err(|e| match e {
            Exchange::Io(e) => BackendError::Unreachable {
                backend: KIND,
                detail: format!(
                    "HAProxy's admin socket {}: {e} (is HAProxy running with `stats socket {} level admin`?)",
                    self.path.display(),
                    self.path.display()
                ),
            },
            Exchange::TimedOut => BackendError::Timeout {
                backend: KIND,
                what: format!("HAProxy's answer to `{} ssl cert {name}`", verb.word()),
                after: self.timeout,
            },
        })?;
        check_reply(verb, name, &reply).map_err(|detail| BackendError::Refused {
            backend: KIND,
            detail: format!("`{} ssl cert {name}`: {detail}", verb.word()),
        })
    }

    async fn exchange(&self, command: &str) -> Result<String, Exchange> {
        let talk = async {
            let mut socket = UnixStream::connect(&self.path).await?;
            socket.write_all(command.as_bytes()).await?;
            let mut reply = Vec::new();
            socket.take(MAX_REPLY).read_to_end(&mut reply).await?;
            Ok(String::from_utf8_lossy(&reply).into_owned())
        };
        match tokio::time::timeout(self.timeout, talk).await {
            Ok(result) => result.map_err(Exchange::Io),
            Err(_) => Err(Exchange::TimedOut),
        }
    }
}

/// How one exchange failed.
enum Exchange {
    Io(std::io::Error),
    TimedOut,
}

/// `set ssl cert <name> <<`, the PEM, and the empty line that ends the payload. HAProxy ends
/// the payload at the first empty line, so empty lines inside the PEM (between two blocks)
/// are dropped: PEM readers skip them anyway.
pub(crate) fn set_command(name: &str, pem: &str) -> String {
    let mut command = format!("set ssl cert {name} <<\n");
    for line in pem.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        command.push_str(line);
        command.push('\n');
    }
    command.push('\n');
    command
}

/// `Ok` when `reply` is HAProxy's success answer to `verb` on `name`; else what it said, with
/// a hint when the refusal is a known one.
pub(crate) fn check_reply(verb: Verb, name: &str, reply: &str) -> Result<(), String> {
    let text = reply.trim();
    let succeeded = match verb {
        Verb::Set => {
            text == format!("Transaction created for certificate {name}!")
                || text == format!("Transaction updated for certificate {name}!")
        }
        Verb::Commit => text
            .strip_prefix(&format!("Committing {name}"))
            .map(|rest| rest.trim_start_matches('.'))
            .is_some_and(|rest| rest.starts_with('\n') && rest.lines().last() == Some("Success!")),
        Verb::Abort => {
            text == format!("Transaction aborted for certificate '{name}'!")
                || text == "No ongoing transaction!"
        }
    };
    if succeeded {
        return Ok(());
    }
    let said = if text.is_empty() {
        "HAProxy closed the connection without an answer".to_owned()
    } else {
        // One line, so the condition message reads as one sentence.
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        format!("HAProxy answered \"{}\"", bounded(&lines.join(" / ")))
    };
    Err(match hint(text) {
        Some(hint) => format!("{said}: {hint}"),
        None => said,
    })
}

/// What an operator can do about a known refusal.
fn hint(text: &str) -> Option<&'static str> {
    let hints = [
        (
            "Permission denied",
            "the admin socket needs `level admin` on its `stats socket` line",
        ),
        (
            "Unknown command",
            "this HAProxy does not support hot-swapping certs: it needs 2.1 or later",
        ),
        (
            "not referenced by the configuration",
            "`cert_storage_name` must be exactly the path HAProxy loaded the cert from (`show ssl cert` lists them)",
        ),
        (
            "currently locked",
            "another certificate operation is running; the install is retried",
        ),
        (
            "The ongoing transaction is about",
            "another client left a certificate transaction open; it must be committed or aborted first",
        ),
        (
            "inconsistencies between private key and certificate",
            "the key does not match the cert",
        ),
    ];
    hints
        .iter()
        .find(|(phrase, _)| text.contains(phrase))
        .map(|(_, hint)| *hint)
}

/// At most a screenful of a reply, for error messages.
fn bounded(text: &str) -> String {
    const KEPT: usize = 1000;
    match text.char_indices().nth(KEPT) {
        Some((cut, _)) => format!("{} […]", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "/etc/haproxy/certs/a.pem";

    use Verb::{Abort, Commit, Set};

    /// One row per answer: the command, HAProxy 2.6's answer, whether it is a success, and why.
    #[rustfmt::skip]
    const REPLIES: &[(Verb, &str, bool, &str)] = &[
        (Set, "Transaction created for certificate /etc/haproxy/certs/a.pem!\n\n", true, "a new transaction"),
        (Set, "Transaction updated for certificate /etc/haproxy/certs/a.pem!\n", true, "one left open by an earlier attempt, for this cert"),
        (Set, "Transaction created for certificate /etc/haproxy/certs/b.pem!\n", false, "another cert's transaction"),
        (Set, "Can't replace a certificate which is not referenced by the configuration!\nCan't update /etc/haproxy/certs/a.pem!\n", false, "a name HAProxy does not know"),
        (Set, "Can't update the certificate!\nOperations on certificates are currently locked!\n", false, "locked"),
        (Set, "Permission denied\n", false, "a socket without level admin"),
        (Set, "Unknown command. Please enter one of the following commands only :\n  help\n", false, "an HAProxy without the command"),
        (Set, "", false, "closed without an answer"),
        (Set, "Transaction created for certificate /etc/haproxy/certs/a.pem!\n\nUnknown command, but maybe one of the following ones is a better match:\n  help\n", false, "a payload cut at an empty line: the rest was read as commands"),
        (Commit, "Committing /etc/haproxy/certs/a.pem.\nSuccess!\n\n", true, "one bind"),
        (Commit, "Committing /etc/haproxy/certs/a.pem...\nSuccess!\n", true, "three binds, one dot each"),
        (Commit, "Committing /etc/haproxy/certs/a.pem\nSuccess!\n", true, "the cert is used by no bind"),
        (Commit, "Committing /etc/haproxy/certs/a.pem.\nunable to load the key\nFailed!\n", false, "HAProxy failed to build the new SSL contexts"),
        (Commit, "inconsistencies between private key and certificate loaded '/etc/haproxy/certs/a.pem'.\nCan't commit /etc/haproxy/certs/a.pem!\n", false, "the key does not match"),
        (Commit, "No ongoing transaction! !\nCan't commit /etc/haproxy/certs/a.pem!\n", false, "nothing was staged"),
        (Commit, "Committing /etc/haproxy/certs/a.pem.bak.\nSuccess!\n", false, "another cert whose name extends ours"),
        (Commit, "Success!\n", false, "success without committing our cert"),
        (Abort, "Transaction aborted for certificate '/etc/haproxy/certs/a.pem'!\n", true, "aborted"),
        (Abort, "No ongoing transaction!\n", true, "nothing to abort"),
        (Abort, "The ongoing transaction is about '/etc/haproxy/certs/b.pem' but you are trying to abort a transaction for '/etc/haproxy/certs/a.pem'\nCan't abort /etc/haproxy/certs/a.pem!\n", false, "another cert's transaction is left alone"),
    ];

    #[test]
    fn replies() {
        for (verb, reply, ok, why) in REPLIES {
            assert_eq!(
                check_reply(*verb, NAME, reply).is_ok(),
                *ok,
                "{verb:?} {reply:?}: {why}"
            );
        }
    }

    #[test]
    fn a_refusal_quotes_haproxy_and_says_what_to_do() {
        let err = check_reply(Verb::Set, NAME, REPLIES[3].1).unwrap_err();
        assert_eq!(
            err,
            "HAProxy answered \"Can't replace a certificate which is not referenced by the configuration! / Can't update /etc/haproxy/certs/a.pem!\": `cert_storage_name` must be exactly the path HAProxy loaded the cert from (`show ssl cert` lists them)"
        );
        let err = check_reply(Verb::Set, NAME, "Permission denied\n").unwrap_err();
        assert_eq!(
            err,
            "HAProxy answered \"Permission denied\": the admin socket needs `level admin` on its `stats socket` line"
        );
        let long = "x".repeat(5000);
        let err = check_reply(Verb::Commit, NAME, &long).unwrap_err();
        assert!(err.len() < 1100 && err.ends_with("[…]\""), "{err}");
    }

    #[test]
    fn set_sends_the_pem_as_a_payload_without_empty_lines() {
        let pem = "-----BEGIN CERTIFICATE-----\r\nAAA\r\n-----END CERTIFICATE-----\n\n  \n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n";
        assert_eq!(
            set_command(NAME, pem),
            "set ssl cert /etc/haproxy/certs/a.pem <<\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nBBB\n-----END PRIVATE KEY-----\n\n"
        );
    }
}
