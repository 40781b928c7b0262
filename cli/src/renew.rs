//! `rota renew ID`: asks rotad for a forced renewal and follows its NDJSON progress stream,
//! printing each step as it happens. On a terminal a spinner shows the step in flight; when
//! stdout is a pipe or a file, plain lines only.

use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use indicatif::{ProgressBar, ProgressDrawTarget};
use rota_api::CertId;
use rota_api::status::{RenewalStatus, StepStatus};
use rota_api::wire::RenewProgress;

use crate::client::Daemon;
use crate::exit::CliError;
use crate::human_time::elapsed;
use crate::log_view::step_line;
use crate::ndjson::LineSplitter;

/// How the renewal ended, as the `finished` event told.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    renewal_id: Option<i64>,
    status: RenewalStatus,
    error: Option<String>,
}

/// Renews `id` now (or, with `dry_run`, runs the whole pipeline without installing or
/// changing anything live) and succeeds only if the renewal does.
pub(crate) async fn renew(daemon: &Daemon, id: &CertId, dry_run: bool) -> Result<(), CliError> {
    let query = if dry_run { "?dry_run=true" } else { "" };
    let body = daemon
        .post_streaming(&format!("/api/certs/{id}/renew{query}"))
        .await?;
    let started = Instant::now();
    let view = ProgressView::new(id, dry_run);
    let outcome = follow(body, &view).await;
    view.finish();
    let outcome = outcome.map_err(|e| CliError::failed(format!("{e:#}; see `rota log {id}`")))?;
    let took = elapsed(time::Duration::seconds_f64(started.elapsed().as_secs_f64()));
    let number = outcome
        .renewal_id
        .map_or_else(String::new, |n| format!(" (renewal {n})"));
    match outcome.status {
        RenewalStatus::Succeeded if dry_run => crate::emit(&format!(
            "dry run of {id} succeeded in {took}{number}; nothing was installed or changed\n"
        )),
        RenewalStatus::Succeeded => crate::emit(&format!("renewed {id} in {took}{number}\n")),
        status => Err(CliError::failed(format!(
            "{} {}of {id} {}: {}",
            if dry_run { "dry run" } else { "renewal" },
            outcome
                .renewal_id
                .map_or_else(String::new, |n| format!("{n} ")),
            status.as_str(),
            outcome.error.as_deref().unwrap_or("rotad gave no reason"),
        ))),
    }
}

/// Reads the stream to its end, showing every event; the `finished` event is the outcome.
async fn follow(mut body: Incoming, view: &ProgressView) -> anyhow::Result<Outcome> {
    let mut lines = LineSplitter::default();
    let mut progress = Progress::default();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            anyhow::anyhow!("lost the connection to rotad: {e}; the renewal may still be running")
        })?;
        if let Ok(chunk) = frame.into_data() {
            for line in lines.push(&chunk) {
                progress.take_and_show(&line, view);
            }
        }
    }
    if let Some(line) = lines.finish() {
        progress.take_and_show(&line, view);
    }
    progress
        .outcome
        .ok_or_else(|| anyhow::anyhow!("rotad ended the stream before the renewal finished"))
}

/// What the stream has told so far.
#[derive(Debug, Default)]
struct Progress {
    renewal_id: Option<i64>,
    outcome: Option<Outcome>,
}

impl Progress {
    /// Parses one NDJSON line and records what it tells; `Err` is a warning for a line this
    /// rota cannot read.
    fn take(&mut self, line: &[u8]) -> Result<RenewProgress, String> {
        let event = serde_json::from_slice::<RenewProgress>(line).map_err(|e| {
            let text = String::from_utf8_lossy(line);
            format!("warning: skipped a progress line rota cannot read ({e}): {text}")
        })?;
        match &event {
            RenewProgress::Started { renewal_id } => self.renewal_id = Some(*renewal_id),
            RenewProgress::Attached | RenewProgress::Forwarded { .. } | RenewProgress::Step(_) => {}
            RenewProgress::Finished { status, error } => {
                self.outcome = Some(Outcome {
                    renewal_id: self.renewal_id,
                    status: *status,
                    error: error.clone(),
                });
            }
        }
        Ok(event)
    }

    /// Takes one line and shows the event (or the warning) on `view`.
    fn take_and_show(&mut self, line: &[u8], view: &ProgressView) {
        match self.take(line) {
            Ok(event) => view.show(&event),
            Err(warning) => view.warn(&warning),
        }
    }
}

