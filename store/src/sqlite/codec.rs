//! How rota's values are written to and read back from SQLite columns: times as fixed-width
//! UTC text, enums through their `as_str`/`parse` names, structured values as JSON. Every
//! decoder turns a value it cannot read into [`StoreError::Corrupt`] naming the column.

use std::error::Error;
use std::fmt::Display;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use rota_api::CertId;

use crate::StoreError;

/// UTC with nine fractional digits: exact to the nanosecond, readable in a `sqlite3` shell, and
/// fixed width so that text order is time order and `ORDER BY` on the column sorts by time.
const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Attaches what was being done to a driver error.
pub(super) trait Context<T> {
    /// Maps the error to [`StoreError::Sqlite`] with `context`.
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Sqlite { context, source })
    }
}

/// A value rota cannot turn into a column (a time outside years 0–9999, a path that is not
/// UTF-8 in a JSON document); reported as the driver's own conversion failure.
pub(super) fn unencodable<E>(context: &'static str) -> impl FnOnce(E) -> StoreError
where
    E: Into<Box<dyn Error + Send + Sync>>,
{
    move |e| StoreError::Sqlite {
        context,
        source: rusqlite::Error::ToSqlConversionFailure(e.into()),
    }
}

/// A stored value that does not decode.
pub(super) fn corrupt<E: Display>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// Formats a time for a time column.
pub(super) fn encode_time(at: OffsetDateTime) -> Result<String, StoreError> {
    let utc = at
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| unencodable("encoding a time")(format!("{at} is out of range in UTC")))?;
    utc.format(TIME_FORMAT)
        .map_err(unencodable("encoding a time"))
}

/// Reads a time column written by [`encode_time`].
pub(super) fn decode_time(text: &str, what: &'static str) -> Result<OffsetDateTime, StoreError> {
    PrimitiveDateTime::parse(text, TIME_FORMAT)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|e| corrupt(what)(format!("`{text}`: {e}")))
}

/// Reads an enum column through the enum's `parse` helper.
pub(super) fn decode_enum<T>(
    text: &str,
    parse: fn(&str) -> Option<T>,
    what: &'static str,
) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| corrupt(what)(format!("unknown value `{text}`")))
}

/// Reads a cert id column.
pub(super) fn decode_cert_id(text: &str) -> Result<CertId, StoreError> {
    CertId::new(text).map_err(corrupt("cert_id"))
}

/// Reads an integer column into the narrower or unsigned type the API uses.
pub(super) fn decode_int<T>(value: i64, what: &'static str) -> Result<T, StoreError>
where
    T: TryFrom<i64>,
    T::Error: Display,
{
    T::try_from(value).map_err(|e| corrupt(what)(format!("{value}: {e}")))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_round_trip_exactly_and_sort_as_text() {
        let early = datetime!(2024-02-29 23:59:59.000_000_001 -05:00);
        let late = datetime!(2024-03-01 05:00:00 UTC);
        let (early_text, late_text) = (encode_time(early).unwrap(), encode_time(late).unwrap());
        assert_eq!(
            early_text, "2024-03-01T04:59:59.000000001Z",
            "stored in UTC"
        );
        assert_eq!(decode_time(&early_text, "t").unwrap(), early);
        assert!(early_text < late_text, "text order is time order");
    }

    #[test]
    fn undecodable_values_are_corrupt() {
        for (result, why) in [
            (decode_time("yesterday", "t").map(drop), "not a time"),
            (decode_cert_id("-x").map(drop), "not a cert id"),
            (
                decode_enum("sleeping", |_| None::<()>, "status").map(drop),
                "unknown enum name",
            ),
            (
                decode_int::<u64>(-1, "generation").map(drop),
                "negative u64",
            ),
        ] {
            assert!(matches!(result, Err(StoreError::Corrupt { .. })), "{why}");
        }
    }
}
