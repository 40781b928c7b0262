//! Interim loader (replaced by the located loader): parses without positions.

use std::path::Path;

use super::{Config, ConfigErrors, ConfigIssue, LoadedConfig};

/// Reads and validates the config at `path`.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigIssue {
            file: path.display().to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: format!("cannot read the config: {e}"),
            hint: None,
        }])
    })?;
    load_str(path, text)
}

/// Validates `text` as if it were the file at `path`.
pub fn load_str(path: &Path, text: String) -> Result<LoadedConfig, ConfigErrors> {
    let config: Config = serde_yaml::from_str(&text).map_err(|e| {
        let loc = e.location();
        ConfigErrors(vec![ConfigIssue {
            file: path.display().to_string(),
            line: loc.as_ref().map_or(1, serde_yaml::Location::line),
            column: loc.as_ref().map_or(1, serde_yaml::Location::column),
            path: String::new(),
            message: e.to_string(),
            hint: None,
        }])
    })?;
    Ok(LoadedConfig {
        path: path.to_owned(),
        text,
        config,
    })
}
