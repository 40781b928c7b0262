//! `rota alert test [--sink N]`: rotad sends a test alert to every sink (or sink N) and
//! answers with each result; this prints one line per sink and fails if any sink did.

use std::fmt::Write as _;

use rota_api::wire::{AlertTestRequest, AlertTestResponse, AlertTestResult};

use crate::client::Daemon;
use crate::exit::CliError;
use crate::{DataFormat, emit, serialize};

/// Asks rotad for the test and reports it (as text, or as data with `-o`); exit 1 if any
/// sink failed.
pub(crate) async fn test(
    daemon: &Daemon,
    sink: Option<usize>,
    output: Option<DataFormat>,
) -> Result<(), CliError> {
    let answer: AlertTestResponse = daemon
        .post("/api/alerts/test", &AlertTestRequest { sink })
        .await?;
    emit(&match output {
        None => report(&answer.results),
        Some(format) => serialize(format, &answer)?,
    })?;
    let failed = answer.results.iter().filter(|r| r.error.is_some()).count();
    if failed == 0 {
        return Ok(());
    }
    Err(CliError::failed(format!(
        "{failed} of {} alert sinks did not take the test alert",
        answer.results.len()
    )))
}

/// One line per sink: `sink 0 (webhook to https://hooks.test): delivered`.
fn report(results: &[AlertTestResult]) -> String {
    let mut text = String::new();
    for r in results {
        let outcome = r
            .error
            .as_ref()
            .map_or_else(|| "delivered".to_owned(), |e| format!("FAILED: {e}"));
        let _ = writeln!(text, "sink {} ({}): {outcome}", r.sink, r.sink_label);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sink_gets_a_line_saying_how_it_went() {
        let results = [
            AlertTestResult {
                sink: 0,
                sink_label: "email to ops@a.test".into(),
                error: None,
            },
            AlertTestResult {
                sink: 1,
                sink_label: "webhook to https://hooks.a.test".into(),
                error: Some("webhook: the receiver answered 404 Not Found".into()),
            },
        ];
        assert_eq!(
            report(&results),
            "sink 0 (email to ops@a.test): delivered\n\
             sink 1 (webhook to https://hooks.a.test): FAILED: webhook: the receiver answered 404 Not Found\n"
        );
    }
}
