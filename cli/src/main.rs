//! `rota`, the command-line client of rotad. It talks to the daemon over its UNIX socket
//! (HTTP/1.1, `rota_api::wire::PROTOCOL_VERSION` checked on every answer) and links only
//! `rota-api`, so it starts fast; `rota check` needs no daemon at all.
//!
//! Exit codes, for scripts (also in `rota --help`):
//! - 0: success
//! - 1: the operation failed (a renewal failed, rotad refused the request)
//! - 2: usage error
//! - 3: invalid config (every problem listed as `file:line:col: path: message`)
//! - 4: not found (no such cert, or no such renewal)
//! - 69: rotad unreachable (socket missing, connection refused, permission denied, no answer)
//! - 76: protocol mismatch (rotad speaks another wire protocol version)

mod alert;
mod apply;
mod build_info;
mod certs_view;
mod client;
mod cluster_view;
mod completions;
mod config_cmd;
mod describe_view;
mod exit;
mod get;
mod human_time;
mod import_certbot;
mod log_view;
mod ndjson;
mod renew;
mod rotad_args;
mod table;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use rota_api::CertId;
use rota_api::RevocationReason;
use rota_api::wire::cluster::ClusterView;
use rota_api::wire::{CertDetail, RenewalLog, RevokeRequest, RevokeResponse, StatusResponse};
use serde::Serialize;
use time::OffsetDateTime;

use crate::client::Daemon;
use crate::exit::CliError;

/// `rota --help`'s description, with the exit codes.
const LONG_ABOUT: &str = "\
rota talks to rotad, the certificate renewal daemon, over its UNIX socket \
(--socket, ROTA_SOCKET). `rota check` works offline.

Exit codes:
  0   success
  1   the operation failed (a renewal failed, rotad refused the request)
  2   usage error
  3   invalid config (every problem listed as file:line:col: path: message)
  4   not found (no such cert, or no such renewal)
  69  rotad unreachable (socket missing, connection refused, permission denied, no answer)
  76  protocol mismatch (rotad speaks another wire protocol version)";

