//! Located config errors: each says where (file, line, column, field path), what is wrong and
//! how to fix it. A load reports all of them at once.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigIssue {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path such as `certs[2].install.directory`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when there is more to say than the message.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n    hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigIssue>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} problem{} in the config:",
            if n == 1 { "" } else { "s" }
        )?;
        for issue in &self.0 {
            writeln!(f, "  {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A problem found by one stage of the loader, before it is placed in the file: stages know
/// the field path, and the position index turns it into a [`ConfigIssue`] at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Field path of the node the problem is about.
    pub path: String,
    /// Which spot of that node the operator should look at.
    pub anchor: Anchor,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Where a [`Problem`] points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Anchor {
    /// The node's value (for a mapping, its first key; for a flow collection, its bracket).
    Value,
    /// The key naming the node, e.g. an unknown or duplicated field.
    Key,
    /// A position the parser reported itself (syntax errors).
    At(super::position::Position),
}

impl Problem {
    /// A problem about the value at `path`.
    pub(crate) fn value(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            anchor: Anchor::Value,
            message: message.into(),
            hint: None,
        }
    }

    /// A problem about the key that names the node at `path`.
    pub(crate) fn key(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            anchor: Anchor::Key,
            ..Self::value(path, message)
        }
    }

    /// Adds how to fix it.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
