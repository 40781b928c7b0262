//! The loader: size check → position index (which also bounds depth and aliases) → YAML
//! value → `${VAR}` interpolation → typed blocks → paths made absolute → semantic checks. Every stage reports problems by field path; they
//! are placed in the file at the end and returned together, in document order.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

use super::LoadedConfig;
use super::blocks::{Parsed, deserialize_blocks};
use super::error::{Anchor, ConfigErrors, ConfigIssue, Problem};
use super::field_path::is_within;
use super::interpolate::{EnvLookup, Substitution, interpolate, scrub};
use super::locate::{PositionIndex, locate};
use super::position::Position;
use super::relative_paths::resolve_relative;
use super::validate::validate;

/// The largest config accepted, in bytes. 1,000 certs take about 250 KiB; anything much
/// larger is a wrong file or an attempt to exhaust the parser, and is refused unread.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Reads and validates the config at `path`.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    load_str(path, read_config(path)?)
}

/// Reads the config text at `path`, refusing a file over [`MAX_CONFIG_BYTES`] without
/// reading the rest of it.
pub fn read_config(path: &Path) -> Result<String, ConfigErrors> {
    let file = path.display().to_string();
    let cannot_read = |e: std::io::Error| {
        whole_file_issue(
            &file,
            format!("cannot read the config: {e}"),
            "check the path given with `--config` or `ROTA_CONFIG`",
        )
    };
    let mut text = String::new();
    // One byte more than the limit is enough to know the file is over it, whatever its
    // metadata says (a FIFO or a file still growing has no useful length).
    std::fs::File::open(path)
        .and_then(|f| {
            f.take(MAX_CONFIG_BYTES as u64 + 1)
                .read_to_string(&mut text)
        })
        .map_err(cannot_read)?;
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large(&file));
    }
    Ok(text)
}

/// Validates `text` as if it were the file at `path`, against the process environment.
pub fn load_str(path: &Path, text: String) -> Result<LoadedConfig, ConfigErrors> {
    load_str_with_env(path, text, &|name| std::env::var(name).ok())
}

/// Validates `text` as if it were the file at `path`; every environment lookup (`${VAR}`,
/// `env:VAR` secrets) goes through `env`.
pub fn load_str_with_env(
    path: &Path,
    text: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, ConfigErrors> {
    let file = path.display().to_string();
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large(&file));
    }
    let positions =
        locate(&text).map_err(|found| place(&file, &PositionIndex::default(), found))?;
    match check(path, &text, &positions, env) {
        Ok((parsed, substituted)) => Ok(LoadedConfig {
            path: path.to_owned(),
            text,
            config: parsed.config,
            positions,
            substituted,
        }),
        Err(found) => Err(place(&file, &positions, found)),
    }
}

/// Everything after indexing, with the `${VAR}` substitutions made; `Err` holds every
/// problem found.
fn check(
    path: &Path,
    text: &str,
    index: &PositionIndex,
    env: EnvLookup<'_>,
) -> Result<(Parsed, Vec<Substitution>), Vec<Problem>> {
    let mut root: Value = serde_yaml::from_str(text).map_err(|e| vec![yaml_problem(&e)])?;
    root.apply_merge().map_err(|e| {
        vec![
            Problem::value("", format!("cannot apply a `<<` merge: {e}"))
                .hint("`<<` takes a mapping or a list of mappings, e.g. `<<: *defaults`"),
        ]
    })?;
    let mut substituted = Vec::new();
    let mut found = interpolate(&mut root, "", env, &mut substituted);
    // A field whose `${VAR}` failed still holds the raw text; what later stages say about
    // that text would only repeat the problem.
    let failed: Vec<String> = found.iter().map(|p| p.path.clone()).collect();
    let (mut parsed, blocks) = deserialize_blocks(root);
    let mut later = blocks;
    later.extend(resolve_relative(&mut parsed, &config_dir(path)));
    later.extend(validate(&parsed, index, env));
    found.extend(
        later
            .into_iter()
            .filter(|p| !failed.iter().any(|f| is_within(&p.path, f))),
    );
    scrub(&mut found, &substituted);
    if found.is_empty() {
        Ok((parsed, substituted))
    } else {
        Err(found)
    }
}

/// One issue about the file as a whole, placed at its first character.
fn whole_file_issue(file: &str, message: String, hint: &str) -> ConfigErrors {
    ConfigErrors(vec![ConfigIssue {
        file: file.to_owned(),
        line: 1,
        column: 1,
        path: String::new(),
        message,
        hint: Some(hint.to_owned()),
    }])
}

/// A config over [`MAX_CONFIG_BYTES`].
fn too_large(file: &str) -> ConfigErrors {
    whole_file_issue(
        file,
        format!(
            "the config is larger than 1 MiB ({MAX_CONFIG_BYTES} bytes), the most rota reads: it was not parsed"
        ),
        "check that this is the right file: a rota.yaml for 1,000 certs is about 250 KiB",
    )
}

/// A syntax error that yaml-rust2 accepted but serde_yaml's parser (libyaml) did not, or a
/// number too large for serde_yaml's tree (past 64 bits, which it reports in Rust's terms).
fn yaml_problem(err: &serde_yaml::Error) -> Problem {
    let at = err.location().map_or(Position::START, |l| Position {
        line: l.line(),
        column: l.column(),
    });
    let raw = err.to_string();
    let (message, hint) = if raw.contains(" as u128") || raw.contains(" as i128") {
        (
            format!(
                "a number here is larger than any setting takes (at most {})",
                u64::MAX
            ),
            "write a number within the setting's range (see the configuration reference), or quote it if it is text",
        )
    } else {
        (
            format!("YAML syntax error: {raw}"),
            "check the indentation and the quoting on this line and the line before it",
        )
    };
    Problem {
        anchor: Anchor::At(at),
        ..Problem::value("", message)
    }
    .hint(hint)
}

/// The directory relative paths are taken from, made absolute so that they keep their
/// meaning if the working directory changes.
fn config_dir(config: &Path) -> PathBuf {
    let dir = config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Places every problem in `file` and orders them as they appear in it.
fn place(file: &str, index: &PositionIndex, found: Vec<Problem>) -> ConfigErrors {
    let mut issues: Vec<ConfigIssue> = found.into_iter().map(|p| index.place(file, p)).collect();
    // Stable, so problems at the same spot keep the order the stages found them in.
    issues.sort_by_key(|issue| (issue.line, issue.column));
    ConfigErrors(issues)
}
