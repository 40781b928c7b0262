//! How a `rota` run ends: the failures an operator or a script can tell apart, each with its own
//! exit code (listed in `rota --help`), and the text they put on stderr.

use std::io;
use std::path::Path;

use rota_api::config::ConfigIssue;
use rota_api::wire::{PROTOCOL_HEADER, PROTOCOL_VERSION};

/// The operation ran and failed: a renewal failed, rotad refused the request.
pub(crate) const EXIT_FAILED: u8 = 1;
/// The config is invalid; every problem was listed.
pub(crate) const EXIT_INVALID_CONFIG: u8 = 3;
/// The cert (or the renewal asked for) does not exist.
pub(crate) const EXIT_NOT_FOUND: u8 = 4;
/// rotad could not be reached (sysexits `EX_UNAVAILABLE`).
pub(crate) const EXIT_UNREACHABLE: u8 = 69;
/// rotad speaks another wire protocol version (sysexits `EX_PROTOCOL`).
pub(crate) const EXIT_PROTOCOL: u8 = 76;

/// Why a `rota` command did not succeed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The operation ran and failed; the chain says why.
    #[error("{0:#}")]
    Failed(anyhow::Error),
    /// A config was refused; `issues` lists every problem.
    #[error("{summary}")]
    InvalidConfig {
        /// What was refused, in one line.
        summary: String,
        /// Every problem, located.
        issues: Vec<ConfigIssue>,
    },
    /// rotad has no such cert or renewal.
    #[error("{0}")]
    NotFound(String),
    /// The socket could not be used, or rotad stopped answering.
    #[error("cannot reach rotad at {socket}: {detail}")]
    Unreachable {
        /// The socket tried.
        socket: String,
        /// What went wrong.
        detail: String,
        /// What to check next.
        hint: String,
    },
    /// The peer's `x-rota-protocol` header is missing or names another version.
    #[error("{}", protocol_message(.theirs.as_deref()))]
    ProtocolMismatch {
        /// The header's value, if there was one.
        theirs: Option<String>,
    },
}

impl CliError {
    /// A failure whose message is `message`.
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        Self::Failed(anyhow::Error::msg(message.into()))
    }

    /// The socket at `socket` could not be connected to.
    pub(crate) fn connect_failed(socket: &Path, err: &io::Error) -> Self {
        let hint = if err.kind() == io::ErrorKind::PermissionDenied {
            format!(
                "rotad creates {} mode 0660: run rota as its owner or a member of its group",
                socket.display()
            )
        } else {
            running_hint(socket)
        };
        Self::Unreachable {
            socket: socket.display().to_string(),
            detail: err.to_string(),
            hint,
        }
    }

    /// The connection to rotad broke or timed out before it answered.
    pub(crate) fn no_answer(socket: &Path, detail: impl Into<String>) -> Self {
        Self::Unreachable {
            socket: socket.display().to_string(),
            detail: detail.into(),
            hint: running_hint(socket),
        }
    }

    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(_) => EXIT_FAILED,
            Self::InvalidConfig { .. } => EXIT_INVALID_CONFIG,
            Self::NotFound(_) => EXIT_NOT_FOUND,
            Self::Unreachable { .. } => EXIT_UNREACHABLE,
            Self::ProtocolMismatch { .. } => EXIT_PROTOCOL,
        }
    }

    /// Everything to print on stderr, newline-terminated: config problems one per line
    /// (`file:line:col: path: message`, then the hint), then `error: …`, then any hint.
    pub(crate) fn report(&self) -> String {
        let mut lines = Vec::new();
        if let Self::InvalidConfig { issues, .. } = self {
            lines.extend(issues.iter().map(ToString::to_string));
            let n = issues.len();
            let plural = if n == 1 { "" } else { "s" };
            lines.push(format!("error: {self} ({n} problem{plural})"));
        } else {
            lines.push(format!("error: {self}"));
        }
        if let Self::Unreachable { hint, .. } = self {
            lines.push(format!("hint: {hint}"));
        }
        lines.join("\n") + "\n"
    }
}

fn running_hint(socket: &Path) -> String {
    format!(
        "is rotad running? it listens on {}; pass --socket or set ROTA_SOCKET",
        socket.display()
    )
}

fn protocol_message(theirs: Option<&str>) -> String {
    match theirs {
        Some(version) => format!(
            "rotad speaks protocol {version}, this rota speaks {PROTOCOL_VERSION}: \
             upgrade rota and rotad together"
        ),
        None => format!(
            "the server on the socket sent no {PROTOCOL_HEADER} header (it is not rotad, or a \
             rotad older than protocol {PROTOCOL_VERSION}): upgrade rota and rotad together"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(line: usize, hint: Option<&str>) -> ConfigIssue {
        ConfigIssue {
            file: "rota.yaml".into(),
            line,
            column: 5,
            path: "certs[0].domains[1]".into(),
            message: "`a..b` has an empty label".into(),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn each_failure_has_its_exit_code() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let rows: [(CliError, u8, &str); 6] = [
            (
                CliError::failed("renewal failed"),
                1,
                "the operation failed",
            ),
            (
                CliError::InvalidConfig {
                    summary: "refused".into(),
                    issues: vec![],
                },
                3,
                "invalid config",
            ),
            (CliError::NotFound("no cert web".into()), 4, "not found"),
            (
                CliError::connect_failed(Path::new("/s"), &refused),
                69,
                "socket refused",
            ),
            (
                CliError::no_answer(Path::new("/s"), "timed out"),
                69,
                "no answer",
            ),
            (
                CliError::ProtocolMismatch {
                    theirs: Some("1".into()),
                },
                76,
                "old rotad",
            ),
        ];
        for (err, code, why) in rows {
            assert_eq!(err.exit_code(), code, "{why}");
        }
    }

    #[test]
    fn config_issues_are_listed_one_per_line_before_the_error() {
        let err = CliError::InvalidConfig {
            summary: "rotad refused the config".into(),
            issues: vec![issue(3, None), issue(7, Some("write it as a.b"))],
        };
        assert_eq!(
            err.report(),
            "rota.yaml:3:5: certs[0].domains[1]: `a..b` has an empty label\n\
             rota.yaml:7:5: certs[0].domains[1]: `a..b` has an empty label\n    hint: write it as a.b\n\
             error: rotad refused the config (2 problems)\n"
        );
    }

    #[test]
    fn unreachable_socket_says_what_to_check() {
        let missing = io::Error::from(io::ErrorKind::NotFound);
        let report = CliError::connect_failed(Path::new("/run/rota.sock"), &missing).report();
        assert!(report.starts_with("error: cannot reach rotad at /run/rota.sock: "));
        assert!(report.ends_with(
            "hint: is rotad running? it listens on /run/rota.sock; pass --socket or set ROTA_SOCKET\n"
        ));
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let report = CliError::connect_failed(Path::new("/run/rota.sock"), &denied).report();
        assert!(report.contains("mode 0660"), "{report}");
    }

    #[test]
    fn protocol_mismatch_names_both_versions() {
        let err = CliError::ProtocolMismatch {
            theirs: Some("1".into()),
        };
        assert_eq!(
            err.report(),
            "error: rotad speaks protocol 1, this rota speaks 2: upgrade rota and rotad together\n"
        );
        let err = CliError::ProtocolMismatch { theirs: None };
        assert!(err.to_string().contains("sent no x-rota-protocol header"));
    }
}
