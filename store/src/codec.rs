//! How both stores write rota's values and read them back: times as fixed-width UTC text,
//! enums through their `as_str`/`parse` names, ids and counts as integers. Every decoder turns
//! a value it cannot read into [`StoreError::Corrupt`] naming the field.

use std::fmt::Display;

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

use rota_api::CertId;

use crate::StoreError;

/// UTC with nine fractional digits: exact to the nanosecond, readable in a database shell, and
/// fixed width so that text order is time order and `ORDER BY` on the field sorts by time.
const TIME_FORMAT: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// A stored value that does not decode.
pub(crate) fn corrupt<E: Display>(what: &'static str) -> impl FnOnce(E) -> StoreError {
    move |e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    }
}

/// Formats a time for a time field; `Err` says why it cannot be (outside years 0–9999).
pub(crate) fn format_time(at: OffsetDateTime) -> Result<String, String> {
    let utc = at
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| format!("{at} is out of range in UTC"))?;
    utc.format(TIME_FORMAT).map_err(|e| e.to_string())
}

/// Reads a time field written by [`format_time`].
pub(crate) fn decode_time(text: &str, what: &'static str) -> Result<OffsetDateTime, StoreError> {
    PrimitiveDateTime::parse(text, TIME_FORMAT)
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|e| corrupt(what)(format!("`{text}`: {e}")))
}

/// Reads an enum field through the enum's `parse` helper.
pub(crate) fn decode_enum<T>(
    text: &str,
    parse: fn(&str) -> Option<T>,
    what: &'static str,
) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| corrupt(what)(format!("unknown value `{text}`")))
}

/// Reads a cert id field.
pub(crate) fn decode_cert_id(text: &str) -> Result<CertId, StoreError> {
    CertId::new(text).map_err(corrupt("cert_id"))
}

/// Reads an integer field into the narrower or unsigned type the API uses.
pub(crate) fn decode_int<T>(value: i64, what: &'static str) -> Result<T, StoreError>
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
        let (early_text, late_text) = (format_time(early).unwrap(), format_time(late).unwrap());
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
