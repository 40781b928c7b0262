//! `rota apply -f FILE` sends a config to rotad, which validates, diffs and (unless
//! `--dry-run`) writes and reconciles it; `rota check -f FILE` validates one offline with the
//! same loader. Both report config problems the same way (see [`CliError::report`]).

use std::io::{self, IsTerminal};
use std::path::Path;

use rota_api::CertId;
use rota_api::config::{ConfigErrors, load_file, read_config};
use rota_api::wire::{ApplyRequest, ApplyResponse};

use crate::client::Daemon;
use crate::exit::CliError;

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const CYAN: &str = "\x1b[36m";
const RESET: &str = "\x1b[0m";

/// Sends `file`, unchanged, to rotad and prints what it changed (or would change).
pub(crate) async fn apply(daemon: &Daemon, file: &Path, dry_run: bool) -> Result<(), CliError> {
    // Read with the loader's size limit, so a wrong file (a log, /dev/zero) is refused here
    // rather than sent whole.
    let path = file.to_owned();
    let yaml = tokio::task::spawn_blocking(move || read_config(&path))
        .await
        .map_err(|e| CliError::failed(format!("cannot read {}: {e}", file.display())))?
        .map_err(|errors| invalid(file, errors))?;
    let request = ApplyRequest { yaml, dry_run };
    let response: ApplyResponse = match daemon.post("/api/config", &request).await {
        // rotad validated the text as if it were its own config file; the lines and columns
        // are those of `file`, so name it, and an editor can jump to each problem.
        Err(CliError::InvalidConfig {
            summary,
            mut issues,
        }) => {
            for issue in &mut issues {
                issue.file = file.display().to_string();
            }
            return Err(CliError::InvalidConfig { summary, issues });
        }
        other => other?,
    };
    let colour = io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    crate::emit(&apply_report(&response, dry_run, colour))
}

/// Validates `file` offline, as rotad would load it.
pub(crate) fn check(file: &Path) -> Result<(), CliError> {
    match load_file(file) {
        Ok(loaded) => {
            let n = loaded.config.certs.len();
            crate::emit(&format!("ok: {n} cert{}\n", if n == 1 { "" } else { "s" }))
        }
        Err(errors) => Err(invalid(file, errors)),
    }
}

/// `file`'s problems, as the CLI reports them.
fn invalid(file: &Path, ConfigErrors(issues): ConfigErrors) -> CliError {
    CliError::InvalidConfig {
        summary: format!("{} is not a valid rota config", file.display()),
        issues,
    }
}

/// The diff, then the certs added, changed and removed, then whether anything was written.
fn apply_report(response: &ApplyResponse, dry_run: bool, colour: bool) -> String {
    let mut lines = vec![if response.diff.is_empty() {
        "no differences from the running config\n".to_owned()
    } else {
        diff_text(&response.diff, colour)
    }];
    for (name, ids) in [
        ("added:", &response.added),
        ("changed:", &response.changed),
        ("removed:", &response.removed),
    ] {
        lines.push(format!("{name:<9}{}\n", id_list(ids)));
    }
    lines.push(
        if response.applied {
            "applied: rotad wrote the config and is reconciling\n"
        } else if dry_run {
            "dry run: nothing was written\n"
        } else {
            "nothing to apply: rotad already runs this config\n"
        }
        .to_owned(),
    );
    lines.concat()
}

/// The unified diff, with `+`/`-` lines in green/red and hunk headers in cyan if `colour`.
fn diff_text(diff: &str, colour: bool) -> String {
    let lines: Vec<String> = diff
        .lines()
        .map(|line| {
            let paint = match line.as_bytes().first() {
                _ if !colour || line.starts_with("+++") || line.starts_with("---") => None,
                Some(b'+') => Some(GREEN),
                Some(b'-') => Some(RED),
                Some(b'@') => Some(CYAN),
                _ => None,
            };
            paint.map_or_else(|| line.to_owned(), |code| format!("{code}{line}{RESET}"))
        })
        .collect();
    lines.join("\n") + "\n"
}

fn id_list(ids: &[CertId]) -> String {
    if ids.is_empty() {
        return "-".to_owned();
    }
    let ids: Vec<&str> = ids.iter().map(CertId::as_str).collect();
    ids.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIFF: &str =
        "--- running\n+++ submitted\n@@ -1,2 +1,2 @@\n certs:\n-  - id: old\n+  - id: new\n";

    fn response(applied: bool) -> ApplyResponse {
        let id = |s: &str| CertId::new(s).expect("valid id");
        ApplyResponse {
            diff: DIFF.into(),
            applied,
            added: vec![id("new")],
            changed: vec![],
            removed: vec![id("old"), id("older")],
        }
    }

    #[test]
    fn report_lists_diff_then_certs_then_outcome() {
        assert_eq!(
            apply_report(&response(false), true, false),
            format!(
                "{DIFF}added:   new\nchanged: -\nremoved: old, older\ndry run: nothing was written\n"
            )
        );
        assert!(
            apply_report(&response(true), false, false)
                .ends_with("applied: rotad wrote the config and is reconciling\n")
        );
    }

    #[test]
    fn diff_colours_only_changed_lines_and_hunks() {
        assert_eq!(
            diff_text(DIFF, true),
            "--- running\n+++ submitted\n\x1b[36m@@ -1,2 +1,2 @@\x1b[0m\n certs:\n\
             \x1b[31m-  - id: old\x1b[0m\n\x1b[32m+  - id: new\x1b[0m\n"
        );
        assert_eq!(diff_text(DIFF, false), DIFF);
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("huge.yaml");
        std::fs::write(&file, vec![b'#'; 2 * rota_api::config::MAX_CONFIG_BYTES]).expect("write");
        let Err(CliError::InvalidConfig { issues, .. }) = check(&file) else {
            panic!("an oversized config must be refused");
        };
        assert!(
            issues[0].message.contains("larger than 1 MiB"),
            "{issues:?}"
        );
    }

    #[test]
    fn check_reports_located_problems() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("bad.yaml");
        std::fs::write(
            &file,
            "certs:\n  - id: web\n    domains: [a.example]\n    bogus: 1\n",
        )
        .expect("write the fixture");
        let Err(CliError::InvalidConfig { issues, .. }) = check(&file) else {
            panic!("a bad config must be refused");
        };
        assert!(!issues.is_empty());
        assert!(
            issues
                .iter()
                .all(|i| i.file == file.display().to_string() && i.line >= 1)
        );
    }
}
