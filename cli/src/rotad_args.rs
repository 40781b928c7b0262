//! rotad's command line, shared by the `rotad` binary and `rota man` (which writes its page).

use std::path::PathBuf;

/// rota's daemon: keeps the configured certificates issued, installed and fresh.
///
/// rotad reloads its config when the file changes and on SIGHUP, and stops on SIGTERM or
/// SIGINT after letting in-flight renewals finish.
#[derive(Debug, clap::Parser)]
#[command(name = "rotad", version, about)]
pub(crate) struct Args {
    /// The config file; also where `rota apply` writes.
    #[arg(long, short, env = rota_api::config::CONFIG_ENV, default_value = rota_api::config::DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}
