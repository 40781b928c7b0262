//! Alert sinks, one module per `alerts: [{ kind }]`. They only deliver: when an alert is due,
//! and what it says, is the reconciler's business.

pub(crate) mod email;
mod mail_text;
pub(crate) mod webhook;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A time as every alert shows it: RFC 3339, UTC, whole seconds.
fn rfc3339(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    let utc = utc.replace_nanosecond(0).unwrap_or(utc);
    utc.format(&Rfc3339).unwrap_or_else(|_| utc.to_string())
}
