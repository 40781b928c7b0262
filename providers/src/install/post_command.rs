//! The deploy hook (`install.post_command`): the operator's argv, run once after every
//! successful install whatever the install kind, the way certbot's `--deploy-hook` is. It gets
//! the facts of the cert that just landed in `ROTA_*` variables (so one script can serve every
//! cert), runs without a shell, and is killed at its timeout; its exit status and stderr go to
//! the audit trail.

use std::path::PathBuf;
use std::time::Duration;

use rota_api::config::CertSpec;
use rota_api::{BackendError, CertId, DomainName};

pub use super::command::Finished;
use super::{command, pem_files};

/// The backend name the hook's errors carry.
const BACKEND: &str = "post_command";

/// What the hook is told about the cert that was installed.
#[derive(Debug, Clone)]
pub struct Installed<'a> {
    /// The cert's id.
    pub cert_id: &'a CertId,
    /// Its names.
    pub domains: &'a [DomainName],
    /// The installed leaf (`cert.pem`), for kinds that write files.
    pub cert_path: Option<PathBuf>,
    /// The installed `fullchain.pem`, for kinds that write files.
    pub fullchain_path: Option<PathBuf>,
    /// The private key the cert belongs to.
    pub key_path: PathBuf,
    /// The cert's serial number, hex.
    pub serial: &'a str,
    /// Its notAfter, RFC 3339.
    pub not_after: String,
}

impl<'a> Installed<'a> {
    /// The facts of `spec`'s cert with `serial`, just installed: the installed files where its
    /// install kind writes them, else the persistent key.
    #[must_use]
    pub fn new(spec: &'a CertSpec, serial: &'a str, not_after: String) -> Self {
        let directory = spec.install.pem_directory();
        Self {
            cert_id: &spec.id,
            domains: &spec.domains,
            cert_path: directory.map(pem_files::cert_path),
            fullchain_path: directory.map(pem_files::fullchain_path),
            key_path: directory.map_or_else(|| spec.key_path.clone(), pem_files::privkey_path),
            serial,
            not_after,
        }
    }

    /// The `ROTA_*` variables; a path the install kind has no file for is left unset.
    fn environment(&self) -> Vec<(&'static str, String)> {
        let domains: Vec<&str> = self.domains.iter().map(DomainName::as_str).collect();
        let mut env = vec![
            ("ROTA_CERT_ID", self.cert_id.to_string()),
            ("ROTA_DOMAINS", domains.join(" ")),
            ("ROTA_KEY_PATH", self.key_path.display().to_string()),
            ("ROTA_SERIAL", self.serial.to_owned()),
            ("ROTA_NOT_AFTER", self.not_after.clone()),
        ];
        for (name, path) in [
            ("ROTA_CERT_PATH", &self.cert_path),
            ("ROTA_FULLCHAIN_PATH", &self.fullchain_path),
        ] {
            if let Some(path) = path {
                env.push((name, path.display().to_string()));
            }
        }
        env
    }
}

/// Runs `argv` for the cert `installed` describes; an exit other than 0, or none within
/// `timeout`, is an error naming the command and what it printed.
pub async fn run(
    argv: &[String],
    installed: &Installed<'_>,
    timeout: Duration,
) -> Result<Finished, BackendError> {
    command::run_with_env(BACKEND, argv, &installed.environment(), timeout).await
}

/// `argv` as an operator would type it, for messages.
#[must_use]
pub fn display(argv: &[String]) -> String {
    command::display_argv(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_hook_sees_every_variable_and_a_missing_path_stays_unset() {
        let id = CertId::new("web").unwrap();
        let domains = [
            DomainName::new("a.test").unwrap(),
            DomainName::new("b.test").unwrap(),
        ];
        let installed = Installed {
            cert_id: &id,
            domains: &domains,
            cert_path: None,
            fullchain_path: Some("/out/fullchain.pem".into()),
            key_path: "/keys/web.key".into(),
            serial: "0a1b",
            not_after: "2027-01-01T00:00:00Z".into(),
        };
        let script = "echo \"$ROTA_CERT_ID|$ROTA_DOMAINS|${ROTA_CERT_PATH-unset}|$ROTA_FULLCHAIN_PATH|$ROTA_KEY_PATH|$ROTA_SERIAL|$ROTA_NOT_AFTER\" >&2";
        let argv = ["sh", "-c", script].map(str::to_owned);
        let finished = run(&argv, &installed, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(
            finished.stderr,
            "web|a.test b.test|unset|/out/fullchain.pem|/keys/web.key|0a1b|2027-01-01T00:00:00Z"
        );
    }
}
