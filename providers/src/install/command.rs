//! Runs an operator's command (`nginx -t`, `systemctl reload nginx`) the way the config
//! reference promises: the argv as written, without a shell (no globbing, no variables), no
//! stdin, bounded in time (the child is killed when the time is up) and in how much of its
//! output is kept. A failure carries the command and what it printed, so the `Failing`
//! condition says what the peer said.

use std::fmt::Write as _;
use std::process::Stdio;
use std::time::Duration;

use rota_api::BackendError;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

/// How much of a command's output goes into an error message.
const KEPT_OUTPUT: usize = 2000;

/// Runs `argv` and succeeds when it exits 0 within `timeout`.
pub(crate) async fn run(
    backend: &'static str,
    argv: &[String],
    timeout: Duration,
) -> Result<(), BackendError> {
    run_with_env(backend, argv, &[], timeout).await.map(drop)
}

/// What a command that exited 0 left behind, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its exit status, as the OS words it (`exit status: 0`).
    pub status: String,
    /// The start of what it printed on stderr, trimmed; empty when it printed nothing.
    pub stderr: String,
}

/// Runs `argv` with `env` added to rotad's environment and succeeds when it exits 0 within
/// `timeout`, returning its status and stderr.
pub(crate) async fn run_with_env(
    backend: &'static str,
    argv: &[String],
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<Finished, BackendError> {
    let shown = display_argv(argv);
    let (program, arguments) = argv
        .split_first()
        .ok_or_else(|| BackendError::invalid(backend, "the command is empty"))?;
    let mut child = Command::new(program)
        .args(arguments)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Dropping the future at the timeout drops the child, and with it the process.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| BackendError::Refused {
            backend,
            detail: format!(
                "cannot run `{shown}`: {e} (is `{program}` installed and on rotad's PATH? a full path also works)"
            ),
        })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = async {
        let (status, stdout, stderr) =
            tokio::join!(child.wait(), kept_output(stdout), kept_output(stderr));
        (status, stdout, stderr)
    };
    let (status, stdout, stderr) =
        tokio::time::timeout(timeout, finished)
            .await
            .map_err(|_| BackendError::Timeout {
                backend,
                what: format!("`{shown}` (it was killed)"),
                after: timeout,
            })?;
    let status = status.map_err(|e| BackendError::Refused {
        backend,
        detail: format!("`{shown}` could not be waited for: {e}"),
    })?;
    if status.success() {
        return Ok(Finished {
            status: status.to_string(),
            stderr,
        });
    }
    // nginx reports on stderr; a wrapper script may only use stdout.
    let said = if stderr.is_empty() { stdout } else { stderr };
    let mut detail = format!("`{shown}` failed ({status})");
    if !said.is_empty() {
        let _ = write!(detail, ": {said}");
    }
    Err(BackendError::Refused { backend, detail })
}

/// Reads a pipe to its end, keeping the first [`KEPT_OUTPUT`] bytes, trimmed; reading on past
/// them keeps a chatty child from blocking on a full pipe.
async fn kept_output(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    if (&mut pipe)
        .take(KEPT_OUTPUT as u64)
        .read_to_end(&mut kept)
        .await
        .is_err()
    {
        return String::new();
    }
    let more = tokio::io::copy(&mut pipe, &mut tokio::io::sink())
        .await
        .is_ok_and(|n| n > 0);
    let mut text = String::from_utf8_lossy(&kept).trim().to_owned();
    if more {
        text.push_str(" […]");
    }
    text
}

/// `argv` as an operator would type it, quoting the words a shell would split.
pub(crate) fn display_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|word| {
            if word.is_empty() || word.contains(|c: char| c.is_whitespace() || c == '\'') {
                format!("'{}'", word.replace('\'', r"'\''"))
            } else {
                word.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    const LONG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_zero_exit_succeeds_and_no_shell_reads_the_words() {
        let dir = tempfile::tempdir().unwrap();
        // Without a shell `$HOME` and `*` stay as written: the file gets exactly this name.
        let name = dir.path().join("$HOME *");
        run("test", &argv(&["touch", &name.display().to_string()]), LONG)
            .await
            .unwrap();
        assert!(name.exists());
    }

    #[tokio::test]
    async fn a_failure_names_the_command_and_what_it_said() {
        let script = "echo on stdout; echo '  nginx: [emerg] bad  ' >&2; exit 3";
        let err = run("nginx", &argv(&["sh", "-c", script]), LONG)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, BackendError::Refused { .. }), "{text}");
        assert!(text.contains("`sh -c 'echo on stdout;"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(
            text.ends_with(": nginx: [emerg] bad"),
            "stderr, trimmed: {text}"
        );

        let quiet_stderr = run(
            "nginx",
            &argv(&["sh", "-c", "echo only here; exit 1"]),
            LONG,
        )
        .await
        .unwrap_err();
        assert!(
            quiet_stderr.to_string().ends_with(": only here"),
            "{quiet_stderr}"
        );
    }

    #[tokio::test]
    async fn output_is_bounded() {
        let err = run(
            "test",
            &argv(&["sh", "-c", "yes error | head -c 1000000 >&2; exit 1"]),
            LONG,
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.len() < KEPT_OUTPUT + 200, "{} bytes", err.len());
        assert!(err.ends_with("[…]"), "says it was cut");
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let script = format!("echo $$ > {}; exec sleep 30", pid_file.display());
        let started = Instant::now();
        let err = run(
            "test",
            &argv(&["sh", "-c", &script]),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BackendError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let proc = std::path::PathBuf::from(format!("/proc/{}", pid.trim()));
        // Killed is not yet reaped: give the runtime's reaper a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc.exists() && !is_zombie(&proc) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!proc.exists() || is_zombie(&proc), "the child was killed");
    }

    fn is_zombie(proc: &std::path::Path) -> bool {
        std::fs::read_to_string(proc.join("stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn env_is_added_and_stderr_is_kept_on_success() {
        let finished = run_with_env(
            "test",
            &argv(&["sh", "-c", "echo \"id=$ROTA_X path=${PATH:+set}\" >&2"]),
            &[("ROTA_X", "web".to_owned())],
            LONG,
        )
        .await
        .unwrap();
        assert_eq!(finished.status, "exit status: 0");
        assert_eq!(
            finished.stderr, "id=web path=set",
            "rotad's PATH is inherited"
        );
    }

    #[tokio::test]
    async fn a_missing_program_says_so() {
        let err = run("nginx", &argv(&["/nonexistent/nginx", "-t"]), LONG)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot run `/nonexistent/nginx -t`"), "{err}");
    }

    #[test]
    fn argv_is_shown_as_typed() {
        assert_eq!(
            display_argv(&argv(&["nginx", "-s", "reload"])),
            "nginx -s reload"
        );
        assert_eq!(
            display_argv(&argv(&["a b", "", "it's"])),
            r"'a b' '' 'it'\''s'"
        );
    }
}