/// The `rota` command line.
#[derive(Debug, Parser)]
#[command(
    name = "rota",
    version,
    about = "Talk to rotad, the certificate renewal daemon"
)]
#[command(long_about = LONG_ABOUT)]
struct Cli {
    /// rotad's UNIX socket.
    #[arg(
        long,
        global = true,
        env = "ROTA_SOCKET",
        default_value = "/var/run/rota.sock",
        value_name = "PATH"
    )]
    socket: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The nodes of a federation, the leader, its term and its lease.
    Cluster {
        /// Print the raw view instead of text.
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
    /// One line per cert: domains, days until expiry, readiness, last renewal.
    Status {
        /// Print the raw status instead of text.
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
    /// List resources, or show one, as tables or whole objects; `-w` follows changes.
    Get {
        #[command(subcommand)]
        resource: GetResource,
    },
    /// Show everything rotad knows about one resource.
    Describe {
        #[command(subcommand)]
        resource: DescribeResource,
    },
    /// Renew a cert now, whatever its expiry, and follow the renewal step by step.
    Renew {
        /// The cert's id.
        #[arg(value_parser = parse_cert_id)]
        id: CertId,
        /// Run every step against the CA's staging directory (or a throwaway local-CA order)
        /// and install nothing: the live cert, key and backoff stay as they are.
        #[arg(long)]
        dry_run: bool,
    },
    /// Revoke the installed cert at its CA, then renew it at once.
    Revoke {
        /// The cert's id.
        #[arg(value_parser = parse_cert_id)]
        id: CertId,
        /// Why (keyCompromise also retires the key, so the replacement gets a new one).
        #[arg(long, value_enum, default_value = "unspecified")]
        reason: RevokeReason,
    },
    /// Print a renewal's audit trail (the most recent one by default).
    Log {
        /// The cert's id.
        #[arg(value_parser = parse_cert_id)]
        id: CertId,
        /// The renewal's id, as listed by `rota describe cert`.
        #[arg(long, value_name = "N")]
        renewal: Option<i64>,
        /// Print the raw log instead of text.
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
    /// Send a config file to rotad: it validates it, shows the diff, writes it and reconciles.
    Apply {
        /// The config file; sent exactly as written, comments included.
        #[arg(
            short = 'f',
            long = "file",
            visible_alias = "filename",
            value_name = "FILE"
        )]
        file: PathBuf,
        /// Validate and show the diff only; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Work with the alert sinks of `alerts:`.
    Alert {
        #[command(subcommand)]
        action: AlertAction,
    },
    /// Validate a config file offline, without rotad.
    Check {
        /// The config file.
        #[arg(
            short = 'f',
            long = "file",
            visible_alias = "filename",
            value_name = "FILE"
        )]
        file: PathBuf,
    },
    /// Print a rota.yaml `certs:` block for certificates another tool manages.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Describe `rota.yaml` itself: its JSON Schema, or every key it has.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print a shell completion script (e.g. `rota completions bash > /etc/bash_completion.d/rota`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: completions::CompletionShell,
    },
    /// Write the man pages of rota (section 1) and rotad (section 8) into a directory.
    Man {
        /// Where to write the pages (created if missing).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Show this build: version, wire protocol version, features, available backend kinds.
    Version {
        /// Print the facts as data instead of text.
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// certbot's lineages (`renewal/*.conf`): same keys, same files, closest DCV.
    Certbot {
        /// certbot's config directory.
        #[arg(long, value_name = "DIR", default_value = "/etc/letsencrypt")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the JSON Schema of rota.yaml (field docs as descriptions, ranges as bounds).
    Schema,
    /// List every key of rota.yaml with its description.
    Keys {
        /// Print the keys as data instead of a table.
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
}

#[derive(Debug, Subcommand)]
enum GetResource {
    /// The certs rotad keeps fresh (`rota get cert ID` for one).
    #[command(visible_alias = "cert")]
    Certs {
        /// Show this cert only.
        #[arg(value_parser = parse_cert_id)]
        id: Option<CertId>,
        /// `wide` adds the backends and notAfter; `json` and `yaml` print whole objects shaped
        /// like cert-manager's Certificate (metadata, spec, status.conditions[]).
        #[arg(short, long, value_enum)]
        output: Option<ListFormat>,
        /// After the first answer, print a row (or object) each time a cert changes, until
        /// interrupted.
        #[arg(short, long)]
        watch: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AlertAction {
    /// Send a test alert to every sink and report each result (exit 1 if any failed).
    Test {
        /// Only the sink at this position in `alerts:` (from 0).
        #[arg(long, value_name = "N")]
        sink: Option<usize>,
        /// Print each sink's result as data instead of text (the exit code is the same).
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
}

#[derive(Debug, Subcommand)]
enum DescribeResource {
    /// One cert: spec, conditions, installed cert, backoff, recent renewals.
    #[command(visible_alias = "certs")]
    Cert {
        /// The cert's id.
        #[arg(value_parser = parse_cert_id)]
        id: CertId,
        /// Print the raw detail instead of text.
        #[arg(short, long, value_enum)]
        output: Option<DataFormat>,
    },
}

/// `-o` for a list.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ListFormat {
    Wide,
    Json,
    Yaml,
}

/// `-o` for a single document.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum DataFormat {
    Json,
    Yaml,
}

/// `--reason` of `rota revoke`, spelled as ACME and RFC 5280 spell it.
#[derive(Debug, Clone, Copy, ValueEnum)]
#[value(rename_all = "camelCase")]
enum RevokeReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl From<RevokeReason> for RevocationReason {
    fn from(reason: RevokeReason) -> Self {
        match reason {
            RevokeReason::Unspecified => Self::Unspecified,
            RevokeReason::KeyCompromise => Self::KeyCompromise,
            RevokeReason::AffiliationChanged => Self::AffiliationChanged,
            RevokeReason::Superseded => Self::Superseded,
            RevokeReason::CessationOfOperation => Self::CessationOfOperation,
        }
    }
}

fn parse_cert_id(s: &str) -> Result<CertId, String> {
    CertId::new(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Data already printed must come before the error.
            io::stdout().flush().ok();
            eprint!("{}", err.report());
            ExitCode::from(err.exit_code())
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    let daemon = Daemon::new(cli.socket);
    runtime.block_on(execute(&daemon, cli.command))
}

/// Runs one command; `check`, `import`, `config`, `completions`, `man` and `version` work
/// offline, the others talk to rotad.
async fn execute(daemon: &Daemon, command: Command) -> Result<(), CliError> {
    let now = OffsetDateTime::now_utc();
    match command {
        Command::Status { output } => status(daemon, output, now).await,
        Command::Cluster { output } => cluster(daemon, output, now).await,
        Command::Get {
            resource: GetResource::Certs { id, output, watch },
        } => get::certs(daemon, id.as_ref(), output, watch).await,
        Command::Describe {
            resource: DescribeResource::Cert { id, output },
        } => {
            let detail: CertDetail = daemon.get(&format!("/api/certs/{id}")).await?;
            emit(&match output {
                None => describe_view::describe(&detail, now),
                Some(format) => serialize(format, &detail)?,
            })
        }
        Command::Log {
            id,
            renewal,
            output,
        } => {
            let query = renewal.map_or_else(String::new, |n| format!("?renewal={n}"));
            let log: RenewalLog = daemon.get(&format!("/api/certs/{id}/log{query}")).await?;
            emit(&match output {
                None => log_view::renewal_log(&log, now),
                Some(format) => serialize(format, &log)?,
            })
        }
        Command::Renew { id, dry_run } => renew::renew(daemon, &id, dry_run).await,
        Command::Revoke { id, reason } => {
            let request = RevokeRequest {
                reason: reason.into(),
            };
            let done: RevokeResponse = daemon
                .post(&format!("/api/certs/{id}/revoke"), &request)
                .await?;
            let retired = done
                .retired_key
                .map(|k| format!("; the compromised key was moved to {k}"))
                .unwrap_or_default();
            let replacement = if done.replacement_queued {
                "a replacement is being issued (`rota log` shows it)"
            } else {
                "no replacement could be queued; run `rota renew`"
            };
            emit(&format!(
                "revoked {id} serial {} (audit {}){retired}; {replacement}\n",
                done.serial, done.audit_id
            ))
        }
        Command::Apply { file, dry_run } => apply::apply(daemon, &file, dry_run).await,
        Command::Alert {
            action: AlertAction::Test { sink, output },
        } => alert::test(daemon, sink, output).await,
        Command::Check { file } => apply::check(&file),
        Command::Import {
            source: ImportSource::Certbot { dir },
        } => {
            let (block, problems) = import_certbot::import(&dir)?;
            emit(&block)?;
            if problems.is_empty() {
                return Ok(());
            }
            for problem in &problems {
                eprintln!("rota: skipped: {problem}");
            }
            Err(CliError::failed(format!(
                "{} certbot lineage(s) could not be imported",
                problems.len()
            )))
        }
        Command::Config { action } => config(&action),
        Command::Completions { shell } => {
            let script = completions::script(shell, Cli::command());
            emit(&String::from_utf8_lossy(&script))
        }
        Command::Man { dir } => {
            let pages = vec![(Cli::command(), "1"), (rotad_args::Args::command(), "8")];
            let files = completions::write_man_pages(&dir, pages)?;
            emit(&format!(
                "wrote {} pages to {}\n",
                files.len(),
                dir.display()
            ))
        }
        Command::Version { output } => {
            let info = build_info::build_info();
            emit(&match output {
                None => info.text(),
                Some(format) => serialize(format, &info)?,
            })
        }
    }
}

/// `rota config schema|keys`: offline, from the config's types.
fn config(action: &ConfigAction) -> Result<(), CliError> {
    match action {
        ConfigAction::Schema => {
            let schema = serde_json::to_string_pretty(&rota_api::config::config_schema())
                .map_err(|e| CliError::failed(format!("cannot format the schema: {e}")))?;
            emit(&(schema + "\n"))
        }
        ConfigAction::Keys { output: None } => emit(&config_cmd::keys_table()),
        ConfigAction::Keys {
            output: Some(format),
        } => emit(&serialize(*format, &config_cmd::keys_data())?),
    }
}

/// `rota status`: the summary on stdout, a config rotad refused on stderr.
async fn status(
    daemon: &Daemon,
    output: Option<DataFormat>,
    now: OffsetDateTime,
) -> Result<(), CliError> {
    let status: StatusResponse = daemon.get("/api/status").await?;
    if let Some(format) = output {
        return emit(&serialize(format, &status)?);
    }
    emit(&certs_view::status_text(&status, now))?;
    if let Some(warning) = certs_view::refused_config_warning(&status.config_errors) {
        eprint!("{warning}");
    }
    Ok(())
}

async fn cluster(
    daemon: &Daemon,
    output: Option<DataFormat>,
    now: OffsetDateTime,
) -> Result<(), CliError> {
    let view: Option<ClusterView> = daemon.get("/api/cluster").await?;
    emit(&match output {
        None => cluster_view::cluster_text(view.as_ref(), now),
        Some(format) => serialize(format, &view)?,
    })
}

/// `value` as pretty JSON or YAML, newline-terminated.
fn serialize<T: Serialize>(format: DataFormat, value: &T) -> Result<String, CliError> {
    let text = match format {
        DataFormat::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string()),
        DataFormat::Yaml => serde_yaml::to_string(value).map_err(|e| e.to_string()),
    };
    text.map_err(|e| CliError::failed(format!("cannot format the answer: {e}")))
}

/// Writes `text` to stdout; a reader that went away (`rota get certs | head -1`) is no error.
pub(crate) fn emit(text: &str) -> Result<(), CliError> {
    match write_stdout(text) {
        Err(e) if e.kind() != io::ErrorKind::BrokenPipe => {
            Err(CliError::failed(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// Writes `text` to stdout and flushes it, so a watcher's reader sees each line at once.
pub(crate) fn write_stdout(text: &str) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::{
        EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_NOT_FOUND, EXIT_PROTOCOL, EXIT_UNREACHABLE,
    };

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        rotad_args::Args::command().debug_assert();
    }

    #[test]
    fn help_documents_every_exit_code() {
        for code in [
            0,
            EXIT_FAILED,
            2,
            EXIT_INVALID_CONFIG,
            EXIT_NOT_FOUND,
            EXIT_UNREACHABLE,
            EXIT_PROTOCOL,
        ] {
            assert!(
                LONG_ABOUT
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{code} "))),
                "exit code {code} is not documented"
            );
        }
    }

    #[test]
    fn cert_ids_are_checked_before_anything_is_sent() {
        let err = Cli::try_parse_from(["rota", "renew", "../etc"]).expect_err("invalid id");
        assert_eq!(err.exit_code(), 2);
        let cli = Cli::try_parse_from(["rota", "--socket", "/s", "describe", "cert", "web"])
            .expect("valid command line");
        assert!(matches!(cli.command, Command::Describe { .. }));
    }
}
