//! The database file on disk: created owner-only before SQLite touches it (it holds every
//! cert's history and the DCV journal), and switched to WAL so the dashboard's reads never
//! wait behind a renewal's writes. rotad changes the mode only of a database file: a path
//! that names a symlink or a file that is not SQLite's is refused untouched, so a
//! `database_path` pointed at someone else's file cannot get it chmod-ed.

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
    refuse_symlink(path)?;
    // Created here rather than by SQLite, whose files follow the umask (often 0644).
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error("creating", path))?;
    refuse_foreign(&mut file, path)?;
    tighten(&file, path)?;
    // SQLite gives these the database file's mode when it creates them, but ones left by a
    // crash under an older, looser file keep theirs, and the WAL holds recent rows.
    for suffix in ["-wal", "-shm"] {
        let mut sidecar = path.as_os_str().to_owned();
        sidecar.push(suffix);
        let sidecar = PathBuf::from(sidecar);
        if std::fs::symlink_metadata(&sidecar).is_ok_and(|m| m.is_file()) {
            let file = std::fs::File::open(&sidecar).map_err(io_error("opening", &sidecar))?;
            tighten(&file, &sidecar)?;
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

/// The first bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A symlink at `daemon.database_path` could point anywhere; rotad never follows it.
fn refuse_symlink(path: &Path) -> Result<(), StoreError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(StoreError::Io {
            context: "refusing to open the database through a symbolic link:",
            path: path.to_owned(),
            source: io::Error::other("point daemon.database_path at the file itself"),
        }),
        _ => Ok(()),
    }
}

/// Refuses an existing file that is neither empty nor a SQLite database.
fn refuse_foreign(file: &mut std::fs::File, path: &Path) -> Result<(), StoreError> {
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    io::Read::read_to_end(
        &mut io::Read::take(&mut *file, SQLITE_HEADER.len() as u64),
        &mut header,
    )
    .map_err(io_error("reading", path))?;
    if header.is_empty() || header == SQLITE_HEADER {
        return Ok(());
    }
    Err(StoreError::Io {
        context: "refusing to use (or change the mode of) a file that is not a SQLite database:",
        path: path.to_owned(),
        source: io::Error::other(
            "daemon.database_path must name rota's database or a path where none exists yet",
        ),
    })
}

/// Drops any group/other permission bits from the open `file` (fchmod: the path cannot be
/// swapped underneath).
fn tighten(file: &std::fs::File, path: &Path) -> Result<(), StoreError> {
    let mode = file
        .metadata()
        .map_err(io_error("reading the mode of", path))?
        .permissions()
        .mode();
    let group_and_other = mode & 0o077;
    if group_and_other == 0 {
        return Ok(());
    }
    file.set_permissions(Permissions::from_mode(mode & 0o700))
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
