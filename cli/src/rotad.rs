//! `rotad`, the rota daemon: renews, installs and audits the certs in its config, and serves
//! the API the `rota` CLI and the dashboard talk to.

mod rotad_args;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use rota_api::config::ConfigErrors;
use tracing_subscriber::EnvFilter;

use crate::rotad_args::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rotad: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(rota_server::run(rota_server::DaemonOptions {
        config_path: args.config,
    }));
    // A renewal stuck in blocking I/O (a hung NFS mount, say) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<ConfigErrors>().is_some() => {
            eprintln!("rotad: {e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("rotad: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether `NO_COLOR` (<https://no-color.org>) asks for plain output: set and not empty.
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}
