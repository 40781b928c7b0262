//! The database file on disk: created owner-only before SQLite touches it (it holds every
//! cert's history and the DCV journal), and switched to WAL so the dashboard's reads never
//! wait behind a renewal's writes.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::codec::Context as _;
use crate::StoreError;

/// Creates missing parent directories (0700) and the file itself (0600), and tightens the
/// file and any leftover WAL/shared-memory files that are readable by group or others.
pub(super) fn prepare(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io_error("creating the directory", parent))?;
    }
    // Created here rather than by SQLite, whose files follow the umask (often 0644).
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error("creating", path))?;
    tighten(path)?;
    // SQLite gives these the database file's mode when it creates them, but ones left by a
    // crash under an older, looser file keep theirs, and the WAL holds recent rows.
    for suffix in ["-wal", "-shm"] {
        let mut sidecar = path.as_os_str().to_owned();
        sidecar.push(suffix);
        let sidecar = PathBuf::from(sidecar);
        if sidecar.exists() {
            tighten(&sidecar)?;
        }
    }
    Ok(())
}

/// Sets WAL journal mode, and fails if SQLite keeps another (WAL needs a local filesystem).
pub(super) fn enable_wal(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("enabling WAL journal mode")?;
    if mode.eq_ignore_ascii_case("wal") {
        return Ok(());
    }
    Err(StoreError::Io {
        context: "cannot use WAL journal mode (it needs a local filesystem) for",
        path: path.to_owned(),
        source: io::Error::other(format!("SQLite kept journal mode `{mode}`")),
    })
}

/// Drops any group/other permission bits from `path`.
fn tighten(path: &Path) -> Result<(), StoreError> {
    let mode = std::fs::metadata(path)
        .map_err(io_error("reading the mode of", path))?
        .permissions()
        .mode();
    let group_and_other = mode & 0o077;
    if group_and_other == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode & 0o700))
        .map_err(io_error("restricting to its owner", path))
}

fn io_error(context: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io {
        context,
        path,
        source,
    }
}
