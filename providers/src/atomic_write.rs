//! Crash-safe file writes: every file rota owns (installed certs, private keys, the local CA,
//! the config `rota apply` replaces) is written to a sibling temp file, fsynced, renamed over
//! its target and the directory fsynced, so a reader or a crash sees the old bytes or the new
//! ones, never a torn mix.
//!
//! Many of these directories belong to someone less trusted than rotad (a web server's
//! document root, an app's cert directory), who can plant a symlink in them. No write here
//! follows one: the temp file is created with `O_CREAT | O_EXCL`, which fails on any existing
//! name, a symlink included, and never follows it; `rename(2)` replaces a symlink at the
//! target rather than writing through it; and a directory rota creates is chmodded through a
//! handle opened with `O_NOFOLLOW | O_DIRECTORY`, so a symlink swapped in for it is refused
//! instead of having its target chmodded. A symlinked *intermediate* directory is a matter of
//! policy, decided by the caller (see `dcv::webroot`).

use std::fs::{self, DirBuilder, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Whether the final rename may replace an existing file.
#[derive(Clone, Copy)]
enum Target {
    Replace,
    MustNotExist,
}

/// Atomically replaces `path` with `contents`, leaving it with exactly `mode` (umask ignored).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_via_temp(path, contents, mode, Target::Replace)
}

/// Like [`write_atomic`], but fails with `AlreadyExists` instead of replacing a file that
/// appeared meanwhile, so two writers racing to create a key never overwrite each other.
pub(crate) fn create_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_via_temp(path, contents, mode, Target::MustNotExist)
}

fn write_via_temp(path: &Path, contents: &[u8], mode: u32, target: Target) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    // The temp file is created 0600 in `dir` (same file system, so the rename is atomic) with
    // `create_new` (`O_EXCL`: a planted name, symlink or not, is never opened) and removed
    // when `temp` drops on any error below.
    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    // fchmod is not subject to the umask, and happens before any byte is written.
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    match target {
        Target::Replace => temp.persist(path),
        Target::MustNotExist => temp.persist_noclobber(path),
    }
    .map_err(|e| e.error)?;
    // The rename is only durable once the directory entry is.
    File::open(dir)?.sync_all()
}

/// Renames `from` to `to` (replacing it atomically) and makes the rename durable; both must
/// be in the same directory.
pub(crate) fn rename_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    File::open(parent_dir(to))?.sync_all()
}

/// Creates `dir` and every missing ancestor with exactly `mode`; existing ones are untouched.
pub fn create_dir_all_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match fs::metadata(current) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} exists and is not a directory", current.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(current),
            Err(e) => return Err(e),
        }
        match current.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => current = parent,
            _ => break,
        }
    }
    for created in missing.iter().rev() {
        match DirBuilder::new().mode(mode).create(created) {
            // The umask may have removed bits from `mode`; set it exactly, on the directory
            // just made and not on whatever the name points at by now.
            Ok(()) => open_dir_nofollow(created)?.set_permissions(Permissions::from_mode(mode))?,
            // Someone else created it meanwhile; it is theirs, leave it as it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && created.is_dir() => continue,
            Err(e) => return Err(e),
        }
        File::open(parent_dir(created))?.sync_all()?;
    }
    Ok(())
}

/// Opens `dir` itself: a symlink in its place fails with `ELOOP` or `ENOTDIR`.
fn open_dir_nofollow(dir: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
}

/// The directory holding `path`; `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_replaces_with_the_exact_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("privkey.pem");
        write_atomic(&path, b"old", 0o644).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode_of(&path), 0o600);
        // A mode wider than the umask allows is still applied exactly.
        write_atomic(&path, b"newer", 0o666).unwrap();
        assert_eq!(mode_of(&path), 0o666);
        assert_eq!(
            entries(dir.path()),
            ["privkey.pem"],
            "no temp file left behind"
        );
    }

    #[test]
    fn a_failed_rename_leaves_the_target_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be renamed over: the last step fails, after the temp
        // file was written (the tests run as root, so permissions cannot provoke a failure).
        let target = dir.path().join("cert.pem");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("old"), b"old content").unwrap();
        assert!(write_atomic(&target, b"new", 0o644).is_err());
        assert_eq!(fs::read(target.join("old")).unwrap(), b"old content");
        assert_eq!(entries(dir.path()), ["cert.pem"], "temp file removed");
    }

    #[test]
    fn create_atomic_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.pem");
        create_atomic(&path, b"first", 0o600).unwrap();
        let err = create_atomic(&path, b"second", 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert_eq!(entries(dir.path()), ["key.pem"]);
    }

    #[test]
    fn a_planted_symlink_is_replaced_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, b"precious").unwrap();
        fs::set_permissions(&outside, Permissions::from_mode(0o644)).unwrap();
        let installed = dir.path().join("installed");
        fs::create_dir(&installed).unwrap();
        for (name, write, why) in [
            (
                "cert.pem",
                write_atomic as fn(&Path, &[u8], u32) -> io::Result<()>,
                "replace",
            ),
            ("key.pem", create_atomic, "create"),
        ] {
            let link = installed.join(name);
            std::os::unix::fs::symlink(&outside, &link).unwrap();
            let result = write(&link, b"new", 0o600);
            assert_eq!(
                fs::read(&outside).unwrap(),
                b"precious",
                "{why}: target untouched"
            );
            assert_eq!(mode_of(&outside), 0o644, "{why}: target not chmodded");
            match why {
                // The link itself is replaced by a regular file.
                "replace" => assert!(!fs::symlink_metadata(&link).unwrap().is_symlink()),
                // The name is taken: creating refuses rather than following it.
                _ => assert_eq!(result.unwrap_err().kind(), io::ErrorKind::AlreadyExists),
            }
        }
    }

    #[test]
    fn a_symlink_is_not_opened_as_a_created_directory() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        assert!(
            open_dir_nofollow(&link).is_err(),
            "O_NOFOLLOW refuses the link"
        );
        assert!(open_dir_nofollow(dir.path()).is_ok());
    }

    #[test]
    fn a_missing_directory_is_an_error_without_side_effects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent/cert.pem");
        assert_eq!(
            write_atomic(&path, b"x", 0o644).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn creates_only_missing_directories_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("existing");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, Permissions::from_mode(0o751)).unwrap();
        let leaf = existing.join("a/b");
        create_dir_all_with_mode(&leaf, 0o700).unwrap();
        assert_eq!(mode_of(&existing), 0o751, "existing ancestor untouched");
        assert_eq!(mode_of(&existing.join("a")), 0o700);
        assert_eq!(mode_of(&leaf), 0o700);
        // Idempotent.
        create_dir_all_with_mode(&leaf, 0o755).unwrap();
        assert_eq!(mode_of(&leaf), 0o700);
    }

    #[test]
    fn a_file_in_the_way_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = create_dir_all_with_mode(&file.join("sub"), 0o700).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotADirectory, "{err}");
    }
}