/// Where progress goes: a spinner on a terminal, plain lines elsewhere.
enum ProgressView {
    Spinner(ProgressBar),
    Plain,
}

impl ProgressView {
    fn new(id: &CertId, dry_run: bool) -> Self {
        if !io::stdout().is_terminal() {
            return Self::Plain;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_draw_target(ProgressDrawTarget::stdout());
        let doing = if dry_run { "dry-running" } else { "renewing" };
        bar.set_message(format!("{doing} {id}"));
        bar.enable_steady_tick(Duration::from_millis(100));
        Self::Spinner(bar)
    }

    fn show(&self, event: &RenewProgress) {
        match (self, event) {
            (Self::Spinner(bar), RenewProgress::Step(step))
                if step.status == StepStatus::Started =>
            {
                bar.set_message(format!("{}  {}", step.step.as_str(), step.message));
            }
            (Self::Spinner(bar), _) => {
                if let Some(line) = progress_line(event) {
                    bar.println(line);
                }
            }
            (Self::Plain, _) => {
                if let Some(line) = progress_line(event) {
                    // A closed stdout must not stop us from reporting the outcome.
                    crate::emit(&format!("{line}\n")).ok();
                }
            }
        }
    }

    fn warn(&self, message: &str) {
        match self {
            Self::Spinner(bar) => bar.suspend(|| eprintln!("{message}")),
            Self::Plain => eprintln!("{message}"),
        }
    }

    fn finish(self) {
        if let Self::Spinner(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// The line printed for an event; `finished` has none (the outcome is printed after it).
fn progress_line(event: &RenewProgress) -> Option<String> {
    match event {
        RenewProgress::Attached => {
            Some("a renewal of this cert was already queued or running: following it".to_owned())
        }
        RenewProgress::Forwarded { leader } => Some(format!(
            "this node follows: forwarded the renewal to the leader{}; following it through the shared store",
            leader
                .as_deref()
                .map_or_else(String::new, |node| format!(" ({node})"))
        )),
        RenewProgress::Started { renewal_id } => Some(format!("renewal {renewal_id} started")),
        RenewProgress::Step(step) => Some(step_line(step)),
        RenewProgress::Finished { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[&str] = &[
        r#"{"type":"started","renewal_id":9}"#,
        r#"{"type":"step","renewal_id":9,"seq":1,"step":"load_key","status":"succeeded","message":"generated ECDSA P-256 key","at":"2025-03-01T12:00:00Z"}"#,
        r#"{"type":"step","renewal_id":9,"seq":2,"step":"submit_order","status":"failed","message":"CA said no","at":"2025-03-01T12:00:01Z"}"#,
        r#"{"type":"finished","status":"failed","error":"submit_order: CA said no"}"#,
    ];

    #[test]
    fn progress_lines_show_steps_as_they_happen() {
        let lines: Vec<Option<String>> = STREAM
            .iter()
            .map(|l| serde_json::from_str(l).expect("valid event"))
            .map(|e| progress_line(&e))
            .collect();
        assert_eq!(
            lines,
            [
                Some("renewal 9 started".to_owned()),
                Some("✓ load_key          generated ECDSA P-256 key".to_owned()),
                Some("✗ submit_order      CA said no".to_owned()),
                None,
            ]
        );
    }

    #[test]
    fn a_forwarded_renewal_says_so_and_names_the_leader() {
        let event: RenewProgress =
            serde_json::from_str(r#"{"type":"forwarded","leader":"node-a"}"#).expect("valid");
        assert_eq!(
            progress_line(&event).as_deref(),
            Some(
                "this node follows: forwarded the renewal to the leader (node-a); following it \
                 through the shared store"
            )
        );
    }

    #[test]
    fn the_finished_event_is_the_outcome_and_bad_lines_are_skipped() {
        let mut progress = Progress::default();
        for line in STREAM.iter().take(3) {
            assert!(progress.take(line.as_bytes()).is_ok());
        }
        let warning = progress
            .take(b"{\"type\":\"surprise\"}")
            .expect_err("unknown event");
        assert!(
            warning.starts_with("warning: skipped a progress line"),
            "{warning}"
        );
        assert_eq!(progress.outcome, None);
        assert!(progress.take(STREAM[3].as_bytes()).is_ok());
        assert_eq!(
            progress.outcome,
            Some(Outcome {
                renewal_id: Some(9),
                status: RenewalStatus::Failed,
                error: Some("submit_order: CA said no".into()),
            })
        );
    }
}
