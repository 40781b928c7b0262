//! Field paths such as `certs[2].install.directory`: the one spelling shared by the position
//! index, the interpolator, serde's error paths and the validator, so a path built by any of
//! them finds the node the parser saw.

use serde_path_to_error::{Path, Segment};

/// The path of field `key` inside the mapping at `parent` (`""` is the document root).
pub(crate) fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// The path of item `index` of the sequence at `parent`.
pub(crate) fn item(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path one level up (`a.b[1]` → `a.b`, `a.b` → `a`, `a` → ``), or `None` at the root.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rfind(['.', '[']).map_or("", |cut| &path[..cut]))
}

/// The last field name in `path` (`certs[0].ca` → `ca`, `alerts[1]` → `alerts`).
pub(crate) fn last_field(path: &str) -> &str {
    let mut rest = path;
    while let Some(open) = rest.strip_suffix(']').and_then(|r| r.rfind('[')) {
        rest = &rest[..open];
    }
    rest.rsplit('.').next().unwrap_or(rest)
}

/// Whether `path` is `ancestor` or below it.
pub(crate) fn is_within(path: &str, ancestor: &str) -> bool {
    path.strip_prefix(ancestor)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// `base` extended by the path serde reported inside it.
pub(crate) fn join_serde(base: &str, inner: &Path) -> String {
    inner
        .iter()
        .fold(base.to_owned(), |path, segment| match segment {
            Segment::Seq { index } => item(&path, *index),
            Segment::Map { key } => child(&path, key),
            Segment::Enum { variant } => child(&path, variant),
            // serde could not tell which field it was in; the enclosing node is the best we have.
            Segment::Unknown => path,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_and_fields() {
        assert_eq!(
            parent("certs[2].install.directory"),
            Some("certs[2].install")
        );
        assert_eq!(parent("certs[2]"), Some("certs"));
        assert_eq!(parent("certs"), Some(""));
        assert_eq!(parent(""), None);
        assert_eq!(last_field("certs[0].ca"), "ca");
        assert_eq!(last_field("alerts[1]"), "alerts");
        assert_eq!(last_field("certs[0].domains[3]"), "domains");
        assert_eq!(child("", "daemon"), "daemon");
        assert_eq!(item("certs", 0), "certs[0]");
    }
}
