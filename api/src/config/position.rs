//! A place in the config text, as every located error names it.

use yaml_rust2::scanner::Marker;

/// A 1-based line and column in the config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// The first character of the file, for problems about the document as a whole.
    pub(crate) const START: Self = Self { line: 1, column: 1 };

    pub(crate) fn from_marker(marker: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 but columns from 0.
        Self {
            line: marker.line().max(1),
            column: marker.col() + 1,
        }
    }
}
