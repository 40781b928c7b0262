//! Transport errors as one line: HTTP clients wrap the useful part ("connection refused",
//! "certificate not trusted") a few causes deep.

use std::fmt::Write as _;

/// `err` and each of its causes, joined, so "error trying to connect" says why; a cause whose
/// text the line already holds is not repeated.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}
