//! `rota.yaml`: the typed schema, and loading it into a [`LoadedConfig`] or a list of every
//! problem found, each located by file, line, column and field path.

mod access;
mod alert_label;
mod as_written;
mod availability;
mod blocks;
mod diagnose;
mod error;
mod field_path;
mod interpolate;
mod json_schema;
mod load;
mod locate;
mod position;
mod position_index;
mod range_check;
mod ranges;
mod relative_paths;
mod restart_only;
mod schema;
mod secrets;
mod validate;

use std::path::{Path, PathBuf};

pub use as_written::AsWrittenError;
pub use error::{ConfigErrors, ConfigIssue};
pub use json_schema::{KeyPath, config_schema, key_paths};
pub use load::{MAX_CONFIG_BYTES, load_file, load_str, load_str_with_env, read_config};
pub use schema::*;

use crate::names::CertId;
use error::Problem;
use interpolate::{Substitution, scrub};
use locate::PositionIndex;

/// Where the config is read from when neither `--config` nor `ROTA_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/rota/rota.yaml";

/// The environment variable that overrides [`DEFAULT_CONFIG_PATH`].
pub const CONFIG_ENV: &str = "ROTA_CONFIG";

/// The config file to use: `--config` if given, else `ROTA_CONFIG`, else [`DEFAULT_CONFIG_PATH`].
#[must_use]
pub fn config_path(cli: Option<PathBuf>) -> PathBuf {
    config_path_with_env(cli, &|name| std::env::var(name).ok())
}

/// [`config_path`] with the environment lookup injected (for tests).
#[must_use]
pub fn config_path_with_env(cli: Option<PathBuf>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    cli.or_else(|| {
        // An exported but empty variable is treated as unset, as shells commonly do.
        env(CONFIG_ENV).filter(|v| !v.is_empty()).map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
}

/// A validated config together with the text and file it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The file it was read from (or is to be written to).
    pub path: PathBuf,
    /// The text exactly as written, comments included.
    pub text: String,
    /// The typed tree, with relative paths made relative to the file's directory.
    pub config: Config,
    /// Where each field was written, to locate problems found after loading.
    positions: PositionIndex,
    /// What `${VAR}` changed, so problems found after loading quote the text as written.
    substituted: Vec<Substitution>,
}

impl LoadedConfig {
    /// A problem with the field at `path` (e.g. `certs[0].install`) found after loading, such
    /// as a backend that cannot be built, located where that field is written, and quoting
    /// `${VAR}` as written rather than its value.
    #[must_use]
    pub fn issue_at(&self, path: &str, message: String, hint: Option<String>) -> ConfigIssue {
        let mut problem = [Problem {
            hint,
            ..Problem::value(path, message)
        }];
        scrub(&mut problem, &self.substituted);
        let [problem] = problem;
        self.positions
            .place(&self.path.display().to_string(), problem)
    }

    /// The cert with this id.
    #[must_use]
    pub fn cert(&self, id: &CertId) -> Option<&CertSpec> {
        self.config.certs.iter().find(|c| &c.id == id)
    }
}

impl Config {
    /// This config as a dry run uses it: the `acme:` block pointed at its dry-run directory
    /// and account (see [`AcmeAccount::dry_run`]); everything else as it is.
    #[must_use]
    pub fn for_dry_run(&self) -> Self {
        let mut config = self.clone();
        config.acme = self.acme.as_ref().map(AcmeAccount::dry_run);
        config
    }

    /// The local CA's directory: `local_ca.directory`, else `local-ca/` beside the database.
    #[must_use]
    pub fn local_ca_directory(&self) -> PathBuf {
        self.local_ca.directory.clone().unwrap_or_else(|| {
            self.daemon
                .database_path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join("local-ca")
        })
    }
}

/// A stable hash of a cert's spec: it changes exactly when the spec does, across restarts and
/// builds (FNV-1a over the spec's JSON form, which has a fixed field order).
#[must_use]
pub fn spec_hash(cert: &CertSpec) -> u64 {
    let json = serde_json::to_vec(cert).unwrap_or_default();
    let hash = json.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    // Hashes are stored as SQLite INTEGER (i64); keep them positive.
    hash >> 1
}
