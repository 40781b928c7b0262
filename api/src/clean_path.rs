//! Lexical path cleaning, shared by the config (paths relative to the file) and the secret
//! sources it names.

use std::path::{Component, Path, PathBuf};

/// `base/rel` with `.` and `..` resolved lexically, so `../state` under `/etc/rota` reads
/// `/etc/state` in logs and errors, as the operator wrote it, not `/etc/rota/../state`.
pub(crate) fn join_clean(base: &Path, rel: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in base.join(rel).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `..` of the root is the root.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(Component::ParentDir),
            },
            other => out.push(other),
        }
    }
    out
}
