//! The SQLite side of the codec: driver errors with context, and times encoded into a
//! driver conversion failure when they cannot be. The shared decoders live in `crate::codec`.

use std::error::Error;

use time::OffsetDateTime;

use crate::StoreError;
pub(super) use crate::codec::{corrupt, decode_cert_id, decode_enum, decode_int, decode_time};

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

/// Formats a time for a time column.
pub(super) fn encode_time(at: OffsetDateTime) -> Result<String, StoreError> {
    crate::codec::format_time(at).map_err(unencodable("encoding a time"))
}
